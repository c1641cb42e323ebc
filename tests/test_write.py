"""The write stage: tasks fill byte ranges of the final file, the checksum, small builds in-process."""
from __future__ import annotations

import hashlib
import logging
import shutil
from pathlib import Path

import pytest
from helpers import build, complete_looking_outputs, manifest_of, mixture, read_jsonl, write_jsonl

from mixprep.build import workdir
from mixprep.errors import OutputError
from mixprep.verify import verify

MIB = 1024 * 1024


@pytest.fixture
def long_records(tmp_path: Path) -> Path:
    """Records longer than a 1 MiB bucket among short ones: lines straddle bucket cuts, some
    cuts fall inside a single record, and escaped characters change every line's length."""
    long = [{"text": f"long-{i} " + ("line\\twith \"quotes\"\n" * (60_000 + 7_000 * i))} for i in range(3)]
    short = [{"text": f"short-{i} naïve ☃ \x01 {'word ' * (i % 50)}"} for i in range(3000)]
    write_jsonl(tmp_path / "a.jsonl", long + short[:1500])
    write_jsonl(tmp_path / "b.jsonl", short[1500:])
    return mixture(
        tmp_path,
        [{"name": "a", "mix_ratio": 0.5, "source": "a.jsonl"}, {"name": "b", "mix_ratio": 0.5, "source": "b.jsonl"}],
        total_samples=4000,
        shuffle_bucket_mb=1,
        seed=3,
    )


@pytest.mark.slow
def test_lines_longer_than_a_bucket_are_written_whole_for_any_worker_count(long_records: Path, tmp_path: Path) -> None:
    one = build(long_records, tmp_path / "w1").files["train"]
    two = build(long_records, tmp_path / "w2", workers=2).files["train"]
    assert one.read_bytes() == two.read_bytes()
    records = read_jsonl(one)
    assert len(records) == 4000
    assert sum(r["text"].startswith("long-") for r in records) > 0
    assert {r["source"] for r in records} == {"a", "b"}
    manifest = manifest_of(one)
    chunks = manifest["output"]["checksum"]["chunks"]
    assert manifest["output"]["bytes"] > 3 * MIB and len(chunks) == -(-manifest["output"]["bytes"] // MIB)
    data = one.read_bytes()
    assert chunks == [hashlib.sha256(data[i : i + MIB]).hexdigest() for i in range(0, len(data), MIB)]
    assert verify(one).ok and verify(two).ok


def test_a_changed_byte_is_located_to_its_chunk(long_records: Path, tmp_path: Path) -> None:
    path = build(long_records, tmp_path / "out").files["train"]
    data = bytearray(path.read_bytes())
    at = 2 * MIB + 10
    data[at] = ord("#") if data[at] != ord("#") else ord("%")
    path.write_bytes(bytes(data))
    problems = verify(path).problems
    assert any(f"1 of {-(-len(data) // MIB)} checksum chunks differ from the manifest's, the first at bytes 2,097,152-3,145,728" in p
               for p in problems), problems


def test_whole_file_sha256_is_opt_in_and_verified(two_sources: Path, tmp_path: Path) -> None:
    plain = build(two_sources, tmp_path / "plain").files["train"]
    assert "sha256" not in manifest_of(plain)["output"]
    with_sha = build(two_sources, tmp_path / "sha", sha256=True).files["train"]
    assert manifest_of(with_sha)["output"]["sha256"] == hashlib.sha256(with_sha.read_bytes()).hexdigest()
    assert "sha256 matches" in verify(with_sha).checks
    assert with_sha.read_bytes() == plain.read_bytes()


@pytest.mark.slow
def test_small_inputs_run_in_this_process_and_give_the_same_bytes(
    two_sources: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="mixprep"):
        pooled = build(two_sources, tmp_path / "pool", workers=2).files["train"]
        assert "running the build in this process" not in caplog.text
        inline = build(two_sources, tmp_path / "inline", workers=2, small_input_bytes=64 * MIB).files["train"]
    assert "small input (0.1 MB): running the build in this process instead of 2 workers" in caplog.text
    assert inline.read_bytes() == pooled.read_bytes()


def test_an_output_that_cannot_fit_is_refused_before_writing(
    two_sources: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = shutil.disk_usage

    def nearly_full(path: object) -> object:
        return real(path)._replace(free=1000)

    monkeypatch.setattr(workdir.shutil, "disk_usage", nearly_full)
    # Refused at planning time, from the records' measured lengths, before any output file exists.
    expected = r"the JSONL alone would take about 0\.0 GB \(1,000 records\) and .*/out has 0\.0 GB free; lower total_samples"
    with pytest.raises(OutputError, match=expected):
        build(two_sources, tmp_path / "out")
    assert complete_looking_outputs(tmp_path / "out") == []


def test_the_work_folder_holds_no_copy_of_the_output(two_sources: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Write tasks fill the final file in place: no JSONL part files are written and copied."""
    from mixprep.build import writers

    seen: list[str] = []
    original = writers.SplitWriter.finish

    def finish(self: writers.SplitWriter, *args: object, **kwargs: object) -> object:
        seen.extend(str(p) for p in self.tmp.jsonl.parent.rglob("*.jsonl") if p != self.tmp.jsonl)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(writers.SplitWriter, "finish", finish)
    build(two_sources, tmp_path / "out")
    assert seen == []


@pytest.mark.slow
def test_the_parquet_sidecar_and_the_jsonl_load_as_one_dataset(two_sources: Path, tmp_path: Path) -> None:
    """`datasets` reads the JSONL's text as `string`; a `large_string` sidecar made the two
    copies refuse to concatenate ("features can't be aligned")."""
    datasets = pytest.importorskip("datasets")
    jsonl = build(two_sources, tmp_path / "out").files["train"]
    cache = str(tmp_path / "hf-cache")
    from_json = datasets.load_dataset("json", data_files=str(jsonl), split="train", cache_dir=cache)
    from_parquet = datasets.load_dataset("parquet", data_files=str(jsonl.with_suffix(".parquet")), split="train", cache_dir=cache)
    assert from_parquet.features == from_json.features
    both = datasets.concatenate_datasets([from_json, from_parquet])
    assert list(both["text"]) == list(from_json["text"]) * 2
    assert list(from_parquet["source"]) == list(from_json["source"])


def test_sidecar_text_past_a_string_arrays_limit_is_written_in_chunks(
    two_sources: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import pyarrow.parquet as pq

    from mixprep.build import sidecar

    monkeypatch.setattr(sidecar, "MAX_STRING_CHUNK", 100)  # stands in for 2 GiB: a few records per chunk
    jsonl = build(two_sources, tmp_path / "out").files["train"]
    table = pq.read_table(jsonl.with_suffix(".parquet"))
    assert table.schema.field("text").type == "string"
    assert table.column("text").to_pylist() == [r["text"] for r in read_jsonl(jsonl)]
