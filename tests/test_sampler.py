"""Sampling semantics (DESIGN §2, §3): exact quotas, exact selection counts,
wraparound repeat counts, and selections that depend on record identity only."""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from mixprep.build.hashing import splitmix64
from mixprep.build.sampler import (
    Quota,
    SourceCounts,
    bottom_k,
    choose,
    largest_remainder,
    plan_quotas,
    select,
    shuffle_keys,
    validation_shares,
)

FAST = settings(max_examples=60, deadline=None)

ratios_strategy = st.lists(st.floats(0, 1, allow_nan=False, allow_infinity=False), min_size=1, max_size=8).filter(
    lambda r: math.fsum(r) > 1e-9
)


def keys_for(n: int, seed: int = 0) -> np.ndarray:
    return splitmix64(np.arange(n, dtype=np.uint64) + np.uint64(seed) * np.uint64(1_000_003))


def test_splitmix64_is_the_reference_finalizer() -> None:
    # splitmix64's first output from state 0 (Vigna's reference); pins stability across versions.
    assert int(splitmix64(np.array([0], dtype=np.uint64))[0]) == 0xE220A8397B1DCDAF


def reference_splitmix64(x: int) -> int:
    mask = (1 << 64) - 1
    z = (x + 0x9E3779B97F4A7C15) & mask
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & mask
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & mask
    return z ^ (z >> 31)


@FAST
@given(values=st.lists(st.integers(0, (1 << 64) - 1), min_size=1, max_size=50))
def test_splitmix64_and_derive_wrap_as_python_integers_do(values: list[int]) -> None:
    from mixprep.build.hashing import SALTS, derive

    keys = np.array(values, dtype=np.uint64)
    assert splitmix64(keys).tolist() == [reference_splitmix64(v) for v in values]
    assert derive(keys, "shuffle").tolist() == [reference_splitmix64(v ^ int(SALTS["shuffle"])) for v in values]
    square = np.resize(keys, (len(values), 2))[:, ::-1]  # 2-D and strided: same values, same shape
    assert splitmix64(square).tolist() == [[reference_splitmix64(int(v)) for v in row] for row in square]


@FAST
@given(ratios=ratios_strategy, total=st.integers(0, 10**7))
@example(ratios=[0.6, 0.4], total=80_000)
@example(ratios=[1 / 3, 1 / 3, 1 / 3], total=100)
def test_quotas_sum_exactly_to_total(ratios: list[float], total: int) -> None:
    shares = largest_remainder(ratios, total)
    assert sum(shares) == total
    weight = math.fsum(ratios)
    for ratio, share in zip(ratios, shares, strict=True):
        assert abs(share - ratio / weight * total) < 1 + 1e-6
        assert share >= 0


def test_seed_example_quotas() -> None:
    assert largest_remainder([0.6, 0.4], 80_000) == [48_000, 32_000]


def test_quota_ties_go_to_the_earlier_dataset() -> None:
    assert largest_remainder([1 / 3, 1 / 3, 1 / 3], 100) == [34, 33, 33]
    assert largest_remainder([0.5, 0.5], 3) == [2, 1]
    assert largest_remainder([0.25, 0.25, 0.25, 0.25], 2) == [1, 1, 0, 0]


@FAST
@given(n=st.integers(1, 400), quota=st.integers(0, 400), seed=st.integers(0, 2**32))
def test_selection_without_repeats_is_exact_and_unique(n: int, quota: int, seed: int) -> None:
    quota = min(quota, n)
    picked = select(keys_for(n, seed), quota)
    assert len(picked.rows) == quota
    assert picked.unique == quota  # no record twice
    assert picked.extra_copies == 0 and picked.repeated_records == 0
    assert np.all((picked.rows >= 0) & (picked.rows < n))


@FAST
@given(n=st.integers(1, 300), quota=st.integers(1, 3000), seed=st.integers(0, 2**32))
@example(n=30_000, quota=32_000, seed=42)
def test_wraparound_repeat_counts(n: int, quota: int, seed: int) -> None:
    picked = select(keys_for(n, seed), quota)
    assert len(picked.rows) == quota
    counts = np.bincount(picked.rows, minlength=n)
    full, remainder = divmod(quota, n)
    if quota >= n:
        # Every record ⌊quota/n⌋ times, exactly `remainder` of them once more.
        assert set(np.unique(counts).tolist()) <= {full, full + 1}
        assert int(np.count_nonzero(counts == full + 1)) == (remainder if full else quota)
        assert picked.unique == n
        assert picked.extra_copies == quota - n
    # Copy numbers count each record's copies 0, 1, 2, ...
    for row in np.flatnonzero(counts > 1)[:5]:
        assert sorted(picked.copies[picked.rows == row].tolist()) == list(range(counts[row]))


def test_remainder_copies_are_a_seeded_subset_not_the_first_records() -> None:
    n, quota = 1000, 1100
    extra_a = np.flatnonzero(np.bincount(select(keys_for(n, 1), quota).rows, minlength=n) == 2)
    extra_b = np.flatnonzero(np.bincount(select(keys_for(n, 2), quota).rows, minlength=n) == 2)
    assert len(extra_a) == len(extra_b) == 100
    assert not np.array_equal(extra_a, np.arange(100))
    assert not np.array_equal(extra_a, extra_b)
    assert extra_a.max() > 500  # spread over the whole source


@FAST
@given(
    n=st.integers(1, 500),
    k=st.integers(0, 500),
    cuts=st.lists(st.integers(0, 500), max_size=6),
    order_seed=st.integers(0, 1000),
)
def test_bottom_k_subset_is_independent_of_how_records_are_split_into_tasks(
    n: int, k: int, cuts: list[int], order_seed: int
) -> None:
    keys = keys_for(n)
    chosen = set(keys[select(keys, min(k, n)).rows].tolist())
    # Cut the same records into tasks at arbitrary points and concatenate the tasks in another order.
    bounds = sorted({0, n, *(c % (n + 1) for c in cuts)})
    pieces = [keys[lo:hi] for lo, hi in zip(bounds[:-1], bounds[1:], strict=True)]
    order = np.random.default_rng(order_seed).permutation(len(pieces))
    regrouped = np.concatenate([pieces[i] for i in order]) if pieces else keys
    assert set(regrouped[select(regrouped, min(k, n)).rows].tolist()) == chosen


def test_bottom_k_takes_smallest_hashes_stably() -> None:
    hashes = np.array([5, 1, 9, 1, 3], dtype=np.uint64)
    assert bottom_k(hashes, 3).tolist() == [1, 3, 4]
    assert bottom_k(hashes, 0).tolist() == []


def test_copies_of_one_record_get_different_shuffle_keys() -> None:
    keys = np.full(4, 12345, dtype=np.uint64)
    assert len(set(shuffle_keys(keys, np.arange(4, dtype=np.uint64)).tolist())) == 4


@FAST
@given(
    kept=st.lists(st.integers(0, 10_000), min_size=1, max_size=5),
    total=st.one_of(st.none(), st.integers(1, 50_000)),
)
def test_plan_quotas_total_is_exact(kept: list[int], total: int | None) -> None:
    ratios = [1.0 / len(kept)] * len(kept)
    sources = [SourceCounts(f"s{i}", r, None, k) for i, (r, k) in enumerate(zip(ratios, kept, strict=True))]
    quotas = plan_quotas(sources, total_samples=total, validation=[0] * len(kept))
    expected_total = total if total is not None else sum(kept)
    assert sum(q.quota for q in quotas) == expected_total
    assert [q.available for q in quotas] == kept


def test_plan_quotas_applies_hold_out_then_cap() -> None:
    sources = [SourceCounts("a", 0.6, 50, 100), SourceCounts("b", 0.4, None, 30, validation_kept=7)]
    shares = validation_shares(sources, 0.1, None)
    assert shares == [10, 3]  # 0.1 of each source's own kept records
    assert validation_shares(sources, None, 13) == [8, 5]  # samples: 13 shared 0.6 / 0.4
    a, b = plan_quotas(sources, total_samples=None, validation=shares)
    assert (a.held_out, a.available) == (10, 50)  # 100 - 10 held out, capped at 50
    assert (b.held_out, b.available) == (0, 30)  # own validation source: nothing held out
    assert a.quota + b.quota == 80
    assert validation_shares(sources, None, None) == [0, 7]


@FAST
@given(
    kept=st.lists(st.integers(0, 10_000), min_size=1, max_size=5),
    fraction=st.floats(0.001, 0.999),
)
def test_a_validation_fraction_always_leaves_train_a_record(kept: list[int], fraction: float) -> None:
    sources = [SourceCounts(f"s{i}", 1.0 / len(kept), None, k) for i, k in enumerate(kept)]
    shares = validation_shares(sources, fraction, None)
    for share, k in zip(shares, kept, strict=True):
        assert share <= max(k - 1, 0)
        assert abs(share - fraction * k) <= 1


def test_choose_hold_out_and_train_never_share_a_record() -> None:
    keys = keys_for(1000, 3)
    quota = Quota("a", kept=1000, held_out=100, validation=100, available=900, quota=1200)
    chosen = choose(keys, None, quota, max_samples=None)
    validation = set(chosen.validation.rows.tolist())
    train = set(chosen.train.rows.tolist())
    assert len(validation) == 100
    assert validation.isdisjoint(train)
    assert len(train) == 900 and len(chosen.train.rows) == 1200


def test_choose_cap_is_a_seeded_subset_not_the_first_n() -> None:
    quota = Quota("a", kept=1000, held_out=0, validation=0, available=100, quota=100)
    first = choose(keys_for(1000, 1), None, quota, max_samples=100).train.rows
    second = choose(keys_for(1000, 2), None, quota, max_samples=100).train.rows
    assert len(np.unique(first)) == 100
    assert sorted(first.tolist()) != list(range(100))
    assert set(first.tolist()) != set(second.tolist())
    assert first.max() > 500


def test_choose_is_a_pure_function_of_keys() -> None:
    keys = keys_for(500, 9)
    quota = Quota("a", kept=500, held_out=20, validation=20, available=480, quota=700)
    one, two = choose(keys, None, quota, None), choose(keys.copy(), None, quota, None)
    assert np.array_equal(one.train.rows, two.train.rows)
    assert np.array_equal(one.validation.rows, two.validation.rows)


@pytest.mark.parametrize(("quota", "available", "factor"), [(32_000, 30_000, 32 / 30), (5, 0, math.inf), (0, 0, 0.0)])
def test_repeat_factor(quota: int, available: int, factor: float) -> None:
    assert Quota("x", available, 0, 0, available, quota).repeat_factor == pytest.approx(factor)
