"""English words as datatrove's Gopher filters see them, compiled: spaCy's English tokenizer rules.

Hugging Face datatrove (0.10.1, the reference for `quality: gopher`, `repetition: gopher`
and `c4`) splits English with `spacy.blank("en")` and drops whitespace tokens. Here, in
numba and without spaCy: a text splits at whitespace (`str.isspace`) into chunks; a chunk
that is one of spaCy's exceptions ("don't" -> do + n't, "Mr.", ":)") takes its words;
else it loses spaCy's one-character prefix and suffix marks one at a time (a dot only
where spaCy splits one: not after a lone capital, "J."), ellipses whole and `'s`; what
remains is an exception, an acronym ("U.S.A."), a URL, or splits at infixes (hyphens
between a letter or digit and a letter, `a/b`, `3-4`, ellipses); adjacent words that spell
an exception are merged (spaCy's special-case matcher: ";" + ")" -> ";)"). ASCII chunks are
split on their UTF-8 bytes in place. Equal to the same rules written in Python on 18,836
real documents, and to spaCy's own words on the tests' fixtures.
"""
from __future__ import annotations

import numba
import numpy as np

from mixprep.filters.english_tables import (
    ALNUM,
    ALPHA,
    PREFIX,
    SPACE,
    SUFFIX,
    TABLE_LENGTH_OFFSETS,
    TABLE_LENGTHS,
    TABLE_OFFSETS,
    TABLE_POINTS,
    TABLE_SCREEN,
    TABLE_SLOT_COUNT,
    TABLE_SLOTS,
    UPPER,
    points_hash,
    screen_bit,
)
from mixprep.filters.textstats import ascii_chunk, decode, decode_one

# -- the tokenizer (compiled) ---------------------------------------------------------------

@numba.njit(inline="always", cache=True)
def _letter(cp: int) -> bool:
    return (65 <= cp <= 90) or (97 <= cp <= 122)


@numba.njit(inline="always", cache=True)
def _digit(cp: int) -> bool:
    return 48 <= cp <= 57


@numba.njit(inline="always", cache=True)
def _run_at(points: np.ndarray, i: int, hi: int) -> int:
    """Length of a run of >= 2 dots, or one "…", at i (0: none): spaCy's ellipses."""
    cp = points[i]
    if cp == 0x2026:
        return 1
    if cp == 46:
        j = i + 1
        while j < hi and points[j] == cp:
            j += 1
        return j - i if j - i >= 2 else 0
    return 0


@numba.njit(inline="always", cache=True)
def _run_before(points: np.ndarray, lo: int, hi: int) -> int:
    """Length of the ellipsis (as `_run_at`) that ends the chunk at hi (0: none)."""
    cp = points[hi - 1]
    if cp == 0x2026:
        return 1
    if cp == 46:
        j = hi - 1
        while j > lo and points[j - 1] == cp:
            j -= 1
        return hi - j if hi - j >= 2 else 0
    return 0


@numba.njit(inline="always", cache=True)
def _exception(points: np.ndarray, lo: int, hi: int, table: np.ndarray) -> int:
    """The index of the exception equal to points[lo:hi], else -1 (`table`: `exception_table()`)."""
    n = hi - lo
    bit = screen_bit(n, points[lo], points[hi - 1])
    if n > 40 or not (table[table[TABLE_SCREEN] + (bit >> 6)] >> (bit & 63)) & 1:
        return -1
    key = points_hash(points, lo, hi)
    n_slots = table[TABLE_SLOT_COUNT]
    slots, offsets, exception_points = table[TABLE_SLOTS], table[TABLE_OFFSETS], table[TABLE_POINTS]
    slot = key % n_slots
    while table[slots + 2 * slot + 1]:
        index = table[slots + 2 * slot + 1] - 1
        start = table[offsets + index]
        if table[slots + 2 * slot] == key and table[offsets + index + 1] - start == n:
            same = True
            for j in range(n):
                if points[lo + j] != table[exception_points + start + j]:
                    same = False
                    break
            if same:
                return index
        slot = (slot + 1) % n_slots
    return -1


@numba.njit(inline="always", cache=True)
def _acronym(points: np.ndarray, lo: int, hi: int) -> bool:
    """`(?:[A-Za-z]\\.){2,}|[a-z]\\.` matches the whole chunk."""
    n = hi - lo
    if n == 2:
        return 97 <= points[lo] <= 122 and points[lo + 1] == 46
    if n < 4 or n % 2:
        return False
    for j in range(lo, hi, 2):
        if not _letter(points[j]) or points[j + 1] != 46:
            return False
    return True


@numba.njit(inline="always", cache=True)
def _initial(points: np.ndarray, lo: int, hi: int, flags: np.ndarray) -> bool:
    """The chunk ends with one capital letter and a dot ("I.", "J."): spaCy splits the dot only after two."""
    if points[hi - 1] != 46 or not flags[points[hi - 2]] & UPPER:
        return False
    return hi - 2 == lo or not flags[points[hi - 3]] & UPPER


@numba.njit(inline="always", cache=True)
def _possessive(points: np.ndarray, lo: int, hi: int) -> int:
    """2 when the chunk ends with 's 'S ’s ’S after something (spaCy's only contraction suffix), else 0."""
    if hi - lo > 2 and (points[hi - 2] == 39 or points[hi - 2] == 0x2019) and (points[hi - 1] == 115 or points[hi - 1] == 83):
        return 2
    return 0


@numba.njit(cache=True)
def _url(points: np.ndarray, lo: int, hi: int, flags: np.ndarray) -> bool:
    """Whether points[lo:hi] is a URL as spaCy's URL_MATCH sees one (a simplified reading:
    [scheme://][user@]label.(label.)*tld[:port][/?#rest], tld >= 2 lower-case letters; the
    regular expression's fallbacks tried in its order: without user info, without scheme)."""
    has_dot = False
    for j in range(lo, hi):
        if points[j] == 46:
            has_dot = True
            break
    if not has_dot:  # every URL has a dot in its host; most chunks here have none
        return False
    start = lo
    for j in range(lo, hi - 2):  # a scheme: [\w+\-.]{2,}://
        if points[j] == 58 and points[j + 1] == 47 and points[j + 2] == 47:
            valid = j - lo >= 2
            for k in range(lo, j):
                cp = points[k]
                if not (flags[cp] & ALNUM or cp == 95 or cp == 43 or cp == 45 or cp == 46):
                    valid = False
            if valid:
                start = j + 3
            break
    for j in range(hi - 1, start - 1, -1):  # user info, up to an '@'
        if points[j] == 64 and j > start and _host_and_rest(points, j + 1, hi, flags):
            return True
    return _host_and_rest(points, start, hi, flags) or (start > lo and _host_and_rest(points, lo, hi, flags))


@numba.njit(cache=True)
def _host_and_rest(points: np.ndarray, i: int, hi: int, flags: np.ndarray) -> bool:
    """label.(label.)*tld[:port][/?#rest] is all of points[i:hi]."""
    labels = 0
    label_start = i
    while i < hi:
        cp = points[i]
        if cp == 46:
            if i == label_start or points[i - 1] == 45 or points[i - 1] == 95:
                return False
            labels += 1
            label_start = i + 1
        elif cp == 58 or cp == 47 or cp == 63 or cp == 35:
            break
        elif not (_letter(cp) or _digit(cp) or 0xA1 <= cp <= 0xFFFF or ((cp == 45 or cp == 95) and i > label_start)):
            return False
        i += 1
    if labels == 0 or i - label_start < 2:
        return False
    for j in range(label_start, i):  # the top-level domain
        cp = points[j]
        if not (97 <= cp <= 122 or (cp >= 0xDF and flags[cp] & ALPHA and not 65 <= cp <= 90)):
            return False
    if i < hi and points[i] == 58:  # a port
        j = i + 1
        while j < hi and _digit(points[j]):
            j += 1
        if not 2 <= j - i - 1 <= 5:
            return False
        i = j
    return i == hi or points[i] == 47 or points[i] == 63 or points[i] == 35


@numba.njit(cache=True)
def _infix_at(points: np.ndarray, lo: int, i: int, hi: int) -> int:
    """Length of the infix that starts at i inside points[lo:hi] (0: none); see the module doc."""
    cp = points[i]
    if cp == 46 and i + 1 < hi and points[i + 1] == 46:
        j = i + 2
        while j < hi and points[j] == 46:
            j += 1
        return j - i
    if cp == 0x2026:
        return 1
    if i == lo:
        return 0
    before = points[i - 1]
    after = points[i + 1] if i + 1 < hi else -1
    if _digit(before) and (cp == 43 or cp == 45 or cp == 42 or cp == 94) and (_digit(after) or after == 45):
        return 1
    if _letter(before) or _digit(before):  # hyphens and dashes between a letter or digit and a letter
        if cp == 45:
            k = 1
            while k < 3 and i + k < hi and points[i + k] == 45:
                k += 1
            for length in range(k, 0, -1):  # "---", then "--", then "-": each followed by a letter
                if i + length < hi and _letter(points[i + length]):
                    return length
            return 0
        if (cp == 0x2013 or cp == 0x2014 or cp == 126) and _letter(after):
            return 1
    if _letter(before) and cp == 44 and _letter(after):
        return 1
    if (_letter(before) or _digit(before)) and (cp == 58 or cp == 60 or cp == 62 or cp == 61 or cp == 47) and _letter(after):
        return 1
    return 0


@numba.njit(inline="always", cache=True)
def _plain(points: np.ndarray, lo: int, hi: int) -> bool:
    """ASCII letters and digits only."""
    for j in range(lo, hi):
        cp = points[j]
        if not (_letter(cp) or _digit(cp)):
            return False
    return True


@numba.njit(inline="always", cache=True)
def _emit(starts: np.ndarray, ends: np.ndarray, count: int, lo: int, hi: int) -> int:
    starts[count] = lo
    ends[count] = hi
    return count + 1


@numba.njit(cache=True)
def _middle_words(
    points: np.ndarray, lo: int, hi: int, flags: np.ndarray, table: np.ndarray, starts: np.ndarray, ends: np.ndarray, count: int,
) -> int:
    """What is left of a chunk after its affixes: an exception's words, a URL, or the pieces
    between infixes and the infixes."""
    index = _exception(points, lo, hi, table)
    if index >= 0:
        lengths, length_offsets = table[TABLE_LENGTHS], table[TABLE_LENGTH_OFFSETS]
        for k in range(table[length_offsets + index], table[length_offsets + index + 1]):
            length = table[lengths + k]
            count = _emit(starts, ends, count, lo, lo + length)
            lo += length
        return count
    if _url(points, lo, hi, flags):
        return _emit(starts, ends, count, lo, hi)
    piece = lo
    i = lo
    while i < hi:
        length = _infix_at(points, lo, i, hi)
        if length == 0:
            i += 1
            continue
        if i > piece:
            count = _emit(starts, ends, count, piece, i)
        count = _emit(starts, ends, count, i, i + length)
        i += length
        piece = i
    if hi > piece:
        count = _emit(starts, ends, count, piece, hi)
    return count


@numba.njit(inline="always", cache=True)
def _marks_around_a_word(
    points: np.ndarray, lo: int, hi: int, flags: np.ndarray, table: np.ndarray, starts: np.ndarray, ends: np.ndarray, count: int,
) -> int:
    """The next most common chunk, ASCII prefix marks + a plain word + ASCII suffix marks
    ('(word),', '"Hello,'), split without the general loop: each mark is a word. -1 when the
    chunk has another shape, or when one of the strings the loop would meet on the way is
    an exception or an acronym, or its suffix marks hold a run of dots (the loop handles those)."""
    a = lo
    while a < hi and points[a] < 128 and flags[points[a]] & PREFIX:
        a += 1
    b = hi
    while b > a and points[b - 1] < 128 and flags[points[b - 1]] & SUFFIX:
        b -= 1
    if a == b or not _plain(points, a, b):
        return -1
    for j in range(b + 1, hi):
        if points[j] == 46 and points[j - 1] == 46:
            return -1
    # The loop peels prefixes first, then suffixes, checking each string it meets.
    for first in range(lo, a + 1):
        if _exception(points, first, hi, table) >= 0 or _acronym(points, first, hi):
            return -1
    for last in range(b, hi):
        if _exception(points, a, last, table) >= 0 or _acronym(points, a, last) or _initial(points, a, last + 1, flags):
            return -1
    for j in range(lo, a):
        count = _emit(starts, ends, count, j, j + 1)
    count = _emit(starts, ends, count, a, b)
    for j in range(b, hi):
        count = _emit(starts, ends, count, j, j + 1)
    return count


@numba.njit(inline="always", cache=True)
def _word_and_mark(points: np.ndarray, lo: int, hi: int, flags: np.ndarray, table: np.ndarray) -> bool:
    """A chunk of letters and digits and one last mark ("word,") that `_marks_around_a_word` splits into the two."""
    return (flags[points[hi - 1]] & SUFFIX != 0 and _exception(points, lo, hi, table) < 0 and not _acronym(points, lo, hi)
            and _exception(points, lo, hi - 1, table) < 0 and not _acronym(points, lo, hi - 1) and not _initial(points, lo, hi, flags))


@numba.njit(inline="always", cache=True)
def chunk_words(
    points: np.ndarray, lo: int, hi: int, flags: np.ndarray, table: np.ndarray, starts: np.ndarray, ends: np.ndarray,
    count: int, pending: np.ndarray,
) -> int:
    """The words of the chunk points[lo:hi] (no whitespace inside), appended to starts/ends
    (code point indexes) from `count`; returns the new count. `pending` is scratch space
    for the suffixes (one slot per code point of the chunk)."""
    if hi - lo == 1 or (_plain(points, lo, hi) and _exception(points, lo, hi, table) < 0):  # most chunks: one word
        return _emit(starts, ends, count, lo, hi)
    done = _marks_around_a_word(points, lo, hi, flags, table, starts, ends, count)
    if done >= 0:
        return done
    return _peeled_words(points, lo, hi, flags, table, starts, ends, count, pending)


@numba.njit(cache=True)
def _peeled_words(
    points: np.ndarray, lo: int, hi: int, flags: np.ndarray, table: np.ndarray, starts: np.ndarray, ends: np.ndarray,
    count: int, pending: np.ndarray,
) -> int:
    """`chunk_words`' general path, a call rather than inlined (compiled once per array type,
    not once per caller): prefixes and suffixes peeled one at a time, then the middle."""
    suffixes = 0  # pending[2k], pending[2k + 1]: the k-th suffix peeled, from the right
    while hi > lo:
        n = hi - lo
        if _exception(points, lo, hi, table) >= 0 or _acronym(points, lo, hi):
            break
        whole_run = _run_at(points, lo, hi)
        if whole_run == n:
            break
        if whole_run:
            count = _emit(starts, ends, count, lo, lo + whole_run)
            lo += whole_run
            continue
        if n > 1 and flags[points[lo]] & PREFIX:
            count = _emit(starts, ends, count, lo, lo + 1)
            lo += 1
            continue
        peel = _run_before(points, lo, hi)
        if peel == 0 or peel == n:
            suffix = n > 1 and flags[points[hi - 1]] & SUFFIX and not _initial(points, lo, hi, flags)
            peel = 1 if suffix else _possessive(points, lo, hi)
        if peel == 0:
            break
        pending[2 * suffixes] = hi - peel
        pending[2 * suffixes + 1] = hi
        suffixes += 1
        hi -= peel
    if hi > lo:
        count = _middle_words(points, lo, hi, flags, table, starts, ends, count)
    for k in range(suffixes - 1, -1, -1):
        count = _emit(starts, ends, count, pending[2 * k], pending[2 * k + 1])
    return count


@numba.njit(inline="always", cache=True)
def merge_special_spans(
    points: np.ndarray, table: np.ndarray, starts: np.ndarray, ends: np.ndarray, first: int, count: int,
) -> int:
    """spaCy's special-case matcher: 2-3 adjacent words of one chunk that together spell an
    exception (";" + ")" -> ";)", "Mr" + "." -> "Mr.") become its words. Returns the new count."""
    k = first
    while k < count - 1:
        for width in (3, 2):
            if k + width > count:
                continue
            index = _exception(points, starts[k], ends[k + width - 1], table)
            if index < 0:
                continue
            lo = starts[k]
            merged = table[table[TABLE_LENGTH_OFFSETS] + index + 1] - table[table[TABLE_LENGTH_OFFSETS] + index]
            tail = count - (k + width)  # move the words after the span to follow the merged ones
            if merged < width:
                for t in range(tail):
                    starts[k + merged + t] = starts[k + width + t]
                    ends[k + merged + t] = ends[k + width + t]
            lengths = table[TABLE_LENGTHS] + table[table[TABLE_LENGTH_OFFSETS] + index]
            for j in range(merged):
                starts[k + j] = lo
                ends[k + j] = lo + table[lengths + j]
                lo = ends[k + j]
            count += merged - width
            k += merged - 1
            break
        k += 1
    return count


@numba.njit(cache=True)
def point_words(
    points: np.ndarray, lo: int, hi: int, flags: np.ndarray, table: np.ndarray, starts: np.ndarray, ends: np.ndarray, pending: np.ndarray,
) -> int:
    """The words of the chunk points[lo:hi] of code points into starts/ends from 0; returns how many.
    A call, not inlined: every code point caller shares one compiled copy of the rules."""
    none = np.int64(0)  # not a literal 0: see text_tokens
    return merge_special_spans(points, table, starts, ends, none, chunk_words(points, lo, hi, flags, table, starts, ends, none, pending))


@numba.njit(cache=True)
def text_tokens(
    data: np.ndarray, start: int, end: int, flags: np.ndarray, table: np.ndarray, scratch: np.ndarray,
    starts: np.ndarray, ends: np.ndarray, chars: np.ndarray,
) -> int:
    """The words of the UTF-8 text data[start:end] (datatrove's `split_into_words`): byte
    ranges into starts/ends and characters into chars (room for one per byte); returns how many.

    ASCII chunks (most) are split in place, their bytes standing for code points; a chunk
    with other characters is decoded into `scratch` (int64, 5 rows of the chunk's length + 1:
    code points, byte offsets, word starts, word ends, suffixes) and its words mapped back.
    """
    # Counters start as np.int64(0), not 0: numba types a call in a first pass with the
    # literal 0 and compiles the callee for it as well as for int64 (a second copy of the
    # URL and infix rules, ~10 s each). Every kernel here that calls out follows this.
    count = np.int64(0)
    i = start
    while i < end:
        i, j, alnum = ascii_chunk(data, i, end)  # most chunks: found 32 bytes at a time
        ascii_only, plain = True, alnum == j - i
        if j < 0 and i < end:  # else the byte walk: one whitespace character, or the chunk
            b = data[i]
            if b < 128:
                if flags[b] & SPACE:
                    i += 1
                    continue
            else:
                cp, length = decode_one(data, i)
                if flags[cp] & SPACE:
                    i += length
                    continue
            j = i
            plain = True
            while j < end:
                b = data[j]
                if b < 128:
                    f = flags[b]
                    if f & SPACE:
                        break
                    plain &= (f & ALNUM) != 0
                    j += 1
                else:
                    cp, length = decode_one(data, j)
                    if flags[cp] & SPACE:
                        break
                    ascii_only = False
                    j += length
        elif j < 0:
            break  # only whitespace was left
        if ascii_only and plain and _exception(data, i, j, table) < 0:  # most chunks: one plain word
            starts[count] = i
            ends[count] = j
            chars[count] = j - i
            count += 1
        elif ascii_only and 0 < alnum == j - i - 1 and _word_and_mark(data, i, j, flags, table):  # "word," "word."
            count = _emit(starts, ends, _emit(starts, ends, count, i, j - 1), j - 1, j)
            chars[count - 2], chars[count - 1] = j - 1 - i, 1
        elif ascii_only:
            first = count
            count = chunk_words(data, i, j, flags, table, starts, ends, count, scratch[4])
            if count - first > 2:  # two words span only the whole chunk, which chunk_words looked up already
                count = merge_special_spans(data, table, starts, ends, first, count)
            for k in range(first, count):
                chars[k] = ends[k] - starts[k]
        else:
            points, positions = scratch[0], scratch[1]
            n = decode(data, i, j, points, positions)
            # np.int64(0), not a literal 0: a literal argument compiles a specialization of its own
            found = point_words(points, np.int64(0), n, flags, table, scratch[2], scratch[3], scratch[4])
            for k in range(found):
                s, e = scratch[2, k], scratch[3, k]
                starts[count] = positions[s]
                ends[count] = positions[e]
                chars[count] = e - s
                count += 1
        i = j
    return count
