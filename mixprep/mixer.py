"""`DatasetMixer`: the seed's Python API over the build engine.

    mixer = DatasetMixer.from_yaml("configs/toy_mixture.yaml")
    mixer.validate_mixture()        # never raises for a bad mixture
    mixer.prepare_dataset(output_file="dataset/toy_train.jsonl", split="train")
"""
from __future__ import annotations

import glob
import os
from pathlib import Path
from typing import Any

from mixprep.build.driver import BuildOptions, BuildResult, build, dry_run
from mixprep.build.outputs import OUTPUT_SUFFIXES, SplitFiles
from mixprep.config.load import load_mixture
from mixprep.config.schema import MixtureConfig
from mixprep.errors import ConfigError

DEFAULT_OUTPUT_DIR = Path("dataset")


class DatasetMixer:
    def __init__(self, config: MixtureConfig) -> None:
        self.config = config

    @classmethod
    def from_yaml(cls, path: str | os.PathLike[str]) -> DatasetMixer:
        return cls(load_mixture(path))

    def validate_mixture(self) -> dict[str, Any]:
        """`{"is_valid", "total_ratio", "errors", "datasets"}`; reports, never raises."""
        datasets = {}
        for d in self.config.datasets:
            datasets[d.name] = {
                "mix_ratio": d.mix_ratio,
                "max_samples": d.max_samples,
                "text_field": d.text_field,
                "filters": {name: str(value) if not isinstance(value, (int, float, str, bool)) else value for name, value in d.filters},
                **_local_files(d.source),
            }
        return {
            "is_valid": self.config.is_valid,
            "total_ratio": round(self.config.total_ratio, 12),
            "errors": list(self.config.problems),
            "datasets": datasets,
        }

    def output_dir(self, output_dir: str | os.PathLike[str] | None = None) -> Path:
        if output_dir is not None:
            return Path(output_dir)
        return self.config.output_dir or DEFAULT_OUTPUT_DIR

    def output_path(self, split: str = "train", output_dir: str | os.PathLike[str] | None = None) -> Path:
        return self.output_dir(output_dir) / f"{self.config.stem(split)}.jsonl"

    def build(
        self,
        output_dir: str | os.PathLike[str] | None = None,
        splits: tuple[str, ...] | None = None,
        workers: int = 1,
        force: bool = False,
        **options: Any,
    ) -> BuildResult:
        return build(
            self.config,
            BuildOptions(output_dir=self.output_dir(output_dir), splits=splits, workers=workers, force=force, **options),
        )

    def dry_run(self, output_dir: str | os.PathLike[str] | None = None, workers: int = 1, **options: Any) -> BuildResult:
        return dry_run(self.config, BuildOptions(output_dir=self.output_dir(output_dir), workers=workers, **options))

    def prepare_dataset(
        self, output_file: str | os.PathLike[str], split: str = "train", cache_dir: str | None = None, workers: int = 1
    ) -> str:
        """Build one split and place it at `output_file` (with its sidecars beside it).

        `cache_dir` is accepted for the seed's signature; builds need no cache.
        """
        split = "validation" if split in ("val", "valid") else split
        target = Path(output_file)
        if target.suffix != ".jsonl":
            msg = f"output_file must end in .jsonl, got {target}"
            raise ConfigError(msg)
        result = self.build(output_dir=target.parent, splits=(split,), workers=workers)
        built = result.files[split]
        if built.resolve() != target.resolve():
            _link_outputs(SplitFiles.for_stem(built.parent, built.name[: -len(".jsonl")]), target)
        return str(target)


def _local_files(source: Any) -> dict[str, int | None]:
    """File count and size of a local source; None for hub and remote ones (not listed offline)."""
    if getattr(source, "hub", None) or any("://" in p for p in source.patterns):
        return {"files": None, "bytes": None}
    files = sorted({m for p in source.patterns for m in glob.glob(p, recursive=True) if os.path.isfile(m)})
    return {"files": len(files), "bytes": sum(os.path.getsize(f) for f in files)}


def _link_outputs(built: SplitFiles, target: Path) -> None:
    """Give a build's files the name the caller asked for (hard links: no copy, same bytes).

    As in `writers.commit`: the old manifest goes first and the new one comes last, so an
    interruption never pairs a manifest with other files."""
    import shutil

    stem = str(target)[: -len(".jsonl")]
    Path(stem + OUTPUT_SUFFIXES[-1]).unlink(missing_ok=True)
    for src, suffix in zip(built.all(), OUTPUT_SUFFIXES, strict=True):
        dst = Path(stem + suffix)
        tmp = dst.with_name(dst.name + ".tmp-link")
        tmp.unlink(missing_ok=True)
        try:
            os.link(src, tmp)
        except OSError:  # another file system: copy, keeping the mtime the index records
            shutil.copy2(src, tmp)
        os.replace(tmp, dst)
