"""train_tokenizer and `mixprep tokenizer train`: specials, template, offline loading."""
from __future__ import annotations

import json

import pytest
from helpers import write_jsonl

from mixprep.errors import ConfigError, RecordError, SourceError
from mixprep.train.tokenizer import CHATML_TEMPLATE, iter_jsonl_texts, main, train_tokenizer


def test_special_ids_and_roles(chatml):
    assert chatml.convert_tokens_to_ids(["<|endoftext|>", "<|im_start|>", "<|im_end|>"]) == [0, 1, 2]
    assert (chatml.pad_token_id, chatml.bos_token_id, chatml.eos_token_id) == (0, 1, 2)
    assert chatml.unk_token == "<|endoftext|>"
    assert len(chatml) == 700


def test_chatml_template_renders_minimind_style(chatml):
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "hello"},
    ]
    rendered = chatml.apply_chat_template(messages, tokenize=False)
    assert rendered == (
        "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n"
        "<|im_start|>assistant\nhello<|im_end|>\n"
    )
    prompt = chatml.apply_chat_template(messages[:2], tokenize=False, add_generation_prompt=True)
    assert prompt.endswith("<|im_start|>assistant\n")


def test_byte_level_round_trip_and_specials_stay_whole(chatml):
    text = "naïve café 日本語 😀\n\tx<|im_end|>"
    ids = chatml(text, add_special_tokens=False).input_ids
    assert chatml.decode(ids) == text
    assert ids[-1] == 2
    assert chatml("plain", add_special_tokens=True).input_ids == chatml("plain", add_special_tokens=False).input_ids


def test_saved_config_loads_offline_and_names_a_portable_class(chatml_dir):
    config = json.loads((chatml_dir / "tokenizer_config.json").read_text())
    assert config["tokenizer_class"] == "PreTrainedTokenizerFast"
    assert config["chat_template"] == CHATML_TEMPLATE
    assert (chatml_dir / "tokenizer.json").is_file()


def test_vocab_size_too_small_is_refused(tmp_path):
    with pytest.raises(ConfigError, match=r"vocab_size=100 is too small: a byte-level BPE needs >= 259"):
        train_tokenizer(["a"], vocab_size=100, out_dir=tmp_path)


def test_cli_trains_from_text_and_conversation_jsonl(tmp_path, capsys):
    from transformers import AutoTokenizer

    pretrain = write_jsonl(tmp_path / "p.jsonl", [{"text": "the quick brown fox " * 20}] * 5)
    sft = write_jsonl(
        tmp_path / "s.jsonl",
        [{"conversations": [{"role": "user", "content": "jumps over"}, {"role": "assistant", "content": "lazy dogs"}]}],
    )
    out = tmp_path / "tok"
    assert main(["train", str(pretrain), str(sft), "--vocab_size", "300", "--out", str(out)]) == 0
    assert "saved to" in capsys.readouterr().out
    tok = AutoTokenizer.from_pretrained(str(out))
    assert 259 < len(tok) <= 300  # a tiny corpus may run out of merges before 300
    assert tok.chat_template == CHATML_TEMPLATE


def test_iter_jsonl_texts_reads_every_text_field(tmp_path):
    path = write_jsonl(
        tmp_path / "mixed.jsonl",
        [
            {"text": "A"},
            {"prompt": "P", "chosen": "C", "rejected": [{"role": "assistant", "content": "R"}]},
            {"messages": [{"role": "user", "content": "M"}, {"role": "assistant", "content": None}]},
        ],
    )
    assert list(iter_jsonl_texts([path])) == ["A", "P", "C", "R", "M"]


def test_iter_jsonl_texts_errors_name_file_and_line(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "ok"}\n\n{"text": \n')
    with pytest.raises(RecordError, match=r"bad\.jsonl:3: invalid JSON"):
        list(iter_jsonl_texts([bad]))
    bad.write_text("[1, 2]\n")
    with pytest.raises(RecordError, match=r"bad\.jsonl:1: expected a JSON object, got list"):
        list(iter_jsonl_texts([bad]))
    with pytest.raises(SourceError, match=r"missing\.jsonl: cannot read"):
        list(iter_jsonl_texts([tmp_path / "missing.jsonl"]))
