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

`strictjson` reads the texts at scan time with the same walk's rules, strictly.
"""
from __future__ import annotations

import numba
import numpy as np

import mixprep.numba_cache  # noqa: F401 - a writable kernel cache before the first @njit(cache=True)
from mixprep.filters.intrinsics import bytes_between, copy_bytes, trailing_zeros

# JSON's structural bytes (strictjson's walk reads them too).
QUOTE, BACKSLASH = 34, 92
OPEN_OBJECT, CLOSE_OBJECT, OPEN_ARRAY, CLOSE_ARRAY = 123, 125, 91, 93
COLON, COMMA = 58, 44


def locate_field(data: bytes, starts: np.ndarray, ends: np.ndarray, key: str) -> tuple[np.ndarray, np.ndarray]:
    """int64 (start, end) of top-level string field `key`'s raw JSON string in each line
    `data[starts[i]:ends[i]]`, quotes excluded; (-1, -1) where it is not found exactly once."""
    buf = np.frombuffer(data, dtype=np.uint8)
    out_start = np.empty(len(starts), dtype=np.int64)
    out_end = np.empty(len(starts), dtype=np.int64)
    _locate(buf, starts.astype(np.int64), ends.astype(np.int64), np.frombuffer(key.encode(), dtype=np.uint8), out_start, out_end)
    return out_start, out_end


def decode_rows(
    source: np.ndarray, starts: np.ndarray, lengths: np.ndarray, out: np.ndarray, out_offsets: np.ndarray, slots: np.ndarray
) -> int:
    """Decode raw JSON string k (`source[starts[k]:starts[k] + lengths[k]]`) into out slot
    `slots[k]` (`out[out_offsets[slot]:out_offsets[slot + 1]]`). Returns -1, or the first k
    whose decoded length differs from its slot's (the input changed since the scan)."""
    return int(_decode_rows(source, starts, lengths, out, out_offsets, slots))


# -- kernels ---------------------------------------------------------------------------

@numba.njit(cache=True, nogil=True, inline="always")
def skip_space(data: np.ndarray, i: int, end: int) -> int:
    while i < end and (data[i] == 32 or data[i] == 9 or data[i] == 10 or data[i] == 13):
        i += 1
    return i


@numba.njit(cache=True, nogil=True)
def _string_end(data: np.ndarray, i: int, end: int) -> tuple[int, bool]:
    """Index of the quote closing the string whose first byte is data[i], or -1; and whether it has escapes."""
    escapes = False
    while i < end:
        if i + 32 <= len(data):
            mask = bytes_between(data, i, QUOTE, QUOTE) | bytes_between(data, i, BACKSLASH, BACKSLASH)
            if mask == 0:
                i += 32
                continue
            i += trailing_zeros(mask)
            if i >= end:
                return -1, escapes
        byte = data[i]
        if byte == QUOTE:
            return i, escapes
        if byte == BACKSLASH:
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
        if byte == QUOTE:
            close, _ = _string_end(data, i + 1, end)
            if close < 0:
                return -1
            i = close + 1
            continue
        if byte == OPEN_OBJECT or byte == OPEN_ARRAY:
            depth += 1
        elif byte == CLOSE_OBJECT or byte == CLOSE_ARRAY:
            if depth == 0:
                return i  # the enclosing object's end: a scalar ended before it
            depth -= 1
            if depth == 0:
                return i + 1
        elif depth == 0 and (byte == COMMA or byte == 32 or byte == 9 or byte == 10 or byte == 13):
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
        i = skip_space(data, starts[row], end)
        if i >= end or data[i] != OPEN_OBJECT:
            continue
        i += 1
        found = 0
        value_start = -1
        value_end = -1
        ok = True
        while ok:
            i = skip_space(data, i, end)
            if i >= end:
                ok = False
                break
            if data[i] == CLOSE_OBJECT:
                break
            if data[i] == COMMA:
                i += 1
                continue
            if data[i] != QUOTE:
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
            i = skip_space(data, key_end + 1, end)
            if i >= end or data[i] != COLON:
                ok = False
                break
            i = skip_space(data, i + 1, end)
            if i >= end:
                ok = False
                break
            if data[i] == QUOTE:
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
def code_unit(source: np.ndarray, i: int) -> int:
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
            code = code_unit(source, i)
            i += 4
            if 0xD800 <= code <= 0xDBFF and i + 6 <= stop and source[i] == BACKSLASH and source[i + 1] == 117:
                low = code_unit(source, i + 2)
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
        elif letter == QUOTE or letter == BACKSLASH or letter == 47:
            out[at] = letter
        else:
            return -1
        at += 1
    return at


@numba.njit(cache=True, nogil=True, inline="always")
def _next_backslash(source: np.ndarray, i: int, stop: int) -> int:
    """Index of the first backslash in source[i:stop], or stop; 32 bytes per compare."""
    while i + 32 <= stop:
        mask = bytes_between(source, i, BACKSLASH, BACKSLASH)
        if mask != 0:
            return i + trailing_zeros(mask)
        i += 32
    while i < stop:
        if source[i] == BACKSLASH:
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
