"""The Parquet sidecar's tables: the same records as the JSONL, as columns.

Pretrain records are two `string` columns (`pretrain_sidecar`); other phases' records are
parsed into columns whose types are unified across buckets at the end, fields whose JSON
type varies between records kept as JSON text (`sidecar_json_fields`). Every writer of
the sidecar (a write task's part, the driver's thread) uses `parquet_writer`'s options, so
parts encoded anywhere put together into the same bytes (`parquet_parts`).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from mixprep.build import arrays
from mixprep.build.records import MESSAGE_FIELDS
from mixprep.build.scan import ScanResult
from mixprep.errors import OutputError
from mixprep.jsonl import dump_json, load_json_object

PRETRAIN_SIDECAR = pa.schema([("text", pa.string()), ("source", pa.string())])
"""`string`, not `large_string`: the type `datasets` gives the same field read from the JSONL,
so the two copies concatenate (`concatenate_datasets` refuses features that differ)."""
MAX_STRING_CHUNK = (1 << 31) - 1  # bytes one `string` array can hold (int32 offsets)
PARQUET_ROW_GROUP = 16_384


def pretrain_sidecar(texts: pa.LargeBinaryArray, datasets: np.ndarray, names: tuple[str, ...]) -> pa.Table:
    """UTF-8 texts and each one's dataset number (indexing `names`) as the sidecar's rows."""
    source = pa.DictionaryArray.from_arrays(arrays.integers(datasets, np.int32), arrays.strings(names)).cast(pa.string())
    return pa.table([_as_string(texts), source], schema=PRETRAIN_SIDECAR)


def _as_string(array: pa.LargeBinaryArray) -> pa.ChunkedArray:
    """UTF-8 bytes as `string` chunks of at most MAX_STRING_CHUNK bytes each (a bucket over
    2 GiB, `shuffle_bucket_mb: 2048` or more, becomes several chunks of one row group).

    Built from the buffers, not cast: a cast validates the UTF-8 again (~0.3 CPU-s per 1.5 GB),
    and these texts are the scan's, which Arrow validated (read back from an input, they are
    checked against the scan's lengths, and the build fails if an input changed meanwhile)."""
    offsets = np.frombuffer(array.buffers()[1], dtype=np.int64)[array.offset : array.offset + len(array) + 1]
    data = array.buffers()[2] or pa.py_buffer(b"")
    chunks, first = [], 0
    while first < len(array) or not chunks:
        limit = int(offsets[first]) + MAX_STRING_CHUNK
        last = max(first + 1, int(np.searchsorted(offsets, limit, side="right")) - 1) if first < len(array) else first
        base = int(offsets[first])
        chunk_offsets = (offsets[first : last + 1] - base).astype(np.int32)
        chunk_data = data.slice(base, int(offsets[last]) - base)
        chunks.append(pa.Array.from_buffers(pa.string(), last - first, [None, pa.py_buffer(chunk_offsets), chunk_data]))
        first = last
    return pa.chunked_array(chunks, pa.string())


def structured_sidecar(lines: pa.Array, json_fields: tuple[str, ...]) -> pa.Table:
    """SFT/DPO/RL records as columns; `json_fields` (see build.sidecar_json_fields) as JSON text."""
    records = [load_json_object(line) for line in lines.to_pylist()]
    if not records:
        return pa.table({})
    for record in records:
        for name in json_fields:
            if record.get(name) is not None:
                record[name] = dump_json(record[name]).decode()
    try:
        return pa.Table.from_struct_array(pa.array(records))
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        # Only the message fields are left nested, and those were checked per record,
        # but a message may carry extra keys whose types disagree.
        msg = f"records disagree on a nested field's type, so no Parquet schema fits them ({exc}); make it consistent"
        raise OutputError(msg) from None


def parquet_writer(path: Path, schema: pa.Schema, compression: str) -> pq.ParquetWriter:
    return pq.ParquetWriter(path, schema, **parquet_options(compression))


def parquet_options(compression: str) -> dict[str, Any]:
    # Dictionary-encoding long texts only costs time before falling back; `source` repeats a few names.
    return {"compression": compression, "use_dictionary": ["source"]}


def conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """Reshape a table to `schema`: missing columns become nulls, others are cast."""
    columns = []
    for schema_field in schema:
        if schema_field.name in table.column_names:
            columns.append(table.column(schema_field.name).cast(schema_field.type))
        else:
            columns.append(pa.nulls(table.num_rows, schema_field.type))
    return pa.table(columns, schema=schema)


# Fields whose shape the record schema checks: kept as Arrow structs/lists in the sidecar.


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
    as_json = set()
    for name, found in kinds.items():
        field_name, _, message_key = name.partition("[].")
        if len(found) > 1 or "big integer" in found or (found & nested and (message_key or name not in MESSAGE_FIELDS)):
            as_json.add(field_name)  # a message key that disagrees: the whole messages field
    return tuple(sorted(as_json))
