"""Gopher repetition statistics for a whole record batch (used by mixprep/filters.py).

Definitions follow Gopher (Rae et al. 2021, table A1) as RedPajama-V2 implements them;
"words" are whitespace-separated, as everywhere in mixprep's filters.

- duplicate line fraction: lines are the text split at newlines, stripped, blank ones
  dropped; the fraction *by count* of lines that repeat an earlier line of the same text.
- duplicate paragraph fraction: the same over paragraphs (blocks separated by one or
  more blank lines), by count.
- top n-gram fraction (n = 2..4): characters of the most frequent n-gram times its
  number of occurrences, over the characters of all words. Only n-grams that occur at
  least twice count: a text without any repeated n-gram scores 0.
- duplicate n-gram fraction (n = 5..10): characters of the words covered by any n-gram
  that occurs more than once (every occurrence, overlaps counted once), over the
  characters of all words.
Characters are counted inside words (whitespace excluded) in numerator and denominator.

Everything is computed over the whole batch at once: words are hashed once, n-gram
hashes are built from (n-1)-gram hashes, and an n-gram is only hashed where both of its
(n-1)-grams repeat, since an n-gram cannot repeat otherwise. Natural text has few
repeated long n-grams, so the work per n shrinks fast. Hash equality stands for string
equality (64-bit hashes; a collision within one text is ~1e-15 likely), and the hashes
never leave the batch, so they need not be stable across versions.
"""
from __future__ import annotations

import numpy as np
import polars as pl

TOP_NGRAM_SIZES = (2, 3, 4)
DUPLICATE_NGRAM_SIZES = (5, 6, 7, 8, 9, 10)

# Odd 64-bit constants (splitmix64's) that spread n-gram and document ids over the hash space.
_NGRAM_MULTIPLIER = np.uint64(0x9E3779B97F4A7C15)
_DOC_MULTIPLIER = np.uint64(0xBF58476D1CE4E5B9)


def _doc_ids(lengths: np.ndarray) -> np.ndarray:
    return np.repeat(np.arange(len(lengths), dtype=np.uint64), lengths)


def _repeats_earlier(pieces: pl.Series, lengths: np.ndarray) -> np.ndarray:
    """Per text: how many of its pieces equal an earlier piece of the same text."""
    keys = pieces.hash(seed=0).to_numpy() + _doc_ids(lengths) * _DOC_MULTIPLIER
    repeated = ~pl.Series(keys).is_first_distinct().to_numpy()
    return np.bincount(_doc_ids(lengths)[repeated].astype(np.int64), minlength=len(lengths))


def _duplicate_piece_fraction(pieces_per_text: pl.Series) -> np.ndarray:
    stripped = pieces_per_text.list.eval(pl.element().str.strip_chars().filter(pl.element().str.strip_chars() != ""))
    lengths = stripped.list.len().fill_null(0).to_numpy().astype(np.int64)
    pieces = stripped.explode().drop_nulls()
    repeated = _repeats_earlier(pieces, lengths)
    return np.divide(repeated, lengths, out=np.zeros(len(lengths)), where=lengths > 0)


def duplicate_line_fraction(texts: pl.Series) -> np.ndarray:
    return _duplicate_piece_fraction(texts.fill_null("").str.split("\n"))


def duplicate_paragraph_fraction(texts: pl.Series) -> np.ndarray:
    # Runs of blank lines become exactly one "\n\n", so a literal split finds paragraphs.
    paragraphs = texts.fill_null("").str.replace_all(r"\n[^\S\n]*(?:\n[^\S\n]*)+", "\n\n").str.split("\n\n")
    return _duplicate_piece_fraction(paragraphs)


def line_repetition(texts: pl.Series) -> pl.Series:
    """Struct per text: `line` and `paragraph` duplicate fractions (by count)."""
    return pl.DataFrame(
        {"line": duplicate_line_fraction(texts), "paragraph": duplicate_paragraph_fraction(texts)}
    ).to_struct()


def _repeated(keys: np.ndarray) -> np.ndarray:
    return pl.Series(keys, dtype=pl.UInt64).is_duplicated().to_numpy()


def _top_ngram_chars(starts: np.ndarray, keys: np.ndarray, chars: np.ndarray, docs: np.ndarray, n_docs: int) -> np.ndarray:
    """Per text: occurrences x characters of its most frequent repeated n-gram (ties: longest)."""
    if len(starts) == 0:
        return np.zeros(n_docs)
    grams = pl.DataFrame({"doc": docs, "key": keys, "chars": chars})
    top = (
        grams.group_by("doc", "key")
        .agg(pl.len().alias("count"), pl.col("chars").first())
        .group_by("doc")
        .agg(pl.struct("count", "chars").sort_by("count", "chars", descending=True).first().alias("top"))
        .select("doc", covered=pl.col("top").struct.field("count") * pl.col("top").struct.field("chars"))
    )
    out = np.zeros(n_docs)
    out[top["doc"].to_numpy().astype(np.int64)] = top["covered"].to_numpy()
    return out


def ngram_repetition(texts: pl.Series) -> pl.Series:
    """Struct per text: `top_2`..`top_4` and `duplicate_5`..`duplicate_10` character fractions."""
    n_docs = len(texts)
    per_text = texts.fill_null("").str.extract_all(r"\S+")
    lengths = per_text.list.len().fill_null(0).to_numpy().astype(np.int64)
    words = per_text.explode().drop_nulls()
    word_hash = words.hash(seed=0).to_numpy()
    word_chars = words.str.len_chars().to_numpy().astype(np.int64)
    doc = _doc_ids(lengths)
    doc_int = doc.astype(np.int64)
    total_chars = np.bincount(doc_int, weights=word_chars, minlength=n_docs)
    n_words = len(word_hash)
    # words_left[i]: words from position i to the end of its text, i included.
    ends = np.cumsum(lengths)
    words_left = np.repeat(ends, lengths) - np.arange(n_words)
    char_prefix = np.concatenate(([0], np.cumsum(word_chars)))
    doc_salt = doc * _DOC_MULTIPLIER

    stats: dict[str, np.ndarray] = {}
    ngram_hash = word_hash.copy()
    repeated = _repeated(word_hash + doc_salt)
    with np.errstate(over="ignore"):
        for n in range(2, max(DUPLICATE_NGRAM_SIZES) + 1):
            both_repeat = np.zeros(n_words, dtype=bool)
            both_repeat[:-1] = repeated[:-1] & repeated[1:]
            starts = np.flatnonzero(both_repeat & (words_left >= n))
            ngram_hash[starts] = ngram_hash[starts] * _NGRAM_MULTIPLIER + word_hash[starts + n - 1]
            repeated = np.zeros(n_words, dtype=bool)
            repeated[starts] = _repeated(ngram_hash[starts] + doc_salt[starts])
            found = starts[repeated[starts]]
            if n in TOP_NGRAM_SIZES:
                chars = char_prefix[found + n] - char_prefix[found]
                covered = _top_ngram_chars(found, ngram_hash[found] + doc_salt[found], chars, doc_int[found], n_docs)
                stats[f"top_{n}"] = covered
            else:
                # +1 where a repeated n-gram starts, -1 after it ends: positive = covered word.
                delta = np.bincount(found, minlength=n_words + 1) - np.bincount(found + n, minlength=n_words + 1)
                covered = np.cumsum(delta[:n_words]) > 0
                stats[f"duplicate_{n}"] = np.bincount(doc_int, weights=word_chars * covered, minlength=n_docs)
    fractions = {
        name: np.divide(chars, total_chars, out=np.zeros(n_docs), where=total_chars > 0) for name, chars in stats.items()
    }
    return pl.DataFrame(fractions).to_struct()
