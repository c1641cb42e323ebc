"""Helpers the tests share: tiny data and mixtures written into tmp_path, builds run in-process.

They write JSONL / YAML the way a user would and run builds in-process (`workers=1`
unless a test is about workers), so the engine suite stays fast. Fixtures live in
conftest.py; this module is imported by name (`from helpers import ...`).
"""
from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

# mixprep is imported inside the helpers, so collecting a test module never depends on
# the build engine importing.
if TYPE_CHECKING:
    from mixprep.build.driver import BuildResult

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
    # Test inputs are tiny: without this, `workers=2` would run in this process (see
    # SMALL_INPUT_BYTES) and the tests about worker counts would not start a pool.
    options.setdefault("small_input_bytes", 0)
    options.setdefault("report", False)  # drawn in tests/test_report.py; ~1 s a build elsewhere
    return DatasetMixer.from_yaml(config).build(output_dir=out, **options)


def train_byte_level_bpe(folder: Path, corpus: list[str], *, vocab_size: int, special_tokens: list[str] | None = None) -> Path:
    """A GPT-2-style byte-level BPE tokenizer trained here on `corpus` (nothing downloaded):
    `folder/tokenizer.json`, returned."""
    import tokenizers

    folder.mkdir(parents=True, exist_ok=True)
    model = tokenizers.Tokenizer(tokenizers.models.BPE())
    model.pre_tokenizer = tokenizers.pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = tokenizers.trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=special_tokens or [], initial_alphabet=tokenizers.pre_tokenizers.ByteLevel.alphabet()
    )
    model.train_from_iterator(corpus, trainer)
    model.save(str(folder / "tokenizer.json"))
    return folder / "tokenizer.json"


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
