"""Decontamination: drop training records that share a word n-gram with an evaluation set.

The driver reads every evaluation set once (`build_index`: the texts of the configured
fields, split into words as `ngrams` does, every n-gram hashed) into one hash table in
the work folder, with a name per evaluation record (`path:line`, or `path: row N`). Each
scan task maps that table read-only and checks the records its filters kept
(`contaminated`): a record with any n-gram in the table is removed as `decontaminated`,
blamed on the evaluation record with the smallest number among those its first matching
n-gram came from, so the verdict and the blame depend only on the data, never on
`--workers`. Pretrain records are checked on their text; SFT, DPO and RL records on every
message's content, whatever `filter_on` says (a leaked question in a user turn counts).
"""
from __future__ import annotations

import functools
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson
import polars as pl
import pyarrow as pa

from mixprep.build.encode import string_buffers
from mixprep.build.ngrams import NgramTable, build_table, first_matches, ngram_hashes
from mixprep.build.records import block_records
from mixprep.config.schema import DecontaminationSpec, EvalSet
from mixprep.errors import RecordError
from mixprep.sources.plan import ScanTask, SourceFile, resolve_files
from mixprep.sources.readers import LineBlock, line_number, read_blocks

REASON = "decontaminated"
ROLE = "decontaminate"
"""The role of evaluation files among the manifest's inputs."""


@dataclass(frozen=True)
class EvalFile:
    eval_set: EvalSet
    file: SourceFile


@dataclass(frozen=True)
class DecontIndex:
    """What a scan task needs: the folder holding the table, and n."""

    folder: str
    ngram: int


@dataclass
class EvalSetSummary:
    """For the manifest: what an evaluation set held and how much of it can be matched."""

    files: int = 0
    records: int = 0
    without_ngrams: int = 0
    """Records with fewer than n words in every field: nothing of theirs can match."""
    ngrams: int = 0
    """Distinct n-grams of the set."""
    fields: tuple[str, ...] = ()
    source: str = ""
    """As the manifest describes sources (set by the driver)."""
    matched: dict[str, int] = field(default_factory=dict)
    """Records (training and validation) removed for matching this set, per dataset (filled in after the scan)."""

    def as_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "fields": list(self.fields),
            "files": self.files,
            "records": self.records,
            "records_without_ngrams": self.without_ngrams,
            "ngrams": self.ngrams,
            "removed_records": dict(self.matched),
        }


def eval_files(spec: DecontaminationSpec | None) -> list[EvalFile]:
    """Every evaluation file, in config order (resolved at plan time, like the sources)."""
    if spec is None:
        return []
    return [EvalFile(eval_set, file) for eval_set in spec.eval_sets for file in resolve_files(eval_set.source, eval_set.name)]


# -- the index (driver) ------------------------------------------------------------------

def build_index(spec: DecontaminationSpec, files: list[EvalFile], work: str) -> tuple[DecontIndex, dict[str, EvalSetSummary]]:
    """Read the evaluation sets and write their n-gram table into `<work>/decontaminate/`."""
    folder = os.path.join(work, "decontaminate")
    os.makedirs(folder, exist_ok=True)
    summaries = {s.name: EvalSetSummary(fields=s.fields) for s in spec.eval_sets}
    names: list[str] = []  # per evaluation record: "set\0where"
    hashes: list[np.ndarray] = []
    ids: list[np.ndarray] = []
    for item in files:
        summary = summaries[item.eval_set.name]
        summary.files += 1
        segments, owners, first_id = [], [], len(names)
        for where, record in _eval_records(item):
            for text in _segments(record, item.eval_set, where):
                segments.append(text)
                owners.append(len(names))
            names.append(f"{item.eval_set.name}\0{where}")
        summary.records += len(names) - first_id
        data, offsets = string_buffers(pa.array(segments, type=pa.large_string()))
        file_hashes, counts = ngram_hashes(data, offsets, spec.ngram)
        owner = np.repeat(np.asarray(owners, dtype=np.int64), counts)
        summary.without_ngrams += (len(names) - first_id) - _distinct(owner)
        hashes.append(file_hashes.copy())
        ids.append(owner)
    for name, summary in summaries.items():
        in_set = [h for h, item in zip(hashes, files, strict=True) if item.eval_set.name == name]
        summary.ngrams = _distinct(np.concatenate(in_set)) if in_set else 0
    every_hash = np.concatenate(hashes) if hashes else np.zeros(0, dtype=np.uint64)
    table = build_table(every_hash, np.concatenate(ids) if ids else np.zeros(0, dtype=np.int64))
    for part in ("keys", "values", "bits"):
        np.save(os.path.join(folder, f"{part}.npy"), getattr(table, part))
    with open(os.path.join(folder, "records.json"), "wb") as handle:
        handle.write(orjson.dumps(names))
    return DecontIndex(folder, spec.ngram), summaries


def _distinct(values: np.ndarray) -> int:
    """How many distinct values (a sort: np.unique's hash path is slower on 64-bit hashes)."""
    ordered = np.sort(values)
    return int(len(ordered) > 0) + int(np.count_nonzero(ordered[1:] != ordered[:-1]))


def _eval_records(item: EvalFile) -> Iterator[tuple[str, dict[str, Any]]]:
    """(where, record) for each record of one evaluation file; a line that is not a JSON
    object stops the build (an evaluation set read wrong would let leaks through)."""
    file = item.file
    task = ScanTask(task_id=0, dataset=-1, dataset_name=item.eval_set.name, role="main", file=file, start=0, end=file.size)
    next_line, next_offset = 1, 0  # where the next line block starts when blocks follow each other
    for block in read_blocks(task):
        records = block_records(block)
        if isinstance(block, LineBlock):
            first = block.first_line or (next_line if block.base_offset == next_offset else line_number(file, block.base_offset))
            wheres = _line_wheres(block, file, first)
            next_line, next_offset = first + block.data.count(b"\n"), block.base_offset + len(block.data)
        else:
            wheres = [f"{file.path}: row {int(p)}" for p in block.positions]
        for (problem, record), where in zip(records, wheres, strict=True):
            if problem is not None:
                msg = f"{where}: {problem} (evaluation set {item.eval_set.name!r} of metadata.decontaminate)"
                raise RecordError(msg)
            yield where, record


def _line_wheres(block: LineBlock, file: SourceFile, first: int) -> list[str]:
    """`path:line` of each record of a block whose first byte is on line `first`."""
    newlines = np.flatnonzero(np.frombuffer(block.data, dtype=np.uint8) == 10)
    lines = first + np.searchsorted(newlines, block.starts)
    return [f"{file.path}:{int(line)}" for line in lines]


def _segments(record: dict[str, Any], eval_set: EvalSet, where: str) -> list[str]:
    """The texts of a record's fields: n-grams never span two of them."""
    texts: list[str] = []
    for name in eval_set.fields:
        value: Any = record
        for part in name.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        if value is None:
            msg = (
                f"{where}: missing field {name!r} (evaluation set {eval_set.name!r}; "
                "set `field:` in metadata.decontaminate to the field, or fields, holding its text)"
            )
            raise RecordError(msg)
        texts.extend(_texts_of(value, name, eval_set, where))
    return texts


def _texts_of(value: Any, name: str, eval_set: EvalSet, where: str) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return [str(value)]
    if isinstance(value, list):
        texts = []
        for item in value:
            if isinstance(item, dict) and isinstance(item.get("content"), str):
                texts.append(item["content"])
            elif isinstance(item, str):
                texts.append(item)
            elif isinstance(item, (int, float)) and not isinstance(item, bool):
                texts.append(str(item))
            else:
                break
        else:
            return texts
    kind = type(value).__name__
    msg = f"{where}: field {name!r} must be text, a list of texts or a list of messages, got {kind} (evaluation set {eval_set.name!r})"
    raise RecordError(msg)


# -- the check (scan tasks) ----------------------------------------------------------------

@functools.lru_cache(maxsize=2)
def _table(folder: str) -> NgramTable:
    """The table, mapped read-only: every worker of a machine shares the same pages."""
    return NgramTable(*(np.load(os.path.join(folder, f"{part}.npy"), mmap_mode="r") for part in ("keys", "values", "bits")))


@functools.lru_cache(maxsize=2)
def _names(folder: str) -> list[str]:
    with open(os.path.join(folder, "records.json"), "rb") as handle:
        return orjson.loads(handle.read())


def contaminated(texts: pl.Series, rows: np.ndarray, index: DecontIndex) -> np.ndarray:
    """(id, start, end) per row of `texts` in `rows`: the evaluation record it matched and
    the byte span of the first shared n-gram in its text; id -1 for a clean row."""
    data, offsets = string_buffers(texts.to_arrow())
    return first_matches(data, offsets, rows, index.ngram, _table(index.folder))


def match_description(texts: pl.Series, row: int, match: np.ndarray, index: DecontIndex) -> dict[str, str]:
    """`matched` of a rejected record: the evaluation set and record, and the shared words as written."""
    eval_set, where = _names(index.folder)[int(match[0])].split("\0", 1)
    text = texts[row].encode()
    return {"eval_set": eval_set, "eval_record": where, "ngram": text[int(match[1]) : int(match[2])].decode()}


def eval_set_of(index: DecontIndex, eval_id: int) -> str:
    return _names(index.folder)[eval_id].split("\0", 1)[0]
