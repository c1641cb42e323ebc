"""Scan task -> blocks of records, with bounded memory.

JSONL (plain, gzip, zstd, bz2, xz) is read in blocks of whole lines (`BLOCK_BYTES`); a
plain file's task owns the lines that start inside its byte range. Parquet is
read by row group, Arrow IPC by record batch, CSV/TSV as a stream of Arrow
batches (every column read as a string; quoted fields may span lines). Every
block carries each record's position (byte offset or row number) so records keep
a stable identity and bad records can be reported as `file:line` / `file: row N`.

Local files are opened with plain `open`/memory maps; remote URLs (`s3://`,
`hf://`, ...) through fsspec (`mixprep.remote`), with the same byte-range and
block semantics, so a remote copy of a tree yields the same records.
"""
from __future__ import annotations

import bz2
import contextlib
import csv
import gzip
import io
import lzma
import sys
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, BinaryIO

import numba
import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.ipc as ipc
import pyarrow.parquet as pq

import mixprep.numba_cache  # noqa: F401 - a writable kernel cache before the first @njit(cache=True)
from mixprep.errors import SourceError
from mixprep.filters.intrinsics import bytes_between, popcount, trailing_zeros
from mixprep.jsonl import line_number_at
from mixprep.sources import remote
from mixprep.sources.plan import ScanTask, SourceFile

BLOCK_BYTES = 4 * 1024 * 1024
PARQUET_BATCH_ROWS = 65_536

# Bytes that make a line blank when it holds nothing else (space, tab, CR, LF).
_NEWLINE = 10


@dataclass(frozen=True)
class LineBlock:
    """Whole JSONL lines: `data` holds them, `starts`/`ends` slice each non-blank one."""

    data: bytes | bytearray
    """Read into a buffer of the block's own (`_whole_lines`); never written to after."""
    base_offset: int
    """Byte offset of data[0] in the (decompressed) file."""
    first_line: int | None
    """1-based line number of data[0] when known while streaming (compressed files)."""
    starts: np.ndarray
    ends: np.ndarray

    @property
    def positions(self) -> np.ndarray:
        return self.starts.astype(np.uint64) + np.uint64(self.base_offset)


@dataclass(frozen=True)
class TableBlock:
    """Rows from a columnar file; `positions` are row numbers in the file."""

    table: pa.Table
    positions: np.ndarray


def line_spans(data: bytes | bytearray) -> tuple[np.ndarray, np.ndarray]:
    """Start/end (exclusive, without the newline) of every non-blank line in data.

    A UTF-8 byte order mark opening a line (a file written by some Windows tools, or files
    concatenated with one) is an encoding mark, not part of the record: it is skipped. A
    line is blank when it opens with a space, tab or CR and holds only ASCII whitespace."""
    buf = np.frombuffer(data, dtype=np.uint8)
    most = _newline_count(buf) + 1
    starts = np.empty(most, dtype=np.int64)
    ends = np.empty(most, dtype=np.int64)
    count = _line_spans(buf, starts, ends)
    return starts[:count], ends[:count]


@numba.njit(cache=True, nogil=True)
def _newline_count(buf: np.ndarray) -> int:
    count = 0
    i = 0
    while i + 32 <= len(buf):
        count += popcount(bytes_between(buf, i, _NEWLINE, _NEWLINE))
        i += 32
    while i < len(buf):
        count += buf[i] == _NEWLINE
        i += 1
    return count


@numba.njit(cache=True, nogil=True)
def _line_spans(buf: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> int:
    """Fill starts/ends with the non-blank lines of buf (as `line_spans` says); their count."""
    size = len(buf)
    count = 0
    start = 0
    while True:
        end = start
        while end + 32 <= size:  # the next newline, 32 bytes a compare
            mask = bytes_between(buf, end, _NEWLINE, _NEWLINE)
            if mask != 0:
                end += trailing_zeros(mask)
                break
            end += 32
        while end < size and buf[end] != _NEWLINE:
            end += 1
        first = start
        if first + 3 <= size and buf[first] == 0xEF and buf[first + 1] == 0xBB and buf[first + 2] == 0xBF:
            first += 3
        if first < end and not _blank(buf, first, end):
            starts[count] = first
            ends[count] = end
            count += 1
        if end >= size:
            return count
        start = end + 1


@numba.njit(cache=True, nogil=True, inline="always")
def _blank(buf: np.ndarray, start: int, end: int) -> bool:
    """A line opening with a space, tab or CR that holds only what bytes.strip() removes."""
    byte = buf[start]
    if not (byte == 32 or byte == 9 or byte == 13):
        return False  # records open with "{": almost every line stops here
    for i in range(start, end):
        byte = buf[i]
        if not (byte == 32 or 9 <= byte <= 13):
            return False
    return True


def read_blocks(task: ScanTask) -> Iterator[LineBlock | TableBlock]:
    file = task.file
    try:
        if file.format == "jsonl":
            if file.compression is None:
                yield from _plain_jsonl_blocks(file, task.start, _end_of(task))
            else:
                yield from _compressed_jsonl_blocks(file)
        elif file.format == "parquet":
            yield from _parquet_blocks(file)
        elif file.format == "arrow":
            yield from _arrow_blocks(file)
        elif file.format in CSV_DELIMITERS:
            yield from _csv_blocks(file)
        else:  # config validation admits only the formats above
            msg = f"{file.path}: unsupported format {file.format!r}"
            raise SourceError(msg)
    except FileNotFoundError:
        msg = f"{file.path}: file disappeared during the build"
        raise SourceError(msg) from None
    except SourceError:
        raise
    except (OSError, EOFError, pa.ArrowInvalid, zlib.error, lzma.LZMAError) as exc:
        raise SourceError(_read_error(file, exc)) from None
    except remote.network_errors() as exc:  # botocore / aiohttp errors that are not OSErrors
        msg = f"{file.path}: cannot read: {remote.describe_network_error(exc, file.timeouts, file.path)}"
        raise SourceError(msg) from None
    except Exception as exc:
        if type(exc).__name__ != "ZstdError":
            raise
        raise SourceError(_read_error(file, exc)) from None


def _end_of(task: ScanTask) -> int:
    """Where a task's byte range ends; a whole streamed HTTP file is read to its end, since a
    server need not say how long it is."""
    whole = task.start == 0 and task.end == task.file.size
    if whole and remote.scheme_of(task.file.path) in remote.HTTP_SCHEMES:
        return sys.maxsize
    return task.end


def _read_error(file: SourceFile, exc: BaseException) -> str:
    """One line for a file that cannot be read: truncated or corrupt compressed data named as such."""
    if remote.is_remote(file.path) and not isinstance(exc, (EOFError, pa.ArrowInvalid, zlib.error, lzma.LZMAError)):
        return f"{file.path}: cannot read: {remote.describe_network_error(exc, file.timeouts, file.path)}"
    if file.compression is not None:
        if isinstance(exc, EOFError):
            return (
                f"{file.path}: truncated {file.compression} file: it ends before the end of its compressed stream "
                "(an interrupted download or copy?); no record of it was used"
            )
        if not isinstance(exc, PermissionError):
            return f"{file.path}: corrupt {file.compression} data ({exc}); no record of it was used"
    return f"{file.path}: cannot read {file.format} data: {exc}"


def _plain_jsonl_blocks(file: SourceFile, start: int, end: int) -> Iterator[LineBlock]:
    with _open_binary(file, sequential=start == 0) as handle:
        position = _first_line_start(handle, start)  # offset of data[0] below
        if position >= end:
            return
        for block in _whole_lines(handle):
            block_start = position
            position += len(block)
            if position > end:
                # Lines starting at or after `end` belong to the next shard.
                del block[_bytes_owned(block, end - block_start) :]
            starts, ends = line_spans(block)
            if len(starts):
                yield LineBlock(block, block_start, None, starts, ends)
            if position >= end:
                return


def _whole_lines(handle: BinaryIO) -> Iterator[bytearray]:
    """The stream from where it stands, as blocks of whole lines of about BLOCK_BYTES (the
    file's last line may lack its newline).

    Each block is read into a buffer of its own and cut in place: concatenating a read to
    the previous block's unfinished line and slicing the result copied every byte twice
    more (~0.7 CPU-s per 1.5 GB). Only the unfinished line is copied, to open the next block."""
    carry = b""
    while True:
        block = bytearray(len(carry) + BLOCK_BYTES)
        block[: len(carry)] = carry
        with memoryview(block) as whole, whole[len(carry) :] as free:  # released before the block is cut
            got = handle.readinto(free)
        size = len(carry) + got
        if size == 0:
            return
        cut = size if got == 0 else block.rfind(b"\n", 0, size) + 1  # at the end, the last line as it is
        if cut == 0:  # one line longer than a block so far: keep reading
            carry = bytes(block[:size])
            continue
        carry = bytes(block[cut:size])
        del block[cut:]
        yield block
        if got == 0:
            return


def _first_line_start(handle: BinaryIO, start: int) -> int:
    """The offset of the first line that starts at or after `start`."""
    if start == 0:
        return 0
    handle.seek(start - 1)
    if handle.read(1) == b"\n":
        return start
    handle.readline()
    return handle.tell()


def _bytes_owned(block: bytes | bytearray, limit: int) -> int:
    """Length of the prefix of block holding the lines that start before `limit`."""
    if limit <= 0:
        return 0
    newline = block.find(b"\n", limit - 1)
    return len(block) if newline < 0 else newline + 1


def _open_binary(file: SourceFile, *, sequential: bool = False) -> BinaryIO:
    """The raw bytes of a file: plain `open` locally (the fast path), fsspec for URLs
    (`sequential`: read front to back, so HTTP may stream it)."""
    if remote.is_remote(file.path):
        return remote.open_object(file.path, file.storage_options, file.timeouts, sequential=sequential)
    return open(file.path, "rb")  # noqa: SIM115 - the callers close it


@contextlib.contextmanager
def _open_stream(file: SourceFile) -> Iterator[BinaryIO]:
    """The file's (decompressed) bytes as a forward stream; closes the raw handle too."""
    with _open_binary(file, sequential=True) as raw:
        if file.compression is None:
            yield raw
        elif file.compression == "gzip":
            with gzip.GzipFile(fileobj=raw, mode="rb") as handle:
                yield handle  # type: ignore[misc]
        elif file.compression == "bz2":
            with bz2.BZ2File(raw, "rb") as handle:
                yield handle  # type: ignore[misc]
        elif file.compression == "xz":
            with lzma.LZMAFile(raw, "rb") as handle:
                yield handle  # type: ignore[misc]
        else:
            import zstandard

            # BufferedReader adds readline() (the CSV header) on top of the frame reader.
            with io.BufferedReader(_ZstdFrames(raw, zstandard.ZstdDecompressor())) as handle:
                yield handle  # type: ignore[misc]


class _ZstdFrames(io.RawIOBase):
    """zstd frames, one after another, decompressed as a stream. Unlike zstandard's own
    stream reader, a file that ends inside a frame raises EOFError (truncated) instead of
    reading as a shorter file, as gzip, bz2 and lzma do."""

    def __init__(self, raw: BinaryIO, decompressor: Any) -> None:
        self._raw = raw
        self._decompressor = decompressor
        self._frame = decompressor.decompressobj()
        self._in_frame = False
        self._pending = b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while not self._pending:
            chunk = self._raw.read(1 << 20)
            if not chunk:
                if self._in_frame:
                    msg = "Compressed file ended before the end-of-stream marker was reached"
                    raise EOFError(msg)
                return 0
            self._pending = self._decompress(chunk)
        n = min(len(buffer), len(self._pending))
        buffer[:n] = self._pending[:n]
        self._pending = self._pending[n:]
        return n

    def _decompress(self, chunk: bytes) -> bytes:
        out = [self._frame.decompress(chunk)]
        self._in_frame = not self._frame.eof
        while self._frame.eof and self._frame.unused_data:  # the next frame starts in this chunk
            rest = self._frame.unused_data
            self._frame = self._decompressor.decompressobj()
            out.append(self._frame.decompress(rest))
            self._in_frame = not self._frame.eof
        if self._frame.eof:  # a frame ended exactly at the chunk's end: the next one starts fresh
            self._frame = self._decompressor.decompressobj()
        return b"".join(out)


def _compressed_jsonl_blocks(file: SourceFile) -> Iterator[LineBlock]:
    offset = 0
    line = 1
    with _open_stream(file) as handle:
        for block in _whole_lines(handle):
            starts, ends = line_spans(block)
            if len(starts):
                yield LineBlock(block, offset, line, starts, ends)
            offset += len(block)
            line += block.count(b"\n")


def _parquet_blocks(file: SourceFile) -> Iterator[TableBlock]:
    with contextlib.ExitStack() as stack:
        source: Any = file.path
        if remote.is_remote(file.path):
            source = stack.enter_context(_open_binary(file))
        parquet = pq.ParquetFile(source)
        row = 0
        for batch in parquet.iter_batches(batch_size=PARQUET_BATCH_ROWS):
            yield TableBlock(pa.Table.from_batches([batch]), np.arange(row, row + batch.num_rows, dtype=np.uint64))
            row += batch.num_rows


def _arrow_blocks(file: SourceFile) -> Iterator[TableBlock]:
    with contextlib.ExitStack() as stack:
        if remote.is_remote(file.path):
            source: Any = stack.enter_context(_open_binary(file))
        else:
            source = stack.enter_context(pa.memory_map(file.path, "r"))
        try:
            reader = ipc.open_file(source)
            batches = (reader.get_batch(i) for i in range(reader.num_record_batches))
        except pa.ArrowInvalid:  # the stream format (what `datasets` save_to_disk writes)
            source.seek(0)
            batches = iter(ipc.open_stream(source))
        row = 0
        for batch in batches:
            yield TableBlock(pa.Table.from_batches([batch]), np.arange(row, row + batch.num_rows, dtype=np.uint64))
            row += batch.num_rows


CSV_DELIMITERS = {"csv": ",", "tsv": "\t"}


def _csv_blocks(file: SourceFile) -> Iterator[TableBlock]:
    """Rows of a CSV/TSV file with a header line, every column as a string.

    The header is read first so every column can be declared a string: Arrow's
    streaming reader infers types from the first block only, and a text column of
    digits (or an id column) would otherwise change type between blocks.
    """
    delimiter = CSV_DELIMITERS[file.format]
    with _open_stream(file) as handle:
        header = handle.readline()
        if not header.strip():
            return
        names = next(csv.reader([header.decode("utf-8-sig").rstrip("\r\n")], delimiter=delimiter))
        reader = pacsv.open_csv(
            handle,
            read_options=pacsv.ReadOptions(column_names=names, block_size=min(BLOCK_BYTES, 1 << 24)),
            parse_options=pacsv.ParseOptions(delimiter=delimiter, newlines_in_values=True),
            convert_options=pacsv.ConvertOptions(column_types={n: pa.large_string() for n in names}, strings_can_be_null=False),
        )
        row = 0
        for batch in reader:
            yield TableBlock(pa.Table.from_batches([batch]), np.arange(row, row + batch.num_rows, dtype=np.uint64))
            row += batch.num_rows


def line_number(file: SourceFile, offset: int) -> int:
    """1-based line number of the line starting at byte `offset` of a plain file, local or remote."""
    with _open_binary(file, sequential=True) as handle:
        return line_number_at(handle, offset)
