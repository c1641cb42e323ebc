"""Sources: byte-range shards own each line exactly once; compressed JSONL, Parquet,
Arrow IPC (file and stream), globs and lists all give the same records."""
from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.ipc as ipc
import pyarrow.parquet as pq
import pytest
import zstandard
from helpers import build, mixture, read_jsonl, texts, write_jsonl
from hypothesis import example, given, settings
from hypothesis import strategies as st

from mixprep.config import load_mixture
from mixprep.errors import RecordError, SourceError
from mixprep.sources import plan
from mixprep.sources import readers as sources
from mixprep.sources.plan import SourceFile, make_plan, resolve_files, shard_file
from mixprep.sources.readers import LineBlock, TableBlock, line_spans, read_blocks


def plain_file(path: Path) -> SourceFile:
    stat = path.stat()
    return SourceFile(str(path), path.name, "jsonl", None, stat.st_size, stat.st_mtime_ns)


def owned_lines(path: Path, shard_bytes: int) -> list[tuple[int, bytes]]:
    """(offset, line) of every record the shards of `path` yield, shards in order."""
    file = plain_file(path)
    found = []
    for start, end in shard_file(file, shard_bytes):
        task = plan.ScanTask(0, 0, "d", "main", file, start, end)
        for block in read_blocks(task):
            assert isinstance(block, LineBlock)
            for s, e, position in zip(block.starts, block.ends, block.positions, strict=True):
                found.append((int(position), block.data[s:e]))
    return found


def expected_lines(data: bytes) -> list[tuple[int, bytes]]:
    """Reference: non-blank lines (without the newline) and their start offsets."""
    out, offset = [], 0
    for raw in data.split(b"\n"):
        if raw.strip(b" \t\r"):
            out.append((offset, raw))
        offset += len(raw) + 1
    return out


line_strategy = st.one_of(
    st.text(st.characters(codec="utf-8", exclude_characters="\n\r"), min_size=1, max_size=40).map(lambda t: json.dumps({"text": t})),
    st.sampled_from(["", "   ", "\t", '{"text": "' + "x" * 100 + '"}']),
)


@settings(max_examples=80, deadline=None)
@given(
    lines=st.lists(line_strategy, min_size=0, max_size=30),
    trailing_newline=st.booleans(),
    shard_bytes=st.integers(1, 200),
    block_bytes=st.integers(1, 400),
)
# A shard that ends exactly at a line start, inside a block: that line belongs to the next shard only.
@example(lines=['{"text": "aa"}', '{"text": "bb"}', '{"text": "cc"}'], trailing_newline=True, shard_bytes=15, block_bytes=64)
@example(lines=['{"text": "aa"}', "", '{"text": "bb"}'], trailing_newline=False, shard_bytes=16, block_bytes=1)
def test_byte_range_shards_own_each_line_exactly_once(
    tmp_path_factory: pytest.TempPathFactory, lines: list[str], trailing_newline: bool, shard_bytes: int, block_bytes: int
) -> None:
    data = "\n".join(lines).encode() + (b"\n" if trailing_newline and lines else b"")
    path = tmp_path_factory.mktemp("shards") / "f.jsonl"
    path.write_bytes(data)
    saved = sources.BLOCK_BYTES
    sources.BLOCK_BYTES = block_bytes  # hypothesis forbids function-scoped monkeypatch here
    try:
        assert owned_lines(path, shard_bytes) == expected_lines(data)
    finally:
        sources.BLOCK_BYTES = saved


def test_blank_lines_are_not_records_and_last_line_without_newline_is(tmp_path: Path) -> None:
    path = tmp_path / "f.jsonl"
    path.write_bytes(b'\n{"text": "one"}\n\n   \n\t\r\n{"text": "two"}\r\n{"text": "three"}')
    assert [line for _, line in owned_lines(path, 10**6)] == [b'{"text": "one"}', b'{"text": "two"}\r', b'{"text": "three"}']
    starts, ends = line_spans(b"a\n\n b\n  \n")
    assert starts.tolist() == [0, 3] and ends.tolist() == [1, 5]


def reference_line_spans(data: bytes) -> list[tuple[int, int]]:
    """line_spans as plain Python: split on newlines, skip a byte order mark opening a line,
    drop empty lines and lines that open with space, tab or CR and hold only whitespace."""
    spans, start = [], 0
    for line in data.split(b"\n"):
        first = start + (3 if data[start : start + 3] == b"\xef\xbb\xbf" else 0)
        end = start + len(line)
        if first < end and not (data[first] in b" \t\r" and not data[first:end].strip()):
            spans.append((first, end))
        start = end + 1
    return spans


LINE_PIECES = st.sampled_from([b"\n", b" ", b"\t", b"\r", b"\x0b", b"\x0c", b"{", b"a" * 40, b"\xef", b"\xbb\xbf", b"\xef\xbb\xbf"])


@settings(max_examples=400, deadline=None)
@given(st.lists(LINE_PIECES, max_size=60))
def test_line_spans_match_a_plain_split(pieces: list[bytes]) -> None:
    data = b"".join(pieces)
    starts, ends = line_spans(data)
    assert list(zip(starts.tolist(), ends.tolist(), strict=True)) == reference_line_spans(data)


def test_plan_cuts_a_large_plain_file_into_byte_ranges(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_jsonl(tmp_path / "big.jsonl", texts("r", 200))
    write_jsonl(tmp_path / "small.jsonl", texts("s", 2))
    with gzip.open(tmp_path / "packed.jsonl.gz", "wt") as handle:
        handle.write("".join(json.dumps(r) + "\n" for r in texts("g", 200)))
    config = load_mixture(
        mixture(
            tmp_path,
            [
                {"name": "big", "mix_ratio": 0.4, "source": "big.jsonl"},
                {"name": "small", "mix_ratio": 0.3, "source": "small.jsonl"},
                {"name": "packed", "mix_ratio": 0.3, "source": "packed.jsonl.gz"},
            ],
        )
    )
    monkeypatch.setattr(plan, "SHARD_BYTES", 1000)
    tasks = make_plan(config)
    big = [t for t in tasks if t.dataset_name == "big"]
    size = (tmp_path / "big.jsonl").stat().st_size
    assert len(big) == -(-size // 1000)
    assert [(t.start, t.end) for t in big] == [(s, min(s + 1000, size)) for s in range(0, size, 1000)]
    assert [len([t for t in tasks if t.dataset_name == n]) for n in ("small", "packed")] == [1, 1]  # gzip can't seek
    assert [t.task_id for t in tasks] == list(range(len(tasks)))


def test_sharded_build_equals_unsharded_build(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    lines = [json.dumps(r) for r in texts("r", 300)]
    lines[10:10] = ["", "   "]
    (tmp_path / "a.jsonl").write_text("\n".join(lines))  # no final newline
    config = mixture(tmp_path, [{"name": "a", "mix_ratio": 1.0, "source": "a.jsonl"}], total_samples=250)
    whole = build(config, tmp_path / "whole")
    monkeypatch.setattr(plan, "SHARD_BYTES", 700)
    monkeypatch.setattr(sources, "BLOCK_BYTES", 128)
    sharded = build(config, tmp_path / "sharded")
    assert sharded.manifests["train"]["sources"]["a"]["read"] == 300
    assert whole.files["train"].read_bytes() == sharded.files["train"].read_bytes()


def write_gz(path: Path, data: bytes) -> Path:
    path.write_bytes(gzip.compress(data))
    return path


def write_zst(path: Path, data: bytes) -> Path:
    path.write_bytes(zstandard.ZstdCompressor().compress(data))
    return path


def all_records(path: Path, fmt: str, compression: str | None = None) -> list[tuple[int, str]]:
    stat = path.stat()
    file = SourceFile(str(path), path.name, fmt, compression, stat.st_size, stat.st_mtime_ns)
    out = []
    for block in read_blocks(plan.ScanTask(0, 0, "d", "main", file, 0, stat.st_size)):
        if isinstance(block, LineBlock):
            out += [
                (int(p), json.loads(block.data[s:e])["text"])
                for s, e, p in zip(block.starts, block.ends, block.positions, strict=True)
            ]
        else:
            assert isinstance(block, TableBlock)
            out += list(zip(block.positions.tolist(), block.table.column("text").to_pylist(), strict=True))
    return out


@pytest.mark.parametrize(("suffix", "writer", "compression"), [(".jsonl.gz", write_gz, "gzip"), (".jsonl.zst", write_zst, "zstd")])
def test_compressed_jsonl_streams_in_blocks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, suffix: str, writer, compression: str
) -> None:
    monkeypatch.setattr(sources, "BLOCK_BYTES", 50)  # many blocks, lines straddling them
    data = b'{"text": "a"}\n\n{"text": "' + ("é" * 60).encode() + b'"}\n{"text": "c"}'
    path = writer(tmp_path / f"f{suffix}", data)
    assert all_records(path, "jsonl", compression) == [(0, "a"), (15, "é" * 60), (15 + 10 + 120 + 2 + 1, "c")]


@pytest.mark.parametrize(("suffix", "writer"), [(".jsonl.gz", write_gz), (".jsonl.zst", write_zst)])
def test_bad_line_in_compressed_file_reports_its_line_number(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, suffix: str, writer
) -> None:
    monkeypatch.setattr(sources, "BLOCK_BYTES", 64)
    lines = [json.dumps(r) for r in texts("r", 20)]
    lines[13] = '{"text": broken'
    writer(tmp_path / f"f{suffix}", ("\n".join(lines) + "\n").encode())
    config = mixture(tmp_path, [{"name": "a", "mix_ratio": 1.0, "source": f"f{suffix}"}])
    with pytest.raises(RecordError, match=rf"f{suffix}:14: invalid JSON"):
        build(config, tmp_path / "out")


def test_parquet_read_by_row_group_with_row_positions(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sources, "PARQUET_BATCH_ROWS", 7)
    table = pa.table({"text": [f"t{i}" for i in range(30)], "other": list(range(30))})
    pq.write_table(table, tmp_path / "f.parquet", row_group_size=10)
    assert all_records(tmp_path / "f.parquet", "parquet") == [(i, f"t{i}") for i in range(30)]


@pytest.mark.parametrize("kind", ["file", "stream"])
def test_arrow_ipc_file_and_stream(tmp_path: Path, kind: str) -> None:
    schema = pa.schema([("text", pa.string())])
    batches = [pa.record_batch([pa.array([f"t{i}" for i in range(j * 5, j * 5 + 5)])], schema=schema) for j in range(3)]
    path = tmp_path / "f.arrow"
    with pa.OSFile(str(path), "wb") as sink:
        opener = ipc.new_file if kind == "file" else ipc.new_stream
        with opener(sink, schema) as writer:
            for batch in batches:
                writer.write_batch(batch)
    assert all_records(path, "arrow") == [(i, f"t{i}") for i in range(15)]


def test_every_format_builds_the_same_records(tmp_path: Path) -> None:
    records = texts("r", 40)
    body = "".join(json.dumps(r) + "\n" for r in records).encode()
    (tmp_path / "plain.jsonl").write_bytes(body)
    write_gz(tmp_path / "gz.jsonl.gz", body)
    write_zst(tmp_path / "zst.jsonl.zst", body)
    table = pa.table({"text": [r["text"] for r in records]})
    pq.write_table(table, tmp_path / "pq.parquet", row_group_size=16)
    with pa.OSFile(str(tmp_path / "ipc.arrow"), "wb") as sink, ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table)
    names = ["plain.jsonl", "gz.jsonl.gz", "zst.jsonl.zst", "pq.parquet", "ipc.arrow"]
    config = mixture(tmp_path, [{"name": n.split(".")[0], "mix_ratio": 0.2, "source": n} for n in names])
    result = build(config, tmp_path / "out")
    out = read_jsonl(result.files["train"])
    assert len(out) == 200
    by_source: dict[str, list[str]] = {}
    for r in out:
        by_source.setdefault(r["source"], []).append(r["text"])
    expected = sorted(r["text"] for r in records)
    assert {s: sorted(t) for s, t in by_source.items()} == {n.split(".")[0]: expected for n in names}


def test_globs_and_lists_resolve_in_a_stable_order_with_relative_identity(tmp_path: Path) -> None:
    for name in ("b.jsonl", "a.jsonl", "sub/c.jsonl"):
        write_jsonl(tmp_path / "d" / name, texts(name, 2))
    (tmp_path / "d" / "README.md").write_text("not data")
    config = load_mixture(
        mixture(
            tmp_path,
            [
                {"name": "globbed", "mix_ratio": 0.5, "source": "d/**/*.jsonl"},
                {"name": "listed", "mix_ratio": 0.5, "source": ["d/sub/c.jsonl", "d/a.jsonl", "d/a.jsonl"]},
            ],
        )
    )
    globbed = resolve_files(config.datasets[0].source, "globbed")
    assert [f.relpath for f in globbed] == ["a.jsonl", "b.jsonl", "sub/c.jsonl"]
    listed = resolve_files(config.datasets[1].source, "listed")
    assert [f.relpath for f in listed] == ["c.jsonl", "a.jsonl"]  # as listed, duplicates dropped
    result = build(mixture(tmp_path, [{"name": "g", "mix_ratio": 1.0, "source": "d/*/*.jsonl"}], file_name="g.yaml"), tmp_path / "o")
    assert result.manifests["train"]["output"]["records"] == 2


def test_folder_glob_skips_files_of_unknown_format(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "d" / "a.jsonl", texts("a", 3))
    (tmp_path / "d" / "notes.txt").write_text("hello")
    config = load_mixture(mixture(tmp_path, [{"name": "d", "mix_ratio": 1.0}], data_dir="."))
    assert [f.relpath for f in resolve_files(config.datasets[0].source, "d")] == ["a.jsonl"]


def test_missing_file_and_empty_glob_raise_source_errors(tmp_path: Path) -> None:
    from mixprep.config import SourceSpec

    with pytest.raises(SourceError, match=r"dataset 'x': file not found: .*/nope\.jsonl"):
        resolve_files(SourceSpec((str(tmp_path / "nope.jsonl"),)), "x")
    with pytest.raises(SourceError, match=r"dataset 'x': glob matches no file: .*/\*\.parquet"):
        resolve_files(SourceSpec((str(tmp_path / "*.parquet"),)), "x")


def test_record_positions_are_byte_offsets_independent_of_block_size(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_jsonl(tmp_path / "f.jsonl", texts("r", 50))
    reference = all_records(path, "jsonl")
    monkeypatch.setattr(sources, "BLOCK_BYTES", 33)
    assert all_records(path, "jsonl") == reference
    data = path.read_bytes()
    assert [p for p, _ in reference] == [0] + (np.flatnonzero(np.frombuffer(data, np.uint8) == 10)[:-1] + 1).tolist()
