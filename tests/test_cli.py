"""The CLI: exit codes and output of build / validate / verify / dry-run / index;
errors as one line without a traceback; `--help` without heavy imports."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import REPO, complete_looking_outputs, mixture, texts, write_jsonl, write_lines

from mixprep.cli import main


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_build_prints_summary_and_reuses_on_rerun(two_sources: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    code, stdout, _ = run(capsys, "build", str(two_sources), "--output-dir", str(out), "--no-progress")
    assert code == 0
    assert "train: 1,000 records" in stdout
    header = ["source", "read", "bad", "filtered", "available", "written", "repeats", "asked", "share", "bytes", "share"]
    assert stdout.splitlines()[1].split() == header
    lines = {line.split()[0]: line.split() for line in stdout.splitlines() if line.startswith(("a ", "b "))}
    assert lines["a"][:6] == ["a", "600", "0", "0", "600", "600"]
    assert lines["b"][:7] == ["b", "300", "0", "0", "300", "400", "100"]
    assert f"-> {out / 'pretrain_t_train.jsonl'}" in stdout
    code, stdout, _ = run(capsys, "build", str(two_sources), "--output-dir", str(out), "--no-progress")
    assert code == 0 and "(reused: up to date)" in stdout
    code, stdout, _ = run(capsys, "build", str(two_sources), "--output-dir", str(out), "--force", "--no-progress")
    assert code == 0 and "reused" not in stdout


def test_build_errors_are_one_line_and_exit_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, stdout, stderr = run(capsys, "build", str(tmp_path / "nope.yaml"))
    assert code == 1 and stdout == ""
    assert stderr == f"error: {tmp_path / 'nope.yaml'}: mixture file not found\n"

    write_lines(tmp_path / "a.jsonl", ['{"text": "ok"}', '{"text": '])
    config = mixture(tmp_path, [{"name": "a", "mix_ratio": 1.0, "source": "a.jsonl"}])
    code, _, stderr = run(capsys, "build", str(config), "--output-dir", str(tmp_path / "out"), "--no-progress")
    assert code == 1
    assert stderr.startswith(f"error: {tmp_path / 'a.jsonl'}:2: invalid JSON")
    assert stderr.count("\n") == 1 and "Traceback" not in stderr
    assert complete_looking_outputs(tmp_path / "out") == []


def test_build_split_option(two_sources: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, stderr = run(capsys, "build", str(two_sources), "--output-dir", str(tmp_path / "o"), "--split", "validation")
    assert code == 1 and "split 'validation' is not defined by this mixture" in stderr
    with pytest.raises(SystemExit) as exited:
        main(["build", str(two_sources), "--split", "test"])
    assert exited.value.code == 2
    assert "invalid choice: 'test'" in capsys.readouterr().err


def test_dry_run_prints_plan_and_writes_nothing(two_sources: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    code, stdout, _ = run(capsys, "build", str(two_sources), "--output-dir", str(out), "--dry-run", "--no-progress")
    assert code == 0
    header, rule, *rows = stdout.strip().splitlines()
    columns = ["source", "read", "bad", "filtered", "held", "out", "available", "quota", "repeat", "validation", "bytes", "share"]
    assert header.split() == columns
    assert set(rule) <= {"-", " "}
    assert [row.split()[:-1] for row in rows] == [
        ["a", "600", "0", "0", "0", "600", "600", "1.00x", "0"],
        ["b", "300", "0", "0", "0", "300", "400", "1.33x", "0"],
    ]
    code, _, _ = run(capsys, "build", str(two_sources), "--output-dir", str(tmp_path / "built"), "--no-progress", "--no-report")
    sources = json.loads((tmp_path / "built" / "pretrain_t_train.manifest.json").read_text())["sources"]
    assert [row.split()[-1] for row in rows] == [f"{sources[name]['share']['bytes']:.1%}" for name in ("a", "b")]  # as built
    assert complete_looking_outputs(out) == []


def test_validate_exit_codes(two_sources: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, stdout, _ = run(capsys, "validate", str(two_sources))
    report = json.loads(stdout)
    assert code == 0 and report["is_valid"] is True and report["total_ratio"] == 1.0
    assert set(report["datasets"]) == {"a", "b"}
    bad = mixture(tmp_path, [{"name": "a", "mix_ratio": 0.5, "source": "data/a.jsonl"}], file_name="bad.yaml")
    code, stdout, _ = run(capsys, "validate", str(bad))
    report = json.loads(stdout)
    assert code == 1 and report["is_valid"] is False
    assert report["errors"] == ["bad.yaml: datasets: mix_ratio values sum to 0.5, expected 1 (within 1e-06)"]


def test_verify_exit_codes(two_sources: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    assert run(capsys, "build", str(two_sources), "--output-dir", str(out), "-q", "--no-progress")[0] == 0
    jsonl = out / "pretrain_t_train.jsonl"
    code, stdout, _ = run(capsys, "verify", str(jsonl))
    assert code == 0
    assert stdout.splitlines()[0] == f"{jsonl}: OK (1,000 records)"
    assert "FAIL" not in stdout
    with open(jsonl, "r+b") as handle:
        handle.truncate(jsonl.stat().st_size - 1)
    code, stdout, _ = run(capsys, "verify", str(jsonl))
    assert code == 1
    assert stdout.splitlines()[0] == f"{jsonl}: FAILED (1,000 records)"
    assert "  FAIL " in stdout


def test_index_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = write_jsonl(tmp_path / "any.jsonl", texts("r", 25))
    code, stdout, _ = run(capsys, "index", str(data))
    assert code == 0
    assert stdout == f"{data}: 25 records -> {tmp_path / 'any.idx'}\n"
    assert (tmp_path / "any.idx").is_file()
    code, stdout, _ = run(capsys, "index", str(data), "--force")
    assert code == 0 and "25 records" in stdout


HEAVY = ("torch", "transformers", "datasets", "ray")

IMPORT_PROBE = """
import sys
from mixprep.cli import main
try:
    main(["--help"])
except SystemExit:
    pass
after_help = sorted(m for m in {heavy!r} if m in sys.modules)
code = main(["build", sys.argv[1], "--output-dir", sys.argv[2], "-q", "--no-progress"])
after_build = sorted(m for m in {heavy!r} if m in sys.modules)
print("PROBE", after_help, after_build, code, file=sys.stderr)
"""


def test_help_and_build_do_not_import_heavy_packages(two_sources: Path, tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", IMPORT_PROBE.format(heavy=HEAVY), str(two_sources), str(tmp_path / "out")],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )
    assert "PROBE [] [] 0" in proc.stderr, proc.stderr
    assert "usage: mixprep" in proc.stdout


def test_python_m_mixprep_help_and_error_without_traceback(tmp_path: Path) -> None:
    helped = subprocess.run([sys.executable, "-m", "mixprep", "--help"], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert helped.returncode == 0
    for command in ("build", "validate", "verify", "index"):
        assert command in helped.stdout
    failed = subprocess.run(
        [sys.executable, "-m", "mixprep", "build", str(tmp_path / "missing.yaml")], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert failed.returncode == 1
    assert failed.stderr == f"error: {tmp_path / 'missing.yaml'}: mixture file not found\n"


def test_a_missing_optional_package_names_the_extra_to_install(capsys: pytest.CaptureFixture[str]) -> None:
    from mixprep import cli

    def needs_datasketch() -> int:
        msg = "No module named 'datasketch'"
        raise ModuleNotFoundError(msg, name="datasketch")

    assert cli._run(needs_datasketch) == 1
    assert capsys.readouterr().err.strip() == (
        "error: this needs the optional package 'datasketch'; install it with: pip install \"mixprep[sources]\""
    )

    def needs_something_unknown() -> int:
        msg = "No module named 'nonesuch'"
        raise ModuleNotFoundError(msg, name="nonesuch")

    with pytest.raises(ModuleNotFoundError):  # a real bug keeps its traceback
        cli._run(needs_something_unknown)


def test_flags_take_either_spelling_and_build_takes_the_seeds_mixture_config(two_sources: Path, tmp_path: Path) -> None:
    assert main(["build", "--mixture_config", str(two_sources), "--output_dir", str(tmp_path / "a"), "--no_progress", "-q"]) == 0
    assert main(["build", f"--mixture-config={two_sources}", "--output-dir", str(tmp_path / "b"), "--no-progress", "-q"]) == 0
    assert (tmp_path / "a" / "pretrain_t_train.jsonl").read_bytes() == (tmp_path / "b" / "pretrain_t_train.jsonl").read_bytes()


def test_build_needs_exactly_one_mixture(two_sources: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["build"]) == 1
    assert main(["build", str(two_sources), "--config", str(two_sources)]) == 1
    err = capsys.readouterr().err
    assert err.count("error: build needs one mixture YAML: `mixprep build CONFIG` or `mixprep build --mixture_config CONFIG`") == 2


def test_quiet_build_prints_only_where_the_files_went(two_sources: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["build", str(two_sources), "--output-dir", str(tmp_path / "q"), "-q"]) == 0
    out = capsys.readouterr().out
    assert out.strip() == f"-> {tmp_path / 'q' / 'pretrain_t_train.jsonl'}"


@pytest.mark.parametrize("command", ["build", "validate", "verify", "index", "example-data"])
def test_every_command_has_a_description(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main([command, "--help"])
    usage, _, rest = capsys.readouterr().out.partition("\n\n")
    assert rest.split("\n\n")[0].strip()[0].isupper()  # a sentence between the usage and the arguments


def test_dir_lists_the_lazy_exports() -> None:
    import mixprep

    assert {"DatasetMixer", "UnifiedDataset", "SFTDataset", "ConfigError", "__version__"} <= set(dir(mixprep))


def test_the_scan_bar_moves_while_its_first_task_runs_in_decimal_units(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The bar sat at 0% until a whole 64 MB task finished; it now follows each block."""
    import time

    from helpers import build, mixture, texts, write_jsonl

    from mixprep import progress
    from mixprep.build import scan

    source = write_jsonl(tmp_path / "a.jsonl", texts("a", 2000, words=20))
    config = mixture(tmp_path, [{"name": "a", "mix_ratio": 1.0, "source": "a.jsonl"}])
    monkeypatch.setattr("mixprep.sources.readers.BLOCK_BYTES", source.stat().st_size // 4 + 1)
    real_read_blocks = scan.read_blocks

    def slow_blocks(task):  # type: ignore[no-untyped-def]
        for block in real_read_blocks(task):
            time.sleep(0.6)  # longer than the bar's 0.25 s look at the counter
            yield block

    shown: list[tuple[str, int, int]] = []
    real_advance = progress.Progress.advance

    def recorded(self: progress.Progress, nbytes: int, records: int) -> None:
        real_advance(self, nbytes, records)
        if nbytes or records:
            shown.append((self.desc, self.done, self.records))

    monkeypatch.setattr(scan, "read_blocks", slow_blocks)
    monkeypatch.setattr(progress.Progress, "advance", recorded)
    build(config, tmp_path / "out", workers=1, progress=True)
    scanned = [(done, records) for desc, done, records in shown if desc == "scan"]
    assert len(scanned) >= 3  # one task, seen at least three times while it ran
    assert scanned[0][0] < source.stat().st_size and 0 < scanned[0][1] < 2000
    assert scanned[-1] == (source.stat().st_size, 2000)
    assert [d for d, _ in scanned] == sorted(d for d, _ in scanned)


def test_progress_bar_counts_decimal_megabytes(capsys: pytest.CaptureFixture[str]) -> None:
    from mixprep.progress import Progress

    bar = Progress("scan", 5_000_000, True)
    bar.advance(2_500_000, 10)
    assert bar.bar is not None
    assert "2.50M/5.00M" in str(bar.bar)  # as the logs say MB; binary units showed 2.38M/4.77M
    bar.close()


def test_every_command_help_describes_it_and_train_shows_defaults(capsys: pytest.CaptureFixture[str]) -> None:
    from mixprep.cli import main

    with pytest.raises(SystemExit) as done:
        main(["train", "--help"])
    assert done.value.code == 0
    text = capsys.readouterr().out
    assert "tokens per sample (model context) (default: 512)" in " ".join(text.split())
    for command in ("validate", "verify"):
        with pytest.raises(SystemExit):
            main([command, "--help"])
        lines = capsys.readouterr().out.splitlines()
        assert lines[0].startswith(f"usage: mixprep {command}")
        description = next(line for line in lines[1:] if line.strip())
        assert not description.startswith(("positional", "options")), lines
