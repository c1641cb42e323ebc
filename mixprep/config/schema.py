"""The frozen, typed config that `parse` builds from a mixture YAML.

Everything after parsing trusts these values: paths are resolved, ratios checked,
filters validated into a `FilterChain`. `raw_digest` (sha256 of the canonical config)
is what the manifest records and what decides whether outputs are up to date.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from mixprep.errors import ConfigError
from mixprep.filters.registry import FilterChain

RATIO_TOLERANCE = 1e-6
DEFAULT_SEED = 42
DEFAULT_BUCKET_MB = 16
DEFAULT_SEQ_LEN = 2048  # packed windows (`metadata.pack.seq_len`)

Phase = Literal["pretrain", "sft", "dpo", "rl"]
PHASE_PREFIXES: tuple[tuple[str, Phase], ...] = (
    ("pretrain", "pretrain"),
    ("sft", "sft"),
    ("dpo", "dpo"),
    ("ppo", "rl"),
    ("rlaif", "rl"),
    ("grpo", "rl"),
)
SHINGLE_WORDS = 5  # near-dedup shingles: word 5-grams
DECONTAMINATION_NGRAM = 13  # the n of lm-evaluation-harness's and GPT-3's contamination checks


@dataclass(frozen=True)
class HubSource:
    """A Hugging Face dataset: a hub id, or a local folder (save_to_disk or hub repo layout)."""

    repo: str
    """The hub id `owner/name`, or the folder's absolute path when `local`."""
    local: bool
    split: str | None = None  # None: "train"
    config: str | None = None
    revision: str | None = None  # None: "main" (hub ids)

    def describe(self) -> str:
        options = (("split", self.split), ("config", self.config), ("revision", self.revision))
        return ", ".join([f"hf: {self.repo}", *(f"{k}: {v}" for k, v in options if v is not None)])


@dataclass(frozen=True)
class RemoteTimeouts:
    """How long a remote source may stay silent: seconds to connect and between bytes read,
    and how many attempts a request gets. A store that never answers fails within about
    `attempts * (connect + read)` seconds with one line naming the source."""

    connect: float = 10.0
    read: float = 60.0
    attempts: int = 3


@dataclass(frozen=True)
class SourceSpec:
    """Where a dataset's records come from: patterns as written, resolved to absolute
    (local paths) or kept as URLs (remote), or a Hugging Face dataset (`hub`)."""

    patterns: tuple[str, ...]
    format: str | None = None  # None: from each file's suffix
    hub: HubSource | None = None
    storage_options: dict[str, Any] | None = field(default=None, compare=False)
    """fsspec options for remote patterns (endpoint, credentials); never hashed into identities."""
    timeouts: RemoteTimeouts = field(default=RemoteTimeouts(), compare=False)
    """Network limits for remote patterns (`timeouts:` in the source mapping)."""

    def describe(self) -> str:
        return self.hub.describe() if self.hub is not None else ", ".join(self.patterns)


@dataclass(frozen=True)
class ValidationSpec:
    fraction: float | None = None
    samples: int | None = None


@dataclass(frozen=True)
class RepeatPolicy:
    warn_above: float = 1.0
    """Log a warning when a source's repeat factor (quota / available) exceeds this."""
    max_factor: float | None = None
    """Refuse to build above this factor; 1 forbids repeats; None allows any."""


@dataclass(frozen=True)
class DedupSpec:
    """`metadata.dedup`: exact (normalized text) or near (MinHash + LSH bands over word shingles)."""

    method: Literal["exact", "near"]
    threshold: float = 0.8
    num_perm: int = 128
    ngram: int = SHINGLE_WORDS


@dataclass(frozen=True)
class EvalSet:
    """An evaluation set no training record may share an n-gram with (`metadata.decontaminate.sources[i]`)."""

    name: str
    """Labels the set in the manifest and in each rejected record's `matched`."""
    source: SourceSpec
    fields: tuple[str, ...]
    """The fields holding its text (dotted for nested ones, `choices.text`): each a string, a
    list of strings or a list of messages."""


@dataclass(frozen=True)
class DecontaminationSpec:
    """`metadata.decontaminate`: drop every training record that shares a word n-gram with an evaluation set."""

    eval_sets: tuple[EvalSet, ...]
    ngram: int = DECONTAMINATION_NGRAM


@dataclass(frozen=True)
class PackSpec:
    """`metadata.pack`: also write each split's records, in JSONL order, as token ids with an
    end-of-document token after each (Megatron's indexed dataset: `<stem>.tokens.bin/.idx`)."""

    seq_len: int = DEFAULT_SEQ_LEN
    """Tokens per training window: `PackedDataset`'s and `mixprep train --packed`'s default."""
    eod: str | None = None
    """The end-of-document token; None: the tokenizer's `eos_token` (tokenizer_config.json),
    else `<|endoftext|>`."""


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    mix_ratio: float
    source: SourceSpec
    max_samples: int | None = None
    max_tokens: int | None = None
    """Cap the source at this many tokens: the largest seeded subset (the `max_samples` order)
    whose tokens fit. Needs `metadata.tokenizer`."""
    validation_source: SourceSpec | None = None
    text_field: str = "text"
    filters: FilterChain = ()


@dataclass(frozen=True)
class MixtureConfig:
    path: Path
    phase: str
    name: str
    seed: int
    datasets: tuple[DatasetSpec, ...]
    total_samples: int | None = None
    validation: ValidationSpec | None = None
    output_dir: Path | None = None
    on_bad_record: Literal["error", "skip"] = "error"
    repeats: RepeatPolicy = field(default_factory=RepeatPolicy)
    filter_on: Literal["all", "assistant"] = "all"
    shuffle_bucket_mb: int = DEFAULT_BUCKET_MB
    dedup: DedupSpec | None = None
    decontaminate: DecontaminationSpec | None = None
    annotate_language: bool = False
    """Add `language` and `language_score` (of the filter text) to every output record."""
    tokenizer: str | None = None
    """A local tokenizer (folder or tokenizer.json): every kept record's tokens are counted."""
    mix_by: Literal["records", "tokens"] = "records"
    """What `mix_ratio` shares: records (the seed's meaning) or tokens (needs `tokenizer`)."""
    total_tokens: int | None = None
    """`mix_by: tokens`: the train split's size in tokens (default: what the sources hold)."""
    pack: PackSpec | None = None
    problems: tuple[str, ...] = ()
    raw_digest: str = ""
    """sha256 of the parsed config (canonical JSON), for the manifest and output reuse."""

    @property
    def record_schema(self) -> Phase:
        return record_schema_for(self.phase)

    @property
    def text_values(self) -> bool:
        """Plain pretrain: scan files and buckets carry the text alone; else whole JSON lines."""
        return self.record_schema == "pretrain" and not self.annotate_language

    @property
    def is_valid(self) -> bool:
        return not self.problems

    @property
    def total_ratio(self) -> float:
        return math.fsum(d.mix_ratio for d in self.datasets)

    def stem(self, split: str) -> str:
        return f"{self.phase}_{self.name}_{split}"

    def splits(self) -> tuple[str, ...]:
        has_validation = self.validation is not None or any(d.validation_source for d in self.datasets)
        return ("train", "validation") if has_validation else ("train",)

    def raise_if_invalid(self) -> None:
        if self.problems:
            lines = "\n".join(f"  - {p}" for p in self.problems)
            msg = f"{self.path}: the mixture has {len(self.problems)} problem(s):\n{lines}"
            raise ConfigError(msg)


def record_schema_for(phase: str) -> Phase:
    lowered = phase.lower()
    for prefix, schema in PHASE_PREFIXES:
        if lowered.startswith(prefix):
            return schema
    return "pretrain"
