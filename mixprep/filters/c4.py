"""C4's line cleaning and document rules as Hugging Face datatrove 0.10.1's `C4QualityFilter` applies them, compiled.

Per line of `str.splitlines()`, stripped (Python whitespace), in this order:
1. a word (whitespace-separated) longer than `max_word_length` characters: the line goes;
2. Wikipedia citations (`[12]`, `[edit]`, `[citation needed]`) are removed (`remove_citations`);
3. a line that does not end with . ? ! " ' or that ends with "..." goes (`terminal_punctuation`);
4. fewer than `min_words_per_line` words (counted before 2): the line goes;
5. "lorem ipsum" (any case): the *document* goes (`lorem_ipsum`);
6. "javascript" (any case): the line goes (`javascript`);
7. "{": the document goes (`curly_bracket`);
8. "terms of use", "privacy policy", "cookie policy", "uses cookies", "use of cookies",
   "use cookies" (any case): the line goes (`policy`);
9. otherwise the line is kept and its sentences are counted as spaCy's `sentencizer` splits
   them (after a word that is one of its sentence-final marks, the next word that is not
   punctuation starts a sentence).
A document with fewer than `min_sentences` sentences in its kept lines goes; a kept one
becomes its kept lines joined by "\\n", stripped. Case-insensitive means ASCII letters here
(Python's `lower()` also maps a few other letters, such as the Kelvin sign, to ASCII).
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numba
import numpy as np
import polars as pl
import pyarrow as pa

from mixprep.filters.english import point_words
from mixprep.filters.english_tables import DECIMAL, LINE_BREAK, PUNCT, SENTENCE_END, SPACE, code_point_flags, exception_table
from mixprep.filters.textstats import TextBatch, batch_rows, decode, equals_row, most_bytes

if TYPE_CHECKING:
    from mixprep.filters.engine import Verdict
    from mixprep.filters.registry import Feature, FilterChain

DOCUMENT_REASONS = ("lorem_ipsum", "curly_bracket", "too_few_sentences")
"""Why C4 drops a document (reason codes 1, 2, 3; 0 keeps it)."""
LINE_FIELDS = ("lines", "too_long_word", "no_terminal_punctuation", "too_few_words", "javascript", "policy", "kept_lines")
"""Per document: its lines, the lines each rule removed, the lines kept (after reason and sentences in `clean`'s output)."""
POLICY_PHRASES = ("terms of use", "privacy policy", "cookie policy", "uses cookies", "use of cookies", "use cookies")
_PHRASES = ("lorem ipsum", "javascript", *POLICY_PHRASES)


@dataclass(frozen=True)
class C4Spec:
    """`c4:` settings; the defaults are datatrove's."""

    min_sentences: int = 5
    min_words_per_line: int = 3
    max_word_length: int = 1000
    remove_citations: bool = True
    terminal_punctuation: bool = True
    lorem_ipsum: bool = True
    javascript: bool = True
    curly_bracket: bool = True
    policy: bool = True

    def as_array(self) -> np.ndarray:
        return np.array([self.min_sentences, self.min_words_per_line, self.max_word_length, self.remove_citations,
                         self.terminal_punctuation, self.lorem_ipsum, self.javascript, self.curly_bracket, self.policy],
                        dtype=np.int64)


def _phrase_table(phrases: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
    rows = np.zeros((len(phrases), max(map(len, phrases))), dtype=np.int64)
    for i, phrase in enumerate(phrases):
        rows[i, : len(phrase)] = [ord(c) for c in phrase]
    return rows, np.array([len(p) for p in phrases], dtype=np.int64)


_PHRASE_ROWS, _PHRASE_LENGTHS = _phrase_table(_PHRASES)
_CITATIONS, _CITATION_LENGTHS = _phrase_table(("[edit]", "[citation needed]"))
_PHRASE_STARTS = np.array([[sum(1 << k for k, p in enumerate(_PHRASES) if p[:2] == chr(97 + a) + chr(97 + b)) for b in range(26)]
                           for a in range(26)], dtype=np.int64)
"""Per pair of lower-case letters: the phrases that start with it, as bits."""


# -- compiled ---------------------------------------------------------------------------------

@numba.njit(inline="always", cache=True)
def _lower(cp: int) -> int:
    return cp + 32 if 65 <= cp <= 90 else cp


@numba.njit(cache=True)
def _phrases_in(points: np.ndarray, lo: int, hi: int, rows: np.ndarray, lengths: np.ndarray) -> int:
    """Bit k set when phrase k occurs in points[lo:hi], ASCII case-insensitively (one pass)."""
    found = 0
    for i in range(lo, hi - 1):
        first, second = _lower(points[i]) - 97, _lower(points[i + 1]) - 97
        if not (0 <= first < 26 and 0 <= second < 26) or not _PHRASE_STARTS[first, second]:
            continue
        candidates = _PHRASE_STARTS[first, second]
        for k in range(len(lengths)):
            n = lengths[k]
            if not candidates >> k & 1 or i + n > hi or found >> k & 1:
                continue
            same = True
            for j in range(1, n):
                if _lower(points[i + j]) != rows[k, j]:
                    same = False
                    break
            if same:
                found |= 1 << k
    return found


@numba.njit(cache=True)
def _citation_at(points: np.ndarray, i: int, hi: int, flags: np.ndarray) -> int:
    """Length of `\\[\\d*]|\\[edit]|\\[citation needed]` at i (0: none)."""
    j = i + 1
    while j < hi and flags[points[j]] & DECIMAL:
        j += 1
    if j < hi and points[j] == 93:
        return j + 1 - i
    for c in range(len(_CITATION_LENGTHS)):
        n = _CITATION_LENGTHS[c]
        if i + n <= hi and equals_row(points, i, _CITATIONS, c, n):
            return n
    return 0


@numba.njit(cache=True)
def _sentences(
    points: np.ndarray, lo: int, hi: int, flags: np.ndarray, table: np.ndarray, starts: np.ndarray, ends: np.ndarray, pending: np.ndarray,
) -> int:
    """Sentences of points[lo:hi] as spaCy's sentencizer counts them over spaCy's tokens
    (whitespace beyond one space between words is a token of its own)."""
    sentences = 0
    seen_end = False
    tokens = 0
    i = lo
    while i < hi:
        if flags[points[i]] & SPACE:
            j = i + 1
            while j < hi and flags[points[j]] & SPACE:
                j += 1
            whitespace_token = tokens == 0 or points[i] != 32 or j - i > 1
            i = j
            if not whitespace_token:
                continue
            if tokens == 0:
                sentences = 1
            tokens += 1
            if seen_end:  # whitespace is neither punctuation nor a sentence end
                sentences += 1
                seen_end = False
            continue
        j = i
        marks = False
        while j < hi and not flags[points[j]] & SPACE:
            marks |= (flags[points[j]] & PUNCT) != 0
            j += 1
        if not marks:  # its words, however split, are all neither punctuation nor sentence ends: one will do
            if tokens == 0:
                sentences = 1
            tokens += 1
            if seen_end:
                sentences += 1
                seen_end = False
            i = j
            continue
        count = point_words(points, i, j, flags, table, starts, ends, pending)
        for k in range(count):
            s, e = starts[k], ends[k]
            is_punct = True
            for p in range(s, e):
                if not flags[points[p]] & PUNCT:
                    is_punct = False
                    break
            is_end = e - s == 1 and (flags[points[s]] & SENTENCE_END) != 0
            if tokens == 0:
                sentences = 1
            tokens += 1
            if seen_end and not is_punct and not is_end:
                sentences += 1
                seen_end = False
            elif is_end:
                seen_end = True
        i = j
    return sentences


@numba.njit(inline="always", cache=True)
def _encode(cp: int, out: np.ndarray, o: int) -> int:
    if cp < 0x80:
        out[o] = cp
        return o + 1
    if cp < 0x800:
        out[o] = 0xC0 | (cp >> 6)
        out[o + 1] = 0x80 | (cp & 0x3F)
        return o + 2
    if cp < 0x10000:
        out[o] = 0xE0 | (cp >> 12)
        out[o + 1] = 0x80 | ((cp >> 6) & 0x3F)
        out[o + 2] = 0x80 | (cp & 0x3F)
        return o + 3
    out[o] = 0xF0 | (cp >> 18)
    out[o + 1] = 0x80 | ((cp >> 12) & 0x3F)
    out[o + 2] = 0x80 | ((cp >> 6) & 0x3F)
    out[o + 3] = 0x80 | (cp & 0x3F)
    return o + 4


@numba.njit(cache=True)
def _clean_text(
    points: np.ndarray, n: int, flags: np.ndarray, table: np.ndarray, spec: np.ndarray, phrases: np.ndarray,
    phrase_lengths: np.ndarray, line: np.ndarray, joined: np.ndarray, starts: np.ndarray, ends: np.ndarray, pending: np.ndarray,
    counts: np.ndarray,
) -> tuple[int, int, int]:
    """(reason, sentences, code points of the cleaned text in `joined`); line counts into `counts`."""
    min_sentences, min_words, max_word_length = spec[0], spec[1], spec[2]
    sentences = 0
    used = 0  # code points in joined
    i = 0
    while i < n:
        j = i
        while j < n and not flags[points[j]] & LINE_BREAK:
            j += 1
        a, b = i, j
        i = j + 2 if j + 1 < n and points[j] == 13 and points[j + 1] == 10 else j + 1
        counts[0] += 1
        while a < b and flags[points[a]] & SPACE:
            a += 1
        while b > a and flags[points[b - 1]] & SPACE:
            b -= 1
        words = 0
        longest = 0
        k = a
        while k < b:
            if flags[points[k]] & SPACE:
                k += 1
                continue
            start = k
            while k < b and not flags[points[k]] & SPACE:
                k += 1
            words += 1
            longest = max(longest, k - start)
        if max_word_length >= 0 and longest > max_word_length:
            counts[1] += 1
            continue
        size = 0
        k = a
        while k < b:
            cut = _citation_at(points, k, b, flags) if spec[3] and points[k] == 91 else 0
            if cut:
                k += cut
                continue
            line[size] = points[k]
            size += 1
            k += 1
        if spec[4]:
            last = line[size - 1] if size else -1
            ends_terminal = last == 46 or last == 63 or last == 33 or last == 34 or last == 39
            ellipsis = size >= 3 and line[size - 1] == 46 and line[size - 2] == 46 and line[size - 3] == 46
            if not ends_terminal or ellipsis:
                counts[2] += 1
                continue
        if words < min_words:
            counts[3] += 1
            continue
        found = _phrases_in(line, 0, size, phrases, phrase_lengths)
        if spec[5] and found & 1:
            return 1, sentences, 0
        if spec[6] and found & 2:
            counts[4] += 1
            continue
        if spec[7]:
            for k in range(size):
                if line[k] == 123:
                    return 2, sentences, 0
        if spec[8] and found >> 2:
            counts[5] += 1
            continue
        if min_sentences >= 0:
            sentences += _sentences(line, np.int64(0), size, flags, table, starts, ends, pending)
        if counts[6] > 0:
            joined[used] = 10
            used += 1
        joined[used : used + size] = line[:size]
        used += size
        counts[6] += 1
    if sentences < min_sentences:
        return 3, sentences, 0
    return 0, sentences, used


@numba.njit(cache=True)
def _c4_kernel(
    data: np.ndarray, offsets: np.ndarray, rows: np.ndarray, flags: np.ndarray, table: np.ndarray, spec: np.ndarray, phrases: np.ndarray,
    phrase_lengths: np.ndarray, size: int, out: np.ndarray, cleaned: np.ndarray, cleaned_offsets: np.ndarray,
) -> None:
    points = np.empty(size, dtype=np.int64)
    positions = np.empty(size, dtype=np.int64)
    line = np.empty(size, dtype=np.int64)
    joined = np.empty(size, dtype=np.int64)
    starts = np.empty(size, dtype=np.int64)
    ends = np.empty(size, dtype=np.int64)
    pending = np.empty(2 * size, dtype=np.int64)
    o = 0
    for r in range(len(rows)):
        d = rows[r]
        n = decode(data, offsets[d], offsets[d + 1], points, positions)
        counts = out[r, 2:]
        reason, sentences, used = _clean_text(points, n, flags, table, spec, phrases, phrase_lengths, line, joined, starts, ends,
                                              pending, counts)
        out[r, 0], out[r, 1] = reason, sentences
        a, b = 0, used
        while a < b and flags[joined[a]] & SPACE:
            a += 1
        while b > a and flags[joined[b - 1]] & SPACE:
            b -= 1
        for k in range(a, b):
            o = _encode(joined[k], cleaned, o)
        cleaned_offsets[r + 1] = o


def clean(texts: pl.Series | TextBatch, spec: C4Spec, rows: np.ndarray | None = None) -> tuple[np.ndarray, pl.Series]:
    """Per row: int64 [reason, sentences, *LINE_FIELDS] and the cleaned text ("" for a dropped one)."""
    batch, rows = batch_rows(texts, rows)
    out = np.zeros((len(rows), 2 + len(LINE_FIELDS)), dtype=np.int64)
    offsets = np.zeros(len(rows) + 1, dtype=np.int64)
    size = most_bytes(batch.offsets, rows) + 1 if len(rows) else 1
    total = int(np.sum(batch.offsets[rows + 1] - batch.offsets[rows])) if len(rows) else 0
    cleaned = np.empty(total + 1, dtype=np.uint8)  # a kept text is never longer than its original
    if len(rows):
        _c4_kernel(batch.data, batch.offsets, rows, code_point_flags(), exception_table(), spec.as_array(), _PHRASE_ROWS, _PHRASE_LENGTHS,
                   size, out, cleaned, offsets)
    array = pa.LargeStringArray.from_buffers(len(rows), pa.py_buffer(offsets), pa.py_buffer(cleaned[: offsets[-1]]))
    return out, pl.Series(array)


# -- what a build reports ---------------------------------------------------------------------

def c4_removals(verdict: Verdict, feature: Feature, reasons: np.ndarray, chain: FilterChain) -> Counter:
    """Documents `c4` removed in a batch, by reason (`documents.<reason>`)."""
    code = 1 + next(i for i, (name, _) in enumerate(chain) if name == "c4")
    blamed = np.flatnonzero(reasons == code)
    if not len(blamed) or feature.name not in verdict.computed:
        return Counter()
    rows, values = verdict.computed[feature.name]
    found = values.struct.field("reason").to_numpy()[np.searchsorted(rows, blamed)]
    return Counter({f"documents.{DOCUMENT_REASONS[r - 1]}": int(n) for r, n in zip(*np.unique(found, return_counts=True), strict=True)})


def c4_summary(counts: Counter) -> dict[str, dict[str, int]]:
    """The manifest's `c4` entry of a source: documents removed by reason, and the lines of
    the documents it kept: read, removed by each rule, kept."""
    return {
        "documents_removed": {reason: counts.get(f"documents.{reason}", 0) for reason in DOCUMENT_REASONS},
        "lines": {name: counts.get(f"lines.{name}", 0) for name in LINE_FIELDS},
    }
