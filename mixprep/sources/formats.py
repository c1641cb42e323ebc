"""File suffix -> input format: the one table that planning and config checks share.

Compressed text formats (`.gz`, `.zst`, `.bz2`, `.xz`) are read as a stream; their
suffix follows the base suffix (`.jsonl.gz`).
"""
from __future__ import annotations

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
