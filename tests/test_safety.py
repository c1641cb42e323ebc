"""The fuzz catalogue's data-loss and silently-wrong cases (issue 21): each fails on the old engine."""

from __future__ import annotations

import bz2
import gzip
import json
import logging
import lzma
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import zstandard
from helpers import REPO, build, complete_looking_outputs, manifest_of, mixture, read_jsonl, texts, write_jsonl

from mixprep.build import driver
from mixprep.config import load_mixture
from mixprep.errors import ConfigError, OutputError, RecordError, SamplingError, SourceError
from mixprep.verify import verify


def test_an_output_named_like_a_source_is_refused_and_the_source_kept(tmp_path: Path) -> None:
    data = tmp_path / "data"
    source = write_jsonl(data / "pretrain_t_train.jsonl", texts("a", 50))
    before = source.read_bytes()
    config = mixture(tmp_path, [{"name": "a", "mix_ratio": 1.0, "source": "data/pretrain_t_train.jsonl"}])
    with pytest.raises(OutputError, match=r"the source file .*data/pretrain_t_train\.jsonl is also an output of this build"):
        build(config, data)
    assert source.read_bytes() == before


def test_an_output_folder_that_is_a_source_folder_never_reads_its_own_output(tmp_path: Path) -> None:
    data = tmp_path / "data"
    write_jsonl(data / "a.jsonl", texts("a", 300))
    config = mixture(tmp_path, [{"name": "a", "mix_ratio": 1.0, "source": "data/*.jsonl"}])
    first = build(config, data)
    assert len(read_jsonl(first.files["train"])) == 300
    # The second build's glob now matches the first build's output: refused, not 600 records.
    with pytest.raises(OutputError, match=r"pretrain_t_train\.jsonl is also an output of this build"):
        build(config, data, force=True)
    assert len(read_jsonl(first.files["train"])) == 300


def test_a_symlink_loop_under_a_double_star_glob_reads_each_file_once(tmp_path: Path) -> None:
    data = tmp_path / "data"
    write_jsonl(data / "sub" / "a.jsonl", texts("a", 100))
    os.symlink(data, data / "sub" / "loop")  # data/sub/loop -> data: sub/loop/sub/loop/... repeats a.jsonl
    config = mixture(tmp_path, [{"name": "a", "mix_ratio": 1.0, "source": "data/**/*.jsonl"}])
    result = build(config, tmp_path / "out")
    assert len(read_jsonl(result.files["train"])) == 100
    assert [i["path"] for i in manifest_of(result.files["train"])["inputs"]] == ["data/sub/a.jsonl"]


def test_a_source_that_changes_during_the_build_fails_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    source = write_jsonl(tmp_path / "a.jsonl", texts("a", 200))
    config = mixture(tmp_path, [{"name": "a", "mix_ratio": 1.0, "source": "a.jsonl"}])
    scan = driver.scan_task

    def scan_then_truncate(job):  # type: ignore[no-untyped-def]
        result = scan(job)
        with open(source, "r+b") as handle:  # another program cuts the file short meanwhile
            handle.truncate(1000)
        return result

    monkeypatch.setattr(driver, "scan_task", scan_then_truncate)
    with pytest.raises(SourceError, match=r"1 input file\(s\) changed while the build read them.*a\.jsonl: [\d,]+ -> 1,000 bytes"):
        build(config, tmp_path / "out")
    assert complete_looking_outputs(tmp_path / "out") == []


def test_an_edited_output_is_rebuilt_not_reused(two_sources: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    first = build(two_sources, out).files["train"]
    original = first.read_bytes()
    edited = bytearray(original)
    at = edited.index(b"alpha")
    edited[at] = ord("A")  # same size
    first.write_bytes(bytes(edited))
    again = build(two_sources, out)
    assert again.reused is False
    assert first.read_bytes() == original


def test_filters_that_remove_every_record_fail_with_the_counts(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "a.jsonl", texts("a", 40))
    write_jsonl(tmp_path / "b.jsonl", texts("b", 20))
    config = mixture(
        tmp_path,
        [{"name": "a", "mix_ratio": 0.5, "source": "a.jsonl"}, {"name": "b", "mix_ratio": 0.5, "source": "b.jsonl"}],
        filters={"min_chars": 10_000},
    )
    with pytest.raises(
        SamplingError,
        match=r"the mixture selects no records: nothing is left after the filters \(a: 40 read from .*a\.jsonl, "
        r"40 removed by min_chars; b: 20 read from .*b\.jsonl, 20 removed by min_chars\)",
    ):
        build(config, tmp_path / "out")
    assert complete_looking_outputs(tmp_path / "out") == []


def test_invalid_utf8_in_a_text_is_a_bad_record_named_by_file_and_line(tmp_path: Path) -> None:
    (tmp_path / "a.jsonl").write_bytes(b'{"text": "fine one"}\n{"text": "bad \xff\xfe bytes"}\n{"text": "fine two"}\n')
    config = mixture(tmp_path, [{"name": "a", "mix_ratio": 1.0, "source": "a.jsonl"}])
    with pytest.raises(RecordError, match=r"a\.jsonl:2: invalid UTF-8 \(byte 0xff at column 15\) \(dataset 'a'"):
        build(config, tmp_path / "out")
    skipping = mixture(tmp_path, [{"name": "a", "mix_ratio": 1.0, "source": "a.jsonl"}], file_name="skip.yaml", on_bad_record="skip")
    result = build(skipping, tmp_path / "skipped")
    assert [r["text"] for r in read_jsonl(result.files["train"])] in (["fine one", "fine two"], ["fine two", "fine one"])
    assert manifest_of(result.files["train"])["sources"]["a"]["bad"] == {"invalid UTF-8": 1}  # counted by kind
    assert verify(result.files["train"]).ok


COMPRESSORS = {
    "gz": gzip.compress,
    "bz2": bz2.compress,
    "xz": lzma.compress,
    "zst": lambda data: zstandard.ZstdCompressor().compress(data),
}
COMPRESSION_NAMES = {"gz": "gzip", "bz2": "bz2", "xz": "xz", "zst": "zstd"}


@pytest.mark.parametrize("suffix", sorted(COMPRESSORS))
@pytest.mark.parametrize("damage", ["truncated", "corrupt"])
def test_damaged_compressed_sources_are_named_never_read_in_part(tmp_path: Path, suffix: str, damage: str) -> None:
    data = b"".join(json.dumps(r).encode() + b"\n" for r in texts("a", 5000))
    packed = COMPRESSORS[suffix](data)
    damaged = packed[: len(packed) // 2] if damage == "truncated" else packed[:30] + bytes(300) + packed[330:]
    (tmp_path / f"a.jsonl.{suffix}").write_bytes(damaged)
    config = mixture(tmp_path, [{"name": "a", "mix_ratio": 1.0, "source": f"a.jsonl.{suffix}"}], on_bad_record="skip")
    name = COMPRESSION_NAMES[suffix]
    expected = f"truncated {name} file: it ends before the end" if damage == "truncated" else f"corrupt {name} data \\("
    with pytest.raises(SourceError, match=rf"a\.jsonl\.{suffix}: {expected}"):
        build(config, tmp_path / "out")
    assert complete_looking_outputs(tmp_path / "out") == []


def test_zstd_files_of_several_frames_read_whole(tmp_path: Path) -> None:
    frames = [zstandard.ZstdCompressor().compress(b"".join(json.dumps(r).encode() + b"\n" for r in texts(f"f{i}", 300))) for i in range(3)]
    (tmp_path / "a.jsonl.zst").write_bytes(b"".join(frames))
    config = mixture(tmp_path, [{"name": "a", "mix_ratio": 1.0, "source": "a.jsonl.zst"}])
    assert len(read_jsonl(build(config, tmp_path / "out").files["train"])) == 900


def test_integers_past_64_bits_are_kept_exactly(tmp_path: Path) -> None:
    big = 123456789012345678901234567890
    conversation = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello there"}]
    (tmp_path / "a.jsonl").write_text(
        json.dumps({"conversations": conversation, "id": big}) + "\n" + json.dumps({"conversations": conversation, "id": 7}) + "\n"
    )
    config = mixture(tmp_path, [{"name": "a", "mix_ratio": 1.0, "source": "a.jsonl"}], phase="sft")
    path = build(config, tmp_path / "out").files["train"]
    assert sorted(r["id"] for r in read_jsonl(path)) == [7, big]
    assert f'"id":{big}'.encode() in path.read_bytes()
    sidecar = pq.read_table(path.with_suffix(".parquet")).column("id").to_pylist()
    assert sorted(sidecar) == sorted([str(big), "7"])  # no Arrow integer holds it: JSON text
    assert verify(path).ok


def test_a_byte_order_mark_opening_a_line_is_skipped_wherever_the_line_is(tmp_path: Path) -> None:
    bom = "\ufeff".encode()
    lines = [bom + b'{"text": "first, after the file\'s mark"}', b'{"text": "second"}', bom + b'{"text": "third, concatenated"}']
    for i, order in enumerate([lines, lines[::-1], [lines[1], lines[0], lines[2]]]):
        (tmp_path / f"a{i}.jsonl").write_bytes(b"\n".join(order) + b"\n")
        config = mixture(tmp_path, [{"name": "a", "mix_ratio": 1.0, "source": f"a{i}.jsonl"}], file_name=f"m{i}.yaml")
        texts_out = sorted(r["text"] for r in read_jsonl(build(config, tmp_path / f"out{i}").files["train"]))
        assert texts_out == ["first, after the file's mark", "second", "third, concatenated"]


@pytest.mark.slow
@pytest.mark.parametrize(("signum", "code", "word"), [(signal.SIGTERM, 143, "terminated"), (signal.SIGINT, 130, "interrupted")])
def test_a_signal_ends_the_whole_build_quickly_and_leaves_nothing(tmp_path: Path, signum: int, code: int, word: str) -> None:
    import psutil

    for name in ("a", "b", "c"):
        write_jsonl(tmp_path / f"{name}.jsonl", texts(name, 20_000, words=8))
    config = mixture(tmp_path, [{"name": n, "mix_ratio": r, "source": f"{n}.jsonl"} for n, r in (("a", 0.5), ("b", 0.3), ("c", 0.2))])
    out = tmp_path / "out"
    command = [
        sys.executable,
        "-m",
        "mixprep",
        "build",
        str(config),
        "--workers",
        "2",
        "--in-process-below",
        "0",
        "--output-dir",
        str(out),
        "--no-progress",
    ]
    proc = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, cwd=REPO, start_new_session=True)
    parent = psutil.Process(proc.pid)
    deadline = time.monotonic() + 60
    tree: list[psutil.Process] = []
    workers: list[psutil.Process] = []
    while len(workers) < 2 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
        try:
            tree = parent.children(recursive=True)
            # The driver's own children are multiprocessing's fork server and resource
            # tracker; the workers are the fork server's.
            workers = [p for p in tree if p.ppid() != proc.pid]
        except psutil.NoSuchProcess:
            break
    assert len(workers) >= 2, "the build did not start its workers"
    sent = time.monotonic()
    if signum == signal.SIGINT:
        os.killpg(proc.pid, signum)  # Ctrl-C in a terminal reaches the whole process group
    else:
        os.kill(proc.pid, signum)  # `kill PID` reaches the driver alone
    returncode = proc.wait(timeout=30)
    took = time.monotonic() - sent
    stderr = proc.stderr.read() if proc.stderr else ""
    assert returncode == code, stderr
    assert took < 5, f"the build took {took:.1f} s to stop"
    assert f"{word}; no output was left half-written" in stderr
    assert "Traceback" not in stderr and "BrokenProcessPool" not in stderr
    _, alive = psutil.wait_procs(tree, timeout=5)

    def running(process: psutil.Process) -> bool:  # a zombie is dead, waiting for its reaper; it may vanish any time
        try:
            return process.status() != psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return False

    assert [p.pid for p in alive if running(p)] == []
    assert complete_looking_outputs(out) == []
    assert not (out / ".mixprep-tmp").exists() or list((out / ".mixprep-tmp").iterdir()) == []


def test_a_signal_while_the_work_folder_is_made_leaves_no_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_jsonl(tmp_path / "a.jsonl", texts("a", 200))
    config = mixture(tmp_path, [{"name": "a", "mix_ratio": 1.0, "source": "a.jsonl"}])
    real = driver.make_work_dir

    def interrupted_on_return(*args, **kwargs):  # type: ignore[no-untyped-def]
        work = real(*args, **kwargs)
        signal.raise_signal(signal.SIGINT)  # Ctrl-C right after the mkdir, before the caller holds the path
        return work

    monkeypatch.setattr(driver, "make_work_dir", interrupted_on_return)
    with pytest.raises(KeyboardInterrupt):
        build(config, tmp_path / "out", workers=2)
    tmp = tmp_path / "out" / ".mixprep-tmp"
    assert not tmp.exists() or list(tmp.iterdir()) == []


def test_a_yaml_alias_bomb_is_refused_before_it_expands(tmp_path: Path) -> None:
    lines = ['a: &a ["x", "x", "x", "x", "x", "x", "x", "x", "x"]']
    for previous, name in zip("abcdefgh", "bcdefghi", strict=True):
        lines.append(f"{name}: &{name} [{', '.join([f'*{previous}'] * 9)}]")
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text("\n".join(lines) + "\nmetadata: {phase: pretrain}\ndatasets: *i\n")
    started = time.monotonic()
    with pytest.raises(ConfigError, match=r"bomb\.yaml: the YAML's aliases expand to 926,177,119 values \(at most 1,000,000\)"):
        load_mixture(bomb)
    assert time.monotonic() - started < 5
    looped = tmp_path / "loop.yaml"
    looped.write_text("metadata: &m {phase: pretrain, x: *m}\ndatasets: []\n")
    with pytest.raises(ConfigError, match=r"loop\.yaml: line 1: a YAML alias refers to a node that contains it"):
        load_mixture(looped)


def test_a_total_that_cannot_be_held_is_refused_before_allocating(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "a.jsonl", texts("a", 3))
    config = mixture(tmp_path, [{"name": "a", "mix_ratio": 1.0, "source": "a.jsonl"}], total_samples=10**12)
    with pytest.raises(
        SamplingError,
        match=r"1,000,000,000,000 output records need about 64,000\.0 GB of memory to order \(64 bytes each\) "
        r"and this machine has [\d,.]+ GB; lower total_samples",
    ):
        build(config, tmp_path / "out")
    assert complete_looking_outputs(tmp_path / "out") == []


def test_a_rebuild_says_why_and_the_rejected_option_alone_does_not_force_one(
    two_sources: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    out = tmp_path / "out"
    rejected = out / "pretrain_t.rejected.jsonl"
    with caplog.at_level(logging.INFO, logger="mixprep"):
        build(two_sources, out, write_rejected=True)
        assert "rebuilding: no finished earlier build" in caplog.text and rejected.is_file()
        caplog.clear()
        assert build(two_sources, out).reused  # without --write-rejected: nothing to redo
        assert build(two_sources, out, write_rejected=True).reused  # and it is still there
        with open(tmp_path / "data" / "a.jsonl", "a", encoding="utf-8") as handle:
            handle.write('{"text": "one more record for a"}\n')
        build(two_sources, out)
        assert "rebuilding: input data/a.jsonl changed" in caplog.text
        assert not rejected.exists()  # it described the earlier build
        caplog.clear()
        build(two_sources, out, write_rejected=True)
        assert "rebuilding: --write-rejected asks for the removed records, which the earlier build did not write" in caplog.text
        caplog.clear()
        build(two_sources, out, parquet_compression="snappy")
        assert "rebuilding: output options changed (mixprep: " in caplog.text and "parquet_compression: snappy" in caplog.text


def test_the_build_key_covers_the_packages_that_change_outputs(two_sources: Path, tmp_path: Path) -> None:
    packages = manifest_of(build(two_sources, tmp_path / "out").files["train"])["packages"]
    assert {"py3langid", "datasketch", "tokenizers", "numba", "pyarrow", "polars", "orjson", "zstandard", "PyYAML"} <= set(packages)


@pytest.mark.parametrize("kind", ["fifo", "folder", "device"])
def test_a_source_that_is_not_a_regular_file_says_what_it_is(tmp_path: Path, kind: str) -> None:
    if kind == "fifo":
        path = tmp_path / "pipe.jsonl"
        os.mkfifo(path)
        expected = r".*pipe\.jsonl is a named pipe \(FIFO\); a source must be a file that can be read twice"
    elif kind == "folder":
        path = tmp_path / "x.jsonl"
        path.mkdir()
        expected = r".*x\.jsonl is a folder, not a file; to read the files in it use a glob such as .*x\.jsonl/\*\.jsonl"
    else:
        path = Path("/dev/zero")
        expected = r"/dev/zero is a device, not a data file"
    config = mixture(tmp_path, [{"name": "a", "mix_ratio": 1.0, "source": {"path": str(path), "format": "jsonl"}}])
    with pytest.raises(ConfigError, match=rf"datasets\[0\]\.source: {expected}"):
        build(config, tmp_path / "out")


def test_names_too_long_for_a_file_system_are_a_config_problem(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "a.jsonl", texts("a", 5))
    config = mixture(tmp_path, [{"name": "a", "mix_ratio": 1.0, "source": "a.jsonl"}], name="n" * 240)
    expected = r"metadata\.name: phase and name make output file names of up to 274 bytes .*file systems take 255"
    with pytest.raises(ConfigError, match=expected):
        build(config, tmp_path / "out")


def test_a_full_disk_during_the_scan_is_one_error_naming_the_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import errno

    from mixprep.build import scan

    source = write_jsonl(tmp_path / "data" / "a.jsonl", texts("a", 3000, words=30))
    before = source.read_bytes()
    config = mixture(tmp_path, [{"name": "a", "mix_ratio": 1.0, "source": "data/a.jsonl"}])
    real_read_blocks = scan.read_blocks

    def fills_the_disk(task):  # type: ignore[no-untyped-def]
        for number, block in enumerate(real_read_blocks(task)):
            if number == 1:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            yield block

    monkeypatch.setattr(scan, "read_blocks", fills_the_disk)
    monkeypatch.setattr("mixprep.sources.readers.BLOCK_BYTES", 64 * 1024)
    out = tmp_path / "out"
    with pytest.raises(OutputError) as failure:
        build(config, out)
    message = str(failure.value)
    assert message.startswith(f"no space left in {out}: the build's work folder there held ")
    assert f"a build needs up to about {len(before) / 1e6:,.1f} MB for the kept records while scanning" in message
    assert "the inputs were not touched and the work folder was removed" in message
    assert source.read_bytes() == before
    assert not [p for p in out.rglob("*") if p.is_file()]


def test_kernels_load_where_neither_the_install_nor_home_can_hold_numbas_cache(tmp_path: Path) -> None:
    """Where `__pycache__` beside the sources and ~/.cache cannot be created (a read-only
    install, a read-only HOME), numba refused to define the kernels: an import traceback."""
    import shutil

    copy = tmp_path / "install"
    shutil.copytree(REPO / "mixprep", copy / "mixprep", ignore=shutil.ignore_patterns("__pycache__"))
    for folder in [copy / "mixprep", *(p for p in (copy / "mixprep").rglob("*") if p.is_dir())]:
        (folder / "__pycache__").write_bytes(b"")  # a file where the cache folder would go
    home = tmp_path / "home"
    home.mkdir()
    (home / ".cache").write_bytes(b"")
    temp = tmp_path / "temp"
    temp.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("NUMBA_CACHE_DIR", "XDG_CACHE_HOME")}
    env.update(HOME=str(home), PYTHONPATH=str(copy), TMPDIR=str(temp))
    script = (
        "import numpy as np, numba\n"
        "import mixprep.filters.textstats, mixprep.filters.langid\n"
        "from mixprep.build.encode import line_lengths\n"
        "data = np.frombuffer(b'ab\"c', dtype=np.uint8)\n"
        "print(line_lengths(data, np.array([0, 2, 4], dtype=np.int64), 'x').tolist(), numba.config.CACHE_DIR)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    lengths, cache_dir = done.stdout.split("] ")
    assert cache_dir.strip().startswith(str(temp / "mixprep-numba-cache-"))
    assert any(Path(cache_dir.strip()).rglob("*.nbi"))  # compiled once, kept for the next process
    assert lengths == "[" + ", ".join(
        str(len(json.dumps({"text": t, "source": "x"}, ensure_ascii=False, separators=(",", ":"))) + 1) for t in ("ab", '"c')
    )


def test_a_kernel_is_compiled_again_when_a_module_it_imports_changed(tmp_path: Path) -> None:
    """numba checks a cached kernel against its own file only: after an edit (or a pull) that
    changed a helper in another module, the kernel kept the old helper compiled in and gave
    silently different results. mixprep's kernels track the modules they import."""
    package = tmp_path / "kernels"
    package.mkdir()
    (package / "__init__.py").write_text("")
    helper = "import numba\n\n\n@numba.njit(inline='always')\ndef helper():\n    return {}\n"
    (package / "helpers.py").write_text(helper.format(1))
    (package / "kernel.py").write_text(
        "import numba\n\nfrom kernels.helpers import helper\n\n\n@numba.njit(cache=True)\ndef kernel():\n    return helper()\n")

    def run(tracked: bool) -> str:
        track = f"numba_cache.track_imports(Path({str(package)!r}), 'kernels')\n" if tracked else ""
        script = f"from pathlib import Path\nfrom mixprep import numba_cache\n{track}from kernels.kernel import kernel\nprint(kernel())\n"
        env = {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{REPO}", "NUMBA_CACHE_DIR": str(tmp_path / f"cache-{tracked}")}
        done = subprocess.run([sys.executable, "-c", script], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300,
                              check=False)
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()

    assert (run(tracked=False), run(tracked=True)) == ("1", "1")
    (package / "helpers.py").write_text(helper.format(2))
    assert run(tracked=False) == "1"  # numba's own check: the kernel compiled with the old helper
    assert run(tracked=True) == "2"
    assert run(tracked=True) == "2"  # and cached again


def test_an_index_path_that_is_a_folder_is_named_never_a_traceback(
    two_sources: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mixprep.serve.index import CACHE_ENV, ensure_index

    out = tmp_path / "out"
    jsonl = build(two_sources, out).files["train"]
    index = jsonl.with_suffix(".idx")
    index.unlink()
    index.mkdir()
    report = verify(jsonl)
    assert not report.ok
    assert any(p.startswith(f"{index}: is a folder, not an index file; remove or rename it") for p in report.problems)
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    opened = ensure_index(jsonl)  # serving falls back to the cache folder
    assert opened.path.parent == tmp_path / "cache" / "index" and len(opened) == 1000
    with pytest.raises(OutputError, match=rf"{index} is a folder, where this build writes one of its outputs; remove or rename it"):
        build(two_sources, out, force=True)
    assert jsonl.exists() and index.is_dir()
