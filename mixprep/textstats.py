"""Compiled per-text statistics for the filters: one pass over each text's UTF-8 bytes.

The filters in mixprep/filters.py read these numbers; this module computes them with
numba over the Arrow buffers of a whole record batch (one uint8 data buffer, n+1
offsets), so no Python runs per record and no per-word strings are built. Three
kernels, each one loop over the batch:

- `quality_counts`: words, their characters, '#', ellipses, non-blank / bullet /
  ellipsis-ended / terminal-punctuated lines, words with a letter, Gopher stop words.
- `line_repetition`: duplicate line and paragraph fractions (by count).
- `ngram_repetition`: top 2-4-gram and duplicate 5-10-gram character fractions.

Definitions (the ones mixprep's filters document; Gopher = Rae et al. 2021 table A1 as
RedPajama-V2 implements it):
- whitespace is Unicode White_Space (what `\\s` and `str.strip` use in polars);
  a word is a maximal run of non-whitespace characters; characters are code points.
- a line is a piece of the text split at "\\n"; blank lines (whitespace only) are not
  counted. A paragraph is a run of non-blank lines; blank lines separate paragraphs.
  Lines and paragraphs are compared with surrounding whitespace stripped.
- an ellipsis is "..." or "…", counted without overlap from the left ("......" is two).
- a letter is a character with the Unicode Alphabetic property.
- stop words are whole ASCII words in any case: a maximal run of [A-Za-z0-9_] bytes that
  lowercases to one of Gopher's eight ("the," and "The" count, "there" and "the_" don't).
- duplicate line / paragraph fraction: pieces that repeat an earlier piece of the same
  text, over all pieces. Top n-gram fraction (n = 2..4): characters of the most frequent
  repeated n-gram times its count (ties: the longer one), over the characters of all
  words; 0 when no n-gram repeats. Duplicate n-gram fraction (n = 5..10): characters of
  the words covered by any n-gram that occurs more than once, over the same total.

Equality of words, lines and n-grams is equality of 64-bit hashes inside one text (a
collision is ~1e-15 likely per text); hashes never leave a call. tests/filter_reference.py
holds the same definitions written as polars regular expressions, and the tests check
that both agree on random and hand-written text.

Compilation happens once per machine (numba's on-disk cache, `cache=True`); a worker
process loads the compiled code in well under a second.
"""
from __future__ import annotations

import functools

import numba
import numpy as np
import polars as pl
import pyarrow as pa

from mixprep.filters import GOPHER_STOP_WORDS, NGRAM_FIELDS, QUALITY_FIELDS

BULLETS = "-*•‣◦▪●"
TERMINAL_PUNCTUATION = ".!?\"'”’…"

_HASH_SEED = np.uint64(0xCBF29CE484222325)  # FNV-1a's offset basis: any odd 64-bit constant would do
_NGRAM_MULTIPLIER = np.uint64(0x9E3779B97F4A7C15)
_MIX_1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX_2 = np.uint64(0x94D049BB133111EB)


def _packed(word: str) -> int:
    """An ASCII word of up to 4 letters as one integer (last letter in the low byte)."""
    return sum(ord(letter) << (8 * i) for i, letter in enumerate(reversed(word)))


_STOP_WORDS_PACKED = np.array([_packed(word) for word in GOPHER_STOP_WORDS], dtype=np.int64)
_BULLETS = np.array([ord(c) for c in BULLETS], dtype=np.int64)
_TERMINALS = np.array([ord(c) for c in TERMINAL_PUNCTUATION], dtype=np.int64)


@functools.lru_cache(maxsize=1)
def alphabetic_table() -> np.ndarray:
    """bool per code point: Unicode Alphabetic, as polars' regex engine defines it (~0.2 s once)."""
    points = np.arange(0x110000, dtype=np.uint32)
    points = points[(points < 0xD800) | (points > 0xDFFF)]  # surrogates are not characters
    text = pl.Series([points.astype("<u4").tobytes().decode("utf-32-le")]).str.extract_all(r"\p{Alphabetic}")
    table = np.zeros(0x110000, dtype=np.bool_)
    letters = text.explode().drop_nulls().to_numpy()
    table[np.fromiter((ord(c) for c in letters), dtype=np.int64, count=len(letters))] = True
    return table


def utf8_buffers(texts: pl.Series) -> tuple[np.ndarray, np.ndarray]:
    """Texts (String or Binary) -> (uint8 data, int64 offsets of n+1); a null reads as empty.

    Zero-copy where Arrow allows.
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
    return buffer, offsets


# -- byte-level helpers (compiled) ----------------------------------------------------

@numba.njit(inline="always", cache=True)
def _decode(data: np.ndarray, i: int) -> tuple[int, int]:
    """(code point, byte length) of the UTF-8 character at data[i]; Arrow strings are valid UTF-8."""
    b0 = np.int64(data[i])
    if b0 < 0x80:
        return b0, 1
    if b0 < 0xE0:
        return ((b0 & 0x1F) << 6) | (np.int64(data[i + 1]) & 0x3F), 2
    if b0 < 0xF0:
        return ((b0 & 0x0F) << 12) | ((np.int64(data[i + 1]) & 0x3F) << 6) | (np.int64(data[i + 2]) & 0x3F), 3
    return (
        ((b0 & 0x07) << 18)
        | ((np.int64(data[i + 1]) & 0x3F) << 12)
        | ((np.int64(data[i + 2]) & 0x3F) << 6)
        | (np.int64(data[i + 3]) & 0x3F)
    ), 4


@numba.njit(inline="always", cache=True)
def _is_space(cp: int) -> bool:
    """Unicode White_Space."""
    if cp < 0x80:
        return cp == 32 or 9 <= cp <= 13
    if cp < 0x1680:
        return cp == 0x85 or cp == 0xA0
    return (
        cp == 0x1680 or 0x2000 <= cp <= 0x200A or cp == 0x2028 or cp == 0x2029
        or cp == 0x202F or cp == 0x205F or cp == 0x3000
    )


@numba.njit(inline="always", cache=True)
def _is_ascii_word_byte(b: int) -> bool:
    return (97 <= b <= 122) or (65 <= b <= 90) or (48 <= b <= 57) or b == 95


@numba.njit(inline="always", cache=True)
def _contains(values: np.ndarray, x: int) -> bool:
    for value in values:
        if value == x:
            return True
    return False


@numba.njit(inline="always", cache=True)
def _mix(h: np.uint64) -> np.uint64:
    """splitmix64's finalizer: spreads FNV hashes over the table's low bits."""
    h = (h ^ (h >> np.uint64(30))) * _MIX_1
    h = (h ^ (h >> np.uint64(27))) * _MIX_2
    return h ^ (h >> np.uint64(31))


@numba.njit(cache=True)
def _hash_bytes(data: np.ndarray, start: int, end: int) -> np.uint64:
    """64-bit hash of data[start:end], eight bytes per step.

    Bytes are packed into words and each word is folded in with one multiply, so the
    serial chain is one multiply per 8 bytes rather than one per byte (FNV-1a).
    """
    h = _HASH_SEED ^ np.uint64(end - start)
    i = start
    while i + 8 <= end:
        word = np.uint64(0)
        for k in range(8):
            word |= np.uint64(data[i + k]) << np.uint64(8 * k)
        h = (h ^ word) * _MIX_1
        h ^= h >> np.uint64(29)
        i += 8
    word = np.uint64(0)
    for k in range(end - i):
        word |= np.uint64(data[i + k]) << np.uint64(8 * k)
    h = (h ^ word) * _MIX_2
    return _mix(h)


@numba.njit(cache=True)
def _longest(offsets: np.ndarray) -> int:
    """Bytes of the longest text: scratch arrays sized by it serve every text of the batch."""
    longest = 0
    for d in range(len(offsets) - 1):
        longest = max(longest, offsets[d + 1] - offsets[d])
    return longest


def _table_size(count: int) -> int:
    capacity = 16
    while capacity < 2 * count:
        capacity *= 2
    return capacity


_table_size = numba.njit(cache=True)(_table_size)


@numba.njit(cache=True)
def _occurrences(keys: np.ndarray, count: int, out: np.ndarray, slots: np.ndarray, counts: np.ndarray, where: np.ndarray) -> None:
    """out[i] = how many of keys[:count] equal keys[i] (open addressing, linear probing).

    `slots`, `counts` and `where` are scratch space reused across calls (allocating per
    text was a third of the time); `counts` is all zero on entry and on return.
    """
    mask = np.uint64(_table_size(count) - 1)
    for i in range(count):
        slot = keys[i] & mask
        while counts[slot] > 0 and slots[slot] != keys[i]:
            slot = (slot + np.uint64(1)) & mask
        slots[slot] = keys[i]
        counts[slot] += 1
        where[i] = np.int64(slot)
    for i in range(count):
        out[i] = counts[where[i]]
    for i in range(count):
        counts[where[i]] = 0


@numba.njit(cache=True)
def _repeats_of_earlier(keys: np.ndarray, count: int, slots: np.ndarray, counts: np.ndarray, where: np.ndarray) -> int:
    """How many of keys[:count] equal an earlier key (scratch space as in `_occurrences`)."""
    mask = np.uint64(_table_size(count) - 1)
    repeats = 0
    for i in range(count):
        slot = keys[i] & mask
        while counts[slot] > 0 and slots[slot] != keys[i]:
            slot = (slot + np.uint64(1)) & mask
        repeats += counts[slot] > 0
        slots[slot] = keys[i]
        counts[slot] = 1
        where[i] = np.int64(slot)
    for i in range(count):
        counts[where[i]] = 0
    return repeats


# -- quality counts -------------------------------------------------------------------

# Per ASCII byte, the character classes the quality counts need, as bits.
SPACE, ALPHA, WORD_BYTE, BULLET, TERMINAL, DOT, HASH, NEWLINE = (1 << k for k in range(8))


def _class_flags(cp: int) -> int:
    c = chr(cp)
    flags = 0
    flags |= SPACE if c.isspace() and c not in "\x1c\x1d\x1e\x1f" else 0  # Python's isspace adds 4 separators
    flags |= ALPHA if c.isascii() and c.isalpha() else 0
    flags |= WORD_BYTE if c.isascii() and (c.isalnum() or c == "_") else 0
    flags |= BULLET if c in BULLETS else 0
    flags |= TERMINAL if c in TERMINAL_PUNCTUATION else 0
    flags |= DOT if c == "." else 0
    flags |= HASH if c == "#" else 0
    flags |= NEWLINE if c == "\n" else 0
    return flags


_ASCII_CLASSES = np.array([_class_flags(b) for b in range(128)], dtype=np.int64)
_ASCII_SPACE = (_ASCII_CLASSES & SPACE).astype(np.bool_)


def _stop_word_slots() -> tuple[int, np.ndarray]:
    """A multiplier that sends each packed stop word to its own slot of 64, and the slot table.

    With it a token is tested with one multiply and one load instead of eight compares.
    """
    for multiplier in range(0x9E3779B1, 0x9E3779B1 + 100_000, 2):
        slots = ((_STOP_WORDS_PACKED * multiplier) >> 26) & 63
        if len(set(slots.tolist())) == len(slots):
            table = np.full(64, -1, dtype=np.int64)
            table[slots] = _STOP_WORDS_PACKED
            return multiplier, table
    raise AssertionError("no collision-free multiplier for the stop words")


_STOP_MULTIPLIER, _STOP_SLOTS = _stop_word_slots()


@numba.njit(cache=True)
def _non_ascii_flags(cp: int, alphabetic: np.ndarray, bullets: np.ndarray, terminals: np.ndarray) -> int:
    flags = 0
    if _is_space(cp):
        flags |= SPACE
    if alphabetic[cp]:
        flags |= ALPHA
    if _contains(bullets, cp):
        flags |= BULLET
    if _contains(terminals, cp):
        flags |= TERMINAL
    return flags


@numba.njit(cache=True)
def _quality_kernel(
    data: np.ndarray,
    offsets: np.ndarray,
    ascii_classes: np.ndarray,
    alphabetic: np.ndarray,
    stop_multiplier: int,
    stop_slots: np.ndarray,
    bullets: np.ndarray,
    terminals: np.ndarray,
    out: np.ndarray,
) -> None:
    """One pass per text. Word and line boundaries in prose are unpredictable, so the
    per-character updates are bit arithmetic rather than branches; only non-ASCII
    characters and newlines take a branch."""
    for d in range(len(offsets) - 1):
        words = word_chars = hashes = ellipses = alpha_words = stops = 0
        lines = bullet_lines = ellipsis_lines = terminal_lines = 0
        previous_space = 1
        word_alpha = 0  # the current word has a letter
        dots = 0  # run of '.' since the last counted ellipsis
        dot_1 = dot_2 = 0  # the two previous characters were '.'
        line_content = first_bullet = last_terminal = ends_ellipsis = 0
        token_length = token = 0  # current run of ASCII word bytes, lowercased and packed
        # A fixed stride of one byte (continuation bytes skipped) keeps the next address
        # independent of the byte just read; stepping by character length does not.
        for i in range(offsets[d], offsets[d + 1]):
            b = np.int64(data[i])
            if b < 128:
                flags = ascii_classes[b]
                hellip = 0
            elif b < 0xC0:
                continue  # inside a multi-byte character
            else:
                cp, _ = _decode(data, i)
                flags = _non_ascii_flags(cp, alphabetic, bullets, terminals)
                hellip = 1 if cp == 0x2026 else 0
            space = flags & SPACE
            nonspace = 1 - space
            dot = (flags >> 5) & 1
            # words
            start = nonspace & previous_space
            words += start
            word_chars += nonspace
            alpha_words += space & word_alpha
            # word_alpha: the current word has a letter (0 between words)
            word_alpha = (word_alpha | ((flags >> 1) & 1)) & nonspace
            previous_space = space
            # symbols
            hashes += (flags >> 6) & 1
            dots = dots + 1 if dot else 0
            full = 1 if dots == 3 else 0
            ellipses += full + hellip
            dots = 0 if full else dots
            # lines: first and last non-space character
            # (bullets, terminals, dots and "…" are never spaces, so these need no select)
            first_bullet |= (flags >> 3) & 1 & (1 - line_content)
            last_terminal = (last_terminal & space) | ((flags >> 4) & 1)
            ends_ellipsis = (ends_ellipsis & space) | hellip | (dot & dot_1 & dot_2)
            line_content |= nonspace
            dot_2 = dot_1
            dot_1 = dot
            if flags & NEWLINE:
                lines += line_content
                bullet_lines += line_content & first_bullet
                ellipsis_lines += line_content & ends_ellipsis
                terminal_lines += line_content & last_terminal
                line_content = first_bullet = last_terminal = ends_ellipsis = 0
            # stop words: a token of ASCII word bytes is tested at the byte after it
            word_byte = (flags >> 2) & 1
            short = 1 if ((token_length - 1) & ~3) == 0 else 0  # 1 <= length <= 4
            hit = 1 if stop_slots[((token * stop_multiplier) >> 26) & 63] == token else 0
            stops += (1 - word_byte) & short & hit
            lower = b | (((flags >> 1) & 1) << 5)  # ASCII letters lowercased
            token = (((token << 8) | lower) & 0xFFFFFFFF) & -word_byte  # its last 4 bytes, last in the low byte
            token_length = (token_length + 1) & -word_byte
        # the text's end closes its last word, token and line
        alpha_words += word_alpha
        if 0 < token_length <= 4 and stop_slots[((token * stop_multiplier) >> 26) & 63] == token:
            stops += 1
        lines += line_content
        bullet_lines += line_content & first_bullet
        ellipsis_lines += line_content & ends_ellipsis
        terminal_lines += line_content & last_terminal
        row = out[d]
        row[0] = words
        row[1] = word_chars
        row[2] = hashes
        row[3] = ellipses
        row[4] = lines
        row[5] = bullet_lines
        row[6] = ellipsis_lines
        row[7] = terminal_lines
        row[8] = alpha_words
        row[9] = stops


def quality_counts(texts: pl.Series) -> np.ndarray:
    """int64 (n, len(QUALITY_FIELDS)): the counts the Gopher quality and C4 line filters read."""
    data, offsets = utf8_buffers(texts)
    out = np.zeros((len(offsets) - 1, len(QUALITY_FIELDS)), dtype=np.int64)
    _quality_kernel(data, offsets, _ASCII_CLASSES, alphabetic_table(), _STOP_MULTIPLIER, _STOP_SLOTS, _BULLETS, _TERMINALS, out)
    return out


# -- line and paragraph repetition ------------------------------------------------------

@numba.njit(cache=True)
def _line_repetition_kernel(data: np.ndarray, offsets: np.ndarray, ascii_space: np.ndarray, out: np.ndarray) -> None:
    longest = _longest(offsets)
    line_keys = np.empty(longest + 1, dtype=np.uint64)
    paragraph_keys = np.empty(longest + 1, dtype=np.uint64)
    capacity = _table_size(longest + 1)
    slots = np.zeros(capacity, dtype=np.uint64)
    counts = np.zeros(capacity, dtype=np.int32)
    where = np.empty(longest + 1, dtype=np.int64)
    for d in range(len(offsets) - 1):
        end = offsets[d + 1]
        n_lines = n_paragraphs = 0
        content_start = content_end = -1  # stripped extent of the current line
        paragraph_start = paragraph_end = -1
        space = True
        for i in range(offsets[d], end + 1):
            if i == end or data[i] == 10:  # the text's end closes its last line
                if content_start >= 0:
                    line_keys[n_lines] = _hash_bytes(data, content_start, content_end)
                    n_lines += 1
                    if paragraph_start < 0:
                        paragraph_start = content_start
                    paragraph_end = content_end
                elif paragraph_start >= 0:  # a blank line closes the paragraph
                    paragraph_keys[n_paragraphs] = _hash_bytes(data, paragraph_start, paragraph_end)
                    n_paragraphs += 1
                    paragraph_start = -1
                content_start = content_end = -1
                continue
            b = data[i]
            if b < 128:
                space = ascii_space[b]
            elif b >= 0xC0:
                space = _is_space(_decode(data, i)[0])
            # else: a continuation byte belongs to the character its lead byte began
            content_start = i if content_start < 0 and not space else content_start
            content_end = content_end if space else i + 1
        if paragraph_start >= 0:
            paragraph_keys[n_paragraphs] = _hash_bytes(data, paragraph_start, paragraph_end)
            n_paragraphs += 1
        if n_lines:
            out[d, 0] = _repeats_of_earlier(line_keys, n_lines, slots, counts, where) / n_lines
        if n_paragraphs:
            out[d, 1] = _repeats_of_earlier(paragraph_keys, n_paragraphs, slots, counts, where) / n_paragraphs


def line_repetition(texts: pl.Series) -> np.ndarray:
    """float64 (n, 2): duplicate line fraction, duplicate paragraph fraction (by count)."""
    data, offsets = utf8_buffers(texts)
    out = np.zeros((len(offsets) - 1, 2))
    _line_repetition_kernel(data, offsets, _ASCII_SPACE, out)
    return out


# -- n-gram repetition ---------------------------------------------------------------

@numba.njit(cache=True)
def _ngram_kernel(data: np.ndarray, offsets: np.ndarray, ascii_space: np.ndarray, out: np.ndarray) -> None:
    longest = _longest(offsets)
    capacity = longest // 2 + 2  # a word and its separator take at least 2 bytes
    word_hash = np.empty(capacity, dtype=np.uint64)
    char_prefix = np.zeros(capacity + 1, dtype=np.int64)
    gram = np.empty(capacity, dtype=np.uint64)
    repeated = np.zeros(capacity + 1, dtype=np.bool_)
    starts = np.empty(capacity, dtype=np.int64)
    keys = np.empty(capacity, dtype=np.uint64)
    occurrences = np.empty(capacity, dtype=np.int64)
    table_capacity = _table_size(capacity)
    slots = np.zeros(table_capacity, dtype=np.uint64)
    counts = np.zeros(table_capacity, dtype=np.int32)
    where = np.empty(capacity, dtype=np.int64)
    for d in range(len(offsets) - 1):
        # Words: hash of their bytes, and a prefix sum of their characters.
        m = 0
        in_word = False
        space = True
        word_start = chars = 0
        end = offsets[d + 1]
        for i in range(offsets[d], end + 1):
            if i == end:
                space = True  # the text's end closes its last word
            else:
                b = data[i]
                if b < 128:
                    space = ascii_space[b]
                elif b >= 0xC0:
                    space = _is_space(_decode(data, i)[0])
                # else: a continuation byte belongs to the character its lead byte began
            if space:
                if in_word:
                    word_hash[m] = _hash_bytes(data, word_start, i)
                    char_prefix[m + 1] = char_prefix[m] + chars
                    m += 1
                    in_word = False
                continue
            if not in_word:
                in_word = True
                word_start = i
                chars = 0
            chars += (data[i] & 0xC0) != 0x80
        total = char_prefix[m]
        if total == 0:
            continue
        # n = 1: which words repeat. An n-gram can only repeat where both of its
        # (n-1)-grams repeat, so each round looks at fewer positions.
        for k in range(m):
            keys[k] = word_hash[k]
            gram[k] = word_hash[k]
        _occurrences(keys, m, occurrences, slots, counts, where)
        for k in range(m):
            repeated[k] = occurrences[k] >= 2
        for n in range(2, 11):
            count = 0
            for k in range(m - n + 1):
                if repeated[k] and repeated[k + 1]:
                    starts[count] = k
                    count += 1
            for k in range(m):
                repeated[k] = False
            if count == 0:
                break
            for k in range(count):
                s = starts[k]
                gram[s] = gram[s] * _NGRAM_MULTIPLIER + word_hash[s + n - 1]
                keys[k] = _mix(gram[s])
            _occurrences(keys, count, occurrences, slots, counts, where)
            best_count = best_chars = 0
            covered_until = covered = 0
            for k in range(count):
                if occurrences[k] < 2:
                    continue
                s = starts[k]
                repeated[s] = True
                if n <= 4:
                    span = char_prefix[s + n] - char_prefix[s]
                    if occurrences[k] > best_count or (occurrences[k] == best_count and span > best_chars):
                        best_count = occurrences[k]
                        best_chars = span
                else:
                    first = max(s, covered_until)  # starts ascend: words before covered_until are counted
                    if s + n > first:
                        covered += char_prefix[s + n] - char_prefix[first]
                        covered_until = s + n
            if n <= 4:
                out[d, n - 2] = best_count * best_chars / total
            else:
                out[d, n - 2] = covered / total


def ngram_repetition(texts: pl.Series) -> np.ndarray:
    """float64 (n, 9): top 2..4-gram fractions, then duplicate 5..10-gram fractions."""
    data, offsets = utf8_buffers(texts)
    out = np.zeros((len(offsets) - 1, len(NGRAM_FIELDS)))
    _ngram_kernel(data, offsets, _ASCII_SPACE, out)
    return out
