"""The `c4` filter: datatrove's C4QualityFilter as one rule with settings (`c4` computes it).

Light to import (no numba): the settings are parsed here, the kernel loads when a batch
first needs it. Its feature also carries each kept text cleaned, which the build writes.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl

from mixprep.filters.registry import Feature, column, flag, register

if TYPE_CHECKING:
    from mixprep.filters.textstats import TextBatch


# C4 as datatrove's C4QualityFilter: line cleaning plus document rules (`c4` defines them).
C4_SETTINGS = {
    "min_sentences": "drop documents with fewer than N sentences in their kept lines (-1: off)",
    "min_words_per_line": "remove lines with fewer than N whitespace-separated words (-1: off)",
    "max_word_length": "remove lines with a word longer than N characters (-1: off)",
    "remove_citations": "remove [12], [edit] and [citation needed] from lines",
    "terminal_punctuation": "remove lines that do not end in . ? ! \" ' or that end in ...",
    "lorem_ipsum": "drop documents with a kept line containing 'lorem ipsum'",
    "javascript": "remove lines containing 'javascript'",
    "curly_bracket": "drop documents with a kept line containing '{'",
    "policy": "remove lines about terms of use, privacy or cookie policies, cookies",
}


def parse_c4(value: Any) -> Any:
    from mixprep.filters.c4 import C4Spec  # light: numba compiles only when a kernel runs

    if value is True or value == "datatrove":
        return C4Spec()
    if value is False:  # switched off, like the other flags (a global c4 turned off for one source)
        return None
    if not isinstance(value, Mapping):
        msg = "expected true (datatrove's defaults), false, or a mapping of settings: " + ", ".join(C4_SETTINGS)
        raise ValueError(msg)
    unknown = [str(key) for key in value if key not in C4_SETTINGS]
    if unknown:
        msg = f"unknown c4 setting(s) {', '.join(map(repr, unknown))}; valid: {', '.join(C4_SETTINGS)}"
        raise ValueError(msg)
    settings = {}
    for key, setting in value.items():
        default = getattr(C4Spec(), key)
        if isinstance(default, bool):
            try:
                settings[key] = flag(setting)
            except ValueError as exc:
                msg = f"{key}: {exc}"
                raise ValueError(msg) from None
        elif isinstance(setting, bool) or not isinstance(setting, int) or setting < -1:
            msg = f"{key}: expected a whole number (-1 switches it off), got {setting!r}"
            raise ValueError(msg)
        else:
            settings[key] = setting
    return C4Spec(**settings)


def c4_feature(spec: Any) -> Feature:
    """C4's verdict, sentence and line counts and cleaned text per row, as one struct column."""

    def cleaned(batch: TextBatch, rows: np.ndarray) -> pl.Series:
        from mixprep.filters.c4 import LINE_FIELDS, clean

        counts, texts = clean(batch, spec, rows)
        columns = {"reason": counts[:, 0], "sentences": counts[:, 1]}
        columns.update({name: counts[:, 2 + i] for i, name in enumerate(LINE_FIELDS)})
        return pl.DataFrame({**columns, "text": texts}).to_struct()

    return Feature(f"__c4[{spec}]", compute=cleaned, costly=True)


def _c4_needs(spec: Any) -> tuple[Feature, ...]:
    return () if spec is None else (c4_feature(spec),)


@register("c4", parse_c4,
          "C4 as datatrove applies it: remove lines (no terminal punctuation, < 3 words, javascript, policies, "
          "a word > 1000 characters; citations cut), drop documents with < 5 sentences left, 'lorem ipsum' or '{'; "
          "kept documents are written cleaned", needs=_c4_needs)
def _c4(spec: Any) -> pl.Expr:
    return pl.lit(True) if spec is None else column(c4_feature(spec)).struct.field("reason") == 0
