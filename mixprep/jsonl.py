"""JSON lines, one record at a time: the two helpers that building and serving share.

Both sides read JSONL written by people, so both report a bad record the same way:
`load_json_object` says what is wrong with one line, `line_number_at` turns a byte
offset into the 1-based line number that an error message names.
"""
from __future__ import annotations

from typing import Any, BinaryIO

import orjson

_CHUNK = 4 * 1024 * 1024


def load_json_object(line: bytes) -> dict[str, Any]:
    """One JSONL record. ValueError says why a line is not a JSON object; callers add where."""
    try:
        record = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        msg = f"invalid JSON ({exc})"
        raise ValueError(msg) from None
    if not isinstance(record, dict):
        msg = f"expected a JSON object, got {type(record).__name__}"
        raise ValueError(msg)
    return record


def line_number_at(handle: BinaryIO, offset: int) -> int:
    """1-based number of the line starting at byte `offset` of an open file (error path only)."""
    count = 0
    remaining = offset
    while remaining > 0:
        chunk = handle.read(min(remaining, _CHUNK))
        if not chunk:
            break
        count += chunk.count(b"\n")
        remaining -= len(chunk)
    return count + 1
