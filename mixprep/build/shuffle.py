"""The global shuffle: every selected copy at its final byte offset, cut into write tasks.

The final order is a sort by seeded shuffle keys (`sampler.shuffle_keys`), so it does
not depend on tasks or workers. The scan counted every record's exact output length,
so the final file's offsets are a prefix sum (numpy, in the driver). The file is cut
into buckets of exactly `shuffle_bucket_mb` MiB of output (the last one shorter): each
write task encodes the records that overlap its bucket and writes that byte range of
the final file, so buckets are also the chunks of the output's checksum. A record that
straddles a cut is encoded by both tasks and each writes its own part of it.
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from mixprep.build.hashsort import stable_argsort
from mixprep.build.sampler import SourceSelection, shuffle_keys
from mixprep.build.select import SourceArrays
from mixprep.build.writers import PLAN_DTYPE, BucketJob
from mixprep.config.schema import MixtureConfig

log = logging.getLogger(__name__)


def final_order(
    config: MixtureConfig,
    split: str,
    selections: list[SourceSelection],
    arrays: dict[tuple[int, str], SourceArrays],
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every selected copy of the split as (task, row, dataset), in shuffled order, its size
    (bytes of its line) and its tokens (0 without a tokenizer)."""
    keys, sources = [], []
    for i, (dataset, selection) in enumerate(zip(config.datasets, selections, strict=True)):
        chosen = selection.train if split == "train" else selection.validation
        role = "validation" if split == "validation" and dataset.validation_source is not None else "main"
        source = arrays.get((i, role))
        if source is not None and len(chosen.rows):
            keys.append(shuffle_keys(source.keys[chosen.rows], chosen.copies))
            sources.append((i, source, chosen.rows))
    if not keys:
        return np.empty(0, dtype=PLAN_DTYPE), np.zeros(0, dtype=np.uint64), np.zeros(0, dtype=np.uint32)
    every_key = np.concatenate(keys)
    del keys
    order = stable_argsort(every_key)
    del every_key
    plan = np.empty(len(order), dtype=PLAN_DTYPE)
    for name, column in (("task", "tasks"), ("row", "rows"), ("dataset", None)):
        if column is None:
            values = np.concatenate([np.full(len(rows), i, dtype=np.int32) for i, _, rows in sources])
        else:
            values = np.concatenate([getattr(source, column)[rows] for _, source, rows in sources])
        plan[name] = values[order]
    sizes = np.concatenate([source.lengths[rows] for _, source, rows in sources])[order]
    tokens = np.concatenate([source.tokens[rows] for _, source, rows in sources])[order]
    return plan, sizes, tokens


def write_jobs(
    config: MixtureConfig, split: str, plan: np.ndarray, sizes: np.ndarray, work: str, jsonl_path: str, json_fields: tuple[str, ...]
) -> tuple[list[BucketJob], np.ndarray]:
    """The split's write tasks, one per bucket of output bytes, and the final file's n+1 line offsets."""
    offsets = np.zeros(len(plan) + 1, dtype=np.uint64)
    np.cumsum(sizes, dtype=np.uint64, out=offsets[1:])
    folder = Path(work) / f"plan-{split}"
    folder.mkdir(exist_ok=True)
    plan_path, offsets_path = folder / "plan.npy", folder / "offsets.npy"
    np.save(plan_path, plan)
    np.save(offsets_path, offsets)
    chunk = config.shuffle_bucket_mb * 1024 * 1024
    total = int(offsets[-1])
    names = tuple(d.name for d in config.datasets)
    jobs = [
        BucketJob(
            split=split,
            bucket=b,
            start=start,
            end=min(start + chunk, total),
            schema=config.record_schema,
            source_names=names,
            work_dir=work,
            jsonl_path=jsonl_path,
            plan_path=str(plan_path),
            offsets_path=str(offsets_path),
            json_fields=json_fields,
            text_values=config.text_values,
        )
        for b, start in enumerate(range(0, total, chunk))
    ]
    return jobs, offsets
