"""Compiled per-text statistics for the filters, from bit masks of the bytes.

The filters in `rules` read these numbers; this module computes them with
numba over the Arrow buffers of a whole record batch (one uint8 data buffer, n+1
offsets), so no Python runs per record and no per-word strings are built. Each kernel
reads the batch's whitespace and "\n" bytes as bits (32 ASCII bytes per vector
compare) and takes word and line edges off 64-bit masks instead of branching at every
byte. The quality counts need no step per word at all: they are popcounts and carries
over masks of 64 bytes. The repetition kernels hash words and lines eight bytes per load.
Texts are copied with PADDING zero bytes after them, so no load needs a bounds branch;
the copy (which language id reads too) and the bits are made once per batch
(`TextBatch`) and shared by the kernels; each kernel is given the rows to compute.
Three kernels:

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

import mixprep.numba_cache  # noqa: F401 - a writable kernel cache before the first @njit(cache=True)
from mixprep.filters.fields import GOPHER_STOP_WORDS, NGRAM_FIELDS, QUALITY_FIELDS
from mixprep.filters.intrinsics import bytes_between, leading_zeros, load_u64, popcount, trailing_zeros

BULLETS = "-*•‣◦▪●"
TERMINAL_PUNCTUATION = ".!?\"'”’…"

_HASH_SEED = np.uint64(0xCBF29CE484222325)  # FNV-1a's offset basis: any odd 64-bit constant would do
_NGRAM_MULTIPLIER = np.uint64(0x9E3779B97F4A7C15)
_MIX_1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX_2 = np.uint64(0x94D049BB133111EB)


def _packed(word: str) -> int:
    """An ASCII word of up to 4 letters as one integer, first letter in the low byte (as a little-endian load reads it)."""
    return sum(ord(letter) << (8 * i) for i, letter in enumerate(word))


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
    """A record batch's texts as the kernels read them, made once per batch and shared by
    every compiled feature (quality, repetition, language): one UTF-8 copy followed by
    PADDING zero bytes, n+1 offsets, and, when first asked for, the whitespace and "\n"
    bytes as bits. The kernels take the rows to compute, so a feature that runs only on
    the rows no earlier filter removed reads them in place instead of from a gathered copy.
    Nothing is copied until a kernel asks (a chain of polars-only filters never does).
    """

    def __init__(self, texts: pl.Series) -> None:
        self.texts = texts

    def __len__(self) -> int:
        return len(self.texts)

    def texts_at(self, rows: np.ndarray) -> pl.Series:
        """The texts of `rows`, in that order (the series itself when they are all rows in order)."""
        if len(rows) == len(self) and np.array_equal(rows, np.arange(len(self))):
            return self.texts
        return self.texts.gather(rows)

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

    @functools.cached_property
    def whitespace(self) -> tuple[np.ndarray, np.ndarray]:
        """(whitespace bytes, "\n" bytes) of the whole buffer as bits (bit i of word i >> 6 = byte i)."""
        return _whitespace_bits(self.data, self.offsets[0], self.offsets[-1], _ASCII_SPACE)


def batch_rows(texts: pl.Series | TextBatch, rows: np.ndarray | None) -> tuple[TextBatch, np.ndarray]:
    batch = texts if isinstance(texts, TextBatch) else TextBatch(texts)
    return batch, np.arange(len(batch), dtype=np.int64) if rows is None else np.asarray(rows, dtype=np.int64)


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


@numba.njit(inline="always", cache=True)
def _hash_and_characters(data: np.ndarray, start: int, end: int) -> tuple[np.uint64, int]:
    """(64-bit hash of data[start:end], its UTF-8 characters), eight bytes per step.

    Each step folds one unaligned 8-byte load in with one multiply, so the serial chain
    is one multiply per 8 bytes rather than one per byte (FNV-1a). The last 1-7 bytes are
    one load with the bytes past `end` masked off (`data` has PADDING bytes after the texts).
    Characters are the bytes less the continuation bytes, counted from the same loads.
    """
    h = _HASH_SEED ^ np.uint64(end - start)
    characters = end - start
    i = start
    while i + 8 <= end:
        x = load_u64(data, i)
        characters -= np.int64(popcount(x & ~(x << np.uint64(1)) & _HIGH))
        h = (h ^ x) * _MIX_1
        h ^= h >> np.uint64(29)
        i += 8
    x = load_u64(data, i) & ((np.uint64(1) << np.uint64(8 * (end - i))) - np.uint64(1))  # the last 0-7 bytes
    characters -= np.int64(popcount(x & ~(x << np.uint64(1)) & _HIGH))
    return _mix((h ^ x) * _MIX_2), characters


@numba.njit(inline="always", cache=True)
def _hash_bytes(data: np.ndarray, start: int, end: int) -> np.uint64:
    """64-bit hash of data[start:end] (the character count is compiled away)."""
    return _hash_and_characters(data, start, end)[0]


# -- whitespace as bits ------------------------------------------------------------
#
# Word and line edges fall at unpredictable places in prose, so finding them one byte at
# a time with branches costs a mispredicted branch per word. Instead the batch first
# marks which bytes belong to a whitespace character and which are "\n" (bit i of a
# uint64 array for byte i; 32 ASCII bytes per vector compare, else eight with SWAR
# arithmetic), and the kernels jump from edge to edge with bit scans or count on the masks.

_ONES = np.uint64(0x0101010101010101)
_HIGH = np.uint64(0x8080808080808080)
_LOW7 = np.uint64(0x7F7F7F7F7F7F7F7F)
_GATHER_HIGH_BITS = np.uint64(0x0102040810204080)


@numba.njit(inline="always", cache=True)
def _bytes_equal(x: np.uint64, c: int) -> np.uint64:
    """High bit of every byte of x (all bytes ASCII) that equals c."""
    return ~((x ^ (_ONES * np.uint64(c))) + _LOW7) & _HIGH


@numba.njit(inline="always", cache=True)
def _bytes_at_least(x: np.uint64, c: int) -> np.uint64:
    """High bit of every byte of x (all bytes ASCII) that is >= c (1 <= c <= 128)."""
    return (x + _ONES * np.uint64(128 - c)) & _HIGH


@numba.njit(inline="always", cache=True)
def _byte_mask_bits(m: np.uint64) -> np.uint64:
    """The high bits of the eight bytes of m as an 8-bit mask (bit k = byte k)."""
    return ((m >> np.uint64(7)) * _GATHER_HIGH_BITS) >> np.uint64(56)


@numba.njit(inline="always", cache=True)
def _set_bit(bits: np.ndarray, i: int) -> None:
    bits[i >> 6] |= np.uint64(1) << np.uint64(i & 63)


@numba.njit(cache=True)
def _whitespace_bits(data: np.ndarray, start: int, end: int, ascii_space: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For bytes start..end of the buffer: (bytes of whitespace characters, "\n" bytes) as bits."""
    space = np.zeros(end // 64 + 2, dtype=np.uint64)
    newline = np.zeros(end // 64 + 2, dtype=np.uint64)
    i = start
    while i < end:
        if i & 31 == 0 and i + 32 <= end and bytes_between(data, i, 128, 255) == 0:  # 32 ASCII bytes
            shift = np.uint64(i & 63)
            blank = bytes_between(data, i, 32, 32) | bytes_between(data, i, 9, 13)
            space[i >> 6] |= blank << shift
            newline[i >> 6] |= bytes_between(data, i, 10, 10) << shift
            i += 32
            continue
        if i & 7 == 0 and i + 8 <= end:
            x = load_u64(data, i)
            if x & _HIGH == 0:
                blank = _bytes_equal(x, 32) | (_bytes_at_least(x, 9) & ~_bytes_at_least(x, 14))
                shift = np.uint64(i & 63)
                space[i >> 6] |= _byte_mask_bits(blank) << shift
                newline[i >> 6] |= _byte_mask_bits(_bytes_equal(x, 10)) << shift
                i += 8
                continue
        b = data[i]
        if b < 128:
            if ascii_space[b]:
                _set_bit(space, i)
                if b == 10:
                    _set_bit(newline, i)
            i += 1
        elif b >= 0xC0:
            cp, length = _decode(data, i)
            if _is_space(cp):
                for k in range(length):
                    _set_bit(space, i + k)
            i += length
        else:
            i += 1  # a continuation byte: its lead byte was handled
    return space, newline


@numba.njit(inline="always", cache=True)
def _next_clear(bits: np.ndarray, pos: int, end: int) -> int:
    """The first position in pos..end-1 whose bit is 0, else end."""
    while pos < end:
        w = ~bits[pos >> 6] >> np.uint64(pos & 63)
        if w != 0:
            return min(pos + np.int64(trailing_zeros(w)), end)
        pos = (pos | 63) + 1
    return end


@numba.njit(inline="always", cache=True)
def _last_clear(bits: np.ndarray, pos: int, low: int) -> int:
    """The last position in low..pos-1 whose bit is 0, else low - 1."""
    p = pos - 1
    while p >= low:
        w = ~bits[p >> 6] << np.uint64(63 - (p & 63))
        if w != 0:
            return max(p - np.int64(leading_zeros(w)), low - 1)
        p = (p & ~63) - 1
    return low - 1


@numba.njit(inline="always", cache=True)
def _within(word: np.uint64, base: int, start: int, end: int) -> np.uint64:
    """The bits of the mask word for bytes base..base+63 that fall inside start..end-1."""
    if base < start:
        word &= ~np.uint64(0) << np.uint64(start - base)
    if base + 64 > end:
        word &= (np.uint64(1) << np.uint64(end - base)) - np.uint64(1)
    return word


@numba.njit(inline="always", cache=True)
def _word_edges(space: np.ndarray, start: int, end: int, word_starts: np.ndarray, word_ends: np.ndarray) -> int:
    """Words (maximal runs of non-whitespace bytes) of bytes start..end-1: their count, and
    their first and one-past-last bytes in word_starts / word_ends.

    64 bytes at a time: the starts and ends of a block's words are bit masks, and each is
    taken off its mask with two operations, so no step waits on the scan for the last word.
    """
    count = ended = 0
    carry = np.uint64(0)  # the byte before the block is inside a word
    for block in range(start >> 6, (end + 63) >> 6):
        base = block << 6
        inside = _within(~space[block], base, start, end)
        before = (inside << np.uint64(1)) | carry
        firsts = inside & ~before
        afters = ~inside & before
        carry = inside >> np.uint64(63)
        while firsts:
            word_starts[count] = base + np.int64(trailing_zeros(firsts))
            count += 1
            firsts &= firsts - np.uint64(1)
        while afters:
            word_ends[ended] = base + np.int64(trailing_zeros(afters))
            ended += 1
            afters &= afters - np.uint64(1)
    if carry:
        word_ends[ended] = end
    return count


@numba.njit(inline="always", cache=True)
def _set_positions(bits: np.ndarray, start: int, end: int, out: np.ndarray) -> int:
    """Positions start..end-1 whose bit is set, into out; returns how many."""
    count = 0
    for block in range(start >> 6, (end + 63) >> 6):
        base = block << 6
        w = _within(bits[block], base, start, end)
        while w:
            out[count] = base + np.int64(trailing_zeros(w))
            count += 1
            w &= w - np.uint64(1)
    return count


@numba.njit(inline="always", cache=True)
def _stripped_lines(
    space: np.ndarray, newline: np.ndarray, start: int, end: int, newlines: np.ndarray, firsts: np.ndarray, lasts: np.ndarray,
) -> int:
    """The lines of bytes start..end-1 (split at "\n"), surrounding whitespace stripped: line k
    is firsts[k]..lasts[k]-1, empty when it is blank. Returns how many lines. The three
    scratch arrays need one slot per "\n" and one more."""
    n_newlines = _set_positions(newline, start, end, newlines)
    newlines[n_newlines] = end  # the text's end closes its last line
    line_start = start
    for k in range(n_newlines + 1):
        line_end = newlines[k]
        first = _next_clear(space, line_start, line_end)
        firsts[k] = first
        lasts[k] = _last_clear(space, line_end, first) + 1  # first itself when the line is blank
        line_start = line_end + 1
    return n_newlines + 1


@numba.njit(cache=True)
def _most_words(space: np.ndarray, offsets: np.ndarray, rows: np.ndarray) -> int:
    """The most words one of the texts `rows` has: scratch arrays sized by it serve every
    text (sized by bytes instead, one 10 MB record would ask for hundreds of MB)."""
    most = 0
    for d in rows:
        start, end = offsets[d], offsets[d + 1]
        words = 0
        carry = np.uint64(0)
        for block in range(start >> 6, (end + 63) >> 6):
            base = block << 6
            inside = _within(~space[block], base, start, end)
            words += np.int64(popcount(inside & ~((inside << np.uint64(1)) | carry)))
            carry = inside >> np.uint64(63)
        most = max(most, words)
    return most


@numba.njit(cache=True)
def _most_set(bits: np.ndarray, offsets: np.ndarray, rows: np.ndarray) -> int:
    """The most set bits (e.g. "\n" bytes) that one of the texts `rows` has."""
    most = 0
    for d in rows:
        start, end = offsets[d], offsets[d + 1]
        count = 0
        for block in range(start >> 6, (end + 63) >> 6):
            base = block << 6
            w = _within(bits[block], base, start, end)
            count += np.int64(popcount(w))
        most = max(most, count)
    return most


def _table_size(count: int) -> int:
    capacity = 16
    while capacity < 2 * count:
        capacity *= 2
    return capacity


_table_size = numba.njit(cache=True)(_table_size)


@numba.njit(inline="always", cache=True)
def _repeats_of_earlier(keys: np.ndarray, count: int, slots: np.ndarray, counts: np.ndarray, where: np.ndarray) -> int:
    """How many of keys[:count] equal an earlier key (open addressing, linear probing).

    `slots`, `counts` and `where` are scratch space reused across calls (allocating per
    text was a third of the time); `counts` is all zero on entry and on return.
    """
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
#
# Every count is taken 64 bytes at a time from bit masks, with no step per word: which
# bytes start a word, are letters, '#', dots, continuation bytes or ASCII word bytes
# ([A-Za-z0-9_]) come from vector compares, and each count is a popcount or a carry
# through a mask. Only a few things are looked at one by one: non-ASCII characters
# (decoded for the Alphabetic table and "…"), runs of dots, candidate stop words (runs of
# 2-4 word bytes) and the first and last character of each line.

# Per ASCII byte, the character classes the whitespace bits and the line counts need, as bits.
SPACE, BULLET, TERMINAL = 1, 2, 4


def _class_flags(cp: int) -> int:
    c = chr(cp)
    flags = 0
    flags |= SPACE if c.isspace() and c not in "\x1c\x1d\x1e\x1f" else 0  # Python's isspace adds 4 separators
    flags |= BULLET if c in BULLETS else 0
    flags |= TERMINAL if c in TERMINAL_PUNCTUATION else 0
    return flags


_ASCII_CLASSES = np.array([_class_flags(b) for b in range(128)], dtype=np.int64)
_ASCII_SPACE = (_ASCII_CLASSES & SPACE).astype(np.bool_)
if not all(2 <= len(word) <= 4 for word in GOPHER_STOP_WORDS):
    msg = "the stop word lookup packs words of 2-4 letters"
    raise AssertionError(msg)


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
    msg = "no collision-free multiplier for the stop words"
    raise AssertionError(msg)


_STOP_MULTIPLIER, _STOP_SLOTS = _stop_word_slots()
_LOWERCASE_BITS = np.uint64(0x2020202020202020)  # OR-ed into a token: A-Z -> a-z; digits have the bit, '_' -> 0x7F


@numba.njit(inline="always", cache=True)
def _bytes_in(data: np.ndarray, base: int, low: int, high: int) -> np.uint64:
    """Which of the 64 bytes data[base:base+64] lie in low..high, as bits."""
    return bytes_between(data, base, low, high) | (bytes_between(data, base + 32, low, high) << np.uint64(32))


@numba.njit(inline="always", cache=True)
def _letters_and_word_bytes(data: np.ndarray, base: int, start: int, end: int) -> tuple[np.uint64, np.uint64]:
    """The block's ASCII letters and ASCII word bytes ([A-Za-z0-9_]) inside start..end-1, as bits."""
    letters = _bytes_in(data, base, 65, 90) | _bytes_in(data, base, 97, 122)
    word_bytes = letters | _bytes_in(data, base, 48, 57) | _bytes_in(data, base, 95, 95)
    return _within(letters, base, start, end), _within(word_bytes, base, start, end)


@numba.njit(inline="always", cache=True)
def _close_dot_runs(dots: np.uint64, run: int) -> tuple[int, int]:
    """Ellipses ("...", without overlap from the left) in the runs of dots that end in this
    block, and the length of the run that reaches its last byte (carried on). `run` is the
    run carried in from the block before."""
    ellipses = 0
    if run and not dots & np.uint64(1):
        ellipses += run // 3
        run = 0
    while dots:
        first = np.int64(trailing_zeros(dots))
        length = np.int64(trailing_zeros(~(dots >> np.uint64(first))))
        total = length + run  # a carried run goes on only at bit 0 (else it was closed above)
        run = 0
        if first + length == 64:
            return ellipses, total
        ellipses += total // 3
        dots &= ~(((np.uint64(1) << np.uint64(length)) - np.uint64(1)) << np.uint64(first))
    return ellipses, run


@numba.njit(inline="always", cache=True)
def _stop_words_starting(
    data: np.ndarray, base: int, firsts: np.uint64, word_bytes: np.uint64, next_word_bytes: np.uint64,
    stop_multiplier: int, stop_slots: np.ndarray,
) -> int:
    """Stop words among the runs of word bytes that start at `firsts` in the block at base."""
    one = (word_bytes >> np.uint64(1)) | (next_word_bytes << np.uint64(63))  # bit k: byte k + 1 is a word byte
    two = (word_bytes >> np.uint64(2)) | (next_word_bytes << np.uint64(62))
    three = (word_bytes >> np.uint64(3)) | (next_word_bytes << np.uint64(61))
    four = (word_bytes >> np.uint64(4)) | (next_word_bytes << np.uint64(60))
    candidates = firsts & one & ~(two & three & four)  # runs of 2-4 bytes
    count = 0
    while candidates:
        k = trailing_zeros(candidates)
        length = 2 + np.int64((two >> k) & np.uint64(1)) + np.int64(((two & three) >> k) & np.uint64(1))
        token = np.int64((load_u64(data, base + np.int64(k)) | _LOWERCASE_BITS) & ((np.uint64(1) << np.uint64(8 * length)) - np.uint64(1)))
        count += stop_slots[((token * stop_multiplier) >> 26) & 63] == token
        candidates &= candidates - np.uint64(1)
    return count


@numba.njit(inline="always", cache=True)
def _last_character(data: np.ndarray, start: int, stop: int) -> int:
    """The code point that ends at `stop`."""
    j = stop - 1
    while j > start and (data[j] & 0xC0) == 0x80:
        j -= 1
    return _decode(data, j)[0]


@numba.njit(cache=True)
def _line_counts(
    data: np.ndarray, firsts: np.ndarray, lasts: np.ndarray, n_lines: int,
    ascii_classes: np.ndarray, bullets: np.ndarray, terminals: np.ndarray,
) -> tuple[int, int, int, int]:
    """(non-blank lines, those that start with a bullet, end with an ellipsis, end with terminal
    punctuation) from the first and last character of each stripped line (`_stripped_lines`)."""
    lines = bullet_lines = ellipsis_lines = terminal_lines = 0
    for k in range(n_lines):
        first, last = firsts[k], lasts[k]
        if first == last:
            continue
        lines += 1
        b = data[first]
        bullet_lines += (ascii_classes[b] & BULLET) != 0 if b < 128 else _contains(bullets, _decode(data, first)[0])
        b = data[last - 1]
        if b < 128:
            terminal_lines += (ascii_classes[b] & TERMINAL) != 0
            ellipsis_lines += (last - first >= 3) & (b == 46) & (data[last - 2] == 46) & (data[last - 3] == 46)
        else:
            cp = _last_character(data, first, last)
            terminal_lines += _contains(terminals, cp)
            ellipsis_lines += cp == 0x2026
    return lines, bullet_lines, ellipsis_lines, terminal_lines


@numba.njit(cache=True)
def _quality_kernel(
    data: np.ndarray,
    offsets: np.ndarray,
    rows: np.ndarray,
    space: np.ndarray,
    newline: np.ndarray,
    ascii_classes: np.ndarray,
    alphabetic: np.ndarray,
    stop_multiplier: int,
    stop_slots: np.ndarray,
    bullets: np.ndarray,
    terminals: np.ndarray,
    out: np.ndarray,
) -> None:
    """64 bytes per step from bit masks (`data` has PADDING >= 64 bytes after the texts, so
    a block's loads never leave it); see the section's comment."""
    most_lines = _most_set(newline, offsets, rows) + 1
    newlines = np.empty(most_lines, dtype=np.int64)
    line_firsts = np.empty(most_lines, dtype=np.int64)
    line_lasts = np.empty(most_lines, dtype=np.int64)
    for r in range(len(rows)):
        d = rows[r]
        start, end = offsets[d], offsets[d + 1]
        words = word_chars = hashes = ellipses = letterless = stops = dot_run = 0
        in_word = in_token = np.uint64(0)  # the byte before the block is in a word / a run of word bytes
        letterless_carry = np.uint64(0)
        first_block, end_block = start >> 6, (end + 63) >> 6
        next_letters = next_word_bytes = np.uint64(0)
        if first_block < end_block:
            next_letters, next_word_bytes = _letters_and_word_bytes(data, first_block << 6, start, end)
        for block in range(first_block, end_block):
            base = block << 6
            letters, word_bytes = next_letters, next_word_bytes
            next_letters = next_word_bytes = np.uint64(0)
            if block + 1 < end_block:
                next_letters, next_word_bytes = _letters_and_word_bytes(data, base + 64, start, end)
            inside = _within(~space[block], base, start, end)
            firsts = inside & ~((inside << np.uint64(1)) | in_word)
            in_word = inside >> np.uint64(63)
            words += np.int64(popcount(firsts))
            continuation = leads = np.uint64(0)
            high = inside & _bytes_in(data, base, 0x80, 0xFF)
            if high:  # non-ASCII bytes (an ASCII block skips the next two compares)
                continuation = _bytes_in(data, base, 0x80, 0xBF)
                leads = high & ~continuation
            word_chars += np.int64(popcount(inside & ~continuation))
            hashes += np.int64(popcount(inside & _bytes_in(data, base, 35, 35)))
            while leads:  # non-ASCII characters
                lowest = leads & -leads
                cp = _decode(data, base + np.int64(trailing_zeros(lowest)))[0]
                if alphabetic[cp]:
                    letters |= lowest
                ellipses += cp == 0x2026
                leads ^= lowest
            # Words without a letter: adding each word's first bit to its run of non-letters
            # carries past the run, onto a letter or onto the whitespace after the word.
            others = inside & ~letters
            partial = others + (firsts & others)
            carried = partial + letterless_carry
            letterless_carry = np.uint64((partial < others) | (carried < partial))
            letterless += np.int64(popcount(carried & ~others & ~inside))
            dots = inside & _bytes_in(data, base, 46, 46)
            if dots or dot_run:
                closed, dot_run = _close_dot_runs(dots, dot_run)
                ellipses += closed
            token_firsts = word_bytes & ~((word_bytes << np.uint64(1)) | in_token)
            in_token = word_bytes >> np.uint64(63)
            stops += _stop_words_starting(data, base, token_firsts, word_bytes, next_word_bytes, stop_multiplier, stop_slots)
        letterless += np.int64(letterless_carry)  # a letterless word that ends the text on a block edge
        ellipses += dot_run // 3
        n_lines = _stripped_lines(space, newline, start, end, newlines, line_firsts, line_lasts)
        lines, bullet_lines, ellipsis_lines, terminal_lines = _line_counts(
            data, line_firsts, line_lasts, n_lines, ascii_classes, bullets, terminals)
        row = out[r]
        row[0] = words
        row[1] = word_chars
        row[2] = hashes
        row[3] = ellipses
        row[4] = lines
        row[5] = bullet_lines
        row[6] = ellipsis_lines
        row[7] = terminal_lines
        row[8] = words - letterless
        row[9] = stops


def quality_counts(texts: pl.Series | TextBatch, rows: np.ndarray | None = None) -> np.ndarray:
    """int64 (rows, len(QUALITY_FIELDS)): the counts the Gopher quality and C4 line filters
    read, for `rows` of the batch (all of them by default)."""
    batch, rows = batch_rows(texts, rows)
    out = np.zeros((len(rows), len(QUALITY_FIELDS)), dtype=np.int64)
    if len(rows):
        space, newline = batch.whitespace
        _quality_kernel(batch.data, batch.offsets, rows, space, newline, _ASCII_CLASSES, alphabetic_table(),
                        _STOP_MULTIPLIER, _STOP_SLOTS, _BULLETS, _TERMINALS, out)
    return out


# -- line and paragraph repetition ------------------------------------------------------

@numba.njit(cache=True)
def _line_repetition_kernel(
    data: np.ndarray, offsets: np.ndarray, rows: np.ndarray, space: np.ndarray, newline: np.ndarray, out: np.ndarray,
) -> None:
    """Lines from the "\n" bits, stripped with the whitespace bits; each hashed 8 bytes per step."""
    most_lines = _most_set(newline, offsets, rows) + 1
    line_keys = np.empty(most_lines, dtype=np.uint64)
    paragraph_keys = np.empty(most_lines, dtype=np.uint64)
    newlines = np.empty(most_lines, dtype=np.int64)
    line_firsts = np.empty(most_lines, dtype=np.int64)
    line_lasts = np.empty(most_lines, dtype=np.int64)
    capacity = _table_size(most_lines)
    slots = np.zeros(capacity, dtype=np.uint64)
    counts = np.zeros(capacity, dtype=np.int32)
    where = np.empty(most_lines, dtype=np.int64)
    for r in range(len(rows)):
        d = rows[r]
        pieces = _stripped_lines(space, newline, offsets[d], offsets[d + 1], newlines, line_firsts, line_lasts)
        n_lines = n_paragraphs = 0
        paragraph_start = paragraph_end = -1
        for k in range(pieces):
            first, last = line_firsts[k], line_lasts[k]
            if first < last:
                line_keys[n_lines] = _hash_bytes(data, first, last)
                n_lines += 1
                if paragraph_start < 0:
                    paragraph_start = first
                paragraph_end = last
            elif paragraph_start >= 0:  # a blank line closes the paragraph
                paragraph_keys[n_paragraphs] = _hash_bytes(data, paragraph_start, paragraph_end)
                n_paragraphs += 1
                paragraph_start = -1
        if paragraph_start >= 0:
            paragraph_keys[n_paragraphs] = _hash_bytes(data, paragraph_start, paragraph_end)
            n_paragraphs += 1
        if n_lines:
            out[r, 0] = _repeats_of_earlier(line_keys, n_lines, slots, counts, where) / n_lines
        if n_paragraphs:
            out[r, 1] = _repeats_of_earlier(paragraph_keys, n_paragraphs, slots, counts, where) / n_paragraphs


def line_repetition(texts: pl.Series | TextBatch, rows: np.ndarray | None = None) -> np.ndarray:
    """float64 (rows, 2): duplicate line fraction, duplicate paragraph fraction (by count)."""
    batch, rows = batch_rows(texts, rows)
    out = np.zeros((len(rows), 2))
    if len(rows):
        space, newline = batch.whitespace
        _line_repetition_kernel(batch.data, batch.offsets, rows, space, newline, out)
    return out


# -- n-gram repetition ---------------------------------------------------------------

@numba.njit(cache=True)
def _ngram_kernel(data: np.ndarray, offsets: np.ndarray, rows: np.ndarray, space: np.ndarray, out: np.ndarray) -> None:
    capacity = _most_words(space, offsets, rows) + 1
    word_hash = np.empty(capacity, dtype=np.uint64)
    char_prefix = np.zeros(capacity + 1, dtype=np.int64)
    gram = np.empty(capacity, dtype=np.uint64)
    repeated = np.zeros(capacity + 1, dtype=np.bool_)
    starts = np.empty(capacity, dtype=np.int64)
    keys = np.empty(capacity, dtype=np.uint64)
    occurrences = np.empty(capacity, dtype=np.int64)
    table_capacity = _table_size(2 * capacity)  # load factor <= 1/4: fewer probe collisions
    slots = np.zeros(table_capacity, dtype=np.uint64)
    counts = np.zeros(table_capacity, dtype=np.int32)
    where = np.empty(capacity, dtype=np.int64)
    word_starts = np.empty(capacity, dtype=np.int64)
    word_ends = np.empty(capacity, dtype=np.int64)
    for r in range(len(rows)):
        d = rows[r]
        # Words: hash of their bytes, and a prefix sum of their characters.
        m = _word_edges(space, offsets[d], offsets[d + 1], word_starts, word_ends)
        for k in range(m):
            word_hash[k], chars = _hash_and_characters(data, word_starts[k], word_ends[k])
            char_prefix[k + 1] = char_prefix[k] + chars
        total = char_prefix[m]
        if total == 0:
            continue
        # n = 1: which words repeat. An n-gram can only repeat where both of its
        # (n-1)-grams repeat, so each later round looks at fewer positions.
        count = m
        for n in range(1, 11):
            if n > 1:
                count = 0
                for k in range(m - n + 1):  # without a branch: repeats are a coin flip
                    starts[count] = k
                    count += repeated[k] & repeated[k + 1]
                for k in range(m):
                    repeated[k] = False
                if count == 0:
                    break
                for k in range(count):
                    s = starts[k]
                    previous = word_hash[s] if n == 2 else gram[s]  # the (n-1)-gram at s
                    gram[s] = previous * _NGRAM_MULTIPLIER + word_hash[s + n - 1]
                    keys[k] = _mix(gram[s])
            # occurrences[k] = how many of keys[:count] equal keys[k]: open addressing,
            # linear probing. (Written out here: numba would count references to the five
            # arrays on every call of a helper, which cost more than the counting.)
            mask = np.uint64(_table_size(2 * count) - 1)
            round_keys = word_hash if n == 1 else keys  # words are their own keys
            for k in range(count):
                key = round_keys[k]
                slot = key & mask
                while counts[slot] > 0 and slots[slot] != key:
                    slot = (slot + np.uint64(1)) & mask
                slots[slot] = key
                counts[slot] += 1
                where[k] = np.int64(slot)
            if n == 1:
                for k in range(m):
                    repeated[k] = counts[where[k]] >= 2
                for k in range(m):
                    counts[where[k]] = 0
                continue
            for k in range(count):
                occurrences[k] = counts[where[k]]
            for k in range(count):
                counts[where[k]] = 0
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
                out[r, n - 2] = best_count * best_chars / total
            else:
                out[r, n - 2] = covered / total


def ngram_repetition(texts: pl.Series | TextBatch, rows: np.ndarray | None = None) -> np.ndarray:
    """float64 (rows, 9): top 2..4-gram fractions, then duplicate 5..10-gram fractions."""
    batch, rows = batch_rows(texts, rows)
    out = np.zeros((len(rows), len(NGRAM_FIELDS)))
    if len(rows):
        _ngram_kernel(batch.data, batch.offsets, rows, batch.whitespace[0], out)
    return out
