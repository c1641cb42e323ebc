"""What the report shows, read from a finished build: its manifests and its output files.

Counts come from the manifests; lengths, bytes per source, languages and sample records
from the outputs themselves (the Parquet sidecar's columns and the `.idx` offsets), so a
report can be redrawn from the folder alone (`mixprep report`).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from mixprep.manifest_file import read_manifest
from mixprep.serve.index import open_index

SAMPLES_PER_SOURCE = 3
SAMPLE_CHARS = 600
SAMPLE_SCAN_RECORDS = 200_000  # how far into the JSONL to look for each source's samples


@dataclass(frozen=True)
class SplitData:
    split: str
    manifest: dict[str, Any]
    length_unit: str
    """What `lengths` count: characters of the text (pretrain) or bytes of the JSON line."""
    lengths: dict[str, np.ndarray]
    bytes_by_source: dict[str, int]
    languages: dict[str, dict[str, int]] | None
    """Per source: records per language (when the build annotated languages)."""
    language_scores: dict[str, np.ndarray] | None
    samples: dict[str, list[str]]


def mixture_manifests(out_dir: Path, phase: str, name: str) -> dict[str, dict[str, Any]]:
    """split -> manifest of one mixture's finished splits in the folder (train first)."""
    found = {}
    for split in ("train", "validation"):
        manifest = read_manifest(out_dir / f"{phase}_{name}_{split}.manifest.json")
        if manifest is not None:
            found[split] = manifest
    return found


def split_data(out_dir: Path, manifest: dict[str, Any], characters: dict[str, np.ndarray] | None = None) -> SplitData:
    """`characters`: per source, the characters of each text written (pretrain), when the
    caller knows them; otherwise they are counted from the sidecar's texts."""
    output = manifest["output"]
    jsonl, parquet = out_dir / output["jsonl"], out_dir / output["parquet"]["file"]
    pretrain = manifest["record_schema"] == "pretrain"
    columns = pl.read_parquet_schema(parquet)
    wanted = [pl.col("source")]
    if pretrain and characters is None:
        wanted.append(pl.col("text").str.len_chars().alias("length"))
    annotated = "language" in columns
    if annotated:
        wanted += [pl.col("language"), pl.col("language_score")]
    frame = pl.scan_parquet(parquet).select(wanted).collect()
    offsets = open_index(out_dir / output["index"]["file"], jsonl).offsets
    line_bytes = np.diff(offsets.astype(np.int64))
    frame = frame.with_columns(pl.Series("bytes", line_bytes))
    if not pretrain:
        frame = frame.with_columns(pl.col("bytes").alias("length"))
    names = list(manifest["sources"])
    by_source = {name: frame.filter(pl.col("source") == name) for name in names}
    languages = scores = None
    if annotated:
        languages = {n: _language_counts(f) for n, f in by_source.items()}
        scores = {n: f["language_score"].to_numpy() for n, f in by_source.items()}
    return SplitData(
        split=manifest["split"],
        manifest=manifest,
        length_unit="characters of text" if pretrain else "bytes of the JSON record",
        lengths=characters if characters is not None else {n: f["length"].to_numpy() for n, f in by_source.items()},
        bytes_by_source={n: int(f["bytes"].sum()) for n, f in by_source.items()},
        languages=languages,
        language_scores=scores,
        samples=_samples(jsonl, offsets, frame["source"], names),
    )


def _language_counts(frame: pl.DataFrame) -> dict[str, int]:
    counts = frame.group_by("language").len().sort(["len", "language"], descending=[True, False])
    return dict(counts.iter_rows())


def _samples(jsonl: Path, offsets: np.ndarray, sources: pl.Series, names: list[str]) -> dict[str, list[str]]:
    """The first few records of each source in output order, as JSON text, cut to SAMPLE_CHARS."""
    samples: dict[str, list[str]] = {name: [] for name in names}
    head = sources.head(SAMPLE_SCAN_RECORDS).to_list()
    with open(jsonl, "rb") as handle:
        for row, source in enumerate(head):
            if len(samples[source]) >= SAMPLES_PER_SOURCE:
                continue
            handle.seek(int(offsets[row]))
            line = handle.read(min(int(offsets[row + 1] - offsets[row]), 4 * SAMPLE_CHARS)).decode("utf-8", errors="replace")
            samples[source].append(line.rstrip("\n") if len(line) <= SAMPLE_CHARS else line[:SAMPLE_CHARS] + " …")
            if all(len(v) >= SAMPLES_PER_SOURCE for v in samples.values()):
                break
    return samples
