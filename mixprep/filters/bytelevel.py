"""Byte-level BPE token counts and ids without the tokenizers library's per-text cost.

GPT-2-style tokenizers (GPT-2, MiniMind, many small models' own) split text with one
regex into "words" and run BPE on each word's bytes independently; a text's tokens are
its words' tokens, in order. The split is what costs: the `tokenizers` library runs its
regex and builds Python objects per text at ~2 MB per CPU-second. Here the split runs
compiled over a whole batch's UTF-8 bytes, and each distinct word is merged once, by the
tokenizer's own merge ranks (compiled too), and cached: the result is the library's (the
tests compare the two on every text they try).

Which tokenizers qualify (`ByteLevelBPE.supports`): a `tokenizer.json` with no
normalizer, a `ByteLevel` pre-tokenizer with its GPT-2 regex and without a prefix space,
and a `BPE` model without dropout or word prefixes/suffixes. Anything else, and any text
holding one of the tokenizer's added tokens (`<|endoftext|>` as text), goes through the
library.

The split (`'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+`)
is written out as a state machine over code points; letters and numbers are Unicode's
L* and N* categories from Python's `unicodedata`, whitespace the regex engine's `\\s`.
"""
from __future__ import annotations

import functools
import json
import unicodedata
from pathlib import Path
from typing import Any

import numba
import numpy as np
import polars as pl
import pyarrow as pa

import mixprep.numba_cache  # noqa: F401 - a writable kernel cache before the first @numba.njit(cache=True)
from mixprep.filters.bpe import BYTE_CHARS, bpe_words, merge_tables, pair_in_vocab

OTHER, LETTER, NUMBER, SPACE, UNASSIGNED = 0, 1, 2, 3, 4
WHITESPACE = (*range(0x09, 0x0E), 0x20, 0x85, 0xA0, 0x1680, *range(0x2000, 0x200B), 0x2028, 0x2029, 0x202F, 0x205F, 0x3000)
GPT2_SPLIT = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"
TABLE_BITS = 21
"""2^21 cache slots of 16 bytes (32 MB a process), at most half used; a full cache starts over."""
MISSES_PER_ROUND = 1 << 16
UNASSIGNED_PLANES = (0x40000, 0xE0000)
"""Planes 4-13 hold no character in any Unicode yet; planes 15-16 are private use (other)."""
PRIVATE_USE_FROM = 0xF0000
PENDING = np.uint64(0xFFFFFFFFFFFFFFFF)
"""A cache value for a word entered in this pass whose ids are not computed yet."""
LENGTH_BITS = 24  # a cache value: pool offset << 24 | number of ids
LENGTH_MASK = np.uint64((1 << LENGTH_BITS) - 1)


@functools.lru_cache(maxsize=1)
def code_point_classes() -> np.ndarray:
    """uint8 class of every code point: letter, number, whitespace, other, or unassigned in
    this Python's Unicode database. A newer Unicode may have made an unassigned one a letter
    (Python 3.11 knows Unicode 14; the tokenizer's regex engine may know a later one), so a
    text holding one goes to the library."""
    classes = np.full(0x110000, OTHER, dtype=np.uint8)
    classes[UNASSIGNED_PLANES[0] : UNASSIGNED_PLANES[1]] = UNASSIGNED
    for cp in (*range(UNASSIGNED_PLANES[0]), *range(UNASSIGNED_PLANES[1], PRIVATE_USE_FROM)):
        category = unicodedata.category(chr(cp))
        if category[0] == "L":
            classes[cp] = LETTER
        elif category[0] == "N":
            classes[cp] = NUMBER
        elif category == "Cn":
            classes[cp] = UNASSIGNED
    classes[list(WHITESPACE)] = SPACE
    return classes


# -- the split --------------------------------------------------------------------------

@numba.njit(inline="always")
def _decode(data: np.ndarray, i: int) -> tuple[int, int]:
    """(code point, bytes) of the UTF-8 character at i (the input is valid UTF-8)."""
    b = data[i]
    if b < 0x80:
        return b, 1
    if b < 0xE0:
        return ((b & 0x1F) << 6) | (data[i + 1] & 0x3F), 2
    if b < 0xF0:
        return ((b & 0x0F) << 12) | ((data[i + 1] & 0x3F) << 6) | (data[i + 2] & 0x3F), 3
    return ((b & 0x07) << 18) | ((data[i + 1] & 0x3F) << 12) | ((data[i + 2] & 0x3F) << 6) | (data[i + 3] & 0x3F), 4


@numba.njit(inline="always")
def _class_at(data: np.ndarray, i: int, classes: np.ndarray) -> tuple[int, int]:
    cp, n = _decode(data, i)
    return classes[cp], n


@numba.njit(cache=True)
def holds_unassigned(data: np.ndarray, starts: np.ndarray, ends: np.ndarray, classes: np.ndarray, out: np.ndarray) -> None:
    """Mark (in `out`) each text holding a code point this Python's Unicode does not know."""
    for d in range(len(starts)):
        i, end = starts[d], ends[d]
        while i < end:
            if data[i] < 0x80:
                i += 1
                continue
            cp, n = _decode(data, i)
            if classes[cp] == UNASSIGNED:
                out[d] = True
                break
            i += n


@numba.njit(inline="always")
def _run(data: np.ndarray, i: int, end: int, wanted: int, classes: np.ndarray) -> int:
    """End of the run of characters of class `wanted` that starts at i."""
    while i < end:
        c, n = _class_at(data, i, classes)
        if c != wanted:
            break
        i += n
    return i


@numba.njit(inline="always")
def _contraction(data: np.ndarray, i: int, end: int) -> int:
    """Length of `'s 't 'm 'd 're 've 'll` at i (i holds an apostrophe), else 0."""
    if i + 1 >= end:
        return 0
    a = data[i + 1]
    if a == 115 or a == 116 or a == 109 or a == 100:  # s t m d
        return 2
    if i + 2 < end:
        b = data[i + 2]
        if (a == 114 and b == 101) or (a == 118 and b == 101) or (a == 108 and b == 108):  # re ve ll
            return 3
    return 0


@numba.njit(inline="always")
def _next_word(data: np.ndarray, i: int, end: int, classes: np.ndarray) -> int:
    """End of the word that starts at i (the regex's leftmost alternative that matches)."""
    b = data[i]
    if b == 39:  # '
        k = _contraction(data, i, end)
        if k:
            return i + k
    if b == 32 and i + 1 < end:  # " ?" before a letter, number or other run
        c, n = _class_at(data, i + 1, classes)
        if c != SPACE:
            return _run(data, i + 1 + n, end, c, classes)
    c, n = _class_at(data, i, classes)
    if c != SPACE:
        return _run(data, i + n, end, c, classes)
    # \s+(?!\S): the whitespace run but its last character when a non-space follows
    # (that one starts the next word); a lone whitespace character before one is \s+.
    j, last, chars = i, i, 0
    while j < end:
        c, n = _class_at(data, j, classes)
        if c != SPACE:
            break
        last, j, chars = j, j + n, chars + 1
    if j < end and chars >= 2:
        return last
    return j


@numba.njit(inline="always")
def _fnv(data: np.ndarray, start: int, end: int) -> np.uint64:
    h = np.uint64(0xCBF29CE484222325)
    for k in range(start, end):
        h = (h ^ np.uint64(data[k])) * np.uint64(0x100000001B3)
    if h == np.uint64(0):
        h = np.uint64(1)  # 0 marks an empty slot
    return h


@numba.njit(inline="always")
def _slot(table: np.ndarray, h: np.uint64) -> np.uint64:
    """The slot of word hash h in the cache: its own, or the empty one where it would go."""
    mask = np.uint64(len(table) - 1)
    s = h & mask
    while table[s, 0] != np.uint64(0) and table[s, 0] != h:
        s = (s + np.uint64(1)) & mask
    return s


@numba.njit(cache=True)
def scan_words(
    data: np.ndarray, starts: np.ndarray, ends: np.ndarray, skip: np.ndarray, classes: np.ndarray, table: np.ndarray,
    counts: np.ndarray, complete: np.ndarray, doc: int, at: int,
    miss_start: np.ndarray, miss_end: np.ndarray, miss_slot: np.ndarray, room: int,
) -> tuple[int, int, int]:
    """One pass from (doc, at): each text's tokens from its cached words (`counts`); a word
    not cached is entered as pending and listed, and its text marked incomplete. Stops
    when the list or `room` is full, mid-text if need be (that text is then incomplete).
    Returns (words listed, doc, at) to resume from (at -1: the text's start)."""
    found = 0
    while doc < len(starts):
        if skip[doc]:
            doc, at = doc + 1, -1
            continue
        if at < 0:
            at = starts[doc]
            counts[doc] = 0
            complete[doc] = True
        end = ends[doc]
        while at < end:
            if found == len(miss_start) or found == room:
                complete[doc] = False
                return found, doc, at
            j = _next_word(data, at, end, classes)
            h = _fnv(data, at, j)
            s = _slot(table, h)
            if table[s, 0] == np.uint64(0):
                table[s, 0] = h
                table[s, 1] = PENDING
                miss_start[found], miss_end[found], miss_slot[found] = at, j, s
                found += 1
                complete[doc] = False
            elif table[s, 1] == PENDING:
                complete[doc] = False
            else:
                counts[doc] += np.int64(table[s, 1] & LENGTH_MASK)
            at = j
        doc, at = doc + 1, -1
    return found, doc, at


@numba.njit(cache=True)
def recount(
    data: np.ndarray, starts: np.ndarray, ends: np.ndarray, classes: np.ndarray, table: np.ndarray, docs: np.ndarray, counts: np.ndarray
) -> None:
    """Count the given texts again, every word of them cached now."""
    for d in docs:
        total = 0
        i, end = starts[d], ends[d]
        while i < end:
            j = _next_word(data, i, end, classes)
            total += np.int64(table[_slot(table, _fnv(data, i, j)), 1] & LENGTH_MASK)
            i = j
        counts[d] = total


@numba.njit(cache=True)
def emit_ids(
    data: np.ndarray, starts: np.ndarray, ends: np.ndarray, skip: np.ndarray, classes: np.ndarray, table: np.ndarray,
    pool: np.ndarray, lo: int, hi: int, out: np.ndarray, out_at: np.ndarray,
) -> None:
    """Texts lo..hi-1 (every word cached) as ids into out[out_at[d]:out_at[d + 1]]; a text
    whose ids would overrun its range stops at its end (its count tells the caller)."""
    for d in range(lo, hi):
        if skip[d]:
            continue
        k, limit = out_at[d], out_at[d + 1]
        i, end = starts[d], ends[d]
        while i < end:
            j = _next_word(data, i, end, classes)
            value = table[_slot(table, _fnv(data, i, j)), 1]
            n = np.int64(value & LENGTH_MASK)
            if k + n > limit:
                break
            first = np.int64(value >> np.uint64(LENGTH_BITS))
            for t in range(n):
                out[k + t] = pool[first + t]
            k += n
            i = j


# -- the tokenizer ----------------------------------------------------------------------

class ByteLevelBPE:
    """Token counts and ids of a qualifying `tokenizer.json`, equal to the library's
    `encode_batch(texts, add_special_tokens=False)`. One instance per process (not shared
    between threads)."""

    def __init__(self, tokenizer_json: Path, tokenizer: Any = None) -> None:
        """`tokenizer`: the library's `Tokenizer` of that file when already loaded."""
        from tokenizers import Tokenizer

        self.tokenizer = tokenizer if tokenizer is not None else Tokenizer.from_file(str(tokenizer_json))
        spec = json.loads(tokenizer_json.read_text(encoding="utf-8"))
        self.added = [t["content"] for t in spec.get("added_tokens", [])]
        self.byte_ids, self.merge_keys, self.merge_values, self.merge_bits = merge_tables(spec)
        self.classes = code_point_classes()
        self.restarts = -1  # times the cache filled and started over
        self.oversized = 0  # texts with more distinct words than the cache holds (sent to the library)
        self._reset()

    @staticmethod
    def supports(tokenizer_json: Path) -> bool:
        try:
            spec = json.loads(tokenizer_json.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return False
        pre, model = spec.get("pre_tokenizer") or {}, spec.get("model") or {}
        return (
            spec.get("normalizer") is None
            and pre.get("type") == "ByteLevel" and pre.get("use_regex", True) and not pre.get("add_prefix_space", False)
            and model.get("type") == "BPE" and model.get("dropout") is None
            and not model.get("continuing_subword_prefix") and not model.get("end_of_word_suffix")
            and not model.get("byte_fallback", False) and not model.get("ignore_merges", False)
            and all(c in model.get("vocab", {}) for c in BYTE_CHARS)
            and all(pair_in_vocab(m, model["vocab"]) for m in model.get("merges", []))
        )

    def _reset(self) -> None:
        self.table = np.zeros((1 << TABLE_BITS, 2), dtype=np.uint64)  # [word hash, pool offset << 24 | ids]
        self.pool = np.zeros(1 << 16, dtype=np.int32)
        self.pool_used = 0
        self.entries = 0
        self.restarts += 1

    def count(self, texts: Any) -> np.ndarray:
        """Each text's number of tokens."""
        return self._count(*self._prepare(texts))

    def _count(self, data: np.ndarray, starts: np.ndarray, ends: np.ndarray, skip: np.ndarray, strings: pl.Series) -> np.ndarray:
        counts = np.zeros(len(starts), dtype=np.int64)
        self._walk(data, starts, ends, skip, counts)
        self._library(strings, skip, counts)
        return counts

    def encode(self, texts: Any, lengths: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(every text's ids back to back, each text's count). Given `lengths` (what a scan
        counted) the ids are written in one pass, each text into its range; a text whose
        count differs comes back with its own count (the caller compares) and its range
        unfilled. Without, the texts are counted first."""
        data, starts, ends, skip, strings = self._prepare(texts)
        if lengths is None:
            lengths = self._count(data, starts, ends, skip, strings)
        out_at = np.zeros(len(starts) + 1, dtype=np.int64)
        np.cumsum(lengths, out=out_at[1:])
        ids = np.zeros(int(out_at[-1]), dtype=np.int64)
        counts = np.zeros(len(starts), dtype=np.int64)
        self._walk(data, starts, ends, skip, counts, emit=(ids, out_at))
        for i, found in self._library(strings, skip, counts).items():
            if len(found) == lengths[i]:
                ids[out_at[i] : out_at[i + 1]] = found
        return ids, counts

    def _walk(
        self, data: np.ndarray, starts: np.ndarray, ends: np.ndarray, skip: np.ndarray, counts: np.ndarray,
        emit: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> None:
        """Count (and emit) every text not in `skip`, caching new words as they come: one pass,
        then a recount of the texts that met a new word. When the cache fills it starts over
        at the current text; a text with more distinct words than the cache holds is added
        to `skip` (the library encodes it)."""
        miss_start = np.empty(MISSES_PER_ROUND, dtype=np.int64)
        miss_end = np.empty(MISSES_PER_ROUND, dtype=np.int64)
        miss_slot = np.empty(MISSES_PER_ROUND, dtype=np.int64)
        complete = np.ones(len(starts), dtype=np.bool_)
        capacity = len(self.table) >> 1
        doc, at, fresh_at = 0, -1, -1
        while doc < len(starts):
            if self.entries >= capacity:
                if fresh_at == doc:  # this text alone fills the cache
                    skip[doc] = True
                    self.oversized += 1
                    doc += 1
                self._reset()
                at, fresh_at = -1, doc  # an interrupted text is walked again from its start
                if doc == len(starts):
                    break
            first = doc
            found, doc, at = scan_words(
                data, starts, ends, skip, self.classes, self.table, counts, complete, doc, at,
                miss_start, miss_end, miss_slot, capacity - self.entries,
            )
            self.entries += found
            self._merge_new_words(data, miss_start[:found], miss_end[:found], miss_slot[:found])
            # Texts before `doc` were walked whole; `doc` itself (when at >= 0) is resumed next.
            redo = np.flatnonzero(~complete[first:doc] & ~skip[first:doc]) + first
            recount(data, starts, ends, self.classes, self.table, redo, counts)
            complete[redo] = True
            if emit is not None:
                emit_ids(data, starts, ends, skip, self.classes, self.table, self.pool, first, doc, *emit)

    def _library(self, strings: pl.Series, skip: np.ndarray, counts: np.ndarray) -> dict[int, list[int]]:
        """Texts in `skip` through the tokenizers library: their counts, and their ids."""
        special = np.flatnonzero(skip).tolist()
        if not special:
            return {}
        encoded = self.tokenizer.encode_batch([strings[i] for i in special], add_special_tokens=False)
        for i, e in zip(special, encoded, strict=True):
            counts[i] = len(e.ids)
        return {i: e.ids for i, e in zip(special, encoded, strict=True)}

    def _prepare(self, texts: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, pl.Series]:
        """UTF-8 bytes and bounds of a batch's texts (a list of str, or polars or Arrow
        strings: no copy then), and which hold one of the tokenizer's added tokens."""
        if isinstance(texts, (pa.Array, pa.ChunkedArray)):
            series = pl.Series(pl.from_arrow(texts))
        else:
            series = texts if isinstance(texts, pl.Series) else pl.Series(texts, dtype=pl.String)
        series = series.fill_null("")
        array = series.to_arrow()
        if isinstance(array, pa.ChunkedArray):
            array = array.combine_chunks()
        array = array.cast(pa.large_string())
        offsets_buffer, data_buffer = array.buffers()[1], array.buffers()[2]
        offsets = np.frombuffer(offsets_buffer, dtype=np.int64)[array.offset : array.offset + len(array) + 1]
        data = np.frombuffer(data_buffer, dtype=np.uint8) if data_buffer is not None else np.zeros(0, dtype=np.uint8)
        skip = series.str.contains_any(self.added).fill_null(False).to_numpy() if self.added else np.zeros(len(series), dtype=bool)
        skip = np.array(skip, dtype=np.bool_)  # writable: texts the library must encode are added to it
        starts, ends = offsets[:-1].copy(), offsets[1:].copy()
        holds_unassigned(data, starts, ends, self.classes, skip)
        return data, starts, ends, skip, series

    def _merge_new_words(self, data: np.ndarray, starts: np.ndarray, ends: np.ndarray, slots: np.ndarray) -> None:
        """Each new word's BPE ids (compiled), appended to the pool; its cache slot points at them."""
        if not len(starts):
            return
        room = int((ends - starts).sum())  # a word has at most one id per byte
        if self.pool_used + room > len(self.pool):
            grown = np.zeros(max(self.pool_used + room, 2 * len(self.pool)), dtype=np.int32)
            grown[: self.pool_used] = self.pool[: self.pool_used]
            self.pool = grown
        out = np.empty(room, dtype=np.int64)
        out_at = np.empty(len(starts) + 1, dtype=np.int64)
        used = bpe_words(data, starts, ends, self.byte_ids, self.merge_keys, self.merge_values, self.merge_bits, out, out_at)
        self.pool[self.pool_used : self.pool_used + used] = out[:used]
        firsts = (self.pool_used + out_at[:-1]).astype(np.uint64)
        self.table[slots, 1] = (firsts << np.uint64(LENGTH_BITS)) | np.diff(out_at).astype(np.uint64)
        self.pool_used += used
