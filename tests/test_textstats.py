"""The compiled per-text statistics agree with the same definitions written as polars expressions."""
from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from filter_reference import line_repetition as reference_line_repetition
from filter_reference import ngram_repetition as reference_ngram_repetition
from filter_reference import quality_counts as reference_quality_counts
from hypothesis import given, settings
from hypothesis import strategies as st

from mixprep.filters.textstats import TextBatch, line_repetition, ngram_repetition, quality_counts

# Pieces that sit on the edges of the definitions: Unicode and ASCII whitespace, CR,
# bullets, ellipses in both spellings, terminal punctuation, letters with and without
# the Alphabetic property, stop words in any case and glued to word characters,
# multi-byte and combining characters.
PIECES = [
    " ", "  ", "\n", "\n\n", "\r\n", "\t", "\u00a0", "\u2003", "\u3000", "\u200b", "\x0b",
    "-", "*", "•", "●", "#", ".", "..", "...", "…", "!", "?", '"', "'", "’", "”",
    "a", "b", "ab", "cd", "The", "the", "THE", "and", "AND", "that", "with", "have", "be", "to", "of",
    "the_", "x1", "there", "éthe", "1", "42", "4.5", "_", "é", "ß", "漢字", "١٢", "e\u0301", "Ⅻ", "🙂", "{", ",",
]


def texts_strategy() -> st.SearchStrategy[list[str]]:
    text = st.lists(st.sampled_from(PIECES), max_size=40).map("".join)
    return st.lists(text, min_size=1, max_size=12)


@pytest.mark.slow
@settings(max_examples=300, deadline=None)
@given(texts_strategy())
def test_quality_counts_match_reference(texts: list[str]) -> None:
    series = pl.Series(texts, dtype=pl.String)
    np.testing.assert_array_equal(quality_counts(series), reference_quality_counts(series))


@pytest.mark.slow
@settings(max_examples=300, deadline=None)
@given(texts_strategy())
def test_line_repetition_matches_reference(texts: list[str]) -> None:
    series = pl.Series(texts, dtype=pl.String)
    np.testing.assert_allclose(line_repetition(series), reference_line_repetition(series))


# Few distinct words, so n-grams up to 10 words repeat often.
REPETITIVE = st.lists(st.sampled_from(["a", "b", "cc", "é", "a.", "\n", " ", "  ", "\t"]), max_size=80).map(
    lambda pieces: " ".join(pieces)
)


@pytest.mark.slow
@settings(max_examples=300, deadline=None)
@given(st.lists(REPETITIVE, min_size=1, max_size=6))
def test_ngram_repetition_matches_reference(texts: list[str]) -> None:
    series = pl.Series(texts, dtype=pl.String)
    np.testing.assert_allclose(ngram_repetition(series), reference_ngram_repetition(series))


@settings(max_examples=150, deadline=None)
@given(texts_strategy(), st.data())
def test_kernels_on_chosen_rows_read_those_rows_of_the_shared_batch(texts: list[str], data: st.DataObject) -> None:
    """What a costly filter does with the rows no earlier filter removed: each row's
    numbers are those of the whole batch, in the order asked for (repeats allowed)."""
    series = pl.Series(texts, dtype=pl.String)
    rows = np.array(data.draw(st.lists(st.integers(0, len(texts) - 1), max_size=len(texts) + 2)), dtype=np.int64)
    batch = TextBatch(series)
    for kernel in (quality_counts, line_repetition, ngram_repetition):
        np.testing.assert_array_equal(kernel(batch, rows), kernel(series)[rows])


def test_nulls_and_empty_texts_count_nothing() -> None:
    series = pl.Series(["", None, " \n "], dtype=pl.String)
    assert not quality_counts(series).any()
    assert not line_repetition(series).any()
    assert not ngram_repetition(series).any()


def test_sliced_and_chunked_series_read_their_own_rows() -> None:
    """A slice shares its parent's buffers at an offset; chunks are combined first."""
    parts = pl.concat([pl.Series(["x y", "the cat the cat"]), pl.Series(["a\na", "b"])], rechunk=False)
    sliced = parts.slice(1, 3)
    np.testing.assert_array_equal(quality_counts(sliced), reference_quality_counts(sliced))
    np.testing.assert_allclose(line_repetition(sliced), reference_line_repetition(sliced))
    np.testing.assert_allclose(ngram_repetition(sliced), reference_ngram_repetition(sliced))


@pytest.mark.parametrize(
    ("text", "field", "expected"),
    [
        ("......", "ellipses", 2),  # counted without overlap from the left
        ("a....\nb", "ellipsis_lines", 1),
        ("The, the_ THE there éthe", "stop_words", 3),  # "éthe": é is not an ASCII word byte
        ("e\u0301 1 ١٢", "alpha_words", 1),
        ("a\u00a0b\u3000c", "words", 3),
    ],
)
def test_documented_edges(text: str, field: str, expected: int) -> None:
    from mixprep.filters.fields import QUALITY_FIELDS

    assert quality_counts(pl.Series([text]))[0, QUALITY_FIELDS.index(field)] == expected


def _texts_around_block_edges() -> list[str]:
    """Words, lines, runs of dots and words without a letter that end exactly at, or run across,
    the 64-byte blocks of the bit masks; texts of 63-129 bytes with and without trailing space."""
    texts = []
    for length in (63, 64, 65, 127, 128, 129):
        texts.append("x" * length)  # one word filling whole blocks
        texts.append(("the " * 40)[:length])  # stop words cut at the end
        texts.append(("a.b.c... " * 20)[:length])  # runs of word bytes split by dots, ellipses
        texts.append(("word\n" * 30)[: length - 1] + "\n")  # lines up to the end
        texts.append("é" * (length // 2) + " the")  # two-byte characters across the edge
        texts.append("." * length)  # one run of dots across the edges, to the end
        texts.append("x" * (length - 4) + " 1.5")  # a word without a letter ends the text
        texts.append("1" * length)  # ... and fills whole blocks
    texts.append("abcdefghijklmnopqrstuvwxyz, the." * 3)  # long words with punctuation
    texts.append("\u00a0".join(["the"] * 30))  # non-ASCII whitespace between words
    return texts


def test_block_edges_and_long_words_match_reference() -> None:
    # Every text alone (it ends its buffer) and all together (each starts at an odd offset).
    for texts in [[text] for text in _texts_around_block_edges()] + [_texts_around_block_edges()]:
        series = pl.Series(texts, dtype=pl.String)
        np.testing.assert_array_equal(quality_counts(series), reference_quality_counts(series))
        np.testing.assert_allclose(line_repetition(series), reference_line_repetition(series))
        np.testing.assert_allclose(ngram_repetition(series), reference_ngram_repetition(series))


def _reference_whitespace_bits(texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Per byte of the texts back to back: in a whitespace character (Python's isspace, less
    the four separators \\x1c-\\x1f), and is "\\n"."""
    space, newline = [], []
    for text in texts:
        for character in text:
            width = len(character.encode())
            space += [character.isspace() and character not in "\x1c\x1d\x1e\x1f"] * width
            newline += [character == "\n"] * width
    return np.array(space, dtype=bool), np.array(newline, dtype=bool)


# Long ASCII runs, so whole 32-byte blocks (read with one vector compare) alternate with
# blocks that hold multi-byte characters or end a text.
WHITESPACE_PIECES = PIECES + ["x" * 33, " " * 40, "\n" * 35, "\t\x0b\x0c\r " * 7, "word " * 9, "\x1c\x1f" * 20]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.lists(st.sampled_from(WHITESPACE_PIECES), max_size=30).map("".join), min_size=1, max_size=8))
def test_whitespace_bits_match_python(texts: list[str]) -> None:
    batch = TextBatch(pl.Series(texts, dtype=pl.String))
    space_bits, newline_bits = batch.whitespace
    size = int(batch.offsets[-1])
    for bits, expected in zip((space_bits, newline_bits), _reference_whitespace_bits(texts), strict=True):
        found = np.unpackbits(bits.view(np.uint8), bitorder="little")[:size].astype(bool)
        np.testing.assert_array_equal(found, expected)


def test_bytes_between_marks_the_bytes_in_range() -> None:
    import numba

    from mixprep.filters.intrinsics import bytes_between

    mark = numba.njit(lambda data, i, low, high: bytes_between(data, i, low, high))
    rng = np.random.default_rng(0)
    for _ in range(300):
        data = rng.integers(0, 256, 80).astype(np.uint8)
        i = int(rng.integers(0, 48))
        low = int(rng.integers(0, 256))
        high = int(rng.integers(low, 256))
        window = data[i : i + 32]
        expected = int(np.sum((1 << np.arange(32, dtype=np.uint64)[(window >= low) & (window <= high)]).astype(np.uint64)))
        assert mark(data, i, low, high) == expected
