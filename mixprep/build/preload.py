"""What every worker of a local pool needs before its first task, loaded once per driver
process instead of once per worker.

The pool's workers are forked from multiprocessing's fork server, which imports this module
when it starts (`executors`; it outlives a pool and serves the next): the build's modules
(numba, polars, pyarrow, numpy and ours) and the compiled kernels that every JSONL build
calls (numba loads a kernel's machine code from its cache at the first call) are then in
each worker from its start, ~0.1 CPU-s. A spawned worker loaded all of that again: 1.3-1.5
CPU-s before its first task, ~22 of a 16-worker build's CPU-seconds.

Only what a fork leaves intact is done here: imports and compiled code, no threads (polars
starts its thread pool at its first query, not at import) and no open files.
"""
from __future__ import annotations

import numpy as np
import polars as pl

from mixprep.build import scan, writers  # noqa: F401 - the modules of the tasks a pool runs
from mixprep.build.encode import encode_lines, line_lengths
from mixprep.build.hashing import splitmix64
from mixprep.build.rawjson import decode_rows, locate_field
from mixprep.build.readback import read_ranges
from mixprep.build.strictjson import text_column
from mixprep.filters.textstats import TextBatch, character_counts
from mixprep.sources.readers import line_spans

_SAMPLE = b'{"text": "caf\\u00e9 \\"ok\\"\\n", "n": 1}\n{"text": "two"}\n'


def load_kernels() -> None:
    """Call each kernel of a plain JSONL pretrain build once, on two lines: numba loads a
    kernel's machine code at its first call."""
    starts, ends = line_spans(_SAMPLE)
    column = text_column(_SAMPLE, starts, ends, "text")
    assert column is not None, "the sample is strict JSON"
    raw_start, raw_end = locate_field(_SAMPLE, starts, ends, "text")
    data, offsets = column.buffers
    character_counts(TextBatch(pl.Series(column.views), column.buffers), np.arange(2))
    lengths = line_lengths(data, offsets, "source").astype(np.int64)
    out_offsets = np.zeros(3, dtype=np.int64)
    np.cumsum(lengths, out=out_offsets[1:])
    encode_lines(data, offsets, np.zeros(2, dtype=np.int64), ["source"], np.empty(int(out_offsets[-1]), np.uint8), out_offsets)
    decoded = np.empty(int(offsets[-1]), dtype=np.uint8)
    source = np.frombuffer(_SAMPLE, dtype=np.uint8)
    assert decode_rows(source, raw_start, raw_end - raw_start, decoded, offsets, np.arange(2)) < 0, "decoded as measured"
    assert int(splitmix64(np.zeros(1, dtype=np.uint64))[0]) == 0xE220A8397B1DCDAF, "the reference's first output"
    head = np.empty(8, dtype=np.uint8)
    read_ranges(__file__, np.array([4]), np.array([8]), head, np.array([0]))  # this file: opened, read and closed
    with open(__file__, "rb") as handle:
        assert head.tobytes() == handle.read(12)[4:], "read back as the file holds it"


try:
    load_kernels()
except Exception:  # noqa: BLE001, S110 - a head start only: a worker loads whatever it lacks itself
    pass
