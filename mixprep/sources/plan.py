"""Mixture -> ordered scan tasks. Pure: the same config and files give the same plan,
whatever `--workers` or executor runs it.

One task per source shard: an uncompressed JSONL file is cut into byte ranges of
`SHARD_BYTES` (a range owns the lines that *start* inside it), every other file is
one task. Record identity is the file's path relative to its pattern's root plus
the record's position in it (byte offset for JSONL, row number otherwise), so it
does not depend on sharding or on where the data folder lives. Remote patterns
(`s3://...`, listed by `remote`) follow the same rules, so a bucket holding the same
tree as a local folder gives the same identities; Hugging Face sources (`hub`) name
files relative to the dataset's root.
"""
from __future__ import annotations

import glob
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from mixprep.config.schema import DatasetSpec, MixtureConfig, RemoteTimeouts, SourceSpec
from mixprep.errors import SourceError
from mixprep.sources import remote
from mixprep.sources.formats import format_for, not_a_data_file

SHARD_BYTES = 64 * 1024 * 1024

Role = Literal["main", "validation"]


@dataclass(frozen=True)
class SourceFile:
    path: str
    """A local path, or a URL (s3://, gs://, https://, hf://) read through fsspec."""
    relpath: str
    format: str
    compression: str | None
    size: int
    mtime_ns: int
    etag: str | None = None
    """Remote objects: the store's content version (ETag), recorded as part of the fingerprint."""
    revision: str | None = None
    """Hugging Face files: the commit sha they were read at."""
    storage_options: dict[str, Any] | None = field(default=None, compare=False)
    """fsspec options to open a remote path with (not part of the identity or the fingerprint)."""
    timeouts: RemoteTimeouts = field(default=RemoteTimeouts(), compare=False)
    """Network limits for a remote path (not part of the identity either)."""


@dataclass(frozen=True)
class ScanTask:
    task_id: int
    dataset: int
    dataset_name: str
    role: Role
    file: SourceFile
    start: int
    end: int

    def describe(self) -> str:
        span = f" bytes {self.start}-{self.end}" if self.file.compression is None and self.file.format == "jsonl" else ""
        return f"{self.dataset_name}: {self.file.path}{span}"


def compression_for(path: str) -> str | None:
    lowered = path.lower()
    if lowered.endswith(".gz"):
        return "gzip"
    if lowered.endswith(".zst"):
        return "zstd"
    if lowered.endswith(".bz2"):
        return "bz2"
    if lowered.endswith(".xz"):
        return "xz"
    return None


def pattern_root(pattern: str) -> Path:
    """The folder a pattern's matches are named relative to: its last glob-free directory."""
    parts = Path(pattern).parts
    for i, part in enumerate(parts):
        if glob.has_magic(part):
            return Path(*parts[:i]) if i else Path(".")
    return Path(pattern).parent


def resolve_files(spec: SourceSpec, dataset_name: str) -> list[SourceFile]:
    """Every file of a source, in a stable order; errors name the pattern that failed."""
    if spec.hub is not None:
        return _hub_files(spec, dataset_name)
    files: list[SourceFile] = []
    seen: set[str] = set()
    seen_real: set[str] = set()
    for pattern in spec.patterns:
        if remote.is_remote(pattern):
            files.extend(f for f in _remote_files(pattern, spec, dataset_name) if f.path not in seen)
            seen.update(f.path for f in files)
            continue
        matches = sorted(p for p in glob.glob(pattern, recursive=True) if os.path.isfile(p))
        magic = glob.has_magic(pattern)
        if not matches:
            other = None if magic else not_a_data_file(pattern)
            kind = "glob matches no file" if magic else "file not found"
            msg = f"dataset {dataset_name!r}: {other}" if other else f"dataset {dataset_name!r}: {kind}: {pattern}"
            raise SourceError(msg)
        root = pattern_root(pattern)
        for match in matches:
            # `**` follows symlinked folders, and a link loop repeats the same files under
            # ever longer paths: each real file is read once, under its first path.
            real = os.path.realpath(match)
            if match in seen or real in seen_real:
                continue
            fmt = spec.format or format_for(match)
            if fmt is None:
                if magic:  # a folder glob also matches READMEs and the like
                    continue
                msg = f"dataset {dataset_name!r}: cannot tell the format of {match}; set `format:` in its source"
                raise SourceError(msg)
            seen.add(match)
            seen_real.add(real)
            stat = os.stat(match)
            files.append(
                SourceFile(
                    path=match,
                    relpath=os.path.relpath(match, root).replace(os.sep, "/"),
                    format=fmt,
                    compression=compression_for(match),
                    size=stat.st_size,
                    mtime_ns=stat.st_mtime_ns,
                )
            )
    if not files:
        msg = f"dataset {dataset_name!r}: no readable data files in {spec.describe()}"
        raise SourceError(msg)
    return files


def _remote_files(pattern: str, spec: SourceSpec, dataset_name: str) -> list[SourceFile]:
    files = []
    for obj in remote.list_objects(pattern, spec.storage_options, spec.timeouts, dataset_name):
        fmt = spec.format or format_for(obj.url)
        if fmt is None:
            if glob.has_magic(pattern):  # as for local globs: skip READMEs and the like
                continue
            msg = f"dataset {dataset_name!r}: cannot tell the format of {obj.url}; set `format:` in its source"
            raise SourceError(msg)
        files.append(
            SourceFile(
                path=obj.url,
                relpath=obj.relpath,
                format=fmt,
                compression=compression_for(obj.url),
                size=obj.size,
                mtime_ns=obj.mtime_ns,
                etag=obj.etag,
                storage_options=spec.storage_options,
                timeouts=spec.timeouts,
            )
        )
    return files


def _hub_files(spec: SourceSpec, dataset_name: str) -> list[SourceFile]:
    from mixprep.sources.hub import resolve_hub  # huggingface_hub / datasets only when a source needs them

    assert spec.hub is not None
    resolved = resolve_hub(spec.hub, dataset_name)
    files = []
    for hub_file in resolved.files:
        stat = os.stat(hub_file.path)
        files.append(
            SourceFile(
                path=hub_file.path,
                relpath=hub_file.relpath,
                format=hub_file.format,
                compression=compression_for(hub_file.path),
                size=stat.st_size,
                mtime_ns=stat.st_mtime_ns,
                revision=resolved.revision,
            )
        )
    return files


def shard_file(file: SourceFile, shard_bytes: int) -> list[tuple[int, int]]:
    if file.format != "jsonl" or file.compression is not None or file.size <= shard_bytes:
        return [(0, file.size)]
    if remote.scheme_of(file.path) in remote.HTTP_SCHEMES:
        return [(0, file.size)]  # one streamed response: many servers ignore byte ranges
    return [(start, min(start + shard_bytes, file.size)) for start in range(0, file.size, shard_bytes)]


def make_plan(config: MixtureConfig, *, shard_bytes: int | None = None) -> list[ScanTask]:
    # None reads SHARD_BYTES at call time (not at import), so tests and benchmarks can shrink it.
    shard_bytes = SHARD_BYTES if shard_bytes is None else shard_bytes
    tasks: list[ScanTask] = []
    for index, dataset in enumerate(config.datasets):
        for role, spec in _roles(dataset):
            for file in resolve_files(spec, dataset.name):
                for start, end in shard_file(file, shard_bytes):
                    tasks.append(
                        ScanTask(
                            task_id=len(tasks),
                            dataset=index,
                            dataset_name=dataset.name,
                            role=role,
                            file=file,
                            start=start,
                            end=end,
                        )
                    )
    return tasks


def input_bytes(tasks: list[ScanTask]) -> int:
    """Bytes of the files the tasks read, each file once."""
    return sum({t.file.path: t.file.size for t in tasks}.values())


def _roles(dataset: DatasetSpec) -> list[tuple[Role, SourceSpec]]:
    roles: list[tuple[Role, SourceSpec]] = [("main", dataset.source)]
    if dataset.validation_source is not None:
        roles.append(("validation", dataset.validation_source))
    return roles


def changed_inputs(tasks: list[ScanTask], other_files: Iterable[SourceFile] = ()) -> list[str]:
    """Local input files (the tasks', and `other_files`) whose size or mtime differs from
    when the plan was made: each with what changed. (Remote objects are pinned by their
    ETag when they are opened.)"""
    changes = []
    files = {t.file.path: t.file for t in tasks} | {f.path: f for f in other_files}
    for file in files.values():
        if remote.is_remote(file.path) or file.revision is not None:
            continue
        try:
            stat = os.stat(file.path)
        except OSError as exc:
            changes.append(f"{file.path}: {exc.strerror or exc}")
            continue
        if (stat.st_size, stat.st_mtime_ns) != (file.size, file.mtime_ns):
            changes.append(f"{file.path}: {file.size:,} -> {stat.st_size:,} bytes, mtime {file.mtime_ns} -> {stat.st_mtime_ns}")
    return changes
