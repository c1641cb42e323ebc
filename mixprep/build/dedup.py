"""Deduplication across all sources of a mixture: exact (normalized text) or near (MinHash LSH).

Scan tasks compute a fingerprint per kept record (`fingerprints`): the xxh3 hash
of the normalized text (lowercased, whitespace collapsed) for `exact`, or the
LSH band hashes of its datasketch MinHash for `near`. The driver (`duplicates`)
groups records whose fingerprints collide (exact: equal hash; near: any equal
band, joined transitively) and keeps, in each group, the record with the smallest
seeded hash: which copy survives depends on the seed, never on worker order.
"""
from __future__ import annotations

import functools
from collections.abc import Iterator

import numba
import numpy as np
import polars as pl
import xxhash

import mixprep.numba_cache  # noqa: F401 - a writable kernel cache before the first @njit(cache=True)
from mixprep.build.hashing import derive
from mixprep.build.minhash import band_hashes, signatures
from mixprep.config.schema import DedupSpec


def fingerprint_width(spec: DedupSpec) -> int:
    """Fingerprints per record: 1 for exact, one per LSH band for near."""
    return 1 if spec.method == "exact" else lsh_bands(spec)[0]


@functools.lru_cache(maxsize=64)
def lsh_bands(spec: DedupSpec) -> tuple[int, int]:
    """(bands, rows per band) that datasketch's LSH picks for this threshold and num_perm."""
    from datasketch import MinHashLSH

    lsh = MinHashLSH(threshold=spec.threshold, num_perm=spec.num_perm)
    return lsh.b, lsh.r


def normalized(texts: pl.Series) -> pl.Series:
    return texts.str.to_lowercase().str.replace_all(r"\s+", " ").str.strip_chars()


def fingerprints(texts: pl.Series, spec: DedupSpec, seed: int) -> np.ndarray:
    """exact: (n,) uint64 content hashes; near: (n, bands) uint64 LSH band hashes."""
    if spec.method == "exact":
        norm = normalized(texts).to_list()
        return np.fromiter((xxhash.xxh3_64_intdigest(t.encode()) for t in norm), dtype=np.uint64, count=len(norm))
    bands, rows = lsh_bands(spec)
    return band_hashes(signatures(texts.str.to_lowercase(), spec.ngram, spec.num_perm, seed), bands, rows)


def duplicates(prints: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """Boolean mask of records to drop: all but the seeded survivor of each duplicate group."""
    n = len(keys)
    if n == 0:
        return np.zeros(0, dtype=bool)
    return all_but_survivors(fingerprint_groups(prints.reshape(n, -1)), keys)


def all_but_survivors(labels: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """Boolean mask: every record but one per label, the survivor chosen by the seeded keys."""
    n = len(keys)
    tie = derive(keys, "dedup")
    order = np.lexsort((np.arange(n), tie, labels))
    first = np.ones(n, dtype=bool)
    first[1:] = labels[order][1:] != labels[order][:-1]
    drop = np.ones(n, dtype=bool)
    drop[order[first]] = False
    return drop


def fingerprint_groups(prints: np.ndarray) -> np.ndarray:
    """Connected components of 'shares any column value', as a label per row."""
    return groups_by_columns(len(prints), iter(prints.T))


def groups_by_columns(n: int, columns: Iterator[np.ndarray]) -> np.ndarray:
    """Connected components of n records, two joined when they share a value in any column,
    as the smallest record index of each component (columns of all n, one at a time)."""
    return groups_by_shards(n, ((column, None) for column in columns))


def groups_by_shards(n: int, shards: Iterator[tuple[np.ndarray, np.ndarray | None]]) -> np.ndarray:
    """`groups_by_columns` from pieces of columns: each shard is (values, record indices;
    None: 0..len-1) and holds every occurrence of its values within its column (the driver
    cuts each LSH band by the values' top bits), so equal values always meet in one shard.
    The components, and so the labels, do not depend on how the columns were cut; memory is
    the labels (8 bytes a record) plus one shard at a time."""
    labels = np.arange(n, dtype=np.int64)
    for values, index in shards:
        order = np.argsort(values, kind="stable")
        ordered = values[order]
        same = ordered[1:] == ordered[:-1]
        del ordered
        if same.any():
            left, right = order[:-1][same], order[1:][same]
            if index is not None:
                left, right = index[left], index[right]
            _join(labels, left, right)
    _flatten(labels)
    return labels


@numba.njit(cache=True, nogil=True)
def _join(labels: np.ndarray, left: np.ndarray, right: np.ndarray) -> None:
    """Union-find over the pairs, in place: each root is its component's smallest index, so
    a record's parent is never above it (and `_flatten` can finish in one forward pass).
    No temporary of n: memory is the labels alone."""
    for k in range(len(left)):
        a, b = _root(labels, left[k]), _root(labels, right[k])
        if a < b:
            labels[b] = a
        elif b < a:
            labels[a] = b


@numba.njit(cache=True, nogil=True, inline="always")
def _root(labels: np.ndarray, x: int) -> int:
    root = x
    while labels[root] != root:
        root = labels[root]
    while labels[x] != root:  # path compression
        labels[x], x = root, labels[x]
    return root


@numba.njit(cache=True, nogil=True)
def _flatten(labels: np.ndarray) -> None:
    """Every record pointing at its root (parents come before children: one pass in order)."""
    for i in range(len(labels)):
        labels[i] = labels[labels[i]]
