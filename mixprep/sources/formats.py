"""File suffix -> input format: the one table that planning and config checks share.

Compressed text formats (`.gz`, `.zst`, `.bz2`, `.xz`) are read as a stream; their
suffix follows the base suffix (`.jsonl.gz`).
"""
from __future__ import annotations

import os
import stat

# Compressed text formats are read as a stream; each suffix below may follow the base suffix.
COMPRESSION_SUFFIXES = (".gz", ".zst", ".bz2", ".xz")
_TEXT_SUFFIXES = ((".jsonl", "jsonl"), (".json", "jsonl"), (".ndjson", "jsonl"), (".csv", "csv"), (".tsv", "tsv"))
# Compressed variants first so ".jsonl.gz" wins over any shorter match.
FORMAT_BY_SUFFIX: tuple[tuple[str, str], ...] = (
    *((base + comp, fmt) for comp in COMPRESSION_SUFFIXES for base, fmt in _TEXT_SUFFIXES),
    *_TEXT_SUFFIXES,
    (".parquet", "parquet"),
    (".arrow", "arrow"),
    (".feather", "arrow"),
    (".ipc", "arrow"),
)
FORMATS = ("jsonl", "parquet", "arrow", "csv", "tsv")


def format_for(path: str) -> str | None:
    lowered = path.lower()
    for suffix, fmt in FORMAT_BY_SUFFIX:
        if lowered.endswith(suffix):
            return fmt
    return None


def not_a_data_file(path: str) -> str | None:
    """What `path` is when it exists but is not a regular file (a source can only be a file it
    can seek in and read again), or None when it is one or does not exist."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return None
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISDIR(mode):
        return f"{path} is a folder, not a file; to read the files in it use a glob such as {path}/*.jsonl or {path}/**/*"
    if stat.S_ISFIFO(mode):
        return f"{path} is a named pipe (FIFO); a source must be a file that can be read twice: write the data to a file first"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return f"{path} is a device, not a data file"
    if stat.S_ISSOCK(mode):
        return f"{path} is a socket, not a data file"
    return f"{path} is not a regular file"
