"""The build's output files: their names, and the commit that moves them into place.

Every output is written under the build's temporary folder and renamed into the output
folder only when all of a build's files are complete, manifests last.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from mixprep.errors import OutputError

OUTPUT_SUFFIXES = (".jsonl", ".parquet", ".idx", ".manifest.json")
PACKED_SUFFIXES = (".tokens.bin", ".tokens.idx")
"""`metadata.pack`: the split's token ids in Megatron's indexed-dataset format."""


@dataclass(frozen=True)
class SplitFiles:
    jsonl: Path
    parquet: Path
    index: Path
    manifest: Path

    @classmethod
    def for_stem(cls, folder: Path, stem: str) -> SplitFiles:
        return cls(*(folder / f"{stem}{suffix}" for suffix in OUTPUT_SUFFIXES))

    def all(self) -> tuple[Path, ...]:
        return (self.jsonl, self.parquet, self.index, self.manifest)


def rejected_name(phase: str, name: str) -> str:
    """The `--write-rejected` file of a mixture (one for all its splits)."""
    return f"{phase}_{name}.rejected.jsonl"


def packed_files(folder: Path, stem: str) -> tuple[Path, Path]:
    """A split's packed token file and its index: `<stem>.tokens.bin`, `<stem>.tokens.idx`."""
    return folder / f"{stem}{PACKED_SUFFIXES[0]}", folder / f"{stem}{PACKED_SUFFIXES[1]}"


def _move(src: Path, dst: Path) -> None:
    # Unlink first: renaming over an existing file makes ext4 flush the new one to disk
    # (auto_da_alloc), which costs seconds on a GB-sized output.
    dst.unlink(missing_ok=True)
    os.replace(src, dst)


def commit(pairs: list[tuple[SplitFiles, SplitFiles]], extras: list[tuple[Path, Path]] = ()) -> None:  # type: ignore[assignment]
    """Move finished temporary files into place. Old manifests go first and new ones
    come last, so a crash in between never pairs a manifest with other data."""
    try:
        for _, final in pairs:
            final.manifest.unlink(missing_ok=True)
        for src, dst in extras:
            _move(src, dst)
        for tmp, final in pairs:
            for src, dst in zip(tmp.all()[:3], final.all()[:3], strict=True):
                _move(src, dst)
        for tmp, final in pairs:
            os.replace(tmp.manifest, final.manifest)
    except OSError as exc:
        msg = f"cannot move the finished outputs into {pairs[0][1].jsonl.parent}: {exc}"
        raise OutputError(msg) from None
