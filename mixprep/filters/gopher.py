"""Gopher's quality and repetition statistics as Hugging Face datatrove 0.10.1 computes them, compiled.

`quality: gopher` and `repetition: gopher` mean what FineWeb-style pipelines compute with
datatrove's `GopherQualityFilter` and `GopherRepetitionFilter` (Rae et al. 2021, table A1).
Definitions (characters are code points; `words` are English words as `english` splits them):

- words: the words with a character outside datatrove's punctuation set (a "," or "--"
  is split off as a word of its own but not counted); word_chars: their characters.
  tokens: every word, marks included (the denominator of the ratios below).
- hashes: "#" in the text; ellipses: "..." (counted without overlap from the left) and "…".
- lines: `str.splitlines()` (blank lines count); bullet lines start, after leading
  whitespace, with "•" or "-"; ellipsis lines end, before trailing whitespace, with "..."
  or "…"; terminal lines end with one of . ! ? " ' ” ’ … (mixprep's own C4-style rule).
- alpha_words: words (marks included) with a character for which `str.isalpha` holds.
- stop_words: how many *distinct* words of the eight (the be to of and that have with) occur,
  exactly as written ("The" is not "the").
- paragraphs: the text, stripped, split at runs of two or more "\\n"; lines (repetition):
  the text split at runs of "\\n", nothing stripped. A duplicate is a piece equal to an
  earlier piece; the fraction is by count, the character fraction is the duplicates'
  characters over the whole text's. An empty text counts as all duplicate (datatrove drops it).
- top n-gram (n = 2, 3, 4): the most frequent n-gram of words (ties: the one seen first),
  its characters with the n - 1 joining spaces, times its count, over the text's
  characters; it is scored even when it occurs once, so short texts score high.
- duplicate n-gram (n = 5..10): walking the words, an n-gram equal to one seen earlier
  in the walk adds its characters (without spaces) and the walk jumps past it, else it is
  remembered and the walk moves one word; the sum over the text's characters.

Equality of lines, paragraphs and n-grams is equality of 64-bit hashes inside one text
(a collision is ~1e-15 likely per text); n-grams are equal when their words are (datatrove
compares the words joined without spaces: "ab c" and "a bc" would be equal there).
"""
from __future__ import annotations

import numba
import numpy as np
import polars as pl

from mixprep.filters.english_tables import ALPHA, SPACE, SYMBOL, code_point_flags
from mixprep.filters.english_words import batch_words
from mixprep.filters.fields import GOPHER_STOP_WORDS, QUALITY_FIELDS, REPETITION_FIELDS
from mixprep.filters.intrinsics import bytes_between, leading_zeros, load_u64, popcount, trailing_zeros
from mixprep.filters.textstats import (
    TextBatch,
    batch_rows,
    char_flags,
    characters,
    hash_bytes,
    last_char,
    mix,
    most_bytes,
    next_line,
    strip_span,
    table_size,
)

TERMINAL_PUNCTUATION = ".!?\"'”’…"
_STOP_KEYS = np.array([int.from_bytes(w.encode(), "little") | len(w) << 56 for w in GOPHER_STOP_WORDS], dtype=np.uint64)
"""Per stop word: its bytes as a little-endian integer, its length in the top byte (`_stop_word`'s key)."""
_TERMINALS = np.array([ord(c) for c in TERMINAL_PUNCTUATION], dtype=np.int64)
_NGRAM_MULTIPLIER = np.uint64(0x9E3779B97F4A7C15)


@numba.njit(inline="always", cache=True)
def _stop_word(data: np.ndarray, s: int, e: int, stop_keys: np.ndarray) -> int:
    """The bit of the stop word data[s:e] is (0: none): one masked 8-byte load compared with each
    key (the batch's PADDING keeps the load inside `data`)."""
    n = e - s
    if n < 2 or n > 4:
        return 0
    key = (load_u64(data, s) & ((np.uint64(1) << np.uint64(8 * n)) - np.uint64(1))) | (np.uint64(n) << np.uint64(56))
    bit = 0
    for k in range(len(stop_keys)):
        if stop_keys[k] == key:
            bit = 1 << k
    return bit


@numba.njit(cache=True)
def _line_counts(data: np.ndarray, start: int, end: int, flags: np.ndarray, terminals: np.ndarray) -> tuple[int, int, int, int]:
    """(lines, bullet lines, ellipsis lines, terminal lines) of `str.splitlines()` over the UTF-8 text data[start:end]."""
    lines = bullets = ellipses = terminal = 0
    i = start
    while i < end:
        line_start = i
        line_end, i = next_line(data, i, end)
        lines += 1
        a, b = strip_span(data, line_start, line_end, flags, SPACE)
        if b > a:
            bullets += data[a] == 45 or (data[a] == 0xE2 and data[a + 1] == 0x80 and data[a + 2] == 0xA2)  # "-" or "•"
            last, _ = last_char(data, a, b)
            ellipses += last == 0x2026 or (b - a >= 3 and data[b - 1] == 46 and data[b - 2] == 46 and data[b - 3] == 46)
            for t in terminals:
                if last == t:
                    terminal += 1
                    break
    return lines, bullets, ellipses, terminal


@numba.njit(inline="always", cache=True)
def _marks_bytewise(data: np.ndarray, i: int, stop: int, hashes: int, ellipses: int, dots: int) -> tuple[int, int, int]:
    """`_marks`' walk over data[i:stop], from and to its running counts (dots: the current run's, mod 3)."""
    for k in range(i, stop):
        b = data[k]
        hashes += b == 35
        if b == 46:
            dots += 1
            if dots == 3:
                ellipses += 1
                dots = 0
        else:
            dots = 0
            ellipses += b == 0xE2 and data[k + 1] == 0x80 and data[k + 2] == 0xA6  # "…"
    return hashes, ellipses, dots


@numba.njit(cache=True)
def _marks(data: np.ndarray, start: int, end: int) -> tuple[int, int]:
    """("#" characters, ellipses: "..." counted without overlap from the left, and "…") in data[start:end].

    32 bytes at a time: a block without three dots in a row, without 0xE2 (the lead byte of
    "…") and whose leading dots do not complete the run before it has no ellipsis; its "#"
    are counted from the compare's bits and the dots it ends with carried on. Other blocks
    (a few in prose) take the byte walk."""
    hashes = ellipses = dots = np.int64(0)
    i = start
    while i + 32 <= end:
        dot = bytes_between(data, i, 46, 46)
        leading = np.int64(trailing_zeros(~dot))  # dots the block starts with (< 32 unless all dots)
        if dot & (dot >> np.uint64(1)) & (dot >> np.uint64(2)) == 0 and dots + leading < 3 and bytes_between(data, i, 0xE2, 0xE2) == 0:
            hashes += np.int64(popcount(bytes_between(data, i, 35, 35)))
            dots = np.int64(leading_zeros(~(dot << np.uint64(32))))  # the dots it ends with (fewer than 3)
        else:
            hashes, ellipses, dots = _marks_bytewise(data, i, i + 32, hashes, ellipses, dots)
        i += 32
    hashes, ellipses, dots = _marks_bytewise(data, i, end, hashes, ellipses, dots)
    return hashes, ellipses


@numba.njit(cache=True)
def _quality_kernel(
    data: np.ndarray, offsets: np.ndarray, rows: np.ndarray, flags: np.ndarray, stop_keys: np.ndarray,
    terminals: np.ndarray, index: np.ndarray, word_offsets: np.ndarray, starts: np.ndarray, ends: np.ndarray,
    chars: np.ndarray, out: np.ndarray,
) -> None:
    for r in range(len(rows)):
        d = rows[r]
        first, last = word_offsets[index[r]], word_offsets[index[r] + 1]
        words = word_chars = alpha = 0
        seen_stop = 0
        for k in range(first, last):
            s, e = starts[k], ends[k]
            if e - s == chars[k] and e - s <= 32:
                # ASCII (most words): a letter is alphabetic, and a word is all datatrove
                # punctuation unless it has a letter or digit (no ASCII whitespace is in a word).
                # The 32-byte compares may read past the text: into the batch's PADDING.
                inside = (np.uint64(1) << np.uint64(e - s)) - np.uint64(1)
                letters = (bytes_between(data, s, 65, 90) | bytes_between(data, s, 97, 122)) & inside
                has_alpha = letters != 0
                symbol_only = not has_alpha and bytes_between(data, s, 48, 57) & inside == 0
            else:
                symbol_only = True
                has_alpha = False
                j = s
                while j < e:
                    f, length = char_flags(data, j, flags)
                    j += length
                    symbol_only &= (f & SYMBOL) != 0
                    has_alpha |= (f & ALPHA) != 0
            if not symbol_only:
                words += 1
                word_chars += chars[k]
            alpha += has_alpha
            seen_stop |= _stop_word(data, s, e, stop_keys)
        hashes, ellipses = _marks(data, offsets[d], offsets[d + 1])
        lines, bullets, ellipsis_lines, terminal = _line_counts(data, offsets[d], offsets[d + 1], flags, terminals)
        stops = 0
        while seen_stop:
            stops += seen_stop & 1
            seen_stop >>= 1
        row = out[r]
        row[0], row[1], row[2], row[3], row[4] = words, word_chars, last - first, hashes, ellipses
        row[5], row[6], row[7], row[8], row[9], row[10] = lines, bullets, ellipsis_lines, terminal, alpha, stops


def quality_counts(texts: pl.Series | TextBatch, rows: np.ndarray | None = None) -> np.ndarray:
    """int64 (rows, len(QUALITY_FIELDS)): the counts the Gopher quality filters read."""
    batch, rows = batch_rows(texts, rows)
    out = np.zeros((len(rows), len(QUALITY_FIELDS)), dtype=np.int64)
    if len(rows):
        w = batch_words(batch, rows)  # repetition and C4 read them again
        _quality_kernel(batch.data, batch.offsets, rows, code_point_flags(), _STOP_KEYS, _TERMINALS, w.index, w.offsets,
                        w.starts, w.ends, w.chars, out)
    return out


# -- repetition ------------------------------------------------------------------------------

@numba.njit(cache=True)
def _duplicates(keys: np.ndarray, chars: np.ndarray, count: int, slots: np.ndarray, used: np.ndarray) -> tuple[int, int]:
    """(pieces equal to an earlier piece, their characters) among keys[:count]; `used` is all
    False on entry and on return."""
    mask = np.uint64(table_size(count) - 1)
    repeats = repeated_chars = 0
    for i in range(count):
        slot = keys[i] & mask
        while used[slot] and slots[slot] != keys[i]:
            slot = (slot + np.uint64(1)) & mask
        if used[slot]:
            repeats += 1
            repeated_chars += chars[i]
        slots[slot] = keys[i]
        used[slot] = True
    for i in range(count):  # clear what was set (the probes above found these slots)
        slot = keys[i] & mask
        while used[slot]:
            used[slot] = False
            slot = (slot + np.uint64(1)) & mask
    return repeats, repeated_chars


@numba.njit(cache=True)
def _pieces(data: np.ndarray, lo: int, hi: int, min_run: int, keys: np.ndarray, chars: np.ndarray) -> int:
    """The UTF-8 text data[lo:hi] split at runs of >= min_run "\\n": each piece's hash and
    characters (bytes that are not UTF-8 continuation bytes); returns how many."""
    count = 0
    piece = lo
    piece_chars = 0
    i = lo
    while i < hi:
        if i + 32 <= hi:  # 32 bytes at a time up to the next "\n"
            newlines = bytes_between(data, i, 10, 10)
            before = 32 if newlines == 0 else np.int64(trailing_zeros(newlines))
            continuing = bytes_between(data, i, 0x80, 0xBF) & ((np.uint64(1) << np.uint64(before)) - np.uint64(1))
            piece_chars += before - np.int64(popcount(continuing))
            i += before
            if newlines == 0:
                continue
        b = data[i]
        if b != 10:
            piece_chars += (b & 0xC0) != 0x80
            i += 1
            continue
        j = i
        while j < hi and data[j] == 10:
            j += 1
        if j - i >= min_run:
            keys[count] = hash_bytes(data, piece, i)
            chars[count] = piece_chars
            count += 1
            piece = j
            piece_chars = 0
        else:
            piece_chars += j - i  # a shorter run stays inside the piece
        i = j
    keys[count] = hash_bytes(data, piece, hi)
    chars[count] = piece_chars
    return count + 1


@numba.njit(cache=True)
def _ngram_fractions(
    data: np.ndarray, starts: np.ndarray, ends: np.ndarray, chars: np.ndarray, m: int, total: int, out: np.ndarray,
    word_hash: np.ndarray, char_prefix: np.ndarray, gram: np.ndarray, repeats: np.ndarray, candidate: np.ndarray,
    keys: np.ndarray, counts_at: np.ndarray, slots: np.ndarray, counts: np.ndarray, where: np.ndarray,
    seen_slots: np.ndarray, seen: np.ndarray,
) -> None:
    """out[0:3] = top 2..4-gram fractions, out[3:9] = duplicate 5..10-gram fractions."""
    for k in range(m):
        word_hash[k] = hash_bytes(data, starts[k], ends[k])
        char_prefix[k + 1] = char_prefix[k] + chars[k]
    # repeats[k]: the (n-1)-gram at k occurs more than once. An n-gram can only repeat
    # where both of its (n-1)-grams do, so each round hashes fewer positions.
    for k in range(m):
        candidate[k] = k
        gram[k] = word_hash[k]
    count = m
    for n in range(1, 11):
        if n > 1:
            next_count = 0
            for c in range(count):
                s = candidate[c]
                if s + n <= m and repeats[s] and repeats[s + 1]:
                    candidate[next_count] = s
                    gram[s] = gram[s] * _NGRAM_MULTIPLIER + word_hash[s + n - 1]
                    next_count += 1
                repeats[s] = False  # read for the last time (later candidates lie further on): all False after the loop
            count = next_count
        for c in range(count):
            keys[c] = mix(gram[candidate[c]])
        mask = np.uint64(table_size(2 * count) - 1)
        for c in range(count):
            slot = keys[c] & mask
            while counts[slot] > 0 and slots[slot] != keys[c]:
                slot = (slot + np.uint64(1)) & mask
            slots[slot] = keys[c]
            counts[slot] += 1
            where[c] = np.int64(slot)
        for c in range(count):
            counts_at[c] = counts[where[c]]
            repeats[candidate[c]] = counts_at[c] >= 2
        for c in range(count):
            counts[where[c]] = 0
        if n == 1:
            continue
        if n <= 4:
            if m < n:
                continue
            best_count, best_start = 1, 0  # every n-gram once: the first one
            for c in range(count):  # candidates ascend, so the first hit of a count is its first occurrence
                if counts_at[c] > best_count:
                    best_count, best_start = counts_at[c], candidate[c]
            span = char_prefix[best_start + n] - char_prefix[best_start] + n - 1
            out[n - 2] = best_count * span / total
            continue
        # The walk: only repeated n-grams can be met again, so only they touch the set, and
        # the walk steps from one to the next (a position between them just moves it on by one).
        repeated_chars = 0
        seen_mask = np.uint64(table_size(2 * count) - 1)
        idx = 0
        for c in range(count):
            start = candidate[c]
            if start < idx or not repeats[start]:
                continue  # inside an n-gram already counted, or seen once only
            key = keys[c]
            slot = key & seen_mask
            while seen[slot] and seen_slots[slot] != key:
                slot = (slot + np.uint64(1)) & seen_mask
            if seen[slot]:
                repeated_chars += char_prefix[start + n] - char_prefix[start]
                idx = start + n
            else:
                seen[slot] = True
                seen_slots[slot] = key
                idx = start + 1
        for c in range(count):
            slot = keys[c] & seen_mask
            while seen[slot]:
                seen[slot] = False
                slot = (slot + np.uint64(1)) & seen_mask
        out[n - 2] = repeated_chars / total
        if count == 0:
            return  # no longer n-gram repeats either: their fractions stay 0
    for c in range(count):  # all False again for the next text
        repeats[candidate[c]] = False


@numba.njit(cache=True)
def _repetition_kernel(
    data: np.ndarray, offsets: np.ndarray, rows: np.ndarray, flags: np.ndarray, size: int, index: np.ndarray,
    word_offsets: np.ndarray, starts: np.ndarray, ends: np.ndarray, chars: np.ndarray, out: np.ndarray,
) -> None:
    """`size`: one more than the longest text's bytes (its words, lines and characters are fewer)."""
    paragraph_break, line_break = np.int64(2), np.int64(1)  # runs of "\n" that split; not literals: one _pieces compiled
    keys = np.empty(size, dtype=np.uint64)
    piece_chars = np.empty(size, dtype=np.int64)
    capacity = table_size(2 * size)
    slots = np.zeros(capacity, dtype=np.uint64)
    used = np.zeros(capacity, dtype=np.bool_)
    word_hash = np.empty(size, dtype=np.uint64)
    char_prefix = np.zeros(size + 1, dtype=np.int64)
    gram = np.empty(size, dtype=np.uint64)
    repeats = np.zeros(size + 1, dtype=np.bool_)
    candidate = np.empty(size, dtype=np.int64)
    counts_at = np.empty(size, dtype=np.int64)
    counts = np.zeros(capacity, dtype=np.int32)
    where = np.empty(size, dtype=np.int64)
    for r in range(len(rows)):
        d = rows[r]
        start, end = offsets[d], offsets[d + 1]
        n = characters(data, start, end)
        if n == 0:
            out[r, 0] = 1.0  # datatrove drops an empty text before anything else
            continue
        lo, hi = strip_span(data, start, end, flags, SPACE)
        count = _pieces(data, lo, hi, paragraph_break, keys, piece_chars)
        repeats_found, repeated_chars = _duplicates(keys, piece_chars, count, slots, used)
        out[r, 0], out[r, 1] = repeats_found / count, repeated_chars / n
        count = _pieces(data, start, end, line_break, keys, piece_chars)
        repeats_found, repeated_chars = _duplicates(keys, piece_chars, count, slots, used)
        out[r, 2], out[r, 3] = repeats_found / count, repeated_chars / n
        first, last = word_offsets[index[r]], word_offsets[index[r] + 1]
        _ngram_fractions(data, starts[first:last], ends[first:last], chars[first:last], last - first, n, out[r, 4:], word_hash,
                         char_prefix, gram, repeats, candidate, keys, counts_at, slots, counts, where, slots, used)


def repetition(texts: pl.Series | TextBatch, rows: np.ndarray | None = None) -> np.ndarray:
    """float64 (rows, len(REPETITION_FIELDS)): the fractions the Gopher repetition filters read."""
    batch, rows = batch_rows(texts, rows)
    out = np.zeros((len(rows), len(REPETITION_FIELDS)))
    if len(rows):
        w = batch_words(batch, rows)  # quality's split, when it ran first
        _repetition_kernel(batch.data, batch.offsets, rows, code_point_flags(), most_bytes(batch.offsets, rows) + 1, w.index, w.offsets,
                           w.starts, w.ends, w.chars, out)
    return out
