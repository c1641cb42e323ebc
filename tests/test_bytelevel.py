"""The compiled byte-level BPE split and word cache (`filters.bytelevel`) give the
`tokenizers` library's own ids and counts, text for text."""
from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import pytest
from helpers import train_byte_level_bpe
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mixprep.filters import bytelevel
from mixprep.filters.bytelevel import ByteLevelBPE
from mixprep.filters.tokens import load_token_counter, load_token_encoder

SHARED_TOKENIZERS = Path(__file__).resolve().parents[2] / "shared" / "data" / "tokenizers"
# Pieces chosen to meet every branch of the split: contractions (and near misses), a space
# before each class, whitespace runs before and at the end, marks, digits of other scripts,
# CJK, emoji, the regex engine's \s beyond ASCII, and the added token as text.
PIECES = [
    "'s", "'t", "'re", "'ve", "'m", "'ll", "'d", "'S", "'x", "'", "''", " '", "don't", "we're", "y'all",
    " ", "  ", "   ", "\t", "\n", "\n\n", " \n", "\r\n", "\u00a0", "\u3000", "\u2009", "\u1680", "\x0b", "\x0c", "\x1c", "\x85",
    "a", "Word", "é", "e\u0301", "ß", "İ", "ﬁ", "中文", "かな", "한국어", "שלום", "مرحبا", "Ωμέγα",
    "1", "42", "٣", "½", "Ⅻ", "3.14", "-", "...", "!?", "“", "—", "(", ")", "$", "😀", "👍🏽", "\u200d", "\ufeff",
    "<|endoftext|>", "<|end", "|>",
]


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    corpus = ["".join(PIECES) * 3, "the cat's toy, isn't it? 123 中文 text"] * 40
    return train_byte_level_bpe(tmp_path_factory.mktemp("bpe"), corpus, vocab_size=500, special_tokens=["<|endoftext|>"])


@functools.lru_cache(maxsize=8)
def library(tokenizer_json: Path) -> Any:
    import tokenizers

    return tokenizers.Tokenizer.from_file(str(tokenizer_json))


@functools.lru_cache(maxsize=8)
def compiled(tokenizer_json: Path) -> ByteLevelBPE:
    return ByteLevelBPE(tokenizer_json)  # one per tokenizer, its cache kept across examples as in a scan task


def library_ids(tokenizer_json: Path, texts: list[str]) -> list[list[int]]:
    return [e.ids for e in library(tokenizer_json).encode_batch(texts, add_special_tokens=False)]


def tokenizer_files() -> list[Path]:
    return [p / "tokenizer.json" for p in (SHARED_TOKENIZERS / "minimind", SHARED_TOKENIZERS / "gpt2") if p.is_dir()]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.lists(st.sampled_from(PIECES) | st.text(max_size=6), max_size=25).map("".join), min_size=1, max_size=8))
def test_ids_and_counts_equal_the_library(trained: Path, texts: list[str]) -> None:
    for tokenizer_json in [trained, *tokenizer_files()]:
        fast = compiled(tokenizer_json)
        expected = library_ids(tokenizer_json, texts)
        assert fast.count(texts).tolist() == [len(e) for e in expected]
        ids, lengths = fast.encode(texts)
        assert lengths.tolist() == [len(e) for e in expected]
        assert ids.tolist() == [i for e in expected for i in e]


def test_the_cache_starting_over_changes_nothing(trained: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bytelevel, "TABLE_BITS", 6)  # 32 words fill it: it starts over many times
    monkeypatch.setattr(bytelevel, "MISSES_PER_ROUND", 5)
    plain = [p for p in PIECES if "|" not in p]  # no added token: every text takes the compiled path
    texts = [f"{i} word{i} " + " ".join(plain[i % len(plain) :]) for i in range(60)]
    fast = ByteLevelBPE(trained)
    expected = library_ids(trained, texts)
    for _ in range(2):
        assert fast.count(texts).tolist() == [len(e) for e in expected]
        assert fast.encode(texts)[0].tolist() == [i for e in expected for i in e]
    assert fast.restarts > 10 and fast.oversized > 0  # both ways out of a full cache were taken


def test_only_gpt2_style_byte_level_bpe_is_taken(trained: Path, tmp_path: Path) -> None:
    assert ByteLevelBPE.supports(trained)
    spec = json.loads(trained.read_text())
    for change in (
        {"normalizer": {"type": "NFKC"}},
        {"pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": True, "use_regex": True}},
        {"pre_tokenizer": {"type": "Whitespace"}},
        {"model": {**spec["model"], "dropout": 0.1}},
    ):
        other = tmp_path / "other.json"
        other.write_text(json.dumps({**spec, **change}))
        assert not ByteLevelBPE.supports(other), change
    assert not ByteLevelBPE.supports(tmp_path / "missing.json")


def test_the_build_counters_use_it_and_agree(trained: Path) -> None:
    texts = ["the cat's toy", "<|endoftext|> as text", "", "中文 text 123"]
    expected = library_ids(trained, texts)
    assert load_token_counter(str(trained))(texts).tolist() == [len(e) for e in expected]
    ids, lengths = load_token_encoder(str(trained))(texts)
    assert ids.tolist() == [i for e in expected for i in e] and lengths.tolist() == [len(e) for e in expected]
    assert expected[1][0] == 0  # the added token as text is the token itself (the library's path)


def test_characters_this_python_does_not_know_go_to_the_library(trained: Path) -> None:
    # U+13460 is unassigned in Python 3.11's Unicode 14 and a letter since Unicode 16: the
    # tokenizer's regex engine may split it either way, so such texts are the library's.
    import unicodedata

    texts = ["\U00013460's", "a \U00031350 b", "\U00013460" * 3 + " plain", "plain text"]
    assert unicodedata.category("\U00013460") == "Cn" or unicodedata.unidata_version >= "16"
    fast = ByteLevelBPE(trained)
    assert fast.count(texts).tolist() == [len(e) for e in library_ids(trained, texts)]
    assert fast.encode(texts)[0].tolist() == [i for e in library_ids(trained, texts) for i in e]
