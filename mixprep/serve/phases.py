"""Record -> token ids per training phase, with MiniMind's supervision token for token.

Place in the flow: `dataset` reads one JSON record through the offset index and
hands it here; this module returns numpy arrays (int64) that the dataset turns into
tensors. Nothing here imports torch, so it is testable and reusable on its own.

Phases, L = max_length:
- pretrain: ids = [bos] + text tokens[:L-2] + [eos], right-padded; X = ids[:-1],
  Y = ids[1:], loss_mask = Y is not padding, decided *by position* so a tokenizer whose
  pad id equals its eos id (GPT-2) still trains on eos.
- sft: the chat template renders the conversation; ids are the first L tokens, padded;
  loss covers each assistant turn from after its header (`<|im_start|>assistant\\n`)
  through its end marker (`<|im_end|>\\n`), found in token space exactly like
  MiniMind's `generate_labels`; truncation may cut inside a turn.
- dpo: the same for chosen and rejected -> x_/y_/mask_ for each.
- ppo / rlaif: the prompt rendered with the generation prompt, left-padded to L,
  keeping the end of a too-long prompt.

Tokenizing goes through `tokenizer.TokenizerAdapter` (prefix encoding, chat markers).
"""
from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from mixprep.errors import ConfigError, RecordError
from mixprep.serve.tokenizer import ChatMarkers, TokenizerAdapter

log = logging.getLogger(__name__)


Phase = Literal["pretrain", "sft", "dpo", "ppo", "rlaif"]
PHASES: tuple[str, ...] = ("pretrain", "sft", "dpo", "ppo", "rlaif")
IGNORE_INDEX = -100

# MiniMind's pre_processing_chat pool, kept verbatim so seeded runs see the same prompts.
SYSTEM_PROMPTS = (
    "你是一个知识丰富的AI，尽力为用户提供准确的信息。",
    "你是minimind，一个小巧但有用的语言模型。",
    "你是一个专业的AI助手，请提供有价值的回答。",
    "你是minimind，请尽力帮助用户解决问题。",
    "你是一个可靠的AI，请给出准确的回答。",
    "You are a helpful AI assistant.",
    "You are minimind, a lightweight intelligent assistant.",
    "You are a friendly chatbot. Please answer the user's questions carefully.",
    "You are a knowledgeable AI. Try your best to provide accurate information.",
    "You are minimind, a small but useful language model.",
)
EMPTY_THINK = "<think>\n\n</think>\n\n"


@dataclass(frozen=True)
class PhaseOptions:
    """How records become examples; one frozen value shared by every worker."""

    max_length: int = 512
    seed: int = 42
    random_system_prompt: bool = False  # MiniMind: 20% of chats without one get a random system prompt
    add_system_ratio: float = 0.2
    strip_empty_think: bool = False  # MiniMind: remove `<think>\n\n</think>\n\n` 80% of the time
    keep_empty_think_ratio: float = 0.2
    return_labels: bool = False  # MiniMind's newer (input_ids, labels) form, -100 where unsupervised
    text_field: str = "text"


def check_phase(phase: str) -> str:
    if phase not in PHASES:
        msg = f"unknown phase {phase!r}; valid phases: {', '.join(PHASES)}"
        raise ConfigError(msg)
    return phase


def check_options(phase: str, options: PhaseOptions) -> None:
    if options.max_length < 3:
        msg = f"max_length={options.max_length} is too small: bos + 1 token + eos needs >= 3"
        raise ConfigError(msg)
    if options.return_labels and phase not in ("pretrain", "sft"):
        msg = f"return_labels=True applies to phases pretrain and sft, not {phase!r}"
        raise ConfigError(msg)


# --------------------------------------------------------------------------- records


def _field(record: dict, name: str) -> Any:
    if name not in record:
        msg = f"missing field {name!r} (record has: {', '.join(sorted(record)) or 'no fields'})"
        raise RecordError(msg)
    return record[name]


def _messages(value: Any, field: str) -> list[dict]:
    """Validate a message list; returns plain {"role", "content", ...} dicts."""
    if not isinstance(value, list) or not value:
        msg = f"field {field!r} must be a non-empty list of {{'role', 'content'}} messages, got {_describe(value)}"
        raise RecordError(msg)
    out = []
    for i, message in enumerate(value):
        if not isinstance(message, dict) or not isinstance(message.get("role"), str):
            msg = f"{field}[{i}] must be an object with a string 'role', got {_describe(message)}"
            raise RecordError(msg)
        content = message.get("content")
        if content is not None and not isinstance(content, str):
            msg = f"{field}[{i}].content must be a string, got {_describe(content)}"
            raise RecordError(msg)
        out.append(dict(message))
    return out


def _describe(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False, default=str)
    return f"{type(value).__name__} {text[:60]}{'...' if len(text) > 60 else ''}"


def _conversation(record: dict) -> list[dict]:
    field = "conversations" if "conversations" in record else "messages" if "messages" in record else None
    if field is None:
        msg = f"missing field 'conversations' (or 'messages'); record has: {', '.join(sorted(record)) or 'no fields'}"
        raise RecordError(msg)
    return _messages(record[field], field)


def _turns(value: Any, field: str, role: str) -> list[dict]:
    """A DPO/RL field given as a plain string becomes one message of `role`."""
    if isinstance(value, str):
        return [{"role": role, "content": value}]
    return _messages(value, field)


# --------------------------------------------------------------------------- randomness


def _rng(options: PhaseOptions, index: int) -> np.random.Generator:
    # Seeded by (seed, index) only: the same sample in any worker, any epoch order.
    return np.random.default_rng([options.seed, index])


def _maybe_add_system(messages: list[dict], options: PhaseOptions, rng: np.random.Generator) -> list[dict]:
    """MiniMind's pre_processing_chat: tool-use chats stay intact."""
    if not options.random_system_prompt or any(m.get("tools") for m in messages):
        return messages
    if messages[0].get("role") != "system" and rng.random() < options.add_system_ratio:
        prompt = SYSTEM_PROMPTS[int(rng.integers(len(SYSTEM_PROMPTS)))]
        return [{"role": "system", "content": prompt}] + messages
    return messages


def _maybe_strip_think(text: str, options: PhaseOptions, rng: np.random.Generator) -> str:
    """MiniMind's post_processing_chat: drop empty think blocks, keeping some for robustness."""
    if options.strip_empty_think and EMPTY_THINK in text and rng.random() > options.keep_empty_think_ratio:
        return text.replace(EMPTY_THINK, "")
    return text


# --------------------------------------------------------------------------- phases


def pretrain_ids(text: str, tok: TokenizerAdapter, max_length: int) -> tuple[np.ndarray, int]:
    """bos + text[:L-2] + eos, right-padded to L; returns (ids, number of real tokens)."""
    special = tok.special
    bos = tok.require_bos()
    body = tok.encode(text, max_length - 2)
    ids = np.full(max_length, special.pad, dtype=np.int64)
    ids[0] = bos
    ids[1 : 1 + len(body)] = body
    ids[1 + len(body)] = special.eos
    return ids, len(body) + 2


def assistant_mask(ids: Sequence[int], markers: ChatMarkers) -> np.ndarray:
    """MiniMind's generate_labels as a mask: after each header, through the end marker.

    A turn with no end marker (cut by truncation) is supervised to the end of `ids`.
    """
    n = len(ids)
    header, end = list(markers.header), list(markers.end)
    mask = np.zeros(n, dtype=bool)
    ids = list(ids)
    i = 0
    while i < n:
        if ids[i : i + len(header)] == header:
            start = i + len(header)
            stop = _find(ids, end, start)
            mask[start : min(stop + len(end), n)] = True
            i = stop + len(end) if stop < n else n
        else:
            i += 1
    return mask


def _find(ids: list[int], needle: list[int], start: int) -> int:
    """First position >= start where `needle` begins, else len(ids)."""
    first = needle[0]
    k = start
    while True:
        try:
            k = ids.index(first, k)
        except ValueError:
            return len(ids)
        if ids[k : k + len(needle)] == needle:
            return k
        k += 1


def chat_ids(text: str, tok: TokenizerAdapter, max_length: int) -> tuple[np.ndarray, np.ndarray]:
    """A rendered chat -> (ids padded to L, supervision mask over ids)."""
    body = tok.encode(text, max_length)
    ids = np.full(max_length, tok.special.pad, dtype=np.int64)
    ids[: len(body)] = body
    padded = body + [tok.special.pad] * (max_length - len(body))
    return ids, assistant_mask(padded, tok.markers)


def shifted(ids: np.ndarray, supervised: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(X, Y, loss_mask) = (ids[:-1], ids[1:], supervised[1:])."""
    return ids[:-1], ids[1:], supervised[1:].astype(np.int64)


def labelled(ids: np.ndarray, supervised: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """MiniMind's newer (input_ids, labels) form; the model shifts."""
    return ids, np.where(supervised, ids, IGNORE_INDEX)


def pretrain_example(record: dict, tok: TokenizerAdapter, options: PhaseOptions, index: int) -> tuple:
    text = _field(record, options.text_field)
    if not isinstance(text, str):
        msg = f"field {options.text_field!r} must be a string, got {_describe(text)}"
        raise RecordError(msg)
    ids, real = pretrain_ids(text, tok, options.max_length)
    supervised = np.arange(options.max_length) < real
    return labelled(ids, supervised) if options.return_labels else shifted(ids, supervised)


def sft_example(record: dict, tok: TokenizerAdapter, options: PhaseOptions, index: int) -> tuple:
    rng = _rng(options, index)
    messages = _maybe_add_system(_conversation(record), options, rng)
    text = _maybe_strip_think(tok.render(messages, add_generation_prompt=False), options, rng)
    ids, supervised = chat_ids(text, tok, options.max_length)
    return labelled(ids, supervised) if options.return_labels else shifted(ids, supervised)


def dpo_pair(record: dict) -> tuple[list[dict], list[dict]]:
    """Both DPO forms -> (chosen conversation, rejected conversation)."""
    chosen, rejected = _field(record, "chosen"), _field(record, "rejected")
    if "prompt" in record:
        prompt = _turns(record["prompt"], "prompt", "user")
        return prompt + _turns(chosen, "chosen", "assistant"), prompt + _turns(rejected, "rejected", "assistant")
    if isinstance(chosen, str) or isinstance(rejected, str):
        msg = (
            "string 'chosen'/'rejected' need a 'prompt' field; "
            "accepted: {'prompt', 'chosen', 'rejected'} or {'chosen': [messages], 'rejected': [messages]}"
        )
        raise RecordError(msg)
    return _messages(chosen, "chosen"), _messages(rejected, "rejected")


def dpo_example(record: dict, tok: TokenizerAdapter, options: PhaseOptions, index: int) -> dict:
    rng = _rng(options, index)
    out = {}
    for name, messages in zip(("chosen", "rejected"), dpo_pair(record), strict=True):
        text = _maybe_strip_think(tok.render(messages, add_generation_prompt=False), options, rng)
        ids, supervised = chat_ids(text, tok, options.max_length)
        out[f"x_{name}"], out[f"y_{name}"], out[f"mask_{name}"] = shifted(ids, supervised)
    return out


def rl_messages(record: dict) -> list[dict]:
    """{"prompt"} or {"conversations"}; a trailing assistant turn is the answer slot, dropped."""
    if "prompt" in record:
        return _turns(record["prompt"], "prompt", "user")
    messages = _conversation(record)
    if messages[-1].get("role") == "assistant":
        messages = messages[:-1]
    if not messages:
        msg = "conversation holds only an assistant turn; an RL prompt needs a user turn"
        raise RecordError(msg)
    return messages


def rl_example(record: dict, tok: TokenizerAdapter, options: PhaseOptions, index: int) -> dict:
    rng = _rng(options, index)
    messages = _maybe_add_system(rl_messages(record), options, rng)
    prompt = tok.render(messages, add_generation_prompt=True)
    body = tok.encode(prompt)[-options.max_length :]  # keep the end: the question and generation prompt
    ids = np.full(options.max_length, tok.special.pad, dtype=np.int64)
    attention = np.zeros(options.max_length, dtype=np.int64)
    ids[options.max_length - len(body) :] = body
    attention[options.max_length - len(body) :] = 1
    answer = record.get("answer")
    return {
        "input_ids": ids,
        "attention_mask": attention,
        "prompt": prompt,
        "answer": answer if isinstance(answer, str) else "",
    }


Example = Callable[[dict, TokenizerAdapter, PhaseOptions, int], Any]
BUILDERS: dict[str, Example] = {
    "pretrain": pretrain_example,
    "sft": sft_example,
    "dpo": dpo_example,
    "ppo": rl_example,
    "rlaif": rl_example,
}
