"""Write stage: each write task fills its own byte range of the final JSONL.

The driver fixes every output record's final byte offset before anything is written
(`shuffle.write_jobs`) and creates the temporary JSONL at its final size. A write task
(`write_bucket`, run in any worker) gathers its records' values, reading back and
decoding the raw JSON strings of plain local JSONL inputs (`rawjson`) and copying the
rest from the scan files, each file read by byte ranges in offset order (`readback`);
encodes their lines straight into a buffer laid out as its bucket of the final file,
writes that range in place (`pwrite`), hashes it (one checksum chunk), and hands over
the Parquet sidecar's rows for the records that start in its range: from a pool or Ray
worker a Parquet part it encoded itself (other phases: an Arrow part), from a task in
the driver's process the table itself. No part of the JSONL is copied again: the
driver's own work is the index (from the offsets it already holds), putting the
sidecar's parts together in bucket order (`parquet_parts`; encoding them on a thread
when they come as tables) and the manifest.
Memory is bounded by the bucket size, never by the input, and the bytes do not depend
on the bucket size, the worker count or the order tasks finish in.

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
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.ipc as ipc
import pyarrow.parquet as pq

from mixprep.build.encode import copy_lines, encode_lines
from mixprep.build.outputs import SplitFiles
from mixprep.build.packed import PackedTarget, write_tokens
from mixprep.build.parquet_parts import ParquetAssembler
from mixprep.build.readback import decode_ranges, read_ranges, release_scratch
from mixprep.build.sidecar import (
    PARQUET_ROW_GROUP,
    PRETRAIN_SIDECAR,
    conform,
    parquet_options,
    parquet_writer,
    pretrain_sidecar,
    structured_sidecar,
)
from mixprep.build.workdir import ReusedBuffer, bucket_dir, input_path_file, release_memory, unique_tmp, value_spans_path, values_path
from mixprep.config.schema import Phase
from mixprep.errors import OutputError, SourceError
from mixprep.serve.index import write_index

log = logging.getLogger(__name__)


PLAN_DTYPE = np.dtype([("task", "<i4"), ("row", "<i8"), ("dataset", "<i4")])
"""One output record: the scan task and row its value comes from, and its dataset's number."""
MAX_SIDECARS_IN_MEMORY = 4
"""Sidecar parts handed over in memory that may wait for the Parquet thread (16 MiB each by default)."""
CHECKSUM = "sha256-chunks/1"
"""The manifest's checksum: sha256 of each `chunk_bytes` piece of the JSONL, then sha256 of those digests."""


@dataclass(frozen=True)
class BucketJob:
    """Write bytes [start, end) of a split's final JSONL (and the sidecar rows that start there)."""

    split: str
    bucket: int
    start: int
    end: int
    schema: Phase
    source_names: tuple[str, ...]
    work_dir: str
    jsonl_path: str
    plan_path: str  # PLAN_DTYPE per output record, in final order
    offsets_path: str  # uint64 n+1 line offsets of the final file
    json_fields: tuple[str, ...] = ()
    """Structured phases: fields whose JSON type varies between records; the sidecar stores them as JSON text."""
    text_values: bool = True
    """Values are pretrain texts (encoded here); otherwise whole JSON lines."""
    keep_caches: bool = True
    """Keep the line buffer and the scan's spans for the next bucket (workers that end with
    the build); Ray's long-lived workers drop them after each task (a spans file still
    mapped would hold its disk space after the build removed its folder)."""
    sidecar_in_memory: bool = False
    """Return the sidecar rows in the result instead of writing an Arrow part file (a task
    run in the driver's own process: no file to write, read back and delete)."""
    packed: PackedTarget | None = None
    """`metadata.pack`: also write the token ids of the records that start in this bucket."""
    sidecar_compression: str = "zstd"
    """The Parquet codec of the sidecar part a pretrain task encodes (`parquet_parts`)."""


@dataclass(frozen=True)
class BucketResult:
    bucket: int
    records: int
    """Records whose line starts in this bucket (their sidecar rows are in `sidecar_path`)."""
    nbytes: int
    sha256: str
    sidecar_path: str
    """The sidecar rows' part file: Parquet (pretrain, encoded here) or Arrow IPC (other phases)."""
    sidecar: pa.Table | None = None
    """The sidecar rows themselves, for a job with `sidecar_in_memory` (then no part file)."""
    tokens_sha256: str = ""
    """`metadata.pack`: sha256 of this bucket's range of the `.bin`."""


def write_bucket(job: BucketJob) -> BucketResult:
    offsets = np.load(job.offsets_path, mmap_mode="r")
    # uint64 needles: a Python int would make numpy cast the whole offsets array to float64.
    first = int(np.searchsorted(offsets, np.uint64(job.start), side="right")) - 1  # the record holding byte `start`
    last = int(np.searchsorted(offsets, np.uint64(job.end), side="left"))  # records that start before `end`
    plan = np.asarray(np.load(job.plan_path, mmap_mode="r")[first:last])
    values, value_offsets = _gather_values(plan, job.work_dir)
    base = int(offsets[first])
    line_offsets = (np.asarray(offsets[first : last + 1]) - np.uint64(base)).astype(np.int64)
    lines = _lines.take(int(line_offsets[-1]))
    if job.text_values:
        encode_lines(values, value_offsets, plan["dataset"], list(job.source_names), lines, line_offsets)
    else:
        copy_lines(values, value_offsets, lines, line_offsets)
    piece = lines[job.start - base : job.end - base]
    _write_at(job.jsonl_path, piece, job.start)
    digest = hashlib.sha256(piece).hexdigest()
    starts_here = 0 if base >= job.start else 1  # a record that began in the bucket before belongs to it
    sidecar = _sidecar_part(job, plan[starts_here:], values, value_offsets[starts_here:])
    records = len(plan) - starts_here
    tokens_digest = ""
    if job.packed is not None:
        tokens_digest = write_tokens(job.packed, first + starts_here, values, value_offsets[starts_here:], text_values=job.text_values)
    if job.sidecar_in_memory:
        del lines, piece, values
        return BucketResult(job.bucket, records, job.end - job.start, digest, "", sidecar, tokens_digest)
    path = os.path.join(bucket_dir(job.work_dir, job.split), f"{job.bucket:05d}{'.parquet' if job.text_values else '.arrow'}")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    # Under a temporary name, then renamed: a retried task never leaves a torn file.
    tmp = unique_tmp(path)
    if job.text_values:
        # Encoded and compressed here, in parallel with the other tasks; the driver only
        # puts the parts together (parquet_parts).
        with parquet_writer(Path(tmp), PRETRAIN_SIDECAR, job.sidecar_compression) as writer:
            if sidecar.num_rows:
                writer.write_table(sidecar, row_group_size=PARQUET_ROW_GROUP)
    else:
        with pa.OSFile(tmp, "wb") as sink, ipc.new_file(sink, sidecar.schema) as writer:
            writer.write_table(sidecar)
    os.replace(tmp, path)
    del lines, piece, values, sidecar
    if not job.keep_caches:
        release_caches()
    release_memory()
    return BucketResult(job.bucket, records, job.end - job.start, digest, path, tokens_sha256=tokens_digest)


def _gather_values(plan: np.ndarray, work_dir: str) -> tuple[np.ndarray, np.ndarray]:
    """The scan values of `plan`'s records, back to back in plan order, and their n+1 offsets:
    copied from the scan files, or read back from the inputs and decoded."""
    sizes = np.zeros(len(plan), dtype=np.int64)
    tasks = plan["task"]
    by_task = np.argsort(tasks, kind="stable")
    task_ids, firsts = np.unique(tasks[by_task], return_index=True)
    bounds = [*firsts.tolist(), len(plan)]
    sources = []
    for t, lo, hi in zip(task_ids.tolist(), bounds[:-1], bounds[1:], strict=True):
        slots = by_task[lo:hi]
        spans = _task_spans(work_dir, t)[plan["row"][slots]]
        sizes[slots] = spans["size"]
        sources.append((t, slots, spans))
    offsets = np.zeros(len(plan) + 1, dtype=np.int64)
    np.cumsum(sizes, out=offsets[1:])
    values = np.empty(int(offsets[-1]), dtype=np.uint8)
    for t, slots, spans in sources:
        in_input = spans["in_input"]
        copied = ~in_input
        # Each file is read in offset order (the plan's order is shuffled): neighbouring
        # records share pages, and a file not in the page cache is read front to back.
        if copied.any():
            order = np.argsort(spans["start"][copied], kind="stable")
            spilled, spilled_slots = spans[copied][order], slots[copied][order]
            read_ranges(values_path(work_dir, t), spilled["start"], spilled["size"], values, offsets[spilled_slots])
        if in_input.any():
            order = np.argsort(spans["start"][in_input], kind="stable")
            _read_back(work_dir, t, spans[in_input][order], values, offsets, slots[in_input][order])
    return values, offsets


def _read_back(work_dir: str, task: int, spans: np.ndarray, values: np.ndarray, offsets: np.ndarray, slots: np.ndarray) -> None:
    """Decode kept texts from their raw JSON strings in the task's input file."""
    path = _input_path(work_dir, task)
    try:
        failed = decode_ranges(path, spans["start"], spans["length"], values, offsets, slots)
    except OSError as exc:
        msg = f"{path}: cannot read it back to write the output ({exc.strerror or exc}); it changed during the build"
        raise SourceError(msg) from None
    if failed >= 0:
        msg = (
            f"{path}: the text at byte {int(spans['start'][failed])} is not what the scan read; the file changed "
            "during the build (nothing was written; rebuild once it is complete)"
        )
        raise SourceError(msg)


_lines = ReusedBuffer()
"""A bucket's encoded lines (a fresh 16 MiB array per bucket was as much new memory as the
whole output, per build: `clear_page_erms` was 5% of a w2 profile)."""

_facts_for: list[str] = []  # the work folder `_scan_facts` describes
_scan_facts: dict[tuple[str, int], Any] = {}  # per scan task: its spans, its input's path


def _task_spans(work_dir: str, task: int) -> np.ndarray:
    """A scan task's SPAN_DTYPE rows, mapped once per process and build (not once per bucket:
    90 buckets x 24 tasks made 2,160 `np.load`s per 1.5 GB, ~0.6 CPU-s)."""
    _serve(work_dir)
    spans = _scan_facts.get(("spans", task))
    if spans is None:
        # A plain ndarray over the mapping: indexing a np.memmap goes through its Python __getitem__.
        spans = _scan_facts[("spans", task)] = np.asarray(np.load(value_spans_path(work_dir, task), mmap_mode="r"))
    return spans


def _input_path(work_dir: str, task: int) -> str:
    """The input file a scan task read (its kept texts are read back from there)."""
    _serve(work_dir)
    path = _scan_facts.get(("input", task))
    if path is None:
        with open(input_path_file(work_dir, task), encoding="utf-8") as handle:
            path = _scan_facts[("input", task)] = handle.read()
    return path


def _serve(work_dir: str) -> None:
    """Forget what this process read for another build (work folder)."""
    if _facts_for != [work_dir]:
        release_caches()
        _facts_for.append(work_dir)


def release_caches() -> None:
    """Drop this process's buffers and what it read about the scan (the driver calls it
    after the write stage)."""
    _lines.release()
    release_scratch()
    _scan_facts.clear()
    _facts_for.clear()


def _write_at(path: str, data: np.ndarray, offset: int) -> None:
    fd = os.open(path, os.O_WRONLY)
    try:
        view = memoryview(data).cast("B")
        while view:
            written = os.pwrite(fd, view, offset)
            view, offset = view[written:], offset + written
    finally:
        os.close(fd)


def _sidecar_part(job: BucketJob, plan: np.ndarray, values: np.ndarray, value_offsets: np.ndarray) -> pa.Table:
    """The sidecar rows of the records in `plan`; `value_offsets` (n+1) index into `values`."""
    base = int(value_offsets[0]) if len(value_offsets) else 0
    rebased = (value_offsets - base).astype(np.int64)
    data = values[base : int(value_offsets[-1])] if len(value_offsets) else values[:0]
    array = pa.LargeBinaryArray.from_buffers(pa.large_binary(), len(plan), [None, pa.py_buffer(rebased), pa.py_buffer(data)])
    if not job.text_values:
        return structured_sidecar(array, job.json_fields)
    return pretrain_sidecar(array, plan["dataset"], job.source_names)


def gather(plan: np.ndarray, work_dir: str, *, text: bool) -> pa.Array:
    """The scan values of the given (task, row) records, in the plan's order (for small sets)."""
    values, offsets = _gather_values(plan, work_dir)
    array = pa.LargeBinaryArray.from_buffers(pa.large_binary(), len(plan), [None, pa.py_buffer(offsets), pa.py_buffer(values)])
    return array.cast(pa.large_string()) if text else array


# -- the driver side ---------------------------------------------------------------

@dataclass(frozen=True)
class OutputInfo:
    records: int
    bytes: int
    checksum: dict[str, Any]
    parquet_rows: int
    parquet_bytes: int
    sha256: str | None = None
    """The whole file's sha256 (`sha256sum`), when asked for: one more serial pass."""
    token_digests: tuple[str, ...] = ()
    """`metadata.pack`: each bucket's sha256 of its range of the `.bin`, in bucket order."""


class SplitWriter:
    """The driver's side of one split: the temporary files, the sidecar, the index.

    The pretrain sidecar comes as Parquet parts that pool or Ray workers encoded, put
    together in bucket order (`parquet_parts`), or, from tasks in this process, as tables
    encoded here on a thread: the same bytes. Other phases' Arrow parts are unified at the end."""

    def __init__(
        self, tmp: SplitFiles, text_values: bool, compression: str, size: int, *, chunk_bytes: int, encoded_parts: bool = False
    ) -> None:
        self.tmp = tmp
        self.compression = compression
        self.size = size
        self.chunk_bytes = chunk_bytes
        self.records = 0
        self.digests: dict[int, str] = {}
        self.token_digests: dict[int, str] = {}
        self.sidecar_parts: list[str] = []
        with open(tmp.jsonl, "wb") as handle:
            handle.truncate(size)  # every write task fills its own range of it
        self.parquet: pq.ParquetWriter | None = None
        self.assembler: ParquetAssembler | None = None
        if text_values and encoded_parts:
            self.assembler = ParquetAssembler(tmp.parquet)
        elif text_values:  # the sidecar's schema is known: write each part as it arrives
            self.parquet = parquet_writer(tmp.parquet, PRETRAIN_SIDECAR, compression)
        # Parquet parts are encoded on a thread of their own, in bucket order (pyarrow
        # releases the GIL), while this one waits for the next write task.
        self._sidecar_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mixprep-sidecar")
        self._sidecar_writes: list[Future[None]] = []

    def add(self, part: BucketResult) -> None:
        self.digests[part.bucket] = part.sha256
        self.token_digests[part.bucket] = part.tokens_sha256
        self.records += part.records
        if self.assembler is not None:
            assert part.sidecar is None, "tables in memory are encoded by the Parquet thread"
            self.assembler.append(part.sidecar_path)
            # Removed now, while the workers run (this thread only waits for them): left to
            # the work folder's removal, unlinking ~0.5 GB of parts per GB took ~1.7 s at the end.
            os.unlink(part.sidecar_path)
        elif self.parquet is not None:
            self._sidecar_writes.append(self._sidecar_thread.submit(self._write_sidecar, part, None))
            self._raise_sidecar_error()
            if part.sidecar is not None and len(self._sidecar_writes) > MAX_SIDECARS_IN_MEMORY:
                self._sidecar_writes.pop(0).result()  # tables in memory: wait rather than queue them all
        else:
            assert part.sidecar is None, "structured sidecars are unified from part files"
            self.sidecar_parts.append(part.sidecar_path)

    def _raise_sidecar_error(self, *, wait: bool = False) -> None:
        """Re-raise the first failed sidecar write here; keep the ones still running."""
        pending = []
        for write in self._sidecar_writes:
            if wait or write.done():
                write.result()
            else:
                pending.append(write)
        self._sidecar_writes = pending

    def finish(self, offsets: np.ndarray, *, whole_sha256: bool = False) -> OutputInfo:
        self._raise_sidecar_error(wait=True)
        self._sidecar_thread.shutdown()
        if self.assembler is not None:
            self.assembler.close(PRETRAIN_SIDECAR, **parquet_options(self.compression))
        elif self.parquet is None:
            self._write_structured_sidecar()
        else:
            self.parquet.close()
        chunks = [self.digests[b] for b in range(len(self.digests))]
        write_index(self.tmp.index, self.tmp.jsonl, offsets)
        rows = pq.ParquetFile(self.tmp.parquet).metadata.num_rows
        checksum = checksum_record(chunks, self.chunk_bytes)
        sha = file_sha256(self.tmp.jsonl) if whole_sha256 else None
        tokens = tuple(self.token_digests[b] for b in range(len(self.token_digests)))
        return OutputInfo(self.records, self.size, checksum, rows, self.tmp.parquet.stat().st_size, sha, tokens)

    def abort(self) -> None:
        self._sidecar_thread.shutdown(wait=True, cancel_futures=True)
        if self.parquet is not None:
            self.parquet.close()
        if self.assembler is not None:
            self.assembler.abort()

    def _write_sidecar(self, part: BucketResult | str, schema: pa.Schema | None) -> None:
        if isinstance(part, BucketResult) and part.sidecar is not None:
            table = part.sidecar
        else:
            # Read, not mapped: one copy by read() costs far less than a page fault per 4 KiB.
            path = part.sidecar_path if isinstance(part, BucketResult) else part
            with pa.OSFile(path, "rb") as source:
                table = ipc.open_file(source).read_all()
        if schema is not None:
            table = conform(table, schema)
        assert self.parquet is not None
        if table.num_rows:
            # One row group per bucket (split at PARQUET_ROW_GROUP rows).
            self.parquet.write_table(table, row_group_size=PARQUET_ROW_GROUP)
        del table
        # The part stays until the work folder is removed: unlinking here would put the
        # file system's work on this thread, the one that bounds the write stage.
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
        self.parquet = parquet_writer(self.tmp.parquet, unified, self.compression)
        for path in self.sidecar_parts:
            self._write_sidecar(path, unified)
        self.parquet.close()


def checksum_record(chunk_digests: list[str], chunk_bytes: int) -> dict[str, Any]:
    """The manifest's checksum: each chunk's sha256 and one sha256 over those digests."""
    combined = hashlib.sha256(b"".join(bytes.fromhex(d) for d in chunk_digests)).hexdigest()
    return {"algorithm": CHECKSUM, "chunk_bytes": chunk_bytes, "digest": combined, "chunks": chunk_digests}


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(8 * 1024 * 1024):
            digest.update(chunk)
    return digest.hexdigest()


