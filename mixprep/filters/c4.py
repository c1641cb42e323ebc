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

from mixprep.filters.english import text_tokens
from mixprep.filters.english_tables import DECIMAL, PUNCT, SENTENCE_END, SPACE, code_point_flags, exception_table
from mixprep.filters.english_words import batch_words
from mixprep.filters.intrinsics import bytes_between, copy_bytes, trailing_zeros
from mixprep.filters.textstats import TextBatch, batch_rows, char_flags, decode_one, equals_row, most_bytes, next_line, strip_span

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
_ANCHORS = np.array([ord(c) for c in "mvmvkkkk"], dtype=np.int64)
_ANCHOR_AT = np.array([4, 2, 3, 3, 3, 8, 10, 7], dtype=np.int64)
"""Per phrase of _PHRASES: a letter it has (lower case), rarer in text than its first one, and
where in the phrase it is: an occurrence of the phrase has that letter there, so a line is
searched only at its m, v and k (a few in a hundred letters)."""
assert all(phrase[at] == chr(letter) for phrase, letter, at in zip(_PHRASES, _ANCHORS, _ANCHOR_AT, strict=True))
_MARKED = np.array([chr(b).lower() in "[{mvk" for b in range(256)], dtype=np.bool_)
"""Per byte: "[", "{" or an anchor letter (either case)."""


# -- compiled ---------------------------------------------------------------------------------

@numba.njit(inline="always", cache=True)
def _lower(cp: int) -> int:
    return cp + 32 if 65 <= cp <= 90 else cp


@numba.njit(cache=True)
def _citation_at(data: np.ndarray, i: int, hi: int, flags: np.ndarray) -> int:
    """Length in bytes of `\\[\\d*]|\\[edit]|\\[citation needed]` at i of UTF-8 data (0: none);
    `\\d` is any Unicode decimal digit, as in Python's `re` ("[١٢]" is a citation)."""
    j = i + 1
    while j < hi:
        f, length = char_flags(data, j, flags)
        if not f & DECIMAL:
            break
        j += length
    if j < hi and data[j] == 93:
        return j + 1 - i
    for c in range(len(_CITATION_LENGTHS)):
        n = _CITATION_LENGTHS[c]
        if i + n <= hi and equals_row(data, i, _CITATIONS, c, n):
            return n
    return 0


@numba.njit(cache=True)
def _sentences(
    data: np.ndarray, lo: int, hi: int, flags: np.ndarray, starts: np.ndarray, ends: np.ndarray, chars: np.ndarray, first: int, last: int,
) -> int:
    """Sentences of data[lo:hi] as spaCy's sentencizer counts them, from its words
    starts/ends/chars[first:last]: after a word that is one sentence-final mark, the next
    token that is not punctuation starts a sentence. Whitespace between words is a token of
    its own unless it is one space (so is whitespace before the first word)."""
    sentences = tokens = 0
    seen_end = False
    before = lo  # where the gap before the next word starts
    for k in range(first, last + 1):
        gap_end = starts[k] if k < last else hi
        if gap_end > before and (tokens == 0 or gap_end - before > 1 or data[before] != 32):
            if tokens == 0:
                sentences = 1
            tokens += 1
            if seen_end:  # whitespace is neither punctuation nor a sentence end
                sentences += 1
                seen_end = False
        if k == last:
            break
        s, e = starts[k], ends[k]
        before = e
        if tokens == 0:
            sentences = 1
        tokens += 1
        if chars[k] == 1:
            cp = np.int64(data[s]) if data[s] < 0x80 else decode_one(data, s)[0]
            if flags[cp] & SENTENCE_END:
                seen_end = True
                continue
            if seen_end and not flags[cp] & PUNCT:
                sentences += 1
                seen_end = False
        elif seen_end:
            j = s
            while j < e:  # a word of marks only is punctuation: it does not start a sentence
                f, length = char_flags(data, j, flags)
                j += length
                if not f & PUNCT:
                    sentences += 1
                    seen_end = False
                    break
    return sentences


@numba.njit(inline="always", cache=True)
def _marked_bytes(data: np.ndarray, i: int, hi: int) -> tuple[np.uint64, int]:
    """(bits of the "[", "{", m, v, k (either case) among data[i:i + 32] or up to hi, how many bytes that covers)."""
    if i + 32 <= hi:
        mask = bytes_between(data, i, 91, 91) | bytes_between(data, i, 123, 123)
        for letter in (107, 109, 118):  # k m v
            mask |= bytes_between(data, i, letter, letter) | bytes_between(data, i, letter - 32, letter - 32)
        return mask, 32
    mask = np.uint64(0)
    for t in range(hi - i):
        if _MARKED[data[i + t]]:
            mask |= np.uint64(1) << np.uint64(t)
    return mask, hi - i


@numba.njit(cache=True)
def _scan_line(data: np.ndarray, lo: int, hi: int, rows: np.ndarray, lengths: np.ndarray) -> tuple[int, bool, bool]:
    """(bit k set when phrase k occurs in data[lo:hi] ASCII case-insensitively, a "[" is
    there, a "{" is there). The phrases are ASCII, and no byte of a longer UTF-8 character
    equals an ASCII one; each phrase is looked for where its anchor letter is (`_ANCHORS`),
    found 32 bytes at a time."""
    found = 0
    square = curly = False
    i = lo
    while i < hi:
        mask, width = _marked_bytes(data, i, hi)
        while mask:
            at = i + np.int64(trailing_zeros(mask))
            mask &= mask - np.uint64(1)
            b = np.int64(data[at])
            if b == 91:
                square = True
                continue
            if b == 123:
                curly = True
                continue
            letter = b | 32
            for k in range(len(lengths)):
                start, n = at - _ANCHOR_AT[k], lengths[k]
                if _ANCHORS[k] != letter or found >> k & 1 or start < lo or start + n > hi:
                    continue
                same = True
                for j in range(n):
                    if _lower(np.int64(data[start + j])) != rows[k, j]:
                        same = False
                        break
                if same:
                    found |= 1 << k
        i += width
    return found, square, curly


@numba.njit(cache=True)
def _cut_citations(data: np.ndarray, lo: int, hi: int, flags: np.ndarray, line: np.ndarray) -> int:
    """data[lo:hi] without its citations into `line`; returns its length in bytes."""
    size = 0
    k = lo
    while k < hi:
        cut = _citation_at(data, k, hi, flags) if data[k] == 91 else 0
        if cut:
            k += cut
            continue
        line[size] = data[k]
        size += 1
        k += 1
    return size


@numba.njit(cache=True)
def _clean_text(
    data: np.ndarray, start: int, end: int, flags: np.ndarray, table: np.ndarray, spec: np.ndarray, phrases: np.ndarray,
    phrase_lengths: np.ndarray, starts: np.ndarray, ends: np.ndarray, chars: np.ndarray, first_word: int, last_word: int,
    line: np.ndarray, scratch: np.ndarray, line_words: np.ndarray, out: np.ndarray, o: int, counts: np.ndarray,
) -> tuple[int, int, int]:
    """(reason, sentences, end of the cleaned text written to out[o:]) of the text
    data[start:end], whose words are starts/ends/chars[first_word:last_word]; line counts
    into `counts`. A line with a citation is cut into `line` and split again."""
    min_sentences, min_words, max_word_length = spec[0], spec[1], spec[2]
    sentences = 0
    begin = o
    k = first_word
    i = start
    while i < end:
        line_start = i
        line_end, i = next_line(data, i, end)
        counts[0] += 1
        first = k  # the line's words; a chunk (whitespace-separated word) is a run of touching ones
        chunks = longest = run = 0
        while k < last_word and starts[k] < line_end:
            if k == first or starts[k] != ends[k - 1]:
                chunks += 1
                run = 0
            run += chars[k]
            longest = max(longest, run)
            k += 1
        if max_word_length >= 0 and longest > max_word_length:
            counts[1] += 1
            continue
        a, b = strip_span(data, line_start, line_end, flags, SPACE)
        found, square, curly = _scan_line(data, a, b, phrases, phrase_lengths)
        cut = square and spec[3]
        source, lo, hi = data, a, b
        if cut:
            hi = _cut_citations(data, a, b, flags, line)
            source, lo = line, np.int64(0)  # not a literal 0 (see english.text_tokens)
            found, square, curly = _scan_line(line, lo, hi, phrases, phrase_lengths)
        if spec[4]:
            ends_terminal = hi > lo and (source[hi - 1] == 46 or source[hi - 1] == 63 or source[hi - 1] == 33
                                         or source[hi - 1] == 34 or source[hi - 1] == 39)
            ellipsis = hi - lo >= 3 and source[hi - 1] == 46 and source[hi - 2] == 46 and source[hi - 3] == 46
            if not ends_terminal or ellipsis:
                counts[2] += 1
                continue
        if chunks < min_words:
            counts[3] += 1
            continue
        if spec[5] and found & 1:
            return 1, sentences, begin
        if spec[6] and found & 2:
            counts[4] += 1
            continue
        if spec[7] and curly:
            return 2, sentences, begin
        if spec[8] and found >> 2:
            counts[5] += 1
            continue
        if min_sentences >= 0:
            if not cut:
                sentences += _sentences(data, a, b, flags, starts, ends, chars, first, k)
            else:
                # np.int64(0), not a literal 0: a literal argument compiles the callee again (text_tokens: ~50 s)
                zero = np.int64(0)
                count = text_tokens(line, zero, hi, flags, table, scratch, line_words[0], line_words[1], line_words[2])
                sentences += _sentences(line, zero, hi, flags, line_words[0], line_words[1], line_words[2], zero, count)
        if counts[6] > 0:
            out[o] = 10
            o += 1
        copy_bytes(out, o, source, lo, hi - lo)  # in bounds: a cleaned text is never longer than the text
        o += hi - lo
        counts[6] += 1
    if sentences < min_sentences:
        return 3, sentences, begin
    return 0, sentences, o


@numba.njit(cache=True)
def _c4_kernel(
    data: np.ndarray, offsets: np.ndarray, rows: np.ndarray, flags: np.ndarray, table: np.ndarray, spec: np.ndarray, phrases: np.ndarray,
    phrase_lengths: np.ndarray, index: np.ndarray, word_offsets: np.ndarray, starts: np.ndarray, ends: np.ndarray, chars: np.ndarray,
    size: int, out: np.ndarray, cleaned: np.ndarray, cleaned_offsets: np.ndarray,
) -> None:
    line = np.empty(size, dtype=np.uint8)
    scratch = np.empty((5, 2 * size + 2), dtype=np.int64)
    line_words = np.empty((3, size + 1), dtype=np.int64)
    o = np.int64(0)  # not a literal 0 (see english.text_tokens)
    for r in range(len(rows)):
        d = rows[r]
        first, last = word_offsets[index[r]], word_offsets[index[r] + 1]
        reason, sentences, end = _clean_text(data, offsets[d], offsets[d + 1], flags, table, spec, phrases, phrase_lengths, starts, ends,
                                             chars, first, last, line, scratch, line_words, cleaned, o, out[r, 2:])
        out[r, 0], out[r, 1] = reason, sentences
        a, b = strip_span(cleaned, o, end, flags, SPACE)  # only a cut citation leaves whitespace at either end
        if a > o:
            cleaned[o : o + b - a] = cleaned[a:b].copy()
        o += b - a
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
        w = batch_words(batch, rows)  # Gopher's filters read the same words
        _c4_kernel(batch.data, batch.offsets, rows, code_point_flags(), exception_table(), spec.as_array(), _PHRASE_ROWS, _PHRASE_LENGTHS,
                   w.index, w.offsets, w.starts, w.ends, w.chars, size, out, cleaned, offsets)
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
