"""Scan stage: one task's blocks -> parsed, checked, filtered records on local disk.

`scan_task` is pure with respect to its inputs: for each kept record of its shard it
records where the value is (`<work>/scan/<task>.spans.npy`): the raw JSON string in
the input itself for plain local JSONL pretrain texts (read back at write time, see
`rawjson`), or a copy in `<task>.values` for everything else (pretrain: the text; other
phases: the whole output JSON line); plus `<task>.keys.npy` (per kept record: identity
hash, output bytes, characters and tokens of its text); and returns only counts. Nothing here depends on which process
runs it or when. Parsing and record checks are `records`; the filters, `filters.engine`.
"""
from __future__ import annotations

import dataclasses
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import polars as pl
import pyarrow as pa
import xxhash

from mixprep.build import arrays, decontaminate
from mixprep.build.decontaminate import DecontIndex
from mixprep.build.dedup import fingerprint_width, fingerprints
from mixprep.build.encode import line_lengths, string_buffers
from mixprep.build.hashing import splitmix64
from mixprep.build.records import Parsed, RecordSpec, parse_block
from mixprep.build.workdir import (
    SPAN_DTYPE,
    input_path_file,
    keys_path,
    prints_path,
    rejected_path,
    release_memory,
    save_array,
    unique_tmp,
    value_spans_path,
    values_path,
)
from mixprep.config.schema import DedupSpec, Phase
from mixprep.errors import RecordError
from mixprep.filters.c4 import LINE_FIELDS, c4_removals, c4_summary
from mixprep.filters.c4_filter import c4_feature
from mixprep.filters.engine import filter_batch
from mixprep.filters.registry import FilterChain
from mixprep.filters.rules import language_feature, language_prefix_of
from mixprep.filters.textstats import TextBatch, character_counts
from mixprep.filters.tokens import load_token_counter
from mixprep.progress import TaskReporter
from mixprep.sources import remote
from mixprep.sources.plan import ScanTask
from mixprep.sources.readers import LineBlock, TableBlock, line_number, read_blocks

KEY_COLUMNS = 4
"""Per kept record in `<task>.keys.npy`: identity hash, output bytes, characters, tokens."""


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
    progress_path: str | None = None
    """The `TaskCounters` file this task reports its progress to while it runs."""
    annotate_language: bool = False
    decontaminate: DecontIndex | None = None
    tokenizer: str | None = None
    """Count each kept record's tokens with this local tokenizer (`filters.tokens`)."""

    @property
    def records(self) -> RecordSpec:
        return RecordSpec(
            self.schema, self.text_field, self.filter_on, self.task.dataset_name,
            raw_spans=self.reads_back, contents=True,
        )

    def reason(self, code: int) -> str:
        """The name of a removal reason code: 1 + a filter's index, or decontamination's (one past them)."""
        return self.filters[code - 1][0] if code <= len(self.filters) else decontaminate.REASON

    @property
    def reads_back(self) -> bool:
        """Kept texts are read back from the input at write time (a plain local JSONL file:
        cheap to re-read by byte range) instead of copied to the scan file."""
        file = self.task.file
        return self.text_values and file.format == "jsonl" and file.compression is None and not remote.is_remote(file.path)

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
    decontaminated_by: Counter = field(default_factory=Counter)
    """Evaluation set -> records removed for sharing an n-gram with it."""
    c4: Counter = field(default_factory=Counter)
    """`c4`'s documents removed by reason, and lines of the documents it kept, removed by rule."""

    def __add__(self, other: ScanStats) -> ScanStats:
        return ScanStats(
            self.read + other.read,
            self.kept + other.kept,
            self.bad + other.bad,
            self.removed + other.removed,
            self.field_kinds + other.field_kinds,
            self.decontaminated_by + other.decontaminated_by,
            self.c4 + other.c4,
        )

    def removing(self, reason: str, count: int) -> ScanStats:
        """These counts after `count` more kept records were removed by `reason` (e.g. dedup)."""
        removed = self.removed + Counter({reason: count})
        return ScanStats(self.read, self.kept - count, self.bad, removed, self.field_kinds, self.decontaminated_by, self.c4)

    def as_dict(self) -> dict[str, Any]:
        counts = {
            "read": self.read, "bad": dict(sorted(self.bad.items())), "removed": dict(sorted(self.removed.items())), "kept": self.kept,
        }
        if self.c4:
            counts["c4"] = c4_summary(self.c4)
        return counts


@dataclass(frozen=True)
class ScanResult:
    task_id: int
    stats: ScanStats
    values_path: str
    keys_path: str


def file_key(job: ScanJob) -> np.uint64:
    task = job.task
    identity = f"{task.role}\0{task.dataset_name}\0{task.file.relpath}".encode()
    return np.uint64(xxhash.xxh64_intdigest(identity, seed=job.seed))


def scan_task(job: ScanJob) -> ScanResult:
    task = job.task
    out_values, out_keys = values_path(job.work_dir, task.task_id), keys_path(job.work_dir, task.task_id)
    Path(out_values).parent.mkdir(parents=True, exist_ok=True)
    stats = ScanStats()
    base_key = file_key(job)
    keys: list[np.ndarray] = []
    prints: list[np.ndarray] = []
    spans: list[np.ndarray] = []
    spilled = 0  # bytes written to the scan file so far
    # The annotation reads the prefix the `languages` filter reads, so where that filter
    # runs its verdicts are reused instead of classifying the kept records again.
    annotation = (language_feature(language_prefix_of(job.filters)),) if job.annotate_language else ()
    cleaning = tuple(c4_feature(spec) for name, spec in job.filters if name == "c4" and spec is not None)  # rewrites kept texts
    tmp_values = unique_tmp(out_values)
    rejected = open(rejected_path(job.work_dir, task.task_id), "wb") if job.write_rejected else None  # noqa: SIM115
    # Plain JSONL blocks are byte ranges of the task; other sources report at the end.
    reports_bytes = task.file.format == "jsonl" and task.file.compression is None
    reporter = TaskReporter(job.progress_path, task.task_id)
    reported = 0
    with open(tmp_values, "wb") as sink:
        for block in read_blocks(task):
            parsed = parse_block(block, job.records)
            stats.read += len(parsed.positions) + len(parsed.bad)
            block_bytes = len(block.data) if reports_bytes and isinstance(block, LineBlock) else 0
            reporter.add(block_bytes, len(parsed.positions) + len(parsed.bad))
            reported += block_bytes
            if parsed.bad:
                _handle_bad(block, parsed.bad, job, stats)
            verdict = filter_batch(parsed.filter_text, job.filters, annotation + cleaning, parsed.text_buffers)
            reasons = verdict.reasons
            features = verdict.kept_features
            matches = None
            if job.decontaminate is not None:
                reasons, features, matches = _decontaminated(parsed, reasons, features, job, stats)
            keep = reasons == 0
            if rejected is not None:
                _write_rejected(rejected, block, parsed, reasons, job, matches)  # the original texts
            if cleaning:
                parsed = _cleaned(parsed, keep, features[cleaning[0].name], stats)
                stats.c4.update(c4_removals(verdict, cleaning[0], reasons, job.filters))
            for i, count in zip(*np.unique(reasons[~keep], return_counts=True), strict=True):
                stats.removed[job.reason(int(i))] += int(count)
            kept = np.flatnonzero(keep)
            kept_texts = parsed.filter_text.filter(pl.Series(keep)) if job.dedup else None
            stats.kept += len(kept)
            stats.field_kinds.update(parsed.field_kinds)
            if len(kept):
                # The kept values are rows `at` of `values`: the block's own, not copied
                # (only what goes to the scan file is), unless annotated lines replace them.
                values, at = parsed.values, kept
                if annotation:
                    values = with_language(parsed.values.filter(arrays.mask(keep)), features[annotation[0].name].struct.unnest(), job)
                    at = np.arange(len(kept))
                data, offsets = string_buffers(values)
                raw = None if parsed.raw_spans is None else parsed.raw_spans[keep]
                span, spill = _value_spans(offsets[at + 1] - offsets[at], raw, block, spilled)
                to_spill = at if spill is None else at[spill]
                if len(to_spill):
                    sink.write(memoryview(_rows_of(values, data, offsets, to_spill)))
                spilled += int(span["size"][~span["in_input"]].sum())
                spans.append(span)
                identity = splitmix64(parsed.positions[keep] ^ base_key)
                characters, tokens = _text_units(parsed.all_text, parsed.text_buffers if parsed.contents is None else None, keep, job)
                keys.append(np.stack([identity, _output_lengths(data, offsets, at, job), characters, tokens], axis=1))
                if job.dedup is not None:
                    prints.append(fingerprints(kept_texts, job.dedup, job.seed))
    os.replace(tmp_values, out_values)
    reporter.add(task.end - task.start - reported, 0)  # the task's bytes in all, exactly
    if rejected is not None:
        rejected.close()
    every_span = np.concatenate(spans) if spans else np.zeros(0, dtype=SPAN_DTYPE)
    if every_span["in_input"].any():
        with open(input_path_file(job.work_dir, task.task_id), "w", encoding="utf-8") as handle:
            handle.write(task.file.path)
    save_array(value_spans_path(job.work_dir, task.task_id), every_span)
    table = np.concatenate(keys) if keys else np.zeros((0, KEY_COLUMNS), dtype=np.uint64)
    save_array(out_keys, table)
    if job.dedup is not None:
        width = fingerprint_width(job.dedup)
        stacked = np.concatenate([p.reshape(len(p), width) for p in prints]) if prints else np.zeros((0, width), np.uint64)
        # Column by column (band-major): the driver reads one band of every task at a time.
        save_array(prints_path(job.work_dir, task.task_id), np.ascontiguousarray(stacked.T))
    release_memory()
    return ScanResult(task.task_id, stats, out_values, out_keys)


def _cleaned(parsed: Parsed, keep: np.ndarray, cleaning: pl.Series, stats: ScanStats) -> Parsed:
    """The block with each kept text replaced by its C4-cleaned text, and the cleaned
    documents' line counts added to stats. A text C4 changed is copied to the scan file; one
    it left as it was is still read back from the input where the block allows."""
    fields = cleaning.struct.unnest()
    stats.c4.update({f"lines.{name}": int(fields[name].sum()) for name in LINE_FIELDS})
    rows = np.flatnonzero(keep)
    if not len(rows):
        return parsed
    original = parsed.filter_text.cast(pl.String)
    changed = (fields["text"] != original.gather(rows)).fill_null(True).to_numpy()
    if not changed.any():
        return parsed
    texts = original.scatter(pl.Series(rows[changed]), fields["text"].filter(pl.Series(changed)))
    values = texts.to_arrow()
    values = (values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values).cast(pa.large_string())
    raw_spans = None
    if parsed.raw_spans is not None:
        raw_spans = parsed.raw_spans.copy()
        raw_spans[rows[changed]] = -1  # no longer the input's bytes
    return dataclasses.replace(parsed, values=values, filter_text=texts, raw_spans=raw_spans, contents=None, text_buffers=None)


def _decontaminated(
    parsed: Parsed, reasons: np.ndarray, features: dict[str, pl.Series], job: ScanJob, stats: ScanStats
) -> tuple[np.ndarray, dict[str, pl.Series], dict[int, np.ndarray]]:
    """Reasons with the kept records that share an n-gram with an evaluation set removed
    (code: one past the filters), the kept rows' features narrowed to match, and each
    removed row's match (evaluation record id, n-gram span)."""
    assert job.decontaminate is not None
    rows = np.flatnonzero(reasons == 0)
    if not len(rows):
        return reasons, features, {}
    found = decontaminate.contaminated(parsed.all_text, rows, job.decontaminate)
    hit = found[:, 0] >= 0
    if not hit.any():
        return reasons, features, {}
    reasons = reasons.copy()
    reasons[rows[hit]] = len(job.filters) + 1
    for eval_id in found[hit, 0].tolist():
        stats.decontaminated_by[decontaminate.eval_set_of(job.decontaminate, eval_id)] += 1
    clean = pl.Series(~hit)
    features = {name: values.filter(clean) for name, values in features.items()}
    return reasons, features, dict(zip(rows[hit].tolist(), found[hit], strict=True))


def _value_spans(
    sizes: np.ndarray, raw: np.ndarray | None, block: LineBlock | TableBlock, spilled: int
) -> tuple[np.ndarray, np.ndarray | None]:
    """SPAN_DTYPE rows for kept values of `sizes` bytes: in the input where the block found
    their raw string (`raw`, block-relative), else in the scan file from byte `spilled`.
    Also the rows to spill (None: all of them)."""
    in_input = np.zeros(len(sizes), dtype=bool) if raw is None else raw[:, 0] >= 0
    spill = ~in_input
    span = np.zeros(len(sizes), dtype=SPAN_DTYPE)
    span["in_input"], span["size"] = in_input, sizes
    if raw is not None:  # only line blocks of plain JSONL locate raw strings
        assert isinstance(block, LineBlock)
        span["start"][in_input] = raw[in_input, 0] + block.base_offset
        span["length"][in_input] = raw[in_input, 1] - raw[in_input, 0]
    spilled_sizes = sizes[spill]
    span["start"][spill] = spilled + np.cumsum(spilled_sizes) - spilled_sizes  # back to back from `spilled`
    span["length"][spill] = spilled_sizes
    return span, (None if spill.all() else spill)


def _text_units(
    texts: pl.Series, buffers: tuple[np.ndarray, np.ndarray] | None, keep: np.ndarray, job: ScanJob
) -> tuple[np.ndarray, np.ndarray]:
    """Characters and tokens (0 without a tokenizer) of each kept record's text: a pretrain
    record's text, every message's content of the others. Characters are counted in place
    (in `buffers`, the texts' bytes, where the parser has them; else by polars over the whole
    batch): no copy of the kept texts on this hot path; only the tokenizer needs those."""
    if buffers is not None:
        characters = character_counts(TextBatch(texts, buffers), np.flatnonzero(keep)).astype(np.uint64)
    else:
        characters = texts.str.len_chars().fill_null(0).to_numpy()[keep].astype(np.uint64)
    if job.tokenizer is None:
        return characters, np.zeros(len(characters), dtype=np.uint64)
    kept = texts.filter(pl.Series(keep)).fill_null("").to_list()
    return characters, load_token_counter(job.tokenizer)(kept).astype(np.uint64)


def _output_lengths(data: np.ndarray, offsets: np.ndarray, rows: np.ndarray, job: ScanJob) -> np.ndarray:
    """Exact length of the output line (newline included) of values `rows` (`string_buffers`):
    plain pretrain texts are encoded at write time, everything else is a whole JSON line already."""
    if job.text_values:
        return line_lengths(data, offsets, job.task.dataset_name, rows)
    return (offsets[rows + 1] - offsets[rows] + 1).astype(np.uint64)


def _rows_of(values: pa.Array, data: np.ndarray, offsets: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """The bytes of values `rows` (ascending) back to back: a slice of `data` when they are all
    the values, else a copy."""
    if len(rows) == len(values):
        return data
    return string_buffers(values.take(arrays.integers(rows)))[0]


def with_language(values: pa.Array, fields: pl.DataFrame, job: ScanJob) -> pa.Array:
    """Output lines with `language` and `language_score` (the columns of `fields`, one row per line) added."""
    if job.schema == "pretrain":
        frame = pl.DataFrame({"text": pl.Series(values), "source": job.task.dataset_name}).hstack(fields)
        encoded = frame.select(pl.struct(pl.all()).struct.json_encode()).to_series()
        return encoded.to_arrow().cast(pa.large_string()).cast(pa.large_binary())
    lines = []
    for line, language, score in zip(values.to_pylist(), fields["language"].to_list(), fields["language_score"].to_list(), strict=True):
        record = orjson.loads(line)
        source = record.pop("source")
        record.update(language=language, language_score=score, source=source)
        lines.append(orjson.dumps(record))
    return pa.array(lines, type=pa.large_binary())


def rejected_line(value: str | bytes, source: str, reason: str, schema: Phase, matched: dict[str, str] | None = None) -> bytes:
    """One `--write-rejected` line: the record as it would have been written, plus why it
    was not (and, for decontamination, the evaluation record it `matched`)."""
    extra = {"reason": reason} if matched is None else {"reason": reason, "matched": matched}
    if schema == "pretrain" and isinstance(value, str):
        return orjson.dumps({"text": value, "source": source, **extra}) + b"\n"
    record = orjson.loads(value)
    record.update(extra)
    return orjson.dumps(record) + b"\n"


def _write_rejected(
    handle: Any, block: LineBlock | TableBlock, parsed: Parsed, reasons: np.ndarray, job: ScanJob, matches: dict[int, np.ndarray] | None
) -> None:
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
        values = parsed.values.take(arrays.integers(removed)).to_pylist()
        for row, value, reason in zip(removed.tolist(), values, reasons[removed].tolist(), strict=True):
            matched = None
            if matches and row in matches:
                assert job.decontaminate is not None
                matched = decontaminate.match_description(parsed.all_text, row, matches[row], job.decontaminate)
            handle.write(rejected_line(value, source, job.reason(reason), job.schema, matched))


def _handle_bad(block: LineBlock | TableBlock, bad: list[tuple[int, str]], job: ScanJob, stats: ScanStats) -> None:
    if job.on_bad_record == "error":
        index, reason = bad[0]
        msg = (
            f"{_where(block, index, job)}: {reason} (dataset {job.task.dataset_name!r}; "
            "set metadata.on_bad_record: skip to skip such records)"
        )
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
    return f"{path}:{line_number(job.task.file, block.base_offset + start)}"
