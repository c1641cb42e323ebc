"""The `.idx` format: layout, scan rules, staleness, atomic writes, cache fallback."""
from __future__ import annotations

import os
import struct
from pathlib import Path

import numpy as np
import pytest
import xxhash
from hypothesis import example, given, settings
from hypothesis import strategies as st

import mixprep.serve.index as index_mod
from mixprep.errors import IndexFormatError, SourceError
from mixprep.serve.index import (
    HEADER_SIZE,
    build_offsets,
    cache_index_path,
    ensure_index,
    fingerprint,
    index_path_for,
    open_index,
    write_index,
)


def reference_offsets(data: bytes) -> list[int]:
    """Plain restatement of the rule: starts of non-blank lines (split on \\n only), then the size."""
    starts, pos = [], 0
    for line in data.split(b"\n"):
        if line.strip(b" \t\r\n\x0b\x0c"):
            starts.append(pos)
        pos += len(line) + 1
    return starts + [len(data)]


def lines_file(tmp_path: Path, data: bytes, name: str = "data.jsonl") -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def test_scan_skips_blank_lines_and_keeps_unterminated_last_line(tmp_path):
    data = b'{"a":1}\n\n  \n{"b":2}\r\n \t{"c":3}\n\x0c\n{"d":4}'
    offsets = build_offsets(lines_file(tmp_path, data))
    assert offsets.dtype == np.dtype("<u8")
    assert offsets.tolist() == [0, 12, 21, 33, len(data)]
    assert [data[a:b].strip() for a, b in zip(offsets[:-1], offsets[1:], strict=True)] == [
        b'{"a":1}', b'{"b":2}', b'{"c":3}', b'{"d":4}'
    ]


@pytest.mark.parametrize("data", [b"", b"\n\n \n", b"   "])
def test_scan_of_files_without_records(tmp_path, data):
    assert build_offsets(lines_file(tmp_path, data)).tolist() == [len(data)]


line_strategy = st.one_of(
    st.just(b""), st.just(b"  "), st.just(b"\t\r"), st.just(b'{"x": 1}'), st.just(b' {"y": 2} '),
    st.binary(max_size=12).map(lambda b: b.replace(b"\n", b"")),
)


@settings(max_examples=150, deadline=None)
@given(lines=st.lists(line_strategy, max_size=30), newline_at_end=st.booleans(), chunk=st.integers(1, 17))
@example(lines=[b"  ", b"x"], newline_at_end=False, chunk=1)
def test_scan_matches_reference_for_any_chunk_size(tmp_path_factory, lines, newline_at_end, chunk):
    """Lines that span chunk boundaries (tiny chunks) are found exactly as in one pass."""
    data = b"\n".join(lines) + (b"\n" if newline_at_end and lines else b"")
    path = lines_file(tmp_path_factory.mktemp("scan"), data)
    original = index_mod.SCAN_CHUNK
    index_mod.SCAN_CHUNK = chunk
    try:
        assert build_offsets(path).tolist() == reference_offsets(data)
    finally:
        index_mod.SCAN_CHUNK = original


def test_header_layout_matches_the_contract(tmp_path):
    data = b'{"t": "a"}\n{"t": "b"}\n'
    path = lines_file(tmp_path, data)
    idx = ensure_index(path)
    raw = idx.path.read_bytes()
    assert idx.path == tmp_path / "data.idx"
    assert raw[:8] == b"MXPIDX\x00\x00"
    version, flags, count, size, mtime_ns, fp = struct.unpack("<IIQQQQ", raw[8:48])
    stat = path.stat()
    expected_fp = xxhash.xxh3_64_intdigest(struct.pack("<Q", len(data)) + data + data)
    assert (version, flags, count, size, mtime_ns) == (1, 0, 2, len(data), stat.st_mtime_ns)
    assert fp == expected_fp == fingerprint(path, len(data))
    assert raw[48:64] == bytes(16)
    assert np.frombuffer(raw[HEADER_SIZE:], dtype="<u8").tolist() == [0, 11, 22]
    assert len(raw) == HEADER_SIZE + 8 * 3
    assert len(idx) == 2 and idx.span(1) == (11, 22)


def test_fingerprint_covers_head_and_tail_of_large_files(tmp_path):
    data = bytes(range(256)) * 1024  # 256 KiB: head and tail windows do not overlap
    path = lines_file(tmp_path, data, "big.bin")
    span = 64 * 1024
    expected = xxhash.xxh3_64_intdigest(struct.pack("<Q", len(data)) + data[:span] + data[-span:])
    assert fingerprint(path, len(data)) == expected


def test_reopen_uses_the_existing_index(tmp_path):
    path = lines_file(tmp_path, b'{"a":1}\n' * 100)
    first = ensure_index(path)
    before = first.path.stat().st_mtime_ns
    second = ensure_index(path)
    assert second.path.stat().st_mtime_ns == before
    assert len(second) == 100
    assert isinstance(second.offsets, np.memmap)


def test_stale_index_is_rebuilt_never_used(tmp_path):
    path = lines_file(tmp_path, b'{"a":1}\n{"a":2}\n')
    idx_path = ensure_index(path).path
    with open(path, "ab") as f:
        f.write(b'{"a":3}\n')
    with pytest.raises(IndexFormatError, match=r"stale index .*data size 24 != indexed 16"):
        open_index(idx_path, path)
    assert len(ensure_index(path)) == 3


def test_same_size_edit_with_restored_mtime_is_caught_by_fingerprint(tmp_path):
    path = lines_file(tmp_path, b'{"a":1}\n{"a":2}\n')
    idx_path = ensure_index(path).path
    stat = path.stat()
    path.write_bytes(b'{"a":1}\n\n{"a":}\n')  # same size, different records
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    with pytest.raises(IndexFormatError, match="fingerprint changed"):
        open_index(idx_path, path)
    assert ensure_index(path).offsets.tolist() == [0, 9, 16]


def test_mtime_change_alone_makes_the_index_stale(tmp_path):
    path = lines_file(tmp_path, b'{"a":1}\n')
    idx_path = ensure_index(path).path
    os.utime(path, ns=(1, 1))
    with pytest.raises(IndexFormatError, match=r"data mtime_ns 1 != indexed"):
        open_index(idx_path, path)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda raw: b"NOTANIDX" + raw[8:], r"not a mixprep index \(magic b'NOTANIDX'"),
        (lambda raw: raw[:8] + struct.pack("<I", 9) + raw[12:], r"index format version 9; this mixprep reads version 1"),
        (lambda raw: raw[:-8], r"does not match 1 records \(expected 80\)"),
        (lambda raw: raw[:20], r"truncated header \(20 of 64 bytes\)"),
    ],
)
def test_corrupt_index_is_reported_and_rebuilt(tmp_path, mutate, message):
    path = lines_file(tmp_path, b'{"a":1}\n')
    idx_path = ensure_index(path).path
    idx_path.write_bytes(mutate(idx_path.read_bytes()))
    with pytest.raises(IndexFormatError, match=message):
        open_index(idx_path, path)
    assert len(ensure_index(path)) == 1


def test_write_index_is_atomic_and_checks_offsets(tmp_path):
    path = lines_file(tmp_path, b'{"a":1}\n')
    target = tmp_path / "data.idx"
    with pytest.raises(IndexFormatError, match=r"last offset 7 must equal the data size 8"):
        write_index(target, path, np.array([0, 7], dtype=np.uint64))
    with pytest.raises(IndexFormatError, match="non-decreasing"):
        write_index(target, path, np.array([5, 0, 8], dtype=np.uint64))
    assert not target.exists()
    write_index(target, path, np.array([0, 8], dtype=np.uint64))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data.idx", "data.jsonl"]


def test_read_only_folder_indexes_into_the_cache_dir(tmp_path, monkeypatch):
    data_dir = tmp_path / "ro"
    data_dir.mkdir()
    path = lines_file(data_dir, b'{"a":1}\n{"a":2}\n')
    monkeypatch.setenv("MIXPREP_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(index_mod, "_folder_is_writable", lambda folder: False)
    idx = ensure_index(path)
    assert idx.path == cache_index_path(path) == index_path_for(path)
    assert idx.path.parent == tmp_path / "cache" / "index"
    assert idx.path.name.startswith("data-") and idx.path.suffix == ".idx"
    assert not (data_dir / "data.idx").exists()
    assert len(ensure_index(path)) == 2


def test_write_refused_despite_access_check_falls_back_to_cache(tmp_path, monkeypatch):
    path = lines_file(tmp_path, b'{"a":1}\n')
    monkeypatch.setenv("MIXPREP_CACHE", str(tmp_path / "cache"))
    real_write = index_mod.write_index

    def refuse_sibling(index_path, data_path, offsets):
        if Path(index_path).parent == tmp_path:
            raise PermissionError(13, "Permission denied")
        real_write(index_path, data_path, offsets)

    monkeypatch.setattr(index_mod, "write_index", refuse_sibling)
    assert ensure_index(path).path == cache_index_path(path)


def test_missing_data_file_is_a_source_error(tmp_path):
    with pytest.raises(SourceError, match=r"nope\.jsonl: no such file"):
        ensure_index(tmp_path / "nope.jsonl")


def test_force_rebuild_rewrites(tmp_path):
    path = lines_file(tmp_path, b'{"a":1}\n')
    idx_path = ensure_index(path).path
    idx_path.write_bytes(idx_path.read_bytes())  # same content, new inode/mtime
    os.utime(idx_path, ns=(1, 1))
    ensure_index(path, rebuild=True)
    assert idx_path.stat().st_mtime_ns != 1
