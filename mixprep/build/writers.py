"""Write stage: selected records in shuffled order -> JSONL + Parquet sidecar + `.idx`.

The driver fixes the final position of every output record before anything is
written, then cuts the order into buckets of about `shuffle_bucket_mb`. A bucket
task (`write_bucket`, run in any worker) gathers its records from the scan files,
already in final order, and writes one JSONL part, its line offsets and one
Arrow part for the sidecar. `SplitWriter` (driver) appends the parts in bucket
order: the JSONL is hashed while it is copied, the sidecar gets one row group per
bucket, the index is the concatenated offsets. Memory is bounded by the bucket
size, never by the input, and the bytes do not depend on the bucket count.

Everything is written under the build's temporary folder; `commit` renames the
finished files into place, manifest last.
"""
from __future__ import annotations

import hashlib
import logging
import os
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import orjson
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.ipc as ipc
import pyarrow.parquet as pq

from mixprep.build.scan import ScanResult
from mixprep.build.workdir import bucket_dir, parts_dir, release_memory, rows_path, save_array, unique_tmp
from mixprep.config.schema import Phase
from mixprep.errors import OutputError
from mixprep.serve.index import write_index

log = logging.getLogger(__name__)


BUCKET_DTYPE = np.dtype([("task", "<i4"), ("row", "<i8"), ("dataset", "<i4")])
PRETRAIN_SIDECAR = pa.schema([("text", pa.large_string()), ("source", pa.string())])
PARQUET_ROW_GROUP = 16_384
COPY_CHUNK = 8 * 1024 * 1024
OUTPUT_SUFFIXES = (".jsonl", ".parquet", ".idx", ".manifest.json")


PART_DTYPE = np.dtype([("row", "<i8"), ("position", "<i8"), ("dataset", "<i4")])


@dataclass(frozen=True)
class PartitionJob:
    """Route one scan task's selected records to the buckets that hold their final positions."""

    split: str
    task_id: int
    plan_path: str  # PART_DTYPE rows, ascending by position
    bounds_path: str  # first final position of each bucket, then the total
    work_dir: str


@dataclass(frozen=True)
class BucketJob:
    split: str
    bucket: int
    schema: Phase
    source_names: tuple[str, ...]
    work_dir: str
    json_fields: tuple[str, ...] = ()
    """Structured phases: fields whose JSON type varies between records; the sidecar stores them as JSON text."""
    text_values: bool = True
    """Values are pretrain texts (serialized here); otherwise whole JSON lines."""


@dataclass(frozen=True)
class BucketResult:
    bucket: int
    records: int
    nbytes: int
    jsonl_path: str
    offsets_path: str
    sidecar_path: str


PARTITION_BUFFER_BYTES = 16 * 1024 * 1024


def partition(job: PartitionJob) -> int:
    """Read a scan file once, in order, batch by batch, and append its selected records
    to one part file per bucket.

    Gathering a bucket straight from every scan file would touch pages all over them
    at random; this pass keeps every read sequential. Picked records are buffered up to
    `PARTITION_BUFFER_BYTES` and then flushed, one record batch per bucket.
    """
    plan = np.load(job.plan_path)
    bounds = np.load(job.bounds_path)
    by_row = np.argsort(plan["row"], kind="stable")
    rows = plan["row"][by_row]
    buckets = np.searchsorted(bounds, plan["position"][by_row], side="right") - 1
    parts = _PartWriters(job)
    try:
        with pa.memory_map(rows_path(job.work_dir, job.task_id), "r") as source:
            reader = ipc.open_file(source)
            first_row = 0
            for i in range(reader.num_record_batches):
                batch = reader.get_batch(i)
                lo, hi = np.searchsorted(rows, [first_row, first_row + batch.num_rows])
                if lo < hi:
                    values = batch.column(0).take(pa.array(rows[lo:hi] - first_row))
                    parts.add(values, plan[by_row[lo:hi]], buckets[lo:hi])
                first_row += batch.num_rows
        parts.flush()
    finally:
        parts.close()
    parts.commit()
    release_memory()
    return job.task_id


class _PartWriters:
    """One Arrow file per bucket for a partition task, written through a bounded buffer."""

    def __init__(self, job: PartitionJob) -> None:
        self.job = job
        self.pending: list[tuple[pa.Array, np.ndarray, np.ndarray]] = []
        self.pending_bytes = 0
        self.files: dict[int, tuple[str, str, pa.OSFile, ipc.RecordBatchFileWriter]] = {}

    def add(self, values: pa.Array, entries: np.ndarray, buckets: np.ndarray) -> None:
        self.pending.append((values, entries, buckets))
        self.pending_bytes += values.nbytes
        if self.pending_bytes >= PARTITION_BUFFER_BYTES:
            self.flush()

    def flush(self) -> None:
        if not self.pending:
            return
        values = pa.concat_arrays([v for v, _, _ in self.pending])
        entries = np.concatenate([e for _, e, _ in self.pending])
        buckets = np.concatenate([b for _, _, b in self.pending])
        self.pending, self.pending_bytes = [], 0
        order = np.argsort(buckets, kind="stable")
        present, firsts = np.unique(buckets[order], return_index=True)
        ends = list(firsts[1:]) + [len(order)]
        for bucket, lo, hi in zip(present.tolist(), firsts.tolist(), ends, strict=True):
            chosen = order[lo:hi]
            batch = pa.record_batch(
                [values.take(pa.array(chosen)), pa.array(entries["position"][chosen]), pa.array(entries["dataset"][chosen])],
                names=["value", "position", "dataset"],
            )
            self._writer(bucket, batch.schema).write_batch(batch)

    def _writer(self, bucket: int, schema: pa.Schema) -> ipc.RecordBatchFileWriter:
        if bucket not in self.files:
            folder = parts_dir(self.job.work_dir, self.job.split, bucket)
            os.makedirs(folder, exist_ok=True)
            path = os.path.join(folder, f"{self.job.task_id:06d}.arrow")
            tmp = unique_tmp(path)
            sink = pa.OSFile(tmp, "wb")
            self.files[bucket] = (path, tmp, sink, ipc.new_file(sink, schema))
        return self.files[bucket][3]

    def close(self) -> None:
        for _, _, sink, writer in self.files.values():
            writer.close()
            sink.close()

    def commit(self) -> None:
        for path, tmp, _, _ in self.files.values():
            os.replace(tmp, path)


def _bucket_records(job: BucketJob) -> tuple[pa.Array, np.ndarray]:
    """A bucket's values and dataset numbers, in final order."""
    folder = parts_dir(job.work_dir, job.split, job.bucket)
    names = sorted(os.listdir(folder)) if os.path.isdir(folder) else []
    tables = []
    for name in names:
        if name.endswith(".arrow"):
            with pa.OSFile(os.path.join(folder, name), "rb") as source:
                tables.append(ipc.open_file(source).read_all())
    if not tables:
        empty = pa.array([], pa.large_string() if job.text_values else pa.large_binary())
        return empty, np.zeros(0, dtype=np.int32)
    merged = pa.concat_tables(tables).combine_chunks()
    order = pa.array(np.argsort(merged.column("position").to_numpy(), kind="stable"))
    values = merged.column("value").take(order).combine_chunks()
    datasets = merged.column("dataset").take(order).to_numpy()
    return values, datasets


def write_bucket(job: BucketJob) -> BucketResult:
    values, datasets = _bucket_records(job)
    names = pa.array(job.source_names, pa.string())
    source = pa.DictionaryArray.from_arrays(pa.array(datasets, pa.int32()), names).cast(pa.string())
    if job.text_values:
        sidecar = pa.table([values, source], schema=PRETRAIN_SIDECAR)
        lines = _json_lines(sidecar)
    else:
        lines = pc.binary_join_element_wise(values, pa.scalar(b"", pa.large_binary()), pa.scalar(b"\n", pa.large_binary()))
        sidecar = structured_sidecar(values, job.json_fields)
    offsets = np.frombuffer(lines.buffers()[1], dtype=np.int64)[lines.offset : lines.offset + len(lines) + 1]
    data = lines.buffers()[2]
    start, end = int(offsets[0]), int(offsets[-1])
    body = memoryview(data)[start:end] if data is not None else memoryview(b"")

    folder = bucket_dir(job.work_dir, job.split)
    os.makedirs(folder, exist_ok=True)
    stem = os.path.join(folder, f"{job.bucket:05d}")
    # Each file under a temporary name, then renamed: a retried task never leaves a torn file.
    tmp = unique_tmp(f"{stem}.jsonl")
    with open(tmp, "wb") as handle:
        handle.write(body)
    os.replace(tmp, f"{stem}.jsonl")
    save_array(f"{stem}.offsets.npy", (offsets - start).astype(np.uint64))
    tmp = unique_tmp(f"{stem}.arrow")
    with pa.OSFile(tmp, "wb") as sink, ipc.new_file(sink, sidecar.schema) as writer:
        writer.write_table(sidecar)
    os.replace(tmp, f"{stem}.arrow")
    release_memory()
    return BucketResult(job.bucket, len(values), end - start, f"{stem}.jsonl", f"{stem}.offsets.npy", f"{stem}.arrow")


def gather(plan: np.ndarray, work_dir: str) -> pa.Array:
    """The scan values of the given (task, row) records, in the plan's order (random access: for small sets)."""
    if len(plan) == 0:
        return pa.array([], pa.large_string())
    tasks = plan["task"]
    by_task = np.argsort(tasks, kind="stable")
    task_ids, firsts = np.unique(tasks[by_task], return_index=True)
    bounds = list(firsts) + [len(by_task)]
    pieces = []
    for t, lo, hi in zip(task_ids.tolist(), bounds[:-1], bounds[1:], strict=True):
        with pa.memory_map(rows_path(work_dir, t), "r") as source:
            column = ipc.open_file(source).read_all().column(0)
            pieces.append(column.take(pa.array(plan["row"][by_task[lo:hi]])).combine_chunks())
    grouped = pa.chunked_array(pieces).combine_chunks()
    # `grouped` is ordered by task; put each record back at its place in the bucket.
    inverse = np.empty_like(by_task)
    inverse[by_task] = np.arange(len(by_task))
    return grouped.take(pa.array(inverse))


def _json_lines(table: pa.Table) -> pa.Array:
    encoded = pl.from_arrow(table).select((pl.struct(pl.all()).struct.json_encode() + "\n").alias("line"))
    return encoded.get_column("line").to_arrow().cast(pa.large_string())


def structured_sidecar(lines: pa.Array, json_fields: tuple[str, ...]) -> pa.Table:
    """SFT/DPO/RL records as columns; `json_fields` (see build.sidecar_json_fields) as JSON text."""
    records = [orjson.loads(line) for line in lines.to_pylist()]
    if not records:
        return pa.table({})
    for record in records:
        for name in json_fields:
            if record.get(name) is not None:
                record[name] = orjson.dumps(record[name]).decode()
    try:
        return pa.Table.from_struct_array(pa.array(records))
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        # Only the message fields are left nested, and those were checked per record,
        # but a message may carry extra keys whose types disagree.
        msg = f"records disagree on a nested field's type, so no Parquet schema fits them ({exc}); make it consistent"
        raise OutputError(msg) from None


# -- the driver side ---------------------------------------------------------------

@dataclass(frozen=True)
class SplitFiles:
    jsonl: Path
    parquet: Path
    index: Path
    manifest: Path

    @classmethod
    def for_stem(cls, folder: Path, stem: str) -> SplitFiles:
        return cls(*(folder / f"{stem}{suffix}" for suffix in OUTPUT_SUFFIXES))

    def all(self) -> tuple[Path, ...]:
        return (self.jsonl, self.parquet, self.index, self.manifest)


@dataclass(frozen=True)
class OutputInfo:
    records: int
    bytes: int
    sha256: str
    parquet_rows: int
    parquet_bytes: int


class SplitWriter:
    """Appends bucket parts, in bucket order, into one split's temporary output files."""

    def __init__(self, tmp: SplitFiles, text_values: bool, compression: str) -> None:
        self.tmp = tmp
        self.compression = compression
        self.sha = hashlib.sha256()
        self.size = 0
        self.records = 0
        self.offsets: list[np.ndarray] = []
        self.sidecar_parts: list[str] = []
        self.jsonl = open(tmp.jsonl, "wb", buffering=0)  # noqa: SIM115 - closed in finish()/abort()
        self.parquet: pq.ParquetWriter | None = None
        if text_values:  # the sidecar's schema is known: write each part as it arrives
            self.parquet = _parquet_writer(tmp.parquet, PRETRAIN_SIDECAR, compression)
        # Parquet parts are encoded on a thread of their own, in bucket order (pyarrow
        # releases the GIL), while this one hashes and copies the next part's JSONL: the
        # driver's serial work is what bounds a build with many workers.
        self._sidecar_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mixprep-sidecar")
        self._sidecar_writes: list[Future[None]] = []

    def add(self, part: BucketResult) -> None:
        with open(part.jsonl_path, "rb") as handle:
            while chunk := handle.read(COPY_CHUNK):
                self.sha.update(chunk)
            # The copy itself stays in the kernel (no user-space buffer).
            copied = 0
            while copied < part.nbytes:
                n = os.copy_file_range(handle.fileno(), self.jsonl.fileno(), part.nbytes - copied, copied)
                if n == 0:
                    msg = f"{part.jsonl_path}: shorter than the {part.nbytes} bytes its task reported"
                    raise OutputError(msg)
                copied += n
        offsets = np.load(part.offsets_path)
        self.offsets.append(offsets[:-1] + np.uint64(self.size))
        self.size += part.nbytes
        self.records += part.records
        if self.parquet is not None:
            self._sidecar_writes.append(self._sidecar_thread.submit(self._write_sidecar, part.sidecar_path, None))
            self._raise_sidecar_error()
        else:
            self.sidecar_parts.append(part.sidecar_path)
        os.remove(part.jsonl_path)

    def _raise_sidecar_error(self, *, wait: bool = False) -> None:
        """Re-raise the first failed sidecar write here; keep the ones still running."""
        pending = []
        for write in self._sidecar_writes:
            if wait or write.done():
                write.result()
            else:
                pending.append(write)
        self._sidecar_writes = pending

    def finish(self) -> OutputInfo:
        self.jsonl.close()
        self._raise_sidecar_error(wait=True)
        self._sidecar_thread.shutdown()
        if self.parquet is None:
            self._write_structured_sidecar()
        else:
            self.parquet.close()
        offsets = np.concatenate(self.offsets + [np.array([self.size], dtype=np.uint64)])
        write_index(self.tmp.index, self.tmp.jsonl, offsets)
        rows = pq.ParquetFile(self.tmp.parquet).metadata.num_rows
        return OutputInfo(self.records, self.size, self.sha.hexdigest(), rows, self.tmp.parquet.stat().st_size)

    def abort(self) -> None:
        self._sidecar_thread.shutdown(wait=True, cancel_futures=True)
        self.jsonl.close()
        if self.parquet is not None:
            self.parquet.close()

    def _write_sidecar(self, path: str, schema: pa.Schema | None) -> None:
        with pa.memory_map(path, "r") as source:
            table = ipc.open_file(source).read_all()
        if schema is not None:
            table = conform(table, schema)
        assert self.parquet is not None
        if table.num_rows:
            self.parquet.write_table(table, row_group_size=PARQUET_ROW_GROUP)
        del table
        os.remove(path)
        release_memory()

    def _write_structured_sidecar(self) -> None:
        """Other phases: the schema is inferred per bucket, so unify before writing."""
        schemas = []
        for path in self.sidecar_parts:
            with pa.memory_map(path, "r") as source:
                schema = ipc.open_file(source).schema
            if len(schema):
                schemas.append(schema)
        if not schemas:
            schemas = [pa.schema([("source", pa.string())])]
        try:
            unified = pa.unify_schemas(schemas, promote_options="permissive")
        except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
            msg = (
                f"{self.tmp.jsonl.name}: records disagree on a field's type, so no single Parquet schema fits "
                f"them ({exc}); make the field's type consistent across sources"
            )
            raise OutputError(msg) from None
        self.parquet = _parquet_writer(self.tmp.parquet, unified, self.compression)
        for path in self.sidecar_parts:
            self._write_sidecar(path, unified)
        self.parquet.close()


def _parquet_writer(path: Path, schema: pa.Schema, compression: str) -> pq.ParquetWriter:
    # Dictionary-encoding long texts only costs time before falling back; `source` repeats a few names.
    return pq.ParquetWriter(path, schema, compression=compression, use_dictionary=["source"])


def conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """Reshape a table to `schema`: missing columns become nulls, others are cast."""
    columns = []
    for schema_field in schema:
        if schema_field.name in table.column_names:
            columns.append(table.column(schema_field.name).cast(schema_field.type))
        else:
            columns.append(pa.nulls(table.num_rows, schema_field.type))
    return pa.table(columns, schema=schema)


def _move(src: Path, dst: Path) -> None:
    # Unlink first: renaming over an existing file makes ext4 flush the new one to disk
    # (auto_da_alloc), which costs seconds on a GB-sized output.
    dst.unlink(missing_ok=True)
    os.replace(src, dst)


def commit(pairs: list[tuple[SplitFiles, SplitFiles]], extras: list[tuple[Path, Path]] = ()) -> None:  # type: ignore[assignment]
    """Move finished temporary files into place. Old manifests go first and new ones
    come last, so a crash in between never pairs a manifest with other data."""
    try:
        for _, final in pairs:
            final.manifest.unlink(missing_ok=True)
        for src, dst in extras:
            _move(src, dst)
        for tmp, final in pairs:
            for src, dst in zip(tmp.all()[:3], final.all()[:3], strict=True):
                _move(src, dst)
        for tmp, final in pairs:
            os.replace(tmp.manifest, final.manifest)
    except OSError as exc:
        msg = f"cannot move the finished outputs into {pairs[0][1].jsonl.parent}: {exc}"
        raise OutputError(msg) from None


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
