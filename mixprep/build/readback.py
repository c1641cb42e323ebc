"""Kept records read back by byte range: `pread` from compiled code, no mapping.

A write task needs its records' bytes from the inputs (plain local JSONL: the raw JSON
strings, decoded here) and from the scan files (spilled values). They lie all over those
files, a few to a page. Mapping the files put every page a build touched into each
worker's resident set (the whole input: 1.5 GB of PSS at 1.5 GB, counted against the
build although the pages are the page cache's); reading each range with `pread` into the
task's own buffers costs ~0.2 us per record more (0.70 against 0.51 us for 1 KB records,
measured on a cached 500 MB file) and leaves only the buffers resident.

Each range is read in file-offset order (the callers sort them): neighbouring records
share pages, and a file not in the page cache is read front to back.
"""
from __future__ import annotations

import os

import numba
import numpy as np

import mixprep.numba_cache  # noqa: F401 - a writable kernel cache before the first @njit(cache=True)
from mixprep.build.rawjson import decode_rows
from mixprep.build.workdir import ReusedBuffer
from mixprep.errors import SourceError
from mixprep.filters.intrinsics import pread_into

DECODE_CHUNK_BYTES = 1 << 20
"""Raw JSON strings read per round before they are decoded: small enough to stay in cache
between the read and the decode, large enough that a round is many records."""


def read_ranges(path: str, starts: np.ndarray, sizes: np.ndarray, out: np.ndarray, out_starts: np.ndarray) -> None:
    """out[out_starts[k]:out_starts[k] + sizes[k]] = the file's bytes starts[k]:starts[k] + sizes[k].

    Raises SourceError when a range lies past the file's end (the file shrank since the
    scan) and OSError when reading fails."""
    starts, sizes, out_starts = (a.astype(np.int64, copy=False) for a in (starts, sizes, out_starts))
    assert len(starts) == 0 or (int((out_starts + sizes).max()) <= len(out) and int(out_starts.min()) >= 0), "a range past its buffer"
    fd = os.open(path, os.O_RDONLY)
    try:
        k = 0
        while k < len(starts):
            failed, _ = _pread_ranges(fd, starts[k:], sizes[k:], out, out_starts[k:])
            if failed < 0:
                return
            # The range that failed, read again from Python: an error becomes its OSError
            # (an interrupted read is retried), a short read means the file shrank.
            k += failed
            start, size, at = int(starts[k]), int(sizes[k]), int(out_starts[k])
            data = os.pread(fd, size, start)
            if len(data) < size:
                msg = (
                    f"{path}: {size} bytes at byte {start} are past its end; the file changed during the build "
                    "(rebuild once it is complete)"
                )
                raise SourceError(msg)
            out[at : at + size] = np.frombuffer(data, dtype=np.uint8)
            k += 1
    finally:
        os.close(fd)


def decode_ranges(
    path: str, starts: np.ndarray, lengths: np.ndarray, out: np.ndarray, out_offsets: np.ndarray, slots: np.ndarray
) -> int:
    """Decode raw JSON string k (`lengths[k]` bytes at byte `starts[k]` of `path`) into
    out slot `slots[k]`, as `rawjson.decode_rows` does from memory. Returns -1, or the
    first k whose decoded length differs from its slot's (the input changed since the scan)."""
    raw_offsets = np.zeros(len(starts) + 1, dtype=np.int64)
    np.cumsum(lengths, out=raw_offsets[1:])
    first = 0
    while first < len(starts):
        # Up to DECODE_CHUNK_BYTES of raw strings per round (always at least one string).
        last = max(int(np.searchsorted(raw_offsets, raw_offsets[first] + DECODE_CHUNK_BYTES, side="right")) - 1, first + 1)
        raw = _scratch.take(int(raw_offsets[last] - raw_offsets[first]))
        at = raw_offsets[first:last] - raw_offsets[first]
        read_ranges(path, starts[first:last], lengths[first:last], raw, at)
        failed = decode_rows(raw, at, lengths[first:last], out, out_offsets, slots[first:last])
        if failed >= 0:
            return first + failed
        first = last
    return -1


_scratch = ReusedBuffer(DECODE_CHUNK_BYTES)
"""The raw strings of one round (a string larger than a round grows it)."""


def release_scratch() -> None:
    _scratch.release()


@numba.njit(cache=True, nogil=True)
def _pread_ranges(fd: int, starts: np.ndarray, sizes: np.ndarray, out: np.ndarray, out_starts: np.ndarray) -> tuple[int, int]:
    """(-1, 0) when every range was read whole; else (k, pread's result) for the first
    range k that could not be (0: past the file's end, -1: an error)."""
    for k in range(len(starts)):
        done = 0
        size = sizes[k]
        while done < size:
            got = pread_into(fd, out, out_starts[k] + done, size - done, starts[k] + done)
            if got <= 0:
                return k, got
            done += got
    return -1, 0
