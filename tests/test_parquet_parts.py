"""The sidecar from Parquet parts encoded in parallel (build/parquet_parts.py): the parts put
together are the file one ParquetWriter writes for the same tables, byte for byte, and
what cannot be moved safely is refused."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from helpers import build, mixture, write_jsonl

from mixprep.build.parquet_parts import ParquetAssembler, _read_struct, _write_struct

SCHEMA = pa.schema([("text", pa.string()), ("source", pa.string())])


def tables(seed: int, sizes: list[int]) -> list[pa.Table]:
    rng = np.random.default_rng(seed)
    out = []
    for k, n in enumerate(sizes):
        texts = [f"part {k} row {i} " + "é😀x"[i % 3] * int(rng.integers(0, 80)) for i in range(n)]
        out.append(pa.table({"text": texts, "source": [("web", "books", "code")[i % 3] for i in range(n)]}, schema=SCHEMA))
    return out


def part_file(path: Path, table: pa.Table, row_group_size: int, **options: object) -> Path:
    """`table` as a complete Parquet file, as a write task writes its bucket's part."""
    with pq.ParquetWriter(path, table.schema, **options) as writer:
        if table.num_rows:  # no empty row group
            writer.write_table(table, row_group_size=row_group_size)
    return path


def single_writer(path: Path, parts: list[pa.Table], row_group_size: int, **options: object) -> bytes:
    with pq.ParquetWriter(path, SCHEMA, **options) as writer:
        for table in parts:
            if table.num_rows:
                writer.write_table(table, row_group_size=row_group_size)
    return path.read_bytes()


@pytest.mark.parametrize("compression", ["zstd", "snappy", "none"])
def test_parts_put_together_are_the_single_writers_file(tmp_path: Path, compression: str) -> None:
    parts = tables(0, [5000, 0, 1, 12_000, 300, 0, 7000])  # empty parts, parts of several row groups
    options = {"compression": compression, "use_dictionary": ["source"]}
    expected = single_writer(tmp_path / "single.parquet", parts, 4096, **options)
    assembler = ParquetAssembler(tmp_path / "assembled.parquet")
    for k, table in enumerate(parts):
        assembler.append(part_file(tmp_path / f"{k}.parquet", table, 4096, **options))
    assert assembler.close(SCHEMA, **options) == sum(t.num_rows for t in parts)
    assembled = tmp_path / "assembled.parquet"
    assert assembled.read_bytes() == expected
    assert pq.read_metadata(assembled).num_row_groups == sum(-(-t.num_rows // 4096) for t in parts)
    assert pq.read_table(assembled).equals(pa.concat_tables(parts))
    assert pl.read_parquet(assembled).equals(pl.from_arrow(pa.concat_tables(parts)))


def test_no_rows_at_all_is_the_empty_file_a_writer_writes(tmp_path: Path) -> None:
    assembler = ParquetAssembler(tmp_path / "a.parquet")
    assembler.append(part_file(tmp_path / "empty.parquet", tables(0, [0])[0], 4096, compression="zstd"))
    assert assembler.close(SCHEMA, compression="zstd") == 0
    assert (tmp_path / "a.parquet").read_bytes() == single_writer(tmp_path / "b.parquet", [], 4096, compression="zstd")


def test_footers_are_read_and_written_back_unchanged(tmp_path: Path) -> None:
    """Nested types, statistics, key-value metadata, many columns: the generic Thrift reader
    and writer give back the footer's bytes."""
    table = pa.table(
        {
            "messages": [[{"role": "user", "content": "hi"}], [], None],
            "score": [1.5, None, -2.0],
            "flag": [True, False, None],
            **{f"c{i}": [i, i + 1, None] for i in range(20)},
        }
    )
    pq.write_table(table.replace_schema_metadata({"k": "v"}), tmp_path / "n.parquet", compression="zstd")
    data = (tmp_path / "n.parquet").read_bytes()
    length = int.from_bytes(data[-8:-4], "little")
    footer = data[-8 - length : -8]
    fields, end = _read_struct(footer, 0)
    out = bytearray()
    _write_struct(out, fields)
    assert end == len(footer) and bytes(out) == footer


@pytest.mark.parametrize("option", [{"write_page_index": True}, {"bloom_filter_options": {"text": True}}])
def test_a_part_whose_offsets_live_outside_its_footer_is_refused(tmp_path: Path, option: dict[str, object]) -> None:
    try:
        pq.write_table(tables(0, [100])[0], tmp_path / "p.parquet", **option)
    except TypeError:
        pytest.skip(f"this pyarrow cannot write {option}")  # bloom filters are pyarrow >= 21
    assembler = ParquetAssembler(tmp_path / "a.parquet")
    with pytest.raises(ValueError, match="page index or bloom filter"):
        assembler.append(tmp_path / "p.parquet")
    assembler.abort()


def test_a_pool_build_puts_worker_encoded_parts_together(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """workers=2 (a pool): each write task encodes its bucket's Parquet part; the file equals
    the in-process build's, whose driver encodes the tables itself."""
    rng = np.random.default_rng(1)
    words = ["alpha", "beta", "gamma", "delta", "épsilon", "😀"]
    for name in ("a", "b"):
        write_jsonl(tmp_path / f"{name}.jsonl", [{"text": " ".join(rng.choice(words, int(rng.integers(5, 400))))} for _ in range(3000)])
    datasets = [{"name": "a", "mix_ratio": 0.6, "source": "a.jsonl"}, {"name": "b", "mix_ratio": 0.4, "source": "b.jsonl"}]
    config = mixture(tmp_path, datasets, shuffle_bucket_mb=1, validation={"fraction": 0.02})
    appended: list[str] = []
    real_append = ParquetAssembler.append

    def counted(self: ParquetAssembler, part: str | Path) -> None:
        appended.append(str(part))
        real_append(self, part)

    monkeypatch.setattr(ParquetAssembler, "append", counted)
    pool = build(config, tmp_path / "pool", workers=2)
    assert len(appended) > 3 and all(path.endswith(".parquet") for path in appended)
    appended.clear()
    local = build(config, tmp_path / "local", workers=1)
    assert not appended  # in-process: the driver's ParquetWriter
    for split in ("train", "validation"):
        sidecar = pool.files[split].with_suffix(".parquet")
        assert sidecar.read_bytes() == local.files[split].with_suffix(".parquet").read_bytes()
        assert pq.read_metadata(sidecar).num_row_groups >= (4 if split == "train" else 1)
        written = [json.loads(line)["text"] for line in pool.files[split].read_text().splitlines()]
        assert pq.read_table(sidecar).column("text").to_pylist() == written
