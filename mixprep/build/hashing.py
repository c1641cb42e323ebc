"""Stable 64-bit hashing: the root of every random choice a build makes.

A record's identity key is a splitmix64 mix of its position and its file's seeded
xxhash (see `scan.file_key`); `derive` salts it per purpose (validation, cap, select,
shuffle, dedup) so the choices are independent of each other. Nothing uses Python's
`hash()` or polars' `.hash()`, whose values change across runs or versions.
"""
from __future__ import annotations

import numpy as np
import xxhash

GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def splitmix64(x: np.ndarray) -> np.ndarray:
    """The splitmix64 finalizer, vectorized; a stable 64-bit mix across versions and platforms."""
    with np.errstate(over="ignore"):
        z = np.asarray(x, dtype=np.uint64) + GOLDEN
        z = (z ^ (z >> np.uint64(30))) * _MIX1
        z = (z ^ (z >> np.uint64(27))) * _MIX2
        return z ^ (z >> np.uint64(31))


def _salt(purpose: str) -> np.uint64:
    return np.uint64(xxhash.xxh64_intdigest(purpose.encode()))


SALTS = {name: _salt(name) for name in ("validation", "cap", "select", "shuffle", "dedup")}


def derive(keys: np.ndarray, purpose: str) -> np.ndarray:
    return splitmix64(keys ^ SALTS[purpose])


_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)
