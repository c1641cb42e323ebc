"""Kept texts read back from the input instead of copied: where a field's JSON string
lies in its line, and that string decoded.

The scan of a plain local JSONL file records, for each kept pretrain text, the byte
range of its JSON string in the input (`locate_field`: between the quotes, escapes and
all) instead of writing the text to a scan file; the write stage reads that range back
from the input (page cache or disk) and decodes it (`decode_rows`) into exactly the
bytes Arrow's JSON reader produced at scan time, so the output does not change. Each
kept byte is then read twice from the input and written once, to the output.

A line whose key is written with escapes (`"te\\u0078t"`), that repeats the key, or that
the scanner cannot follow gets no range (-1), and its text is copied to the scan file as
before. The decoded length is checked against the length the scan saw: an input edited
between scan and write is an error, never a different text.

`text_column` is the scan's own reader for such files: one strict walk of every line
(the JSON grammar, escapes, no raw control character in a string) finds the field and
its decoded length, and the texts are decoded straight into an Arrow string column,
~4x cheaper than Arrow's JSON reader. It accepts only what Arrow's reader accepts and
reads the same texts from it; anything else (a line it refuses, a key written with
escapes, a repeated or missing field) returns None and the block goes the usual way,
which names the bad record.
"""
from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np
import pyarrow as pa

import mixprep.numba_cache  # noqa: F401 - a writable kernel cache before the first @njit(cache=True)
from mixprep.filters.intrinsics import bytes_between, copy_bytes, trailing_zeros

_QUOTE, _BACKSLASH = 34, 92
_OPEN_OBJECT, _CLOSE_OBJECT, _OPEN_ARRAY, _CLOSE_ARRAY = 123, 125, 91, 93
_COLON, _COMMA = 58, 44
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


def locate_field(data: bytes, starts: np.ndarray, ends: np.ndarray, key: str) -> tuple[np.ndarray, np.ndarray]:
    """int64 (start, end) of top-level string field `key`'s raw JSON string in each line
    `data[starts[i]:ends[i]]`, quotes excluded; (-1, -1) where it is not found exactly once."""
    buf = np.frombuffer(data, dtype=np.uint8)
    out_start = np.empty(len(starts), dtype=np.int64)
    out_end = np.empty(len(starts), dtype=np.int64)
    _locate(buf, starts.astype(np.int64), ends.astype(np.int64), np.frombuffer(key.encode(), dtype=np.uint8), out_start, out_end)
    return out_start, out_end


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
    values = np.empty(int(offsets[-1]), dtype=np.uint8)
    raw_starts = np.ascontiguousarray(spans[:, 0])
    if _decode_rows(buf, raw_starts, spans[:, 1] - raw_starts, values, offsets, np.arange(rows, dtype=np.int64)) >= 0:
        return None  # cannot happen: the walk measured what the decoder writes
    data_buffer = pa.py_buffer(values)
    column = pa.LargeStringArray.from_buffers(rows, pa.py_buffer(offsets), data_buffer)
    try:
        column.validate(full=True)  # UTF-8, as the Arrow path checks it
    except pa.ArrowInvalid:
        return None
    return TextColumn(column, string_views(offsets, values, data_buffer), spans)


def string_views(offsets: np.ndarray, values: np.ndarray, data_buffer: pa.Buffer) -> pa.Array:
    """An Arrow string_view array of the strings `values[offsets[k]:offsets[k + 1]]` (valid
    UTF-8, checked by the caller), sharing `data_buffer` (which holds `values`)."""
    if len(values) > np.iinfo(np.int32).max:
        return pa.array(pa.LargeStringArray.from_buffers(len(offsets) - 1, pa.py_buffer(offsets), data_buffer), pa.string_view())
    views = np.zeros((len(offsets) - 1, 16), dtype=np.uint8)
    _fill_views(offsets, values, views)
    return pa.Array.from_buffers(pa.string_view(), len(offsets) - 1, [None, pa.py_buffer(views), data_buffer])


def decode_rows(
    source: np.ndarray, starts: np.ndarray, lengths: np.ndarray, out: np.ndarray, out_offsets: np.ndarray, slots: np.ndarray
) -> int:
    """Decode raw JSON string k (`source[starts[k]:starts[k] + lengths[k]]`) into out slot
    `slots[k]` (`out[out_offsets[slot]:out_offsets[slot + 1]]`). Returns -1, or the first k
    whose decoded length differs from its slot's (the input changed since the scan)."""
    return int(_decode_rows(source, starts, lengths, out, out_offsets, slots))


# -- kernels ---------------------------------------------------------------------------

@numba.njit(cache=True, nogil=True, inline="always")
def _skip_space(data: np.ndarray, i: int, end: int) -> int:
    while i < end and (data[i] == 32 or data[i] == 9 or data[i] == 10 or data[i] == 13):
        i += 1
    return i


@numba.njit(cache=True, nogil=True)
def _string_end(data: np.ndarray, i: int, end: int) -> tuple[int, bool]:
    """Index of the quote closing the string whose first byte is data[i], or -1; and whether it has escapes."""
    escapes = False
    while i < end:
        if i + 32 <= len(data):
            mask = bytes_between(data, i, _QUOTE, _QUOTE) | bytes_between(data, i, _BACKSLASH, _BACKSLASH)
            if mask == 0:
                i += 32
                continue
            i += trailing_zeros(mask)
            if i >= end:
                return -1, escapes
        byte = data[i]
        if byte == _QUOTE:
            return i, escapes
        if byte == _BACKSLASH:
            escapes = True
            i += 2
        else:
            i += 1
    return -1, escapes


@numba.njit(cache=True, nogil=True)
def _value_end(data: np.ndarray, i: int, end: int) -> int:
    """Index just past the JSON value starting at data[i] (not a string), or -1."""
    depth = 0
    while i < end:
        byte = data[i]
        if byte == _QUOTE:
            close, _ = _string_end(data, i + 1, end)
            if close < 0:
                return -1
            i = close + 1
            continue
        if byte == _OPEN_OBJECT or byte == _OPEN_ARRAY:
            depth += 1
        elif byte == _CLOSE_OBJECT or byte == _CLOSE_ARRAY:
            if depth == 0:
                return i  # the enclosing object's end: a scalar ended before it
            depth -= 1
            if depth == 0:
                return i + 1
        elif depth == 0 and (byte == _COMMA or byte == 32 or byte == 9 or byte == 10 or byte == 13):
            return i
        i += 1
    return i if depth == 0 else -1


@numba.njit(cache=True, nogil=True)
def _locate(
    data: np.ndarray, starts: np.ndarray, ends: np.ndarray, key: np.ndarray, out_start: np.ndarray, out_end: np.ndarray
) -> None:
    for row in range(len(starts)):
        out_start[row] = -1
        out_end[row] = -1
        end = ends[row]
        i = _skip_space(data, starts[row], end)
        if i >= end or data[i] != _OPEN_OBJECT:
            continue
        i += 1
        found = 0
        value_start = -1
        value_end = -1
        ok = True
        while ok:
            i = _skip_space(data, i, end)
            if i >= end:
                ok = False
                break
            if data[i] == _CLOSE_OBJECT:
                break
            if data[i] == _COMMA:
                i += 1
                continue
            if data[i] != _QUOTE:
                ok = False
                break
            key_end, key_escapes = _string_end(data, i + 1, end)
            if key_end < 0 or key_escapes:
                ok = False  # an escaped key might spell the field: leave the line to the scan file
                break
            is_key = key_end - (i + 1) == len(key)
            if is_key:
                for k in range(len(key)):
                    if data[i + 1 + k] != key[k]:
                        is_key = False
                        break
            i = _skip_space(data, key_end + 1, end)
            if i >= end or data[i] != _COLON:
                ok = False
                break
            i = _skip_space(data, i + 1, end)
            if i >= end:
                ok = False
                break
            if data[i] == _QUOTE:
                close, _ = _string_end(data, i + 1, end)
                if close < 0:
                    ok = False
                    break
                if is_key:
                    found += 1
                    value_start = i + 1
                    value_end = close
                i = close + 1
            else:
                if is_key:
                    ok = False
                    break
                i = _value_end(data, i, end)
                if i < 0:
                    ok = False
        if ok and found == 1:
            out_start[row] = value_start
            out_end[row] = value_end


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
    i = _skip_space(data, i, end)
    if i >= end or data[i] != _OPEN_OBJECT:
        return refused
    stack[0] = _IN_OBJECT
    depth = 1
    i += 1
    found = 0
    field_start = field_end = field_length = -1
    state = _KEY
    first = True  # right after "{" or "[": the container may close at once
    while True:
        i = _skip_space(data, i, end)
        if i >= end:
            return refused
        byte = data[i]
        if state == _AFTER_VALUE:
            if byte == _COMMA:
                i += 1
                state = _KEY if stack[depth - 1] == _IN_OBJECT else _VALUE
                continue
            if byte != (_CLOSE_OBJECT if stack[depth - 1] == _IN_OBJECT else _CLOSE_ARRAY):
                return refused
            depth -= 1
            i += 1
            if depth == 0:
                break
            continue
        if state == _KEY:
            if first and byte == _CLOSE_OBJECT:
                depth -= 1
                i += 1
                first = False
                state = _AFTER_VALUE
                if depth == 0:
                    break
                continue
            if byte != _QUOTE:
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
            i = _skip_space(data, close + 1, end)
            if i >= end or data[i] != _COLON:
                return refused
            i += 1
            first = False
            state = _VALUE
            if is_key:
                i = _skip_space(data, i, end)
                if i >= end or data[i] != _QUOTE:
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
        if first and byte == _CLOSE_ARRAY:
            depth -= 1  # never the top level: that is an object
            i += 1
            first = False
            state = _AFTER_VALUE
            continue
        first = False
        state = _AFTER_VALUE
        if byte == _QUOTE:
            close, _ = _strict_string(data, i + 1, end)
            if close < 0:
                return refused
            i = close + 1
        elif byte == _OPEN_OBJECT or byte == _OPEN_ARRAY:
            if depth == _MAX_DEPTH:
                return refused
            stack[depth] = _IN_OBJECT if byte == _OPEN_OBJECT else _IN_ARRAY
            depth += 1
            i += 1
            first = True
            state = _KEY if byte == _OPEN_OBJECT else _VALUE
        elif byte == 116 or byte == 102 or byte == 110:  # true, false, null
            i = _literal_end(data, i, end)
            if i < 0:
                return refused
        else:
            i = _number_end(data, i, end)
            if i < 0:
                return refused
    if _skip_space(data, i, end) != end or found != 1:
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
            mask = bytes_between(data, i, _QUOTE, _QUOTE) | bytes_between(data, i, _BACKSLASH, _BACKSLASH)
            mask |= bytes_between(data, i, 0, 31)
            if mask == 0:
                i += 32
                length += 32
                continue
            run = trailing_zeros(mask)
            i += run
            length += run
        byte = data[i]
        if byte == _QUOTE:
            return i, length
        if byte < 32:
            return -1, -1
        if byte != _BACKSLASH:
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
        code = _code_unit(data, i + 2)
        i += 6
        if code < 0 or 0xDC00 <= code <= 0xDFFF:
            return -1, -1
        if 0xD800 <= code <= 0xDBFF:
            if i + 6 > end or data[i] != _BACKSLASH or data[i + 1] != 117:
                return -1, -1
            low = _code_unit(data, i + 2)
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
        if data[k] == _BACKSLASH:
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


@numba.njit(cache=True, nogil=True, inline="always")
def _hex_value(byte: int) -> int:
    if 48 <= byte <= 57:
        return byte - 48
    if 97 <= byte <= 102:
        return byte - 87
    if 65 <= byte <= 70:
        return byte - 55
    return -1


@numba.njit(cache=True, nogil=True, inline="always")
def _code_unit(source: np.ndarray, i: int) -> int:
    value = 0
    for k in range(4):
        digit = _hex_value(source[i + k])
        if digit < 0:
            return -1
        value = value * 16 + digit
    return value


@numba.njit(cache=True, nogil=True)
def _decode_one(source: np.ndarray, i: int, stop: int, out: np.ndarray, at: int, limit: int) -> int:
    """Decode source[i:stop] into out from `at`; the index after the last byte written, or -1
    when it would pass `limit` or the string is not what the scan read."""
    while i < stop:
        run = _next_backslash(source, i, stop) - i  # bytes before the next escape, copied at once
        if run:
            if at + run > limit:
                return -1
            copy_bytes(out, at, source, i, run)
            at += run
            i += run
            continue
        if i + 1 >= stop:
            return -1
        letter = source[i + 1]
        i += 2
        if letter == 117:  # \uXXXX, a surrogate pair as two
            if i + 4 > stop:
                return -1
            code = _code_unit(source, i)
            i += 4
            if 0xD800 <= code <= 0xDBFF and i + 6 <= stop and source[i] == _BACKSLASH and source[i + 1] == 117:
                low = _code_unit(source, i + 2)
                if 0xDC00 <= low <= 0xDFFF:
                    code = 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00)
                    i += 6
            if code < 0 or 0xD800 <= code <= 0xDFFF:
                return -1  # a lone surrogate: Arrow's reader refuses it, so the scan never kept one
            if code < 0x80:
                size = 1
            elif code < 0x800:
                size = 2
            elif code < 0x10000:
                size = 3
            else:
                size = 4
            if at + size > limit:
                return -1
            if size == 1:
                out[at] = code
            elif size == 2:
                out[at] = 0xC0 | (code >> 6)
                out[at + 1] = 0x80 | (code & 0x3F)
            elif size == 3:
                out[at] = 0xE0 | (code >> 12)
                out[at + 1] = 0x80 | ((code >> 6) & 0x3F)
                out[at + 2] = 0x80 | (code & 0x3F)
            else:
                out[at] = 0xF0 | (code >> 18)
                out[at + 1] = 0x80 | ((code >> 12) & 0x3F)
                out[at + 2] = 0x80 | ((code >> 6) & 0x3F)
                out[at + 3] = 0x80 | (code & 0x3F)
            at += size
            continue
        if at >= limit:
            return -1
        if letter == 110:
            out[at] = 10
        elif letter == 116:
            out[at] = 9
        elif letter == 114:
            out[at] = 13
        elif letter == 98:
            out[at] = 8
        elif letter == 102:
            out[at] = 12
        elif letter == _QUOTE or letter == _BACKSLASH or letter == 47:
            out[at] = letter
        else:
            return -1
        at += 1
    return at


@numba.njit(cache=True, nogil=True, inline="always")
def _next_backslash(source: np.ndarray, i: int, stop: int) -> int:
    """Index of the first backslash in source[i:stop], or stop; 32 bytes per compare."""
    while i + 32 <= stop:
        mask = bytes_between(source, i, _BACKSLASH, _BACKSLASH)
        if mask != 0:
            return i + trailing_zeros(mask)
        i += 32
    while i < stop:
        if source[i] == _BACKSLASH:
            return i
        i += 1
    return stop


@numba.njit(cache=True, nogil=True)
def _decode_rows(
    source: np.ndarray, starts: np.ndarray, lengths: np.ndarray, out: np.ndarray, out_offsets: np.ndarray, slots: np.ndarray
) -> int:
    for k in range(len(starts)):
        slot = slots[k]
        begin = out_offsets[slot]
        limit = out_offsets[slot + 1]
        start = starts[k]
        stop = start + lengths[k]
        if stop > len(source) or limit > len(out):
            return k
        # One pass: runs without escapes are copied whole (a plain text is a single run).
        at = _decode_one(source, start, stop, out, begin, limit)
        if at != limit:
            return k
    return -1
