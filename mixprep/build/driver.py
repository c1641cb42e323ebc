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
import dataclasses
import logging
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from mixprep import __version__
from mixprep.build.card import CARD_NAME, write_card
from mixprep.build.contamination import count_decontaminated, decontamination_entry, decontamination_index
from mixprep.build.decontaminate import DecontIndex, EvalFile, eval_files
from mixprep.build.executors import Executor, LocalExecutor, held_signals, make_executor
from mixprep.build.hashsort import start_loading_kernel as start_loading_sort_kernel
from mixprep.build.manifest import (
    build_key,
    input_fingerprints,
    outputs_intact,
    rebuild_reason,
    split_manifest,
    write_manifest,
)
from mixprep.build.outputs import SplitFiles, commit, packed_files, rejected_name
from mixprep.build.packed import PackedSplit, finish_packed_split, start_packed_split
from mixprep.build.sampler import Quota, SourceSelection
from mixprep.build.scan import ScanJob, ScanResult, ScanStats, scan_task
from mixprep.build.select import (
    SourceArrays,
    allocate_quotas,
    check_plan_fits,
    collect_rejected,
    deduplicate,
    load_scan_arrays,
    planned_units,
    select_sources,
    split_characters,
    split_units,
    stats_by_dataset,
)
from mixprep.build.shuffle import final_order, write_jobs
from mixprep.build.sidecar import sidecar_json_fields
from mixprep.build.workdir import (
    check_free_space,
    check_outputs_are_not_inputs,
    check_outputs_are_replaceable,
    make_work_dir,
    out_of_space,
    prepare_output_dir,
    remove_work_dir,
)
from mixprep.build.writers import BucketJob, OutputInfo, SplitWriter, release_caches, write_bucket
from mixprep.config.schema import MixtureConfig
from mixprep.errors import ConfigError, OutputError, SourceError
from mixprep.manifest_file import read_manifest
from mixprep.progress import Progress, TaskCounters
from mixprep.report import write_report
from mixprep.sources.plan import ScanTask, changed_inputs, input_bytes, make_plan

log = logging.getLogger(__name__)


SPLITS = ("train", "validation")
SMALL_INPUT_BYTES = 64_000_000
"""Below this much input a local build runs its tasks in this process whatever `--workers`
says: starting worker processes (each imports polars, numba and pyarrow) and waiting for
them to exit costs more than they would save."""


@dataclass(frozen=True)
class BuildOptions:
    output_dir: Path
    splits: tuple[str, ...] | None = None  # None: every split the mixture defines
    workers: int = 1
    force: bool = False
    executor: Literal["local", "ray"] = "local"
    ray_address: str | None = None
    parquet_compression: str = "zstd"  # measured: see the README's Outputs table
    progress: bool | None = None  # None: a bar when stderr is a terminal
    write_rejected: bool = False
    sha256: bool = False  # also record the whole JSONL's sha256 (`sha256sum`-compatible; one serial pass)
    small_input_bytes: int = SMALL_INPUT_BYTES  # below this much input, `workers > 1` runs in this process
    report: bool = True  # also draw <phase>_<name>.report.html


@dataclass
class BuildResult:
    files: dict[str, Path]
    manifests: dict[str, dict[str, Any]]
    reused: bool = False
    quotas: list[Quota] = field(default_factory=list)
    stats: dict[str, ScanStats] = field(default_factory=dict)
    units: dict[str, dict[str, int]] = field(default_factory=dict)
    """`dry_run`: per dataset, the bytes, characters and tokens its train quota would take."""


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
    started_cpu, started = time.process_time(), time.perf_counter()
    config.raise_if_invalid()
    splits = requested_splits(config, options.splits)
    out_dir = prepare_output_dir(options.output_dir)
    tasks = make_plan(config)
    evals = eval_files(config.decontaminate)
    rejected_final = out_dir / rejected_name(config.phase, config.name)
    every_output = [rejected_final, *(p for s in SPLITS for p in SplitFiles.for_stem(out_dir, config.stem(s)).all())]
    every_output += [p for s in SPLITS for p in packed_files(out_dir, config.stem(s))]
    check_outputs_are_not_inputs(config, out_dir, every_output, [t.file.path for t in tasks] + [e.file.path for e in evals])
    check_outputs_are_replaceable(every_output)
    base = config.path.resolve().parent
    inputs = input_fingerprints(tasks, base, evals)
    key = build_key(config.raw_digest, inputs, _key_options(config, options))
    finals = {split: SplitFiles.for_stem(out_dir, config.stem(split)) for split in splits}
    if options.force:
        log.info("rebuilding: --force")
    else:
        reused, why = _reuse(finals, key, options, rejected_final)
        if reused is not None:
            log.info("outputs are up to date (config and inputs unchanged); use --force to rebuild")
            _write_card(out_dir, config)
            return BuildResult({s: f.jsonl for s, f in finals.items()}, reused, reused=True)
        if not why:
            first = read_manifest(next(iter(finals.values())).manifest)
            why = rebuild_reason(first, config_digest=config.raw_digest, inputs=inputs, options=_key_options(config, options))
        log.info("rebuilding: %s", why)

    phases: dict[str, float] = {}
    if options.workers > 1 or options.executor == "ray":
        # This process waits for its workers to start and then to scan: it loads the sort
        # that selection and the shuffle need meanwhile, instead of after the scan (~0.3 s).
        start_loading_sort_kernel()
    executor = _executor_for(options, tasks)
    work: Path | None = None
    report_lengths: dict[str, dict[str, np.ndarray]] | None = None
    try:
        # Signals held while the folder is made: one between its mkdir and this assignment
        # would leave a folder that the `finally` below does not know to remove.
        with held_signals():
            work = make_work_dir(out_dir, config)
        index, eval_summaries = None, {}
        if config.decontaminate is not None:
            with timed(phases, "decontamination index"):
                index, eval_summaries = decontamination_index(config, evals, str(work))
        with timed(phases, "scan"):
            results = _scan(
                config, tasks, executor, str(work), options.progress, write_rejected=options.write_rejected, decontaminate=index
            )
        _check_inputs_unchanged(tasks, evals)
        selecting = time.perf_counter()
        stats = stats_by_dataset(config, tasks, results)
        json_fields = sidecar_json_fields(config.record_schema, results)
        arrays = load_scan_arrays(config, tasks, results)
        deduplicated, validation_removed = arrays, {}
        if config.dedup is not None:
            deduped = deduplicate(config, tasks, arrays, stats, str(work))
            deduplicated, stats, validation_removed = deduped.arrays, deduped.stats, deduped.validation_removed
        if index is not None:
            count_decontaminated(tasks, results, eval_summaries, validation_removed)
        extras = []
        if options.write_rejected:
            rejected = work / rejected_final.name
            collect_rejected(config, tasks, arrays, deduplicated, rejected, str(work))
            extras.append((rejected, out_dir / rejected.name))
        arrays = deduplicated
        quotas = allocate_quotas(config, stats, arrays)
        check_plan_fits(config, quotas, arrays, out_dir)
        selections = select_sources(config, quotas, arrays)
        if config.record_schema == "pretrain":  # the report's histograms, known here without reading the texts again
            report_lengths = {split: split_characters(config, split, selections, arrays) for split in splits}
        phases["select"] = time.perf_counter() - selecting
        manifests: dict[str, dict[str, Any]] = {}
        pairs = []
        for split in splits:
            tmp = SplitFiles.for_stem(work, config.stem(split))
            info, packed = _write_split(config, json_fields, split, selections, arrays, tmp, executor, str(work), options, phases)
            packed_entry = None
            if packed is not None:
                assert config.pack is not None
                final_bin, final_idx = packed_files(out_dir, config.stem(split))
                packed_entry = finish_packed_split(packed, list(info.token_digests), config.pack.seq_len, final_bin, final_idx)
                extras += [(packed.bin_tmp, final_bin), (packed.idx_tmp, final_idx)]
            manifests[split] = split_manifest(
                config, split, key, inputs, stats, quotas, selections, info, finals[split], options.parquet_compression,
                units=split_units(config, split, selections, arrays),
                validation_removed=validation_removed,
                write_rejected=options.write_rejected,
                decontamination=decontamination_entry(config, eval_summaries),
                packed=packed_entry,
            )
            write_manifest(tmp.manifest, manifests[split])
            pairs.append((tmp, finals[split]))
        _check_inputs_unchanged(tasks, evals)  # the write stage read kept texts back from the inputs
        with timed(phases, "commit"):
            commit(pairs, extras)
            if not options.write_rejected:
                rejected_final.unlink(missing_ok=True)  # it described an earlier build, not this one
            if config.pack is None:  # packed files of an earlier build with `pack` describe other outputs
                for split in splits:
                    for stale in packed_files(out_dir, config.stem(split)):
                        stale.unlink(missing_ok=True)
    except BaseException as exc:
        # An error or a signal (Ctrl-C, SIGTERM): stop the workers now rather than waiting
        # for their tasks, then remove what they wrote.
        executor.close(abort=True)
        full = None if work is None else out_of_space(exc, work, sum(t.end - t.start for t in tasks))
        if full is not None:
            raise full from None
        raise
    finally:
        with timed(phases, "cleanup"), held_signals():  # a second signal must not leave half the work folder
            executor.close()
            if work is not None:
                remove_work_dir(work)
    log.info("time by phase: %s", ", ".join(f"{name} {seconds:.1f}s" for name, seconds in phases.items()))
    _write_card(out_dir, config)
    if options.report:
        _write_report(out_dir, config, phases, tasks, options, report_lengths)
    # With a pool, this process's own CPU time is the build's serial part (benchmarks/bench_build.py reads it).
    log.info("driver: %.2f CPU-s in %.1f s", time.process_time() - started_cpu, time.perf_counter() - started)
    return BuildResult({s: f.jsonl for s, f in finals.items()}, manifests, quotas=quotas, stats=stats)


def dry_run(config: MixtureConfig, options: BuildOptions) -> BuildResult:
    """Scan and allocate without touching the output folder: what `build --dry-run` prints."""
    import tempfile

    config.raise_if_invalid()
    tasks = make_plan(config)
    evals = eval_files(config.decontaminate)
    executor = _executor_for(options, tasks)
    try:
        with tempfile.TemporaryDirectory(prefix="mixprep-dry-run-") as work:
            try:
                index, _ = decontamination_index(config, evals, work)
                results = _scan(config, tasks, executor, work, options.progress, decontaminate=index)
            except OSError as exc:
                full = out_of_space(exc, Path(work), sum(t.end - t.start for t in tasks))
                if full is not None:
                    raise full from None
                raise
            stats = stats_by_dataset(config, tasks, results)
            arrays = load_scan_arrays(config, tasks, results)
            if config.dedup is not None:
                deduped = deduplicate(config, tasks, arrays, stats, work)
                arrays, stats = deduped.arrays, deduped.stats
            quotas = allocate_quotas(config, stats, arrays, check=False)
            units = planned_units(config, quotas, arrays)
    except BaseException:
        executor.close(abort=True)
        raise
    finally:
        executor.close()
    return BuildResult({}, {}, quotas=quotas, stats=stats, units=units)


def _write_card(out_dir: Path, config: MixtureConfig) -> None:
    """The folder's dataset card, after the outputs it describes are in place (a card that
    cannot be written costs a warning, not the build)."""
    try:
        write_card(out_dir, f"{config.phase}_{config.name}")
    except OSError as exc:
        log.warning("the dataset card %s was not written: %s", out_dir / CARD_NAME, exc.strerror or exc)


def _write_report(
    out_dir: Path,
    config: MixtureConfig,
    phases: dict[str, float],
    tasks: list[ScanTask],
    options: BuildOptions,
    lengths: dict[str, dict[str, np.ndarray]] | None,
) -> None:
    """The HTML report, with how this build ran (the outputs are in place already: a report
    that cannot be written costs a warning, not the build). `lengths`: per split and
    source, the characters of each text written, when the build knows them (pretrain)."""
    started = time.perf_counter()
    facts = {
        "seconds_by_phase": dict(phases),
        "input_bytes": sum({t.file.path: t.file.size for t in tasks}.values()),
        "workers": options.workers,
    }
    try:
        path = write_report(out_dir, config.phase, config.name, facts, lengths=lengths)
    except (OSError, OutputError) as exc:
        log.warning("the report was not written: %s", getattr(exc, "strerror", None) or exc)
        return
    log.info("report: %s (%.2fs)", path, time.perf_counter() - started)


def _check_inputs_unchanged(tasks: list[ScanTask], evals: list[EvalFile]) -> None:
    changes = changed_inputs(tasks, [e.file for e in evals])
    if changes:
        msg = (
            f"{len(changes)} input file(s) changed while the build read them, so what was read is not what the "
            f"manifest would record: {'; '.join(changes[:5])}; rerun once they are no longer being written"
        )
        raise SourceError(msg)


def _executor_for(options: BuildOptions, tasks: list[ScanTask]) -> Executor:
    workers = options.workers
    if options.executor == "local" and workers > 1:
        size = input_bytes(tasks)
        if size < options.small_input_bytes:
            log.info("small input (%.1f MB): running the build in this process instead of %d workers", size / 1e6, workers)
            workers = 1
    return make_executor(options.executor, workers, ray_address=options.ray_address)


def _key_options(config: MixtureConfig, options: BuildOptions) -> dict[str, Any]:
    # Not write_rejected: the outputs do not depend on it (see `_reuse`).
    key = {"parquet_compression": options.parquet_compression, "sha256": options.sha256, "mixprep": __version__}
    if config.pack is not None:  # `--pack` is not in the YAML's digest
        key["pack"] = dataclasses.asdict(config.pack)
    return key


def _reuse(finals: dict[str, SplitFiles], key: str, options: BuildOptions, rejected: Path) -> tuple[dict[str, dict[str, Any]] | None, str]:
    """The manifests of reusable outputs, or None and why they cannot be reused."""
    manifests = {}
    for split, files in finals.items():
        manifest = read_manifest(files.manifest)
        if manifest is None or manifest.get("build_key") != key:
            return None, ""
        if not outputs_intact(manifest, files.jsonl, files.parquet, files.index):
            return None, f"{files.jsonl.name} or its sidecars were edited or removed since they were built"
        packed = manifest.get("output", {}).get("packed")
        if packed is not None and not _packed_intact(packed, files.jsonl.parent):
            return None, f"{packed['bin']} or {packed['idx']} were edited or removed since they were built"
        if options.write_rejected and not (manifest.get("options", {}).get("write_rejected") and rejected.is_file()):
            return None, "--write-rejected asks for the removed records, which the earlier build did not write"
        manifests[split] = manifest
    return manifests, ""


def _packed_intact(packed: dict[str, Any], folder: Path) -> bool:
    bin_path, idx_path = folder / packed["bin"], folder / packed["idx"]
    return bin_path.is_file() and idx_path.is_file() and bin_path.stat().st_size == packed["bytes"]


# -- scan ---------------------------------------------------------------------------

def _scan(
    config: MixtureConfig,
    tasks: list[ScanTask],
    executor: Executor,
    work: str,
    progress: bool | None,
    *,
    write_rejected: bool = False,
    decontaminate: DecontIndex | None = None,
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
            decontaminate=decontaminate,
            tokenizer=config.tokenizer,
        )
        for task in tasks
    ]
    bar = Progress("scan", sum(t.end - t.start for t in tasks), progress)
    # Local tasks report while they run; Ray's (on other machines) when they finish.
    live = isinstance(executor, LocalExecutor)
    if live:
        counters = TaskCounters(os.path.join(work, "progress.bin"), len(tasks))
        jobs = [dataclasses.replace(job, progress_path=counters.path) for job in jobs]
        bar.follow(counters)
    results = []
    try:
        for task, result in zip(tasks, executor.map(scan_task, jobs), strict=True):
            results.append(result)
            if not live:
                bar.advance(task.end - task.start, result.stats.read)
    finally:
        bar.close()
    return results


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
) -> tuple[OutputInfo, PackedSplit | None]:
    with timed(phases, "order"):
        plan, sizes, tokens = final_order(config, split, selections, arrays)
        jobs, offsets = write_jobs(config, split, plan, sizes, work, str(tmp.jsonl), json_fields)
        packed = None
        if config.pack is not None:
            packed = start_packed_split(config, config.stem(split), tokens, offsets, [job.start for job in jobs], work)
            jobs = [dataclasses.replace(job, packed=packed.target) for job in jobs]
        jobs = [dataclasses.replace(job, sidecar_compression=options.parquet_compression) for job in jobs]
        if options.executor == "ray":
            jobs = [dataclasses.replace(job, keep_caches=False) for job in jobs]
        elif getattr(executor, "in_this_process", False) and config.text_values:
            jobs = [dataclasses.replace(job, sidecar_in_memory=True) for job in jobs]
        del plan, sizes, tokens  # on disk now; the driver keeps only the line offsets (for the index)
    with timed(phases, "write"):
        return _write_buckets(config, split, jobs, offsets, tmp, executor, options), packed


def _write_buckets(
    config: MixtureConfig,
    split: str,
    jobs: list[BucketJob],
    offsets: np.ndarray,
    tmp: SplitFiles,
    executor: Executor,
    options: BuildOptions,
) -> OutputInfo:
    size = int(offsets[-1])
    check_free_space(options.output_dir, size)
    writer = None
    bar = Progress(f"write {split}", size, options.progress)
    try:
        writer = SplitWriter(
            tmp, config.text_values, options.parquet_compression, size,
            chunk_bytes=config.shuffle_bucket_mb << 20, encoded_parts=not all(job.sidecar_in_memory for job in jobs),
        )
        for result in executor.map(write_bucket, jobs):
            writer.add(result)
            bar.advance(result.nbytes, result.records)
        return writer.finish(offsets, whole_sha256=options.sha256)
    except OSError as exc:
        # Disk full, quota, I/O error: a user problem, reported without a traceback.
        if writer is not None:
            writer.abort()
        msg = f"cannot write the {split} split of {tmp.jsonl.name} in {tmp.jsonl.parent}: {exc.strerror or exc}"
        raise OutputError(msg) from None
    except BaseException:
        if writer is not None:
            writer.abort()
        raise
    finally:
        bar.close()
        release_caches()  # the buffers and scan facts of write tasks or gathers run in this process
