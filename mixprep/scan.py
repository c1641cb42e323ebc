"""Scan stage: one task's blocks -> parsed, checked, filtered records on local disk.

`scan_task` is pure with respect to its inputs: it writes the kept records of its
shard to `<work>/scan/<task>.arrow` (pretrain: the text; other phases: the whole
output JSON line) plus `<task>.keys.npy` (per kept record: identity hash and
output size), and returns only counts. Nothing here depends on which process
runs it or when.

The pretrain hot path parses a whole block with Arrow's JSON reader asking for
the text field only; any block it cannot take (a malformed line, a mistyped
field) is re-read line by line with orjson to find exactly which record is bad.
"""
from __future__ import annotations

import io
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import polars as pl
import pyarrow as pa
import pyarrow.ipc as ipc
import pyarrow.json as pajson
import xxhash

from mixprep.config import Phase
from mixprep.dedup import DedupSpec, fingerprints
from mixprep.errors import RecordError
from mixprep.filters import FilterChain, filter_batch, language_feature, language_prefix_of
from mixprep.plan import ScanTask
from mixprep.sampler import splitmix64
from mixprep.sources import LineBlock, TableBlock, line_number, load_json_object, read_blocks

TEXT_SCHEMA = pa.schema([("text", pa.large_string())])
LINE_SCHEMA = pa.schema([("line", pa.large_binary())])
ROLES = ("user", "assistant", "system", "tool", "function")


@dataclass(frozen=True)
class ScanJob:
    task: ScanTask
    schema: Phase
    text_field: str
    filters: FilterChain
    on_bad_record: str
    filter_on: str
    seed: int
    work_dir: str
    dedup: DedupSpec | None = None
    write_rejected: bool = False
    annotate_language: bool = False

    @property
    def text_values(self) -> bool:
        return self.schema == "pretrain" and not self.annotate_language


@dataclass
class ScanStats:
    """Per-source counts; merge with `+`."""

    read: int = 0
    kept: int = 0
    bad: Counter = field(default_factory=Counter)
    removed: Counter = field(default_factory=Counter)
    field_kinds: Counter = field(default_factory=Counter)
    """Structured phases: ("field", "JSON kind") -> records, to pick one sidecar type per field."""

    def __add__(self, other: ScanStats) -> ScanStats:
        return ScanStats(
            self.read + other.read,
            self.kept + other.kept,
            self.bad + other.bad,
            self.removed + other.removed,
            self.field_kinds + other.field_kinds,
        )

    def as_dict(self) -> dict[str, Any]:
        return {"read": self.read, "bad": dict(sorted(self.bad.items())), "removed": dict(sorted(self.removed.items())), "kept": self.kept}


@dataclass(frozen=True)
class ScanResult:
    task_id: int
    stats: ScanStats
    rows_path: str
    keys_path: str


@dataclass(frozen=True)
class Parsed:
    """A block after parsing: output columns for good records, reasons for bad ones."""

    values: pa.Array  # pretrain: text (large_string); other phases: JSON line (large_binary)
    filter_text: pl.Series
    positions: np.ndarray  # uint64 identity positions of the good records
    bad: list[tuple[int, str]]  # (index in block, reason)
    field_kinds: Counter = field(default_factory=Counter)


def rows_path(work_dir: str, task_id: int) -> str:
    return os.path.join(work_dir, "scan", f"{task_id:06d}.arrow")


def keys_path(work_dir: str, task_id: int) -> str:
    return os.path.join(work_dir, "scan", f"{task_id:06d}.keys.npy")


def rejected_path(work_dir: str, task_id: int) -> str:
    return os.path.join(work_dir, "scan", f"{task_id:06d}.rejected.jsonl")


def prints_path(work_dir: str, task_id: int) -> str:
    return os.path.join(work_dir, "scan", f"{task_id:06d}.dedup.npy")


def file_key(job: ScanJob) -> np.uint64:
    task = job.task
    identity = f"{task.role}\0{task.dataset_name}\0{task.file.relpath}".encode()
    return np.uint64(xxhash.xxh64_intdigest(identity, seed=job.seed))


def scan_task(job: ScanJob) -> ScanResult:
    task = job.task
    out_rows, out_keys = rows_path(job.work_dir, task.task_id), keys_path(job.work_dir, task.task_id)
    Path(out_rows).parent.mkdir(parents=True, exist_ok=True)
    stats = ScanStats()
    base_key = file_key(job)
    keys: list[np.ndarray] = []
    prints: list[np.ndarray] = []
    schema = TEXT_SCHEMA if job.text_values else LINE_SCHEMA
    # The annotation reads the prefix the `languages` filter reads, so where that filter
    # runs its verdicts are reused instead of classifying the kept records again.
    annotation = (language_feature(language_prefix_of(job.filters)),) if job.annotate_language else ()
    tmp_rows = unique_tmp(out_rows)
    rejected = open(rejected_path(job.work_dir, task.task_id), "wb") if job.write_rejected else None  # noqa: SIM115
    with pa.OSFile(tmp_rows, "wb") as sink, ipc.new_file(sink, schema) as writer:
        for block in read_blocks(task):
            parsed = parse_block(block, job)
            stats.read += len(parsed.positions) + len(parsed.bad)
            if parsed.bad:
                _handle_bad(block, parsed.bad, job, stats)
            verdict = filter_batch(parsed.filter_text, job.filters, annotation)
            reasons = verdict.reasons
            keep = reasons == 0
            if rejected is not None:
                _write_rejected(rejected, block, parsed, reasons, job)
            for i, count in zip(*np.unique(reasons[~keep], return_counts=True)):
                stats.removed[job.filters[int(i) - 1][0]] += int(count)
            kept_values = parsed.values.filter(pa.array(keep)) if not keep.all() else parsed.values
            kept_texts = parsed.filter_text.filter(pl.Series(keep)) if job.dedup else None
            if annotation and len(kept_values):
                kept_values = with_language(kept_values, verdict.kept_features[annotation[0].name].struct.unnest(), job)
            stats.kept += len(kept_values)
            stats.field_kinds.update(parsed.field_kinds)
            if len(kept_values):
                writer.write_batch(pa.record_batch([kept_values], schema=schema))
                identity = splitmix64(parsed.positions[keep] ^ base_key)
                keys.append(np.stack([identity, _byte_lengths(kept_values)], axis=1))
                if job.dedup is not None:
                    prints.append(fingerprints(kept_texts, job.dedup, job.seed))
    os.replace(tmp_rows, out_rows)
    if rejected is not None:
        rejected.close()
    table = np.concatenate(keys) if keys else np.zeros((0, 2), dtype=np.uint64)
    save_array(out_keys, table)
    if job.dedup is not None:
        width = 1 if job.dedup.method == "exact" else job.dedup.bands()[0]
        stacked = np.concatenate([p.reshape(len(p), width) for p in prints]) if prints else np.zeros((0, width), np.uint64)
        save_array(prints_path(job.work_dir, task.task_id), stacked)
    release_memory()
    return ScanResult(task.task_id, stats, out_rows, out_keys)


def release_memory() -> None:
    """Hand the allocator's cached free pages back to the OS between tasks, so a
    worker's footprint stays at one task's working set instead of its high-water mark."""
    pa.default_memory_pool().release_unused()


def unique_tmp(path: str) -> str:
    """A temporary name no other attempt of the same task uses (Ray may run two at once)."""
    return f"{path}.{os.getpid()}-{os.urandom(4).hex()}.tmp"


def save_array(path: str, array: np.ndarray) -> None:
    tmp = unique_tmp(path)
    with open(tmp, "wb") as handle:  # a handle: np.save adds no ".npy" suffix
        np.save(handle, array)
    os.replace(tmp, path)


def _byte_lengths(values: pa.Array) -> np.ndarray:
    offsets = np.frombuffer(values.buffers()[1], dtype=np.int64)[values.offset : values.offset + len(values) + 1]
    return np.diff(offsets).astype(np.uint64)


def with_language(values: pa.Array, fields: pl.DataFrame, job: ScanJob) -> pa.Array:
    """Output lines with `language` and `language_score` (the columns of `fields`, one row per line) added."""
    if job.schema == "pretrain":
        frame = pl.DataFrame({"text": pl.Series(values), "source": job.task.dataset_name}).hstack(fields)
        encoded = frame.select(pl.struct(pl.all()).struct.json_encode()).to_series()
        return encoded.to_arrow().cast(pa.large_string()).cast(pa.large_binary())
    lines = []
    for line, language, score in zip(values.to_pylist(), fields["language"].to_list(), fields["language_score"].to_list()):
        record = orjson.loads(line)
        source = record.pop("source")
        record.update(language=language, language_score=score, source=source)
        lines.append(orjson.dumps(record))
    return pa.array(lines, type=pa.large_binary())


def rejected_line(value: str | bytes, source: str, reason: str, schema: Phase) -> bytes:
    """One `--write-rejected` line: the record as it would have been written, plus why it was not."""
    if schema == "pretrain" and isinstance(value, str):
        return orjson.dumps({"text": value, "source": source, "reason": reason}) + b"\n"
    record = orjson.loads(value)
    record["reason"] = reason
    return orjson.dumps(record) + b"\n"


def _write_rejected(handle: Any, block: LineBlock | TableBlock, parsed: Parsed, reasons: np.ndarray, job: ScanJob) -> None:
    source = job.task.dataset_name
    for index, reason in parsed.bad:
        if isinstance(block, LineBlock):
            raw = block.data[int(block.starts[index]) : int(block.ends[index])].decode("utf-8", errors="replace")
        else:
            raw = orjson.dumps(block.table.slice(index, 1).to_pylist()[0], default=str).decode()
        entry = {"source": source, "reason": _reason_kind(reason), "detail": reason, "where": _where(block, index, job), "raw": raw}
        handle.write(orjson.dumps(entry) + b"\n")
    removed = np.flatnonzero(reasons)
    if len(removed):
        values = parsed.values.take(pa.array(removed)).to_pylist()
        for value, reason in zip(values, reasons[removed].tolist()):
            handle.write(rejected_line(value, source, job.filters[reason - 1][0], job.schema))


def _handle_bad(block: LineBlock | TableBlock, bad: list[tuple[int, str]], job: ScanJob, stats: ScanStats) -> None:
    if job.on_bad_record == "error":
        index, reason = bad[0]
        msg = f"{_where(block, index, job)}: {reason} (dataset {job.task.dataset_name!r}; set metadata.on_bad_record: skip to skip such records)"
        raise RecordError(msg)
    for _, reason in bad:
        stats.bad[_reason_kind(reason)] += 1


def _reason_kind(reason: str) -> str:
    """The part of a reason that groups records (drops the received value)."""
    return reason.split(" (")[0].split(", got")[0]


def _where(block: LineBlock | TableBlock, index: int, job: ScanJob) -> str:
    path = job.task.file.path
    if isinstance(block, TableBlock):
        return f"{path}: row {int(block.positions[index])}"
    start = int(block.starts[index])
    if block.first_line is not None:
        newlines_before = block.data.count(b"\n", 0, start)
        return f"{path}:{block.first_line + newlines_before}"
    return f"{path}:{line_number(path, block.base_offset + start, job.task.file.storage_options)}"


# -- parsing -------------------------------------------------------------------

def parse_block(block: LineBlock | TableBlock, job: ScanJob) -> Parsed:
    if job.schema == "pretrain":
        if isinstance(block, LineBlock):
            return _pretrain_lines(block, job.text_field)
        return _pretrain_table(block, job.text_field)
    records = _records(block)
    return _structured(records, block.positions, job)


def _pretrain_lines(block: LineBlock, text_field: str) -> Parsed:
    texts = _fast_text_column(block.data, text_field, len(block.starts))
    if texts is not None and texts.null_count == 0:
        return Parsed(texts, pl.Series("text", texts), block.positions, [])
    return _pretrain_slow(block, text_field)


def _fast_text_column(data: bytes, text_field: str, expected_rows: int) -> pa.Array | None:
    options = pajson.ParseOptions(
        explicit_schema=pa.schema([(text_field, pa.large_string())]), unexpected_field_behavior="ignore"
    )
    read_options = pajson.ReadOptions(block_size=max(1 << 22, len(data) // 8 + 1))
    try:
        table = pajson.read_json(io.BytesIO(data), read_options=read_options, parse_options=options)
    except pa.ArrowInvalid as exc:
        if "straddling" not in str(exc):
            return None
        # A record longer than Arrow's block: read the block as one piece.
        try:
            table = pajson.read_json(
                io.BytesIO(data), read_options=pajson.ReadOptions(block_size=len(data) + 1), parse_options=options
            )
        except pa.ArrowInvalid:
            return None
    if table.num_rows != expected_rows or text_field not in table.column_names:
        return None
    return table.column(text_field).combine_chunks()


def _pretrain_slow(block: LineBlock, text_field: str) -> Parsed:
    texts: list[str] = []
    good: list[int] = []
    bad: list[tuple[int, str]] = []
    data = block.data
    for i, (start, end) in enumerate(zip(block.starts.tolist(), block.ends.tolist())):
        reason, record = _load_object(data[start:end])
        if reason is None:
            reason = _text_problem(record, text_field)
        if reason is None:
            texts.append(record[text_field])
            good.append(i)
        else:
            bad.append((i, reason))
    values = pa.array(texts, type=pa.large_string())
    return Parsed(values, pl.Series("text", values), block.positions[good], bad)


def _pretrain_table(block: TableBlock, text_field: str) -> Parsed:
    table = block.table
    n = table.num_rows
    if text_field not in table.column_names:
        return Parsed(pa.array([], pa.large_string()), pl.Series("text", [], pl.String), block.positions[:0], [(i, f"missing field {text_field!r}") for i in range(n)])
    column = table.column(text_field).combine_chunks()
    if not (pa.types.is_string(column.type) or pa.types.is_large_string(column.type) or pa.types.is_null(column.type)):
        reason = f"field {text_field!r} is not a string (got {column.type})"
        return Parsed(pa.array([], pa.large_string()), pl.Series("text", [], pl.String), block.positions[:0], [(i, reason) for i in range(n)])
    column = column.cast(pa.large_string())
    valid = np.asarray(column.is_valid())
    bad = [(int(i), f"field {text_field!r} is missing or null") for i in np.flatnonzero(~valid)]
    values = column.filter(pa.array(valid)) if bad else column
    return Parsed(values, pl.Series("text", values), block.positions[valid], bad)


def _load_object(line: bytes) -> tuple[str | None, Any]:
    try:
        return None, load_json_object(line)
    except ValueError as exc:
        return str(exc), None


def _text_problem(record: dict[str, Any], text_field: str) -> str | None:
    if text_field not in record:
        return f"missing field {text_field!r}"
    value = record[text_field]
    if not isinstance(value, str):
        return f"field {text_field!r} is not a string (got {_json_type(value)})"
    return None


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    return {bool: "boolean", int: "number", float: "number", list: "array", dict: "object"}.get(type(value), type(value).__name__)


# -- structured phases (sft / dpo / rl) -------------------------------------------

def _records(block: LineBlock | TableBlock) -> list[tuple[str | None, Any]]:
    if isinstance(block, TableBlock):
        return [(None, row) for row in block.table.to_pylist()]
    data = block.data
    return [_load_object(data[s:e]) for s, e in zip(block.starts.tolist(), block.ends.tolist())]


def _structured(records: list[tuple[str | None, Any]], positions: np.ndarray, job: ScanJob) -> Parsed:
    lines: list[bytes] = []
    texts: list[str] = []
    good: list[int] = []
    bad: list[tuple[int, str]] = []
    source = job.task.dataset_name
    kinds: Counter = Counter()
    for i, (reason, record) in enumerate(records):
        if reason is None:
            reason = record_problem(record, job.schema)
        if reason is not None:
            bad.append((i, reason))
            continue
        record = {k: v for k, v in record.items() if k != "source"}
        record["source"] = source
        kinds.update((name, _json_type(value)) for name, value in record.items() if value is not None)
        lines.append(orjson.dumps(record))
        texts.append(filter_text(record, job.schema, job.filter_on))
        good.append(i)
    values = pa.array(lines, type=pa.large_binary())
    return Parsed(values, pl.Series("text", texts, dtype=pl.String), positions[good], bad, kinds)


def _messages_problem(value: Any, field_name: str) -> str | None:
    if not isinstance(value, list) or not value:
        return f"field {field_name!r} must be a non-empty list of messages (got {_json_type(value)})"
    for j, message in enumerate(value):
        if not isinstance(message, dict):
            return f"{field_name}[{j}] must be an object with role and content (got {_json_type(message)})"
        role, content = message.get("role"), message.get("content")
        if not isinstance(role, str):
            return f"{field_name}[{j}].role must be a string (got {_json_type(role)})"
        if not isinstance(content, str):
            return f"{field_name}[{j}].content must be a string (got {_json_type(content)})"
    return None


def _text_or_messages_problem(record: dict[str, Any], field_name: str) -> str | None:
    if field_name not in record:
        return f"missing field {field_name!r}"
    value = record[field_name]
    if isinstance(value, str):
        return None
    return _messages_problem(value, field_name)


def record_problem(record: dict[str, Any], schema: Phase) -> str | None:
    """Why a record does not fit its phase's schema, or None."""
    if schema == "sft":
        if "conversations" not in record:
            return "missing field 'conversations'"
        return _messages_problem(record["conversations"], "conversations")
    if schema == "dpo":
        for name in ("chosen", "rejected"):
            problem = _text_or_messages_problem(record, name)
            if problem:
                return problem
        if isinstance(record["chosen"], str) or isinstance(record["rejected"], str):
            if "prompt" not in record:
                return "missing field 'prompt' (needed when chosen/rejected are strings)"
        if "prompt" in record:
            return _text_or_messages_problem(record, "prompt")
        return None
    if schema == "rl":
        if "prompt" in record:
            return _text_or_messages_problem(record, "prompt")
        if "conversations" in record:
            return _messages_problem(record["conversations"], "conversations")
        return "missing field 'prompt' or 'conversations'"
    return _text_problem(record, "text")


def filter_text(record: dict[str, Any], schema: Phase, filter_on: str) -> str:
    """The text filters judge: message contents joined by newlines (assistant turns only when asked)."""
    parts: list[str] = []
    for name in ("prompt", "conversations", "chosen", "rejected"):
        value = record.get(name)
        if isinstance(value, str):
            if filter_on == "all" or name in ("chosen", "rejected"):
                parts.append(value)
        elif isinstance(value, list):
            for message in value:
                if filter_on == "all" or message.get("role") == "assistant":
                    parts.append(message["content"])
    return "\n".join(parts)
