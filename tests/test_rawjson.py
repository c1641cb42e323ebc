"""Kept texts read back from plain JSONL inputs (build/rawjson.py): the raw string is found
where Arrow's reader found the field, decodes to the same bytes, and a build that reads
back writes exactly what a build that copies every text to the scan file writes."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import orjson
import polars as pl
import pytest
from helpers import build, mixture, read_jsonl
from hypothesis import given, settings
from hypothesis import strategies as st

from mixprep.build import readback, records, scan
from mixprep.build.rawjson import decode_rows, locate_field
from mixprep.build.strictjson import text_column
from mixprep.errors import SourceError
from mixprep.sources.readers import LineBlock


def located(lines: list[bytes], key: str = "text") -> list[bytes | None]:
    data = b"\n".join(lines)
    starts, ends, at = [], [], 0
    for line in lines:
        starts.append(at)
        ends.append(at + len(line))
        at += len(line) + 1
    first, last = locate_field(data, np.array(starts), np.array(ends), key)
    return [None if s < 0 else data[s:e] for s, e in zip(first.tolist(), last.tolist(), strict=True)]


def test_the_field_is_found_past_nested_values_and_odd_spacing() -> None:
    lines = [
        b'{"text": "plain"}',
        b'{"id": {"text": "inner", "x": [1, {"t": "]"}]}, "text":"outer \\" quote"}',
        b' { "n" : -1.5e3 , "ok" : true , "text" : "a\\\\b" , "z" : null } ',
        b'{"texts": "no", "tex": "no", "text": "\\u00e9\\ud83d\\ude00"}',
        b'{"a": "}{\\"text\\": \\"fake\\"", "text": "' + b"long " * 40 + b'"}',
    ]
    assert located(lines) == [
        b"plain",
        b'outer \\" quote',
        b"a\\\\b",
        b"\\u00e9\\ud83d\\ude00",
        b"long " * 40,
    ]


def test_ambiguous_lines_are_left_to_the_scan_file() -> None:
    lines = [
        b'{"text": "one", "text": "two"}',  # repeated key
        b'{"te\\u0078t": "escaped key"}',  # an escaped key may spell it
        b'{"text": 5}',  # not a string
        b'{"other": "x"}',  # missing
        b'["text", "x"]',  # not an object
        b'{"text": "unterminated}',
    ]
    assert located(lines) == [None] * len(lines)


texts = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=60) | st.sampled_from(
    ["", "\\", '"', "\x00\x1f\x7f", "\u2028\ufeff", "😀 é /", "\\u0041"]
)


def read_texts(lines: list[bytes], key: str = "text") -> list[str] | None:
    """text_column over the lines, or None where it leaves the block to Arrow's reader."""
    data = b"\n".join(lines)
    lengths = np.array([len(line) for line in lines], dtype=np.int64)
    starts = np.concatenate([[0], np.cumsum(lengths + 1)[:-1]]).astype(np.int64)
    column = text_column(data, starts, starts + lengths, key)
    if column is None:
        return None
    spans = [data[s:e] for s, e in column.spans.tolist()]
    assert spans == located(lines, key)  # where the write stage reads each text back
    texts = column.values.to_pylist()
    assert pl.Series(column.views).to_list() == column.views.to_pylist() == texts  # the filters' copy-free view
    return texts


def usual_texts(lines: list[bytes]) -> list[str] | None:
    """What a block's usual path reads (Arrow's reader, else line by line): None if any line is bad."""
    data = b"\n".join(lines) + b"\n"
    lengths = np.array([len(line) for line in lines], dtype=np.int64)
    starts = np.concatenate([[0], np.cumsum(lengths + 1)[:-1]]).astype(np.int64)
    column = records._fast_text_column(data, "text", len(lines))
    if column is not None and column.null_count == 0:
        return column.to_pylist()
    parsed = records._pretrain_slow(LineBlock(data, 0, None, starts, starts + lengths), "text")
    return None if parsed.bad else parsed.values.to_pylist()


def test_the_strict_reader_reads_what_arrow_reads() -> None:
    lines = [
        b'{"text": "plain"}',
        b'{"id": {"text": "inner", "x": [1, {"t": "]"}]}, "text":"outer \\" quote"}',
        b' { "n" : -1.5e3 , "ok" : true , "text" : "a\\\\b" , "z" : null, "e": [], "o": {} }\r',
        b'{"texts": "no", "tex": "no", "text": "\\u00e9\\ud83d\\ude00 \\/ \\t\\u0000"}',
        b'{"text": "", "deep": [[[[{"a": [0, -0, 1E+2, 0.25e-1]}]]]]}',
    ]
    assert read_texts(lines) == ["plain", 'outer " quote', "a\\b", "é😀 / \t\x00", ""]
    assert read_texts(lines) == usual_texts(lines)


@pytest.mark.parametrize(
    "line",
    [
        b'{"text": "one", "text": "two"}',  # repeated key
        b'{"te\\u0078t": "escaped key"}',  # an escaped key may spell it
        b'{"text": 5}', b'{"text": null}', b'{"other": "x"}', b'["text", "x"]', b"",
        b'{"text": "a",}', b'{"text": "a", "x": [1,]}', b'{"text": "a", "x": 01}', b'{"text": "a", "x": 1.}',
        b'{"text": "a", "x": -}', b'{"text": "a", "x": 1e309}', b'{"text": "a", "x": tru}', b'{"text": "a", "x": NaN}',
        b'{"text": "a" "x": 1}',
        b'{"text": "a", "x": {"a" 1}}', b'{"text": "a", "x": [1 2]}', b'{"text": "a"} x', b'{"text": "a"}{"text": "b"}',
        b'{"text": "raw\ttab"}', b'{"text": "\\ud800 lone"}', b'{"text": "\\udc00"}', b'{"text": "\\x41"}',
        b'{"text": "\\u12g4"}', b'{"text": "\xff invalid UTF-8"}', b'{"text": "unterminated}',
        b'{"text": "a", "x": ' + b"[" * 70 + b"]" * 70 + b"}",  # deeper than the walk follows
    ],
)
def test_the_strict_reader_leaves_anything_unusual_to_the_usual_path(line: bytes) -> None:
    assert read_texts([b'{"text": "fine"}', line]) is None


# Three-digit exponents are left to Arrow's reader (it refuses 1e309): not generated here.
finite_floats = st.floats(allow_nan=False, allow_infinity=False).filter(lambda x: x == 0 or 1e-99 < abs(x) < 1e99)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | finite_floats | texts,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(texts, inner, max_size=3),
    max_leaves=8,
)


@settings(max_examples=300, deadline=None)
@given(
    rows=st.lists(st.tuples(st.dictionaries(texts, json_values, max_size=3), texts), min_size=1, max_size=5),
    writer=st.sampled_from(["json", "json-utf8", "orjson", "spaced"]),
    cut=st.integers(0, 200),
    flip=st.integers(0, 255),
)
def test_whatever_the_strict_reader_accepts_arrow_reads_the_same(rows, writer, cut, flip) -> None:  # type: ignore[no-untyped-def]
    lines = []
    for extra, text in rows:
        record = {k: v for k, v in extra.items() if k != "text"} | {"text": text}
        if writer == "json":
            lines.append(json.dumps(record).encode())
        elif writer == "json-utf8":
            lines.append(json.dumps(record, ensure_ascii=False).encode())
        elif writer == "orjson":
            lines.append(orjson.dumps(record))
        else:
            lines.append(json.dumps(record, indent=None, separators=(" ,  ", " : ")).encode())
    expected = [text for _, text in rows]
    assert usual_texts(lines) == expected
    strict = read_texts(lines)
    assert strict == expected or strict is None and not all(k.isascii() and k.isalnum() for extra, _ in rows for k in extra)
    # One byte changed: the strict reader may refuse the line, but never reads it differently.
    line = bytearray(lines[-1])
    line[cut % len(line)] = flip
    lines[-1] = bytes(line)
    strict = read_texts(lines)
    if strict is not None:
        assert strict == usual_texts(lines)


def decoded(raw: bytes, size: int) -> bytes | None:
    source = np.frombuffer(raw, dtype=np.uint8)
    out = np.zeros(size, dtype=np.uint8)
    failed = decode_rows(source, np.array([0]), np.array([len(raw)]), out, np.array([0, size]), np.array([0]))
    return None if failed >= 0 else out.tobytes()


@settings(max_examples=300, deadline=None)
@given(text=texts)
def test_decoding_matches_every_json_writer(text: str) -> None:
    expected = text.encode()
    for encoded in (
        json.dumps(text),
        json.dumps(text, ensure_ascii=False),
        orjson.dumps(text).decode(),
        json.dumps(text).replace("/", "\\/"),
    ):
        raw = encoded.encode()[1:-1]
        assert decoded(raw, len(expected)) == expected


def test_a_string_that_does_not_decode_to_its_scanned_length_is_refused() -> None:
    assert decoded(b"abc", 4) is None
    assert decoded(b"ab\\u00e9", 3) is None  # 4 bytes decoded, 3 expected
    assert decoded(b"\\q", 1) is None


def corpus(folder: Path, *, repeated_key: bool = True) -> list[dict[str, object]]:
    """600 records written by four JSON writers, one with an escaped key and (Arrow then
    reads its block line by line) one that repeats the key."""
    rows: list[dict[str, object]] = []
    samples = ["plain words here", 'quote " and \\ backslash', "tab\tnew\nline\r", "\x01\x1f control", "é😀 \u2028", "a/b"]
    for i in range(600):
        text = f"{samples[i % len(samples)]} #{i} " * (1 + i % 7)
        rows.append({"id": i, "meta": {"text": "nested decoy", "k": [i, "]"]}, "text": text})
    lines = []
    for i, row in enumerate(rows):
        style = i % 4
        if style == 0:
            lines.append(json.dumps(row))
        elif style == 1:
            lines.append(json.dumps(row, ensure_ascii=False, separators=(",", ":")))
        elif style == 2:
            lines.append(orjson.dumps(row).decode().replace("/", "\\/"))
        else:
            lines.append(json.dumps(row, indent=None).replace(": ", " :  "))
    lines[10] = '{"te\\u0078t": "escaped key record", "id": 10}'
    if repeated_key:
        lines[20] = '{"text": "first", "text": "second copy wins"}'
    (folder / "data").mkdir(parents=True, exist_ok=True)
    (folder / "data" / "a.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return rows


def test_reading_back_writes_the_bytes_copying_writes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    corpus(tmp_path)
    config = mixture(tmp_path, [{"name": "a", "mix_ratio": 1.0, "source": "data/a.jsonl"}], total_samples=900, shuffle_bucket_mb=1)
    monkeypatch.setattr("mixprep.sources.readers.BLOCK_BYTES", 16 * 1024)  # the repeated key spoils one block only
    decoded_rows: list[int] = []
    real_decode = readback.decode_rows

    def counted(source, starts, *args):  # type: ignore[no-untyped-def]
        decoded_rows.append(len(starts))
        return real_decode(source, starts, *args)

    monkeypatch.setattr(readback, "decode_rows", counted)
    read_back = build(config, tmp_path / "read-back", workers=1)
    assert sum(decoded_rows) > 600  # most of the 900 (with repeats) came from the input
    monkeypatch.setattr(scan.ScanJob, "reads_back", property(lambda self: False))
    copied = build(config, tmp_path / "copied", workers=1)
    for split in read_back.files:
        assert read_back.files[split].read_bytes() == copied.files[split].read_bytes()
    texts = [r["text"] for r in read_jsonl(read_back.files["train"])]
    assert "escaped key record" in texts and "second copy wins" in texts and "first" not in texts


def test_most_kept_texts_are_not_copied_to_the_scan_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    corpus(tmp_path, repeated_key=False)
    config = mixture(tmp_path, [{"name": "a", "mix_ratio": 1.0, "source": "data/a.jsonl"}])
    seen: list[int] = []
    real = scan.scan_task

    def measured(job: scan.ScanJob) -> scan.ScanResult:
        result = real(job)
        seen.append(os.path.getsize(result.values_path))
        spans = np.load(scan.value_spans_path(job.work_dir, job.task.task_id))
        seen.append(int(spans["in_input"].sum()))
        return result

    monkeypatch.setattr(scan, "scan_task", measured)
    monkeypatch.setattr("mixprep.build.driver.scan_task", measured)
    build(config, tmp_path / "out")
    spilled_bytes, read_back = seen
    assert read_back == 599  # all but the escaped key
    assert spilled_bytes == len("escaped key record")


def build_with_an_edit_before_the_write(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, edit: Callable[[Path], None]) -> Path:
    """Build the corpus, calling `edit(input)` after the scan and before the write stage."""
    from mixprep.build import driver

    corpus(tmp_path, repeated_key=False)
    source = tmp_path / "data" / "a.jsonl"
    config = mixture(tmp_path, [{"name": "a", "mix_ratio": 1.0, "source": "data/a.jsonl"}])
    real = driver.select_sources

    def edit_then_select(*args, **kwargs):  # type: ignore[no-untyped-def]
        edit(source)
        return real(*args, **kwargs)

    monkeypatch.setattr(driver, "select_sources", edit_then_select)
    out = tmp_path / "out"
    try:
        build(config, out)
    finally:
        assert not (out / "pretrain_t_train.jsonl").exists()
    return out


def test_an_input_edited_between_scan_and_write_fails_the_build(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def same_size_and_mtime(source: Path) -> None:
        stat = source.stat()
        # Same file size, and the mtime put back: only the texts' decoded lengths tell.
        source.write_bytes(source.read_bytes().replace(b"plain words here", b"plain\\twords her"))
        os.utime(source, ns=(stat.st_atime_ns, stat.st_mtime_ns))

    with pytest.raises(SourceError, match=r"a\.jsonl: the text at byte \d+ is not what the scan read; the file changed during the build"):
        build_with_an_edit_before_the_write(tmp_path, monkeypatch, same_size_and_mtime)


def test_an_input_rewritten_during_the_write_stage_fails_the_build(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def new_mtime(source: Path) -> None:
        source.write_bytes(source.read_bytes().replace(b"plain words here", b"PLAIN WORDS HERE"))  # same size

    with pytest.raises(SourceError, match=r"1 input file\(s\) changed while the build read them"):
        build_with_an_edit_before_the_write(tmp_path, monkeypatch, new_mtime)
