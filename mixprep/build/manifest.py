"""What a build records next to its outputs, and how a rerun decides to reuse them.

The manifest holds no wall-clock time or host name, so the same build gives the
same manifest bytes. `build_key` hashes everything that determines the output
(config, input files' size and mtime, package versions, options); a rerun whose
key matches an existing, intact output reuses it.
"""
from __future__ import annotations

import dataclasses
import hashlib
import os
import platform
from collections.abc import Iterable
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from mixprep.build import decontaminate
from mixprep.config.schema import SourceSpec
from mixprep.errors import IndexFormatError
from mixprep.filters.fields import REFERENCE
from mixprep.filters.registry import FilterChain
from mixprep.filters.rules import REFERENCE_FILTERS
from mixprep.manifest_file import MANIFEST_FORMAT
from mixprep.serve.index import open_index
from mixprep.sources import remote
from mixprep.sources.plan import ScanTask

if TYPE_CHECKING:
    from mixprep.build.decontaminate import EvalFile
    from mixprep.build.outputs import SplitFiles
    from mixprep.build.sampler import Quota, SourceSelection
    from mixprep.build.scan import ScanStats
    from mixprep.build.writers import OutputInfo
    from mixprep.config.schema import MixtureConfig


RECORDED_PACKAGES = (
    "mixprep", "pyarrow", "polars", "numpy", "orjson", "xxhash",  # readers, writers, sampling hashes
    "numba", "py3langid", "datasketch", "tokenizers",  # filter kernels, the language model, near-dedup, token counts
    "zstandard", "PyYAML",  # decompression, the mixture file
)
"""Every package whose version can change an output byte or a filter's verdict: part of the
build key, so upgrading one rebuilds instead of reusing outputs it might not reproduce."""


def package_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in RECORDED_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "unknown"
    return versions


def shown_path(path: str, base: Path) -> str:
    """A path as the manifest records it: relative to the config's folder `base` when it is
    inside it (so a manifest moves with its project), else as it is (absolute, or a URL)."""
    if remote.is_remote(path):
        return path
    try:
        return Path(path).relative_to(base).as_posix()
    except ValueError:
        return path


def input_fingerprints(tasks: Iterable[ScanTask], base: Path, evals: Iterable[EvalFile] = ()) -> list[dict[str, Any]]:
    """Each input file once: its dataset (or evaluation set), role (main, validation or
    decontaminate), path (`shown_path`), size and mtime (ETag or revision where known)."""
    seen: dict[str, dict[str, Any]] = {}
    labelled = [(t.dataset_name, t.role, t.file) for t in tasks] + [(e.eval_set.name, decontaminate.ROLE, e.file) for e in evals]
    for name, role, file in labelled:
        if file.path not in seen:
            seen[file.path] = {
                "dataset": name,
                "role": role,
                "path": shown_path(file.path, base),
                "size": file.size,
                "mtime_ns": file.mtime_ns,
            }
            # Only where known, so local files keep exactly the keys (and build keys) they had.
            if file.etag is not None:
                seen[file.path]["etag"] = file.etag
            if file.revision is not None:
                seen[file.path]["revision"] = file.revision
    return list(seen.values())


def build_key(config_digest: str, inputs: list[dict[str, Any]], options: dict[str, Any]) -> str:
    payload = {"config": config_digest, "inputs": inputs, "options": options, "packages": package_versions()}
    return hashlib.sha256(orjson.dumps(payload, option=orjson.OPT_SORT_KEYS)).hexdigest()


def write_manifest(path: Path, manifest: dict[str, Any]) -> None:
    path.write_bytes(orjson.dumps(manifest, option=orjson.OPT_INDENT_2) + b"\n")


def rebuild_reason(manifest: dict[str, Any] | None, *, config_digest: str, inputs: list[dict[str, Any]], options: dict[str, Any]) -> str:
    """Why outputs with this manifest cannot be reused, in words, for the one line a rebuild logs."""
    if manifest is None:
        return "no finished earlier build"
    if manifest.get("config", {}).get("sha256") != config_digest:
        return "the mixture changed"
    before = {(i.get("dataset"), i.get("role"), i.get("path")): i for i in manifest.get("inputs", [])}
    for entry in inputs:
        earlier = before.get((entry["dataset"], entry["role"], entry["path"]))
        if earlier != entry:
            return f"input {entry['path']} {'is new' if earlier is None else 'changed'}"
    if len(before) != len(inputs):
        return "an input file is gone"
    versions = package_versions()
    changed = sorted(name for name, version in versions.items() if manifest.get("packages", {}).get(name) != version)
    if changed:
        return f"package versions changed ({', '.join(changed)})"
    return f"output options changed ({', '.join(f'{k}: {v}' for k, v in sorted(options.items()))})"


def outputs_intact(manifest: dict[str, Any], jsonl: Path, parquet: Path, index: Path) -> bool:
    """Cheap check that the files a manifest describes are still the ones on disk: sizes, and
    the index's header against the JSONL (its size, mtime and a hash of its first and last
    64 KiB), so an edit that keeps the size is noticed without reading the whole file."""
    output = manifest.get("output", {})
    try:
        if os.path.getsize(jsonl) != output.get("bytes") or os.path.getsize(parquet) != output.get("parquet", {}).get("bytes"):
            return False
        return len(open_index(index, jsonl)) == output.get("records")
    except (OSError, IndexFormatError):
        return False


def describe_source(source: SourceSpec, base: Path) -> list[str]:
    """A source's patterns as configured (resolved, then `shown_path`), or its Hugging Face spec."""
    if source.hub is not None:
        hub = source.hub
        return [dataclasses.replace(hub, repo=shown_path(hub.repo, base)).describe() if hub.local else hub.describe()]
    return [shown_path(pattern, base) for pattern in source.patterns]


def filter_settings(chain: FilterChain, base: Path) -> dict[str, Any]:
    """The filters a source ran, in order, with their resolved settings (global ones merged
    in); a `tokenizer:` path shown as the manifest shows paths (relative to `base` inside it)."""
    settings = {}
    for name, value in chain:
        plain = _plain(value)
        if isinstance(plain, dict) and isinstance(plain.get("tokenizer"), str):
            plain["tokenizer"] = shown_path(plain["tokenizer"], base)
        settings[name] = plain
    return settings


def _add_units(
    sources: dict[str, dict[str, Any]], records: dict[str, int], units: dict[str, dict[str, int]], *, counted_tokens: bool
) -> dict[str, Any]:
    """Per source: what the split took from it in bytes, characters (and tokens), and its
    achieved share of the split in each unit beside the requested mix_ratio. Returns the
    split's totals of characters (and tokens)."""
    names = ["bytes", "characters", *(["tokens"] if counted_tokens else [])]
    totals = {unit: sum(units.get(name, {}).get(unit, 0) for name in sources) for unit in names}
    all_records = sum(records.values())
    for name, entry in sources.items():
        taken = units.get(name, {})
        entry.update({unit: taken.get(unit, 0) for unit in names})
        shares = {"records": round(records[name] / all_records, 6) if all_records else 0.0}
        shares.update({unit: round(taken.get(unit, 0) / totals[unit], 6) if totals[unit] else 0.0 for unit in names})
        entry["share"] = shares
    return {unit: totals[unit] for unit in names if unit != "bytes"}


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {k: _plain(v) for k, v in dataclasses.asdict(value).items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return value


def split_manifest(
    config: MixtureConfig,
    split: str,
    key: str,
    inputs: list[dict[str, Any]],
    stats: dict[str, ScanStats],
    quotas: list[Quota],
    selections: list[SourceSelection],
    info: OutputInfo,
    final: SplitFiles,
    parquet_compression: str,
    validation_removed: dict[str, dict[str, int]] | None = None,
    write_rejected: bool = False,
    decontamination: dict[str, Any] | None = None,
    units: dict[str, dict[str, int]] | None = None,
    packed: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The manifest of one split: what was read, removed, available, selected and written.

    `validation_removed`: per dataset, records of its validation source dropped by dedup
    (as copies of train records, or repeats within validation) or by decontamination.
    `decontamination`: the evaluation sets checked against, when the mixture asks.
    """
    sources = {}
    by_source = {}
    base = config.path.resolve().parent
    for dataset, quota, selection in zip(config.datasets, quotas, selections, strict=True):
        chosen = selection.train if split == "train" else selection.validation
        entry = {
            "mix_ratio": dataset.mix_ratio,
            "max_samples": dataset.max_samples,
            **({"max_tokens": dataset.max_tokens, "cap": quota.cap} if dataset.max_tokens is not None else {}),
            "source": describe_source(dataset.source, base),
            "filters": filter_settings(dataset.filters, base),
            **({"filter_definitions": REFERENCE} if any(name in REFERENCE_FILTERS for name, _ in dataset.filters) else {}),
            **stats[dataset.name].as_dict(),
            "held_out_for_validation": quota.held_out,
            "available": quota.available,
        }
        if decontamination is not None:
            entry["decontaminated"] = stats[dataset.name].removed.get("decontaminated", 0)
        if split == "train":
            entry.update(
                quota=quota.quota,
                unique=chosen.unique,
                repeated_records=chosen.repeated_records,
                extra_copies=chosen.extra_copies,
                **({"token_quota": quota.token_quota, "available_tokens": quota.available_tokens} if quota.token_quota is not None else {}),
                sample_factor=round(quota.repeat_factor, 6) if quota.available else None,
                repeat_factor=round(quota.quota / chosen.unique, 6) if chosen.unique else None,
            )
        else:
            entry.update(
                quota=quota.validation, unique=chosen.unique, repeated_records=0, extra_copies=0, sample_factor=None, repeat_factor=None
            )
            if dataset.validation_source is not None:
                entry["validation_source"] = describe_source(dataset.validation_source, base)
                if validation_removed is not None and dataset.name in validation_removed:
                    entry["validation_source_removed"] = validation_removed[dataset.name]
        sources[dataset.name] = entry
        by_source[dataset.name] = len(chosen.rows)
    totals = _add_units(sources, by_source, units or {}, counted_tokens=config.tokenizer is not None)
    return {
        "format": MANIFEST_FORMAT,
        "split": split,
        "phase": config.phase,
        "name": config.name,
        "record_schema": config.record_schema,
        "seed": config.seed,
        "config": {"path": config.path.name, "sha256": config.raw_digest},
        "build_key": key,
        "total_samples": sum(by_source.values()),
        "packages": package_versions(),
        "options": {
            "parquet_compression": parquet_compression,
            "shuffle_bucket_mb": config.shuffle_bucket_mb,
            "write_rejected": write_rejected,
        },
        "mix_by": config.mix_by,
        **({"tokenizer": shown_path(config.tokenizer, base)} if config.tokenizer else {}),
        "inputs": inputs,
        **({"decontamination": decontamination} if decontamination is not None else {}),
        "sources": sources,
        "output": {
            "jsonl": final.jsonl.name,
            "records": info.records,
            "records_by_source": by_source,
            "bytes": info.bytes,
            **totals,
            **({"sha256": info.sha256} if info.sha256 is not None else {}),
            "checksum": info.checksum,
            "index": {"file": final.index.name, "entries": info.records + 1},
            "parquet": {"file": final.parquet.name, "rows": info.parquet_rows, "bytes": info.parquet_bytes},
            **({"packed": packed} if packed is not None else {}),
        },
    }
