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


@functools.lru_cache(maxsize=8)
def load_token_counter(path: str) -> TokenCounter:
    """Path -> function(texts) -> int64 token counts; cached per process."""
    location = Path(path).expanduser()
    tokenizer_json = location if location.is_file() else location / "tokenizer.json"
    if tokenizer_json.is_file():
        return _fast_counter(tokenizer_json)
    if location.is_dir():
        return _transformers_counter(location)
    msg = (
        f"tokenizer {path!r}: no such file or folder (resolved to {location.resolve()}); "
        "expected a tokenizer.json file or a folder holding one (as save_pretrained writes); "
        "hint: tokenizers are never downloaded, save it locally first"
    )
    raise ConfigError(msg)


@functools.lru_cache(maxsize=8)
def _byte_level(tokenizer_json: str) -> ByteLevelBPE:
    """One per tokenizer and process: counting (scan) and encoding (packed writes) share its word cache."""
    return ByteLevelBPE(Path(tokenizer_json))


def _fast_counter(tokenizer_json: Path) -> TokenCounter:
    from tokenizers import Tokenizer

    try:
        tokenizer = Tokenizer.from_file(str(tokenizer_json))
    except Exception as exc:  # the tokenizers library raises a bare Exception on a bad file
        msg = f"tokenizer {str(tokenizer_json)!r}: cannot be loaded ({exc}); expected a tokenizers JSON file"
        raise ConfigError(msg) from exc
    logger.debug("loaded tokenizer %s (vocab %d)", tokenizer_json, tokenizer.get_vocab_size())
    if ByteLevelBPE.supports(tokenizer_json):
        return _byte_level(str(tokenizer_json)).count
    # encode_batch_fast skips character offsets, which a count does not need.
    encode = getattr(tokenizer, "encode_batch_fast", tokenizer.encode_batch)

    def count(texts: list[str]) -> np.ndarray:
        return np.fromiter((len(e.ids) for e in encode(texts, add_special_tokens=False)), dtype=np.int64, count=len(texts))

    return count


def _transformers_counter(folder: Path) -> TokenCounter:
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    except (OSError, ValueError) as exc:
        msg = f"tokenizer {str(folder)!r}: cannot be loaded offline ({exc}); expected a folder written by save_pretrained"
        raise ConfigError(msg) from exc

    def count(texts: list[str]) -> np.ndarray:
        ids = tokenizer(texts, add_special_tokens=False)["input_ids"]
        return np.fromiter((len(row) for row in ids), dtype=np.int64, count=len(texts))

    return count


def token_counts(texts: pl.Series, path: str) -> pl.Series:
    """Token count per text (null text counts 0), the whole batch in one encode call."""
    counts = load_token_counter(path)(texts.fill_null("").to_list())
    return pl.Series(counts, dtype=pl.Int64)


@functools.lru_cache(maxsize=8)
def load_token_encoder(path: str) -> TokenEncoder:
    """Path -> function(texts) -> (ids, lengths), without special tokens (as counted)."""
    location = Path(path).expanduser()
    tokenizer_json = location if location.is_file() else location / "tokenizer.json"
    if tokenizer_json.is_file() and ByteLevelBPE.supports(tokenizer_json):
        return _byte_level(str(tokenizer_json)).encode
    if tokenizer_json.is_file():
        from tokenizers import Tokenizer

        tokenizer = Tokenizer.from_file(str(tokenizer_json))
        encode_batch = getattr(tokenizer, "encode_batch_fast", tokenizer.encode_batch)

        def ids_of(texts: list[str]) -> list[list[int]]:
            return [e.ids for e in encode_batch(texts, add_special_tokens=False)]
    else:
        from transformers import AutoTokenizer

        slow = AutoTokenizer.from_pretrained(str(location), local_files_only=True)

        def ids_of(texts: list[str]) -> list[list[int]]:
            return slow(texts, add_special_tokens=False)["input_ids"]

    def encode(texts: Any, lengths: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        if not isinstance(texts, list):
            texts = [t or "" for t in texts.to_pylist()]  # Arrow strings
        rows = ids_of(texts)
        lengths = np.fromiter((len(r) for r in rows), dtype=np.int64, count=len(rows))
        ids = np.fromiter(itertools.chain.from_iterable(rows), dtype=np.int64, count=int(lengths.sum()))
        return ids, lengths

    return encode


@functools.lru_cache(maxsize=8)
def tokenizer_facts(path: str) -> tuple[int, str | None]:
    """(vocabulary size with added tokens, eos_token from tokenizer_config.json or None)."""
    location = Path(path).expanduser()
    folder = location.parent if location.is_file() else location
    eos = None
    config_file = folder / "tokenizer_config.json"
    if config_file.is_file():
        try:
            eos = json.loads(config_file.read_text(encoding="utf-8")).get("eos_token")
        except (OSError, ValueError):
            eos = None
        if isinstance(eos, dict):  # {"content": "</s>", ...}, as older transformers saved it
            eos = eos.get("content")
    tokenizer_json = location if location.is_file() else location / "tokenizer.json"
    if tokenizer_json.is_file():
        from tokenizers import Tokenizer

        vocab = Tokenizer.from_file(str(tokenizer_json)).get_vocab_size(with_added_tokens=True)
    else:
        from transformers import AutoTokenizer

        vocab = len(AutoTokenizer.from_pretrained(str(location), local_files_only=True))
    return vocab, eos if isinstance(eos, str) and eos else None


def token_id(path: str, token: str) -> int | None:
    """The id of one token as written in the vocabulary (None when it is not one)."""
    location = Path(path).expanduser()
    tokenizer_json = location if location.is_file() else location / "tokenizer.json"
    if tokenizer_json.is_file():
        from tokenizers import Tokenizer

        return Tokenizer.from_file(str(tokenizer_json)).token_to_id(token)
    from transformers import AutoTokenizer

    found = AutoTokenizer.from_pretrained(str(location), local_files_only=True).convert_tokens_to_ids(token)
    return found if isinstance(found, int) and found >= 0 else None
