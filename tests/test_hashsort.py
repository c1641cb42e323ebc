"""The driver's sort of 64-bit hashes (build/hashsort.py) is numpy's stable argsort, faster:
same order for uniform hashes, ties, keys that crowd one bucket, and any size."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mixprep.build.hashsort import SMALL, load_kernel, stable_argsort
from mixprep.build.sampler import bottom_k


def numpy_order(keys: np.ndarray) -> np.ndarray:
    return np.argsort(keys, kind="stable")


@pytest.mark.parametrize("n", [0, 1, SMALL - 1, SMALL, SMALL + 1, 50_000])
def test_uniform_hashes_with_ties_sort_as_numpy_sorts_them(n: int) -> None:
    rng = np.random.default_rng(n)
    keys = rng.integers(0, np.iinfo(np.uint64).max, n, dtype=np.uint64, endpoint=True)
    if n:
        keys[rng.integers(0, n, n // 5)] = keys[rng.integers(0, n, n // 5)]  # equal keys: input order decides
    order = stable_argsort(keys)
    assert order.dtype == np.int64
    assert np.array_equal(order, numpy_order(keys))


@pytest.mark.parametrize(
    "make",
    [
        lambda rng, n: rng.integers(0, 4, n).astype(np.uint64),  # a few values: buckets of thousands
        lambda rng, n: rng.integers(0, 1 << 20, n).astype(np.uint64),  # small keys: all in bucket 0
        lambda rng, n: (np.uint64(0xFFFF) << np.uint64(48)) | rng.integers(0, 1 << 40, n).astype(np.uint64),  # one top
        lambda rng, n: np.full(n, 7, dtype=np.uint64),
        lambda rng, n: np.arange(n, dtype=np.uint64)[::-1].copy(),
    ],
)
def test_keys_that_are_not_hashes_still_sort_correctly(make) -> None:  # type: ignore[no-untyped-def]
    keys = make(np.random.default_rng(0), 20_000)
    assert np.array_equal(stable_argsort(keys), numpy_order(keys))


def test_read_only_and_strided_keys_are_accepted_and_left_as_they_were() -> None:
    keys = np.random.default_rng(1).integers(0, 1 << 63, 40_000).astype(np.uint64)
    before = keys.copy()
    keys.flags.writeable = False
    assert np.array_equal(stable_argsort(keys), numpy_order(keys))
    assert np.array_equal(stable_argsort(before[::2]), numpy_order(before[::2]))
    assert np.array_equal(keys, before)


@settings(max_examples=60, deadline=None)
@given(values=st.lists(st.integers(0, (1 << 64) - 1), min_size=1, max_size=200), size=st.integers(SMALL, SMALL + 500))
def test_any_keys_sort_as_numpy_sorts_them(values: list[int], size: int) -> None:
    keys = np.resize(np.array(values, dtype=np.uint64), size)  # the values over and over: every key has equals
    assert np.array_equal(stable_argsort(keys), numpy_order(keys))


def test_bottom_k_keeps_only_k_indices() -> None:
    keys = np.random.default_rng(2).integers(0, 1 << 63, 100_000).astype(np.uint64)
    chosen = bottom_k(keys, 10)
    assert np.array_equal(chosen, numpy_order(keys)[:10])
    assert chosen.base is None or chosen.base.size == 10  # not a view that keeps all 100,000 alive


def test_the_drivers_warm_up_call_sorts() -> None:
    load_kernel()  # asserts its own result: a warm-up that broke would fail here, not hide in a thread


def test_a_warm_up_that_fails_on_its_thread_is_silent(monkeypatch: pytest.MonkeyPatch) -> None:
    """The driver's head start runs on a thread: an error there must not print a traceback
    (the build's own first call reports it)."""
    import threading

    from mixprep.build import hashsort

    def broken() -> None:
        msg = "kernel cache unreadable"
        raise RuntimeError(msg)

    monkeypatch.setattr(hashsort, "load_kernel", broken)
    uncaught: list[object] = []
    monkeypatch.setattr(threading, "excepthook", uncaught.append)
    hashsort.start_loading_kernel()
    for thread in threading.enumerate():
        if thread.name == "mixprep-load-sort":
            thread.join()
    assert uncaught == []
