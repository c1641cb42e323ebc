"""`verify` re-checks an output against its manifest and index, and catches each kind of damage."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from helpers import build, mixture, texts, write_jsonl

from mixprep.serve.index import HEADER_SIZE
from mixprep.verify import verify

SUFFIXES = (".jsonl", ".parquet", ".idx", ".manifest.json")


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("verify-src")
    write_jsonl(folder / "a.jsonl", texts("a", 300))
    write_jsonl(folder / "b.jsonl", texts("b", 100))
    config = mixture(
        folder,
        [{"name": "a", "mix_ratio": 0.7, "source": "a.jsonl"}, {"name": "b", "mix_ratio": 0.3, "source": "b.jsonl"}],
        total_samples=500,
    )
    return build(config, folder / "out").files["train"]


@pytest.fixture
def output(built: Path, tmp_path: Path) -> Path:
    """A private copy of the built output (copy2 keeps mtimes, so the index stays fresh)."""
    stem = built.name[: -len(".jsonl")]
    for suffix in SUFFIXES:
        shutil.copy2(built.with_name(stem + suffix), tmp_path / (stem + suffix))
    return tmp_path / built.name


def sibling(jsonl: Path, suffix: str) -> Path:
    return jsonl.with_name(jsonl.name[: -len(".jsonl")] + suffix)


def rewrite_keeping_mtime(path: Path, data: bytes) -> None:
    stat = path.stat()
    path.write_bytes(data)
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))


def test_intact_output_passes_every_check(output: Path) -> None:
    report = verify(output)
    assert report.ok, report.problems
    assert report.records == 500
    joined = "\n".join(report.checks)
    for check in (
        "checksum matches",
        "index: 500 offsets",
        "JSONL records per source match",
        "Parquet rows per source match",
        "Parquet rows match JSONL",
    ):
        assert check in joined


def test_flipped_byte_is_caught_by_the_checksum(output: Path) -> None:
    data = bytearray(output.read_bytes())
    position = data.index(b"alpha", len(data) // 2)
    data[position] = ord("A")  # still valid JSON, same size, same line starts
    rewrite_keeping_mtime(output, bytes(data))
    report = verify(output)
    assert not report.ok
    assert any(f"1 of 1 checksum chunks differ from the manifest's, the first at bytes 0-{len(data):,}" in p for p in report.problems), (
        report.problems
    )


def test_truncated_file_is_caught(output: Path) -> None:
    data = output.read_bytes()
    output.write_bytes(data[:-40])
    report = verify(output)
    assert not report.ok
    assert f"{output}: {len(data) - 40} bytes, manifest says {len(data)}" in report.problems
    assert any(p.startswith(str(sibling(output, ".idx"))) for p in report.problems)


def test_wrong_index_offset_is_caught(output: Path) -> None:
    index = sibling(output, ".idx")
    raw = bytearray(index.read_bytes())
    offsets = np.frombuffer(raw, dtype="<u8", offset=HEADER_SIZE).copy()
    offsets[7] += 3
    raw[HEADER_SIZE:] = offsets.tobytes()
    rewrite_keeping_mtime(index, bytes(raw))
    report = verify(output)
    assert not report.ok
    assert f"{index}: offset of record 7 is not at a line start" in report.problems


def test_index_with_wrong_record_count_is_caught(output: Path) -> None:
    index = sibling(output, ".idx")
    raw = index.read_bytes()
    offsets = np.frombuffer(raw, dtype="<u8", offset=HEADER_SIZE)
    shorter = np.delete(offsets, 3)  # one record fewer, still increasing and ending at the size
    header = bytearray(raw[:HEADER_SIZE])
    header[16:24] = (len(shorter) - 1).to_bytes(8, "little")
    rewrite_keeping_mtime(index, bytes(header) + shorter.astype("<u8").tobytes())
    report = verify(output)
    assert not report.ok
    assert any("499 entries, manifest says 500 records" in p for p in report.problems), report.problems


def test_tampered_manifest_count_is_caught(output: Path) -> None:
    manifest_path = sibling(output, ".manifest.json")
    manifest = json.loads(manifest_path.read_text())
    counts = manifest["output"]["records_by_source"]
    assert counts == {"a": 350, "b": 150}
    counts["a"], counts["b"] = 351, 149
    manifest_path.write_text(json.dumps(manifest))
    report = verify(output)
    assert not report.ok
    assert "JSONL records per source: found {'a': 350, 'b': 150}, manifest says {'a': 351, 'b': 149}" in report.problems
    assert any(p.startswith("Parquet rows per source") for p in report.problems)


def test_sidecar_in_another_order_is_caught(output: Path) -> None:
    parquet = sibling(output, ".parquet")
    table = pq.read_table(parquet)
    pq.write_table(table.take(np.arange(table.num_rows)[::-1]), parquet)
    report = verify(output)
    assert not report.ok
    assert any("differs from JSONL record" in p for p in report.problems), report.problems


def test_without_a_manifest_the_lines_and_the_index_are_still_checked(output: Path) -> None:
    sibling(output, ".manifest.json").unlink()
    report = verify(output)
    assert report.ok, report.problems
    assert report.records == 500
    assert report.checks[0].startswith(f"{sibling(output, '.manifest.json').name} is absent: not built by mixprep, or the build")
    assert "500 lines, each a JSON object" in report.checks and any("index: 500 offsets" in c for c in report.checks)


def test_a_foreign_jsonl_with_a_broken_line_is_named_by_line(tmp_path: Path) -> None:
    path = tmp_path / "theirs.jsonl"
    path.write_text('{"text": "a"}\n{"text": "b"}\n{"text": \n')
    report = verify(path)
    assert report.problems == [f"{path}:3: invalid JSON (unexpected end of data: line 2 column 1 (char 10))"]


@pytest.mark.parametrize(
    ("manifest", "problem"),
    [
        ("{not json", "not a mixprep-manifest/1 manifest (unreadable, or written by another tool or version); rebuild to replace it"),
        ('{"format": "mixprep-manifest/1", "output": {"records": 500}}', "malformed manifest: output.bytes is missing or not a int"),
        ('{"format": "mixprep-manifest/1"}', "malformed manifest: no `output` section"),
    ],
)
def test_a_malformed_manifest_is_a_problem_not_a_traceback(output: Path, manifest: str, problem: str) -> None:
    sibling(output, ".manifest.json").write_text(manifest)
    assert verify(output).problems == [f"{sibling(output, '.manifest.json')}: {problem}"]


def test_a_byte_turned_into_a_newline_is_found(output: Path) -> None:
    data = bytearray(output.read_bytes())
    at = data.index(b"alpha", len(data) // 3)
    data[at] = ord("\n")
    rewrite_keeping_mtime(output, bytes(data))
    report = verify(output)
    assert not report.ok and any("checksum chunks differ" in p for p in report.problems), report.problems


def test_missing_file(tmp_path: Path) -> None:
    report = verify(tmp_path / "nothing.jsonl")
    assert report.problems == [f"{tmp_path / 'nothing.jsonl'}: file not found"]


def test_a_split_is_named_by_its_manifest_too(output: Path) -> None:
    manifest = sibling(output, ".manifest.json")
    report = verify(manifest)
    assert report.ok and report.records == 500, report.problems
    lone = manifest.with_name("elsewhere.manifest.json")
    lone.write_bytes(manifest.read_bytes())
    assert verify(lone).problems == [f"{lone}: not a built split (no elsewhere.jsonl beside it)"]
