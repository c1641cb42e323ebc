"""Token counts for the `min_tokens` / `max_tokens` filters (used by `rules`) and the scan's
token shares, and token ids for packed output (`build.packed`).

A tokenizer is named by a local path: a `tokenizer.json` file, or a folder holding one
(what `save_pretrained` writes, e.g. ../shared/data/tokenizers/minimind); such a folder
loads through the `tokenizers` library alone. A folder without `tokenizer.json` (a
slow, sentencepiece-only tokenizer) loads through `transformers.AutoTokenizer` with
`local_files_only=True`. Nothing is ever downloaded: a path that does not exist is a
ConfigError. Each tokenizer is loaded once per process and kept.

Counts exclude special tokens (no BOS/EOS): set `max_tokens` to the training length
minus the specials the trainer adds. Each batch is encoded in one call; GPT-2-style
byte-level BPE tokenizers go through `bytelevel` (the same ids, ~40x faster per core).
"""
from __future__ import annotations

import functools
import itertools
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from mixprep.errors import ConfigError
from mixprep.filters.bytelevel import ByteLevelBPE

logger = logging.getLogger(__name__)


TokenCounter = Callable[[list[str]], np.ndarray]
TokenEncoder = Callable[..., tuple[np.ndarray, np.ndarray]]
"""(texts: list of str or Arrow strings, lengths: the counts expected, or None) -> (every
text's ids back to back as int64, each text's number of ids)."""
DEFAULT_EOD = "<|endoftext|>"


@dataclass(frozen=True)
class LoadedTokenizer:
    json: Path | None
    """Its tokenizer.json; None for a sentencepiece-only folder (loaded by transformers)."""
    library: Any
    """A `tokenizers.Tokenizer`, or a transformers tokenizer when there is no tokenizer.json."""


@functools.lru_cache(maxsize=8)
def load_tokenizer(path: str) -> LoadedTokenizer:
    """The tokenizer at a local path, loaded once per process; a ConfigError says why not."""
    location = Path(path).expanduser()
    tokenizer_json = location if location.is_file() else location / "tokenizer.json"
    if tokenizer_json.is_file():
        from tokenizers import Tokenizer

        try:
            tokenizer = Tokenizer.from_file(str(tokenizer_json))
        except Exception as exc:  # the tokenizers library raises a bare Exception on a bad file
            msg = f"tokenizer {str(tokenizer_json)!r}: cannot be loaded ({exc}); expected a tokenizers JSON file"
            raise ConfigError(msg) from exc
        logger.debug("loaded tokenizer %s (vocab %d)", tokenizer_json, tokenizer.get_vocab_size())
        return LoadedTokenizer(tokenizer_json, tokenizer)
    if location.is_dir():
        from transformers import AutoTokenizer

        try:
            return LoadedTokenizer(None, AutoTokenizer.from_pretrained(str(location), local_files_only=True))
        except (OSError, ValueError) as exc:
            msg = f"tokenizer {str(location)!r}: cannot be loaded offline ({exc}); expected a folder written by save_pretrained"
            raise ConfigError(msg) from exc
    msg = (
        f"tokenizer {path!r}: no such file or folder (resolved to {location.resolve()}); "
        "expected a tokenizer.json file or a folder holding one (as save_pretrained writes); "
        "hint: tokenizers are never downloaded, save it locally first"
    )
    raise ConfigError(msg)


@functools.lru_cache(maxsize=8)
def _byte_level(path: str) -> ByteLevelBPE | None:
    """The compiled counter and encoder for a GPT-2-style byte-level BPE tokenizer (None for
    any other kind): one per tokenizer and process, so counting (scan) and encoding (packed
    writes) share its word cache."""
    loaded = load_tokenizer(path)
    if loaded.json is None or not ByteLevelBPE.supports(loaded.json):
        return None
    return ByteLevelBPE(loaded.json, loaded.library)


def _library_ids(path: str, texts: list[str]) -> list[list[int]]:
    """Each text's ids from the tokenizer library itself, without special tokens."""
    loaded = load_tokenizer(path)
    if loaded.json is None:
        return loaded.library(texts, add_special_tokens=False)["input_ids"]
    # encode_batch_fast skips character offsets, which ids do not need.
    encode = getattr(loaded.library, "encode_batch_fast", loaded.library.encode_batch)
    return [e.ids for e in encode(texts, add_special_tokens=False)]


@functools.lru_cache(maxsize=8)
def load_token_counter(path: str) -> TokenCounter:
    """Path -> function(texts) -> int64 token counts; cached per process."""
    fast = _byte_level(path)
    if fast is not None:
        return fast.count

    def count(texts: list[str]) -> np.ndarray:
        return np.fromiter((len(ids) for ids in _library_ids(path, texts)), dtype=np.int64, count=len(texts))

    return count


def token_counts(texts: pl.Series, path: str) -> pl.Series:
    """Token count per text (null text counts 0), the whole batch in one encode call."""
    counts = load_token_counter(path)(texts.fill_null("").to_list())
    return pl.Series(counts, dtype=pl.Int64)


@functools.lru_cache(maxsize=8)
def load_token_encoder(path: str) -> TokenEncoder:
    """Path -> function(texts, lengths=None) -> (ids, lengths), without special tokens (as counted)."""
    fast = _byte_level(path)
    if fast is not None:
        return fast.encode

    def encode(texts: Any, lengths: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        if not isinstance(texts, list):
            texts = [t or "" for t in texts.to_pylist()]  # Arrow strings
        rows = _library_ids(path, texts)
        found = np.fromiter((len(r) for r in rows), dtype=np.int64, count=len(rows))
        return np.fromiter(itertools.chain.from_iterable(rows), dtype=np.int64, count=int(found.sum())), found

    return encode


@functools.lru_cache(maxsize=8)
def tokenizer_facts(path: str) -> tuple[int, str | None]:
    """(vocabulary size with added tokens, eos_token from tokenizer_config.json or None)."""
    loaded = load_tokenizer(path)
    location = Path(path).expanduser()
    config_file = (location.parent if location.is_file() else location) / "tokenizer_config.json"
    eos = None
    if config_file.is_file():
        try:
            eos = json.loads(config_file.read_text(encoding="utf-8")).get("eos_token")
        except (OSError, ValueError):
            eos = None
        if isinstance(eos, dict):  # {"content": "</s>", ...}, as older transformers saved it
            eos = eos.get("content")
    vocab = loaded.library.get_vocab_size(with_added_tokens=True) if loaded.json is not None else len(loaded.library)
    return vocab, eos if isinstance(eos, str) and eos else None


def token_id(path: str, token: str) -> int | None:
    """The id of one token as written in the vocabulary (None when it is not one)."""
    loaded = load_tokenizer(path)
    if loaded.json is not None:
        return loaded.library.token_to_id(token)
    found = loaded.library.convert_tokens_to_ids(token)  # an unknown token comes back as the unk id
    unknown = found == loaded.library.unk_token_id and token != loaded.library.unk_token
    return found if isinstance(found, int) and found >= 0 and not unknown else None
