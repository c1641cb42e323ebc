"""Re-check a built output against its manifest and index (`mixprep verify`).

Checks, each reported separately: the manifest exists and matches the file's
size and checksum (sha256 per chunk, hashed on every core; and the whole file's sha256
when the build recorded one); the index header is fresh and its every offset starts a
non-blank line, ending at the file size; the records per source recounted from
the JSONL and from the Parquet sidecar equal the manifest's; the sidecar holds
the same rows in the same order (spot-checked on a seeded sample of rows); a packed split
(`.tokens.bin/.idx`) has the manifest's documents, tokens, dtype and range checksums, and
no id outside the vocabulary.
"""
from __future__ import annotations

import hashlib
import mmap
import os
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.json as pajson
import pyarrow.parquet as pq

from mixprep.build.outputs import SplitFiles
from mixprep.build.packed import PACKED_CHECKSUM
from mixprep.build.writers import CHECKSUM, checksum_record, file_sha256
from mixprep.errors import IndexFormatError
from mixprep.jsonl import load_json_object
from mixprep.manifest_file import MANIFEST_FORMAT, read_manifest
from mixprep.serve.index import open_index
from mixprep.serve.indexed import read_indexed_index

SPOT_CHECK_ROWS = 1000


@dataclass
class VerifyReport:
    path: Path
    records: int = 0
    problems: list[str] = field(default_factory=list)
    checks: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def verify(jsonl: str | Path) -> VerifyReport:
    path = Path(jsonl)
    report = VerifyReport(path)
    if not path.is_file():
        report.problems.append(f"{path}: file not found")
        return report
    # The split's JSONL, or any of its files (the manifest, the index...) naming it by stem.
    stem = next((path.name[: -len(suffix)] for suffix in (".jsonl", ".manifest.json") if path.name.endswith(suffix)), path.stem)
    files = SplitFiles.for_stem(path.parent, stem)
    if not files.jsonl.is_file():
        report.problems.append(f"{path}: not a built split (no {files.jsonl.name} beside it)")
        return report
    path = files.jsonl
    if not files.manifest.exists():
        _check_without_manifest(files, report)
        return report
    manifest = read_manifest(files.manifest)
    problem = _manifest_problem(manifest)
    if problem:
        report.problems.append(f"{files.manifest}: {problem}")
        return report
    assert manifest is not None
    output = manifest["output"]
    report.records = output["records"]
    _check_bytes(path, output, report)
    offsets = _check_index(files, output["records"], report)
    counts = _count_sources(path, report)
    if counts is not None:
        _compare(counts, output["records_by_source"], "JSONL records per source", report)
    _check_sidecar(files, output, offsets, path, report)
    if isinstance(output.get("packed"), dict):
        _check_packed(path.parent, output["packed"], output["records"], report)
    return report


def _manifest_problem(manifest: dict | None) -> str:
    """Why a manifest cannot be checked against, or '' when it can."""
    if manifest is None:
        return f"not a {MANIFEST_FORMAT} manifest (unreadable, or written by another tool or version); rebuild to replace it"
    output = manifest.get("output")
    if not isinstance(output, dict):
        return "malformed manifest: no `output` section"
    for key, kind in (("records", int), ("bytes", int), ("records_by_source", dict), ("checksum", dict)):
        if not isinstance(output.get(key), kind):
            return f"malformed manifest: output.{key} is missing or not a {kind.__name__}"
    return ""


def _check_without_manifest(files: SplitFiles, report: VerifyReport) -> None:
    """A JSONL that mixprep did not build (or whose build never finished): check what can be
    checked without a manifest, and say so."""
    report.checks.append(f"{files.manifest.name} is absent: not built by mixprep, or the build did not finish; "
                         "checking the JSON lines and the index only")
    records = 0
    with open(files.jsonl, "rb") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                load_json_object(line)
            except ValueError as exc:
                report.problems.append(f"{files.jsonl}:{number}: {exc}")
                return
            records += 1
    report.records = records
    report.checks.append(f"{records:,} lines, each a JSON object")
    if files.index.exists():
        _check_index(files, records, report)


def _check_bytes(path: Path, output: dict, report: VerifyReport) -> None:
    size = path.stat().st_size
    if size != output["bytes"]:
        report.problems.append(f"{path}: {size} bytes, manifest says {output['bytes']}")
        return
    checksum = output.get("checksum")
    if not isinstance(checksum, dict) or checksum.get("algorithm") != CHECKSUM:
        report.problems.append(f"{path}: the manifest has no {CHECKSUM} checksum; rebuild with this version of mixprep")
        return
    chunk_bytes, expected = int(checksum["chunk_bytes"]), list(checksum["chunks"])
    starts = range(0, size, chunk_bytes)
    if len(expected) != len(starts):
        report.problems.append(f"{path}: the manifest lists {len(expected)} checksum chunks, the file has {len(starts)}")
        return
    # hashlib releases the GIL on large buffers: one thread per core hashes the chunks.
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        found = list(pool.map(lambda start: _chunk_sha256(path, start, chunk_bytes), starts))
    changed = [i for i, (got, want) in enumerate(zip(found, expected, strict=True)) if got != want]
    if changed:
        i = changed[0]
        report.problems.append(
            f"{path}: {len(changed)} of {len(expected)} checksum chunks differ from the manifest's, the first at bytes "
            f"{i * chunk_bytes:,}-{min((i + 1) * chunk_bytes, size):,}"
        )
        return
    if checksum_record(found, chunk_bytes)["digest"] != checksum["digest"]:
        report.problems.append(f"{path}: the manifest's checksum digest does not match its chunk list")
        return
    report.checks.append(f"checksum matches ({size:,} bytes in {len(found)} chunks)")
    if "sha256" in output:
        digest = file_sha256(path)
        if digest != output["sha256"]:
            report.problems.append(f"{path}: sha256 {digest} differs from the manifest's {output['sha256']}")
        else:
            report.checks.append("sha256 matches")


def _chunk_sha256(path: Path, start: int, length: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        handle.seek(start)
        remaining = length
        while remaining > 0 and (block := handle.read(min(remaining, 8 * 1024 * 1024))):
            digest.update(block)
            remaining -= len(block)
    return digest.hexdigest()


def _check_index(files: SplitFiles, records: int, report: VerifyReport) -> np.ndarray | None:
    try:
        index = open_index(files.index, files.jsonl)
    except (IndexFormatError, OSError) as exc:
        report.problems.append(str(exc) if str(exc).startswith(str(files.index)) else f"{files.index}: {exc}")
        return None
    offsets = np.asarray(index.offsets)
    size = files.jsonl.stat().st_size
    problems = []
    if len(offsets) != records + 1:
        problems.append(f"{len(offsets) - 1} entries, manifest says {records} records")
    if len(offsets) and (offsets[0] != 0 or offsets[-1] != size):
        problems.append(f"offsets span {offsets[0]}..{offsets[-1]}, file has {size} bytes")
    if np.any(np.diff(offsets.astype(np.int64)) <= 0):
        bad = int(np.flatnonzero(np.diff(offsets.astype(np.int64)) <= 0)[0])
        problems.append(f"offsets not increasing at record {bad}")
    if not problems and records:
        with open(files.jsonl, "rb") as handle, mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as data:
            buf = np.frombuffer(data, dtype=np.uint8)
            starts = offsets[1:-1].astype(np.int64)
            not_line_starts = np.flatnonzero(buf[starts - 1] != 10)
            blank = np.flatnonzero(np.isin(buf[offsets[:-1].astype(np.int64)], (10, 13, 32, 9)))
            del buf
        if len(not_line_starts):
            problems.append(f"offset of record {int(not_line_starts[0]) + 1} is not at a line start")
        if len(blank):
            problems.append(f"record {int(blank[0])} starts with whitespace or is blank")
    for problem in problems:
        report.problems.append(f"{files.index}: {problem}")
    if not problems:
        report.checks.append(f"index: {records:,} offsets, each at a line start")
    return offsets if not problems else None


def _count_sources(path: Path, report: VerifyReport) -> Counter | None:
    options = pajson.ParseOptions(explicit_schema=pa.schema([("source", pa.string())]), unexpected_field_behavior="ignore")
    try:
        reader = pajson.open_json(path, read_options=pajson.ReadOptions(block_size=1 << 24), parse_options=options)
        counts: Counter = Counter()
        for batch in reader:
            for entry in batch.column(0).value_counts().to_pylist():
                counts[entry["values"]] += entry["counts"]
    except pa.ArrowInvalid as exc:
        report.problems.append(f"{path}: cannot parse as JSON lines: {exc}")
        return None
    return counts


def _compare(found: Counter, expected: dict[str, int], what: str, report: VerifyReport) -> None:
    expected_nonzero = {k: v for k, v in expected.items() if v}
    if dict(found) != expected_nonzero:
        report.problems.append(f"{what}: found {dict(sorted(found.items()))}, manifest says {dict(sorted(expected_nonzero.items()))}")
    else:
        report.checks.append(f"{what} match the manifest")


def _check_sidecar(files: SplitFiles, output: dict, offsets: np.ndarray | None, path: Path, report: VerifyReport) -> None:
    if not files.parquet.is_file():
        report.problems.append(f"{files.parquet}: missing")
        return
    parquet = pq.ParquetFile(files.parquet)
    rows = parquet.metadata.num_rows
    if rows != output["records"]:
        report.problems.append(f"{files.parquet}: {rows} rows, manifest says {output['records']}")
        return
    sources = parquet.read(columns=["source"]).column(0)
    found = Counter({v["values"]: v["counts"] for v in sources.value_counts().to_pylist()}) if rows else Counter()
    _compare(found, output["records_by_source"], "Parquet rows per source", report)
    if offsets is None or rows == 0:
        return
    sample = np.unique(np.random.default_rng(0).integers(0, rows, size=min(SPOT_CHECK_ROWS, rows)))
    records = _sidecar_rows(parquet, sample)
    with open(path, "rb") as handle, mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as data:
        for row, from_parquet in zip(sample.tolist(), records, strict=True):
            from_jsonl = orjson.loads(data[int(offsets[row]) : int(offsets[row + 1])])
            if any(not _same_value(from_jsonl.get(k), v) for k, v in from_parquet.items() if v is not None):
                report.problems.append(f"{files.parquet}: row {row} differs from JSONL record {row + 1}")
                return
    report.checks.append(f"Parquet rows match JSONL records ({len(sample)} sampled)")


def _sidecar_rows(parquet: pq.ParquetFile, rows: np.ndarray) -> list[dict]:
    """The given rows (sorted), reading only the row groups that hold them."""
    sizes = [parquet.metadata.row_group(i).num_rows for i in range(parquet.metadata.num_row_groups)]
    starts = np.concatenate(([0], np.cumsum(sizes)))
    groups = np.searchsorted(starts, rows, side="right") - 1
    records: list[dict] = []
    for group in np.unique(groups).tolist():
        table = parquet.read_row_group(group)
        local = rows[groups == group] - starts[group]
        records.extend(table.take(pa.array(local)).to_pylist())
    return records


def _same_value(from_jsonl: object, from_parquet: object) -> bool:
    """Equal, or the sidecar kept a mixed-type field as JSON text."""
    if from_jsonl == from_parquet:
        return True
    if isinstance(from_parquet, str):
        try:
            return orjson.loads(from_parquet) == from_jsonl
        except orjson.JSONDecodeError:
            return False
    return False


def _check_packed(folder: Path, packed: dict, records: int, report: VerifyReport) -> None:
    """The packed split against its manifest entry: index, sizes, range digests, id range."""
    bin_path, idx_path = folder / str(packed.get("bin")), folder / str(packed.get("idx"))
    if not bin_path.is_file() or not idx_path.is_file():
        report.problems.append(f"{bin_path}: the manifest lists a packed split, but {bin_path.name} or {idx_path.name} is missing")
        return
    try:
        index = read_indexed_index(idx_path)
    except IndexFormatError as exc:
        report.problems.append(str(exc))
        return
    size = bin_path.stat().st_size
    lengths = np.asarray(index.sequence_lengths, dtype=np.int64)
    facts = {
        "dtype": (index.dtype.name, packed.get("dtype")),
        "documents": (len(lengths), packed.get("documents")),
        "documents (JSONL records)": (len(lengths), records),
        "tokens": (int(lengths.sum()), packed.get("tokens")),
        "bytes": (size, packed.get("bytes")),
    }
    wrong = [f"{what} {found} (manifest: {expected})" for what, (found, expected) in facts.items() if found != expected]
    pointers = np.zeros(len(lengths), dtype=np.int64)
    np.cumsum(lengths[:-1] * index.dtype.itemsize, out=pointers[1:])
    if not np.array_equal(pointers, index.sequence_pointers) or not np.array_equal(index.document_indices, np.arange(len(lengths) + 1)):
        wrong.append("sequence pointers or document indices that do not lay the documents back to back")
    if wrong:
        report.problems.append(f"{idx_path}: {'; '.join(wrong)}")
        return
    checksum = packed.get("checksum") or {}
    if checksum.get("algorithm") != PACKED_CHECKSUM:
        report.problems.append(f"{bin_path}: the manifest has no {PACKED_CHECKSUM} checksum; rebuild with this version of mixprep")
        return
    ends = [int(e) for e in checksum["ends"]]
    ranges = list(zip([0, *ends[:-1]], ends, strict=True))
    dtype = index.dtype
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        found = list(pool.map(lambda r: _range_digest_and_max(bin_path, r[0], r[1], dtype), ranges))
    changed = [i for i, ((got, _), want) in enumerate(zip(found, checksum["chunks"], strict=True)) if got != want]
    if changed or (ends and ends[-1] != size):
        first = ranges[changed[0]] if changed else (0, size)
        report.problems.append(
            f"{bin_path}: {len(changed)} of {len(ranges)} token ranges differ from the manifest's, "
            f"the first at bytes {first[0]:,}-{first[1]:,}"
        )
        return
    top = max((m for _, m in found), default=-1)
    vocab = packed.get("vocab_size")
    if isinstance(vocab, int) and top >= vocab:
        report.problems.append(f"{bin_path}: holds token id {top}, outside the tokenizer's {vocab:,} ids")
        return
    report.checks.append(f"packed split: {len(lengths):,} documents, {int(lengths.sum()):,} tokens, {len(ranges)} range checksums match")


def _range_digest_and_max(path: Path, start: int, end: int, dtype: np.dtype) -> tuple[str, int]:
    with open(path, "rb") as handle:
        handle.seek(start)
        data = handle.read(end - start)
    ids = np.frombuffer(data, dtype=dtype)
    return hashlib.sha256(data).hexdigest(), int(ids.max()) if len(ids) else -1
