"""The columns the compiled statistics produce, and the word lists they use.

Owned here, apart from the kernels, so that the rules can name a statistic and the
config can be parsed without loading numba.
"""
from __future__ import annotations

GOPHER_STOP_WORDS = ("the", "be", "to", "of", "and", "that", "have", "with")
TOP_NGRAM_SIZES = (2, 3, 4)
DUPLICATE_NGRAM_SIZES = (5, 6, 7, 8, 9, 10)


QUALITY_FIELDS = (
    "words", "word_chars", "tokens", "hashes", "ellipses", "lines", "bullet_lines", "ellipsis_lines", "terminal_lines",
    "alpha_words", "stop_words",
)
REPETITION_FIELDS = (
    "paragraph", "paragraph_chars", "line", "line_chars",
    *[f"top_{n}" for n in TOP_NGRAM_SIZES], *[f"duplicate_{n}" for n in DUPLICATE_NGRAM_SIZES],
)
REFERENCE = "datatrove 0.10.1"
"""Whose definitions `quality: gopher`, `repetition: gopher` and `c4` reproduce (recorded in the manifest)."""


# -- language ---------------------------------------------------------------------

LANGUAGE_PREFIX_BYTES = 512
"""Bytes of each text the language identifier reads unless `language_prefix_bytes` says otherwise."""
