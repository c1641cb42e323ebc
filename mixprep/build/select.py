"""From scan results to what each source contributes: counts, dedup, quotas, selection.

The driver holds, per source, only small arrays for its kept records (identity key,
output size, task, row: 20 bytes a record). Dedup drops duplicates across sources
(and validation records that repeat a train record); quotas follow the mixture's
ratios exactly (largest remainder); the selection is `sampler.choose`, a seeded
bottom-k with wraparound. Functions return new values; nothing here mutates its input.
"""
from __future__ import annotations

import dataclasses
import logging
import math
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numba
import numpy as np

import mixprep.numba_cache  # noqa: F401 - a writable kernel cache before the first @njit(cache=True)
from mixprep.build.dedup import all_but_survivors, fingerprint_width, groups_by_shards
from mixprep.build.hashing import derive
from mixprep.build.sampler import (
    Quota,
    SourceCounts,
    SourceSelection,
    bottom_k,
    choose,
    largest_remainder,
    plan_quotas,
    records_for_tokens,
    records_within_tokens,
    train_pool,
    validation_shares,
)
from mixprep.build.scan import ScanResult, ScanStats, rejected_line
from mixprep.build.workdir import prints_path, rejected_path
from mixprep.build.writers import PLAN_DTYPE, gather, release_caches
from mixprep.config.schema import MixtureConfig
from mixprep.errors import OutputError, SamplingError
from mixprep.sources.plan import ScanTask

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SourceArrays:
    """One dataset's kept records across its tasks, in plan order."""

    keys: np.ndarray  # identity hash
    lengths: np.ndarray  # uint32 output bytes (the whole JSON line)
    tasks: np.ndarray  # int32 task id
    rows: np.ndarray  # uint32 row in the task's scan file
    characters: np.ndarray  # uint32 characters of the text (every message's content)
    tokens: np.ndarray  # uint32 tokens of the same text (0 without metadata.tokenizer)

    def kept(self, keep: np.ndarray) -> SourceArrays:
        return SourceArrays(*(getattr(self, f.name)[keep] for f in dataclasses.fields(self)))


def stats_by_dataset(config: MixtureConfig, tasks: list[ScanTask], results: list[ScanResult]) -> dict[str, ScanStats]:
    stats = {d.name: ScanStats() for d in config.datasets}
    for task, result in zip(tasks, results, strict=True):
        if task.role == "main":
            stats[task.dataset_name] = stats[task.dataset_name] + result.stats
    return stats


def load_scan_arrays(
    config: MixtureConfig, tasks: list[ScanTask], results: list[ScanResult]
) -> dict[tuple[int, str], SourceArrays]:
    """Per (dataset, role): its kept records' columns, from every task's key table in plan
    order. Each table is mapped and split into the narrow columns in one compiled pass
    (column slices of the (n, 4) tables, cast and concatenated by numpy, took ~1 s per
    5.7 M records while the pool's workers waited), then let go."""
    parts: dict[tuple[int, str], list[tuple[int, np.ndarray]]] = {}
    for task, result in zip(tasks, results, strict=True):
        table = np.asarray(np.load(result.keys_path, mmap_mode="r"))
        parts.setdefault((task.dataset, task.role), []).append((task.task_id, table))
    arrays = {}
    for group, items in parts.items():
        n = sum(len(table) for _, table in items)
        # Narrow types: the driver holds these for every kept record (28 bytes each).
        columns = SourceArrays(
            keys=np.empty(n, dtype=np.uint64),
            lengths=np.empty(n, dtype=np.uint32),
            tasks=np.empty(n, dtype=np.int32),
            rows=np.empty(n, dtype=np.uint32),
            characters=np.empty(n, dtype=np.uint32),
            tokens=np.empty(n, dtype=np.uint32),
        )
        at = 0
        for task_id, table in items:
            _split_key_table(
                table, task_id, at,
                columns.keys, columns.lengths, columns.tasks, columns.rows, columns.characters, columns.tokens,
            )
            at += len(table)
        arrays[group] = columns
    return arrays


@numba.njit(cache=True, nogil=True)
def _split_key_table(
    table: np.ndarray, task_id: int, at: int,
    keys: np.ndarray, lengths: np.ndarray, tasks: np.ndarray, rows: np.ndarray, characters: np.ndarray, tokens: np.ndarray,
) -> None:
    """One scan task's (n, KEY_COLUMNS) uint64 table into the columns at `at` (counts
    saturate at uint32's largest value)."""
    most = np.uint64(np.iinfo(np.uint32).max)
    for i in range(len(table)):
        keys[at + i] = table[i, 0]
        lengths[at + i] = min(table[i, 1], most)
        characters[at + i] = min(table[i, 2], most)
        tokens[at + i] = min(table[i, 3], most)
        tasks[at + i] = task_id
        rows[at + i] = i


def split_units(
    config: MixtureConfig, split: str, selections: list[SourceSelection], arrays: dict[tuple[int, str], SourceArrays]
) -> dict[str, dict[str, int]]:
    """Per dataset: the bytes, characters and tokens of every copy the split takes from it."""
    units = {}
    for i, (dataset, selection) in enumerate(zip(config.datasets, selections, strict=True)):
        chosen = selection.train if split == "train" else selection.validation
        role = "validation" if split == "validation" and dataset.validation_source is not None else "main"
        source = arrays.get((i, role))
        rows = chosen.rows if source is not None else np.zeros(0, dtype=np.int64)
        units[dataset.name] = {
            unit: int(getattr(source, column)[rows].sum(dtype=np.uint64)) if source is not None else 0
            for unit, column in (("bytes", "lengths"), ("characters", "characters"), ("tokens", "tokens"))
        }
    return units


def split_characters(
    config: MixtureConfig, split: str, selections: list[SourceSelection], arrays: dict[tuple[int, str], SourceArrays]
) -> dict[str, np.ndarray]:
    """Per dataset: the characters of the text of every copy the split takes from it (in
    selection order, not output order), what the report's length histograms show."""
    lengths = {}
    for i, (dataset, selection) in enumerate(zip(config.datasets, selections, strict=True)):
        chosen = selection.train if split == "train" else selection.validation
        role = "validation" if split == "validation" and dataset.validation_source is not None else "main"
        source = arrays.get((i, role))
        lengths[dataset.name] = source.characters[chosen.rows] if source is not None else np.zeros(0, dtype=np.uint32)
    return lengths


def planned_units(config: MixtureConfig, quotas: list[Quota], arrays: dict[tuple[int, str], SourceArrays]) -> dict[str, dict[str, int]]:
    """What a dry run's train quotas would take, in each unit (nothing when they cannot be met)."""
    try:
        return split_units(config, "train", select_sources(config, quotas, arrays), arrays)
    except SamplingError:
        return {}


@dataclass(frozen=True)
class Deduplicated:
    arrays: dict[tuple[int, str], SourceArrays]
    stats: dict[str, ScanStats]
    """Per dataset: the scan's counts with the records dedup removed moved from kept to removed."""
    validation_removed: dict[str, dict[str, int]]
    """Per dataset with a validation source: {"duplicate_of_train": n, "dedup": m}."""


def deduplicate(
    config: MixtureConfig,
    tasks: list[ScanTask],
    arrays: dict[tuple[int, str], SourceArrays],
    stats: dict[str, ScanStats],
    work: str,
) -> Deduplicated:
    """Drop duplicates across the main sources (counted as removed by `dedup`), then the
    records of validation sources that duplicate a train-source record or each other."""
    width = 1 if config.dedup is None else fingerprint_width(config.dedup)
    files: dict[tuple[int, str], list[str]] = {}
    for task in tasks:  # in plan order, as load_scan_arrays concatenates each group
        group = (task.dataset, task.role)
        if group in arrays:
            files.setdefault(group, []).append(prints_path(work, task.task_id))
    main = [(i, "main") for i in range(len(config.datasets)) if (i, "main") in files]
    held = [(i, "validation") for i in range(len(config.datasets)) if (i, "validation") in files]
    result = dict(arrays)
    new_stats = dict(stats)
    validation_removed: dict[str, dict[str, int]] = {}
    if not main:
        return Deduplicated(result, new_stats, validation_removed)
    main_files = [path for g in main for path in files[g]]
    main_keys = np.concatenate([arrays[g].keys for g in main])
    labels = groups_by_shards(len(main_keys), band_shards(main_files, width, shard_count(len(main_keys))))
    drop = all_but_survivors(labels, main_keys) if len(main_keys) else np.zeros(0, dtype=bool)
    for group, keep in zip(main, _split_mask(~drop, [len(arrays[g].keys) for g in main]), strict=True):
        name = config.datasets[group[0]].name
        removed = int(len(keep) - keep.sum())
        if removed:
            new_stats[name] = new_stats[name].removing("dedup", removed)
        result[group] = arrays[group].kept(keep)
    if held:
        # A validation record in the same fingerprint group as any train-source record
        # would leak train data into validation: drop it (and repeats inside validation).
        held_files = [path for g in held for path in files[g]]
        held_keys = np.concatenate([arrays[g].keys for g in held])
        every = len(main_keys) + len(held_keys)
        labels = groups_by_shards(every, band_shards(main_files + held_files, width, shard_count(every)))
        held_labels = labels[len(main_keys) :]
        seen_in_train = np.isin(held_labels, labels[: len(main_keys)])
        # A group with no train record is a group of validation records alone: the same
        # survivor as deduplicating validation by itself.
        repeated = all_but_survivors(held_labels, held_keys)
        sizes = [len(arrays[g].keys) for g in held]
        for group, in_train, again in zip(
            held,
            _split_mask(seen_in_train, sizes),
            _split_mask(repeated & ~seen_in_train, sizes),
            strict=True,
        ):
            name = config.datasets[group[0]].name
            validation_removed[name] = {"duplicate_of_train": int(in_train.sum()), "dedup": int(again.sum())}
            result[group] = arrays[group].kept(~(in_train | again))
            if in_train.any() or again.any():
                log.info("dataset %r: dropped %d validation records that duplicate train records, %d repeats within validation",
                         name, int(in_train.sum()), int(again.sum()))
    return Deduplicated(result, new_stats, validation_removed)


SHARD_RECORDS = 8_000_000
"""Records' fingerprints the driver sorts at once (a band shard): ~200 MB of sort arrays,
beside the 8 bytes a record of group labels."""


def band_columns(paths: list[str], width: int) -> Iterator[np.ndarray]:
    """Each fingerprint column over the scan tasks' files, read one column at a time."""
    for column in range(width):
        parts = []
        for path in paths:
            band_major = np.load(path, mmap_mode="r")  # (width, rows): a column is contiguous
            parts.append(np.array(band_major[column]))
            del band_major
        yield np.concatenate(parts) if parts else np.zeros(0, dtype=np.uint64)


def band_shards(paths: list[str], width: int, shards: int) -> Iterator[tuple[np.ndarray, np.ndarray | None]]:
    """Each fingerprint column cut into `shards` by its values' top bits, as (values, record
    indices) read from the scan tasks' files one shard at a time (a whole column when
    `shards` is 1): what `dedup.groups_by_shards` joins."""
    if shards <= 1:
        yield from ((column, None) for column in band_columns(paths, width))
        return
    shift = np.uint64(64 - max(shards - 1, 1).bit_length())
    for column in range(width):
        for shard in range(shards):
            values, index, base = [], [], 0
            for path in paths:
                band = np.load(path, mmap_mode="r")[column]
                rows = np.flatnonzero((band >> shift) == np.uint64(shard))
                values.append(np.asarray(band[rows]))
                index.append(rows + base)
                base += len(band)
                del band
            yield np.concatenate(values), np.concatenate(index)


def shard_count(records: int) -> int:
    """Band shards for this many records: a power of two keeping each near SHARD_RECORDS."""
    return 1 << max(0, math.ceil(math.log2(max(records, 1) / SHARD_RECORDS)))


def _split_mask(mask: np.ndarray, sizes: list[int]) -> list[np.ndarray]:
    return np.split(mask, np.cumsum(sizes)[:-1]) if sizes else []


def collect_rejected(
    config: MixtureConfig,
    tasks: list[ScanTask],
    before: dict[tuple[int, str], SourceArrays],
    after: dict[tuple[int, str], SourceArrays],
    path: Path,
    work: str,
) -> None:
    """`--write-rejected`: every removed record with its source and reason, in plan order."""
    with open(path, "wb") as out:
        for task in tasks:
            with open(rejected_path(work, task.task_id), "rb") as part:
                shutil.copyfileobj(part, out)
        for group, source in before.items():
            kept = after[group]
            if len(kept.keys) == len(source.keys):
                continue
            dropped = ~np.isin(source.keys, kept.keys)
            plan = np.empty(int(dropped.sum()), dtype=PLAN_DTYPE)
            plan["task"], plan["row"], plan["dataset"] = source.tasks[dropped], source.rows[dropped], group[0]
            name = config.datasets[group[0]].name
            for value in gather(plan, work, text=config.text_values).to_pylist():
                out.write(rejected_line(value, name, "dedup", config.record_schema))
    release_caches()


# -- allocation -----------------------------------------------------------------------

def allocate_quotas(
    config: MixtureConfig,
    stats: dict[str, ScanStats],
    arrays: dict[tuple[int, str], SourceArrays],
    *,
    check: bool = True,
) -> list[Quota]:
    counts = []
    for i, dataset in enumerate(config.datasets):
        validation = arrays.get((i, "validation"))
        counts.append(
            SourceCounts(
                name=dataset.name,
                ratio=dataset.mix_ratio,
                max_samples=dataset.max_samples,
                kept=stats[dataset.name].kept,
                validation_kept=None if dataset.validation_source is None else (0 if validation is None else len(validation.keys)),
            )
        )
    fraction = config.validation.fraction if config.validation else None
    samples = config.validation.samples if config.validation else None
    shares = validation_shares(counts, fraction, samples)
    counts = _cap_tokens(config, counts, shares, arrays)
    quotas = plan_quotas(counts, total_samples=config.total_samples, validation=shares)
    if config.mix_by == "tokens":
        quotas = _token_quotas(config, quotas, arrays, check=check)
    if check:
        _check_quotas(config, counts, quotas, stats)
        if not any(q.quota for q in quotas):
            reasons = "; ".join(f"{d.name}: {explain(stats[d.name], d.source.describe())}" for d in config.datasets)
            msg = f"{config.path}: the mixture selects no records: nothing is left after the filters ({reasons})"
            raise SamplingError(msg)
    return quotas


def _cap_tokens(
    config: MixtureConfig, counts: list[SourceCounts], shares: list[int], arrays: dict[tuple[int, str], SourceArrays]
) -> list[SourceCounts]:
    """A dataset's `max_tokens` becomes a cap in records: as many of its train pool's records,
    in the seeded cap order, as fit in that many tokens (so `max_samples` and `max_tokens`
    together take the smaller)."""
    capped = []
    for i, (dataset, count, share) in enumerate(zip(config.datasets, counts, shares, strict=True)):
        main = arrays.get((i, "main"))
        if dataset.max_tokens is None or main is None:
            capped.append(count)
            continue
        held = None if dataset.validation_source is not None else bottom_k(derive(main.keys, "validation"), share)
        pool = train_pool(main.keys, held, dataset.max_samples)
        fit = records_within_tokens(main.keys[pool], main.tokens[pool], dataset.max_tokens)
        capped.append(dataclasses.replace(count, max_samples=fit))
    return capped


def _token_quotas(
    config: MixtureConfig, quotas: list[Quota], arrays: dict[tuple[int, str], SourceArrays], *, check: bool
) -> list[Quota]:
    """`mix_by: tokens`: each source's share of `total_tokens` (default: the tokens all sources
    hold), by largest remainder, turned into the number of copies that carries it (within
    one record of it)."""
    pools = []
    for i, (dataset, quota) in enumerate(zip(config.datasets, quotas, strict=True)):
        main = arrays.get((i, "main"))
        if main is None:
            pools.append((np.zeros(0, np.uint64), np.zeros(0, np.uint32)))
            continue
        held = None if dataset.validation_source is not None else bottom_k(derive(main.keys, "validation"), quota.held_out)
        pool = train_pool(main.keys, held, quota.cap)
        pools.append((main.keys[pool], main.tokens[pool]))
    available = [int(tokens.sum(dtype=np.uint64)) for _, tokens in pools]
    total = config.total_tokens if config.total_tokens is not None else sum(available)
    asked = largest_remainder([d.mix_ratio for d in config.datasets], total)
    converted = []
    for dataset, quota, (keys, tokens), tokens_available, tokens_asked in zip(
        config.datasets, quotas, pools, available, asked, strict=True
    ):
        if check and tokens_asked and not tokens_available:
            msg = f"dataset {dataset.name!r}: its share is {tokens_asked:,} tokens, but its available records hold none"
            raise SamplingError(msg)
        records = records_for_tokens(keys, tokens, tokens_asked)
        converted.append(dataclasses.replace(quota, quota=records, token_quota=tokens_asked, available_tokens=tokens_available))
    return converted


def _check_quotas(config: MixtureConfig, counts: list[SourceCounts], quotas: list[Quota], stats: dict[str, ScanStats]) -> None:
    for dataset, count, quota in zip(config.datasets, counts, quotas, strict=True):
        if count.validation_kept is not None and quota.validation > count.validation_kept:
            msg = (
                f"dataset {dataset.name!r}: its validation_source has {count.validation_kept} usable records, "
                f"but the validation split needs {quota.validation} from it"
            )
            raise SamplingError(msg)
        if count.validation_kept is None and quota.held_out and quota.held_out >= count.kept:
            msg = (
                f"dataset {dataset.name!r}: validation would hold out {quota.held_out} of its {count.kept} records, "
                f"leaving none for train; lower metadata.validation"
            )
            raise SamplingError(msg)
        if quota.quota > 0 and quota.available == 0:
            msg = (
                f"dataset {dataset.name!r}: needs {quota.quota} records but none are available "
                f"({explain(stats[dataset.name], dataset.source.describe())})"
            )
            raise SamplingError(msg)
        factor = quota.repeat_factor
        if config.repeats.max_factor is not None and factor > config.repeats.max_factor:
            msg = (
                f"dataset {dataset.name!r}: quota {quota.quota} from {quota.available} available records needs a repeat "
                f"factor of {factor:.2f}, above metadata.repeats.max_factor {config.repeats.max_factor:g}; "
                f"add data, lower its mix_ratio or total_samples, or raise max_factor"
            )
            raise SamplingError(msg)
        if factor > config.repeats.warn_above:
            log.warning(
                "dataset %r: quota %d from %d available records: wraparound, repeat factor %.2f "
                "(%d extra copies)", dataset.name, quota.quota, quota.available, factor, quota.quota - quota.available,
            )


def explain(stats: ScanStats, where: str) -> str:
    parts = [f"{stats.read} read from {where}"]
    parts += [f"{n} bad ({reason})" for reason, n in sorted(stats.bad.items())]
    parts += [f"{n} removed by {name}" for name, n in sorted(stats.removed.items())]
    return ", ".join(parts)


PLAN_BYTES_PER_RECORD = 64
"""What the driver holds per output record while it orders a split: the selected rows and
their copies, shuffle keys, the sort order, the plan and the line offsets."""


def check_plan_fits(config: MixtureConfig, quotas: list[Quota], arrays: dict[tuple[int, str], SourceArrays], out_dir: Path) -> None:
    """Refuse a plan this machine cannot hold or store before allocating it (`total_samples`
    far beyond the data makes the wraparound plan as large as the number asked for)."""
    records = sum(q.quota + q.validation for q in quotas)
    need = records * PLAN_BYTES_PER_RECORD
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    if need > memory // 2:
        msg = (
            f"{config.path}: {records:,} output records need about {need / 1e9:,.1f} GB of memory to order "
            f"({PLAN_BYTES_PER_RECORD} bytes each) and this machine has {memory / 1e9:,.1f} GB; "
            "lower total_samples, or split the mixture into several builds"
        )
        raise SamplingError(msg)
    estimate = 0.0
    for i, quota in enumerate(quotas):
        for role, count in (("main", quota.quota), ("validation", quota.validation)):
            source = arrays.get((i, role)) or arrays.get((i, "main"))
            if count and source is not None and len(source.lengths):
                estimate += count * float(source.lengths.mean())
    free = shutil.disk_usage(out_dir).free
    if estimate > free:
        msg = (
            f"{config.path}: the JSONL alone would take about {estimate / 1e9:,.1f} GB ({records:,} records) and "
            f"{out_dir} has {free / 1e9:,.1f} GB free; lower total_samples or choose another --output-dir"
        )
        raise OutputError(msg)


def select_sources(
    config: MixtureConfig, quotas: list[Quota], arrays: dict[tuple[int, str], SourceArrays]
) -> list[SourceSelection]:
    empty = SourceArrays(
        np.zeros(0, np.uint64), np.zeros(0, np.uint64), np.zeros(0, np.int32), np.zeros(0, np.int64),
        np.zeros(0, np.uint32), np.zeros(0, np.uint32),
    )
    selections = []
    for i, (dataset, quota) in enumerate(zip(config.datasets, quotas, strict=True)):
        main = arrays.get((i, "main"), empty)
        validation = arrays.get((i, "validation"))
        if dataset.validation_source is not None and validation is None:
            validation = empty
        selections.append(choose(main.keys, None if validation is None else validation.keys, quota, quota.cap))
    return selections
