"""The scan's reader of plain JSONL pretrain texts: one strict walk of every line, the texts
decoded straight into an Arrow string column.

`text_column` walks each line as strict JSON (RFC 8259: the grammar, escapes, no raw
control character in a string), finds the top-level text field and its decoded length,
and decodes the texts into Arrow buffers (`rawjson.decode_rows`), ~4x cheaper than
Arrow's JSON reader. It accepts only what Arrow's reader accepts and reads the same
texts from it; anything else (a line it refuses, a key written with escapes, a repeated
or missing field, a three-digit exponent) returns None and the block goes the usual way,
which names the bad record. The texts also come as an Arrow string_view array over the
same bytes, polars' own layout, so the filters' Series copies nothing.
"""
from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np
import pyarrow as pa

import mixprep.numba_cache  # noqa: F401 - a writable kernel cache before the first @njit(cache=True)
from mixprep.build.rawjson import (
    BACKSLASH,
    CLOSE_ARRAY,
    CLOSE_OBJECT,
    COLON,
    COMMA,
    OPEN_ARRAY,
    OPEN_OBJECT,
    QUOTE,
    code_unit,
    decode_rows,
    skip_space,
)
from mixprep.filters.intrinsics import bytes_between, trailing_zeros
from mixprep.filters.textstats import PADDING

_IN_OBJECT, _IN_ARRAY = 0, 1
_MAX_DEPTH = 64
_KEY, _VALUE, _AFTER_VALUE = 0, 1, 2  # what _strict_field expects next


@dataclass(frozen=True)
class TextColumn:
    """A block's texts read by `text_column`."""

    values: pa.LargeStringArray
    views: pa.Array
    """The same texts as an Arrow string_view array over the same bytes: polars' own
    layout, so a polars Series of it copies nothing (from `values` it would copy them all)."""
    spans: np.ndarray
    """int64 (rows, 2): each text's raw JSON string in the block (start, end), quotes excluded."""
    buffers: tuple[np.ndarray, np.ndarray]
    """The same bytes and n+1 offsets, followed by PADDING zero bytes: the compiled filters'
    layout (`TextBatch`), so they read the texts without a copy."""


def text_column(data: bytes, starts: np.ndarray, ends: np.ndarray, key: str) -> TextColumn | None:
    """Top-level string field `key` of every line `data[starts[i]:ends[i]]`, decoded; None
    unless every line is a strict JSON object holding the field once, as a string, in
    valid UTF-8."""
    buf = np.frombuffer(data, dtype=np.uint8)
    rows = len(starts)
    spans = np.empty((rows, 2), dtype=np.int64)
    decoded = np.empty(rows, dtype=np.int64)
    key_bytes = np.frombuffer(key.encode(), dtype=np.uint8)
    if _strict_fields(buf, starts.astype(np.int64), ends.astype(np.int64), key_bytes, spans, decoded) >= 0:
        return None
    offsets = np.zeros(rows + 1, dtype=np.int64)
    np.cumsum(decoded, out=offsets[1:])
    values = np.empty(int(offsets[-1]) + PADDING, dtype=np.uint8)
    values[int(offsets[-1]) :] = 0
    raw_starts = np.ascontiguousarray(spans[:, 0])
    if decode_rows(buf, raw_starts, spans[:, 1] - raw_starts, values, offsets, np.arange(rows, dtype=np.int64)) >= 0:
        return None  # cannot happen: the walk measured what the decoder writes
    data_buffer = pa.py_buffer(values)
    column = pa.LargeStringArray.from_buffers(rows, pa.py_buffer(offsets), data_buffer)
    try:
        column.validate(full=True)  # UTF-8, as the Arrow path checks it
    except pa.ArrowInvalid:
        return None
    return TextColumn(column, string_views(offsets, values, data_buffer), spans, (values, offsets))


def string_views(offsets: np.ndarray, values: np.ndarray, data_buffer: pa.Buffer) -> pa.Array:
    """An Arrow string_view array of the strings `values[offsets[k]:offsets[k + 1]]` (valid
    UTF-8, checked by the caller), sharing `data_buffer` (which holds `values`)."""
    if len(values) > np.iinfo(np.int32).max:
        return pa.LargeStringArray.from_buffers(len(offsets) - 1, pa.py_buffer(offsets), data_buffer).cast(pa.string_view())
    views = np.zeros((len(offsets) - 1, 16), dtype=np.uint8)
    _fill_views(offsets, values, views)
    return pa.Array.from_buffers(pa.string_view(), len(offsets) - 1, [None, pa.py_buffer(views), data_buffer])


@numba.njit(cache=True, nogil=True)
def _fill_views(offsets: np.ndarray, values: np.ndarray, views: np.ndarray) -> None:
    """Arrow's 16-byte string views (zeroed by the caller): the length (int32), then up to
    12 bytes inline, or the first 4 bytes, buffer 0 and the offset (int32)."""
    for k in range(len(offsets) - 1):
        start = offsets[k]
        length = offsets[k + 1] - start
        _put_int32(views, k, 0, length)
        if length <= 12:
            for j in range(length):
                views[k, 4 + j] = values[start + j]
        else:
            for j in range(4):
                views[k, 4 + j] = values[start + j]
            _put_int32(views, k, 12, start)


@numba.njit(cache=True, nogil=True, inline="always")
def _put_int32(views: np.ndarray, row: int, at: int, value: int) -> None:
    for j in range(4):
        views[row, at + j] = (value >> (8 * j)) & 0xFF


@numba.njit(cache=True, nogil=True)
def _strict_fields(
    data: np.ndarray, starts: np.ndarray, ends: np.ndarray, key: np.ndarray, spans: np.ndarray, decoded: np.ndarray
) -> int:
    """`_strict_field` for every line; the first line it refuses, or -1."""
    stack = np.empty(_MAX_DEPTH, dtype=np.uint8)
    for row in range(len(starts)):
        start, end, length = _strict_field(data, starts[row], ends[row], key, stack)
        if start < 0:
            return row
        spans[row, 0] = start
        spans[row, 1] = end
        decoded[row] = length
    return -1


@numba.njit(cache=True, nogil=True)
def _strict_field(data: np.ndarray, i: int, end: int, key: np.ndarray, stack: np.ndarray) -> tuple[int, int, int]:
    """Walk data[i:end] as one strict JSON object (RFC 8259; whitespace around it) and
    return its top-level string field `key`'s raw string (start, end) and decoded length;
    (-1, -1, -1) when the line is anything else, a top-level key is written with escapes,
    or the field is not there exactly once as a string. Deeper than _MAX_DEPTH is refused
    too (the usual path reads it)."""
    refused = (-1, -1, -1)
    i = skip_space(data, i, end)
    if i >= end or data[i] != OPEN_OBJECT:
        return refused
    stack[0] = _IN_OBJECT
    depth = 1
    i += 1
    found = 0
    field_start = field_end = field_length = -1
    state = _KEY
    first = True  # right after "{" or "[": the container may close at once
    while True:
        i = skip_space(data, i, end)
        if i >= end:
            return refused
        byte = data[i]
        if state == _AFTER_VALUE:
            if byte == COMMA:
                i += 1
                state = _KEY if stack[depth - 1] == _IN_OBJECT else _VALUE
                continue
            if byte != (CLOSE_OBJECT if stack[depth - 1] == _IN_OBJECT else CLOSE_ARRAY):
                return refused
            depth -= 1
            i += 1
            if depth == 0:
                break
            continue
        if state == _KEY:
            if first and byte == CLOSE_OBJECT:
                depth -= 1
                i += 1
                first = False
                state = _AFTER_VALUE
                if depth == 0:
                    break
                continue
            if byte != QUOTE:
                return refused
            close, _ = _strict_string(data, i + 1, end)
            if close < 0:
                return refused
            is_key = False
            if depth == 1:
                if _has_backslash(data, i + 1, close):
                    return refused  # an escaped key might spell the field
                is_key = close - (i + 1) == len(key)
                for k in range(len(key) if is_key else 0):
                    if data[i + 1 + k] != key[k]:
                        is_key = False
                        break
            i = skip_space(data, close + 1, end)
            if i >= end or data[i] != COLON:
                return refused
            i += 1
            first = False
            state = _VALUE
            if is_key:
                i = skip_space(data, i, end)
                if i >= end or data[i] != QUOTE:
                    return refused  # missing, or not a string
                close, length = _strict_string(data, i + 1, end)
                if close < 0:
                    return refused
                found += 1
                field_start, field_end, field_length = i + 1, close, length
                i = close + 1
                state = _AFTER_VALUE
            continue
        # state == _VALUE: an array's element or an object member's value
        if first and byte == CLOSE_ARRAY:
            depth -= 1  # never the top level: that is an object
            i += 1
            first = False
            state = _AFTER_VALUE
            continue
        first = False
        state = _AFTER_VALUE
        if byte == QUOTE:
            close, _ = _strict_string(data, i + 1, end)
            if close < 0:
                return refused
            i = close + 1
        elif byte == OPEN_OBJECT or byte == OPEN_ARRAY:
            if depth == _MAX_DEPTH:
                return refused
            stack[depth] = _IN_OBJECT if byte == OPEN_OBJECT else _IN_ARRAY
            depth += 1
            i += 1
            first = True
            state = _KEY if byte == OPEN_OBJECT else _VALUE
        elif byte == 116 or byte == 102 or byte == 110:  # true, false, null
            i = _literal_end(data, i, end)
            if i < 0:
                return refused
        else:
            i = _number_end(data, i, end)
            if i < 0:
                return refused
    if skip_space(data, i, end) != end or found != 1:
        return refused
    return field_start, field_end, field_length


@numba.njit(cache=True, nogil=True)
def _strict_string(data: np.ndarray, i: int, end: int) -> tuple[int, int]:
    """The quote closing the strict JSON string whose first byte is data[i], and its decoded
    length in bytes; (-1, -1) for a raw control character, an unknown escape, bad hex or a
    lone surrogate, or no closing quote before `end`."""
    length = 0
    while i < end:
        if i + 32 <= end:
            mask = bytes_between(data, i, QUOTE, QUOTE) | bytes_between(data, i, BACKSLASH, BACKSLASH)
            mask |= bytes_between(data, i, 0, 31)
            if mask == 0:
                i += 32
                length += 32
                continue
            run = trailing_zeros(mask)
            i += run
            length += run
        byte = data[i]
        if byte == QUOTE:
            return i, length
        if byte < 32:
            return -1, -1
        if byte != BACKSLASH:
            i += 1
            length += 1
            continue
        if i + 1 >= end:
            return -1, -1
        letter = data[i + 1]
        if letter != 117:
            if not _is_simple_escape(letter):
                return -1, -1
            i += 2
            length += 1
            continue
        if i + 6 > end:
            return -1, -1
        code = code_unit(data, i + 2)
        i += 6
        if code < 0 or 0xDC00 <= code <= 0xDFFF:
            return -1, -1
        if 0xD800 <= code <= 0xDBFF:
            if i + 6 > end or data[i] != BACKSLASH or data[i + 1] != 117:
                return -1, -1
            low = code_unit(data, i + 2)
            if not 0xDC00 <= low <= 0xDFFF:
                return -1, -1
            i += 6
            length += 4
        elif code < 0x80:
            length += 1
        elif code < 0x800:
            length += 2
        else:
            length += 3
    return -1, -1


@numba.njit(cache=True, nogil=True, inline="always")
def _is_simple_escape(letter: int) -> bool:
    return letter == 34 or letter == 92 or letter == 47 or letter == 98 or letter == 102 or letter == 110 or letter == 114 or letter == 116


@numba.njit(cache=True, nogil=True)
def _has_backslash(data: np.ndarray, i: int, end: int) -> bool:
    for k in range(i, end):
        if data[k] == BACKSLASH:
            return True
    return False


@numba.njit(cache=True, nogil=True)
def _literal_end(data: np.ndarray, i: int, end: int) -> int:
    """Index after `true`, `false` or `null` at data[i], or -1."""
    if data[i] == 116:
        word = (116, 114, 117, 101)
        size = 4
    elif data[i] == 110:
        word = (110, 117, 108, 108)
        size = 4
    else:
        if i + 5 > end or data[i + 1] != 97 or data[i + 2] != 108 or data[i + 3] != 115 or data[i + 4] != 101:
            return -1
        return i + 5
    if i + size > end:
        return -1
    for k in range(size):
        if data[i + k] != word[k]:
            return -1
    return i + size


@numba.njit(cache=True, nogil=True, inline="always")
def _is_digit(byte: int) -> bool:
    return 48 <= byte <= 57


@numba.njit(cache=True, nogil=True)
def _number_end(data: np.ndarray, i: int, end: int) -> int:
    """Index after the JSON number at data[i] (-?(0|[1-9]d*)(.d+)?([eE][+-]?d+)?), or -1;
    also -1 for an exponent of three digits or more."""
    if data[i] == 45:  # -
        i += 1
    if i >= end:
        return -1
    if data[i] == 48:
        i += 1
    elif 49 <= data[i] <= 57:
        while i < end and _is_digit(data[i]):
            i += 1
    else:
        return -1
    if i < end and data[i] == 46:  # .
        i += 1
        if i >= end or not _is_digit(data[i]):
            return -1
        while i < end and _is_digit(data[i]):
            i += 1
    if i < end and (data[i] == 101 or data[i] == 69):  # e, E
        i += 1
        if i < end and (data[i] == 43 or data[i] == 45):
            i += 1
        digits = 0
        while i < end and _is_digit(data[i]):
            i += 1
            digits += 1
        if digits == 0 or digits > 2:
            return -1  # Arrow's reader refuses 1e309 and beyond: leave three-digit exponents to it
    return i


