"""Apply a filter chain to a record batch: keep masks, removal reasons, kept features.

`filter_batch` evaluates a whole batch and blames each removed record on the *first*
filter (in config order) that rejects it, so the per-reason counts add up to the
number removed. Costly features (repetition statistics, language, tokens) are
computed only on the rows that no earlier filter has already removed: exactly the
same blame, less work. Features the build also writes out (`annotate_language`) are
handed back for the kept rows, from the filter that computed them where there is one.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import polars as pl

from mixprep.filters.registry import FILTERS, TEXT, Feature, FilterChain

if TYPE_CHECKING:
    from mixprep.filters.textstats import TextBatch


# -- evaluation ---------------------------------------------------------------

@dataclass(frozen=True)
class _GroupPlan:
    """What `_keep_masks` evaluates for some filters of a chain, built once per chain."""

    keeps: list[pl.Expr]
    """Per filter: whether it keeps a text, as column f"_{i}"."""
    expressions: dict[str, pl.Expr]
    """Features that are polars expressions, by name."""
    computed: dict[str, Feature]
    """Features a compiled kernel computes, by name."""
    reads_text: bool
    """Whether an expression reads the text column itself."""


@functools.lru_cache(maxsize=256)
def _group_plan(chain: FilterChain, indices: tuple[int, ...]) -> _GroupPlan:
    features: dict[str, Feature] = {}
    for i in indices:
        name, threshold = chain[i]
        for feature in FILTERS[name].needs(threshold):
            features.setdefault(feature.name, feature)
    keeps = [FILTERS[chain[i][0]].keep(chain[i][1]).fill_null(False).alias(f"_{i}") for i in indices]
    expressions = {name: feature.build().alias(name) for name, feature in features.items() if feature.build}
    return _GroupPlan(
        keeps=keeps,
        expressions=expressions,
        computed={name: feature for name, feature in features.items() if feature.compute},
        reads_text=bool(expressions) or any(TEXT in keep.meta.root_names() for keep in keeps),
    )


def _keep_masks(batch: TextBatch, chain: FilterChain, indices: list[int], rows: np.ndarray) -> pl.DataFrame:
    """Column f"_{i}" per filter i of `indices`: whether it keeps each text of `rows`; and
    the compiled feature columns it read, for `filter_batch` to hand on."""
    plan = _group_plan(chain, tuple(indices))
    columns = [feature.compute(batch, rows).alias(name) for name, feature in plan.computed.items()]
    if plan.reads_text:
        columns.insert(0, batch.texts_at(rows).alias(TEXT))
    frame = pl.DataFrame(columns) if columns else pl.DataFrame({"_row": rows})
    # with_columns, not select: a filter switched off (`drop_curly_brace: false`) is a
    # literal, which select would leave as one row. One query, so one plan per batch.
    return (
        frame.lazy()
        .with_columns(list(plan.expressions.values()))
        .with_columns(plan.keeps)
        .select([f"_{i}" for i in indices] + list(plan.computed))
        .collect()
    )


def _costly_groups(chain: FilterChain) -> tuple[list[int], dict[str, list[int]]]:
    """Split filter indices into the cheap ones and groups sharing one costly feature."""
    cheap: list[int] = []
    costly: dict[str, list[int]] = {}
    for i, (name, threshold) in enumerate(chain):
        heavy = [feature.name for feature in FILTERS[name].needs(threshold) if feature.costly]
        if heavy:
            costly.setdefault(heavy[0], []).append(i)
        else:
            cheap.append(i)
    return cheap, costly


@dataclass(frozen=True)
class Verdict:
    reasons: np.ndarray
    """int16 per row: 0 when every filter keeps it, else 1 + index of the first filter that removes it."""
    kept_features: dict[str, pl.Series]
    """Per feature asked for: its value for each kept row (reasons == 0), in row order."""
    computed: dict[str, tuple[np.ndarray, pl.Series]]
    """Per costly or compiled feature the filters computed: (rows, values), rows ascending."""


def removal_reasons(texts: pl.Series, chain: FilterChain) -> np.ndarray:
    """Per row: 0 when every filter keeps it, else 1 + index of the first filter that removes it."""
    return filter_batch(texts, chain).reasons


def filter_batch(
    texts: pl.Series, chain: FilterChain, wanted: tuple[Feature, ...] = (), buffers: tuple[np.ndarray, np.ndarray] | None = None
) -> Verdict:
    """Blame per row, and the `wanted` features of the rows kept. A wanted feature that a
    filter already computed (every kept row passed that filter, so it was computed for all
    of them) is taken from there; any other is computed for the kept rows only. `buffers`:
    the texts in the compiled kernels' layout where the caller has them (see `TextBatch`)."""
    from mixprep.filters.textstats import TextBatch

    n = len(texts)
    batch = TextBatch(texts, buffers)
    # blame[row] = index of the first failing filter found so far; len(chain) = none.
    blame = np.full(n, len(chain), dtype=np.int32)
    computed: dict[str, tuple[np.ndarray, pl.Series]] = {}  # feature -> (rows, values)
    cheap, costly = _costly_groups(chain)
    groups = ([cheap] if cheap else []) + list(costly.values())
    for members in groups:
        # Rows already blamed on an earlier filter cannot change blame: a costly feature
        # reads only the others (in place, from the batch's shared buffer).
        rows = np.arange(n, dtype=np.int64) if members is cheap else np.flatnonzero(blame > members[0])
        if len(rows) == 0:
            continue
        masks = _keep_masks(batch, chain, members, rows)
        for i in members:
            removed = rows[~masks.get_column(f"_{i}").to_numpy()]
            blame[removed] = np.minimum(blame[removed], i)
        for column in masks.columns[len(members):]:
            computed[column] = (rows, masks.get_column(column))
    kept = np.flatnonzero(blame == len(chain))
    kept_features = {}
    for feature in wanted:
        if feature.name in computed:
            rows, values = computed[feature.name]
            kept_features[feature.name] = values.gather(np.searchsorted(rows, kept))
        elif feature.compute is not None:
            kept_features[feature.name] = feature.compute(batch, kept)
        else:
            kept_features[feature.name] = pl.DataFrame({TEXT: batch.texts_at(kept)}).select(feature.build()).to_series()
    return Verdict(np.where(blame == len(chain), 0, blame + 1).astype(np.int16), kept_features, computed)
