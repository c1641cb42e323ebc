"""Mixture YAML -> `schema` types. All validation of a mixture lives here.

Every problem is collected, not raised: each names the YAML file and the key path
(`toy.yaml: datasets[1].mix_ratio: ...`), with a "did you mean" hint for a mistyped
key, and ends up in `MixtureConfig.problems`. The YAML is loaded with `safe_load`;
nothing in it is evaluated.
"""
from __future__ import annotations

import dataclasses
import difflib
import glob
import hashlib
import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import orjson

from mixprep.config.schema import (
    DEFAULT_BUCKET_MB,
    DEFAULT_SEED,
    PHASE_PREFIXES,
    RATIO_TOLERANCE,
    DatasetSpec,
    DedupSpec,
    HubSource,
    MixtureConfig,
    RemoteTimeouts,
    RepeatPolicy,
    SourceSpec,
    ValidationSpec,
)
from mixprep.filters.registry import FilterChain
from mixprep.filters.rules import merge_chains, parse_filters
from mixprep.sources.formats import FORMATS, format_for, not_a_data_file

METADATA_KEYS = (
    "phase", "name", "seed", "total_samples", "validation", "data_dir", "output_dir", "filters",
    "on_bad_record", "repeats", "filter_on", "shuffle_bucket_mb", "text_field", "dedup",
    "annotate_language",
)
DATASET_KEYS = (
    "name", "mix_ratio", "max_samples", "source", "validation_source", "text_field", "filters",
)
SOURCE_MAPPING_KEYS = ("path", "format", "storage_options", "timeouts", "hf", "split", "config", "revision")
TIMEOUT_KEYS = ("connect", "read", "attempts")
HUB_ONLY_KEYS = ("split", "config", "revision")
# "owner/name" (or a bare legacy name such as "wikitext"); anything else must be an existing folder.
HUB_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*(/[A-Za-z0-9][A-Za-z0-9_.-]*)?$")
URL_RE = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]+://")
VALIDATION_KEYS = ("fraction", "samples")
REPEATS_KEYS = ("warn_above", "max_factor")
DEDUP_KEYS = ("method", "threshold", "num_perm", "ngram")
DEDUP_METHODS = ("exact", "near")


def parse_mixture(raw: Mapping[str, Any], path: Path) -> MixtureConfig:
    problems = _Problems(path)
    base = path.resolve().parent
    problems.unknown_keys(raw, ("metadata", "datasets"), "")
    meta = raw.get("metadata") or {}
    if not isinstance(meta, Mapping):
        problems.add("metadata", f"expected a mapping, got {type(meta).__name__}")
        meta = {}
    problems.unknown_keys(meta, METADATA_KEYS, "metadata")

    phase = _string(meta, "phase", "metadata", problems, default="pretrain")
    name = _string(meta, "name", "metadata", problems, default=path.stem)
    for key, value in (("phase", phase), ("name", name)):
        if "/" in value or "\\" in value or not value or not value.isprintable():
            problems.add(
                f"metadata.{key}",
                f"{value!r} must be a non-empty name without slashes or control characters (it goes into file names)",
            )
    _check_phase(phase, problems)
    longest = f"{phase}_{name}_validation.manifest.json".encode()
    if len(longest) > MAX_FILE_NAME_BYTES:
        problems.add(
            "metadata.name",
            f"phase and name make output file names of up to {len(longest)} bytes ({longest[:40].decode(errors='replace')}...); "
            f"file systems take {MAX_FILE_NAME_BYTES}: shorten the phase or the name",
        )
    seed = _integer(meta, "seed", "metadata", problems, default=DEFAULT_SEED, minimum=0)
    total_samples = _integer(meta, "total_samples", "metadata", problems, default=None, minimum=1)
    data_dir = base / _string(meta, "data_dir", "metadata", problems, default=".")
    output_dir_raw = meta.get("output_dir")
    output_dir = (base / str(output_dir_raw)) if output_dir_raw is not None else None
    default_text_field = _string(meta, "text_field", "metadata", problems, default="text")
    on_bad_record = _choice(meta, "on_bad_record", ("error", "skip"), "metadata", problems, default="error")
    filter_on = _choice(meta, "filter_on", ("all", "assistant"), "metadata", problems, default="all")
    bucket_mb = _integer(meta, "shuffle_bucket_mb", "metadata", problems, default=DEFAULT_BUCKET_MB, minimum=1)
    validation = _validation(meta.get("validation"), problems)
    repeats = _repeats(meta.get("repeats"), problems)
    global_filters = _filters(meta.get("filters"), "metadata.filters", problems)
    dedup = _dedup(meta.get("dedup"), problems)
    annotate_language = meta.get("annotate_language", False)
    if not isinstance(annotate_language, bool):
        problems.add("metadata.annotate_language", f"expected true or false, got {annotate_language!r}")
        annotate_language = False

    datasets = _datasets(raw.get("datasets"), base, data_dir, default_text_field, global_filters, problems)
    if datasets:
        total = math.fsum(d.mix_ratio for d in datasets)
        if abs(total - 1.0) > RATIO_TOLERANCE:
            problems.add("datasets", f"mix_ratio values sum to {total:.6g}, expected 1 (within {RATIO_TOLERANCE:g})")

    digest = hashlib.sha256(orjson.dumps(_canonical(raw), option=orjson.OPT_SORT_KEYS)).hexdigest()
    return MixtureConfig(
        path=path,
        phase=phase,
        name=name,
        seed=seed,
        datasets=tuple(datasets),
        total_samples=total_samples,
        validation=validation,
        output_dir=output_dir,
        on_bad_record=on_bad_record,  # type: ignore[arg-type]
        repeats=repeats,
        filter_on=filter_on,  # type: ignore[arg-type]
        shuffle_bucket_mb=bucket_mb,
        dedup=dedup,
        annotate_language=annotate_language,
        problems=tuple(problems.items),
        raw_digest=digest,
    )


# -- pieces ---------------------------------------------------------------------

class _Problems:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.items: list[str] = []

    def add(self, key_path: str, message: str) -> None:
        self.items.append(f"{self.path.name}: {key_path}: {message}" if key_path else f"{self.path.name}: {message}")

    def unknown_keys(self, mapping: Mapping[str, Any], valid: tuple[str, ...], prefix: str) -> None:
        for key in mapping:
            if key in valid:
                continue
            hint = difflib.get_close_matches(str(key), valid, n=1)
            did_you_mean = f"did you mean {hint[0]!r}? " if hint else ""
            where = f"{prefix}.{key}" if prefix else str(key)
            self.add(where, f"unknown key; {did_you_mean}valid keys: {', '.join(valid)}")


MAX_FILE_NAME_BYTES = 255  # ext4, xfs, btrfs, APFS, NTFS
MAX_INTEGER = 2**63 - 1  # counts and seeds travel as int64 through numpy and Arrow


def _check_phase(phase: str, problems: _Problems) -> None:
    """The phase's prefix picks the record schema: a typo would read every record as pretrain text."""
    lowered = phase.lower()
    prefixes = [prefix for prefix, _ in PHASE_PREFIXES]
    if not phase or any(lowered.startswith(prefix) for prefix in prefixes):
        return
    word = re.split(r"[^a-z]", lowered, maxsplit=1)[0]
    hint = difflib.get_close_matches(word, prefixes, n=1, cutoff=0.5)
    did_you_mean = f"; did you mean {hint[0]!r} ({hint[0] + lowered[len(word):]!r})?" if hint else ""
    problems.add(
        "metadata.phase",
        f"{phase!r} starts with none of {', '.join(prefixes)} (the prefix picks the record schema: pretrain text, "
        f"sft conversations, dpo pairs, ppo/rlaif/grpo prompts){did_you_mean}",
    )


def _string(mapping: Mapping[str, Any], key: str, prefix: str, problems: _Problems, *, default: str) -> str:
    value = mapping.get(key, default)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        problems.add(f"{prefix}.{key}", f"expected a string, got {value!r}")
        return default
    return str(value)


def _integer(
    mapping: Mapping[str, Any], key: str, prefix: str, problems: _Problems, *, default: int | None, minimum: int
) -> Any:
    value = mapping.get(key, default)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value <= MAX_INTEGER:
        problems.add(f"{prefix}.{key}", f"expected an integer from {minimum} to {MAX_INTEGER:,} (2^63 - 1), got {value!r}")
        return default
    return value


def _choice(
    mapping: Mapping[str, Any], key: str, choices: tuple[str, ...], prefix: str, problems: _Problems, *, default: str
) -> str:
    value = mapping.get(key, default)
    if value not in choices:
        problems.add(f"{prefix}.{key}", f"expected one of {', '.join(choices)}, got {value!r}")
        return default
    return value


def _validation(raw: Any, problems: _Problems) -> ValidationSpec | None:
    if raw is None:
        return None
    if not isinstance(raw, Mapping):
        problems.add("metadata.validation", f"expected {{fraction: F}} or {{samples: N}}, got {raw!r}")
        return None
    problems.unknown_keys(raw, VALIDATION_KEYS, "metadata.validation")
    fraction, samples = raw.get("fraction"), raw.get("samples")
    if (fraction is None) == (samples is None):
        problems.add("metadata.validation", "give exactly one of `fraction` or `samples`")
        return None
    if fraction is not None:
        if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0 < fraction < 1:
            problems.add("metadata.validation.fraction", f"expected a number between 0 and 1 (exclusive), got {fraction!r}")
            return None
        return ValidationSpec(fraction=float(fraction))
    if isinstance(samples, bool) or not isinstance(samples, int) or samples < 1:
        problems.add("metadata.validation.samples", f"expected an integer >= 1, got {samples!r}")
        return None
    return ValidationSpec(samples=samples)


def _repeats(raw: Any, problems: _Problems) -> RepeatPolicy:
    if raw is None:
        return RepeatPolicy()
    if not isinstance(raw, Mapping):
        problems.add("metadata.repeats", f"expected {{warn_above: F, max_factor: F}}, got {raw!r}")
        return RepeatPolicy()
    problems.unknown_keys(raw, REPEATS_KEYS, "metadata.repeats")
    values: dict[str, float | None] = {}
    for key in REPEATS_KEYS:
        value = raw.get(key)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 1:
            problems.add(f"metadata.repeats.{key}", f"expected a number >= 1, got {value!r}")
            continue
        values[key] = float(value)
    return RepeatPolicy(**values)  # type: ignore[arg-type]


def _dedup(raw: Any, problems: _Problems) -> DedupSpec | None:
    """`dedup: exact`, `dedup: near`, or `dedup: {method: near, threshold: 0.8, num_perm: 128, ngram: 5}`."""
    if raw is None or raw is False:
        return None
    if isinstance(raw, str):
        raw = {"method": raw}
    if not isinstance(raw, Mapping):
        problems.add("metadata.dedup", f"expected exact, near or {{method: near, threshold: F}}, got {raw!r}")
        return None
    problems.unknown_keys(raw, DEDUP_KEYS, "metadata.dedup")
    method = raw.get("method")
    if method not in DEDUP_METHODS:
        problems.add("metadata.dedup.method", f"expected one of {', '.join(DEDUP_METHODS)}, got {method!r}")
        return None
    threshold = raw.get("threshold", 0.8)
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0 < threshold < 1:
        problems.add("metadata.dedup.threshold", f"expected a Jaccard similarity between 0 and 1 (exclusive), got {threshold!r}")
        return None
    num_perm = _integer(raw, "num_perm", "metadata.dedup", problems, default=128, minimum=16)
    ngram = _integer(raw, "ngram", "metadata.dedup", problems, default=5, minimum=1)
    return DedupSpec(method=method, threshold=float(threshold), num_perm=num_perm, ngram=ngram)


def _filters(raw: Any, key_path: str, problems: _Problems) -> FilterChain:
    if raw is None:
        return ()
    if not isinstance(raw, Mapping):
        problems.add(key_path, f"expected a mapping of filter: threshold, got {raw!r}")
        return ()
    chain, filter_problems = parse_filters(raw, key_path)
    for problem in filter_problems:
        problems.items.append(f"{problems.path.name}: {problem}")
    base = problems.path.resolve().parent
    return tuple((name, _resolve_tokenizer(value, base)) for name, value in chain)


def _resolve_tokenizer(value: Any, base: Path) -> Any:
    """A filter's relative `tokenizer:` path resolves against the YAML's folder, like sources."""
    tokenizer = getattr(value, "tokenizer", None)
    if isinstance(tokenizer, str) and tokenizer and not Path(tokenizer).is_absolute() and (base / tokenizer).exists():
        return dataclasses.replace(value, tokenizer=str(base / tokenizer))
    return value


def _datasets(
    raw: Any,
    base: Path,
    data_dir: Path,
    default_text_field: str,
    global_filters: FilterChain,
    problems: _Problems,
) -> list[DatasetSpec]:
    if not isinstance(raw, list) or not raw:
        problems.add("datasets", f"expected a non-empty list of datasets, got {raw!r}")
        return []
    datasets: list[DatasetSpec] = []
    seen: set[str] = set()
    for i, entry in enumerate(raw):
        where = f"datasets[{i}]"
        if not isinstance(entry, Mapping):
            problems.add(where, f"expected a mapping with name and mix_ratio, got {entry!r}")
            continue
        problems.unknown_keys(entry, DATASET_KEYS, where)
        name = entry.get("name")
        if not isinstance(name, str) or not name:
            problems.add(f"{where}.name", f"expected a non-empty string, got {name!r}")
            name = f"dataset{i}"
        elif name in seen:
            problems.add(f"{where}.name", f"{name!r} is used by another dataset; names must be unique (they label records)")
        seen.add(name)
        ratio = entry.get("mix_ratio")
        if ratio is None:
            problems.add(f"{where}.mix_ratio", "missing; every dataset needs a mix_ratio (a number >= 0; all sum to 1)")
            ratio = 0.0
        elif isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not 0 <= ratio <= 1 or not math.isfinite(ratio):
            problems.add(f"{where}.mix_ratio", f"expected a number from 0 to 1, got {ratio!r}")
            ratio = 0.0
        max_samples = _integer(entry, "max_samples", where, problems, default=None, minimum=1)
        text_field = _string(entry, "text_field", where, problems, default=default_text_field)
        local_filters = _filters(entry.get("filters"), f"{where}.filters", problems)
        source = _source(entry.get("source"), f"{where}.source", name, base, data_dir, problems)
        validation_source = None
        if entry.get("validation_source") is not None:
            validation_source = _source(entry["validation_source"], f"{where}.validation_source", name, base, None, problems)
        datasets.append(
            DatasetSpec(
                name=name,
                mix_ratio=float(ratio),
                source=source,
                max_samples=max_samples,
                validation_source=validation_source,
                text_field=text_field,
                filters=merge_chains(global_filters, local_filters),
            )
        )
    return datasets


def _source(
    raw: Any, where: str, name: str, base: Path, data_dir: Path | None, problems: _Problems
) -> SourceSpec:
    fmt: str | None = None
    storage_options: dict[str, Any] | None = None
    timeouts = RemoteTimeouts()
    if raw is None:
        assert data_dir is not None  # only `source` may be omitted, never validation_source
        return _default_source(name, data_dir, where, problems)
    if isinstance(raw, Mapping):
        problems.unknown_keys(raw, SOURCE_MAPPING_KEYS, where)
        fmt = raw.get("format")
        if fmt is not None and fmt not in FORMATS:
            problems.add(f"{where}.format", f"expected one of {', '.join(FORMATS)}, got {fmt!r}")
            fmt = None
        if raw.get("hf") is not None:
            return _hub_source(raw, where, base, problems)
        for key in HUB_ONLY_KEYS:
            if raw.get(key) is not None:
                problems.add(f"{where}.{key}", f"applies to Hugging Face sources only; use `source: {{hf: owner/name, {key}: ...}}`")
        storage_options = _storage_options(raw.get("storage_options"), f"{where}.storage_options", problems)
        timeouts = _timeouts(raw.get("timeouts"), f"{where}.timeouts", problems)
        raw = raw.get("path")
        if raw is None:
            problems.add(f"{where}.path", "missing; give a file, a glob or a list of them (or `hf:` for a Hugging Face dataset)")
            return SourceSpec(patterns=())
    entries = raw if isinstance(raw, list) else [raw]
    patterns: list[str] = []
    for j, item in enumerate(entries):
        item_where = f"{where}[{j}]" if isinstance(raw, list) else where
        if not isinstance(item, str) or not item:
            problems.add(item_where, f"expected a path or glob, got {item!r}")
            continue
        if URL_RE.match(item) and not item.startswith("file://"):
            # Remote: listed at plan time (no network while parsing a config).
            patterns.append(item)
            continue
        pattern = str(base / Path(item.removeprefix("file://")).expanduser())
        patterns.append(pattern)
        _check_local_pattern(pattern, fmt, item_where, problems)
    return SourceSpec(patterns=tuple(patterns), format=fmt, storage_options=storage_options, timeouts=timeouts)


def _check_local_pattern(pattern: str, fmt: str | None, where: str, problems: _Problems) -> None:
    matches = glob.glob(pattern, recursive=True)
    other = None if glob.has_magic(pattern) else not_a_data_file(pattern)
    if other:
        problems.add(where, other)
    elif not matches:
        kind = "glob matches no file" if glob.has_magic(pattern) else "file not found"
        problems.add(where, f"{kind}: {pattern}")
    elif fmt is None:
        for match in matches:
            if Path(match).is_file() and format_for(match) is None:
                problems.add(
                    where,
                    f"cannot tell the format of {match}; use a .jsonl/.json/.csv/.tsv name (optionally + .gz/.zst/.bz2/.xz), "
                    f".parquet or .arrow, or `source: {{path: ..., format: {'|'.join(FORMATS)}}}`",
                )
                break


def _storage_options(raw: Any, where: str, problems: _Problems) -> dict[str, Any] | None:
    if raw is None:
        return None
    if not isinstance(raw, Mapping):
        problems.add(where, f"expected a mapping of fsspec options (e.g. {{client_kwargs: {{endpoint_url: ...}}}}), got {raw!r}")
        return None
    return dict(_canonical(raw))


def _timeouts(raw: Any, where: str, problems: _Problems) -> RemoteTimeouts:
    """`timeouts: {connect: 10, read: 60, attempts: 3}` (seconds, seconds, requests)."""
    if raw is None:
        return RemoteTimeouts()
    if not isinstance(raw, Mapping):
        problems.add(where, f"expected {{connect: SECONDS, read: SECONDS, attempts: N}}, got {raw!r}")
        return RemoteTimeouts()
    problems.unknown_keys(raw, TIMEOUT_KEYS, where)
    values: dict[str, Any] = {}
    for key in ("connect", "read"):
        value = raw.get(key)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 86_400:
            problems.add(f"{where}.{key}", f"expected seconds, more than 0 and at most 86400, got {value!r}")
            continue
        values[key] = float(value)
    attempts = _integer(raw, "attempts", where, problems, default=None, minimum=1)
    if attempts is not None:
        if attempts > 100:
            problems.add(f"{where}.attempts", f"expected at most 100 attempts, got {attempts!r}")
        else:
            values["attempts"] = attempts
    return RemoteTimeouts(**values)


def _hub_source(raw: Mapping[str, Any], where: str, base: Path, problems: _Problems) -> SourceSpec:
    """`{hf: owner/name | folder, split, config, revision}`: a folder when one exists there, else a hub id."""
    for key in ("path", "storage_options", "timeouts", "format"):
        if raw.get(key) is not None:
            problems.add(f"{where}.{key}", "cannot be combined with `hf:`; a Hugging Face source is found by its id or folder")
    options: dict[str, str | None] = {}
    for key in ("hf", *HUB_ONLY_KEYS):
        value = raw.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, (str, int, float)) or not str(value)):
            problems.add(f"{where}.{key}", f"expected a non-empty string, got {value!r}")
            value = None
        options[key] = None if value is None else str(value)
    repo = options["hf"] or ""
    folder = base / Path(repo).expanduser()
    if repo and folder.is_dir():
        hub = HubSource(str(folder), True, options["split"], options["config"], options["revision"])
    elif HUB_ID_RE.match(repo):
        hub = HubSource(repo, False, options["split"], options["config"], options["revision"])
    else:
        if repo:
            problems.add(f"{where}.hf", f"{repo!r} is neither an existing folder ({folder}) nor a hub id like owner/name")
        hub = HubSource(repo, False)
    return SourceSpec(patterns=(), hub=hub)


def _default_source(name: str, data_dir: Path, where: str, problems: _Problems) -> SourceSpec:
    for candidate in (data_dir / f"{name}.jsonl", data_dir / f"{name}.parquet"):
        if candidate.is_file():
            return SourceSpec(patterns=(str(candidate),))
    folder = data_dir / name
    if folder.is_dir():
        return SourceSpec(patterns=(str(folder / "**" / "*"),))
    problems.add(
        where,
        f"no `source` given and none of {data_dir / (name + '.jsonl')}, {data_dir / (name + '.parquet')} "
        f"or {folder}/ exists; set `source:` or metadata.data_dir",
    )
    return SourceSpec(patterns=())


def _canonical(value: Any) -> Any:
    """YAML values as JSON-able data (dates and sets become strings), for hashing."""
    if isinstance(value, Mapping):
        return {str(k): _canonical(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_canonical(v) for v in value]
    if isinstance(value, int) and not isinstance(value, bool) and not -(2**63) <= value < 2**64:
        return str(value)  # beyond what the digest's JSON encoder takes
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)
