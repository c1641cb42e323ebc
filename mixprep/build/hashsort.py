"""Stable argsort of 64-bit hashes: one pass into buckets by their top bits, compiled.

Every choice the driver makes between the scan and the write stage is a sort of 64-bit
hashes (`sampler.bottom_k`: validation hold-out, caps, selection; `shuffle.final_order`:
the global shuffle), and the pool's workers wait for them. numpy's stable argsort of
uint64 is a merge sort: 0.14 s for 1.4 M keys and 0.80 s for 5.7 M on the development
machine, O(n log n), two or three of them per build. Hashes are uniform, so their top
bits spread them evenly over ~n/8 buckets: one counting pass and one scatter put every
key in its bucket, in input order, and an insertion sort per bucket of ~8 keys finishes
the job (0.03-0.04 s and 0.23-0.27 s). A bucket that holds more than `INSERTION_MAX`
keys (keys that are not hashes) is merge-sorted instead, so any keys sort correctly.
The order is exactly numpy's stable one: equal keys keep their input order.
"""
from __future__ import annotations

import contextlib
import threading

import numba
import numpy as np

import mixprep.numba_cache  # noqa: F401 - a writable kernel cache before the first @njit(cache=True)
from mixprep.build.hashing import derive

KEYS_PER_BUCKET = 8
"""How many keys a bucket holds on average: 8-16 measured fastest (fewer buckets make longer
insertion sorts, more make the scatter miss the cache)."""

INSERTION_MAX = 64
"""Larger buckets are merge-sorted."""

SMALL = 4096
"""Below this many keys numpy's own sort is as fast."""


def stable_argsort(keys: np.ndarray) -> np.ndarray:
    """`np.argsort(keys, kind="stable")` of uint64 keys, as int64 indices."""
    keys = np.ascontiguousarray(keys, dtype=np.uint64)
    if len(keys) < SMALL:
        return np.argsort(keys, kind="stable")
    bits = int(np.clip(np.ceil(np.log2(len(keys) / KEYS_PER_BUCKET)), 8, 22))
    return _bucket_argsort(keys, bits)


def load_kernel() -> None:
    """Call this kernel and the hash mix once, so that selection does not wait for them to
    load (a process's first compiled call starts numba's code generator: ~0.3 s, which the
    driver spends while it waits for its workers to start and to scan)."""
    keys = derive(np.arange(SMALL, dtype=np.uint64), "shuffle")
    assert np.array_equal(stable_argsort(keys), np.argsort(keys, kind="stable")), "sorted as numpy sorts"


def start_loading_kernel() -> None:
    """`load_kernel` on a daemon thread. An error there is dropped: the first real call
    reports it, as it would without this head start (a thread would print a traceback)."""

    def load() -> None:
        with contextlib.suppress(Exception):
            load_kernel()

    threading.Thread(target=load, name="mixprep-load-sort", daemon=True).start()


@numba.njit(cache=True, nogil=True)
def _bucket_argsort(keys: np.ndarray, bits: int) -> np.ndarray:
    n = len(keys)
    shift = np.uint64(64 - bits)
    starts = np.zeros((1 << bits) + 1, dtype=np.int64)
    for i in range(n):
        starts[(keys[i] >> shift) + 1] += 1
    for bucket in range(1 << bits):
        starts[bucket + 1] += starts[bucket]
    fill = starts[:-1].copy()
    ordered = np.empty(n, dtype=np.uint64)  # the keys in bucket order, then sorted order
    order = np.empty(n, dtype=np.int64)
    for i in range(n):  # in input order: each bucket starts out stable
        key = keys[i]
        bucket = key >> shift
        slot = fill[bucket]
        fill[bucket] = slot + 1
        ordered[slot] = key
        order[slot] = i
    for bucket in range(1 << bits):
        low, high = starts[bucket], starts[bucket + 1]
        if high - low <= INSERTION_MAX:
            for i in range(low + 1, high):
                key, position = ordered[i], order[i]
                j = i
                while j > low and ordered[j - 1] > key:  # strictly greater: equal keys stay in order
                    ordered[j] = ordered[j - 1]
                    order[j] = order[j - 1]
                    j -= 1
                ordered[j] = key
                order[j] = position
        else:
            within = np.argsort(ordered[low:high], kind="mergesort")
            ordered[low:high] = ordered[low:high][within]
            order[low:high] = order[low:high][within]
    return order
