"""Fixtures shared by the test modules; the helpers they use live in helpers.py and dataset_helpers.py.

The real-size toy mixture data is generated once per session with the project's own
generator (`mixprep.examples`); the ChatML tokenizer is trained once per session by
mixprep itself.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest
from dataset_helpers import synthetic_text
from helpers import CONFIGS, build, mixture, texts, write_jsonl, write_yaml

if TYPE_CHECKING:
    from mixprep.build.driver import BuildResult


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


@pytest.fixture(scope="session")
def chatml_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A byte-level BPE trained by mixprep itself (specials 0/1/2 + ChatML template)."""
    from mixprep.train.tokenizer import train_tokenizer

    rng = np.random.default_rng(0)
    texts = [synthetic_text(rng, 200, odd=0.02) for _ in range(300)]
    return train_tokenizer(texts, vocab_size=700, out_dir=tmp_path_factory.mktemp("tok"))


@pytest.fixture(scope="session")
def chatml(chatml_dir: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(chatml_dir))
