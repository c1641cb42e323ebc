"""Kept records read back by byte range (build/readback.py): `pread` from compiled code
reads what the file holds, refuses ranges past its end or a file it cannot read, decodes
across its rounds, and a write task leaves no input mapped."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from helpers import build, mixture, read_jsonl
from hypothesis import given, settings
from hypothesis import strategies as st
from test_rawjson import build_with_an_edit_before_the_write, corpus

from mixprep.build import driver, readback
from mixprep.errors import SourceError


@settings(max_examples=40, deadline=None)
@given(data=st.binary(min_size=1, max_size=3000), picks=st.lists(st.tuples(st.integers(0, 2999), st.integers(0, 300)), max_size=30))
def test_ranges_are_read_as_the_file_holds_them(
    tmp_path_factory: pytest.TempPathFactory, data: bytes, picks: list[tuple[int, int]]
) -> None:
    path = tmp_path_factory.mktemp("ranges") / "f.bin"
    path.write_bytes(data)
    ranges = [(start % len(data), min(size, len(data) - start % len(data))) for start, size in picks]
    starts = np.array([s for s, _ in ranges], dtype=np.int64)
    sizes = np.array([n for _, n in ranges], dtype=np.int64)
    out_starts = np.zeros(len(ranges), dtype=np.int64)
    np.cumsum(sizes[:-1], out=out_starts[1:])
    out = np.zeros(int(sizes.sum()) + 3, dtype=np.uint8)
    readback.read_ranges(str(path), starts, sizes, out, out_starts)
    assert out.tobytes() == b"".join(data[s : s + n] for s, n in ranges) + b"\0\0\0"


def test_a_range_past_the_end_of_the_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "short.jsonl"
    path.write_bytes(b"0123456789")
    out = np.zeros(16, dtype=np.uint8)
    with pytest.raises(SourceError, match=r"short\.jsonl: 4 bytes at byte 8 are past its end; the file changed during the build"):
        readback.read_ranges(str(path), np.array([0, 8]), np.array([4, 4]), out, np.array([0, 4]))
    assert out[:4].tobytes() == b"0123"


def test_a_read_error_is_the_systems_error(tmp_path: Path) -> None:
    with pytest.raises(IsADirectoryError):  # open() succeeds on a folder, pread fails with EISDIR
        readback.read_ranges(str(tmp_path), np.array([0]), np.array([4]), np.zeros(4, dtype=np.uint8), np.array([0]))


def test_a_range_past_the_buffer_is_refused_before_reading(tmp_path: Path) -> None:
    path = tmp_path / "f.bin"
    path.write_bytes(b"x" * 100)
    out = np.full(8, 7, dtype=np.uint8)
    with pytest.raises(AssertionError, match="past its buffer"):
        readback.read_ranges(str(path), np.array([0]), np.array([9]), out, np.array([0]))
    assert (out == 7).all()


@pytest.mark.parametrize("chunk", [1, 7, 64, 1 << 20])
def test_strings_decode_the_same_in_rounds_of_any_size(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, chunk: int) -> None:
    texts = ["plain", 'q " and \\ b', "tab\tnl\n", "é😀", "", "x" * 200]
    raw = [json.dumps(t)[1:-1].encode() for t in texts]
    path = tmp_path / "strings.bin"
    path.write_bytes(b"|".join(raw))
    starts = np.array([sum(len(r) + 1 for r in raw[:i]) for i in range(len(raw))], dtype=np.int64)
    lengths = np.array([len(r) for r in raw], dtype=np.int64)
    decoded = [t.encode() for t in texts]
    slots = np.array([5, 4, 3, 2, 1, 0])  # written to their slots in reverse
    offsets = np.zeros(len(texts) + 1, dtype=np.int64)
    np.cumsum([len(decoded[len(texts) - 1 - s]) for s in range(len(texts))], out=offsets[1:])
    out = np.zeros(int(offsets[-1]), dtype=np.uint8)
    monkeypatch.setattr(readback, "DECODE_CHUNK_BYTES", chunk)
    assert readback.decode_ranges(str(path), starts, lengths, out, offsets, slots) == -1
    assert out.tobytes() == b"".join(reversed(decoded))
    wrong = offsets.copy()
    wrong[1:] += 1  # slot 0 one byte too long: the string for slot 0 (k = 5) does not fit
    assert readback.decode_ranges(str(path), starts, lengths, np.zeros(int(wrong[-1]), dtype=np.uint8), wrong, slots) == 5


def test_an_input_cut_short_between_scan_and_write_fails_the_build(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def truncated(source: Path) -> None:
        source.write_bytes(source.read_bytes()[: source.stat().st_size // 2])

    with pytest.raises(SourceError, match=r"a\.jsonl: \d+ bytes at byte \d+ are past its end; the file changed during the build"):
        build_with_an_edit_before_the_write(tmp_path, monkeypatch, truncated)


def test_write_tasks_leave_no_input_mapped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Mapped inputs count in the build's resident memory (all of the input, by the end of
    the write stage); the write tasks read byte ranges instead."""
    corpus(tmp_path, repeated_key=False)
    source = (tmp_path / "data" / "a.jsonl").resolve()
    config = mixture(tmp_path, [{"name": "a", "mix_ratio": 1.0, "source": "data/a.jsonl"}], shuffle_bucket_mb=1)
    real = driver.write_bucket
    mapped_after_tasks: list[bool] = []

    def write_then_look(job):  # type: ignore[no-untyped-def]
        result = real(job)
        mapped_after_tasks.append(str(source) in Path("/proc/self/maps").read_text())
        return result

    monkeypatch.setattr(driver, "write_bucket", write_then_look)
    result = build(config, tmp_path / "out", workers=1)
    assert mapped_after_tasks and not any(mapped_after_tasks)
    assert len(read_jsonl(result.files["train"])) == 600
