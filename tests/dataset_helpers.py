"""Text generators, shared data and MiniMind reference implementations for the dataset tests.

The `minimind_*` functions restate MiniMind's `lm_dataset.py` semantics as plainly as
possible (tokenize the whole text, then truncate; find assistant spans with
`generate_labels`), so the tests compare mixprep against them token for token.
"""
from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
SHARED_TOKENIZERS = SHARED_DATA / "tokenizers"

WORDS = (
    "the of and to in is was he for it with as his on be at by I had not are but from or have an they which "
    "one you were all we her she there would their been has when who will more no if out so said what up its "
    "about into than them can only other new some could time these two may then do first any my now such like "
    "over our even most made after also did many before must through back years where much your way well down "
    "Genesis chapter verse Lord heaven earth light darkness waters firmament Elizabeth Darcy Bennet Netherfield"
).split()
ODD_PIECES = (
    "  ", "\n", "\n\n", "\t", "   \n", "42", "3.14159", "1,000,000", "don't", "it's", "we'll", "—", "“quoted”",
    "naïve", "café", "日本語のテキスト", "中文字符", "😀🎉", "Ωμέγα", "<|im_end|>", "<|endoftext|>", "<|im_start|>",
    "<|im_st", "x" * 90, " " * 40, "😀" * 5, "\r\n", "ÿþ", "\u00a0", "e\u0301",
)


def synthetic_text(rng: np.random.Generator, n_words: int, odd: float = 0.05) -> str:
    """English-like words with a sprinkling of whitespace runs, digits, Unicode and specials."""
    parts = []
    for _ in range(n_words):
        if rng.random() < odd:
            parts.append(ODD_PIECES[int(rng.integers(len(ODD_PIECES)))])
        else:
            parts.append(WORDS[int(rng.integers(len(WORDS)))])
        parts.append(" " if rng.random() < 0.9 else ".\n")
    return "".join(parts)


def shared_tokenizer(name: str):
    if not (SHARED_TOKENIZERS / name).is_dir():
        pytest.skip(f"{SHARED_TOKENIZERS / name} is absent (real-data check)")
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(SHARED_TOKENIZERS / name))


def shared_records(name: str, limit: int) -> list[dict]:
    path = SHARED_DATA / f"{name}.jsonl"
    if not path.is_file():
        pytest.skip(f"{path} is absent (real-data check)")
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in itertools.islice(f, limit)]


# ----------------------------------------------------------------- MiniMind reference


def minimind_pretrain(tok, text: str, max_length: int) -> tuple[list[int], list[int]]:
    """MiniMind PretrainDataset: (input_ids, labels) with -100 on padding positions."""
    tokens = tok(str(text), add_special_tokens=False, max_length=max_length - 2, truncation=True).input_ids
    tokens = [tok.bos_token_id] + tokens + [tok.eos_token_id]
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    input_ids = tokens + [pad] * (max_length - len(tokens))
    labels = [t if j < len(tokens) else -100 for j, t in enumerate(input_ids)]
    return input_ids, labels


def minimind_generate_labels(input_ids: list[int], bos_id: list[int], eos_id: list[int], max_length: int) -> list[int]:
    """MiniMind SFTDataset.generate_labels, verbatim in behaviour."""
    labels = [-100] * len(input_ids)
    i = 0
    while i < len(input_ids):
        if input_ids[i : i + len(bos_id)] == bos_id:
            start = i + len(bos_id)
            end = start
            while end < len(input_ids):
                if input_ids[end : end + len(eos_id)] == eos_id:
                    break
                end += 1
            for j in range(start, min(end + len(eos_id), max_length)):
                labels[j] = input_ids[j]
            i = end + len(eos_id) if end < len(input_ids) else len(input_ids)
        else:
            i += 1
    return labels


def minimind_markers(tok, header_start: str | None = None) -> tuple[list[int], list[int]]:
    start = header_start if header_start is not None else tok.bos_token
    bos_id = tok(f"{start}assistant\n", add_special_tokens=False).input_ids
    eos_id = tok(f"{tok.eos_token}\n", add_special_tokens=False).input_ids
    return bos_id, eos_id


def minimind_chat(tok, text: str, max_length: int, header_start: str | None = None) -> tuple[list[int], list[int]]:
    """Tokenize a rendered chat whole, truncate, pad, label like MiniMind SFT/DPO."""
    input_ids = tok(text, add_special_tokens=False).input_ids[:max_length]
    input_ids += [tok.pad_token_id] * (max_length - len(input_ids))
    bos_id, eos_id = minimind_markers(tok, header_start)
    return input_ids, minimind_generate_labels(input_ids, bos_id, eos_id, max_length)


def minimind_sft(tok, conversations: list[dict], max_length: int, header_start: str | None = None):
    prompt = tok.apply_chat_template(conversations, tokenize=False, add_generation_prompt=False)
    return minimind_chat(tok, prompt, max_length, header_start)


def minimind_rl(tok, messages: list[dict], max_length: int) -> tuple[str, list[int], list[int]]:
    """Prompt with the generation prompt, left-truncated and left-padded (GRPO/PPO style)."""
    prompt = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    ids = tok(prompt, add_special_tokens=False).input_ids[-max_length:]
    pad = [tok.pad_token_id] * (max_length - len(ids))
    return prompt, pad + ids, [0] * len(pad) + [1] * len(ids)


def as_triple(input_ids: list[int], labels: list[int]) -> list[list[int]]:
    """MiniMind's older (X, Y, loss_mask) form of the same supervision."""
    return [input_ids[:-1], input_ids[1:], [int(x != -100) for x in labels[1:]]]
