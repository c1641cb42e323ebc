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

import numpy as np
import polars as pl
import xxhash

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
    as the smallest record index of each component. Columns come one at a time (the driver
    reads each LSH band from the scan files on its own), so memory is a few arrays of n,
    never all bands at once."""
    labels = np.arange(n, dtype=np.int64)
    for column in columns:
        order = np.argsort(column, kind="stable")
        ordered = column[order]
        same = ordered[1:] == ordered[:-1]
        del ordered
        if same.any():
            labels = _joined(labels, order[:-1][same], order[1:][same])
    return labels


def _joined(labels: np.ndarray, left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """`labels` (each row pointing at its component's smallest index) after joining the pairs."""
    while True:
        roots_left, roots_right = labels[left], labels[right]
        differ = roots_left != roots_right
        if not differ.any():
            return labels
        roots_left, roots_right = roots_left[differ], roots_right[differ]
        low = np.minimum(roots_left, roots_right)
        np.minimum.at(labels, roots_left, low)
        np.minimum.at(labels, roots_right, low)
        while True:  # pointer jumping until every row points at a root again
            jumped = labels[labels]
            if np.array_equal(jumped, labels):
                break
            labels = jumped
