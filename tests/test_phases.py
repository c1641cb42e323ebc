"""Phases against MiniMind's semantics, token for token, plus the fast prefix encoder."""
from __future__ import annotations

import numpy as np
import pytest
from dataset_helpers import (
    ODD_PIECES,
    as_triple,
    minimind_chat,
    minimind_pretrain,
    minimind_rl,
    minimind_sft,
    shared_records,
    shared_tokenizer,
    synthetic_text,
)
from hypothesis import given, settings
from hypothesis import strategies as st

from mixprep.errors import ConfigError, RecordError
from mixprep.serve.phases import (
    EMPTY_THINK,
    SYSTEM_PROMPTS,
    PhaseOptions,
    check_options,
    check_phase,
    dpo_example,
    pretrain_example,
    rl_example,
    sft_example,
)
from mixprep.serve.tokenizer import TokenizerAdapter


def lists(*arrays) -> list[list[int]]:
    return [np.asarray(a).tolist() for a in arrays]


@pytest.fixture(scope="module")
def adapter(chatml):
    return TokenizerAdapter(chatml)


def test_fast_encoder_is_used_for_byte_level_bpe(adapter):
    assert adapter._pieces is not None


@pytest.mark.slow
@settings(max_examples=200, deadline=None)
@given(
    parts=st.lists(st.one_of(st.sampled_from(ODD_PIECES), st.text(max_size=12)), max_size=60),
    limit=st.one_of(st.none(), st.integers(1, 80)),
)
def test_prefix_encoding_equals_whole_text_tokenization(chatml, parts, limit):
    adapter = TokenizerAdapter(chatml)
    text = "".join(parts)
    whole = chatml(text, add_special_tokens=False).input_ids
    assert adapter.encode(text, limit) == (whole if limit is None else whole[:limit])


@pytest.mark.parametrize("max_length", [3, 16, 512, 2048])
def test_pretrain_on_long_documents_equals_whole_text_then_truncate(chatml, adapter, max_length):
    rng = np.random.default_rng(max_length)
    options = PhaseOptions(max_length=max_length)
    for n_words in (2, 50, 3000, 6000):
        text = synthetic_text(rng, n_words)
        ids, labels = minimind_pretrain(chatml, text, max_length)
        assert lists(*pretrain_example({"text": text}, adapter, options, 0)) == as_triple(ids, labels)
        labelled = PhaseOptions(max_length=max_length, return_labels=True)
        assert lists(*pretrain_example({"text": text}, adapter, labelled, 0)) == [ids, labels]


def test_pretrain_shapes_and_bos_eos(adapter):
    x, y, mask = pretrain_example({"text": "the Lord"}, adapter, PhaseOptions(max_length=8), 0)
    assert x.dtype == y.dtype == mask.dtype == np.int64 and x.shape == (7,)
    assert x[0] == 1 and 2 in y.tolist()
    eos_at = y.tolist().index(2)
    assert mask.tolist() == [1] * (eos_at + 1) + [0] * (7 - eos_at - 1)


def test_pad_equal_to_eos_still_trains_on_eos(chatml_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(chatml_dir))
    tok.pad_token = tok.eos_token  # GPT-2 practice
    adapter = TokenizerAdapter(tok)
    x, y, mask = pretrain_example({"text": "the"}, adapter, PhaseOptions(max_length=10), 0)
    eos_positions = [j for j, t in enumerate(y.tolist()) if t == 2]
    assert len(eos_positions) > 1  # eos and padding share an id
    assert mask[eos_positions[0]] == 1 and mask[eos_positions[1:]].sum() == 0


def test_missing_pad_falls_back_to_eos_and_missing_bos_or_eos_is_an_error(chatml_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(chatml_dir))
    tok.pad_token = None
    assert TokenizerAdapter(tok).special.pad == 2
    tok.bos_token = None
    with pytest.raises(ConfigError, match=r"has no bos token.*hint: set tokenizer\.bos_token"):
        pretrain_example({"text": "a"}, TokenizerAdapter(tok), PhaseOptions(), 0)
    tok.eos_token = None
    with pytest.raises(ConfigError, match=r"has no eos token; hint: set tokenizer\.eos_token"):
        TokenizerAdapter(tok)


def conversation(rng: np.random.Generator, turns: int, words: int = 30) -> list[dict]:
    messages = [{"role": "system", "content": synthetic_text(rng, 5)}]
    for _ in range(turns):
        messages.append({"role": "user", "content": synthetic_text(rng, words, odd=0.0)})
        messages.append({"role": "assistant", "content": synthetic_text(rng, words, odd=0.0)})
    return messages


@pytest.mark.parametrize("max_length", [512, 60, 75, 200])
def test_sft_multi_turn_matches_minimind(chatml, adapter, max_length):
    rng = np.random.default_rng(7)
    for turns in (1, 2, 4):
        messages = conversation(rng, turns)
        ids, labels = minimind_sft(chatml, messages, max_length)
        got = sft_example({"conversations": messages}, adapter, PhaseOptions(max_length=max_length), 0)
        assert lists(*got) == as_triple(ids, labels)
        got = sft_example({"messages": messages}, adapter, PhaseOptions(max_length=max_length, return_labels=True), 0)
        assert lists(*got) == [ids, labels]


def test_sft_supervises_content_end_marker_and_newline_only(chatml, adapter):
    messages = [{"role": "user", "content": "who"}, {"role": "assistant", "content": "the Lord"}]
    x, y, mask = sft_example({"conversations": messages}, adapter, PhaseOptions(max_length=64), 0)
    assert chatml.decode(y[mask.astype(bool)]) == "the Lord<|im_end|>\n"


def test_sft_truncation_inside_an_assistant_turn_supervises_to_the_end(chatml, adapter):
    messages = [{"role": "user", "content": "who"}, {"role": "assistant", "content": "the Lord " * 40}]
    full = chatml(chatml.apply_chat_template(messages, tokenize=False), add_special_tokens=False).input_ids
    max_length = len(full) - 20  # cut 20 tokens before the end marker
    ids, labels = minimind_sft(chatml, messages, max_length)
    x, y, mask = sft_example({"conversations": messages}, adapter, PhaseOptions(max_length=max_length), 0)
    assert lists(x, y, mask) == as_triple(ids, labels)
    assert mask[-1] == 1 and 2 not in y[mask.astype(bool)].tolist()


def test_dpo_both_input_forms_match_minimind(chatml, adapter):
    rng = np.random.default_rng(3)
    prompt, good, bad = (synthetic_text(rng, 20, odd=0.0) for _ in range(3))
    minimind_form = {
        "chosen": [{"role": "user", "content": prompt}, {"role": "assistant", "content": good}],
        "rejected": [{"role": "user", "content": prompt}, {"role": "assistant", "content": bad}],
    }
    string_form = {"prompt": prompt, "chosen": good, "rejected": bad}
    list_form = {"prompt": [{"role": "user", "content": prompt}], "chosen": good, "rejected": minimind_form["rejected"][1:]}
    for max_length in (256, 40):
        options = PhaseOptions(max_length=max_length)
        expected = {}
        for name in ("chosen", "rejected"):
            rendered = chatml.apply_chat_template(minimind_form[name], tokenize=False)
            x, y, mask = as_triple(*minimind_chat(chatml, rendered, max_length))
            expected.update({f"x_{name}": x, f"y_{name}": y, f"mask_{name}": mask})
        for record in (minimind_form, string_form, list_form):
            got = dpo_example(record, adapter, options, 0)
            assert {k: v.tolist() for k, v in got.items()} == expected


def test_rl_prompts_keep_their_end_and_pad_left(chatml, adapter):
    long_question = "the Lord said " * 80
    for record, messages in [
        ({"prompt": long_question}, [{"role": "user", "content": long_question}]),
        (
            {"conversations": [{"role": "user", "content": long_question}, {"role": "assistant", "content": ""}]},
            [{"role": "user", "content": long_question}],
        ),
        ({"prompt": "short?", "answer": "yes"}, [{"role": "user", "content": "short?"}]),
    ]:
        for max_length in (32, 512):
            prompt, ids, attention = minimind_rl(chatml, messages, max_length)
            got = rl_example(record, adapter, PhaseOptions(max_length=max_length), 0)
            assert got["prompt"] == prompt and prompt.endswith("<|im_start|>assistant\n")
            assert got["input_ids"].tolist() == ids and got["attention_mask"].tolist() == attention
            assert got["answer"] == record.get("answer", "")
    truncated = rl_example({"prompt": long_question}, adapter, PhaseOptions(max_length=32), 0)
    assert truncated["attention_mask"].sum() == 32
    assert chatml.decode(truncated["input_ids"]).endswith("<|im_end|>\n<|im_start|>assistant\n")


def test_random_system_prompt_is_seeded_by_seed_and_index(adapter):
    record = {"conversations": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}
    options = PhaseOptions(max_length=128, random_system_prompt=True, seed=5)
    runs = [[rl_example(record, adapter, options, i)["prompt"] for i in range(200)] for _ in range(2)]
    assert runs[0] == runs[1]
    with_system = [p for p in runs[0] if p.startswith("<|im_start|>system\n")]
    assert 15 < len(with_system) < 70  # ~20% of 200
    assert all(any(s in p for s in SYSTEM_PROMPTS) for p in with_system)
    other_seed = [rl_example(record, adapter, PhaseOptions(random_system_prompt=True, seed=6), i)["prompt"] for i in range(200)]
    assert other_seed != runs[0]
    off = [rl_example(record, adapter, PhaseOptions(), i)["prompt"] for i in range(50)]
    assert not any(p.startswith("<|im_start|>system") for p in off)


def test_strip_empty_think_removes_most_empty_blocks(chatml, adapter):
    record = {"conversations": [{"role": "user", "content": "q"}, {"role": "assistant", "content": EMPTY_THINK + "a"}]}
    options = PhaseOptions(max_length=64, strip_empty_think=True, return_labels=True)
    kept = 0
    for i in range(100):
        ids, _ = sft_example(record, adapter, options, i)
        kept += "<think>" in chatml.decode(ids)
    assert 5 < kept < 40  # MiniMind keeps ~20%
    ids, _ = sft_example(record, adapter, PhaseOptions(max_length=64, return_labels=True), 0)
    assert "<think>" in chatml.decode(ids)


QWEN_STYLE = (
    "{%- if messages[0]['role'] != 'system' %}{{- '<|im_start|>system\\nYou are a helpful assistant<|im_end|>\\n' }}{%- endif %}"
    "{%- for m in messages %}{{- '<|im_start|>' + m['role'] + '\\n' + m['content'] + '<|im_end|>\\n' }}{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)


def test_qwen_style_template_without_bos_and_with_default_system_prompt(chatml_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(chatml_dir))
    tok.bos_token = None
    tok.chat_template = QWEN_STYLE
    adapter = TokenizerAdapter(tok)
    rng = np.random.default_rng(11)
    messages = conversation(rng, 3)[1:]  # no system turn: the template adds its default
    ids, labels = minimind_sft(tok, messages, 1024, header_start="<|im_start|>")
    got = sft_example({"conversations": messages}, adapter, PhaseOptions(max_length=1024), 0)
    assert lists(*got) == as_triple(ids, labels)
    x, y, mask = got
    supervised = tok.decode(y[mask.astype(bool)])
    assert "helpful assistant" not in supervised and supervised.count("<|im_end|>\n") == 3


def test_tokenizer_without_chat_template_names_the_fix(chatml_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(chatml_dir))
    tok.chat_template = None
    record = {"conversations": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}
    with pytest.raises(ConfigError, match=r"has no chat template.*fix: set tokenizer\.chat_template.*mixprep tokenizer train"):
        sft_example(record, TokenizerAdapter(tok), PhaseOptions(), 0)


@pytest.mark.parametrize(
    ("builder", "record", "message"),
    [
        (pretrain_example, {"txt": "a"}, r"missing field 'text' \(record has: txt\)"),
        (pretrain_example, {"text": 5}, r"field 'text' must be a string, got int 5"),
        (sft_example, {"text": "a"}, r"missing field 'conversations' \(or 'messages'\); record has: text"),
        (sft_example, {"conversations": []}, r"'conversations' must be a non-empty list"),
        (sft_example, {"conversations": [{"content": "a"}]}, r"conversations\[0\] must be an object with a string 'role'"),
        (sft_example, {"conversations": [{"role": "user", "content": 3}]}, r"conversations\[0\]\.content must be a string, got int 3"),
        (dpo_example, {"chosen": "a", "rejected": "b"}, r"string 'chosen'/'rejected' need a 'prompt' field"),
        (dpo_example, {"prompt": "p", "chosen": "a"}, r"missing field 'rejected'"),
        (rl_example, {"conversations": [{"role": "assistant", "content": "a"}]}, r"an RL prompt needs a user turn"),
    ],
)
def test_bad_records_say_what_is_missing(adapter, builder, record, message):
    with pytest.raises(RecordError, match=message):
        builder(record, adapter, PhaseOptions(), 0)


def test_phase_and_option_checks_list_what_is_valid():
    with pytest.raises(ConfigError, match=r"unknown phase 'grpo'; valid phases: pretrain, sft, dpo, ppo, rlaif"):
        check_phase("grpo")
    with pytest.raises(ConfigError, match=r"return_labels=True applies to phases pretrain and sft, not 'dpo'"):
        check_options("dpo", PhaseOptions(return_labels=True))
    with pytest.raises(ConfigError, match=r"max_length=2 is too small"):
        check_options("pretrain", PhaseOptions(max_length=2))


# ------------------------------------------------------------- real tokenizers + data


@pytest.mark.parametrize("name", ["minimind", "minimind-2025", "gpt2"])
def test_real_tokenizers_pretrain_match_minimind(name):
    tok = shared_tokenizer(name)
    adapter = TokenizerAdapter(tok)
    for file, limit in (("kjv", 60), ("austen", 30), ("fortunes", 200)):
        for record in shared_records(file, limit):
            ids, labels = minimind_pretrain(tok, record["text"], 512)
            assert lists(*pretrain_example(record, adapter, PhaseOptions(), 0)) == as_triple(ids, labels)


@pytest.mark.parametrize("name", ["minimind", "minimind-2025"])
def test_real_tokenizers_chat_phases_match_minimind(name):
    tok = shared_tokenizer(name)
    adapter = TokenizerAdapter(tok)
    for file in ("jargon_sft", "pyfaq_sft"):
        for record in shared_records(file, 80):
            for max_length in (512, 96):
                ids, labels = minimind_sft(tok, record["conversations"], max_length)
                got = sft_example(record, adapter, PhaseOptions(max_length=max_length), 0)
                assert lists(*got) == as_triple(ids, labels)
    for record in shared_records("champ_dpo", 30):
        got = dpo_example(record, adapter, PhaseOptions(), 0)
        chosen = [{"role": "user", "content": record["prompt"]}, {"role": "assistant", "content": record["chosen"]}]
        rendered = tok.apply_chat_template(chosen, tokenize=False)
        x, y, mask = as_triple(*minimind_chat(tok, rendered, 512))
        assert lists(got["x_chosen"], got["y_chosen"], got["mask_chosen"]) == [x, y, mask]
    for record in shared_records("quiz_rl", 40):
        prompt, ids, attention = minimind_rl(tok, [{"role": "user", "content": record["prompt"]}], 64)
        got = rl_example(record, adapter, PhaseOptions(max_length=64), 0)
        assert (got["prompt"], got["input_ids"].tolist(), got["attention_mask"].tolist()) == (prompt, ids, attention)
