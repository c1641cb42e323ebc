"""The few things phases need from a Hugging Face tokenizer, checked once and cached.

`TokenizerAdapter` gives special ids, the chat template's assistant markers and a
prefix encoder: a pretrain sample needs only its first `max_length - 2` tokens, so
`encode` pre-tokenizes lazily from the start of the text and stops once it has
enough, applying BPE through a per-process piece cache. The ids are identical to
tokenizing the whole text and truncating; tokenizers whose pipeline it does not
recognise fall back to whole-text encoding.
"""
from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from itertools import chain
from typing import Any

from mixprep.errors import ConfigError

log = logging.getLogger(__name__)


# GPT-2's pre-tokenizer regex, which ByteLevel(use_regex=True) applies.
GPT2_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
# The same regex for ASCII-only text in stdlib `re` (faster than `regex`): \p{L} is
# [A-Za-z], \p{N} is [0-9], and \s is spelled out because `re`'s \s also takes \x1c-\x1f.
_WS, _NOT_WS = r"[\t\n\x0b\x0c\r ]", r"[^\t\n\x0b\x0c\r ]"
GPT2_ASCII_PATTERN = (
    rf"'s|'t|'re|'ve|'m|'ll|'d| ?[A-Za-z]+| ?[0-9]+| ?[^\t\n\x0b\x0c\r A-Za-z0-9]+|{_WS}+(?!{_NOT_WS})|{_WS}+"
)
_PIECE_CACHE_LIMIT = 1 << 18


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
