"""Record -> token ids per training phase, with MiniMind's supervision token for token.

Place in the flow: `dataset.py` reads one JSON record through the offset index and
hands it here; this module returns numpy arrays (int64) that the dataset turns into
tensors. Nothing here imports torch, so it is testable and reusable on its own.

Phases (DESIGN §6), L = max_length:
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

Speed: a pretrain sample needs only the first L-2 tokens, so `TokenizerAdapter.encode`
pre-tokenizes lazily from the start of the text and stops once it has enough,
applying BPE through a per-process piece cache. The ids are identical to tokenizing
the whole text and truncating (tests check this on long documents); tokenizers whose
pipeline it does not recognise fall back to whole-text encoding.
"""
from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import chain
from typing import Any, Literal

import numpy as np

from mixprep.errors import ConfigError, RecordError

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
# GPT-2's pre-tokenizer regex, which ByteLevel(use_regex=True) applies.
GPT2_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
# The same regex for ASCII-only text in stdlib `re` (faster than `regex`): \p{L} is
# [A-Za-z], \p{N} is [0-9], and \s is spelled out because `re`'s \s also takes \x1c-\x1f.
_WS, _NOT_WS = r"[\t\n\x0b\x0c\r ]", r"[^\t\n\x0b\x0c\r ]"
GPT2_ASCII_PATTERN = (
    rf"'s|'t|'re|'ve|'m|'ll|'d| ?[A-Za-z]+| ?[0-9]+| ?[^\t\n\x0b\x0c\r A-Za-z0-9]+|{_WS}+(?!{_NOT_WS})|{_WS}+"
)
_PIECE_CACHE_LIMIT = 1 << 18


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


# --------------------------------------------------------------------------- tokenizer


@dataclass(frozen=True)
class SpecialIds:
    bos: int
    eos: int
    pad: int


@dataclass(frozen=True)
class ChatMarkers:
    """Token ids that open (`<|im_start|>assistant\\n`) and close (`<|im_end|>\\n`) an assistant turn."""

    header: tuple[int, ...]
    end: tuple[int, ...]


class _PieceEncoder:
    """Exact byte-level BPE of a text prefix: lazy pre-tokenization + a piece -> ids cache.

    Mirrors the `tokenizers` pipeline (added tokens split out first, leftmost-longest;
    then the pre-tokenizer regex on each segment; then BPE per piece). Only built for
    pipelines it recognises; see `_PieceEncoder.for_backend`.
    """

    def __init__(self, backend: Any, pattern: str, added: dict[str, int]) -> None:
        import regex

        self._model = backend.model
        self._unicode_pattern = regex.compile(pattern)
        self._ascii_pattern = re.compile(GPT2_ASCII_PATTERN) if pattern == GPT2_PATTERN else self._unicode_pattern
        self._pattern = self._unicode_pattern
        self._added = added
        longest_first = sorted(added, key=len, reverse=True)
        self._added_re = re.compile("|".join(map(re.escape, longest_first))) if added else None
        self._cache: dict[str, tuple[int, ...]] = {}
        self._byte_chars = _bytes_to_unicode_table()
        # Running chars-per-token of this corpus, to size the first window close to enough.
        self._chars_per_token = 3.0

    @classmethod
    def for_backend(cls, backend: Any) -> _PieceEncoder | None:
        config = json.loads(backend.to_str())
        pattern = _byte_level_pattern(config)
        model = config.get("model") or {}
        if pattern is None or config.get("normalizer") is not None:
            return None
        if model.get("type") != "BPE" or model.get("dropout") or model.get("byte_fallback"):
            return None
        if model.get("continuing_subword_prefix") or model.get("end_of_word_suffix"):
            return None
        added: dict[str, int] = {}
        for token in config.get("added_tokens") or []:
            if token.get("lstrip") or token.get("rstrip") or token.get("single_word"):
                return None
            added[token["content"]] = token["id"]
        return cls(backend, pattern, added)

    def encode(self, text: str, limit: int | None) -> list[int]:
        ids: list[int] = []
        pos = 0
        self._pattern = self._ascii_pattern if text.isascii() else self._unicode_pattern
        if self._added_re is not None:
            for match in self._added_re.finditer(text):
                self._encode_segment(text, pos, match.start(), ids, limit)
                if limit is not None and len(ids) >= limit:
                    return ids[:limit]
                ids.append(self._added[match.group()])
                pos = match.end()
        self._encode_segment(text, pos, len(text), ids, limit)
        return ids if limit is None else ids[:limit]

    def _encode_segment(self, text: str, start: int, end: int, ids: list[int], limit: int | None) -> None:
        window = 0
        while start < end and (limit is None or len(ids) < limit):
            # A short guess costs one more loop; a long one tokenizes text that truncation drops.
            guess = end - start if limit is None else int(self._chars_per_token * (limit - len(ids))) + 64
            window = max(window, guess)
            stop = min(end, start + window)
            pieces = self._pattern.findall(text, start, stop)
            if sum(map(len, pieces)) != stop - start:
                msg = "pre-tokenizer regex does not cover the text"  # internal: caller falls back
                raise _NotCovered(msg)
            if stop < end:
                # The last pieces before an artificial end may differ from the full text's
                # (lookahead such as `\s+(?!\S)`); keep only the ones that cannot.
                pieces = pieces[:-2]
                if not pieces:
                    window *= 2
                    continue
            before = len(ids)
            self._append_pieces(pieces, ids)
            consumed = sum(map(len, pieces))
            start += consumed
            if len(ids) > before:
                self._chars_per_token = 0.9 * self._chars_per_token + 0.1 * 1.1 * consumed / (len(ids) - before)

    def _append_pieces(self, pieces: list[str], ids: list[int]) -> None:
        cache = self._cache
        parts = list(map(cache.get, pieces))
        if None in parts:
            if len(cache) >= _PIECE_CACHE_LIMIT:
                cache.clear()
            for k, piece in enumerate(pieces):
                if parts[k] is None:
                    parts[k] = cache[piece] = self._bpe(piece)
        ids.extend(chain.from_iterable(parts))

    def _bpe(self, piece: str) -> tuple[int, ...]:
        mapped = piece.encode("utf-8").decode("latin-1").translate(self._byte_chars)
        return tuple(token.id for token in self._model.tokenize(mapped))


class _NotCovered(Exception):
    """The regex left characters unmatched; whole-text encoding takes over."""


def _byte_level_pattern(config: dict) -> str | None:
    """The split regex of a byte-level pre-tokenizer we can mirror exactly, else None."""
    pre = config.get("pre_tokenizer") or {}
    if pre.get("type") == "ByteLevel":
        if pre.get("add_prefix_space") or not pre.get("use_regex", True):
            return None
        return GPT2_PATTERN
    if pre.get("type") == "Sequence":
        steps = pre.get("pretokenizers") or []
        if len(steps) != 2:
            return None
        split, byte_level = steps
        is_split = split.get("type") == "Split" and split.get("behavior") == "Isolated" and not split.get("invert")
        is_plain_bytes = (
            byte_level.get("type") == "ByteLevel"
            and not byte_level.get("add_prefix_space")
            and not byte_level.get("use_regex", True)
        )
        if is_split and is_plain_bytes and "Regex" in (split.get("pattern") or {}):
            return split["pattern"]["Regex"]
    return None


def _bytes_to_unicode_table() -> dict[int, str]:
    """GPT-2's byte -> printable char map, as a str.translate table over latin-1 code points."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    printable += list(range(ord("®"), ord("ÿ") + 1))
    table: dict[int, str] = {}
    extra = 0
    for byte in range(256):
        if byte in printable:
            table[byte] = chr(byte)
        else:
            table[byte] = chr(256 + extra)
            extra += 1
    return table


class TokenizerAdapter:
    """The few things phases need from a Hugging Face tokenizer, checked once, cached."""

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer
        self.name = getattr(tokenizer, "name_or_path", "") or type(tokenizer).__name__
        self._backend = getattr(tokenizer, "backend_tokenizer", None)
        self._pieces = _PieceEncoder.for_backend(self._backend) if self._backend is not None else None
        self._markers: ChatMarkers | None = None
        self.special = self._special_ids()

    def _special_ids(self) -> SpecialIds:
        tok = self.tokenizer
        bos, eos, pad = tok.bos_token_id, tok.eos_token_id, tok.pad_token_id
        if eos is None:
            msg = f"tokenizer {self.name!r} has no eos token; hint: set tokenizer.eos_token before building the dataset"
            raise ConfigError(msg)
        if pad is None:
            # Padding is masked by position, so its id never reaches the loss: eos is a safe filler.
            log.info("tokenizer %r has no pad token; padding with eos id %d", self.name, eos)
            pad = eos
        return SpecialIds(bos=-1 if bos is None else bos, eos=eos, pad=pad)

    def require_bos(self) -> int:
        if self.special.bos < 0:
            msg = (
                f"tokenizer {self.name!r} has no bos token, which phase 'pretrain' puts before every text; "
                "hint: set tokenizer.bos_token (e.g. tokenizer.bos_token = tokenizer.eos_token, as GPT-2 does)"
            )
            raise ConfigError(msg)
        return self.special.bos

    def encode(self, text: str, limit: int | None = None) -> list[int]:
        """The first `limit` ids of `text` tokenized whole, without added bos/eos."""
        if self._pieces is not None:
            try:
                return self._pieces.encode(text, limit)
            except _NotCovered:
                pass
        if self._backend is not None:
            ids = self._backend.encode(text, add_special_tokens=False).ids
        else:
            ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        return ids if limit is None else ids[:limit]

    def render(self, messages: list[dict], *, add_generation_prompt: bool) -> str:
        if not getattr(self.tokenizer, "chat_template", None):
            msg = (
                f"tokenizer {self.name!r} has no chat template, which phases sft/dpo/ppo/rlaif need; "
                "fix: set tokenizer.chat_template (a ChatML Jinja template) or train one with "
                "`python -m mixprep tokenizer train`"
            )
            raise ConfigError(msg)
        return self.tokenizer.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=add_generation_prompt
        )

    @property
    def markers(self) -> ChatMarkers:
        if self._markers is None:
            self._markers = self._find_markers()
        return self._markers

    def _find_markers(self) -> ChatMarkers:
        """Derive the assistant header and end marker from the template itself.

        header: the generation prompt up to the newline(s) after the role name
        (`<|im_start|>assistant\\n`; a default system prompt or a `<think>` stub in the
        generation prompt does not leak in). end: what the template writes right after
        an assistant message's content (`<|im_end|>\\n`).
        """
        user = [{"role": "user", "content": "mixprep probe question"}]
        answer = "mixprep probe answer"
        base = self.render(user, add_generation_prompt=False)
        prompted = self.render(user, add_generation_prompt=True)
        generation = prompted[len(base):] if prompted.startswith(base) else ""
        header = re.match(r"(?s).*?assistant[^\n]*\n*", generation)
        full = self.render(user + [{"role": "assistant", "content": answer}], add_generation_prompt=False)
        at = full.rfind(answer)
        end = full[at + len(answer):] if at >= 0 else ""
        if header is None or not end:
            msg = (
                f"cannot find the assistant header / end-of-turn marker in the chat template of {self.name!r} "
                f"(generation prompt {generation!r}, text after an answer {end!r}); "
                "hint: use a ChatML-style template with an 'assistant' generation prompt"
            )
            raise ConfigError(msg)
        return ChatMarkers(
            header=tuple(self.encode(header.group())),
            end=tuple(self.encode(end)),
        )


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
    for name, messages in zip(("chosen", "rejected"), dpo_pair(record)):
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
