"""The global shuffle: every selected copy in its final position, cut into buckets.

The final order is a sort by seeded shuffle keys (`sampler.shuffle_keys`), so it does
not depend on tasks or workers. The order is cut into buckets of about
`shuffle_bucket_mb` (memory bound of the write stage) and handed back to each scan
task as (row, position) pairs, so the partition stage reads each scan file once.
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from mixprep.build.sampler import SourceSelection, shuffle_keys
from mixprep.build.select import SourceArrays
from mixprep.build.writers import BUCKET_DTYPE, PART_DTYPE, BucketJob, PartitionJob
from mixprep.config.schema import MixtureConfig

log = logging.getLogger(__name__)


def final_order(
    config: MixtureConfig,
    split: str,
    selections: list[SourceSelection],
    arrays: dict[tuple[int, str], SourceArrays],
) -> tuple[np.ndarray, np.ndarray]:
    """Every selected copy of the split as (task, row, dataset), in shuffled order, and its size."""
    keys, sources = [], []
    for i, (dataset, selection) in enumerate(zip(config.datasets, selections, strict=True)):
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


def partition_and_bucket_jobs(
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
    for task_id, lo, hi in zip(task_ids.tolist(), firsts.tolist(), ends, strict=True):
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


