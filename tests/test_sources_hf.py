"""Hugging Face sources: save_to_disk folders, hub-style local folders, cached hub snapshots,
and the offline hub-id error (fast, clear, no traceback). No network is used."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from helpers import REPO, build, manifest_of, mixture, read_jsonl, texts, write_jsonl, write_yaml

from mixprep.config import load_mixture
from mixprep.errors import SourceError

datasets = pytest.importorskip("datasets")
pytest.importorskip("huggingface_hub")

SHA = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture(autouse=True)
def no_hub(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Every test runs against an empty, private HF cache and an unreachable hub."""
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)


def one_source(folder: Path, source: object, **metadata: object) -> Path:
    return mixture(folder, [{"name": "hf", "mix_ratio": 1.0, "source": source}], **metadata)


def built_texts(config: Path, out: Path) -> list[str]:
    result = build(config, out)
    return [r["text"] for r in read_jsonl(result.files["train"])]


def write_parquet(path: Path, records: list[dict[str, str]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(records), path)
    return path


def text_set(records: list[dict[str, str]]) -> set[str]:
    return {r["text"] for r in records}


# -- save_to_disk ---------------------------------------------------------------------

def test_save_to_disk_dataset_is_read_from_its_arrow_files(tmp_path: Path) -> None:
    records = texts("saved", 40)
    datasets.Dataset.from_list(records).save_to_disk(str(tmp_path / "saved"), num_shards=2)
    config = one_source(tmp_path, {"hf": "saved"})
    out = built_texts(config, tmp_path / "out")
    assert sorted(out) == sorted(text_set(records)) and len(out) == 40
    inputs = manifest_of(build(config, tmp_path / "out").files["train"])["inputs"]
    assert [Path(i["path"]).name for i in inputs] == ["data-00000-of-00002.arrow", "data-00001-of-00002.arrow"]


def test_save_to_disk_dataset_dict_reads_the_requested_split(tmp_path: Path) -> None:
    train, test = texts("train", 30), texts("test", 7)
    datasets.DatasetDict(
        {"train": datasets.Dataset.from_list(train), "test": datasets.Dataset.from_list(test)}
    ).save_to_disk(str(tmp_path / "dd"))
    assert set(built_texts(one_source(tmp_path, {"hf": "dd", "split": "test"}), tmp_path / "o1")) == text_set(test)
    assert set(built_texts(one_source(tmp_path, {"hf": "dd"}), tmp_path / "o2")) == text_set(train)  # default: train
    with pytest.raises(SourceError, match=r"has no split 'validation'; splits: train, test; set `split:`"):
        build(one_source(tmp_path, {"hf": "dd", "split": "validation"}), tmp_path / "o3")


def test_save_to_disk_split_folder_as_validation_source(tmp_path: Path) -> None:
    train, val = texts("tr", 20), texts("va", 5)
    datasets.DatasetDict(
        {"train": datasets.Dataset.from_list(train), "validation": datasets.Dataset.from_list(val)}
    ).save_to_disk(str(tmp_path / "dd"))
    config = mixture(
        tmp_path,
        [{"name": "hf", "mix_ratio": 1.0, "source": {"hf": "dd"}, "validation_source": {"hf": "dd", "split": "validation"}}],
    )
    result = build(config, tmp_path / "out")
    assert text_set(read_jsonl(result.files["validation"])) == text_set(val)
    assert text_set(read_jsonl(result.files["train"])) == text_set(train)


# -- hub-style local folders --------------------------------------------------------------

def test_hub_layout_sharded_parquet_splits(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    part0, part1, test = texts("p0", 10), texts("p1", 12), texts("t", 4)
    write_parquet(repo / "data" / "train-00000-of-00002.parquet", part0)
    write_parquet(repo / "data" / "train-00001-of-00002.parquet", part1)
    write_parquet(repo / "data" / "test-00000-of-00001.parquet", test)
    (repo / "README.md").write_text("# a dataset card without YAML\n")
    config = one_source(tmp_path, {"hf": "repo", "split": "train"})
    result = build(config, tmp_path / "out")
    assert text_set(read_jsonl(result.files["train"])) == text_set(part0 + part1)
    relpaths = [i["path"] for i in manifest_of(result.files["train"])["inputs"]]
    assert [Path(p).name for p in relpaths] == ["train-00000-of-00002.parquet", "train-00001-of-00002.parquet"]
    assert "revision" not in manifest_of(result.files["train"])["inputs"][0]  # a plain folder has no commit
    assert set(built_texts(one_source(tmp_path, {"hf": "repo", "split": "test"}), tmp_path / "o2")) == text_set(test)


def test_hub_layout_jsonl_files_named_by_split(tmp_path: Path) -> None:
    train, valid = texts("tj", 9), texts("vj", 3)
    write_jsonl(tmp_path / "repo" / "train.jsonl", train)
    write_jsonl(tmp_path / "repo" / "validation.jsonl", valid)
    assert set(built_texts(one_source(tmp_path, {"hf": "repo"}), tmp_path / "o1")) == text_set(train)
    assert set(built_texts(one_source(tmp_path, {"hf": "repo", "split": "validation"}), tmp_path / "o2")) == text_set(valid)
    with pytest.raises(SourceError, match=r"has no split 'test' \(found: train, validation\); set `split:`"):
        build(one_source(tmp_path, {"hf": "repo", "split": "test"}), tmp_path / "o3")


def test_hub_layout_config_folders(tmp_path: Path) -> None:
    en, fr = texts("en", 8), texts("fr", 6)
    write_parquet(tmp_path / "repo" / "en" / "train" / "0000.parquet", en)
    write_parquet(tmp_path / "repo" / "fr" / "train" / "0000.parquet", fr)
    assert set(built_texts(one_source(tmp_path, {"hf": "repo", "config": "fr"}), tmp_path / "o1")) == text_set(fr)
    with pytest.raises(SourceError, match=r"has no config 'de' \(no README `configs:` and no folder de/; folders: en, fr\)"):
        build(one_source(tmp_path, {"hf": "repo", "config": "de"}), tmp_path / "o2")


def test_hub_layout_readme_configs(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    small, large, held = texts("s", 5), texts("l", 11), texts("h", 2)
    write_jsonl(repo / "raw" / "small.jsonl", small)
    write_jsonl(repo / "raw" / "large-a.jsonl", large[:6])
    write_jsonl(repo / "raw" / "large-b.jsonl", large[6:])
    write_jsonl(repo / "raw" / "held.jsonl", held)
    (repo / "README.md").write_text(
        "---\nconfigs:\n"
        "- config_name: small\n  data_files: raw/small.jsonl\n"
        "- config_name: large\n  default: true\n  data_files:\n"
        "  - split: train\n    path: raw/large-*.jsonl\n"
        "  - split: test\n    path: raw/held.jsonl\n"
        "---\n# card\n"
    )
    assert set(built_texts(one_source(tmp_path, {"hf": "repo"}), tmp_path / "o1")) == text_set(large)  # the default config
    assert set(built_texts(one_source(tmp_path, {"hf": "repo", "config": "small"}), tmp_path / "o2")) == text_set(small)
    assert set(built_texts(one_source(tmp_path, {"hf": "repo", "split": "test"}), tmp_path / "o3")) == text_set(held)
    with pytest.raises(SourceError, match=r"README.md has no config 'tiny'; configs: small, large; set `config:`"):
        build(one_source(tmp_path, {"hf": "repo", "config": "tiny"}), tmp_path / "o4")


def test_downloaded_local_dir_records_its_commit_and_checks_revision(tmp_path: Path) -> None:
    repo = tmp_path / "copy"
    write_parquet(repo / "data" / "train-00000-of-00001.parquet", texts("c", 5))
    metadata = repo / ".cache" / "huggingface" / "download" / "data"
    metadata.mkdir(parents=True)
    (metadata / "train-00000-of-00001.parquet.metadata").write_text(f"{SHA}\netag\n1700000000.0\n")
    result = build(one_source(tmp_path, {"hf": "copy", "revision": SHA[:10]}), tmp_path / "o1")
    assert manifest_of(result.files["train"])["inputs"][0]["revision"] == SHA
    with pytest.raises(SourceError, match=rf"holds commit {SHA}, not revision 'main'; set `revision: {SHA}`"):
        build(one_source(tmp_path, {"hf": "copy", "revision": "main"}), tmp_path / "o2")


# -- hub ids --------------------------------------------------------------------------

def fake_cached_snapshot(cache: Path, repo_id: str, files: dict[str, list[dict[str, str]]]) -> Path:
    """The layout huggingface_hub writes to its cache: refs/main -> snapshots/<sha>/..."""
    repo_dir = cache / f"datasets--{repo_id.replace('/', '--')}"
    (repo_dir / "refs").mkdir(parents=True)
    (repo_dir / "refs" / "main").write_text(SHA)
    snapshot = repo_dir / "snapshots" / SHA
    for relpath, records in files.items():
        write_parquet(snapshot / relpath, records)
    return snapshot


def test_hub_id_uses_the_cached_snapshot_and_records_its_commit(tmp_path: Path) -> None:
    records = texts("hub", 25)
    fake_cached_snapshot(tmp_path / "hf-cache", "owner/name", {"data/train-00000-of-00001.parquet": records})
    started = time.monotonic()
    result = build(one_source(tmp_path, {"hf": "owner/name", "split": "train"}), tmp_path / "o1")
    assert time.monotonic() - started < 30  # no network attempt once the cache answers
    inputs = manifest_of(result.files["train"])["inputs"]
    assert [(i["revision"], Path(i["path"]).name) for i in inputs] == [(SHA, "train-00000-of-00001.parquet")]
    # The same files in a plain folder give the same bytes: identity is the path inside the repo.
    write_parquet(tmp_path / "local" / "data" / "train-00000-of-00001.parquet", records)
    local = build(one_source(tmp_path, {"hf": "local"}, file_name="local.yaml"), tmp_path / "o2")
    assert local.files["train"].read_bytes() == result.files["train"].read_bytes()


def test_offline_hub_id_fails_at_once_with_instructions(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    config = one_source(tmp_path, {"hf": "owner/name", "split": "train", "revision": "v1.0"})
    started = time.monotonic()
    with pytest.raises(SourceError) as caught:
        build(config, tmp_path / "out")
    assert time.monotonic() - started < 5
    message = str(caught.value)
    assert "cannot read hub dataset 'owner/name' (revision 'v1.0')" in message
    assert "has no snapshot of owner/name at 'v1.0', and offline mode is on (HF_HUB_OFFLINE" in message
    assert "huggingface-cli download --repo-type dataset owner/name --revision v1.0 --local-dir DIR" in message
    assert "`source: {hf: DIR, split: train}`" in message
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").glob("*.jsonl"))


def test_unreachable_hub_fails_at_once(tmp_path: Path) -> None:
    config = one_source(tmp_path, {"hf": "owner/name"})
    started = time.monotonic()
    with pytest.raises(SourceError, match=r"http://127.0.0.1:9 cannot be reached .*\n.*Pre-download it") as caught:
        build(config, tmp_path / "out")
    assert time.monotonic() - started < 5
    assert "--revision main --local-dir DIR" in str(caught.value)


def test_cli_offline_error_has_no_traceback(tmp_path: Path) -> None:
    config = one_source(tmp_path, {"hf": "owner/name"})
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(tmp_path / "hf-cache"), "PYTHONPATH": str(REPO)}
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "mixprep", "build", str(config), "--output-dir", str(tmp_path / "out")],
        capture_output=True, text=True, env=env, cwd=REPO, timeout=60, check=False,
    )
    assert time.monotonic() - started < 20  # interpreter start + imports; the hub is never waited on
    assert done.returncode != 0
    assert "huggingface-cli download --repo-type dataset owner/name" in done.stderr + done.stdout
    assert "Traceback" not in done.stderr


# -- config -------------------------------------------------------------------------------

def test_hf_source_config_problems(tmp_path: Path) -> None:
    config_path = write_yaml(
        tmp_path / "bad.yaml",
        {
            "metadata": {"phase": "pretrain"},
            "datasets": [
                {"name": "a", "mix_ratio": 0.5, "source": {"hf": "owner/name", "path": "x.jsonl"}},
                {"name": "b", "mix_ratio": 0.3, "source": {"hf": "./missing/folder/deep"}},
                {"name": "c", "mix_ratio": 0.2, "source": {"path": "c.jsonl", "split": "train"}},
            ],
        },
    )
    write_jsonl(tmp_path / "c.jsonl", texts("c", 1))
    problems = load_mixture(config_path).problems
    assert any("datasets[0].source.path: cannot be combined with `hf:`" in p for p in problems)
    assert any("datasets[1].source.hf: './missing/folder/deep' is neither an existing folder" in p for p in problems)
    assert any("datasets[2].source.split: applies to Hugging Face sources only" in p for p in problems)


def test_hub_id_is_not_contacted_while_parsing(tmp_path: Path) -> None:
    started = time.monotonic()
    config = load_mixture(one_source(tmp_path, {"hf": "owner/name", "split": "train", "config": "en"}))
    assert time.monotonic() - started < 2
    assert config.is_valid
    hub = config.datasets[0].source.hub
    assert hub is not None and (hub.repo, hub.local, hub.split, hub.config) == ("owner/name", False, "train", "en")
