"""UnifiedDataset: one map-style torch Dataset for pretrain, SFT, DPO and RL over any JSONL.

Place in the flow: the last step. `mixprep build` (or the user) writes a JSONL; the
trainer wraps it in `UnifiedDataset(path, tokenizer, max_length, phase)` and a
`DataLoader`. This is the only module that imports torch.

Guarantees:
- O(1) random access: records are located through the memory-mapped `.idx` offset
  index (built on first open, rebuilt when stale) and decoded one at a time, so RAM
  does not grow with the file (a 4 GB JSONL opens in milliseconds).
- Pickles cheaply: the index and the file mapping are opened lazily in each process,
  so DataLoader workers receive a few paths and options, never the data.
- Examples match MiniMind's datasets token for token (see `phases`); anything
  random is off by default and seeded by (seed, index), so every worker agrees.
- Parquet input (our sidecar) reads one row group at a time, keeping the last one.
- A bad record raises RecordError naming the file, line (or row) and what is wrong.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from mixprep.errors import ConfigError, RecordError, SourceError
from mixprep.jsonl import line_number_at, load_json_object
from mixprep.serve.index import checked_position, ensure_index
from mixprep.serve.phases import BUILDERS, PhaseOptions, check_options, check_phase
from mixprep.serve.tokenizer import TokenizerAdapter

PARQUET_SUFFIXES = (".parquet", ".pq")


class _JsonlRecords:
    """Records of a JSONL file through its memory-mapped offset index and one `pread` each.

    pread rather than an mmap of the data: random reads over a multi-GB file would
    otherwise count every touched page in the process's RSS.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file = open(path, "rb")  # noqa: SIM115 - closed in close()
        self.identity = _identity(os.fstat(self._file.fileno()))
        self.offsets = ensure_index(path).offsets
        if int(self.offsets[-1]) != self.identity[0]:  # the file changed while it was indexed
            raise SourceError(_changed(path, "while it was opened", self.identity, _identity(os.fstat(self._file.fileno()))))

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def read(self, i: int) -> dict:
        # One fstat per record (well under a microsecond): an append, a truncation or an edit
        # in place would pair the old offsets with new bytes. (A rebuild renames a new file
        # over the path; this handle keeps reading the old one, whole and consistent.)
        now = _identity(os.fstat(self._file.fileno()))
        if now != self.identity:
            raise SourceError(_changed(self.path, "while this dataset was reading it", self.identity, now))
        start, end = int(self.offsets[i]), int(self.offsets[i + 1])
        raw = os.pread(self._file.fileno(), end - start, start)
        try:
            return load_json_object(raw)
        except ValueError as exc:
            msg = f"{exc}: {bytes(raw[:80])!r}; hint: each line must hold one JSON object"
            raise RecordError(self._located(i, msg)) from None

    def where(self, i: int) -> str:
        # Counting newlines costs a scan of the prefix, paid only when reporting an error.
        with open(self.path, "rb") as handle:
            line = line_number_at(handle, int(self.offsets[i]))
        return f"{self.path}:{line} (record {i})"

    def _located(self, i: int, msg: str) -> str:
        return f"{self.where(i)}: {msg}"

    def close(self) -> None:
        self._file.close()


class _ParquetRecords:
    """Rows of a Parquet file, decoded one row group at a time (the last one kept)."""

    def __init__(self, path: Path) -> None:
        import pyarrow.parquet as pq

        self.path = path
        self.identity = _identity(os.stat(path))
        self._file = pq.ParquetFile(path)
        sizes = [self._file.metadata.row_group(g).num_rows for g in range(self._file.num_row_groups)]
        self._starts = np.concatenate([[0], np.cumsum(sizes, dtype=np.int64)])
        self._group = -1
        self._table = None

    def __len__(self) -> int:
        return int(self._starts[-1])

    def read(self, i: int) -> dict:
        group = int(np.searchsorted(self._starts, i, side="right")) - 1
        if group != self._group:
            self._table = self._file.read_row_group(group)
            self._group = group
        return self._table.slice(i - int(self._starts[group]), 1).to_pylist()[0]

    def where(self, i: int) -> str:
        return f"{self.path} row {i}"

    def close(self) -> None:
        self._file.close()


def _identity(stat: os.stat_result) -> tuple[int, int]:
    return stat.st_size, stat.st_mtime_ns


def _changed(path: Path, when: str, before: tuple[int, int], after: tuple[int, int]) -> str:
    return (
        f"{path} changed {when} (size {before[0]:,} -> {after[0]:,} bytes, mtime_ns {before[1]} -> {after[1]}): "
        "its records would mix two versions of the file; create the dataset again once the file is complete"
    )


def _open_records(path: Path) -> _JsonlRecords | _ParquetRecords:
    if path.suffix.lower() in PARQUET_SUFFIXES:
        return _ParquetRecords(path)
    return _JsonlRecords(path)


def _load_tokenizer(tokenizer: Any) -> Any:
    if isinstance(tokenizer, (str, os.PathLike)):
        from transformers import AutoTokenizer

        try:
            return AutoTokenizer.from_pretrained(str(tokenizer))
        except (OSError, ValueError) as e:
            msg = f"cannot load tokenizer {str(tokenizer)!r}: {e}; hint: pass a folder with tokenizer.json or a tokenizer object"
            raise ConfigError(msg) from e
    if not callable(getattr(tokenizer, "apply_chat_template", None)):
        msg = f"tokenizer must be a Hugging Face tokenizer or a path to one, got {type(tokenizer).__name__}"
        raise ConfigError(msg)
    return tokenizer


class UnifiedDataset(Dataset):
    """`UnifiedDataset(data_path, tokenizer, max_length=512, phase="pretrain")`.

    pretrain/sft -> (X, Y, loss_mask) int64 of max_length-1 (or (input_ids, labels) with
    return_labels=True); dpo -> dict x_/y_/mask_ chosen/rejected; ppo/rlaif -> dict
    input_ids, attention_mask (left-padded), prompt, answer.
    """

    def __init__(
        self,
        data_path: str | os.PathLike,
        tokenizer: Any,
        max_length: int = 512,
        phase: str = "pretrain",
        *,
        seed: int = 42,
        random_system_prompt: bool = False,
        strip_empty_think: bool = False,
        return_labels: bool = False,
        text_field: str = "text",
    ) -> None:
        super().__init__()
        self.data_path = Path(data_path)
        self.phase = check_phase(phase)
        self.options = PhaseOptions(
            max_length=max_length,
            seed=seed,
            random_system_prompt=random_system_prompt,
            strip_empty_think=strip_empty_think,
            return_labels=return_labels,
            text_field=text_field,
        )
        check_options(self.phase, self.options)
        if not self.data_path.is_file():
            msg = f"{self.data_path}: no such file; hint: run `mixprep build CONFIG` or check the path"
            raise SourceError(msg)
        self.tokenizer = _load_tokenizer(tokenizer)
        self._adapter: TokenizerAdapter | None = None
        self._records: _JsonlRecords | _ParquetRecords | None = None
        self._records_pid = os.getpid()
        self._identity: tuple[int, int] | None = None  # (size, mtime_ns) of the file when first opened
        self._length = len(self._reader())
        self._check_tokenizer()

    def _check_tokenizer(self) -> None:
        """Fail at construction, not in a worker, when the tokenizer cannot serve the phase."""
        adapter = self._tokenizer()
        if self.phase == "pretrain":
            adapter.require_bos()
        elif self.phase in ("sft", "dpo"):
            adapter.markers  # noqa: B018 - derives and validates the chat markers
        else:
            adapter.render([{"role": "user", "content": "probe"}], add_generation_prompt=True)

    # -- lazily opened per process -------------------------------------------------

    def _reader(self) -> _JsonlRecords | _ParquetRecords:
        # A forked worker inherits the parent's handles; reopen so no two processes share one.
        if self._records is None or self._records_pid != os.getpid():
            records = _open_records(self.data_path)
            if self._identity is not None and records.identity != self._identity:
                # A DataLoader worker (or an unpickled copy) reopening a file rebuilt since.
                records.close()
                msg = _changed(self.data_path, "since the dataset was created", self._identity, records.identity)
                raise SourceError(msg)
            self._records, self._records_pid = records, os.getpid()
            self._identity = records.identity
        return self._records

    def _tokenizer(self) -> TokenizerAdapter:
        if self._adapter is None:
            self._adapter = TokenizerAdapter(self.tokenizer)
        return self._adapter

    def __getstate__(self) -> dict:
        # Workers reopen the file and rebuild the tokenizer adapter; nothing large travels.
        state = self.__dict__.copy()
        state["_records"] = None
        state["_adapter"] = None
        return state

    # -- Dataset protocol ----------------------------------------------------------

    def __len__(self) -> int:
        return self._length

    def __getitem__(self, index: int) -> Any:
        i = checked_position(index, self._length, f"{self._length} records in {self.data_path}")
        records = self._reader()
        record = records.read(i)
        try:
            example = BUILDERS[self.phase](record, self._tokenizer(), self.options, i)
        except RecordError as e:
            msg = f"{records.where(i)}: {e} (phase {self.phase!r})"
            raise RecordError(msg) from e
        return _to_torch(example)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({str(self.data_path)!r}, phase={self.phase!r}, "
            f"records={self._length}, max_length={self.options.max_length})"
        )


def _to_torch(example: Any) -> Any:
    if isinstance(example, tuple):
        return tuple(torch.from_numpy(np.ascontiguousarray(part)) for part in example)
    return {
        key: torch.from_numpy(np.ascontiguousarray(value)) if isinstance(value, np.ndarray) else value
        for key, value in example.items()
    }


class _FixedPhase(UnifiedDataset):
    PHASE = "pretrain"

    def __init__(self, data_path: str | os.PathLike, tokenizer: Any, max_length: int = 512, **options: Any) -> None:
        if "phase" in options:
            msg = f"{type(self).__name__} always uses phase {self.PHASE!r}; use UnifiedDataset to choose a phase"
            raise ConfigError(msg)
        super().__init__(data_path, tokenizer, max_length, phase=self.PHASE, **options)


class PretrainDataset(_FixedPhase):
    """MiniMind-style name: UnifiedDataset(..., phase="pretrain")."""

    PHASE = "pretrain"


class SFTDataset(_FixedPhase):
    """MiniMind-style name: UnifiedDataset(..., phase="sft")."""

    PHASE = "sft"


class DPODataset(_FixedPhase):
    """MiniMind-style name: UnifiedDataset(..., phase="dpo")."""

    PHASE = "dpo"


class RLAIFDataset(_FixedPhase):
    """MiniMind-style name: UnifiedDataset(..., phase="rlaif")."""

    PHASE = "rlaif"
