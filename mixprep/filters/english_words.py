"""The English words of a batch's texts (`english.text_tokens`), split once and shared.

Gopher quality, Gopher repetition and C4 all read the same words; the first of them to run
on a batch splits the rows it reads and leaves them in `TextBatch.shared`, so a chain pays
for one split however many of them it has. `words(text)` splits one text the same way (for
tests and tools).
"""
from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np

from mixprep.filters.english import text_tokens
from mixprep.filters.english_tables import code_point_flags, exception_table
from mixprep.filters.textstats import TextBatch, most_bytes


@dataclass(frozen=True)
class Words:
    """The English words of some rows of a batch: row k's are starts/ends/chars[offsets[k]:offsets[k + 1]]
    (byte ranges in the batch's data, characters); `index[r]` is the k of the r-th row asked for."""

    index: np.ndarray
    offsets: np.ndarray
    starts: np.ndarray
    ends: np.ndarray
    chars: np.ndarray


@numba.njit(cache=True)
def _words_kernel(
    data: np.ndarray, offsets: np.ndarray, rows: np.ndarray, flags: np.ndarray, table: np.ndarray, scratch: np.ndarray,
    word_offsets: np.ndarray, starts: np.ndarray, ends: np.ndarray, chars: np.ndarray,
) -> None:
    for k in range(len(rows)):
        d = rows[k]
        at = word_offsets[k]
        found = text_tokens(data, offsets[d], offsets[d + 1], flags, table, scratch, starts[at:], ends[at:], chars[at:])
        word_offsets[k + 1] = at + found


def _split(batch: TextBatch, rows: np.ndarray) -> Words:
    size = int(np.sum(batch.offsets[rows + 1] - batch.offsets[rows])) + 1  # a word has a byte at least
    starts, ends, chars = np.empty(size, np.int64), np.empty(size, np.int64), np.empty(size, np.int64)
    offsets = np.zeros(len(rows) + 1, dtype=np.int64)
    _words_kernel(batch.data, batch.offsets, rows, code_point_flags(), exception_table(),
                  token_scratch(most_bytes(batch.offsets, rows) + 1), offsets, starts, ends, chars)
    return Words(np.arange(len(rows), dtype=np.int64), offsets, starts, ends, chars)


def batch_words(batch: TextBatch, rows: np.ndarray) -> Words:
    """The words of `rows`: from the batch's shared split when it covers them, else split
    now and kept for the next kernel (a later filter sees the rows an earlier one kept, a subset)."""
    shared = batch.shared.get("english_words")
    if isinstance(shared, tuple):
        words, position = shared
        index = position[rows]
        if len(index) == 0 or index.min() >= 0:
            return Words(index, words.offsets, words.starts, words.ends, words.chars)
    words = _split(batch, rows)
    position = np.full(len(batch), -1, dtype=np.int64)
    position[rows] = np.arange(len(rows), dtype=np.int64)
    batch.shared["english_words"] = (words, position)
    return words


def token_scratch(size: int) -> np.ndarray:
    """`text_tokens`'s scratch space for texts of up to `size` bytes."""
    return np.empty((5, 2 * size + 2), dtype=np.int64)


def words(text: str) -> list[str]:
    """The words of one text, from the compiled rules (for tests and tools; the kernels call `text_tokens`)."""
    raw = text.encode("utf-8")
    data = np.frombuffer(bytearray(raw + b"\0"), dtype=np.uint8)  # writable: the kernels' specialization
    n = len(raw)
    starts, ends, chars = np.empty(n + 1, np.int64), np.empty(n + 1, np.int64), np.empty(n + 1, np.int64)
    found = text_tokens(data, 0, n, code_point_flags(), exception_table(), token_scratch(n), starts, ends, chars)
    return [raw[s:e].decode("utf-8") for s, e in zip(starts[:found].tolist(), ends[:found].tolist(), strict=True)]
