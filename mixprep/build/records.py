"""Raw input blocks -> checked records of the mixture's schema, and the text filters judge.

Pretrain records need a string `text` field (or `text_field`); SFT, DPO and RL records
need their message fields in the expected shapes. A record that fails is reported
with its reason (the scan adds file and line). The pretrain hot path reads a whole
block's texts with `strictjson.text_column` (compiled; strict JSON only), then with
Arrow's JSON reader asking for the text field only; any block neither can
take (a malformed line, a mistyped field) is re-read line by line with orjson to find
exactly which record is bad. Other phases keep each record whole (plus `"source"`) as
its output JSON line.
"""
from __future__ import annotations

import io
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.json as pajson

from mixprep.build import arrays
from mixprep.build.rawjson import locate_field
from mixprep.build.strictjson import text_column
from mixprep.config.schema import Phase
from mixprep.jsonl import dump_json, load_json_object
from mixprep.sources.readers import LineBlock, TableBlock

ROLES = ("user", "assistant", "system", "tool", "function")


@dataclass(frozen=True)
class RecordSpec:
    """What a source's records must look like, and which text the filters judge."""

    schema: Phase
    text_field: str
    filter_on: str
    source: str
    """The dataset name, written as each output record's "source"."""
    raw_spans: bool = False
    """Also find each text's raw JSON string in its line, to be read back from the input."""
    contents: bool = False
    """Structured phases: also keep every message's content (decontamination and the token
    counts read them all, whatever `filter_on` says)."""


@dataclass(frozen=True)
class Parsed:
    """A block after parsing: output columns for good records, reasons for bad ones."""

    values: pa.Array  # pretrain: text (large_string); other phases: JSON line (large_binary)
    filter_text: pl.Series
    positions: np.ndarray  # uint64 identity positions of the good records
    bad: list[tuple[int, str]]  # (index in block, reason)
    field_kinds: Counter = field(default_factory=Counter)
    raw_spans: np.ndarray | None = None
    """int64 (n, 2): each good record's raw JSON string in the block (start, end), -1 where unknown."""
    contents: pl.Series | None = None
    """All of each good record's text (every message), where it differs from `filter_text`."""
    text_buffers: tuple[np.ndarray, np.ndarray] | None = None
    """`filter_text`'s bytes and n+1 offsets in the compiled filters' layout (`TextBatch`),
    where the parser decoded them so."""

    @property
    def all_text(self) -> pl.Series:
        return self.filter_text if self.contents is None else self.contents


# -- parsing -------------------------------------------------------------------

def parse_block(block: LineBlock | TableBlock, spec: RecordSpec) -> Parsed:
    if spec.schema == "pretrain":
        if isinstance(block, LineBlock):
            return _pretrain_lines(block, spec.text_field, raw_spans=spec.raw_spans)
        return _pretrain_table(block, spec.text_field)
    records = block_records(block)
    return _structured(records, block.positions, spec)


def _pretrain_lines(block: LineBlock, text_field: str, *, raw_spans: bool = False) -> Parsed:
    column = text_column(block.data, block.starts, block.ends, text_field)
    if column is not None:
        return Parsed(
            column.values, pl.Series("text", column.views), block.positions, [],
            raw_spans=column.spans if raw_spans else None, text_buffers=column.buffers,
        )
    texts = None if _skipped_a_byte_order_mark(block) else _fast_text_column(block.data, text_field, len(block.starts))
    if texts is not None and texts.null_count == 0:
        spans = np.stack(locate_field(block.data, block.starts, block.ends, text_field), axis=1) if raw_spans else None
        return Parsed(texts, pl.Series("text", texts), block.positions, [], raw_spans=spans)
    return _pretrain_slow(block, text_field)


def _skipped_a_byte_order_mark(block: LineBlock) -> bool:
    """Whether the reader skipped a byte order mark opening one of the lines: Arrow's
    parser would read the whole block with it, so such a block goes line by line. (Only
    the three bytes before each line start are looked at: scanning the block for the
    mark cost 4% of a build.)"""
    starts = block.starts[block.starts >= 3]
    if not len(starts):
        return False
    buf = np.frombuffer(block.data, dtype=np.uint8)
    return bool(np.any((buf[starts - 3] == 0xEF) & (buf[starts - 2] == 0xBB) & (buf[starts - 1] == 0xBF)))


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
    column = table.column(text_field).combine_chunks()
    try:
        column.validate(full=True)  # Arrow's JSON reader copies invalid UTF-8 through
    except pa.ArrowInvalid:
        return None  # the line-by-line path names the record
    return column


def _pretrain_slow(block: LineBlock, text_field: str) -> Parsed:
    texts: list[str] = []
    good: list[int] = []
    bad: list[tuple[int, str]] = []
    data = block.data
    for i, (start, end) in enumerate(zip(block.starts.tolist(), block.ends.tolist(), strict=True)):
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
        return Parsed(
            pa.array([], pa.large_string()),
            pl.Series("text", [], pl.String),
            block.positions[:0],
            [(i, f"missing field {text_field!r}") for i in range(n)],
        )
    column = table.column(text_field).combine_chunks()
    if not (pa.types.is_string(column.type) or pa.types.is_large_string(column.type) or pa.types.is_null(column.type)):
        reason = f"field {text_field!r} is not a string (got {column.type})"
        return Parsed(
            pa.array([], pa.large_string()),
            pl.Series("text", [], pl.String),
            block.positions[:0],
            [(i, reason) for i in range(n)],
        )
    column = column.cast(pa.large_string())
    valid = np.asarray(column.is_valid())
    bad = [(int(i), f"field {text_field!r} is missing or null") for i in np.flatnonzero(~valid)]
    values = column.filter(arrays.mask(valid)) if bad else column
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
    if type(value) is int and not -(2**63) <= value < 2**64:
        return "big integer"  # no Arrow integer holds it: the sidecar keeps it as JSON text
    return {bool: "boolean", int: "number", float: "number", list: "array", dict: "object"}.get(type(value), type(value).__name__)


# -- structured phases (sft / dpo / rl) -------------------------------------------

def block_records(block: LineBlock | TableBlock) -> list[tuple[str | None, Any]]:
    """Each record of the block as (why it is not a JSON object or None, the record)."""
    if isinstance(block, TableBlock):
        return [(None, row) for row in block.table.to_pylist()]
    data = block.data
    return [_load_object(data[s:e]) for s, e in zip(block.starts.tolist(), block.ends.tolist(), strict=True)]


def _structured(records: list[tuple[str | None, Any]], positions: np.ndarray, spec: RecordSpec) -> Parsed:
    lines: list[bytes] = []
    texts: list[str] = []
    contents: list[str] = []
    every_message = spec.contents and spec.filter_on != "all"
    good: list[int] = []
    bad: list[tuple[int, str]] = []
    source = spec.source
    kinds: Counter = Counter()
    for i, (reason, record) in enumerate(records):
        if reason is None:
            reason = record_problem(record, spec.schema)
        if reason is not None:
            bad.append((i, reason))
            continue
        record = {k: v for k, v in record.items() if k != "source"}
        record["source"] = source
        kinds.update((name, _json_type(value)) for name, value in record.items() if value is not None)
        kinds.update(_message_key_kinds(record))
        lines.append(dump_json(record))
        texts.append(filter_text(record, spec.schema, spec.filter_on))
        if every_message:
            contents.append(filter_text(record, spec.schema, "all"))
        good.append(i)
    values = pa.array(lines, type=pa.large_binary())
    every = pl.Series("text", contents, dtype=pl.String) if every_message else None
    return Parsed(values, pl.Series("text", texts, dtype=pl.String), positions[good], bad, kinds, contents=every)


MESSAGE_FIELDS = ("conversations", "prompt", "chosen", "rejected")


def _message_key_kinds(record: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """("conversations[].name", "number") for each extra key of a message (beyond role and
    content): a key whose type differs between messages gives the field no Parquet type."""
    for name in MESSAGE_FIELDS:
        messages = record.get(name)
        if isinstance(messages, list):
            for message in messages:
                if len(message) > 2:
                    for key, value in message.items():
                        if key not in ("role", "content") and value is not None:
                            yield f"{name}[].{key}", _json_type(value)


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
