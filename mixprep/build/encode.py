"""Output JSON lines by compiled code, with every line's length known before it is written.

A plain pretrain record's output line is `{"text":"<text>","source":"<name>"}` and a newline,
escaped as serde_json escapes strings (what polars' `struct.json_encode` writes, so the
bytes are the ones earlier versions wrote): `"` and `\\` get a backslash; backspace, tab,
newline, form feed and carriage return their short forms; the other bytes below 0x20
`\\u00XX` with lowercase hex; everything else, non-ASCII UTF-8 included, as it is.

The escaping is a function of each byte, so the scan counts each line's exact length
(`line_lengths`) while the text is in cache, the driver turns the lengths into the final
file's offsets, and each write task encodes its records straight into its part of the
final file (`encode_lines`). Other records are whole JSON lines already (`copy_lines`).
"""
from __future__ import annotations

import json

import numba
import numpy as np
import pyarrow as pa

import mixprep.numba_cache  # noqa: F401 - a writable kernel cache before the first @njit(cache=True)
from mixprep.filters.intrinsics import bytes_between, copy_bytes, popcount, trailing_zeros

_PREFIX = b'{"text":"'
_MIDDLE = b'","source":"'
_SUFFIX = b'"}\n'
# Per byte value: how many bytes it becomes inside a JSON string.
_ESCAPED_SIZE = np.ones(256, dtype=np.int64)
_ESCAPED_SIZE[:0x20] = 6
for _byte in b'\b\t\n\f\r"\\':
    _ESCAPED_SIZE[_byte] = 2
_SHORT_ESCAPES = np.zeros(256, dtype=np.uint8)
for _byte, _letter in zip(b'\b\t\n\f\r"\\', b'btnfr"\\', strict=True):
    _SHORT_ESCAPES[_byte] = _letter
_HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)


def string_buffers(values: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """(data uint8, offsets int64 n+1, rebased to 0) of a (large_)string/binary array, zero-copy where Arrow allows."""
    values = values.cast(pa.large_binary()) if not pa.types.is_large_binary(values.type) else values
    offsets = np.frombuffer(values.buffers()[1], dtype=np.int64)[values.offset : values.offset + len(values) + 1]
    data = values.buffers()[2]
    raw = np.frombuffer(data, dtype=np.uint8) if data is not None else np.zeros(0, dtype=np.uint8)
    start = int(offsets[0]) if len(offsets) else 0
    return raw[start : int(offsets[-1]) if len(offsets) else 0], offsets - start


def escaped(text: str) -> bytes:
    """`text` as it appears between the quotes of a JSON string (the kernels' escaping: the
    standard library's, without ASCII-only escapes, is the same byte for byte)."""
    return json.dumps(text, ensure_ascii=False)[1:-1].encode()


def line_lengths(data: np.ndarray, offsets: np.ndarray, source: str, rows: np.ndarray | None = None) -> np.ndarray:
    """uint64 length of each text's output line, newline included (`string_buffers` of the
    texts); of texts `rows` only, in that order, where given."""
    overhead = len(_PREFIX) + len(_MIDDLE) + len(escaped(source)) + len(_SUFFIX)
    starts, ends = (offsets[:-1], offsets[1:]) if rows is None else (offsets[rows], offsets[rows + 1])
    return (_escaped_lengths(data, starts, ends, _ESCAPED_SIZE) + overhead).astype(np.uint64)


def encode_lines(
    data: np.ndarray, offsets: np.ndarray, datasets: np.ndarray, names: list[str], out: np.ndarray, out_offsets: np.ndarray
) -> None:
    """Write text i's line at out[out_offsets[i]:out_offsets[i+1]]; `datasets[i]` indexes `names`.

    Raises AssertionError if a line's length differs from its slot: the scan counted it, so a
    difference is a bug, never something to write around."""
    tails = [_MIDDLE + escaped(name) + _SUFFIX for name in names]
    tail_data = np.frombuffer(b"".join(tails), dtype=np.uint8)
    tail_offsets = np.zeros(len(tails) + 1, dtype=np.int64)
    np.cumsum([len(t) for t in tails], out=tail_offsets[1:])
    prefix = np.frombuffer(_PREFIX, dtype=np.uint8)
    ok = _encode(
        data, offsets, datasets.astype(np.int64), prefix, tail_data, tail_offsets, out, out_offsets,
        _ESCAPED_SIZE, _SHORT_ESCAPES, _HEX,
    )
    assert ok, "an output line's length differs from the length counted at scan time"


def copy_lines(data: np.ndarray, offsets: np.ndarray, out: np.ndarray, out_offsets: np.ndarray) -> None:
    """Write value i (a whole JSON line) and a newline at out[out_offsets[i]:out_offsets[i+1]]."""
    ok = _copy_lines(data, offsets, out, out_offsets)
    assert ok, "an output line's length differs from the length counted at scan time"


# -- kernels ---------------------------------------------------------------------------

@numba.njit(cache=True, nogil=True, inline="always")
def _specials(data: np.ndarray, i: int) -> np.uint64:
    """Bit k set when byte i + k (of 32) is escaped: below 0x20, a quote or a backslash."""
    return bytes_between(data, i, 0, 31) | bytes_between(data, i, 34, 34) | bytes_between(data, i, 92, 92)


@numba.njit(cache=True, nogil=True)
def _escaped_lengths(data: np.ndarray, starts: np.ndarray, ends: np.ndarray, size: np.ndarray) -> np.ndarray:
    n = len(starts)
    out = np.empty(n, dtype=np.int64)
    for i in range(n):
        start, end = starts[i], ends[i]
        total = end - start
        j = start
        # 32 bytes per vector compare: a control byte adds 5 (\u00XX) less 4 for the
        # short forms (\b \t \n \f \r); a quote or a backslash adds 1.
        while j + 32 <= end:
            control = bytes_between(data, j, 0, 31)
            if control:
                short = bytes_between(data, j, 8, 10) | bytes_between(data, j, 12, 13)
                total += 5 * popcount(control) - 4 * popcount(short)
            total += popcount(bytes_between(data, j, 34, 34) | bytes_between(data, j, 92, 92))
            j += 32
        while j < end:
            total += size[data[j]] - 1
            j += 1
        out[i] = total
    return out


@numba.njit(cache=True, nogil=True, inline="always")
def _escape_into(
    src: np.ndarray, start: int, end: int, out: np.ndarray, at: int, size: np.ndarray, short: np.ndarray, hexdigits: np.ndarray
) -> int:
    for j in range(start, end):
        b = src[j]
        cost = size[b]
        if cost == 1:
            out[at] = b
            at += 1
        elif cost == 2:
            out[at] = 92  # backslash
            out[at + 1] = short[b]
            at += 2
        else:
            out[at] = 92
            out[at + 1] = 117  # u
            out[at + 2] = 48  # 0
            out[at + 3] = 48
            out[at + 4] = hexdigits[b >> 4]
            out[at + 5] = hexdigits[b & 15]
            at += 6
    return at


@numba.njit(cache=True, nogil=True)
def _encode(
    data: np.ndarray, offsets: np.ndarray, datasets: np.ndarray, prefix: np.ndarray, tails: np.ndarray,
    tail_offsets: np.ndarray, out: np.ndarray, out_offsets: np.ndarray, size: np.ndarray, short: np.ndarray,
    hexdigits: np.ndarray,
) -> bool:
    for i in range(len(offsets) - 1):
        at = out_offsets[i]
        # Every write below stays before `limit`, checked as it goes: a slot shorter than
        # its line (a bug) fails the call instead of writing into the next line or past `out`.
        limit = out_offsets[i + 1]
        d = datasets[i]
        tail = tail_offsets[d + 1] - tail_offsets[d]
        if limit > len(out) or at + len(prefix) + tail > limit:
            return False
        for k in range(len(prefix)):
            out[at + k] = prefix[k]
        at += len(prefix)
        limit -= tail  # where the text's escaped bytes end
        start, end = offsets[i], offsets[i + 1]
        run = start  # bytes [run, j) are copied as they are, in one go
        j = start
        while j + 32 <= end:
            mask = _specials(data, j)
            if mask == 0:
                j += 32
                continue
            k = j + trailing_zeros(mask)
            if at + k - run + 6 > limit + tail:  # an escape is at most 6 bytes; the tail is longer
                return False
            copy_bytes(out, at, data, run, k - run)
            at = _escape_into(data, k, k + 1, out, at + k - run, size, short, hexdigits)
            j = run = k + 1
        while j < end:
            if size[data[j]] != 1:
                if at + j - run + 6 > limit + tail:
                    return False
                copy_bytes(out, at, data, run, j - run)
                at = _escape_into(data, j, j + 1, out, at + j - run, size, short, hexdigits)
                run = j + 1
            j += 1
        if at + end - run != limit:
            return False
        copy_bytes(out, at, data, run, end - run)
        at += end - run
        for k in range(tail_offsets[d], tail_offsets[d + 1]):
            out[at] = tails[k]
            at += 1
    return True


@numba.njit(cache=True, nogil=True)
def _copy_lines(data: np.ndarray, offsets: np.ndarray, out: np.ndarray, out_offsets: np.ndarray) -> bool:
    for i in range(len(offsets) - 1):
        at = out_offsets[i]
        length = offsets[i + 1] - offsets[i]
        if at + length + 1 != out_offsets[i + 1] or out_offsets[i + 1] > len(out):
            return False
        copy_bytes(out, at, data, offsets[i], length)
        out[at + length] = 10
    return True
