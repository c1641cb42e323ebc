"""The output folder's dataset card: Hugging Face `configs` front matter that `load_dataset`
reads, a body written from the manifests, and a user's own README.md left alone."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from helpers import build, mixture, read_jsonl, texts, write_jsonl

from mixprep.build.card import MARKER


@pytest.fixture
def offline_datasets(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> object:
    datasets = pytest.importorskip("datasets")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf-cache"))
    return datasets


def front_matter(card: Path) -> dict:
    _, front, _ = card.read_text().split("---\n", 2)
    return yaml.safe_load(front)


def two_source_mixture(folder: Path, name: str = "t", **metadata: object) -> Path:
    write_jsonl(folder / "a.jsonl", texts("a", 120))
    write_jsonl(folder / "b.jsonl", texts("b", 30))
    return mixture(
        folder,
        [
            {"name": "a", "mix_ratio": 0.5, "source": "a.jsonl", "filters": {"min_chars": 3}},
            {"name": "b", "mix_ratio": 0.5, "source": "b.jsonl"},
        ],
        file_name=f"{name}.yaml",
        name=name,
        validation={"samples": 10},
        **metadata,
    )


def test_load_dataset_of_the_output_folder_gives_the_jsonl_splits(tmp_path: Path, offline_datasets: object) -> None:
    datasets = offline_datasets
    result = build(two_source_mixture(tmp_path), tmp_path / "out")
    loaded = datasets.load_dataset(str(tmp_path / "out"))  # type: ignore[attr-defined]
    assert set(loaded) == {"train", "validation"}
    for split in ("train", "validation"):
        assert loaded[split].to_list() == read_jsonl(result.files[split])
    from_json = datasets.load_dataset("json", data_files=str(result.files["train"]))["train"]  # type: ignore[attr-defined]
    assert len(datasets.concatenate_datasets([from_json, loaded["train"]])) == 2 * len(from_json)  # type: ignore[attr-defined]


def test_the_card_describes_the_mixture_with_relative_paths(tmp_path: Path) -> None:
    build(two_source_mixture(tmp_path), tmp_path / "out")
    card = tmp_path / "out" / "README.md"
    assert front_matter(card)["configs"] == [{
        "config_name": "pretrain_t",
        "default": True,
        "data_files": [
            {"split": "train", "path": "pretrain_t_train.parquet"},
            {"split": "validation", "path": "pretrain_t_validation.parquet"},
        ],
    }]
    body = card.read_text()
    assert MARKER in body and str(tmp_path) not in body
    assert "| a | 0.5 | 120 | 0 | 0 | 115 | 70 | 50.0% | 0 | 5 |" in body  # 5 held out for validation; 140 = 115 + 25 available
    assert "`mix ratio` is a share of records." in body and " bytes share |" in body
    assert "- **a** (`a.jsonl`): `min_chars: 3`; removed: nothing" in body


def test_every_mixture_in_the_folder_is_a_config_and_the_latest_is_the_default(tmp_path: Path) -> None:
    build(two_source_mixture(tmp_path, "first"), tmp_path / "out")
    build(two_source_mixture(tmp_path, "second"), tmp_path / "out")
    configs = front_matter(tmp_path / "out" / "README.md")["configs"]
    assert [(c["config_name"], c.get("default", False)) for c in configs] == [("pretrain_second", True), ("pretrain_first", False)]
    build(two_source_mixture(tmp_path, "first"), tmp_path / "out")  # reused, and the default again
    configs = front_matter(tmp_path / "out" / "README.md")["configs"]
    assert [c["config_name"] for c in configs if c.get("default")] == ["pretrain_first"]


def test_a_readme_the_user_wrote_is_left_alone(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "README.md").write_text("# my notes\n")
    with caplog.at_level("WARNING"):
        build(two_source_mixture(tmp_path), out)
    assert (out / "README.md").read_text() == "# my notes\n"
    assert "was not written by mixprep: the dataset card was not written" in caplog.text
