"""PackedDataset: fixed-length training windows over a packed token file (`build --pack`,
or any Megatron indexed dataset: `<prefix>.bin` + `<prefix>.idx`).

Place in the flow: `build.packed` writes the split's documents back to back, each
followed by its end-of-document token; this serves window `i` = tokens
`[i·L, i·L + L + 1)` of that stream as `(X, Y, loss_mask)` like the pretrain phase of
`UnifiedDataset` (X = window[:-1], Y = window[1:]), so every position carries loss.

Guarantees:
- O(1) random access: the `.idx` is memory-mapped and each window is one `pread` of
  `(L + 1) · itemsize` bytes from the `.bin`, so reading stays flat in RSS however many
  windows a run visits (a mapping would count every touched page in RSS).
- Pickles cheaply (paths and sizes only): a forked DataLoader worker reads through the
  descriptor it inherits (pread keeps no file position), a spawned one opens its own.
- `mask_document_boundaries=True` zeroes the loss where X is an end-of-document token
  (predicting a new document's first token from the previous document's context).
- The `.bin` is checked against the index on open (size), and a read that comes back
  short (the file was truncated since) raises. A rebuild renames a new file over the
  path; an open dataset keeps reading the old one, whole and consistent. (No fstat per
  read, unlike `UnifiedDataset`: here it would be a fifth of a window's cost.)
"""
from __future__ import annotations

import os
import weakref
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from mixprep.errors import ConfigError, IndexFormatError, SourceError
from mixprep.manifest_file import read_manifest
from mixprep.serve.index import checked_position
from mixprep.serve.indexed import read_indexed_index


class PackedDataset(Dataset):
    """`PackedDataset("out/pretrain_toy_train.tokens", seq_len=2048)` -> `(X, Y, loss_mask)`,
    int64 tensors of `seq_len` each.

    `prefix` is the path without `.bin`/`.idx` (a path ending in either is accepted).
    `seq_len` defaults to the build's `pack.seq_len` (from the split's manifest) when there
    is one. `eod_id` (needed only for `mask_document_boundaries`) defaults to the manifest's.
    """

    def __init__(
        self,
        prefix: str | os.PathLike,
        seq_len: int | None = None,
        *,
        mask_document_boundaries: bool = False,
        eod_id: int | None = None,
    ) -> None:
        self.prefix = _prefix(Path(prefix))
        self.bin_path = self.prefix.with_name(self.prefix.name + ".bin")
        self.idx_path = self.prefix.with_name(self.prefix.name + ".idx")
        index = read_indexed_index(self.idx_path)
        self.dtype = index.dtype
        self.tokens = index.tokens
        packed = _manifest_entry(self.prefix)
        seq_len = seq_len if seq_len is not None else packed.get("seq_len")
        if seq_len is None:
            msg = f"{self.prefix}: give seq_len (no mixprep manifest beside it says which window the build packed for)"
            raise ConfigError(msg)
        if seq_len < 1:
            msg = f"seq_len={seq_len}: a window needs at least one token"
            raise ConfigError(msg)
        self.seq_len = int(seq_len)
        self.eod_id = eod_id if eod_id is not None else packed.get("eod_id")
        if mask_document_boundaries and self.eod_id is None:
            msg = f"{self.prefix}: mask_document_boundaries needs eod_id (no mixprep manifest beside it names the end-of-document token)"
            raise ConfigError(msg)
        self.mask_document_boundaries = mask_document_boundaries
        try:
            stat = os.stat(self.bin_path)
        except OSError as exc:
            msg = f"{self.bin_path}: cannot open it ({exc.strerror or exc}); a packed split is a .bin beside its .idx"
            raise SourceError(msg) from None
        if stat.st_size != self.tokens * self.dtype.itemsize:
            msg = (
                f"{self.bin_path}: {stat.st_size:,} bytes, but {self.idx_path.name} describes {self.tokens:,} tokens "
                f"({self.tokens * self.dtype.itemsize:,} bytes); the two files are not from one build"
            )
            raise IndexFormatError(msg)
        self._length = max(self.tokens - 1, 0) // self.seq_len
        self._window_bytes = (self.seq_len + 1) * self.dtype.itemsize
        self._stride = self.seq_len * self.dtype.itemsize
        self._fd: int | None = None

    def __len__(self) -> int:
        return self._length

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        # numpy first, then one from_numpy per tensor: torch's own slicing and comparisons
        # cost microseconds each, which at 2048 tokens is most of a window.
        window = self.window(index).astype(np.int64)
        x = window[:-1]
        mask = (x != self.eod_id).astype(np.int64) if self.mask_document_boundaries else np.ones(self.seq_len, dtype=np.int64)
        return torch.from_numpy(x), torch.from_numpy(window[1:]), torch.from_numpy(mask)

    def window(self, index: int) -> np.ndarray:
        """Tokens `[i·L, i·L + L + 1)` in the file's dtype (no copy beyond the read)."""
        # The common case checked inline: one more call per window would cost ~5% of it.
        if type(index) is not int or not 0 <= index < self._length:
            index = checked_position(index, self._length, f"{self._length} windows of {self.seq_len} tokens in {self.bin_path}")
        size = self._window_bytes
        fd = self._fd if self._fd is not None else self._file()
        raw = os.pread(fd, size, index * self._stride)
        if len(raw) != size:
            msg = f"{self.bin_path}: is shorter than when it was opened (window {index} read {len(raw)} of {size} bytes); it was truncated"
            raise SourceError(msg)
        return np.frombuffer(raw, dtype=self.dtype)

    def _file(self) -> int:
        # Opened on first read. A forked DataLoader worker reads through the descriptor it
        # inherited (pread has no shared file position); a spawned one unpickles without it.
        self._fd = os.open(self.bin_path, os.O_RDONLY)
        weakref.finalize(self, os.close, self._fd)
        return self._fd

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_fd": None}

    def __repr__(self) -> str:
        return f"PackedDataset({str(self.prefix)!r}, seq_len={self.seq_len}, windows={self._length}, tokens={self.tokens})"


def _prefix(path: Path) -> Path:
    if path.suffix in (".bin", ".idx"):
        return path.with_suffix("")
    return path


def _manifest_entry(prefix: Path) -> dict[str, Any]:
    """The `packed` entry of the split's manifest (`<stem>.manifest.json` beside `<stem>.tokens`), if any."""
    stem = prefix.name.removesuffix(".tokens")
    manifest = read_manifest(prefix.with_name(f"{stem}.manifest.json")) or {}
    packed = manifest.get("output", {}).get("packed")
    return packed if isinstance(packed, dict) and packed.get("bin") == f"{prefix.name}.bin" else {}
