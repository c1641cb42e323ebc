"""JSON lines, one record at a time: the two helpers that building and serving share.

Both sides read JSONL written by people, so both report a bad record the same way:
`load_json_object` says what is wrong with one line, `line_number_at` turns a byte
offset into the 1-based line number that an error message names.
"""
from __future__ import annotations

import json
import re
from typing import Any, BinaryIO

import orjson

_CHUNK = 4 * 1024 * 1024
# orjson reads integers past 64 bits as floats (1.2345678901234568e+29): a line holding a run
# of 20 or more digits is parsed again by the standard library, which keeps every digit.
_LONG_DIGITS = re.compile(rb"[0-9]{20}")


def load_json_object(line: bytes) -> dict[str, Any]:
    """One JSONL record. ValueError says why a line is not a JSON object; callers add where."""
    try:
        record = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        try:
            bytes(line).decode("utf-8")
        except UnicodeDecodeError as bad:
            msg = f"invalid UTF-8 (byte 0x{bytes(line)[bad.start]:02x} at column {bad.start + 1})"
            raise ValueError(msg) from None
        msg = f"invalid JSON ({exc})"
        raise ValueError(msg) from None
    if not isinstance(record, dict):
        msg = f"expected a JSON object, got {type(record).__name__}"
        raise ValueError(msg)
    if _LONG_DIGITS.search(line):
        record = json.loads(bytes(line))
    return record


def dump_json(value: Any) -> bytes:
    """Compact JSON, UTF-8 as is; integers past 64 bits (which orjson refuses) written exactly."""
    try:
        return orjson.dumps(value)
    except orjson.JSONEncodeError:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()


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
