"""Megatron-LM's indexed dataset: the `.bin` of token ids and its `.idx`, as
`megatron.core.datasets.indexed_dataset` writes and reads them (version 1).

Place in the flow: `build.packed` writes a build's packed split in this format (the
workers fill the `.bin`, the driver writes the `.idx` from the token counts it holds);
`packed.PackedDataset` and `verify` read it. No torch here.

`.idx`, little-endian: the 9-byte magic `MMIDIDX\\x00\\x00`, version (uint64, 1), the ids'
dtype code (uint8: 8 = uint16, 4 = int32, ...), the sequence count S and the document
count D (uint64 each), then S int32 sequence lengths (tokens), S int64 sequence pointers
(byte offsets into the `.bin`) and D int64 document indices (sequence numbers at which
documents start, beginning with 0 and ending with S). mixprep writes one sequence per
document, end-of-document token included, so D = S + 1.
"""
from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mixprep.errors import IndexFormatError

INDEX_HEADER = b"MMIDIDX\x00\x00"
VERSION = 1
DTYPE_CODES = {1: np.uint8, 2: np.int8, 3: np.int16, 4: np.int32, 5: np.int64, 6: np.float64, 7: np.float32, 8: np.uint16}
"""Megatron's `DType` codes. There is no uint32: vocabularies of 65,500 or more use int32."""
_FIXED = len(INDEX_HEADER) + 8 + 1 + 8 + 8


def token_dtype(vocab_size: int) -> np.dtype:
    """The ids' type Megatron's `DType.optimal_dtype` picks for a vocabulary of this size."""
    return np.dtype(np.uint16 if vocab_size < 65500 else np.int32)


def dtype_code(dtype: np.dtype) -> int:
    for code, candidate in DTYPE_CODES.items():
        if np.dtype(candidate) == dtype:
            return code
    msg = f"{dtype} has no code in Megatron's indexed-dataset format"
    raise ValueError(msg)


def write_indexed_index(path: Path, lengths: np.ndarray, dtype: np.dtype) -> None:
    """The `.idx` for documents of these token lengths laid back to back in the `.bin`,
    one sequence per document. Written under a temporary name, then renamed."""
    lengths = np.asarray(lengths, dtype=np.int64)
    if len(lengths) and int(lengths.max()) >= 1 << 31:
        msg = f"{path.name}: a document of {int(lengths.max()):,} tokens does not fit Megatron's int32 sequence lengths"
        raise ValueError(msg)
    pointers = np.zeros(len(lengths), dtype=np.int64)
    np.cumsum(lengths[:-1] * dtype.itemsize, out=pointers[1:])
    documents = np.arange(len(lengths) + 1, dtype=np.int64)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "wb") as out:
        out.write(INDEX_HEADER)
        out.write(struct.pack("<Q", VERSION))
        out.write(struct.pack("<B", dtype_code(dtype)))
        out.write(struct.pack("<Q", len(lengths)))
        out.write(struct.pack("<Q", len(documents)))
        out.write(lengths.astype("<i4").tobytes())
        out.write(pointers.astype("<i8").tobytes())
        out.write(documents.astype("<i8").tobytes())
    os.replace(tmp, path)


@dataclass(frozen=True)
class IndexedIndex:
    """A read `.idx`: arrays memory-mapped from the file."""

    dtype: np.dtype
    sequence_lengths: np.ndarray  # int32
    sequence_pointers: np.ndarray  # int64 byte offsets into the .bin
    document_indices: np.ndarray  # int64

    @property
    def tokens(self) -> int:
        if not len(self.sequence_lengths):
            return 0
        return int(self.sequence_pointers[-1]) // self.dtype.itemsize + int(self.sequence_lengths[-1])


def read_indexed_index(path: Path) -> IndexedIndex:
    """Read and check a Megatron `.idx` (any writer's); IndexFormatError names what is wrong."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(_FIXED)
    except OSError as exc:
        raise _bad(path, f"cannot read it ({exc.strerror or exc})") from None
    if len(head) < _FIXED or head[: len(INDEX_HEADER)] != INDEX_HEADER:
        raise _bad(path, "not a Megatron indexed-dataset index (no MMIDIDX header)")
    at = len(INDEX_HEADER)
    (version,) = struct.unpack_from("<Q", head, at)
    (code,) = struct.unpack_from("<B", head, at + 8)
    sequences, documents = struct.unpack_from("<QQ", head, at + 9)
    if version != VERSION:
        raise _bad(path, f"index version {version}; this reader knows version {VERSION}")
    if code not in DTYPE_CODES:
        raise _bad(path, f"unknown dtype code {code}")
    size = os.path.getsize(path)
    expected = _FIXED + sequences * 12 + documents * 8
    if size < expected:
        raise _bad(path, f"{size} bytes, but its header describes {sequences} sequences and {documents} documents ({expected} bytes)")
    if not sequences:
        empty = np.zeros(0, dtype=np.int64)
        return IndexedIndex(np.dtype(DTYPE_CODES[code]), empty.astype(np.int32), empty, np.zeros(documents, dtype=np.int64))
    mapped = np.memmap(path, dtype=np.uint8, mode="r")
    lengths = mapped[_FIXED : _FIXED + sequences * 4].view("<i4")
    pointers = mapped[_FIXED + sequences * 4 : _FIXED + sequences * 12].view("<i8")
    document_indices = mapped[_FIXED + sequences * 12 : expected].view("<i8")
    return IndexedIndex(np.dtype(DTYPE_CODES[code]), lengths, pointers, document_indices)


def _bad(path: Path, what: str) -> IndexFormatError:
    return IndexFormatError(f"{path}: {what}")
