"""Compressed JSONL (.gz, .zst, .bz2, .xz) and CSV/TSV with a named text column, built
through DatasetMixer: every format gives the same records."""
from __future__ import annotations

import bz2
import csv
import gzip
import io
import json
import lzma
from pathlib import Path

import pytest
import zstandard
from helpers import build, mixture, read_jsonl

from mixprep.config import load_mixture
from mixprep.errors import RecordError, SourceError
from mixprep.sources.formats import format_for

# Texts that stress CSV quoting and type inference: commas, quotes, newlines, digits only, Unicode.
TEXTS = [f"doc {i}, with a comma" for i in range(30)] + [
    'she said "hi", twice',
    "two\nlines",
    "12345",
    "0.5",
    "ünïcødé 文字",
    "tab\tinside",
]
COMPRESSORS = {
    ".gz": gzip.compress,
    ".zst": zstandard.ZstdCompressor().compress,
    ".bz2": bz2.compress,
    ".xz": lzma.compress,
}


def jsonl_bytes() -> bytes:
    return "".join(json.dumps({"text": t, "id": i}, ensure_ascii=False) + "\n" for i, t in enumerate(TEXTS)).encode()


def table_bytes(delimiter: str, text_column: str = "body") -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, delimiter=delimiter, lineterminator="\n")
    writer.writerow(["id", text_column, "lang"])
    for i, text in enumerate(TEXTS):
        writer.writerow([i, text, "en"])
    return out.getvalue().encode()


def built_texts(folder: Path, source: str, **dataset: object) -> list[str]:
    config = mixture(folder, [{"name": "d", "mix_ratio": 1.0, "source": source, **dataset}])
    return [r["text"] for r in read_jsonl(build(config, folder / "out").files["train"])]


@pytest.mark.parametrize("suffix", sorted(COMPRESSORS))
def test_compressed_jsonl_gives_the_plain_records(tmp_path: Path, suffix: str) -> None:
    (tmp_path / f"d.jsonl{suffix}").write_bytes(COMPRESSORS[suffix](jsonl_bytes()))
    (tmp_path / "plain").mkdir()
    (tmp_path / "plain" / "d.jsonl").write_bytes(jsonl_bytes())
    compressed = built_texts(tmp_path, f"d.jsonl{suffix}")
    plain = built_texts(tmp_path / "plain", "d.jsonl")
    assert sorted(compressed) == sorted(TEXTS)
    # Positions are offsets in the decompressed stream, so identity (and order) match the plain file
    # whenever the relative path does; here the names differ, so compare as multisets.
    assert sorted(compressed) == sorted(plain)


def test_compressed_jsonl_bad_line_is_reported_with_its_line_number(tmp_path: Path) -> None:
    data = jsonl_bytes() + b'{"text": 5}\n'
    (tmp_path / "d.jsonl.xz").write_bytes(lzma.compress(data))
    config = mixture(tmp_path, [{"name": "d", "mix_ratio": 1.0, "source": "d.jsonl.xz"}])
    with pytest.raises(RecordError, match=rf"d.jsonl.xz:{len(TEXTS) + 1}: field 'text' is not a string \(got number\)"):
        build(config, tmp_path / "out")


@pytest.mark.parametrize(("name", "delimiter"), [("d.csv", ","), ("d.tsv", "\t"), ("d.csv.gz", ","), ("d.tsv.bz2", "\t")])
def test_csv_and_tsv_with_a_named_text_column(tmp_path: Path, name: str, delimiter: str) -> None:
    data = table_bytes(delimiter)
    for suffix, compress in COMPRESSORS.items():
        if name.endswith(suffix):
            data = compress(data)
    (tmp_path / name).write_bytes(data)
    assert sorted(built_texts(tmp_path, name, text_field="body")) == sorted(TEXTS)


def test_csv_streams_in_blocks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from mixprep.sources import readers as sources

    monkeypatch.setattr(sources, "BLOCK_BYTES", 256)  # many Arrow batches; digits-only rows late in the file
    (tmp_path / "d.csv").write_bytes(table_bytes(","))
    assert sorted(built_texts(tmp_path, "d.csv", text_field="body")) == sorted(TEXTS)


def test_csv_without_the_text_column_names_the_field(tmp_path: Path) -> None:
    (tmp_path / "d.csv").write_bytes(table_bytes(",", text_column="content"))
    config = mixture(tmp_path, [{"name": "d", "mix_ratio": 1.0, "source": "d.csv", "text_field": "body"}])
    with pytest.raises(RecordError, match=r"d.csv: row 0: missing field 'body'"):
        build(config, tmp_path / "out")


def test_malformed_csv_is_a_source_error(tmp_path: Path) -> None:
    (tmp_path / "d.csv").write_bytes(b"id,text\n1,ok\n2,too,many,fields\n")
    config = mixture(tmp_path, [{"name": "d", "mix_ratio": 1.0, "source": "d.csv"}])
    with pytest.raises(SourceError, match=r"d.csv: cannot read csv data: .*Expected 2 columns, got 4"):
        build(config, tmp_path / "out")


def test_format_detection_and_unknown_suffix_hint(tmp_path: Path) -> None:
    assert [format_for(n) for n in ("a.jsonl.bz2", "a.json.xz", "a.csv", "a.tsv.zst", "a.ndjson.gz", "a.txt")] == [
        "jsonl", "jsonl", "csv", "tsv", "jsonl", None,
    ]
    (tmp_path / "a.txt").write_text("x\n")
    problems = load_mixture(mixture(tmp_path, [{"name": "d", "mix_ratio": 1.0, "source": "a.txt"}])).problems
    assert any("cannot tell the format of" in p and ".csv/.tsv name (optionally + .gz/.zst/.bz2/.xz)" in p for p in problems)
    config = mixture(tmp_path, [{"name": "d", "mix_ratio": 1.0, "source": {"path": "a.txt", "format": "tsv"}}], file_name="tsv.yaml")
    (tmp_path / "a.txt").write_text("text\tn\nhello there\t1\n")
    assert [r["text"] for r in read_jsonl(build(config, tmp_path / "out").files["train"])] == ["hello there"]
