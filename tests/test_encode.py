"""The compiled JSON-line encoder against polars' json_encode, which earlier versions wrote with."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from mixprep.build.encode import copy_lines, encode_lines, escaped, line_lengths, string_buffers

# Every byte that JSON escapes, plus the characters serde_json leaves alone on purpose.
ODD = "".join(chr(i) for i in range(0x20)) + '"\\/\x7f\u2028\u2029é日本😀\ufeff'


def polars_lines(texts: list[str], sources: list[str]) -> bytes:
    frame = pl.DataFrame({"text": texts, "source": sources}, schema={"text": pl.String, "source": pl.String})
    encoded = frame.select(pl.struct(pl.all()).struct.json_encode()).to_series().to_list()
    return "".join(line + "\n" for line in encoded).encode()


def encode(texts: list[str], datasets: list[int], names: list[str]) -> bytes:
    array = pa.array(texts, pa.large_string())
    lengths = np.zeros(len(texts), dtype=np.uint64)
    for d, name in enumerate(names):  # the scan counts per source, one source per task
        mine = np.array([i for i, x in enumerate(datasets) if x == d], dtype=np.int64)
        if len(mine):
            lengths[mine] = line_lengths(*string_buffers(array.take(pa.array(mine))), name)
    offsets = np.zeros(len(texts) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    out = np.zeros(int(offsets[-1]), dtype=np.uint8)
    data, value_offsets = string_buffers(array)
    encode_lines(data, value_offsets, np.array(datasets, dtype=np.int32), names, out, offsets)
    return out.tobytes()


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(st.text(alphabet=st.one_of(st.sampled_from(ODD), st.characters(codec="utf-8")), max_size=120), st.integers(0, 2)),
        max_size=30,
    ),
)
@example([("", 0), ('"', 1), ("\\", 2), ("\x00\x1f\x08\x0c", 0)])
def test_lines_equal_polars_json_encode(records: list[tuple[str, int]]) -> None:
    names = ["web", 'a "quoted"\\ name\n', "日本"]
    texts = [t for t, _ in records]
    datasets = [d for _, d in records]
    assert encode(texts, datasets, names) == polars_lines(texts, [names[d] for d in datasets])


def test_escaped_matches_json_string_bodies() -> None:
    expected = polars_lines([ODD], ["s"])[len(b'{"text":"') : -len(b'","source":"s"}\n')]
    assert escaped(ODD) == expected
    assert escaped("\x01") == b"\\u0001" and escaped("\n") == b"\\n" and escaped("é") == "é".encode()


def test_string_buffers_of_a_sliced_array_start_at_zero() -> None:
    array = pa.array(["skip", "ab", "", "cde"], pa.large_string()).slice(1)
    data, offsets = string_buffers(array)
    assert data.tobytes() == b"abcde" and offsets.tolist() == [0, 2, 2, 5]


def test_copy_lines() -> None:
    values = np.frombuffer(b'{"a":1}{"b":22}', dtype=np.uint8)
    offsets = np.array([0, 7, 15], dtype=np.int64)
    out = np.zeros(17, dtype=np.uint8)
    copy_lines(values, offsets, out, np.array([0, 8, 17], dtype=np.int64))
    assert out.tobytes() == b'{"a":1}\n{"b":22}\n'


def test_a_line_whose_slot_has_the_wrong_length_is_refused() -> None:
    data, value_offsets = string_buffers(pa.array(["abc"], pa.large_string()))
    out = np.zeros(64, dtype=np.uint8)
    try:
        encode_lines(data, value_offsets, np.zeros(1, dtype=np.int32), ["s"], out, np.array([0, 10], dtype=np.int64))
    except AssertionError as exc:
        assert "differs from the length counted at scan time" in str(exc)
    else:
        msg = "a wrong slot length went unnoticed"
        raise AssertionError(msg)


@pytest.mark.parametrize("text", ["abc", "a\nb\x01" * 20, "x" * 100])
def test_a_slot_too_short_is_refused_before_anything_is_written_past_it(text: str) -> None:
    """The kernels copy with memcpy: a slot shorter than its line (a bug) must fail the
    call, never write into the next line or past the buffer."""
    data, value_offsets = string_buffers(pa.array([text], pa.large_string()))
    needed = int(line_lengths(data, value_offsets, "s")[0])
    for slot in (needed - 1, needed // 2, 12):
        out = np.full(needed + 8, 0xEE, dtype=np.uint8)
        with pytest.raises(AssertionError, match="differs from the length counted at scan time"):
            encode_lines(data, value_offsets, np.zeros(1, dtype=np.int32), ["s"], out, np.array([0, slot], dtype=np.int64))
        assert (out[slot:] == 0xEE).all()
    short_buffer = np.zeros(needed - 1, dtype=np.uint8)
    with pytest.raises(AssertionError):  # a slot that ends past the buffer
        encode_lines(data, value_offsets, np.zeros(1, dtype=np.int32), ["s"], short_buffer, np.array([0, needed], dtype=np.int64))


def test_lines_past_the_buffer_are_refused() -> None:
    values = np.frombuffer(b'{"a":1}{"b":22}', dtype=np.uint8)
    with pytest.raises(AssertionError, match="differs"):
        copy_lines(values, np.array([0, 7, 15], dtype=np.int64), np.zeros(10, dtype=np.uint8), np.array([0, 8, 17], dtype=np.int64))


def test_arrow_arrays_from_numpy_buffers_equal_pa_array() -> None:
    from mixprep.build import arrays

    keep = np.array([True, False, True, True, False, False, True, False, True], dtype=bool)
    assert arrays.mask(keep).equals(pa.array(keep))
    rows = np.array([5, 0, 3], dtype=np.int64)
    assert arrays.integers(rows).equals(pa.array(rows)) and arrays.integers(rows, np.int32).type == pa.int32()
    names = ("web", "", "日本 😀")
    assert arrays.strings(names).equals(pa.array(list(names), pa.string()))


def test_a_pretrain_build_does_not_import_pandas(tmp_path: Path) -> None:
    """pyarrow imports pandas (~0.4 s a process) on `pa.array` of numpy arrays or lists."""
    import subprocess
    import sys

    # Every other record is filtered out: the masks that `filter` the kept texts are exercised too.
    (tmp_path / "a.jsonl").write_text("".join(f'{{"text": "record {i}{" with enough text" * (i % 2)}"}}\n' for i in range(200)))
    (tmp_path / "mix.yaml").write_text(
        "metadata: {phase: pretrain, name: t, filters: {min_chars: 20}}\ndatasets:\n  - {name: a, mix_ratio: 1.0, source: a.jsonl}\n"
    )
    script = (
        "import sys\nfrom mixprep.cli import main\n"
        f"code = main(['build', {str(tmp_path / 'mix.yaml')!r}, '--output-dir', {str(tmp_path / 'out')!r}, '--no-progress'])\n"
        "print(code, 'pandas' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert done.stdout.split()[-2:] == ["0", "False"], done.stderr[-2000:]
