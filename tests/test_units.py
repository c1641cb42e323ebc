"""What a mixture holds in bytes, characters and tokens: counted per kept record by the scan,
summed over the copies each split takes, shown beside the requested share."""
from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
from helpers import build, manifest_of, mixture, read_jsonl, write_jsonl

from mixprep.cli import main
from mixprep.config import load_mixture
from mixprep.verify import verify

SHARED_TOKENIZERS = Path(__file__).resolve().parents[2] / "shared" / "data" / "tokenizers"


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small byte-level BPE tokenizer trained here (nothing downloaded)."""
    tokenizers = pytest.importorskip("tokenizers")
    folder = tmp_path_factory.mktemp("tokenizer")
    model = tokenizers.Tokenizer(tokenizers.models.BPE())
    model.pre_tokenizer = tokenizers.pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = tokenizers.trainers.BpeTrainer(vocab_size=300, initial_alphabet=tokenizers.pre_tokenizers.ByteLevel.alphabet())
    model.train_from_iterator([" ".join(["long words here and there"] * 5), "short ones é 中文"] * 50, trainer)
    model.save(str(folder / "tokenizer.json"))
    return folder


def count_tokens(folder: Path, texts: list[str]) -> int:
    import tokenizers

    model = tokenizers.Tokenizer.from_file(str(folder / "tokenizer.json"))
    return sum(len(e.ids) for e in model.encode_batch(texts, add_special_tokens=False))


def unequal_sources(folder: Path, **metadata: object) -> Path:
    """Half the records each, but `long` texts are ~10x `short` ones."""
    write_jsonl(folder / "long.jsonl", [{"text": f"{i} " + "long words here and there " * 8} for i in range(60)])
    write_jsonl(folder / "short.jsonl", [{"text": f"{i} short ones é 中文"} for i in range(60)])
    return mixture(
        folder,
        [{"name": "long", "mix_ratio": 0.5, "source": "long.jsonl"}, {"name": "short", "mix_ratio": 0.5, "source": "short.jsonl"}],
        validation={"samples": 10},
        **metadata,
    )


def by_source(records: list[dict], measure: object) -> Counter:
    totals: Counter = Counter()
    for record in records:
        totals[record["source"]] += measure(record)  # type: ignore[operator]
    return totals


def test_bytes_and_characters_are_counted_without_a_tokenizer(tmp_path: Path) -> None:
    result = build(unequal_sources(tmp_path), tmp_path / "out")
    for split in ("train", "validation"):
        manifest = manifest_of(result.files[split])
        lines = result.files[split].read_bytes().splitlines(keepends=True)
        records = [json.loads(line) for line in lines]
        line_bytes = Counter()
        for line, record in zip(lines, records, strict=True):
            line_bytes[record["source"]] += len(line)
        characters = by_source(records, lambda r: len(r["text"]))
        for name, s in manifest["sources"].items():
            assert (s["bytes"], s["characters"]) == (line_bytes[name], characters[name])
            assert "tokens" not in s and set(s["share"]) == {"records", "bytes", "characters"}
        assert manifest["output"]["characters"] == sum(characters.values()) and "tokens" not in manifest["output"]
        shares = manifest["sources"]["long"]["share"]
        assert shares["records"] == 0.5 and shares["bytes"] > 0.8  # equal records, not equal text
        assert sum(s["share"]["bytes"] for s in manifest["sources"].values()) == pytest.approx(1.0, abs=1e-5)
    assert verify(result.files["train"]).ok


def test_tokens_are_counted_with_the_mixture_tokenizer(tmp_path: Path, tokenizer: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = unequal_sources(tmp_path, tokenizer=str(tokenizer))
    result = build(config, tmp_path / "out")
    manifest = manifest_of(result.files["train"])
    records = read_jsonl(result.files["train"])
    for name in ("long", "short"):
        texts = [r["text"] for r in records if r["source"] == name]
        assert manifest["sources"][name]["tokens"] == count_tokens(tokenizer, texts)
    total = manifest["output"]["tokens"]
    assert total == count_tokens(tokenizer, [r["text"] for r in records])
    assert manifest["sources"]["long"]["share"]["tokens"] == pytest.approx(manifest["sources"]["long"]["tokens"] / total, abs=1e-6)
    assert manifest["tokenizer"] == str(tokenizer)  # outside the config's folder: absolute
    # The same counts whatever the worker count; the CLI shows the token share beside the asked one.
    assert manifest_of(build(config, tmp_path / "w2", workers=2).files["train"])["sources"] == manifest["sources"]
    assert main(["build", str(config), "--output-dir", str(tmp_path / "out"), "--no-report"]) == 0
    table = capsys.readouterr().out
    assert "tokens share" in table and f"{manifest['sources']['long']['share']['tokens']:.1%}" in table
    assert main(["build", str(config), "--dry-run"]) == 0  # the plan's shares are the build's
    plan = capsys.readouterr().out
    assert f"{manifest['sources']['short']['share']['tokens']:.1%}" in plan.splitlines()[-1]


def test_sft_tokens_count_every_message(tmp_path: Path, tokenizer: Path) -> None:
    chats = [{"conversations": [{"role": "user", "content": f"question {i} " * 5}, {"role": "assistant", "content": "short"}]}
             for i in range(20)]
    write_jsonl(tmp_path / "chat.jsonl", chats)
    config = mixture(tmp_path, [{"name": "chat", "mix_ratio": 1.0, "source": "chat.jsonl"}], phase="sft",
                     filter_on="assistant", tokenizer=str(tokenizer))
    result = build(config, tmp_path / "out")
    source = manifest_of(result.files["train"])["sources"]["chat"]
    texts = ["\n".join(m["content"] for m in r["conversations"]) for r in read_jsonl(result.files["train"])]
    assert source["tokens"] == count_tokens(tokenizer, texts)
    assert source["characters"] == sum(len(t) for t in texts)


def test_a_missing_tokenizer_is_a_config_problem(tmp_path: Path) -> None:
    config = load_mixture(unequal_sources(tmp_path, tokenizer="tokenizers/none"))
    assert any("metadata.tokenizer: no such file or folder" in p for p in config.problems)


@pytest.mark.skipif(not (SHARED_TOKENIZERS / "minimind").is_dir(), reason="needs ../shared/data/tokenizers")
def test_the_minimind_tokenizer_counts_the_toy_data(tmp_path: Path) -> None:
    result = build(unequal_sources(tmp_path, tokenizer=str(SHARED_TOKENIZERS / "minimind")), tmp_path / "out")
    texts = [r["text"] for r in read_jsonl(result.files["train"])]
    assert manifest_of(result.files["train"])["output"]["tokens"] == count_tokens(SHARED_TOKENIZERS / "minimind", texts)


# -- mix_by: tokens -----------------------------------------------------------------------------

def test_mix_by_tokens_meets_each_token_share_within_one_record(tmp_path: Path, tokenizer: Path) -> None:
    config = unequal_sources(tmp_path, tokenizer=str(tokenizer), mix_by="tokens")
    result = build(config, tmp_path / "out")
    manifest = manifest_of(result.files["train"])
    assert manifest["mix_by"] == "tokens"
    records = read_jsonl(result.files["train"])
    longest = {name: max(count_tokens(tokenizer, [r["text"]]) for r in records if r["source"] == name) for name in ("long", "short")}
    sources = manifest["sources"]
    assert sum(s["token_quota"] for s in sources.values()) == sum(s["available_tokens"] for s in sources.values())
    for name, s in sources.items():
        assert s["token_quota"] == pytest.approx(sum(x["available_tokens"] for x in sources.values()) / 2, abs=1)
        assert abs(s["tokens"] - s["token_quota"]) <= longest[name] / 2 + 1  # the nearer side of one record
    assert abs(sources["long"]["share"]["tokens"] - 0.5) < 0.02 and sources["long"]["share"]["records"] < 0.2
    again = build(config, tmp_path / "w2", workers=2)
    assert again.files["train"].read_bytes() == result.files["train"].read_bytes()


def test_total_tokens_sizes_the_split_with_wraparound(tmp_path: Path, tokenizer: Path) -> None:
    config = unequal_sources(tmp_path, tokenizer=str(tokenizer), mix_by="tokens", total_tokens=20_000)
    sources = manifest_of(build(config, tmp_path / "out").files["train"])["sources"]
    assert [s["token_quota"] for s in sources.values()] == [10_000, 10_000]
    short = sources["short"]
    assert short["available_tokens"] < 10_000 and short["extra_copies"] > 0  # the short source wraps around
    for s in sources.values():
        assert abs(s["tokens"] - 10_000) <= 60


@pytest.mark.parametrize(
    ("metadata", "problem"),
    [
        ({"mix_by": "tokens"}, "metadata.mix_by: tokens needs metadata.tokenizer"),
        ({"mix_by": "tokens", "tokenizer": "TOK", "total_samples": 10}, "metadata.total_samples: counts records"),
        ({"total_tokens": 100}, "metadata.total_tokens: applies with mix_by: tokens only"),
        ({"mix_by": "words"}, "metadata.mix_by: expected one of records, tokens"),
    ],
)
def test_mix_by_problems(tmp_path: Path, tokenizer: Path, metadata: dict, problem: str) -> None:
    metadata = {k: (str(tokenizer) if v == "TOK" else v) for k, v in metadata.items()}
    config = load_mixture(unequal_sources(tmp_path, **metadata))
    assert any(problem in p for p in config.problems), config.problems


def test_records_for_tokens_takes_the_select_order_to_the_nearest_record() -> None:
    import numpy as np

    from mixprep.build.hashing import derive
    from mixprep.build.sampler import bottom_k, records_for_tokens, select

    rng = np.random.default_rng(3)
    keys = rng.integers(0, 2**63, 50).astype(np.uint64)
    tokens = rng.integers(1, 100, 50).astype(np.uint32)
    ranked_tokens = tokens[bottom_k(derive(keys, "select"), 50)].astype(np.int64)
    for quota in [0, 1, 37, 1000, int(tokens.sum()), int(tokens.sum()) * 2 + 555]:
        count = records_for_tokens(keys, tokens, quota)
        taken = int(tokens[select(keys, count).rows].astype(np.int64).sum())
        # Nearest: one record more or one fewer is never closer.
        for other in (count - 1, count + 1):
            if other >= 0:
                assert abs(taken - quota) <= abs(int(tokens[select(keys, other).rows].astype(np.int64).sum()) - quota)
        assert abs(taken - quota) <= ranked_tokens.max()
