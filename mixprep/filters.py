"""Filter specs -> vectorized polars expressions, through one registry dict.

A filter is a name in a mixture (`filters: {min_chars: 20}`) mapped to a
`FilterDef`: a threshold validator and a builder that turns the threshold into a
boolean polars expression over the column `text` (True = keep). The engine
evaluates every expression on a whole record batch at once and blames each
removed record on the *first* filter (in config order) that rejects it, so the
per-reason counts add up to the number removed.

Extend by adding entries to `FILTERS` (see `register`).
"""
from __future__ import annotations

import difflib
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl

TEXT = "text"

# Whitespace-separated words, the definition Gopher and C4 use for counting.
WORD_PATTERN = r"\S+"


@dataclass(frozen=True)
class FilterDef:
    name: str
    parse: Callable[[Any], Any]
    """Validates a threshold from YAML; raises ValueError with what is accepted."""
    keep: Callable[[Any], pl.Expr]
    """Threshold -> boolean expression over `pl.col(TEXT)`; True keeps the record."""
    doc: str


FILTERS: dict[str, FilterDef] = {}


def register(name: str, parse: Callable[[Any], Any], doc: str) -> Callable[[Callable[[Any], pl.Expr]], Callable[[Any], pl.Expr]]:
    def wrap(keep: Callable[[Any], pl.Expr]) -> Callable[[Any], pl.Expr]:
        FILTERS[name] = FilterDef(name=name, parse=parse, keep=keep, doc=doc)
        return keep

    return wrap


# -- threshold validators --------------------------------------------------

def non_negative_int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"expected a non-negative integer, got {value!r}")
    return value


def non_negative_number(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise ValueError(f"expected a non-negative number, got {value!r}")
    return float(value)


def fraction(value: Any) -> float:
    number = non_negative_number(value)
    if number > 1:
        raise ValueError(f"expected a fraction between 0 and 1, got {value!r}")
    return number


def flag(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"expected true or false, got {value!r}")
    return value


# -- length filters -------------------------------------------------------

def char_count() -> pl.Expr:
    return pl.col(TEXT).str.len_chars()


def word_count() -> pl.Expr:
    return pl.col(TEXT).str.count_matches(WORD_PATTERN)


@register("min_chars", non_negative_int, "drop texts with fewer than N characters")
def _min_chars(n: int) -> pl.Expr:
    return char_count() >= n


@register("max_chars", non_negative_int, "drop texts with more than N characters")
def _max_chars(n: int) -> pl.Expr:
    return char_count() <= n


@register("min_words", non_negative_int, "drop texts with fewer than N whitespace-separated words")
def _min_words(n: int) -> pl.Expr:
    return word_count() >= n


@register("max_words", non_negative_int, "drop texts with more than N whitespace-separated words")
def _max_words(n: int) -> pl.Expr:
    return word_count() <= n


# -- config-time parsing ----------------------------------------------------

FilterChain = tuple[tuple[str, Any], ...]
"""Validated filters in config order: ((name, threshold), ...)."""


def parse_filters(raw: Mapping[str, Any], key_path: str) -> tuple[FilterChain, list[str]]:
    """Validate a `filters:` mapping. Returns the chain and every problem found."""
    chain: list[tuple[str, Any]] = []
    problems: list[str] = []
    for name, value in raw.items():
        spec = FILTERS.get(name)
        if spec is None:
            hint = difflib.get_close_matches(str(name), FILTERS, n=1)
            did_you_mean = f" (did you mean {hint[0]!r}?)" if hint else ""
            problems.append(
                f"{key_path}.{name}: unknown filter{did_you_mean}; valid filters: {', '.join(sorted(FILTERS))}"
            )
            continue
        try:
            chain.append((name, spec.parse(value)))
        except ValueError as exc:
            problems.append(f"{key_path}.{name}: {exc}")
    return tuple(chain), problems


def merge_chains(global_chain: FilterChain, local_chain: FilterChain) -> FilterChain:
    """Global filters first, then per-dataset ones; a per-dataset threshold wins."""
    local = dict(local_chain)
    merged = [(name, local.pop(name) if name in local else value) for name, value in global_chain]
    merged.extend((name, value) for name, value in local_chain if name in local)
    return tuple(merged)


# -- evaluation ---------------------------------------------------------------

def removal_reasons(texts: pl.Series, chain: FilterChain) -> np.ndarray:
    """Per row: 0 when every filter keeps it, else 1 + index of the first filter that removes it."""
    n = len(texts)
    reasons = np.zeros(n, dtype=np.int16)
    if not chain or n == 0:
        return reasons
    frame = pl.DataFrame({TEXT: texts})
    masks = frame.select(
        [FILTERS[name].keep(value).fill_null(False).alias(f"_{i}") for i, (name, value) in enumerate(chain)]
    )
    # Walk filters last to first so the earliest failing filter is the one left standing.
    for i in range(len(chain) - 1, -1, -1):
        removed = ~masks.get_column(f"_{i}").to_numpy()
        reasons[removed] = i + 1
    return reasons
