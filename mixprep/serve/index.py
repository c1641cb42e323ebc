"""The `.idx` offset index: O(1) random access into a JSONL file.

Place in the flow: `build.writers` computes offsets while it writes a build's JSONL and
calls `write_index`; `dataset` calls `ensure_index` on any JSONL (ours or not)
and memory-maps the result; `python -m mixprep index FILE` prebuilds one.

Format (version 1, little-endian, documented in the README): a 64-byte header
(magic, version, flags, record count, data size, data mtime_ns, fingerprint), then
n+1 uint64 offsets: the start of every record line, then the data size. uint64
because files pass 4 GiB.

Guarantees:
- A blank (empty or whitespace-only) line is not a record; a last line without a
  trailing newline is one. Record i is `data[off[i]:off[i+1]]`, possibly followed by
  its newline and blank lines, which readers strip.
- An index is never used stale: size, mtime and a content fingerprint of the data file
  are checked on every open, and `ensure_index` rebuilds a stale one.
- Writes go to a temporary name in the destination folder and are `os.replace`d into
  place, so readers never see a half-written index.
- Building scans the file in 16 MiB chunks with numpy (benchmarks/NOTES.md has the speed);
  memory stays bounded by the chunk plus 8 bytes per record.
"""
from __future__ import annotations

import logging
import operator
import os
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import xxhash

from mixprep.errors import IndexFormatError, SourceError

log = logging.getLogger(__name__)


INDEX_SUFFIX = ".idx"
MAGIC = b"MXPIDX\x00\x00"
VERSION = 1
HEADER_SIZE = 64
# magic, version, flags, count, data_size, data_mtime_ns, fingerprint, 16 reserved bytes
_HEADER = struct.Struct("<8sIIQQQQ16x")
assert _HEADER.size == HEADER_SIZE

FINGERPRINT_SPAN = 64 * 1024
SCAN_CHUNK = 16 * 1024 * 1024
CACHE_ENV = "MIXPREP_CACHE"

_NEWLINE = 10
# Bytes that make a line blank when it holds nothing else (JSON whitespace + \v\f).
_BLANK_BYTES = b" \t\r\n\x0b\x0c"


@dataclass(frozen=True)
class IndexHeader:
    count: int
    data_size: int
    data_mtime_ns: int
    fingerprint: int


@dataclass(frozen=True)
class OffsetIndex:
    """An opened, validated index; `offsets` is a read-only uint64 memmap (n+1 entries)."""

    path: Path
    data_path: Path
    offsets: np.ndarray

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def span(self, i: int) -> tuple[int, int]:
        """Byte range of record i (already range-checked by the caller)."""
        return int(self.offsets[i]), int(self.offsets[i + 1])


def fingerprint(data_path: Path, size: int) -> int:
    """xxh3_64 over size (8 LE bytes) + the first and last 64 KiB of the data file."""
    digest = xxhash.xxh3_64()
    digest.update(struct.pack("<Q", size))
    with open(data_path, "rb") as f:
        digest.update(f.read(FINGERPRINT_SPAN))
        f.seek(max(0, size - FINGERPRINT_SPAN))
        digest.update(f.read(FINGERPRINT_SPAN))
    return digest.intdigest()


def write_index(index_path: Path, data_path: Path, offsets: np.ndarray) -> None:
    """Write `offsets` (n+1 uint64, last = data size) as the index of `data_path`, atomically."""
    index_path, data_path = Path(index_path), Path(data_path)
    offsets = np.ascontiguousarray(offsets, dtype="<u8")
    stat = data_path.stat()
    _check_offsets(offsets, data_path, stat.st_size)
    header = _HEADER.pack(
        MAGIC,
        VERSION,
        0,
        len(offsets) - 1,
        stat.st_size,
        stat.st_mtime_ns,
        fingerprint(data_path, stat.st_size),
    )
    tmp = index_path.with_name(f".{index_path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(header)
            f.write(offsets.tobytes())
        os.replace(tmp, index_path)
    finally:
        tmp.unlink(missing_ok=True)


def _check_offsets(offsets: np.ndarray, data_path: Path, size: int) -> None:
    if offsets.ndim != 1 or len(offsets) == 0:
        msg = f"{data_path}: offsets must be a 1-D array of n+1 entries, got shape {offsets.shape}"
        raise IndexFormatError(msg)
    if int(offsets[-1]) != size:
        msg = (
            f"{data_path}: last offset {int(offsets[-1])} must equal the data size {size}; "
            "hint: call write_index after the data file is closed"
        )
        raise IndexFormatError(msg)
    if len(offsets) > 1 and bool(np.any(offsets[1:] < offsets[:-1])):
        msg = f"{data_path}: offsets must be non-decreasing"
        raise IndexFormatError(msg)


def build_offsets(data_path: Path) -> np.ndarray:
    """Scan `data_path` once and return the n+1 uint64 offsets of its non-blank lines."""
    data_path = Path(data_path)
    try:
        f = open(data_path, "rb", buffering=0)
    except OSError as e:
        msg = f"{data_path}: cannot open for indexing: {e.strerror}"
        raise SourceError(msg) from e
    with f:
        size = os.fstat(f.fileno()).st_size
        starts = _scan_line_starts(f, size)
    return np.concatenate([starts, np.array([size], dtype=np.uint64)]).astype("<u8", copy=False)


def _scan_line_starts(f, size: int) -> np.ndarray:
    """Starts of all non-blank lines; reads 16 MiB at a time into one reused buffer."""
    buf = np.empty(SCAN_CHUNK, dtype=np.uint8)
    view = memoryview(buf)
    parts: list[np.ndarray] = []
    line_start = 0  # start of the line that is still open at the current chunk's beginning
    base = 0
    fd = f.fileno()
    while base < size:
        n = f.readinto(view)
        if not n:
            break
        chunk = buf[:n]
        newlines = np.flatnonzero(chunk == _NEWLINE).astype(np.int64) + base
        if len(newlines):
            starts = np.empty(len(newlines), dtype=np.int64)
            starts[0] = line_start
            starts[1:] = newlines[:-1] + 1
            keep = _non_blank(chunk, base, starts, newlines, fd)
            parts.append(starts[keep].astype(np.uint64))
            line_start = int(newlines[-1]) + 1
        base += n
    if line_start < size and _has_content(fd, line_start, size):
        parts.append(np.array([line_start], dtype=np.uint64))
    if not parts:
        return np.empty(0, dtype=np.uint64)
    return np.concatenate(parts)


def _non_blank(chunk: np.ndarray, base: int, starts: np.ndarray, ends: np.ndarray, fd: int) -> np.ndarray:
    """Mask of lines [starts, ends) that hold a non-whitespace byte.

    JSONL lines almost always begin with `{`, so the first byte decides in a vectorized
    step; only lines that begin with whitespace get a byte-level look.
    """
    keep = ends > starts
    inside = starts >= base  # the first line may have started in an earlier chunk
    first = np.full(len(starts), _NEWLINE, dtype=np.uint8)
    first[inside & keep] = chunk[(starts[inside & keep] - base)]
    if not inside[0] and keep[0]:
        first[0] = os.pread(fd, 1, int(starts[0]))[0]
    suspicious = keep & np.isin(first, np.frombuffer(_BLANK_BYTES, dtype=np.uint8))
    for i in np.flatnonzero(suspicious):
        keep[i] = _has_content(fd, int(starts[i]), int(ends[i]))
    return keep


def _has_content(fd: int, start: int, end: int) -> bool:
    """Whether bytes [start, end) of the file hold anything but whitespace."""
    step = 1 << 20
    for pos in range(start, end, step):
        if os.pread(fd, min(step, end - pos), pos).strip(_BLANK_BYTES):
            return True
    return False


def read_header(index_path: Path) -> IndexHeader:
    """Parse and check the fixed header of an index file."""
    index_path = Path(index_path)
    if index_path.is_dir():
        msg = f"{index_path}: is a folder, not an index file; remove or rename it (`mixprep index` writes the index there)"
        raise IndexFormatError(msg)
    with open(index_path, "rb") as f:
        raw = f.read(HEADER_SIZE)
    if len(raw) < HEADER_SIZE:
        msg = f"{index_path}: truncated header ({len(raw)} of {HEADER_SIZE} bytes); hint: rebuild with `mixprep index --force`"
        raise IndexFormatError(msg)
    magic, version, _flags, count, data_size, mtime_ns, fp = _HEADER.unpack(raw)
    if magic != MAGIC:
        msg = f"{index_path}: not a mixprep index (magic {magic!r}, expected {MAGIC!r})"
        raise IndexFormatError(msg)
    if version != VERSION:
        msg = f"{index_path}: index format version {version}; this mixprep reads version {VERSION}; hint: rebuild it"
        raise IndexFormatError(msg)
    expected = HEADER_SIZE + 8 * (count + 1)
    actual = index_path.stat().st_size
    if actual != expected:
        msg = f"{index_path}: size {actual} bytes does not match {count} records (expected {expected}); hint: rebuild it"
        raise IndexFormatError(msg)
    return IndexHeader(count=count, data_size=data_size, data_mtime_ns=mtime_ns, fingerprint=fp)


def open_index(index_path: Path, data_path: Path) -> OffsetIndex:
    """Memory-map a valid, fresh index; raises IndexFormatError when corrupt or stale."""
    index_path, data_path = Path(index_path), Path(data_path)
    header = read_header(index_path)
    stat = data_path.stat()
    stale = _staleness(header, data_path, stat)
    if stale:
        msg = f"{index_path}: stale index for {data_path} ({stale}); hint: rebuild with `mixprep index --force`"
        raise IndexFormatError(msg)
    offsets = np.memmap(index_path, dtype="<u8", mode="r", offset=HEADER_SIZE, shape=(header.count + 1,))
    if int(offsets[-1]) != header.data_size:
        msg = f"{index_path}: last offset {int(offsets[-1])} != data size {header.data_size}; hint: rebuild it"
        raise IndexFormatError(msg)
    return OffsetIndex(path=index_path, data_path=data_path, offsets=offsets)


def _staleness(header: IndexHeader, data_path: Path, stat: os.stat_result) -> str:
    """Why the index no longer describes the data file, or '' when it does."""
    if header.data_size != stat.st_size:
        return f"data size {stat.st_size} != indexed {header.data_size}"
    if header.data_mtime_ns != stat.st_mtime_ns:
        return f"data mtime_ns {stat.st_mtime_ns} != indexed {header.data_mtime_ns}"
    if header.fingerprint != fingerprint(data_path, stat.st_size):
        return "data fingerprint changed"
    return ""


def sibling_index_path(data_path: Path) -> Path:
    """`<stem>.idx` next to `<stem>.jsonl`."""
    return Path(data_path).with_suffix(INDEX_SUFFIX)


def cache_index_path(data_path: Path) -> Path:
    """Where the index of a file in a read-only folder lives: $MIXPREP_CACHE or ~/.cache/mixprep."""
    absolute = str(Path(data_path).resolve())
    root = os.environ.get(CACHE_ENV) or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "mixprep"
    )
    name = f"{Path(data_path).stem}-{xxhash.xxh3_64_hexdigest(absolute.encode())}{INDEX_SUFFIX}"
    return Path(root) / "index" / name


def _folder_is_writable(folder: Path) -> bool:
    return os.access(folder, os.W_OK | os.X_OK)


def index_path_for(data_path: Path) -> Path:
    """The index location: next to the file, or under the cache dir if the folder isn't writable."""
    data_path = Path(data_path)
    sibling = sibling_index_path(data_path)
    if sibling.is_dir():
        log.warning("%s is a folder, not an index: the index goes to %s instead", sibling, cache_index_path(data_path))
        return cache_index_path(data_path)
    if _folder_is_writable(data_path.resolve().parent):
        return sibling
    return cache_index_path(data_path)


def ensure_index(data_path: Path, *, rebuild: bool = False) -> OffsetIndex:
    """Open the index of `data_path` if fresh, else (re)build it; never returns a stale one."""
    data_path = Path(data_path)
    if not data_path.is_file():
        msg = f"{data_path}: no such file; hint: check the path (relative paths resolve against {Path.cwd()})"
        raise SourceError(msg)
    candidates = [sibling_index_path(data_path), cache_index_path(data_path)]
    if not rebuild:
        for candidate in candidates:
            opened = _try_open(candidate, data_path)
            if opened is not None:
                return opened
    offsets = build_offsets(data_path)
    target = index_path_for(data_path)
    try:
        _write_into(target, data_path, offsets)
    except PermissionError:
        # os.access can say yes where a write still fails (read-only mounts, ACLs).
        target = cache_index_path(data_path)
        _write_into(target, data_path, offsets)
    log.info("indexed %s: %d records -> %s", data_path, len(offsets) - 1, target)
    return open_index(target, data_path)


def _try_open(index_path: Path, data_path: Path) -> OffsetIndex | None:
    if not index_path.is_file():
        return None
    try:
        return open_index(index_path, data_path)
    except IndexFormatError as e:
        log.warning("rebuilding index: %s", e)
        return None


def _write_into(index_path: Path, data_path: Path, offsets: np.ndarray) -> None:
    index_path.parent.mkdir(parents=True, exist_ok=True)
    write_index(index_path, data_path, offsets)


def checked_position(index: int, length: int, what: str) -> int:
    """A dataset's `__getitem__` index as a position in [0, length): negative ones count
    from the end, as for a list; anything else is an IndexError that says `what` was asked."""
    i = operator.index(index)
    if i < 0:
        i += length
    if not 0 <= i < length:
        msg = f"index {index} out of range for {what}"
        raise IndexError(msg)
    return i
