"""The filter registry: names -> `FilterDef`, and the per-batch `Feature`s they read.

A filter is a name in a mixture (`filters: {min_words: 50}`) mapped to a `FilterDef`:
a threshold validator and a builder that turns the threshold into a boolean polars
expression (True = keep). The expression reads the column `text` and the *feature*
columns the filter declares (`needs`): per-text statistics such as the word count,
computed once per batch however many filters share them. Features are native polars
expressions (character count) or one call into compiled code over the batch's shared
buffers (`compute`). Rules register themselves with `register` (see `rules`).
"""
from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl

if TYPE_CHECKING:
    from mixprep.filters.textstats import TextBatch


TEXT = "text"


@dataclass(frozen=True)
class Feature:
    """A per-text statistic that filters share: computed once per batch as column `name`.

    Either a native polars expression (`build`) or a function over the batch's shared
    buffers (`compute`: compiled kernels, a tokenizer) that is given the rows to compute.
    """

    name: str
    build: Callable[[], pl.Expr] | None = None
    """-> expression over `pl.col(TEXT)`, one value per text."""
    compute: Callable[[TextBatch, np.ndarray], pl.Series] | None = None
    """(batch, rows) -> one value per row, in the order of `rows`."""
    costly: bool = False
    """True for work worth skipping: evaluated only on the rows that no earlier filter removed."""

    def __post_init__(self) -> None:
        if (self.build is None) == (self.compute is None):
            msg = f"feature {self.name!r} needs exactly one of build (a polars expression) or compute"
            raise ValueError(msg)


def no_features(threshold: Any) -> tuple[Feature, ...]:
    return ()


@dataclass(frozen=True)
class FilterDef:
    name: str
    parse: Callable[[Any], Any]
    """Validates a threshold from YAML; raises ValueError with what is accepted."""
    keep: Callable[[Any], pl.Expr]
    """Threshold -> boolean expression over `pl.col(TEXT)` and the `needs` columns; True keeps."""
    doc: str
    needs: Callable[[Any], tuple[Feature, ...]] = no_features
    """Threshold -> the feature columns `keep` reads (at most one of them costly)."""


FILTERS: dict[str, FilterDef] = {}


def register(
    name: str,
    parse: Callable[[Any], Any],
    doc: str,
    needs: tuple[Feature, ...] | Callable[[Any], tuple[Feature, ...]] = (),
) -> Callable[[Callable[[Any], pl.Expr]], Callable[[Any], pl.Expr]]:
    needs_of = needs if callable(needs) else (lambda _threshold, fixed=tuple(needs): fixed)

    def wrap(keep: Callable[[Any], pl.Expr]) -> Callable[[Any], pl.Expr]:
        FILTERS[name] = FilterDef(name=name, parse=parse, keep=keep, doc=doc, needs=needs_of)
        return keep

    return wrap


# -- threshold validators --------------------------------------------------

def non_negative_int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        msg = f"expected a non-negative integer, got {value!r}"
        raise ValueError(msg)
    return value


def non_negative_number(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        msg = f"expected a non-negative number, got {value!r}"
        raise ValueError(msg)
    return float(value)


def fraction(value: Any) -> float:
    number = non_negative_number(value)
    if number > 1:
        msg = f"expected a fraction between 0 and 1, got {value!r}"
        raise ValueError(msg)
    return number


def flag(value: Any) -> bool:
    if not isinstance(value, bool):
        msg = f"expected true or false, got {value!r}"
        raise ValueError(msg)
    return value


def fractions_by_size(sizes: tuple[int, ...]) -> Callable[[Any], tuple[tuple[int, float], ...]]:
    """One fraction for every n-gram size, or a mapping {n: fraction} over some of `sizes`."""
    accepted = f"a fraction between 0 and 1, or a mapping {{n: fraction}} with n in {sizes[0]}..{sizes[-1]}"

    def parse(value: Any) -> tuple[tuple[int, float], ...]:
        if isinstance(value, Mapping):
            if not value:
                msg = f"expected {accepted}, got an empty mapping"
                raise ValueError(msg)
            pairs = []
            for size, limit in value.items():
                if isinstance(size, bool) or size not in sizes:
                    msg = f"n-gram size {size!r} is not accepted; expected {accepted}"
                    raise ValueError(msg)
                try:
                    pairs.append((size, fraction(limit)))
                except ValueError as exc:
                    msg = f"n-gram size {size}: {exc}"
                    raise ValueError(msg) from None
            return tuple(sorted(pairs))
        try:
            limit = fraction(value)
        except ValueError:
            msg = f"expected {accepted}, got {value!r}"
            raise ValueError(msg) from None
        return tuple((size, limit) for size in sizes)

    return parse


def column(feature: Feature) -> pl.Expr:
    return pl.col(feature.name)


def ratio(numerator: pl.Expr, denominator: pl.Expr) -> pl.Expr:
    """numerator / denominator per text; 0 where the denominator is 0."""
    return pl.when(denominator > 0).then(numerator / denominator).otherwise(0.0)


# -- config-time parsing ----------------------------------------------------

FilterChain = tuple[tuple[str, Any], ...]
"""Validated filters in config order: ((name, threshold), ...)."""
