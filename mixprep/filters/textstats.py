"""A record batch's texts as the compiled filters read them, and the helpers they share.

`TextBatch` holds one UTF-8 copy of a batch's texts (Arrow's data buffer followed by
PADDING zero bytes, so a kernel may load 8 bytes anywhere without a bounds branch) and
their n+1 offsets, made once per batch and shared by every compiled feature: Gopher's
statistics (`gopher`), C4's line cleaning (`c4`) and language id (`langid`). The kernels
take the rows to compute, so a feature that runs only on the rows no earlier filter
removed reads them in place instead of from a gathered copy. Nothing is copied until a
kernel asks (a chain of polars-only filters never does), and nothing at all when the
batch's reader decoded the texts into that layout already (`TextBatch(texts, buffers)`:
the build's JSONL reader, `strictjson.text_column`).

Compilation happens once per machine (numba's on-disk cache, `cache=True`); a worker
process loads the compiled code in well under a second.
"""
from __future__ import annotations

import functools

import numba
import numpy as np
import polars as pl
import pyarrow as pa

import mixprep.numba_cache  # noqa: F401 - a writable kernel cache before the first @njit(cache=True)
from mixprep.filters.intrinsics import bytes_between, load_u64, popcount, trailing_zeros

_HASH_SEED = np.uint64(0xCBF29CE484222325)  # FNV-1a's offset basis: any odd 64-bit constant would do
_MIX_1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX_2 = np.uint64(0x94D049BB133111EB)


def utf8_buffers(texts: pl.Series, padding: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Texts (String or Binary) -> (uint8 data, int64 offsets of n+1); a null reads as empty.

    Zero-copy where Arrow allows. With `padding`, the data is a copy followed by that many
    zero bytes, so a kernel may load 8 bytes at any text position without a bounds branch.
    """
    binary = texts.dtype == pl.Binary
    array = texts.fill_null(b"" if binary else "").to_arrow()
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    wanted = pa.large_binary() if binary else pa.large_string()
    if array.type != wanted:
        array = array.cast(wanted)
    offsets = np.frombuffer(array.buffers()[1], dtype=np.int64)[array.offset : array.offset + len(array) + 1]
    data = array.buffers()[2]
    buffer = np.frombuffer(data, dtype=np.uint8) if data is not None else np.zeros(0, dtype=np.uint8)
    if len(offsets) == 0:
        offsets = np.zeros(1, dtype=np.int64)
    if padding:
        padded = np.zeros(int(offsets[-1]) + padding, dtype=np.uint8)
        padded[: offsets[-1]] = buffer[: offsets[-1]]
        buffer = padded
    return buffer, offsets


PADDING = 64
"""Zero bytes after the texts: the kernels below read past a word's end (8-byte loads) and
a text's last 64-byte block."""


class TextBatch:
    """A record batch's texts as the kernels read them (see the module's doc)."""

    def __init__(self, texts: pl.Series, buffers: tuple[np.ndarray, np.ndarray] | None = None) -> None:
        """`buffers`: the texts' (data, offsets) in the kernels' layout already (PADDING zero
        bytes after the last text), where the caller has them; else copied when first asked."""
        self.texts = texts
        self.shared: dict[str, object] = {}
        """What one kernel derived from the whole batch for others to reuse (the English words)."""
        if buffers is not None:
            data, offsets = buffers
            end = int(offsets[-1])
            if len(offsets) != len(texts) + 1 or len(data) < end + PADDING or data[end : end + PADDING].any():
                msg = "TextBatch buffers need n+1 offsets and PADDING zero bytes after the texts"
                raise ValueError(msg)
            self.__dict__["_buffers"] = buffers  # what the cached property below would compute

    def __len__(self) -> int:
        return len(self.texts)

    def texts_at(self, rows: np.ndarray) -> pl.Series:
        """The texts of `rows`, in that order (the series itself when they are all rows in order)."""
        if len(rows) == len(self) and np.array_equal(rows, np.arange(len(self))):
            return self.texts
        return self.texts.gather(rows)

    @property
    def has_buffers(self) -> bool:
        """Whether the buffers exist already (given, or copied for an earlier kernel), so
        that reading them costs nothing more."""
        return "_buffers" in self.__dict__

    @functools.cached_property
    def _buffers(self) -> tuple[np.ndarray, np.ndarray]:
        return utf8_buffers(self.texts, padding=PADDING)

    @property
    def data(self) -> np.ndarray:
        """uint8: the texts back to back, then PADDING zero bytes."""
        return self._buffers[0]

    @property
    def offsets(self) -> np.ndarray:
        """int64 (n+1): text d is data[offsets[d]:offsets[d + 1]]."""
        return self._buffers[1]


def character_counts(batch: TextBatch, rows: np.ndarray) -> np.ndarray:
    """int64 characters of the texts `rows` (a null counts 0), from the batch's buffers."""
    return _character_counts(batch.data, batch.offsets, np.asarray(rows, dtype=np.int64))


@numba.njit(cache=True, nogil=True)
def _character_counts(data: np.ndarray, offsets: np.ndarray, rows: np.ndarray) -> np.ndarray:
    out = np.empty(len(rows), dtype=np.int64)
    for k in range(len(rows)):
        out[k] = characters(data, offsets[rows[k]], offsets[rows[k] + 1])
    return out


def batch_rows(texts: pl.Series | TextBatch, rows: np.ndarray | None) -> tuple[TextBatch, np.ndarray]:
    batch = texts if isinstance(texts, TextBatch) else TextBatch(texts)
    return batch, np.arange(len(batch), dtype=np.int64) if rows is None else np.asarray(rows, dtype=np.int64)


# -- shared compiled helpers -------------------------------------------------------------

@numba.njit(inline="always", cache=True)
def mix(h: np.uint64) -> np.uint64:
    """splitmix64's finalizer: spreads a hash over a table's low bits."""
    h = (h ^ (h >> np.uint64(30))) * _MIX_1
    h = (h ^ (h >> np.uint64(27))) * _MIX_2
    return h ^ (h >> np.uint64(31))


@numba.njit(inline="always", cache=True)
def hash_bytes(data: np.ndarray, start: int, end: int) -> np.uint64:
    """64-bit hash of data[start:end], eight bytes per step.

    Each step folds one unaligned 8-byte load in with one multiply, so the serial chain is
    one multiply per 8 bytes rather than one per byte (FNV-1a). The last 1-7 bytes are one
    load with the bytes past `end` masked off (`data` has PADDING bytes after the texts).
    """
    h = _HASH_SEED ^ np.uint64(end - start)
    i = start
    while i + 8 <= end:
        h = (h ^ load_u64(data, i)) * _MIX_1
        h ^= h >> np.uint64(29)
        i += 8
    x = load_u64(data, i) & ((np.uint64(1) << np.uint64(8 * (end - i))) - np.uint64(1))  # the last 0-7 bytes
    return mix((h ^ x) * _MIX_2)


@numba.njit(cache=True)
def table_size(count: int) -> int:
    """A power of two of at least 2 * count (and 16): an open-addressing table's slots."""
    capacity = 16
    while capacity < 2 * count:
        capacity *= 2
    return capacity


def most_bytes(offsets: np.ndarray, rows: np.ndarray) -> int:
    """The longest of the texts `rows`, in bytes: scratch arrays sized by it serve every text."""
    return int(np.max(offsets[rows + 1] - offsets[rows])) if len(rows) else 0


@numba.njit(cache=True)
def decode(data: np.ndarray, start: int, end: int, points: np.ndarray, positions: np.ndarray) -> int:
    """The code points of data[start:end] (valid UTF-8) into points, the byte offset of each
    into positions (and `end` after the last); returns how many."""
    n = 0
    i = start
    while i < end:
        b0 = np.int64(data[i])
        positions[n] = i
        if b0 < 0x80:
            points[n] = b0
            i += 1
        elif b0 < 0xE0:
            points[n] = ((b0 & 0x1F) << 6) | (np.int64(data[i + 1]) & 0x3F)
            i += 2
        elif b0 < 0xF0:
            points[n] = ((b0 & 0x0F) << 12) | ((np.int64(data[i + 1]) & 0x3F) << 6) | (np.int64(data[i + 2]) & 0x3F)
            i += 3
        else:
            points[n] = (((b0 & 0x07) << 18) | ((np.int64(data[i + 1]) & 0x3F) << 12)
                         | ((np.int64(data[i + 2]) & 0x3F) << 6) | (np.int64(data[i + 3]) & 0x3F))
            i += 4
        n += 1
    positions[n] = end
    return n


@numba.njit(inline="always", cache=True)
def decode_one(data: np.ndarray, i: int) -> tuple[int, int]:
    """(code point, byte length) of the non-ASCII UTF-8 character at data[i]."""
    b0 = np.int64(data[i])
    if b0 < 0xE0:
        return ((b0 & 0x1F) << 6) | (np.int64(data[i + 1]) & 0x3F), 2
    if b0 < 0xF0:
        return ((b0 & 0x0F) << 12) | ((np.int64(data[i + 1]) & 0x3F) << 6) | (np.int64(data[i + 2]) & 0x3F), 3
    return (((b0 & 0x07) << 18) | ((np.int64(data[i + 1]) & 0x3F) << 12)
            | ((np.int64(data[i + 2]) & 0x3F) << 6) | (np.int64(data[i + 3]) & 0x3F)), 4


@numba.njit(inline="always", cache=True)
def equals_row(points: np.ndarray, start: int, rows: np.ndarray, k: int, n: int) -> bool:
    """points[start:start + n] equals the first n values of rows[k] (a word or phrase table)."""
    for j in range(n):
        if points[start + j] != rows[k, j]:
            return False
    return True


@numba.njit(inline="always", cache=True)
def char_flags(data: np.ndarray, i: int, flags: np.ndarray) -> tuple[int, int]:
    """(`flags` of the UTF-8 character at data[i], its length in bytes)."""
    if data[i] < 0x80:
        return flags[data[i]], 1
    cp, length = decode_one(data, i)
    return flags[cp], length


@numba.njit(inline="always", cache=True)
def next_line(data: np.ndarray, i: int, end: int) -> tuple[int, int]:
    """(where the line starting at data[i] ends, where the next begins), as `str.splitlines()`
    splits UTF-8 text: at \\n \\r \\r\\n \\v \\f \\x1c-\\x1e U+0085 U+2028 U+2029. A continuation
    byte (0x80-0xBF) is never one of the bytes tested, so the walk steps bytes, not characters.
    Whole 32-byte blocks without a byte that could start a break are skipped in one compare."""
    while i < end:
        if i + 32 <= end:
            candidates = bytes_between(data, i, 0, 30) | bytes_between(data, i, 0xC2, 0xC2) | bytes_between(data, i, 0xE2, 0xE2)
            if candidates == 0:
                i += 32
                continue
            i += np.int64(trailing_zeros(candidates))
        b = data[i]
        if b < 0x1F:
            if b == 10 or b == 11 or b == 12 or b == 28 or b == 29 or b == 30:
                return i, i + 1
            if b == 13:
                return i, i + 2 if i + 1 < end and data[i + 1] == 10 else i + 1
        elif b == 0xC2:
            if i + 1 < end and data[i + 1] == 0x85:
                return i, i + 2
        elif b == 0xE2:
            if i + 2 < end and data[i + 1] == 0x80 and (data[i + 2] == 0xA8 or data[i + 2] == 0xA9):
                return i, i + 3
        i += 1
    return end, end


@numba.njit(inline="always", cache=True)
def ascii_chunk(data: np.ndarray, i: int, end: int) -> tuple[int, int, int]:
    """The whitespace-separated chunk of data[i:end] that starts at or after i, found 32 bytes at
    a time: (its start, its end, how many of its bytes from the start are ASCII letters and
    digits: all of them for a plain word, all but one for "word,"). The end is -1 where
    a byte walk must decide: a byte >= 128 before the next ASCII whitespace (which may be
    whitespace itself), no whitespace in the 32 bytes, or fewer than 32 bytes left."""
    while i + 32 <= end:
        space = bytes_between(data, i, 9, 13) | bytes_between(data, i, 28, 32)  # ASCII str.isspace
        if space & np.uint64(1) == 0:
            stop = space | bytes_between(data, i, 128, 255)
            n = np.int64(trailing_zeros(stop))
            if n >= 32 or (space >> np.uint64(n)) & np.uint64(1) == 0:
                return i, np.int64(-1), np.int64(0)
            alnum = bytes_between(data, i, 48, 57) | bytes_between(data, i, 65, 90) | bytes_between(data, i, 97, 122)
            return i, i + n, min(np.int64(trailing_zeros(~alnum)), n)
        i += np.int64(trailing_zeros(~space))  # past the whitespace (all 32 bytes of it at most)
    return i, np.int64(-1), np.int64(0)


@numba.njit(inline="always", cache=True)
def characters(data: np.ndarray, start: int, end: int) -> int:
    """Characters of the UTF-8 text data[start:end]: its bytes that do not continue one, 32 at a time."""
    n = end - start
    i = start
    while i + 32 <= end:
        n -= np.int64(popcount(bytes_between(data, i, 0x80, 0xBF)))
        i += 32
    while i < end:
        n -= (data[i] & 0xC0) == 0x80
        i += 1
    return n


@numba.njit(inline="always", cache=True)
def last_char(data: np.ndarray, lo: int, hi: int) -> tuple[int, int]:
    """(code point, start) of the last character of the UTF-8 text data[lo:hi] (hi > lo)."""
    b = data[hi - 1]
    if b < 0x80:
        return np.int64(b), hi - 1
    s = hi - 1
    while s > lo and data[s] & 0xC0 == 0x80:
        s -= 1
    return decode_one(data, s)[0], s


@numba.njit(inline="always", cache=True)
def strip_span(data: np.ndarray, lo: int, hi: int, flags: np.ndarray, space: int) -> tuple[int, int]:
    """data[lo:hi] without leading and trailing characters whose `flags` have the `space` bit (`str.strip()`)."""
    while lo < hi:
        f, length = char_flags(data, lo, flags)
        if not f & space:
            break
        lo += length
    while hi > lo:
        cp, s = last_char(data, lo, hi)
        if not flags[cp] & space:
            break
        hi = s
    return lo, hi
