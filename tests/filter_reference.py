"""The filter statistics written as polars regular expressions: the oracle for mixprep/textstats.py.

These are the definitions mixprep shipped before its compiled kernels (slower, but each is
one readable expression). tests/test_textstats.py checks that both agree on random and
hand-written text. Whitespace, `\\s` and `strip_chars` are Unicode White_Space here as
in the kernels.
"""
from __future__ import annotations

import numpy as np
import polars as pl

GOPHER_STOP_WORDS = ("the", "be", "to", "of", "and", "that", "have", "with")


def _count(pattern: str, *, literal: bool = False) -> pl.Expr:
    return pl.col("text").str.count_matches(pattern, literal=literal).fill_null(0)


QUALITY_EXPRESSIONS = {
    "words": _count(r"\S+"),
    "word_chars": pl.col("text").str.len_chars().fill_null(0) - _count(r"\s"),
    "hashes": _count("#", literal=True),
    "ellipses": _count(r"\.\.\.|…"),
    # Non-blank lines; `[^\S\n]` is whitespace other than newline.
    "lines": _count(r"(?m)^[^\S\n]*\S"),
    "bullet_lines": _count(r"(?m)^[^\S\n]*[-*•‣◦▪●]"),
    "ellipsis_lines": _count(r"(?m)(?:\.\.\.|…)[^\S\n]*$"),
    "terminal_lines": _count(r"(?m)[.!?\"'”’…][^\S\n]*$"),
    "alpha_words": _count(r"[^\s\p{Alphabetic}]*\p{Alphabetic}\S*"),
    "stop_words": _count(r"(?i)(?-u:\b)(?:" + "|".join(GOPHER_STOP_WORDS) + r")(?-u:\b)"),
}


def quality_counts(texts: pl.Series) -> np.ndarray:
    frame = pl.DataFrame({"text": texts}).select(**QUALITY_EXPRESSIONS)
    return frame.to_numpy().astype(np.int64)


# -- repetition (Gopher, as RedPajama-V2 implements it) -----------------------------

def _doc_ids(lengths: np.ndarray) -> np.ndarray:
    return np.repeat(np.arange(len(lengths), dtype=np.int64), lengths)


def _duplicate_piece_fraction(pieces_per_text: pl.Series) -> np.ndarray:
    stripped = pieces_per_text.list.eval(pl.element().str.strip_chars().filter(pl.element().str.strip_chars() != ""))
    lengths = stripped.list.len().fill_null(0).to_numpy().astype(np.int64)
    frame = pl.DataFrame({"doc": _doc_ids(lengths), "piece": stripped.explode().drop_nulls()})
    repeated = ~frame.select(pl.struct("doc", "piece").is_first_distinct()).to_series().to_numpy()
    counts = np.bincount(frame["doc"].to_numpy()[repeated], minlength=len(lengths))
    return np.divide(counts, lengths, out=np.zeros(len(lengths)), where=lengths > 0)


def line_repetition(texts: pl.Series) -> np.ndarray:
    texts = texts.fill_null("")
    lines = _duplicate_piece_fraction(texts.str.split("\n"))
    # Runs of blank lines become exactly one "\n\n", so a literal split finds paragraphs.
    paragraphs = _duplicate_piece_fraction(texts.str.replace_all(r"\n[^\S\n]*(?:\n[^\S\n]*)+", "\n\n").str.split("\n\n"))
    return np.stack([lines, paragraphs], axis=1)


def ngram_repetition(texts: pl.Series) -> np.ndarray:
    """Straightforward per-text Python: every n-gram as a tuple of words (slow, obviously right)."""
    out = np.zeros((len(texts), 9))
    for row, text in enumerate(texts.fill_null("").to_list()):
        words = pl.Series([text]).str.extract_all(r"\S+").explode().drop_nulls().to_list()
        chars = [len(word) for word in words]
        total = sum(chars)
        if total == 0:
            continue
        for n in range(2, 11):
            grams: dict[tuple[str, ...], list[int]] = {}
            for i in range(len(words) - n + 1):
                grams.setdefault(tuple(words[i : i + n]), []).append(i)
            repeated = {gram: starts for gram, starts in grams.items() if len(starts) > 1}
            if n <= 4:
                best = max(((len(starts), sum(chars[starts[0] : starts[0] + n])) for starts in repeated.values()), default=(0, 0))
                out[row, n - 2] = best[0] * best[1] / total
            else:
                covered = {i + j for starts in repeated.values() for i in starts for j in range(n)}
                out[row, n - 2] = sum(chars[i] for i in covered) / total
    return out
