"""`c4` in a build: kept documents are written cleaned (JSONL, Parquet, counts), the manifest
counts lines per rule and documents per reason, --write-rejected keeps the originals, the
output is the same for any worker count, and only pretrain phases accept it."""
from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest
from helpers import build, mixture, read_jsonl, write_jsonl

from mixprep.errors import ConfigError

GOOD = [f"Line {i} of the story goes on for a while and ends." for i in range(6)]


def documents() -> list[dict[str, str]]:
    records = []
    for i in range(40):
        lines = [f"Document {i} starts here with a proper sentence.", *GOOD, "menu", "Please enable JavaScript to continue."]
        records.append({"text": "\n".join(lines) + "\n"})
    records.append({"text": "\n".join([*GOOD, "Lorem ipsum dolor sit amet, consectetur."])})
    records.append({"text": "Two lines only.\nNot enough sentences here."})
    records.append({"text": "\n".join([*GOOD, "The template uses {name} here."])})
    return records


def cleaned(i: int) -> str:
    return "\n".join([f"Document {i} starts here with a proper sentence.", *GOOD])


@pytest.fixture
def c4_mixture(tmp_path: Path) -> Path:
    write_jsonl(tmp_path / "a.jsonl", documents())
    return mixture(tmp_path, [{"name": "a", "mix_ratio": 1.0, "source": "a.jsonl"}], seed=3, filters={"c4": True})


def test_kept_documents_are_written_cleaned_and_counted(c4_mixture: Path, tmp_path: Path) -> None:
    result = build(c4_mixture, tmp_path / "o", write_rejected=True)
    records = read_jsonl(result.files["train"])
    assert sorted(r["text"] for r in records) == sorted(cleaned(i) for i in range(40))
    sidecar = pl.read_parquet(result.files["train"].with_suffix(".parquet"))
    assert sidecar["text"].to_list() == [r["text"] for r in records]
    source = result.manifests["train"]["sources"]["a"]
    assert source["removed"] == {"c4": 3}
    assert source["c4"] == {
        "documents_removed": {"lorem_ipsum": 1, "curly_bracket": 1, "too_few_sentences": 1},
        "lines": {"lines": 360, "too_long_word": 0, "no_terminal_punctuation": 40, "too_few_words": 0, "javascript": 40,
                  "policy": 0, "kept_lines": 280},
    }
    assert source["characters"] == sum(len(r["text"]) for r in records)
    assert source["filters"]["c4"]["min_sentences"] == 5
    assert source["filter_definitions"] == "datatrove 0.10.1"
    rejected = read_jsonl(tmp_path / "o" / "pretrain_t.rejected.jsonl")
    assert sorted(r["text"] for r in rejected) == sorted(d["text"] for d in documents()[40:])  # the originals
    assert {r["reason"] for r in rejected} == {"c4"}


def test_cleaned_output_is_the_same_for_any_worker_count(c4_mixture: Path, tmp_path: Path) -> None:
    one = build(c4_mixture, tmp_path / "w1", workers=1).files["train"].read_bytes()
    two = build(c4_mixture, tmp_path / "w2", workers=2).files["train"].read_bytes()
    assert one == two


def test_c4_settings_reach_the_build(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "a.jsonl", documents())
    config = mixture(tmp_path, [{"name": "a", "mix_ratio": 1.0, "source": "a.jsonl", "filters": {"c4": {"javascript": False}}}])
    records = read_jsonl(build(config, tmp_path / "o").files["train"])
    assert all(r["text"].endswith("Please enable JavaScript to continue.") for r in records if r["text"].startswith("Document"))


def test_c4_is_refused_outside_pretrain(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "s.jsonl", [{"conversations": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]}])
    config = mixture(tmp_path, [{"name": "s", "mix_ratio": 1.0, "source": "s.jsonl", "filters": {"c4": True}}], phase="sft")
    with pytest.raises(ConfigError, match=r"datasets\[0\]\.filters\.c4: C4 line cleaning rewrites pretrain texts; phase 'sft'"):
        build(config, tmp_path / "o")


def test_c4_switched_off_for_one_source_keeps_its_texts_as_read(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "a.jsonl", documents())
    config = mixture(tmp_path, [{"name": "a", "mix_ratio": 1.0, "source": "a.jsonl", "filters": {"c4": False}}], filters={"c4": True})
    records = read_jsonl(build(config, tmp_path / "o").files["train"])
    assert sorted(r["text"] for r in records) == sorted(d["text"] for d in documents())


def test_texts_c4_left_as_they_were_are_read_back_and_only_changed_ones_copied(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mixprep.build import scan

    already_clean = ["\n".join([f"Clean document {i} needs nothing removed at all.", *GOOD]) for i in range(30)]
    write_jsonl(tmp_path / "a.jsonl", [*({"text": t} for t in already_clean), *documents()[:10]])
    config = mixture(tmp_path, [{"name": "a", "mix_ratio": 1.0, "source": "a.jsonl"}], seed=3, filters={"c4": True})
    spilled: list[int] = []
    real = scan.scan_task

    def measured(job: scan.ScanJob) -> scan.ScanResult:
        result = real(job)
        spilled.append(Path(result.values_path).stat().st_size)
        return result

    monkeypatch.setattr("mixprep.build.driver.scan_task", measured)
    read_back = build(config, tmp_path / "read-back").files["train"].read_bytes()
    assert spilled == [sum(len(cleaned(i).encode()) for i in range(10))]  # the ten changed texts, nothing else
    monkeypatch.setattr(scan.ScanJob, "reads_back", property(lambda self: False))
    copied = build(config, tmp_path / "copied").files["train"].read_bytes()
    assert read_back == copied
    texts = sorted(r["text"] for r in read_jsonl(tmp_path / "read-back" / "pretrain_t_train.jsonl"))
    assert texts == sorted(already_clean + [cleaned(i) for i in range(10)])
