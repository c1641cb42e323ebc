"""The character classes and spaCy's exception table behind `english`, the compiled splitter.

One table of flags per code point (`code_point_flags`), built from Python's own Unicode
predicates (the ones spaCy and datatrove call) once per machine and cached next to the
compiled kernels; datatrove's punctuation set and spaCy's sentence-final marks verbatim;
spaCy's tokenizer exceptions as one flat int64 array the kernels probe by hash
(`exception_table`).
"""
from __future__ import annotations

import functools
import hashlib
import json
import os
import tempfile
import unicodedata
from pathlib import Path

import numba
import numpy as np

import mixprep.numba_cache  # noqa: F401 - a writable kernel cache before the first @njit(cache=True)

# -- character classes ---------------------------------------------------------------------

SPACE = 1  # str.isspace: where chunks end (spaCy and str.split)
ALNUM = 2  # str.isalnum
ALPHA = 4  # str.isalpha: Gopher's "word with an alphabetic character"
SYMBOL = 8  # in datatrove's PUNCTUATION_SET: a word made only of these is not counted as a word
PUNCT = 16  # Unicode category P*: spaCy's `is_punct`
SENTENCE_END = 32  # spaCy's sentencizer punct_chars
PREFIX = 64
SUFFIX = 128
LINE_BREAK = 256  # where str.splitlines splits
DECIMAL = 512  # `\d` of Python's re (Unicode Nd): Wikipedia citations "[12]"
UPPER = 1024  # str.isupper: spaCy keeps the dot of "I." and "J." (one capital), not of "AB."

# datatrove 0.10.1's PUNCTUATION_SET, verbatim (its PUNCTUATION string, the C0/C1 controls
# it adds, and its TERMINAL_PUNCTUATION set; the fullwidth "１" is in it).
DATATROVE_PUNCTUATION = (
    "\x00\x01\x02\x03\x04\x05\x06\x07\x08\x0b\x0c\r\x0e\x0f\x10\x11\x12\x13\x14\x15\x16\x17\x18\x19\x1a\x1b"
    "\x1c\x1d\x1e\x1f!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~\x7f\x80\x81\x82\x83\x84\x85\x86\x87\x88\x89\x8a\x8b"
    "\x8c\x8d\x8e\x8f\x90\x91\x92\x93\x94\x95\x96\x97\x98\x99\x9a\x9b\x9c\x9d\x9e\x9f\xab\xb4\xbb\u0589\u061d"
    "\u061e\u061f\u06d4\u0700\u0701\u0702\u07f9\u0837\u0839\u083d\u083e\u0964\u0965\u104a\u104b\u1362\u1367"
    "\u1368\u166e\u1735\u1736\u17d4\u17d5\u17d6\u17d9\u17da\u1803\u1809\u1944\u1945\u1aa8\u1aa9\u1aaa\u1aab"
    "\u1b5a\u1b5b\u1b5e\u1b5f\u1b7d\u1b7e\u1c3b\u1c3c\u1c7e\u1c7f\u2013\u2014\u2019\u201c\u201d\u201e\u2026"
    "\u203c\u203d\u2047\u2048\u2049\u2236\u2501\u25ba\u2e2e\u2e3c\u2e53\u2e54\u3001\u3002\u3008\u3009\u300a"
    "\u300b\u300c\u300d\u3010\u3011\ua4ff\ua60e\ua60f\ua6f3\ua6f7\ua876\ua877\ua8ce\ua8cf\ua92f\ua9c8\ua9c9"
    "\uaa5d\uaa5e\uaa5f\uaaf0\uaaf1\uabeb\ufe52\ufe56\ufe57\uff01\uff05\uff08\uff09\uff0c\uff0e\uff11\uff1a"
    "\uff1b\uff1f\uff5e\uff61\U00010a56\U00010a57\U00010f55\U00010f56\U00010f57\U00010f58\U00010f59\U00010f86"
    "\U00010f87\U00010f88\U00010f89\U00011047\U00011048\U000110be\U000110bf\U000110c0\U000110c1\U00011141"
    "\U00011142\U00011143\U000111c5\U000111c6\U000111cd\U000111de\U000111df\U00011238\U00011239\U0001123b"
    "\U0001123c\U000112a9\U0001144b\U0001144c\U000115c2\U000115c3\U000115c9\U000115ca\U000115cb\U000115cc"
    "\U000115cd\U000115ce\U000115cf\U000115d0\U000115d1\U000115d2\U000115d3\U000115d4\U000115d5\U000115d6"
    "\U000115d7\U00011641\U00011642\U0001173c\U0001173d\U0001173e\U00011944\U00011946\U00011a42\U00011a43"
    "\U00011a9b\U00011a9c\U00011c41\U00011c42\U00011ef7\U00011ef8\U00011f43\U00011f44\U00016a6e\U00016a6f"
    "\U00016af5\U00016b37\U00016b38\U00016b44\U00016e98\U0001bc9f\U0001da88"
)
# spaCy 3.8's Sentencizer.default_punct_chars, verbatim.
SENTENCE_ENDS = (
    "!.?\u0589\u061f\u06d4\u0700\u0701\u0702\u07f9\u0964\u0965\u104a\u104b\u1362\u1367\u1368\u166e\u1735\u1736"
    "\u1803\u1809\u1944\u1945\u1aa8\u1aa9\u1aaa\u1aab\u1b5a\u1b5b\u1b5e\u1b5f\u1c3b\u1c3c\u1c7e\u1c7f\u203c\u203d"
    "\u2047\u2048\u2049\u2e2e\u2e3c\u3002\ua4ff\ua60e\ua60f\ua6f3\ua6f7\ua876\ua877\ua8ce\ua8cf\ua92f\ua9c8\ua9c9"
    "\uaa5d\uaa5e\uaa5f\uaaf0\uaaf1\uabeb\ufe52\ufe56\ufe57\uff01\uff0e\uff1f\uff61\U00010a56\U00010a57\U00011047"
    "\U00011048\U000110be\U000110bf\U000110c0\U000110c1\U00011141\U00011142\U00011143\U000111c5\U000111c6"
    "\U000111cd\U000111de\U000111df\U00011238\U00011239\U0001123b\U0001123c\U000112a9\U0001144b\U0001144c"
    "\U000115c2\U000115c3\U000115c9\U000115ca\U000115cb\U000115cc\U000115cd\U000115ce\U000115cf\U000115d0"
    "\U000115d1\U000115d2\U000115d3\U000115d4\U000115d5\U000115d6\U000115d7\U00011641\U00011642\U0001173c"
    "\U0001173d\U0001173e\U00011a42\U00011a43\U00011a9b\U00011a9c\U00011c41\U00011c42\U00016a6e\U00016a6f"
    "\U00016af5\U00016b37\U00016b38\U00016b44\U0001bc9f\U0001da88"
)
PREFIX_MARKS = "\"'([{<«“‘„‚`$£€¥#§*•–—¿¡_!?,:;)]}>&%="
"""spaCy's English prefixes that are one character (its LIST_PUNCT, quotes, currency, § % = – —)."""
SUFFIX_MARKS = "\"')]}>»”’.,;:!?%*…_([{<#&–—"
"""spaCy's one-character suffixes (a dot only after a lower-case letter, a digit, a mark, or two capitals)."""
LINE_BREAKS = "\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"

EXCEPTIONS_FILE = Path(__file__).with_name("spacy_en_exceptions.json")
"""spaCy 3.8's English tokenizer exceptions (`nlp.tokenizer.rules`, MIT licensed), whitespace-free:
string -> the lengths of the words it splits into ("don't": do + n't, "Mr.": whole, ":)": whole).
Written by `benchmarks/bench_parity.py --write-exceptions`."""


def _flags_for_all_code_points() -> np.ndarray:
    text = "".join(map(chr, range(0x110000)))
    flags = np.zeros(0x110000, dtype=np.uint16)
    for flag, test in (
        (SPACE, str.isspace), (ALNUM, str.isalnum), (ALPHA, str.isalpha), (DECIMAL, str.isdecimal), (UPPER, str.isupper),
        (PUNCT, lambda c: unicodedata.category(c)[0] == "P"),
        (PREFIX | SUFFIX, lambda c: unicodedata.category(c) == "So"),  # spaCy's LIST_ICONS: emoji and other symbols
    ):
        flags[np.fromiter(map(test, text), dtype=bool, count=len(text))] |= flag
    for flag, members in ((SYMBOL, DATATROVE_PUNCTUATION), (SENTENCE_END, SENTENCE_ENDS), (PREFIX, PREFIX_MARKS),
                          (SUFFIX, SUFFIX_MARKS), (LINE_BREAK, LINE_BREAKS)):
        flags[[ord(c) for c in members]] |= flag
    return flags


def _cache_file() -> Path:
    """Where the table is kept: numba's cache folder when one is set, else beside this module."""
    parts = ["icons", str(UPPER), unicodedata.unidata_version, DATATROVE_PUNCTUATION, SENTENCE_ENDS, PREFIX_MARKS, SUFFIX_MARKS,
             LINE_BREAKS]
    key = hashlib.sha256("\0".join(parts).encode()).hexdigest()[:16]
    folder = Path(numba.config.CACHE_DIR) if numba.config.CACHE_DIR else Path(__file__).resolve().parent / "__pycache__"
    return folder / f"english_flags-{key}.npy"


@functools.lru_cache(maxsize=1)
def code_point_flags() -> np.ndarray:
    """uint16 per code point: the class bits above. Built once per machine (~1 s of Python's
    Unicode predicates) and loaded from the cache after that."""
    path = _cache_file()
    try:
        table = np.load(path)
        if table.shape == (0x110000,) and table.dtype == np.uint16:
            return table
    except (OSError, ValueError):
        pass
    table = _flags_for_all_code_points()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path.parent, suffix=".tmp", delete=False) as handle:
            np.save(handle, table)
        os.replace(handle.name, path)
    except OSError:
        pass  # a read-only install: build it again next time
    return table


# The exception table is one flat int64 array (an array inside a tuple costs numba a
# reference count update per access): a header of section starts, then the sections.
TABLE_POINTS, TABLE_OFFSETS, TABLE_LENGTHS, TABLE_LENGTH_OFFSETS, TABLE_SLOTS, TABLE_SCREEN, TABLE_SLOT_COUNT = range(7)
_HEADER = 7
_SCREEN_WORDS = 1 << 12


@functools.lru_cache(maxsize=1)
def exception_table() -> np.ndarray:
    """The exceptions for the kernels, flat: the code points of all, their offsets, the word
    lengths of all, their offsets, an open-addressing table of [hash, index + 1] slot pairs,
    and a filter of bits by (length, first, last code point) that rules most chunks out
    without hashing."""
    exceptions = json.loads(EXCEPTIONS_FILE.read_text(encoding="utf-8"))["exceptions"]
    texts = list(exceptions)
    points = np.array([ord(c) for text in texts for c in text], dtype=np.int64)
    offsets = np.cumsum([0] + [len(t) for t in texts]).astype(np.int64)
    lengths = np.array([n for text in texts for n in exceptions[text]], dtype=np.int64)
    length_offsets = np.cumsum([0] + [len(exceptions[t]) for t in texts]).astype(np.int64)
    slots = np.zeros((4 * len(texts), 2), dtype=np.int64)  # [hash, index + 1]; 0: empty
    for index in range(len(texts)):
        key = int(points_hash(points, int(offsets[index]), int(offsets[index + 1])))
        slot = key % len(slots)
        while slots[slot, 1]:
            slot = (slot + 1) % len(slots)
        slots[slot] = key, index + 1
    screen = np.zeros(_SCREEN_WORDS, dtype=np.uint64)
    for text in texts:
        bit = screen_bit(len(text), ord(text[0]), ord(text[-1]))
        screen[bit >> 6] |= np.uint64(1) << np.uint64(bit & 63)
    sections = [points, offsets, lengths, length_offsets, slots.ravel(), screen.view(np.int64)]
    starts = np.cumsum([_HEADER] + [len(x) for x in sections])[:-1]
    return np.concatenate([starts.astype(np.int64), np.array([len(slots)], dtype=np.int64), *sections])


# -- what the kernels and the table builder share (compiled) ---------------------------------

@numba.njit(inline="always", cache=True)
def points_hash(points: np.ndarray, lo: int, hi: int) -> int:
    """A non-negative hash of points[lo:hi] (the exception table's key)."""
    h = np.uint64(0xCBF29CE484222325)
    for j in range(lo, hi):
        h = (h ^ np.uint64(points[j])) * np.uint64(0x100000001B3)
    return np.int64(h >> np.uint64(1))


@numba.njit(inline="always", cache=True)
def screen_bit(n: int, first: int, last: int) -> int:
    return ((n & 15) << 14) | ((first & 127) << 7) | (last & 127)
