"""What `mixprep train` feeds the model: which files, which tokenizer, and in what order.

Place in the flow: CLI options -> `resolve_data` (a prepared JSONL, or the engine builds the
mixture) -> `UnifiedDataset` -> `SeededBatchSampler` -> `DataLoader` -> the training loop.

Guarantees:
- `SeededBatchSampler` visits epoch e in the order `np.random.default_rng([seed, e]).permutation(n)`,
  independent of workers and time; started at batch k it yields exactly the batches k, k+1, ...
  of that order, without touching the records of batches 0..k-1.
- The validation set is the first `eval_batches` batches of the validation file in file order,
  so every evaluation of every run over the same file scores the same records.
- `trim_padding_columns` drops only columns that carry no loss; with causal attention the loss
  is unchanged.
"""
from __future__ import annotations

import contextlib
import json
import logging
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from mixprep.errors import ConfigError, RecordError, SourceError

logger = logging.getLogger(__name__)


TOKENIZER_DIR = "tokenizer"
PHASES = ("pretrain", "sft")
TOKENIZER_HINT = (
    "pass --tokenizer DIR (a folder AutoTokenizer.from_pretrained loads), or train one with: "
    "python -m mixprep tokenizer train FILE.jsonl --vocab_size 6400 --out DIR"
)


# ----------------------------------------------------------------------------- sampling


class SeededBatchSampler:
    """Batches of one epoch's seeded permutation, starting at batch `start_batch`.

    The order depends only on (seed, epoch), never on workers or time; starting mid-epoch skips
    the consumed batches by index, so their records are neither read nor tokenized.
    """

    def __init__(self, num_samples: int, batch_size: int, *, seed: int, epoch: int, start_batch: int = 0) -> None:
        self.num_samples = num_samples
        self.batch_size = batch_size
        self.seed = seed
        self.epoch = epoch
        self.start_batch = start_batch

    def __len__(self) -> int:
        return max(0, batches_per_epoch(self.num_samples, self.batch_size) - self.start_batch)

    def __iter__(self) -> Iterator[list[int]]:
        order = np.random.default_rng([self.seed, self.epoch]).permutation(self.num_samples)
        for start in range(self.start_batch * self.batch_size, self.num_samples, self.batch_size):
            yield order[start:start + self.batch_size].tolist()


def batches_per_epoch(num_samples: int, batch_size: int) -> int:
    # The last, smaller batch is kept: with loss averaged over the mask it weighs no record twice.
    return math.ceil(num_samples / batch_size)


def sequential_batches(num_samples: int, batch_size: int, max_batches: int) -> list[list[int]]:
    """The first `max_batches` batches in file order: the same validation set at every save."""
    limit = min(num_samples, batch_size * max_batches)
    return [list(range(i, min(i + batch_size, limit))) for i in range(0, limit, batch_size)]


def make_loader(dataset: Dataset, batch_sampler: Any, *, num_workers: int, pin_memory: bool) -> DataLoader:
    return DataLoader(dataset, batch_sampler=batch_sampler, num_workers=num_workers, pin_memory=pin_memory)


def trim_padding_columns(
    x: torch.Tensor, y: torch.Tensor, mask: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Drop trailing columns where no row is supervised.

    Exact, not an approximation: attention is causal, so earlier positions never see the
    dropped ones, and the dropped ones carry no loss. Short documents then cost what they hold.
    """
    supervised = mask.any(dim=0).nonzero()
    keep = int(supervised.max()) + 1 if supervised.numel() else 1
    return x[:, :keep], y[:, :keep], mask[:, :keep]


# ----------------------------------------------------------------------------- data + tokenizer


def validation_path_for(train_path: Path) -> Path | None:
    """`<stem>_train.jsonl` -> `<stem>_validation.jsonl` (the build engine's naming); else None."""
    suffix = "_train.jsonl"
    if not train_path.name.endswith(suffix):
        return None
    return train_path.with_name(train_path.name[: -len(suffix)] + "_validation.jsonl")


PACKED_SUFFIX = ".tokens"


def is_packed_path(path: Path) -> bool:
    """`<stem>.tokens`, `<stem>.tokens.bin` or `.idx`: a packed split, not a JSONL."""
    return path.name.endswith((PACKED_SUFFIX, f"{PACKED_SUFFIX}.bin", f"{PACKED_SUFFIX}.idx"))


def packed_prefix(path: Path) -> Path:
    """The packed split of a path: itself (`.tokens`, `.bin`, `.idx` dropped), or the one beside a JSONL."""
    if is_packed_path(path):
        return path.with_suffix("") if path.suffix in (".bin", ".idx") else path
    return path.with_name(path.name.removesuffix(".jsonl") + PACKED_SUFFIX)


def resolve_packed(train: Path, validation: Path | None) -> tuple[Path, Path | None]:
    """`--packed`: the packed splits of the train (and validation) data; a missing train one
    is an error that says how to write it, a missing validation one skips validation."""
    prefix = packed_prefix(train)
    if not prefix.with_name(prefix.name + ".bin").is_file():
        msg = (
            f"--packed: {prefix}.bin does not exist; build the mixture with packing: add `pack: {{seq_len: N}}` "
            f"and a `tokenizer:` to its metadata, or run `python -m mixprep build MIXTURE.yaml --pack`"
        )
        raise SourceError(msg)
    if validation is None and is_packed_path(train) and prefix.name.endswith("_train" + PACKED_SUFFIX):
        validation = prefix.with_name(prefix.name.removesuffix("_train" + PACKED_SUFFIX) + "_validation" + PACKED_SUFFIX)
    valid = packed_prefix(validation) if validation is not None else None
    if valid is not None and not valid.with_name(valid.name + ".bin").is_file():
        logger.warning("no packed validation split %s.bin; validation loss is skipped", valid)
        valid = None
    return prefix, valid


def resolve_data(
    *, prepared_data: Path | None, validation_data: Path | None, data_config: Path | None, data_dir: Path | None,
    build_workers: int, pack_seq_len: int | None = None,
) -> tuple[Path, Path | None]:
    """Train and validation paths: built from the mixture, or given and derived. With
    `pack_seq_len`, a mixture is built with packing and packed splits are returned."""
    if data_config is not None:
        train, validation = build_from_mixture(data_config, output_dir=data_dir, workers=build_workers, pack_seq_len=pack_seq_len)
        return resolve_packed(train, validation) if pack_seq_len is not None else (train, validation)
    assert prepared_data is not None  # the CLI parser requires exactly one data flag
    if pack_seq_len is not None:
        return resolve_packed(prepared_data, validation_data)
    train = prepared_data
    if not train.is_file():
        msg = (
            f"--prepared_data {train}: no such file; hint: build it with "
            f"`python -m mixprep build MIXTURE.yaml --output-dir DIR`, or pass --data_config MIXTURE.yaml "
            f"to build it now"
        )
        raise SourceError(msg)
    if validation_data is not None:
        if not validation_data.is_file():
            msg = f"--validation_data {validation_data}: no such file"
            raise SourceError(msg)
        return train, validation_data
    derived = validation_path_for(train)
    if derived is None or not derived.is_file():
        logger.warning(
            "no validation file for %s (looked for %s); validation loss is skipped; pass --validation_data FILE",
            train, derived if derived is not None else "a name ending in _train.jsonl",
        )
        return train, None
    return train, derived


def build_from_mixture(
    config: Path, *, output_dir: Path | None, workers: int, pack_seq_len: int | None = None
) -> tuple[Path, Path | None]:
    """Build (or reuse) the mixture's split files through the engine's public API."""
    from mixprep.config.parse import with_pack
    from mixprep.mixer import DatasetMixer

    mixer = DatasetMixer.from_yaml(config)
    if pack_seq_len is not None:
        mixer = DatasetMixer(with_pack(mixer.config, pack_seq_len))
    result = mixer.build(output_dir=output_dir, splits=None, workers=workers)
    train = Path(result.files["train"])
    validation = result.files.get("validation")
    logger.info("%s mixture %s -> %s", "reused" if result.reused else "built", config, train)
    return train, Path(validation) if validation is not None else None


def data_fingerprint(path: Path, num_records: int) -> dict[str, Any]:
    """Identity of a data file: size, record count, the offset index's content hash and, for a
    file `mixprep build` wrote, its manifest's checksum of the whole output (informational)."""
    from mixprep.serve.index import fingerprint

    if is_packed_path(path):
        path = packed_prefix(path).with_name(packed_prefix(path).name + ".bin")
    size = path.stat().st_size
    identity = {"path": str(path), "size": size, "records": num_records, "xxh3": f"{fingerprint(path, size):016x}"}
    manifest = path.with_name(path.name.removesuffix(".jsonl") + ".manifest.json")
    if manifest.is_file():
        with contextlib.suppress(ValueError, KeyError, TypeError):  # a foreign or older manifest: just omit it
            identity["manifest_checksum"] = json.loads(manifest.read_text(encoding="utf-8"))["output"]["checksum"]["digest"]
    return identity


def detect_phase(path: Path) -> Literal["pretrain", "sft"]:
    """pretrain for `{"text"}` records, sft for `{"conversations"}`, from the first record."""
    with path.open("rb") as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                msg = f"{path}:{number}: invalid JSON ({exc.msg}); cannot detect the phase; pass --phase"
                raise RecordError(msg) from exc
            if isinstance(record, dict) and "conversations" in record:
                return "sft"
            if isinstance(record, dict) and "text" in record:
                return "pretrain"
            keys = sorted(record) if isinstance(record, dict) else type(record).__name__
            msg = (
                f"{path}:{number}: record has {keys}, neither 'text' (pretrain) nor 'conversations' (sft); "
                f"mixprep train supports --phase {'|'.join(PHASES)}"
            )
            raise RecordError(msg)
    msg = f"{path}: no records (the file is empty or blank); hint: check the build's manifest for what was filtered"
    raise SourceError(msg)


def packed_manifest(prefix: Path) -> dict[str, Any]:
    """The manifest of the build that wrote a packed split (`<stem>.manifest.json`), or {}."""
    from mixprep.manifest_file import read_manifest

    return read_manifest(prefix.with_name(prefix.name.removesuffix(PACKED_SUFFIX) + ".manifest.json")) or {}


def packed_tokenizer(train: Path, opts: Any) -> Path | None:
    """`--packed` without --tokenizer: the tokenizer the build packed with, where its path
    (relative to the mixture's folder) still resolves."""
    if not opts.packed:
        return None
    named = packed_manifest(packed_prefix(train)).get("tokenizer")
    if not isinstance(named, str):
        return None
    bases = [Path(), *([opts.data_config.parent] if opts.data_config is not None else [])]
    for base in bases:
        if (base / named).exists():
            return base / named
    return None


def packed_windows(prefix: Path, seq_len: int, vocab_size: int) -> Dataset:
    """`PackedDataset` windows of `seq_len` tokens, refused when the split's ids do not fit
    the model's vocabulary (another tokenizer packed it)."""
    from mixprep.serve.packed import PackedDataset

    packed = packed_manifest(prefix).get("output", {}).get("packed", {})
    needed = packed.get("vocab_size")
    if isinstance(needed, int) and needed > vocab_size:
        msg = (
            f"{prefix}: packed with a tokenizer of {needed:,} tokens, but the tokenizer given has {vocab_size:,}; "
            "pass the tokenizer the build used (--tokenizer DIR)"
        )
        raise ConfigError(msg)
    return PackedDataset(prefix, seq_len)


def find_tokenizer(given: Path | None, *, out_dir: Path, train_path: Path) -> Path:
    """--tokenizer, else the copy a run keeps in --out_dir, else `tokenizer/` next to the data."""
    if given is not None:
        if not given.exists():
            msg = f"--tokenizer {given}: no such file or folder; {TOKENIZER_HINT}"
            raise ConfigError(msg)
        return given
    candidates = (out_dir / TOKENIZER_DIR, train_path.parent / TOKENIZER_DIR)
    for candidate in candidates:
        if (candidate / "tokenizer.json").is_file() or (candidate / "tokenizer_config.json").is_file():
            logger.info("using tokenizer %s", candidate)
            return candidate
    looked = ", ".join(str(c) for c in candidates)
    msg = f"no tokenizer given and none found (looked in {looked}); {TOKENIZER_HINT}"
    raise ConfigError(msg)


def load_tokenizer(path: Path) -> Any:
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(str(path))
    except (OSError, ValueError) as exc:
        msg = f"--tokenizer {path}: AutoTokenizer.from_pretrained cannot load it ({exc}); {TOKENIZER_HINT}"
        raise ConfigError(msg) from exc
