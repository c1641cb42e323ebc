"""Shared fixtures for the build-engine tests: tiny data and mixtures written into tmp_path.

Helpers write JSONL / YAML the way a user would and run builds in-process
(`workers=1` unless a test is about workers), so the engine suite stays fast.
The real-size toy mixture data is generated once per session with the project's
own generator (`mixprep.examples`).
"""
from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import yaml

# Every test module shares this conftest; mixprep is imported inside the helpers so
# collecting other modules' tests never depends on the build engine importing.
if TYPE_CHECKING:
    from mixprep.build import BuildResult

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "configs"


def write_jsonl(path: Path, records: list[Any]) -> Path:
    """One JSON value per line (ensure_ascii off so Unicode goes through as UTF-8)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as handle:
        for record in records:
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")
    return path


def write_lines(path: Path, lines: list[str], *, trailing_newline: bool = True) -> Path:
    """Raw lines, for malformed and blank-line inputs."""
    path.parent.mkdir(parents=True, exist_ok=True)
    body = "\n".join(lines) + ("\n" if trailing_newline else "")
    path.write_bytes(body.encode("utf-8"))
    return path


def texts(prefix: str, n: int, *, words: int = 6) -> list[dict[str, str]]:
    """n distinct pretrain records, e.g. {"text": "st-00012 alpha beta ..."}."""
    filler = " ".join(["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta"][:words])
    return [{"text": f"{prefix}-{i:05d} {filler}"} for i in range(n)]


def write_yaml(path: Path, config: dict[str, Any] | str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(config if isinstance(config, str) else yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return path


def mixture(
    folder: Path, datasets: list[dict[str, Any]], *, file_name: str = "mix.yaml", **metadata: Any
) -> Path:
    """A mixture YAML in `folder`; metadata defaults to phase `pretrain`, name `t`."""
    meta = {"phase": "pretrain", "name": "t", **metadata}
    return write_yaml(folder / file_name, {"metadata": meta, "datasets": datasets})


def build(config: Path, out: Path, **options: Any) -> BuildResult:
    from mixprep.mixer import DatasetMixer

    options.setdefault("progress", False)
    return DatasetMixer.from_yaml(config).build(output_dir=out, **options)


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_bytes().splitlines()]


def manifest_of(jsonl: Path) -> dict[str, Any]:
    return json.loads(jsonl.with_name(jsonl.name[: -len(".jsonl")] + ".manifest.json").read_text())


def source_counts(records: list[dict[str, Any]]) -> Counter:
    return Counter(r["source"] for r in records)


def complete_looking_outputs(folder: Path) -> list[Path]:
    """Files a user could take for a finished build: any file in the output folder itself
    (temporary files live in a hidden subfolder)."""
    if not folder.exists():
        return []
    return sorted(p for p in folder.iterdir() if p.is_file())


@pytest.fixture
def two_sources(tmp_path: Path) -> Path:
    """A small pretrain mixture: 600 'a' records (ratio 0.6) and 300 'b' records (0.4), T = 1000."""
    write_jsonl(tmp_path / "data" / "a.jsonl", texts("a", 600))
    write_jsonl(tmp_path / "data" / "b.jsonl", texts("b", 300))
    return mixture(
        tmp_path,
        [
            {"name": "a", "mix_ratio": 0.6, "source": "data/a.jsonl"},
            {"name": "b", "mix_ratio": 0.4, "source": "data/b.jsonl"},
        ],
        total_samples=1000,
        seed=7,
    )


@pytest.fixture(scope="session")
def example_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The data `python -m mixprep example-data` writes (real toy sizes), generated once."""
    from mixprep.examples import write_example_data

    folder = tmp_path_factory.mktemp("example-data")
    write_example_data(folder, seed=0)
    return folder


@pytest.fixture(scope="session")
def toy_config(example_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """configs/toy_mixture.yaml as shipped, with its `../data` pointed at the generated data."""
    text = (CONFIGS / "toy_mixture.yaml").read_text().replace("../data", str(example_data))
    return write_yaml(tmp_path_factory.mktemp("toy-config") / "toy_mixture.yaml", text)


@pytest.fixture(scope="session")
def toy_build(toy_config: Path, tmp_path_factory: pytest.TempPathFactory) -> BuildResult:
    """The real-size toy mixture, built once (workers=1) and shared read-only."""
    return build(toy_config, tmp_path_factory.mktemp("toy-out"))
