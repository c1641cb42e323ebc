"""Packed output (`metadata.pack`): each split's records, in JSONL order, as token ids with
an end-of-document token after each, in Megatron's indexed-dataset format (`serve.indexed`).

The scan counted every kept record's tokens, so the driver knows where each record's
ids go before anything is encoded: token offsets are a prefix sum of (tokens + 1) in
final order, like the JSONL's byte offsets. The driver creates the `.bin` at its final
size; each write task encodes the records whose lines start in its bucket, checks each
count against the scan's, writes its ids in place (`pwrite`) and hashes that range. The
driver writes the `.idx` from the counts (numpy, no pass over the ids). The bytes do not
depend on the worker count or on the order tasks finish in.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pyarrow as pa

from mixprep.build.outputs import packed_files
from mixprep.config.schema import MixtureConfig, PackSpec
from mixprep.errors import ConfigError, OutputError
from mixprep.filters.tokens import DEFAULT_EOD, load_token_encoder, token_id, tokenizer_facts
from mixprep.serve.indexed import token_dtype, write_indexed_index

PACKED_CHECKSUM = "sha256-ranges/1"
"""sha256 of each write task's byte range of the `.bin` (`ends` gives the ranges), then of those digests."""


@dataclass(frozen=True)
class PackedTarget:
    """What a write task needs to fill its part of a split's `.bin`."""

    bin_path: str
    token_offsets_path: str  # uint64, n+1: where each output record's ids start (EOD included)
    tokenizer: str
    eod_id: int
    dtype: str


@dataclass(frozen=True)
class PackedSplit:
    """The driver's side of one split's packed files."""

    target: PackedTarget
    bin_tmp: Path
    idx_tmp: Path
    eod: str
    lengths: np.ndarray  # tokens of each output record, EOD included
    bucket_ends: np.ndarray  # the .bin byte where each bucket's records end


def resolve_eod(tokenizer: str, pack: PackSpec) -> tuple[str, int]:
    """The end-of-document token and its id: `pack.eod`, else the tokenizer's eos_token,
    else `<|endoftext|>`."""
    _, eos = tokenizer_facts(tokenizer)
    token = pack.eod or eos or DEFAULT_EOD
    found = token_id(tokenizer, token)
    if found is None:
        said = "metadata.pack.eod" if pack.eod else "the tokenizer's eos_token" if eos else "the default end-of-document token"
        msg = (
            f"{said} {token!r} is not a token of the tokenizer {tokenizer}; "
            "name one it has with `pack: {eod: ...}` (as written in its vocabulary)"
        )
        raise ConfigError(msg)
    return token, found


def start_packed_split(
    config: MixtureConfig, stem: str, tokens: np.ndarray, line_offsets: np.ndarray, bucket_starts: list[int], work: str
) -> PackedSplit:
    """Lay out a split's `.bin` (records' token offsets, the file at its final size) and
    the byte range each write task will fill (the records whose lines start in its bucket)."""
    assert config.pack is not None and config.tokenizer is not None
    eod, eod_id = resolve_eod(config.tokenizer, config.pack)
    vocab, _ = tokenizer_facts(config.tokenizer)
    dtype = token_dtype(vocab)
    lengths = tokens.astype(np.int64) + 1
    offsets = np.zeros(len(lengths) + 1, dtype=np.uint64)
    np.cumsum(lengths, dtype=np.uint64, out=offsets[1:])
    folder = Path(work) / f"plan-{stem}-packed"
    folder.mkdir(exist_ok=True)
    offsets_path = folder / "token_offsets.npy"
    np.save(offsets_path, offsets)
    bin_tmp, idx_tmp = packed_files(Path(work), stem)
    with open(bin_tmp, "wb") as handle:
        handle.truncate(int(offsets[-1]) * dtype.itemsize)
    # A bucket writes the records whose lines start in it: bucket b ends where bucket b+1's first one starts.
    later = np.searchsorted(line_offsets[:-1], np.asarray(bucket_starts[1:], dtype=np.uint64), side="left")
    bucket_ends = np.append(offsets[later], offsets[-1]).astype(np.int64) * dtype.itemsize
    target = PackedTarget(str(bin_tmp), str(offsets_path), config.tokenizer, eod_id, dtype.name)
    return PackedSplit(target, bin_tmp, idx_tmp, eod, lengths, bucket_ends)


def write_tokens(target: PackedTarget, first: int, values: np.ndarray, value_offsets: np.ndarray, *, text_values: bool) -> str:
    """Encode output records first, first+1, ... (their values in `values`) into their range
    of the `.bin`; return that range's sha256."""
    count = len(value_offsets) - 1
    offsets = np.load(target.token_offsets_path, mmap_mode="r")
    expected = np.diff(np.asarray(offsets[first : first + count + 1]).astype(np.int64)) - 1
    ids, lengths = load_token_encoder(target.tokenizer)(_texts(values, value_offsets, text_values), expected)
    wrong = np.flatnonzero(lengths != expected)
    if len(wrong):
        k = int(wrong[0])
        msg = (
            f"output record {first + k + 1}: the tokenizer {target.tokenizer} gave {int(lengths[k])} tokens where the scan "
            f"counted {int(expected[k])}; it changed during the build (nothing was written; rebuild)"
        )
        raise OutputError(msg)
    dtype = np.dtype(target.dtype)
    out = np.full(len(ids) + count, target.eod_id, dtype=dtype)
    ends = np.cumsum(lengths + 1) - 1  # each document's EOD
    body = np.ones(len(out), dtype=bool)
    body[ends] = False
    out[body] = ids
    start = int(offsets[first]) * dtype.itemsize
    fd = os.open(target.bin_path, os.O_WRONLY)
    try:
        view = memoryview(out).cast("B")
        at = start
        while view:
            written = os.pwrite(fd, view, at)
            view, at = view[written:], at + written
    finally:
        os.close(fd)
    return hashlib.sha256(out).hexdigest()


def _texts(values: np.ndarray, value_offsets: np.ndarray, text_values: bool) -> pa.Array | list[str]:
    """The records' texts: their UTF-8 values as Arrow strings without a copy, or, for whole
    pretrain records (`annotate_language`), each record's `text`."""
    base = int(value_offsets[0])
    rebased = (value_offsets - base).astype(np.int64)
    data = values[base : int(value_offsets[-1])]
    if text_values:
        return pa.LargeStringArray.from_buffers(len(rebased) - 1, pa.py_buffer(rebased), pa.py_buffer(data))
    raw = data.tobytes()
    bounds = rebased.tolist()
    return [orjson.loads(raw[a:b]).get("text") or "" for a, b in zip(bounds[:-1], bounds[1:], strict=True)]


def finish_packed_split(split: PackedSplit, digests: list[str], seq_len: int, final_bin: Path, final_idx: Path) -> dict[str, Any]:
    """Write the `.idx`; the manifest's `packed` entry."""
    dtype = np.dtype(split.target.dtype)
    vocab_size, _ = tokenizer_facts(split.target.tokenizer)
    write_indexed_index(split.idx_tmp, split.lengths, dtype)
    size = split.bin_tmp.stat().st_size
    tokens = int(split.lengths.sum())
    if size != tokens * dtype.itemsize:
        msg = f"{final_bin.name}: {size} bytes written where {tokens} tokens take {tokens * dtype.itemsize}"
        raise OutputError(msg)
    return {
        "bin": final_bin.name,
        "idx": final_idx.name,
        "format": "megatron-indexed/1",
        "dtype": dtype.name,
        "vocab_size": vocab_size,
        "eod": split.eod,
        "eod_id": split.target.eod_id,
        "documents": len(split.lengths),
        "tokens": tokens,
        "bytes": size,
        "seq_len": seq_len,
        "windows": max(tokens - 1, 0) // seq_len,
        "checksum": {
            "algorithm": PACKED_CHECKSUM,
            "ends": split.bucket_ends.tolist(),
            "chunks": digests,
            "sha256": hashlib.sha256("".join(digests).encode()).hexdigest(),
        },
    }
