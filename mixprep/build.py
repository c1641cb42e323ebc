"""The build driver: the one module that runs tasks (through `executors`).

plan (pure task list) -> scan (parallel: filter, write kept records, return counts)
-> dedup, quotas and selection (driver, numpy) -> final order, cut into buckets
(driver) -> partition (parallel: each scan file read once, records routed to
buckets) -> write buckets (parallel) -> append parts, index, sidecar (driver)
-> manifests -> atomic commit. Tasks are pure functions of their job and results
are consumed in task order, so the bytes do not depend on `--workers` or on the
executor.
"""
from __future__ import annotations

import contextlib
import logging
import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from mixprep import __version__
from mixprep.config import MixtureConfig
from mixprep.errors import ConfigError, OutputError, SamplingError
from mixprep.dedup import all_but_survivors, duplicates, fingerprint_groups
from mixprep.executors import Executor, LocalExecutor, make_executor  # noqa: F401 - LocalExecutor re-exported
from mixprep.manifest import build_key, input_fingerprints, outputs_intact, read_manifest, split_manifest, write_manifest
from mixprep.plan import ScanTask, make_plan
from mixprep.progress import Progress
from mixprep.sampler import Quota, SourceCounts, SourceSelection, choose, plan_quotas, shuffle_keys, validation_shares
from mixprep.scan import ScanJob, ScanResult, ScanStats, prints_path, rejected_line, rejected_path, scan_task
from mixprep.writers import (
    BUCKET_DTYPE,
    PART_DTYPE,
    BucketJob,
    OutputInfo,
    PartitionJob,
    SplitFiles,
    SplitWriter,
    commit,
    gather,
    partition,
    write_bucket,
)

log = logging.getLogger(__name__)

SPLITS = ("train", "validation")
TMP_FOLDER = ".mixprep-tmp"


@dataclass(frozen=True)
class BuildOptions:
    output_dir: Path
    splits: tuple[str, ...] | None = None  # None: every split the mixture defines
    workers: int = 1
    force: bool = False
    executor: Literal["local", "ray"] = "local"
    ray_address: str | None = None
    parquet_compression: str = "none"
    progress: bool | None = None  # None: a bar when stderr is a terminal
    write_rejected: bool = False


@dataclass
class BuildResult:
    files: dict[str, Path]
    manifests: dict[str, dict[str, Any]]
    reused: bool = False
    quotas: list[Quota] = field(default_factory=list)
    stats: dict[str, ScanStats] = field(default_factory=dict)


# -- the build ---------------------------------------------------------------------

def requested_splits(config: MixtureConfig, splits: tuple[str, ...] | None) -> tuple[str, ...]:
    defined = config.splits()
    if splits is None:
        return defined
    for split in splits:
        if split not in SPLITS:
            msg = f"unknown split {split!r}; valid: train, validation, all"
            raise ConfigError(msg)
        if split not in defined:
            msg = (
                f"{config.path}: split {split!r} is not defined by this mixture; add metadata.validation "
                f"({{fraction: 0.01}} or {{samples: N}}) or a dataset validation_source"
            )
            raise ConfigError(msg)
    return tuple(s for s in SPLITS if s in splits)


@contextlib.contextmanager
def timed(phases: dict[str, float], name: str) -> Iterator[None]:
    """Add the block's wall time to phases[name] (the build logs them: where did the time go)."""
    start = time.perf_counter()
    try:
        yield
    finally:
        phases[name] = phases.get(name, 0.0) + time.perf_counter() - start


def build(config: MixtureConfig, options: BuildOptions) -> BuildResult:
    config.raise_if_invalid()
    splits = requested_splits(config, options.splits)
    out_dir = _prepare_output_dir(options.output_dir)
    tasks = make_plan(config)
    inputs = input_fingerprints(tasks)
    key = build_key(config.raw_digest, inputs, _key_options(config, options))
    finals = {split: SplitFiles.for_stem(out_dir, config.stem(split)) for split in splits}
    if not options.force:
        reused = _reuse(finals, key)
        if reused is not None:
            log.info("outputs are up to date (config and inputs unchanged); use --force to rebuild")
            return BuildResult({s: f.jsonl for s, f in finals.items()}, reused, reused=True)

    work = _make_work_dir(out_dir, config)
    phases: dict[str, float] = {}
    executor = make_executor(options)
    try:
        with timed(phases, "scan"):
            results = _scan(config, tasks, executor, str(work), options.progress, write_rejected=options.write_rejected)
        selecting = time.perf_counter()
        stats = _stats_by_dataset(config, tasks, results)
        json_fields = sidecar_json_fields(config.record_schema, results)
        arrays = _load_scan_arrays(config, tasks, results)
        deduplicated, validation_removed = arrays, {}
        if config.dedup is not None:
            deduplicated, validation_removed = _deduplicate(config, tasks, arrays, stats, str(work))
        extras = []
        if options.write_rejected:
            rejected = work / f"{config.phase}_{config.name}.rejected.jsonl"
            _collect_rejected(config, tasks, arrays, deduplicated, rejected, str(work))
            extras.append((rejected, out_dir / rejected.name))
        arrays = deduplicated
        quotas = _quotas(config, stats, arrays)
        selections = _select(config, quotas, arrays)
        phases["select"] = time.perf_counter() - selecting
        manifests: dict[str, dict[str, Any]] = {}
        pairs = []
        for split in splits:
            tmp = SplitFiles.for_stem(work, config.stem(split))
            info = _write_split(config, json_fields, split, selections, arrays, tmp, executor, str(work), options, phases)
            manifests[split] = split_manifest(
                config, split, key, inputs, stats, quotas, selections, info, finals[split], options.parquet_compression,
                validation_removed=validation_removed,
            )
            write_manifest(tmp.manifest, manifests[split])
            pairs.append((tmp, finals[split]))
        with timed(phases, "commit"):
            commit(pairs, extras)
    finally:
        with timed(phases, "cleanup"):
            executor.close()
            _remove_work_dir(work)
    log.info("time by phase: %s", ", ".join(f"{name} {seconds:.1f}s" for name, seconds in phases.items()))
    return BuildResult({s: f.jsonl for s, f in finals.items()}, manifests, quotas=quotas, stats=stats)


def dry_run(config: MixtureConfig, options: BuildOptions) -> BuildResult:
    """Scan and allocate without touching the output folder: what `build --dry-run` prints."""
    import tempfile

    config.raise_if_invalid()
    tasks = make_plan(config)
    executor = make_executor(options)
    try:
        with tempfile.TemporaryDirectory(prefix="mixprep-dry-run-") as work:
            results = _scan(config, tasks, executor, work, options.progress)
            stats = _stats_by_dataset(config, tasks, results)
            arrays = _load_scan_arrays(config, tasks, results)
            if config.dedup is not None:
                arrays, _ = _deduplicate(config, tasks, arrays, stats, work)
            quotas = _quotas(config, stats, arrays, check=False)
    finally:
        executor.close()
    return BuildResult({}, {}, quotas=quotas, stats=stats)


def _key_options(config: MixtureConfig, options: BuildOptions) -> dict[str, Any]:
    return {"parquet_compression": options.parquet_compression, "write_rejected": options.write_rejected, "mixprep": __version__}


def _reuse(finals: dict[str, SplitFiles], key: str) -> dict[str, dict[str, Any]] | None:
    manifests = {}
    for split, files in finals.items():
        manifest = read_manifest(files.manifest)
        if manifest is None or manifest.get("build_key") != key:
            return None
        if not outputs_intact(manifest, files.jsonl, files.parquet, files.index):
            return None
        manifests[split] = manifest
    return manifests


def _prepare_output_dir(path: Path) -> Path:
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        msg = f"output folder {path} cannot be created: {exc.strerror or exc}"
        raise OutputError(msg) from None
    if not os.access(path, os.W_OK | os.X_OK):
        msg = f"output folder {path} is not writable; choose another with --output-dir"
        raise OutputError(msg)
    return path


def _make_work_dir(out_dir: Path, config: MixtureConfig) -> Path:
    root = out_dir / TMP_FOLDER
    prefix = f"{config.phase}_{config.name}."
    try:
        root.mkdir(exist_ok=True)
        _remove_abandoned(root, prefix)
        work = root / f"{prefix}{os.getpid()}.{os.urandom(4).hex()}"
        work.mkdir()
    except OSError as exc:
        msg = f"output folder {out_dir} is not writable: {exc.strerror or exc}"
        raise OutputError(msg) from None
    return work


def _remove_work_dir(work: Path) -> None:
    shutil.rmtree(work, ignore_errors=True)
    try:
        work.parent.rmdir()  # only when no other build is using it
    except OSError:
        pass


def _remove_abandoned(root: Path, prefix: str) -> None:
    """Delete work folders of killed builds of this mixture (their process is gone)."""
    for entry in root.glob(f"{prefix}*"):
        try:
            pid = int(entry.name[len(prefix):].split(".")[0])
        except ValueError:
            continue
        if not _process_alive(pid):
            shutil.rmtree(entry, ignore_errors=True)


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# -- scan ---------------------------------------------------------------------------

def _scan(
    config: MixtureConfig,
    tasks: list[ScanTask],
    executor: Executor,
    work: str,
    progress: bool | None,
    *,
    write_rejected: bool = False,
) -> list[ScanResult]:
    jobs = [
        ScanJob(
            task=task,
            schema=config.record_schema,
            text_field=config.datasets[task.dataset].text_field,
            filters=config.datasets[task.dataset].filters,
            on_bad_record=config.on_bad_record,
            filter_on=config.filter_on,
            seed=config.seed,
            work_dir=work,
            dedup=config.dedup,
            write_rejected=write_rejected,
            annotate_language=config.annotate_language,
        )
        for task in tasks
    ]
    bar = Progress("scan", sum(t.end - t.start for t in tasks), progress)
    results = []
    try:
        for task, result in zip(tasks, executor.map(scan_task, jobs)):
            results.append(result)
            bar.advance(task.end - task.start, result.stats.read)
    finally:
        bar.close()
    return results


@dataclass(frozen=True)
class SourceArrays:
    """One dataset's kept records across its tasks, in plan order."""

    keys: np.ndarray  # identity hash
    lengths: np.ndarray  # uint32 output bytes (approximate for pretrain: the text)
    tasks: np.ndarray  # int32 task id
    rows: np.ndarray  # uint32 row in the task's scan file


def _stats_by_dataset(config: MixtureConfig, tasks: list[ScanTask], results: list[ScanResult]) -> dict[str, ScanStats]:
    stats = {d.name: ScanStats() for d in config.datasets}
    for task, result in zip(tasks, results):
        if task.role == "main":
            stats[task.dataset_name] = stats[task.dataset_name] + result.stats
    return stats


def _load_scan_arrays(
    config: MixtureConfig, tasks: list[ScanTask], results: list[ScanResult]
) -> dict[tuple[int, str], SourceArrays]:
    parts: dict[tuple[int, str], list[tuple[int, np.ndarray]]] = {}
    for task, result in zip(tasks, results):
        parts.setdefault((task.dataset, task.role), []).append((task.task_id, np.load(result.keys_path)))
    arrays = {}
    for group, items in parts.items():
        tables = [table for _, table in items]
        # Narrow types: the driver holds these for every kept record (20 bytes each).
        arrays[group] = SourceArrays(
            keys=np.concatenate([t[:, 0] for t in tables]),
            lengths=np.concatenate([np.minimum(t[:, 1], np.iinfo(np.uint32).max).astype(np.uint32) for t in tables]),
            tasks=np.concatenate([np.full(len(t), task_id, dtype=np.int32) for task_id, t in items]),
            rows=np.concatenate([np.arange(len(t), dtype=np.uint32) for t in tables]),
        )
    return arrays


def _deduplicate(
    config: MixtureConfig,
    tasks: list[ScanTask],
    arrays: dict[tuple[int, str], SourceArrays],
    stats: dict[str, ScanStats],
    work: str,
) -> tuple[dict[tuple[int, str], SourceArrays], dict[str, dict[str, int]]]:
    """Drop duplicates across the main sources (counted as removed by `dedup`), then the
    records of validation sources that duplicate a train-source record or each other.

    Returns the arrays and, per dataset with a validation source, what its validation
    records lost: {"duplicate_of_train": n, "dedup": m}.
    """
    width = 1 if config.dedup is None or config.dedup.method == "exact" else config.dedup.bands()[0]
    prints: dict[tuple[int, str], list[np.ndarray]] = {}
    for task in tasks:  # in plan order, as _load_scan_arrays concatenates each group
        group = (task.dataset, task.role)
        if group in arrays:
            table = np.load(prints_path(work, task.task_id))
            prints.setdefault(group, []).append(table.reshape(len(table), width))
    main = [(i, "main") for i in range(len(config.datasets)) if (i, "main") in prints]
    held = [(i, "validation") for i in range(len(config.datasets)) if (i, "validation") in prints]
    result = dict(arrays)
    validation_removed: dict[str, dict[str, int]] = {}
    if not main:
        return result, validation_removed
    main_prints = np.concatenate([np.concatenate(prints[g]) for g in main])
    drop = duplicates(main_prints, np.concatenate([arrays[g].keys for g in main]))
    for group, keep in zip(main, _split_mask(~drop, [len(arrays[g].keys) for g in main])):
        name = config.datasets[group[0]].name
        removed = int(len(keep) - keep.sum())
        if removed:
            stats[name].removed["dedup"] += removed
            stats[name].kept -= removed
        result[group] = _kept(arrays[group], keep)
    if held:
        # A validation record in the same fingerprint group as any train-source record
        # would leak train data into validation: drop it (and repeats inside validation).
        held_prints = np.concatenate([np.concatenate(prints[g]) for g in held])
        labels = fingerprint_groups(np.concatenate([main_prints, held_prints]))
        held_labels = labels[len(main_prints) :]
        seen_in_train = np.isin(held_labels, labels[: len(main_prints)])
        # A group with no train record is a group of validation records alone: the same
        # survivor as deduplicating validation by itself.
        repeated = all_but_survivors(held_labels, np.concatenate([arrays[g].keys for g in held]))
        sizes = [len(arrays[g].keys) for g in held]
        for group, in_train, again in zip(held, _split_mask(seen_in_train, sizes), _split_mask(repeated & ~seen_in_train, sizes)):
            name = config.datasets[group[0]].name
            validation_removed[name] = {"duplicate_of_train": int(in_train.sum()), "dedup": int(again.sum())}
            result[group] = _kept(arrays[group], ~(in_train | again))
            if in_train.any() or again.any():
                log.info("dataset %r: dropped %d validation records that duplicate train records, %d repeats within validation",
                         name, int(in_train.sum()), int(again.sum()))
    return result, validation_removed


def _split_mask(mask: np.ndarray, sizes: list[int]) -> list[np.ndarray]:
    return np.split(mask, np.cumsum(sizes)[:-1]) if sizes else []


def _kept(source: SourceArrays, keep: np.ndarray) -> SourceArrays:
    return SourceArrays(source.keys[keep], source.lengths[keep], source.tasks[keep], source.rows[keep])


def _collect_rejected(
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
            plan = np.empty(int(dropped.sum()), dtype=BUCKET_DTYPE)
            plan["task"], plan["row"], plan["dataset"] = source.tasks[dropped], source.rows[dropped], group[0]
            name = config.datasets[group[0]].name
            for value in gather(plan, work).to_pylist():
                out.write(rejected_line(value, name, "dedup", config.record_schema))


# -- allocation -----------------------------------------------------------------------

def _quotas(
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
    quotas = plan_quotas(counts, total_samples=config.total_samples, validation=shares)
    if check:
        _check_quotas(config, counts, quotas, stats)
    return quotas


def _check_quotas(config: MixtureConfig, counts: list[SourceCounts], quotas: list[Quota], stats: dict[str, ScanStats]) -> None:
    for dataset, count, quota in zip(config.datasets, counts, quotas):
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
            msg = f"dataset {dataset.name!r}: needs {quota.quota} records but none are available ({explain(stats[dataset.name], dataset.source.describe())})"
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


def _select(
    config: MixtureConfig, quotas: list[Quota], arrays: dict[tuple[int, str], SourceArrays]
) -> list[SourceSelection]:
    empty = SourceArrays(np.zeros(0, np.uint64), np.zeros(0, np.uint64), np.zeros(0, np.int32), np.zeros(0, np.int64))
    selections = []
    for i, (dataset, quota) in enumerate(zip(config.datasets, quotas)):
        main = arrays.get((i, "main"), empty)
        validation = arrays.get((i, "validation"))
        if dataset.validation_source is not None and validation is None:
            validation = empty
        selections.append(choose(main.keys, None if validation is None else validation.keys, quota, dataset.max_samples))
    return selections


# -- write ------------------------------------------------------------------------------

def _write_split(
    config: MixtureConfig,
    json_fields: tuple[str, ...],
    split: str,
    selections: list[SourceSelection],
    arrays: dict[tuple[int, str], SourceArrays],
    tmp: SplitFiles,
    executor: Executor,
    work: str,
    options: BuildOptions,
    phases: dict[str, float],
) -> OutputInfo:
    with timed(phases, "partition"):
        plan, sizes = _final_order(config, split, selections, arrays)
        partitions, jobs, bucket_sizes = _partition_and_bucket_jobs(config, split, plan, sizes, work, json_fields)
        del plan, sizes  # on disk now, one file per task; the driver keeps only bucket totals
        for _ in executor.map(partition, partitions):
            pass
    with timed(phases, "write"):
        return _write_buckets(config, split, jobs, bucket_sizes, tmp, executor, options)


def _write_buckets(
    config: MixtureConfig,
    split: str,
    jobs: list[BucketJob],
    bucket_sizes: list[int],
    tmp: SplitFiles,
    executor: Executor,
    options: BuildOptions,
) -> OutputInfo:
    writer = SplitWriter(tmp, config.text_values, options.parquet_compression)
    bar = Progress(f"write {split}", sum(bucket_sizes), options.progress)
    try:
        for result in executor.map(write_bucket, jobs):
            writer.add(result)
            # Sizes are estimates (text bytes); advance by them so the bar ends at 100%.
            bar.advance(bucket_sizes[result.bucket], result.records)
        return writer.finish()
    except OSError as exc:
        # Disk full, quota, I/O error: a user problem, reported without a traceback.
        writer.abort()
        msg = f"cannot write the {split} split of {tmp.jsonl.name} in {tmp.jsonl.parent}: {exc.strerror or exc}"
        raise OutputError(msg) from None
    except BaseException:
        writer.abort()
        raise
    finally:
        bar.close()


# Fields whose shape the record schema checks: kept as Arrow structs/lists in the sidecar.
MESSAGE_FIELDS = ("conversations", "prompt", "chosen", "rejected")


def sidecar_json_fields(schema: str, results: list[ScanResult]) -> tuple[str, ...]:
    """Structured phases: the fields the Parquet sidecar stores as JSON text.

    A field whose JSON type varies between records (DPO's `chosen`: string or messages)
    has no single Arrow type; a nested field outside the checked message fields may
    disagree inside (a `meta` object with a number here and a string there). Decided
    from every scanned record, validation sources included, so all buckets agree."""
    if schema == "pretrain":
        return ()
    kinds: dict[str, set[str]] = {}
    for result in results:
        for name, kind in result.stats.field_kinds:
            kinds.setdefault(name, set()).add(kind)
    nested = {"array", "object"}
    return tuple(
        sorted(
            name
            for name, found in kinds.items()
            if len(found) > 1 or (found & nested and name not in MESSAGE_FIELDS)
        )
    )


def _final_order(
    config: MixtureConfig,
    split: str,
    selections: list[SourceSelection],
    arrays: dict[tuple[int, str], SourceArrays],
) -> tuple[np.ndarray, np.ndarray]:
    """Every selected copy of the split as (task, row, dataset), in shuffled order, and its size."""
    keys, sources = [], []
    for i, (dataset, selection) in enumerate(zip(config.datasets, selections)):
        chosen = selection.train if split == "train" else selection.validation
        role = "validation" if split == "validation" and dataset.validation_source is not None else "main"
        source = arrays.get((i, role))
        if source is not None and len(chosen.rows):
            keys.append(shuffle_keys(source.keys[chosen.rows], chosen.copies))
            sources.append((i, source, chosen.rows))
    if not keys:
        return np.empty(0, dtype=BUCKET_DTYPE), np.zeros(0, dtype=np.uint32)
    order = np.argsort(np.concatenate(keys), kind="stable")
    del keys
    plan = np.empty(len(order), dtype=BUCKET_DTYPE)
    for name, column in (("task", "tasks"), ("row", "rows"), ("dataset", None)):
        if column is None:
            values = np.concatenate([np.full(len(rows), i, dtype=np.int32) for i, _, rows in sources])
        else:
            values = np.concatenate([getattr(source, column)[rows] for _, source, rows in sources])
        plan[name] = values[order]
    sizes = np.concatenate([source.lengths[rows] for _, source, rows in sources])[order]
    return plan, sizes


def _partition_and_bucket_jobs(
    config: MixtureConfig, split: str, plan: np.ndarray, sizes: np.ndarray, work: str, json_fields: tuple[str, ...]
) -> tuple[list[PartitionJob], list[BucketJob], list[int]]:
    """Cut the final order into buckets of about `shuffle_bucket_mb`, and give each scan task
    the list of its records with their final positions. Also returns each bucket's size estimate."""
    bucket_bytes = config.shuffle_bucket_mb * 1024 * 1024
    cumulative = np.cumsum(sizes, dtype=np.uint64)
    if len(plan):
        cuts = np.searchsorted(cumulative, np.arange(bucket_bytes, int(cumulative[-1]), bucket_bytes, dtype=np.uint64), side="right")
        bounds = [0, *sorted(set(int(c) for c in cuts) - {0, len(plan)}), len(plan)]
    else:
        bounds = [0, 0]
    folder = Path(work) / f"plan-{split}"
    folder.mkdir(exist_ok=True)
    bounds_path = folder / "bounds.npy"
    np.save(bounds_path, np.array(bounds, dtype=np.int64))
    partitions = []
    by_task = np.argsort(plan["task"], kind="stable")  # positions ascend within each task
    task_ids, firsts = np.unique(plan["task"][by_task], return_index=True)
    ends = list(firsts[1:]) + [len(plan)]
    for task_id, lo, hi in zip(task_ids.tolist(), firsts.tolist(), ends):
        positions = by_task[lo:hi]
        part = np.empty(len(positions), dtype=PART_DTYPE)
        part["row"], part["position"], part["dataset"] = plan["row"][positions], positions, plan["dataset"][positions]
        path = folder / f"task-{task_id:06d}.npy"
        np.save(path, part)
        partitions.append(PartitionJob(split, task_id, str(path), str(bounds_path), work))
    names = tuple(d.name for d in config.datasets)
    buckets = [
        BucketJob(split, b, config.record_schema, names, work, json_fields, config.text_values)
        for b in range(len(bounds) - 1)
    ]
    totals = np.concatenate(([0], cumulative))[bounds].astype(np.int64)
    return partitions, buckets, np.diff(totals).tolist()


