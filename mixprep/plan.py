"""Mixture -> ordered scan tasks. Pure: the same config and files give the same plan,
whatever `--workers` or executor runs it.

One task per source shard: an uncompressed JSONL file is cut into byte ranges of
`SHARD_BYTES` (a range owns the lines that *start* inside it), every other file is
one task. Record identity is the file's path relative to its pattern's root plus
the record's position in it (byte offset for JSONL, row number otherwise), so it
does not depend on sharding or on where the data folder lives.
"""
from __future__ import annotations

import glob
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from mixprep.config import DatasetSpec, MixtureConfig, SourceSpec, format_for
from mixprep.errors import SourceError

SHARD_BYTES = 64 * 1024 * 1024

Role = Literal["main", "validation"]


@dataclass(frozen=True)
class SourceFile:
    path: str
    relpath: str
    format: str
    compression: str | None
    size: int
    mtime_ns: int


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
    files: list[SourceFile] = []
    seen: set[str] = set()
    for pattern in spec.patterns:
        matches = sorted(p for p in glob.glob(pattern, recursive=True) if os.path.isfile(p))
        magic = glob.has_magic(pattern)
        if not matches:
            kind = "glob matches no file" if magic else "file not found"
            msg = f"dataset {dataset_name!r}: {kind}: {pattern}"
            raise SourceError(msg)
        root = pattern_root(pattern)
        for match in matches:
            if match in seen:
                continue
            fmt = spec.format or format_for(match)
            if fmt is None:
                if magic:  # a folder glob also matches READMEs and the like
                    continue
                msg = f"dataset {dataset_name!r}: cannot tell the format of {match}; set `format:` in its source"
                raise SourceError(msg)
            seen.add(match)
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


def shard_file(file: SourceFile, shard_bytes: int) -> list[tuple[int, int]]:
    if file.format != "jsonl" or file.compression is not None or file.size <= shard_bytes:
        return [(0, file.size)]
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


def _roles(dataset: DatasetSpec) -> list[tuple[Role, SourceSpec]]:
    roles: list[tuple[Role, SourceSpec]] = [("main", dataset.source)]
    if dataset.validation_source is not None:
        roles.append(("validation", dataset.validation_source))
    return roles
