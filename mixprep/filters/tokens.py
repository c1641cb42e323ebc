"""Token counts for the `min_tokens` / `max_tokens` filters (used by `rules`).

A tokenizer is named by a local path: a `tokenizer.json` file, or a folder holding one
(what `save_pretrained` writes, e.g. ../shared/data/tokenizers/minimind); such a folder
loads through the `tokenizers` library alone. A folder without `tokenizer.json` (a
slow, sentencepiece-only tokenizer) loads through `transformers.AutoTokenizer` with
`local_files_only=True`. Nothing is ever downloaded: a path that does not exist is a
ConfigError. Each tokenizer is loaded once per process and kept.

Counts exclude special tokens (no BOS/EOS): set `max_tokens` to the training length
minus the specials the trainer adds. Each batch is encoded in one call.
"""
from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np
import polars as pl

from mixprep.errors import ConfigError

logger = logging.getLogger(__name__)


TokenCounter = Callable[[list[str]], np.ndarray]


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


def _fast_counter(tokenizer_json: Path) -> TokenCounter:
    from tokenizers import Tokenizer

    try:
        tokenizer = Tokenizer.from_file(str(tokenizer_json))
    except Exception as exc:  # the tokenizers library raises a bare Exception on a bad file
        msg = f"tokenizer {str(tokenizer_json)!r}: cannot be loaded ({exc}); expected a tokenizers JSON file"
        raise ConfigError(msg) from exc
    logger.debug("loaded tokenizer %s (vocab %d)", tokenizer_json, tokenizer.get_vocab_size())
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
