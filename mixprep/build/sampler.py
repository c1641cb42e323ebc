"""Quotas, selection with wraparound and shuffle keys. numpy, and one compiled sort (`hashsort`).

Every decision is a function of a record's identity hash (seeded by the mixture's
seed, see `hashing` and `scan.file_key`) and a purpose salt: which records are held out for
validation, which survive a `max_samples` cap, which fill a quota, and where each
copy lands in the shuffle. Selection is "bottom-k by hash", so it is a seeded
uniform subset that does not depend on how the records were split into tasks.
Ties (equal 64-bit hashes) fall back to input order, which the plan fixes.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from mixprep.build.hashing import GOLDEN, derive, splitmix64
from mixprep.build.hashsort import stable_argsort


def largest_remainder(ratios: Sequence[float], total: int) -> list[int]:
    """Integer shares of `total` proportional to ratios, summing to exactly `total`.

    Floors first; the leftover units go to the largest fractional parts, ties to
    the earlier dataset in the config.
    """
    weight = math.fsum(ratios)
    if total <= 0 or weight <= 0:
        return [0] * len(ratios)
    exact = [r / weight * total for r in ratios]
    shares = [math.floor(x) for x in exact]
    leftover = total - sum(shares)
    order = sorted(range(len(ratios)), key=lambda i: (-(exact[i] - shares[i]), i))
    for i in order[:leftover]:
        shares[i] += 1
    return shares


def bottom_k(hashes: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k smallest hashes, in hash order (stable: ties keep input order)."""
    if k <= 0:
        return np.zeros(0, dtype=np.int64)
    order = stable_argsort(hashes)
    return order[:k].copy() if k < len(order) else order  # a copy: a view would hold all n


@dataclass(frozen=True)
class Selection:
    rows: np.ndarray  # int64 indices into the source's records; a row appears once per copy
    copies: np.ndarray  # uint64 copy number of each entry (0 for the first copy)

    @property
    def unique(self) -> int:
        # Every selected record has exactly one entry with copy number 0.
        return int(np.count_nonzero(self.copies == 0))

    @property
    def extra_copies(self) -> int:
        return len(self.rows) - self.unique

    @property
    def repeated_records(self) -> int:
        return int(np.count_nonzero(self.copies == 1))


def select(keys: np.ndarray, quota: int) -> Selection:
    """Exactly `quota` copies from `keys`: a seeded subset, or every record ⌊quota/n⌋ times
    plus a seeded subset for the remainder (wraparound)."""
    n = len(keys)
    if quota <= 0 or n == 0:
        return Selection(np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.uint64))
    ranked = bottom_k(derive(keys, "select"), min(quota, n))
    if quota <= n:
        return Selection(ranked, np.zeros(quota, dtype=np.uint64))
    full, remainder = divmod(quota, n)
    everyone = np.arange(n, dtype=np.int64)
    rows = np.concatenate([np.tile(everyone, full), ranked[:remainder]])
    copies = np.concatenate([np.repeat(np.arange(full, dtype=np.uint64), n), np.full(remainder, full, dtype=np.uint64)])
    return Selection(rows, copies)


def shuffle_keys(keys: np.ndarray, copies: np.ndarray) -> np.ndarray:
    """Where each copy goes in the global shuffle; copies of one record land independently."""
    return splitmix64(derive(keys, "shuffle") ^ splitmix64(copies.astype(np.uint64) * GOLDEN))


# -- quotas for a whole mixture (counts only: also what --dry-run prints) -------------

@dataclass(frozen=True)
class SourceCounts:
    name: str
    ratio: float
    max_samples: int | None
    kept: int
    """Records of the main source that passed parsing and filters."""
    validation_kept: int | None = None
    """Records of the dataset's own validation source, when it has one."""


@dataclass(frozen=True)
class Quota:
    name: str
    kept: int
    held_out: int  # taken from the main source for validation
    validation: int  # validation records of this source (held out or from its own split)
    available: int  # what train may draw from: kept - held_out, capped at max_samples
    quota: int
    cap: int | None = None  # at most this many distinct records (max_samples, or what max_tokens leaves)
    token_quota: int | None = None  # mix_by: tokens: the tokens asked of this source
    available_tokens: int | None = None  # mix_by: tokens: the tokens of its `available` records

    @property
    def repeat_factor(self) -> float:
        return self.quota / self.available if self.available else math.inf if self.quota else 0.0


def validation_shares(
    sources: Sequence[SourceCounts], fraction: float | None, samples: int | None
) -> list[int]:
    """Validation records per source.

    `{fraction: f}`: each source gives f of its own kept records (half up), from its
    validation split when it has one (at most what the split holds), else held out of its
    records, always leaving train at least one; so a fraction never fails, however a
    source is up- or down-sampled. `{samples: N}`: N shared by mix_ratio (largest
    remainder), so validation mirrors the mixture. Neither: a source's own validation
    split is used whole.
    """
    if fraction is not None:
        return [_share_of_own_records(s, fraction) for s in sources]
    if samples is None:
        return [s.validation_kept or 0 for s in sources]
    return largest_remainder([s.ratio for s in sources], samples)


def _share_of_own_records(source: SourceCounts, fraction: float) -> int:
    share = math.floor(fraction * source.kept + 0.5)
    if source.validation_kept is not None:
        return min(share, source.validation_kept)
    return min(share, max(source.kept - 1, 0))


def plan_quotas(
    sources: Sequence[SourceCounts], *, total_samples: int | None, validation: Sequence[int]
) -> list[Quota]:
    ratios = [s.ratio for s in sources]
    held = [0 if s.validation_kept is not None else v for s, v in zip(sources, validation, strict=True)]
    available = []
    for s, h in zip(sources, held, strict=True):
        pool = max(s.kept - h, 0)
        available.append(min(pool, s.max_samples) if s.max_samples is not None else pool)
    total = total_samples if total_samples is not None else sum(available)
    quotas = largest_remainder(ratios, total)
    return [
        Quota(s.name, s.kept, h, v, a, q, cap=s.max_samples)
        for s, h, v, a, q in zip(sources, held, validation, available, quotas, strict=True)
    ]


@dataclass(frozen=True)
class SourceSelection:
    train: Selection  # rows index the main source's records
    validation: Selection  # rows index the main source (hold-out) or the validation source


def choose(keys: np.ndarray, validation_keys: np.ndarray | None, quota: Quota, max_samples: int | None) -> SourceSelection:
    """Apply one source's quota: hold out validation, cap, then select with wraparound."""
    if validation_keys is not None:
        validation = Selection(bottom_k(derive(validation_keys, "validation"), quota.validation), np.zeros(quota.validation, np.uint64))
    else:
        held = bottom_k(derive(keys, "validation"), quota.held_out)
        validation = Selection(held, np.zeros(len(held), np.uint64))
    pool = train_pool(keys, None if validation_keys is not None else validation.rows, max_samples)
    picked = select(keys[pool], quota.quota)
    return SourceSelection(Selection(pool[picked.rows], picked.copies), validation)


def train_pool(keys: np.ndarray, held: np.ndarray | None, max_samples: int | None) -> np.ndarray:
    """The records train draws from: all but the held-out ones, capped at max_samples by a
    seeded subset (in input order)."""
    pool = np.arange(len(keys), dtype=np.int64)
    if held is not None and len(held):
        remaining = np.ones(len(keys), dtype=bool)
        remaining[held] = False
        pool = pool[remaining]
    if max_samples is not None and len(pool) > max_samples:
        pool = np.sort(pool[bottom_k(derive(keys[pool], "cap"), max_samples)])
    return pool


def records_within_tokens(keys: np.ndarray, tokens: np.ndarray, max_tokens: int) -> int:
    """`max_tokens`: how many records of a pool fit, taken in the seeded order `train_pool`
    caps `max_samples` by (so the cap is a `max_samples` and selects the same way)."""
    ranked = bottom_k(derive(keys, "cap"), len(keys))
    reached = np.cumsum(tokens[ranked].astype(np.int64))
    return int(np.searchsorted(reached, max_tokens, side="right"))


def records_for_tokens(keys: np.ndarray, tokens: np.ndarray, token_quota: int) -> int:
    """How many copies `select` must take from a pool (its keys, and each record's tokens) so
    their tokens come closest to `token_quota`: every record ⌊quota/pool tokens⌋ times, then
    the records `select` ranks first until the rest is met within one record (the nearer
    side of it). Off by less than one record's tokens."""
    total = int(tokens.sum(dtype=np.uint64))
    if token_quota <= 0 or total == 0:
        return 0
    full, rest = divmod(token_quota, total)
    ranked = bottom_k(derive(keys, "select"), len(keys))
    reached = np.cumsum(tokens[ranked].astype(np.int64))
    k = int(np.searchsorted(reached, rest, side="left"))  # reached[k] >= rest: k + 1 records reach it
    below = int(reached[k - 1]) if k > 0 else 0
    if k < len(reached) and int(reached[k]) - rest < rest - below:
        k += 1
    return full * len(keys) + k
