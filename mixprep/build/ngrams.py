"""Word n-gram hashes in compiled code: what decontamination compares.

A text's words are what `words_of` describes: maximal runs of letters and digits, case
folded (ASCII, Latin-1, Greek and Cyrillic capitals), with every Han, kana or other CJK
ideograph a word of its own (those scripts write no spaces, so a 13-gram is 13
characters), and punctuation, symbols, emoji and white space between words dropped. So
"The QUICK, brown fox!" and "the quick brown fox" have the same n-grams. An n-gram's
hash is a polynomial of its words' 64-bit hashes, rolled one word at a time, then mixed;
both sides (the evaluation sets' index and every training record) go through these
same kernels, so the normalization only has to be consistent, not canonical Unicode.

The index is an open-addressing hash table (linear probing, at most half full, key 0
meaning empty) with the smallest evaluation record id per n-gram: a scan task maps it
read-only and probes once per training word.
"""
from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np

import mixprep.numba_cache  # noqa: F401 - a writable kernel cache before the first @njit(cache=True)
from mixprep.build.minhash import mix64

_FNV_OFFSET = np.uint64(0xCBF29CE484222325)
_FNV_PRIME = np.uint64(0x100000001B3)
_BASE = np.uint64(0x9E3779B97F4A7C15)  # odd: multiplying by it is a bijection mod 2^64
_NO_WORD = -1
_FILTER_BITS_PER_SLOT = 8  # 16 per n-gram: ~5% of absent n-grams pass the filter

# ASCII byte classes: 1 letter or digit (a word byte), 0 anything else (a separator).
_ASCII_WORD = np.zeros(128, dtype=np.uint8)
for _c in b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789":
    _ASCII_WORD[_c] = 1
_ASCII_LOWER = np.arange(128, dtype=np.uint8)
_ASCII_LOWER[ord("A") : ord("Z") + 1] += 32


def index_capacity(entries: int) -> int:
    """Slots for `entries` n-grams: a power of two at least twice as many (probes stay short)."""
    return 1 << max(10, int(2 * max(entries, 1) - 1).bit_length())


def ngram_hashes(data: np.ndarray, offsets: np.ndarray, n: int, rows: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Every word n-gram of each text in `rows` (default all; `data`/`offsets` as
    `encode.string_buffers` gives them): (hashes uint64, counts int64 per row). A text of
    fewer than n words has none."""
    offsets = offsets.astype(np.int64)
    rows = np.arange(len(offsets) - 1, dtype=np.int64) if rows is None else rows.astype(np.int64)
    counts = np.zeros(len(rows), dtype=np.int64)
    size = int((offsets[rows + 1] - offsets[rows]).sum()) if len(rows) else 0
    out = np.empty(size // 2 + len(rows) + 1, dtype=np.uint64)  # a word takes >= 2 bytes but the last
    total = _ngram_hashes(data, offsets, rows, n, out, counts, _ASCII_WORD, _ASCII_LOWER)
    return out[:total], counts


@dataclass(frozen=True)
class NgramTable:
    """Each distinct n-gram hash once (`keys`, 0 where a slot is empty) with the smallest
    id it came with (`values`), and a one-bit-per-hash filter (`bits`, 16 bits per slot
    pair) that rules out most absent n-grams without touching the table."""

    keys: np.ndarray
    values: np.ndarray
    bits: np.ndarray

    @property
    def filter_shift(self) -> int:
        """How far a hash shifts right to leave its filter bit's index (its top log2(bits) bits)."""
        return 64 - (len(self.bits) * 64).bit_length() + 1

    @property
    def entries(self) -> int:
        return int(np.count_nonzero(self.keys))


def build_table(hashes: np.ndarray, ids: np.ndarray) -> NgramTable:
    """The lookup table of these hashes, each with the smallest id it came with."""
    order = np.lexsort((ids, hashes))
    hashes, ids = hashes[order], ids[order]
    first = np.ones(len(hashes), dtype=bool)
    first[1:] = hashes[1:] != hashes[:-1]
    hashes, ids = hashes[first], ids[first]
    keys = np.zeros(index_capacity(len(hashes)), dtype=np.uint64)
    values = np.full(len(keys), -1, dtype=np.int32)
    bits = np.zeros(len(keys) * _FILTER_BITS_PER_SLOT // 64, dtype=np.uint64)
    table = NgramTable(keys, values, bits)
    _fill_table(hashes, ids.astype(np.int32), keys, values, bits, table.filter_shift)
    return table


def first_matches(
    data: np.ndarray, offsets: np.ndarray, rows: np.ndarray, n: int, table: NgramTable
) -> np.ndarray:
    """For each text in `rows`: (id, start, end) int64 of its first n-gram in the table:
    the id stored with it and the n-gram's byte span in the text; id -1 where none is.

    The walk over the words tests each n-gram against the table's filter bits (a few MB,
    in cache) and keeps only the candidates, which are then probed in one tight loop:
    their loads miss the cache but no longer wait on each other. Only the few texts that
    match are walked again for the span."""
    out = np.full((len(rows), 3), -1, dtype=np.int64)
    if not len(rows):
        return out
    offsets, rows = offsets.astype(np.int64), rows.astype(np.int64)
    candidates, owners = _candidates(data, offsets, rows, n, table.bits, table.filter_shift, _ASCII_WORD, _ASCII_LOWER)
    _first_found(candidates, owners, table.keys, table.values, out)
    matched = np.flatnonzero(out[:, 0] >= 0)
    if len(matched):
        spans = np.full((len(matched), 3), -1, dtype=np.int64)
        _first_matches(data, offsets, rows[matched], n, table.keys, table.values, spans, _ASCII_WORD, _ASCII_LOWER)
        out[matched] = spans
    return out


def words_of(text: str) -> list[str]:
    """The words the kernels see in `text`, as strings (for tests and for explaining a match)."""
    data = np.frombuffer(text.encode(), dtype=np.uint8)
    spans = np.empty((len(data) + 1, 2), dtype=np.int64)
    count = _word_spans(data, spans, _ASCII_WORD)
    return [data[s:e].tobytes().decode().lower() for s, e in spans[:count]]


# -- kernels ---------------------------------------------------------------------------

@numba.njit(cache=True, nogil=True, inline="always")
def _decode(data: np.ndarray, i: int, end: int) -> tuple[int, int]:
    """(code point, byte length) of the UTF-8 character at data[i] (lead byte >= 0x80)."""
    b0 = np.int64(data[i])
    if b0 < 0xE0 and i + 1 < end:
        return ((b0 & 0x1F) << 6) | (np.int64(data[i + 1]) & 0x3F), 2
    if b0 < 0xF0 and i + 2 < end:
        return ((b0 & 0x0F) << 12) | ((np.int64(data[i + 1]) & 0x3F) << 6) | (np.int64(data[i + 2]) & 0x3F), 3
    if i + 3 < end:
        return (
            ((b0 & 0x07) << 18) | ((np.int64(data[i + 1]) & 0x3F) << 12)
            | ((np.int64(data[i + 2]) & 0x3F) << 6) | (np.int64(data[i + 3]) & 0x3F)
        ), 4
    return b0, 1  # a truncated sequence: one separator byte


@numba.njit(cache=True, nogil=True, inline="always")
def _kind(cp: int) -> int:
    """0 separator, 1 word character, 2 a word by itself (CJK ideographs, kana), for cp >= 0x80."""
    if cp < 0xC0 or cp == 0xD7 or cp == 0xF7:
        return 0  # C1 controls, Latin-1 punctuation and symbols, no-break space
    if cp < 0x2000:
        return 1
    if cp < 0x2E80:
        return 0  # general punctuation, currency, arrows, math, box drawing, dingbats...
    if cp < 0x3000:
        return 2  # CJK radicals
    if cp < 0x3040:
        return 0  # CJK symbols and punctuation, ideographic space
    if cp < 0x3100 or 0x3400 <= cp < 0xA000 or 0xF900 <= cp < 0xFB00 or 0x20000 <= cp < 0x40000:
        return 2  # kana, CJK unified and compatibility ideographs
    if 0xFE30 <= cp < 0xFE70 or 0xFF00 <= cp < 0xFF10 or 0xFF1A <= cp < 0xFF21 or 0xFF3B <= cp < 0xFF41:
        return 0  # CJK compatibility forms, fullwidth punctuation
    if 0xFF5B <= cp < 0xFF66 or 0xFE00 <= cp < 0xFE10 or 0x1F000 <= cp < 0x1FB00:
        return 0  # fullwidth brackets, variation selectors, emoji and pictographs
    return 1


@numba.njit(cache=True, nogil=True, inline="always")
def _fold(cp: int) -> int:
    """Lowercase of the capitals that matter most beyond ASCII (Latin-1, Greek, Cyrillic)."""
    if 0xC0 <= cp <= 0xDE:
        return cp + 32
    if 0x391 <= cp <= 0x3A9:
        return cp + 32
    if 0x410 <= cp <= 0x42F:
        return cp + 32
    if 0x400 <= cp <= 0x40F:
        return cp + 80
    return cp


@numba.njit(cache=True, nogil=True, inline="always")
def _next_word(data: np.ndarray, i: int, end: int, word: np.ndarray, lower: np.ndarray) -> tuple[int, np.uint64, int, int]:
    """The first word at or after data[i] before `end`: (index after it, its hash, start,
    end byte); start is _NO_WORD when there is none."""
    h = _FNV_OFFSET
    start = _NO_WORD
    while i < end:
        b = data[i]
        if b < 0x80:
            if word[b]:
                if start == _NO_WORD:
                    start = i
                h = (h ^ np.uint64(lower[b])) * _FNV_PRIME
                i += 1
                continue
            if start != _NO_WORD:
                return i + 1, mix64(h), start, i
            i += 1
            continue
        cp, size = _decode(data, i, end)
        kind = _kind(cp)
        if kind == 1:
            if start == _NO_WORD:
                start = i
            h = (h ^ np.uint64(_fold(cp))) * _FNV_PRIME
            i += size
            continue
        if start != _NO_WORD:
            return i, mix64(h), start, i  # the separator or ideograph is read again next call
        if kind == 2:
            return i + size, mix64((h ^ np.uint64(cp)) * _FNV_PRIME), i, i + size
        i += size
    if start != _NO_WORD:
        return end, mix64(h), start, end
    return end, np.uint64(0), _NO_WORD, end


@numba.njit(cache=True, nogil=True, inline="always")
def _power(n: int) -> np.uint64:
    """_BASE ** n mod 2^64."""
    p = np.uint64(1)
    for _ in range(n):
        p *= _BASE
    return p


@numba.njit(cache=True, nogil=True, inline="always")
def _next_gram(
    data: np.ndarray, i: int, end: int, word: np.ndarray, lower: np.ndarray,
    ring: np.ndarray, starts: np.ndarray, seen: int, rolled: np.uint64, leaving: np.uint64,
) -> tuple[int, int, np.uint64, int]:
    """Read the next word into the window of the last n (`ring`: their hashes, `starts`:
    their first bytes; `rolled`: the window's polynomial): (index after it, words seen,
    rolled, its end byte); the end is _NO_WORD when the text has no more words."""
    i, h, start, stop = _next_word(data, i, end, word, lower)
    if start == _NO_WORD:
        return i, seen, rolled, _NO_WORD
    slot = seen % len(ring)
    rolled = rolled * _BASE + h - ring[slot] * leaving
    ring[slot] = h
    starts[slot] = start
    return i, seen + 1, rolled, stop


@numba.njit(cache=True, nogil=True, inline="always")
def _key(rolled: np.uint64) -> np.uint64:
    key = mix64(rolled)
    return key if key != np.uint64(0) else np.uint64(1)  # 0 marks an empty slot


@numba.njit(cache=True, nogil=True)
def _ngram_hashes(
    data: np.ndarray,
    offsets: np.ndarray,
    rows: np.ndarray,
    n: int,
    out: np.ndarray,
    counts: np.ndarray,
    word: np.ndarray,
    lower: np.ndarray,
) -> int:
    ring = np.zeros(n, dtype=np.uint64)
    starts = np.zeros(n, dtype=np.int64)
    leaving = _power(n)
    total = 0
    for r in range(len(rows)):
        t = rows[r]
        i, end = offsets[t], offsets[t + 1]
        rolled = np.uint64(0)
        seen = 0
        while True:
            i, seen, rolled, stop = _next_gram(data, i, end, word, lower, ring, starts, seen, rolled, leaving)
            if stop == _NO_WORD:
                break
            if seen >= n:
                out[total] = _key(rolled)
                total += 1
        counts[r] = max(seen - n + 1, 0)
        ring[:] = 0
    return total


@numba.njit(cache=True, nogil=True)
def _fill_table(hashes: np.ndarray, ids: np.ndarray, keys: np.ndarray, values: np.ndarray, bits: np.ndarray, shift: int) -> None:
    mask = np.uint64(len(keys) - 1)
    for j in range(len(hashes)):
        _set_filter_bit(bits, shift, hashes[j])
        slot = hashes[j] & mask
        while keys[slot] != np.uint64(0):
            slot = (slot + np.uint64(1)) & mask
        keys[slot] = hashes[j]
        values[slot] = ids[j]


@numba.njit(cache=True, nogil=True, inline="always")
def _lookup(keys: np.ndarray, values: np.ndarray, key: np.uint64) -> int:
    mask = np.uint64(len(keys) - 1)
    slot = key & mask
    while True:
        found = keys[slot]
        if found == key:
            return np.int64(values[slot])
        if found == np.uint64(0):
            return -1
        slot = (slot + np.uint64(1)) & mask


@numba.njit(cache=True, nogil=True, inline="always")
def _filter_bit(key: np.uint64, shift: int) -> tuple[np.uint64, np.uint64]:
    """(word, bit) of the filter for `key`: its high bits (the table's slot is its low bits)."""
    index = key >> np.uint64(shift)
    return index >> np.uint64(6), np.uint64(1) << (index & np.uint64(63))


@numba.njit(cache=True, nogil=True, inline="always")
def _set_filter_bit(bits: np.ndarray, shift: int, key: np.uint64) -> None:
    word, bit = _filter_bit(key, shift)
    bits[word] |= bit


@numba.njit(cache=True, nogil=True)
def _candidates(
    data: np.ndarray, offsets: np.ndarray, rows: np.ndarray, n: int, bits: np.ndarray, shift: int, word: np.ndarray, lower: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The n-gram hashes of the rows that pass the filter, in order, and the row of each."""
    candidates = np.empty(1024, dtype=np.uint64)
    owners = np.empty(1024, dtype=np.int64)
    count = 0
    ring = np.zeros(n, dtype=np.uint64)
    starts = np.zeros(n, dtype=np.int64)
    leaving = _power(n)
    for r in range(len(rows)):
        t = rows[r]
        i, end = offsets[t], offsets[t + 1]
        rolled = np.uint64(0)
        seen = 0
        while True:
            i, seen, rolled, stop = _next_gram(data, i, end, word, lower, ring, starts, seen, rolled, leaving)
            if stop == _NO_WORD:
                break
            if seen >= n:
                key = _key(rolled)
                filter_word, bit = _filter_bit(key, shift)
                if bits[filter_word] & bit:
                    if count == len(candidates):
                        candidates = np.concatenate((candidates, np.empty(count, dtype=np.uint64)))
                        owners = np.concatenate((owners, np.empty(count, dtype=np.int64)))
                    candidates[count] = key
                    owners[count] = r
                    count += 1
        ring[:] = 0
    return candidates[:count], owners[:count]


@numba.njit(cache=True, nogil=True)
def _first_found(candidates: np.ndarray, owners: np.ndarray, keys: np.ndarray, values: np.ndarray, out: np.ndarray) -> None:
    """out[row, 0] = the id of the row's first candidate in the table (left -1 if none)."""
    found = np.empty(len(candidates), dtype=np.int64)
    for j in range(len(candidates)):  # independent probes: their loads overlap
        found[j] = _lookup(keys, values, candidates[j])
    for j in range(len(candidates)):
        r = owners[j]
        if found[j] >= 0 and out[r, 0] < 0:
            out[r, 0] = found[j]


@numba.njit(cache=True, nogil=True)
def _first_matches(
    data: np.ndarray,
    offsets: np.ndarray,
    rows: np.ndarray,
    n: int,
    keys: np.ndarray,
    values: np.ndarray,
    out: np.ndarray,
    word: np.ndarray,
    lower: np.ndarray,
) -> None:
    """out[r] = (id, start, end) of row r's first n-gram in the table, walking word by word."""
    ring = np.zeros(n, dtype=np.uint64)
    starts = np.zeros(n, dtype=np.int64)
    leaving = _power(n)
    for r in range(len(rows)):
        t = rows[r]
        i, end = offsets[t], offsets[t + 1]
        rolled = np.uint64(0)
        seen = 0
        while True:
            i, seen, rolled, stop = _next_gram(data, i, end, word, lower, ring, starts, seen, rolled, leaving)
            if stop == _NO_WORD:
                break
            if seen >= n:
                found = _lookup(keys, values, _key(rolled))
                if found >= 0:
                    out[r, 0] = found
                    out[r, 1] = starts[seen % n] - offsets[t]  # the oldest word in the ring
                    out[r, 2] = stop - offsets[t]
                    break
        ring[:] = 0


@numba.njit(cache=True, nogil=True)
def _word_spans(data: np.ndarray, spans: np.ndarray, word: np.ndarray) -> int:
    lower = np.arange(128, dtype=np.uint8)
    i, count = 0, 0
    while True:
        i, _, start, stop = _next_word(data, i, len(data), word, lower)
        if start == _NO_WORD:
            return count
        spans[count, 0], spans[count, 1] = start, stop
        count += 1
