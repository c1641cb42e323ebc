"""One Parquet file from Parquet parts encoded in parallel, without decoding or re-encoding.

The sidecar's row groups are encoded where the rows are (each write task encodes its
bucket's rows as a complete Parquet file, compression included), and the driver only
puts the parts together: "PAR1", every part's body (its column chunks) in bucket
order, and one footer listing every part's row groups. A footer records where each
column chunk starts in its file, so each part's row groups are moved by where its body
lands (`_shift`); nothing else in them changes. The result is the file one
`pq.ParquetWriter` writing the same tables in the same order produces, byte for byte
(tests/test_parquet_parts.py), and the driver's work is a kernel-side copy of the
compressed bytes plus O(row groups) of metadata.

The footer is Thrift's compact protocol (the Parquet format's FileMetaData), read and
written here generically (`_read_struct`/`_write_struct`), so fields this code does not
know are carried through as they are. Parts must have no page index, bloom filter or
encryption (pyarrow writes none by default): their offsets live outside the footer, and a
part with any of them is refused rather than moved wrongly.
"""
from __future__ import annotations

import os
import struct
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

MAGIC = b"PAR1"
_TAIL = 8  # footer length (int32, little-endian) + MAGIC

# Thrift compact protocol type ids.
_STOP, _TRUE, _FALSE, _BYTE, _I16, _I32, _I64, _DOUBLE, _BINARY, _LIST, _SET, _MAP, _STRUCT = range(13)

# Field ids of the Parquet format's Thrift structs (parquet.thrift) used here.
_FILE_NUM_ROWS, _FILE_ROW_GROUPS = 3, 4
_FILE_ENCRYPTION = (8, 9)  # encryption_algorithm, footer_signing_key_metadata
_GROUP_COLUMNS, _GROUP_FILE_OFFSET, _GROUP_ORDINAL = 1, 5, 7
_CHUNK_FILE_PATH, _CHUNK_FILE_OFFSET, _CHUNK_META = 1, 2, 3
_CHUNK_ELSEWHERE = (4, 6, 8, 9)  # offset index, column index, crypto metadata, encrypted metadata
_META_OFFSETS = (9, 10, 11)  # data_page_offset, index_page_offset, dictionary_page_offset
_META_BLOOM_FILTER = 14

Struct = list[list[Any]]
"""A Thrift struct as read: [field id, compact type, value] per field, in file order."""


class ParquetAssembler:
    """Write parts (complete Parquet files, same schema) into one file at `path`, in order."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._handle = open(path, "wb")  # noqa: SIM115 - closed by close() or abort()
        self._handle.write(MAGIC)
        self._position = len(MAGIC)
        self._first_footer: Struct | None = None
        self._row_groups: list[Struct] = []
        self._rows = 0

    def append(self, part: str | Path) -> None:
        """Add a part (a Parquet file). A part with no row group adds nothing."""
        with open(part, "rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            handle.seek(max(size - _TAIL, 0))
            length = _footer_length(handle.read(_TAIL), str(part))
            handle.seek(size - _TAIL - length)
            footer_bytes = handle.read(length)
        footer, end = _read_struct(footer_bytes, 0)
        if end != len(footer_bytes):
            msg = f"{part}: the Parquet footer has trailing bytes"
            raise ValueError(msg)
        groups = _items(footer, _FILE_ROW_GROUPS)
        if not groups:
            return
        _refuse_outside_offsets(groups, footer)
        body_size = size - _TAIL - len(footer_bytes) - len(MAGIC)
        shift = self._position - len(MAGIC)  # a part's body starts right after its MAGIC
        self._handle.flush()
        _copy_range(part, self._handle.fileno(), len(MAGIC), body_size, self._position)
        self._position += body_size
        self._handle.seek(self._position)
        if self._first_footer is None:
            self._first_footer = footer
        self._row_groups += [_shift(group, shift) for group in groups]
        self._rows += _field(footer, _FILE_NUM_ROWS) or 0

    def close(self, empty_schema: pa.Schema, **writer_options: Any) -> int:
        """Write the footer; rows in the file. With no rows at all, the file is the empty
        file `pq.ParquetWriter(empty_schema, **writer_options)` writes."""
        if self._first_footer is None:
            self._handle.close()
            pq.ParquetWriter(self.path, empty_schema, **writer_options).close()
            return 0
        footer = [list(f) for f in self._first_footer]
        _set_field(footer, _FILE_NUM_ROWS, self._rows)
        for k, group in enumerate(self._row_groups):
            if _field(group, _GROUP_ORDINAL) is not None:
                _set_field(group, _GROUP_ORDINAL, ((k + 0x8000) & 0xFFFF) - 0x8000)  # an int16, wrapping as parquet-cpp's does
        _set_field(footer, _FILE_ROW_GROUPS, (_STRUCT, self._row_groups))
        encoded = bytearray()
        _write_struct(encoded, footer)
        with self._handle:
            self._handle.seek(self._position)
            self._handle.write(encoded)
            self._handle.write(struct.pack("<i", len(encoded)))
            self._handle.write(MAGIC)
        return self._rows

    def abort(self) -> None:
        if not self._handle.closed:
            self._handle.close()


# -- moving row groups -----------------------------------------------------------------

def _shift(group: Struct, by: int) -> Struct:
    """A copy of a RowGroup with every file offset in it moved by `by` bytes."""
    group = [list(f) for f in group]
    _move(group, (_GROUP_FILE_OFFSET,), by)
    moved = []
    for chunk in _items(group, _GROUP_COLUMNS):
        chunk = [list(f) for f in chunk]
        if _field(chunk, _CHUNK_FILE_PATH) is not None:
            msg = "a sidecar part's column chunk lives in another file"
            raise ValueError(msg)
        if _field(chunk, _CHUNK_FILE_OFFSET):  # deprecated; parquet-cpp writes 0 there now, which means none
            _move(chunk, (_CHUNK_FILE_OFFSET,), by)
        meta = _field(chunk, _CHUNK_META)
        if meta is not None:
            meta = [list(f) for f in meta]
            _move(meta, _META_OFFSETS, by)
            _set_field(chunk, _CHUNK_META, meta)
        moved.append(chunk)
    if _field(group, _GROUP_COLUMNS) is not None:
        _set_field(group, _GROUP_COLUMNS, (_STRUCT, moved))
    return group


def _move(fields: Struct, field_ids: tuple[int, ...], by: int) -> None:
    for field_id in field_ids:
        value = _field(fields, field_id)
        if value is not None:
            _set_field(fields, field_id, value + by)


def _refuse_outside_offsets(groups: list[Struct], footer: Struct) -> None:
    """Offsets kept outside the footer (page indexes, bloom filters) or encryption: refused."""
    if any(_field(footer, f) is not None for f in _FILE_ENCRYPTION):
        msg = "an encrypted sidecar part cannot be moved"
        raise ValueError(msg)
    for group in groups:
        for chunk in _items(group, _GROUP_COLUMNS):
            meta = _field(chunk, _CHUNK_META)
            if any(_field(chunk, f) is not None for f in _CHUNK_ELSEWHERE) or (
                meta is not None and _field(meta, _META_BLOOM_FILTER) is not None
            ):
                msg = "a sidecar part has a page index or bloom filter, whose offsets cannot be moved"
                raise ValueError(msg)


def _field(fields: Struct, field_id: int) -> Any:
    """A struct's field's value, or None when absent (Thrift has no null values)."""
    for f in fields:
        if f[0] == field_id:
            return f[2]
    return None


def _items(fields: Struct, field_id: int) -> list[Any]:
    """The elements of a list field ([] when absent)."""
    value = _field(fields, field_id)
    return [] if value is None else value[1]


def _set_field(fields: Struct, field_id: int, value: Any) -> None:
    for f in fields:
        if f[0] == field_id:
            f[2] = value
            return
    raise KeyError(field_id)


def _footer_length(tail: bytes, name: str) -> int:
    if len(tail) != _TAIL or tail[4:] != MAGIC:
        msg = f"{name}: not a Parquet file (no PAR1 at its end)"
        raise ValueError(msg)
    return struct.unpack("<i", tail[:4])[0]


def _copy_range(path: str | Path, target_fd: int, offset: int, count: int, at: int) -> None:
    """Copy bytes [offset, offset + count) of `path` to `at` in target_fd, in the kernel where it can."""
    with open(path, "rb") as source:
        fd = source.fileno()
        while count:
            try:
                copied = os.copy_file_range(fd, target_fd, count, offset, at)
            except OSError:  # another file system, or no copy_file_range: through user space
                copied = os.pwrite(target_fd, os.pread(fd, min(count, 1 << 24), offset), at)
            if copied <= 0:
                msg = f"{path}: shorter than its footer says"
                raise OSError(msg)
            offset, at, count = offset + copied, at + copied, count - copied


# -- Thrift compact protocol ------------------------------------------------------------

def _read_varint(data: bytes, i: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[i]
        i += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, i
        shift += 7


def _read_zigzag(data: bytes, i: int) -> tuple[int, int]:
    value, i = _read_varint(data, i)
    return (value >> 1) ^ -(value & 1), i


def _read_value(data: bytes, i: int, kind: int) -> tuple[Any, int]:
    if kind in (_TRUE, _FALSE):  # an element of a list: one byte
        return data[i], i + 1
    if kind == _BYTE:
        return data[i], i + 1
    if kind in (_I16, _I32, _I64):
        return _read_zigzag(data, i)
    if kind == _DOUBLE:
        return data[i : i + 8], i + 8
    if kind == _BINARY:
        size, i = _read_varint(data, i)
        return data[i : i + size], i + size
    if kind in (_LIST, _SET):
        header = data[i]
        i += 1
        size, element = header >> 4, header & 0x0F
        if size == 15:
            size, i = _read_varint(data, i)
        items = []
        for _ in range(size):
            item, i = _read_value(data, i, element)
            items.append(item)
        return (element, items), i
    if kind == _MAP:
        size, i = _read_varint(data, i)
        if size == 0:
            return (0, 0, []), i
        types = data[i]
        i += 1
        pairs = []
        for _ in range(size):
            key, i = _read_value(data, i, types >> 4)
            value, i = _read_value(data, i, types & 0x0F)
            pairs.append((key, value))
        return (types >> 4, types & 0x0F, pairs), i
    if kind == _STRUCT:
        return _read_struct(data, i)
    msg = f"unknown Thrift compact type {kind}"
    raise ValueError(msg)


def _read_struct(data: bytes, i: int) -> tuple[Struct, int]:
    fields: Struct = []
    last = 0
    while True:
        header = data[i]
        i += 1
        if header == _STOP:
            return fields, i
        kind, delta = header & 0x0F, header >> 4
        if delta:
            field_id = last + delta
        else:
            field_id, i = _read_zigzag(data, i)
        if kind in (_TRUE, _FALSE):
            value = kind == _TRUE
        else:
            value, i = _read_value(data, i, kind)
        fields.append([field_id, kind, value])
        last = field_id


def _write_varint(out: bytearray, value: int) -> None:
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)


def _write_zigzag(out: bytearray, value: int) -> None:
    _write_varint(out, (value << 1) ^ (value >> 63))


def _write_value(out: bytearray, kind: int, value: Any) -> None:
    if kind in (_TRUE, _FALSE, _BYTE):
        out.append(value)
    elif kind in (_I16, _I32, _I64):
        _write_zigzag(out, value)
    elif kind == _DOUBLE:
        out += value
    elif kind == _BINARY:
        _write_varint(out, len(value))
        out += value
    elif kind in (_LIST, _SET):
        element, items = value
        if len(items) < 15:
            out.append((len(items) << 4) | element)
        else:
            out.append(0xF0 | element)
            _write_varint(out, len(items))
        for item in items:
            _write_value(out, element, item)
    elif kind == _MAP:
        key_kind, value_kind, pairs = value
        _write_varint(out, len(pairs))
        if pairs:
            out.append((key_kind << 4) | value_kind)
        for key, item in pairs:
            _write_value(out, key_kind, key)
            _write_value(out, value_kind, item)
    elif kind == _STRUCT:
        _write_struct(out, value)
    else:
        msg = f"unknown Thrift compact type {kind}"
        raise ValueError(msg)


def _write_struct(out: bytearray, fields: Struct) -> None:
    last = 0
    for field_id, kind, value in fields:
        if kind in (_TRUE, _FALSE):
            kind = _TRUE if value else _FALSE
        delta = field_id - last
        if 0 < delta <= 15:
            out.append((delta << 4) | kind)
        else:
            out.append(kind)
            _write_zigzag(out, field_id)
        if kind not in (_TRUE, _FALSE):
            _write_value(out, kind, value)
        last = field_id
    out.append(_STOP)
