"""Benchmark `mixprep build` against the tools users would otherwise pick, on one generated input.

Place in the flow: gen_corpus.py writes the input once; this script asks every contender
for the same mixture and measures each as a separate process tree (common.run_measured),
so imports, caches and memory never leak between them.

The workload (also written to <work>/workload.json and, for mixprep, <work>/mixture.yaml):
k JSONL sources mixed with ratios (default 0.5/0.3/0.2), texts shorter than `min_chars`
characters dropped, exactly `total_samples` records (= the input's record count, so the
first source wraps around and the last is subsampled), globally shuffled, one seed.

Contenders (each writes into <work>/out/<name>/, emptied before every run):
- mixprep-w1, mixprep-w2: `python -m mixprep build mixture.yaml --workers N [--force]`:
  JSONL + Parquet + index + manifest, filter, exact quotas, global shuffle.
- hf-datasets: `load_dataset("json")` per source into a fresh cache dir, a "source" column,
  `interleave_datasets(probabilities, seed, "all_exhausted")`, the first `total_samples`
  rows, `to_json`. It does *less* than mixprep: no length filter, quotas only in
  expectation, no Parquet/index/manifest.
- json-script: what a user writes by hand with the stdlib: json.loads every line, filter,
  exact quotas with wraparound, random.shuffle, json.dumps every record.
- polars-floor: scan_ndjson -> filter -> sink_ndjson in one streaming pass: no sampling,
  no shuffle; the practical floor for "read, filter, write JSONL".
- before-wN (with `--against CHECKOUT`): each mixprep-wN asked for, run from that other
  checkout (a git worktree of an earlier commit), for a before/after in one run.

`--repeat N` runs N rounds, each running every contender once (a busier stretch of a shared
machine falls on all of them); medians of time and CPU, the worst RSS.

Reported per contender: wall seconds, MB/s of *input* (decimal MB), peak RSS of the whole
process tree (MiB; summed RSS, plus summed PSS, which counts shared pages once, and the
PSS of anonymous memory alone, without the input pages mixprep maps to read texts back),
cores kept busy (CPU seconds / wall seconds), output size and records,
and speed and RSS as a ratio to mixprep-w2. `--json FILE` writes the same, plus the machine,
package versions and the issue's targets with pass/fail.

    python benchmarks/bench_build.py --quick                  # ~50 MB, under a minute
    python benchmarks/bench_build.py --size 1.5GB --json bench_build.json
    python benchmarks/bench_build.py --size 1.5GB --only mixprep-w1,mixprep-w2 --against /tmp/base --repeat 3
"""
from __future__ import annotations

import argparse
import json
import math
import os
import re
import shutil
import statistics
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import common

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_WORK_DIR = REPO_ROOT / "bench_build"  # /bench_*/ is git-ignored
QUICK_SIZE = "50MB"
DEFAULT_RATIOS = {1: (1.0,), 2: (0.6, 0.4), 3: (0.5, 0.3, 0.2)}
BASELINE = "mixprep-w2"
DRIVER_LINE = re.compile(r"driver: (\d+(?:\.\d+)?) CPU-s in")
MIXTURE_NAME = "bench"
MIXTURE_PHASE = "pretrain"


# -- the workload every contender is given ---------------------------------------------

@dataclass(frozen=True)
class WorkloadSource:
    name: str
    path: str           # absolute
    ratio: float


@dataclass(frozen=True)
class Workload:
    sources: tuple[WorkloadSource, ...]
    min_chars: int
    total_samples: int
    seed: int

    def to_json(self) -> str:
        return json.dumps(common.to_jsonable(self), indent=2) + "\n"

    @staticmethod
    def from_json(text: str) -> Workload:
        raw = json.loads(text)
        return Workload(
            sources=tuple(WorkloadSource(**s) for s in raw["sources"]),
            min_chars=raw["min_chars"], total_samples=raw["total_samples"], seed=raw["seed"],
        )


def default_ratios(count: int) -> tuple[float, ...]:
    """0.5/0.3/0.2 for three sources; otherwise weights k, k-1, ..., 1, rounded to sum to 1."""
    if count in DEFAULT_RATIOS:
        return DEFAULT_RATIOS[count]
    weights = [count - i for i in range(count)]
    ratios = [round(w / sum(weights), 6) for w in weights[:-1]]
    return (*ratios, round(1 - sum(ratios), 6))


def exact_quotas(ratios: Sequence[float], total: int) -> list[int]:
    """Largest-remainder rounding of ratio * total: the quotas sum to exactly `total`;
    ties go to the earlier source."""
    raw = [r * total for r in ratios]
    quotas = [math.floor(x) for x in raw]
    by_remainder = sorted(range(len(raw)), key=lambda i: (-(raw[i] - quotas[i]), i))
    for i in by_remainder[:total - sum(quotas)]:
        quotas[i] += 1
    return quotas


def mixture_yaml(workload: Workload, output_dir: Path) -> str:
    """The mixprep mixture for `workload` (DESIGN §1); sources are absolute paths."""
    lines = [
        "# Written by benchmarks/bench_build.py: the workload every contender runs.",
        "metadata:",
        f"  phase: {MIXTURE_PHASE}",
        f"  name: {MIXTURE_NAME}",
        f"  seed: {workload.seed}",
        f"  total_samples: {workload.total_samples}",
        f"  output_dir: {json.dumps(str(output_dir))}",
        "  # The first source is asked for ~1.5x what it has: that wraparound is intended.",
        "  repeats: {warn_above: 2.0}",
        "datasets:",
    ]
    for source in workload.sources:
        lines += [
            f"  - name: {source.name}",
            f"    mix_ratio: {source.ratio!r}",
            f"    source: {json.dumps(source.path)}",
            f"    filters: {{min_chars: {workload.min_chars}}}",
        ]
    return "\n".join(lines) + "\n"


# -- the baselines, run in a child process via --run-contender -------------------------

def run_hf_datasets(workload: Workload, output: Path, cache_dir: Path) -> None:
    """load_dataset("json") per source + interleave_datasets with probabilities + to_json."""
    import datasets

    datasets.disable_progress_bars()
    parts = []
    for source in workload.sources:
        part = datasets.load_dataset("json", data_files=source.path, split="train", cache_dir=str(cache_dir))
        part = part.select_columns(["text"]).add_column("source", [source.name] * len(part))
        parts.append(part)
    mixed = datasets.interleave_datasets(
        parts, probabilities=[s.ratio for s in workload.sources], seed=workload.seed,
        stopping_strategy="all_exhausted",
    )
    mixed = mixed.select(range(min(workload.total_samples, len(mixed))))
    mixed.to_json(str(output), lines=True, force_ascii=False)


def run_json_script(workload: Workload, output: Path) -> None:
    """The hand-written stdlib version: load + filter, exact quotas, shuffle, dump."""
    import random

    rng = random.Random(workload.seed)
    kept: list[list[str]] = []
    for source in workload.sources:
        with open(source.path, encoding="utf-8") as f:
            texts = [text for text in (json.loads(line)["text"] for line in f if line.strip())
                     if len(text) >= workload.min_chars]
        kept.append(texts)
    quotas = exact_quotas([s.ratio for s in workload.sources], workload.total_samples)
    mixed: list[tuple[str, str]] = []
    for source, texts, quota in zip(workload.sources, kept, quotas, strict=True):
        full, rest = divmod(quota, len(texts))
        chosen = texts * full + rng.sample(texts, rest)
        mixed.extend((text, source.name) for text in chosen)
    rng.shuffle(mixed)
    with open(output, "w", encoding="utf-8") as out:
        for text, name in mixed:
            out.write(json.dumps({"text": text, "source": name}))
            out.write("\n")


def run_polars_floor(workload: Workload, output: Path) -> None:
    """One streaming pass: scan -> filter -> sink. No sampling, no shuffle."""
    import polars as pl

    frames = [
        pl.scan_ndjson(source.path, schema={"id": pl.String, "text": pl.String})
        .filter(pl.col("text").str.len_chars() >= workload.min_chars)
        .select(pl.col("text"), pl.lit(source.name).alias("source"))
        for source in workload.sources
    ]
    pl.concat(frames).sink_ndjson(output)


# -- contenders --------------------------------------------------------------------------

@dataclass(frozen=True)
class Paths:
    """Where one benchmark run keeps its input, configs, outputs and logs."""
    work: Path
    corpus_key: str = ""
    """Names the input's folder, so inputs of different sizes or seeds coexist and are reused."""

    @property
    def data(self) -> Path:
        return self.work / "data" / self.corpus_key

    @property
    def workload(self) -> Path:
        return self.work / "workload.json"

    @property
    def mixture(self) -> Path:
        return self.work / "mixture.yaml"

    @property
    def logs(self) -> Path:
        return self.work / "logs"

    def output_dir(self, contender: str) -> Path:
        return self.work / "out" / contender

    def hf_cache(self) -> Path:
        return self.work / "hf_cache"


@dataclass(frozen=True)
class Contender:
    name: str
    summary: str
    argv: Callable[[Paths], list[str]]
    checkout: Path = REPO_ROOT
    """The mixprep checkout the contender runs from (its working folder: `python -m` imports
    the package of the folder it runs in, whatever PYTHONPATH says)."""


def _mixprep_argv(workers: int, force: bool, name: str | None = None) -> Callable[[Paths], list[str]]:
    def argv(paths: Paths) -> list[str]:
        command = [sys.executable, "-m", "mixprep", "build", str(paths.mixture), "--workers", str(workers),
                   "--output-dir", str(paths.output_dir(name or f"mixprep-w{workers}"))]
        return command + (["--force"] if force else [])
    return argv


def before_contender(name: str, checkout: Path) -> Contender:
    """`mixprep-wN` run from another checkout, as `before-wN` (`--against`)."""
    workers = int(name.removeprefix("mixprep-w"))
    before = f"before-w{workers}"
    return Contender(before, f"{CONTENDERS[name].summary}, from {checkout}", _mixprep_argv(workers, workers > 1, before),
                     checkout=checkout)


def _baseline_argv(name: str, output_file: str) -> Callable[[Paths], list[str]]:
    def argv(paths: Paths) -> list[str]:
        return [sys.executable, str(Path(__file__).resolve()), "--run-contender", name,
                "--work-dir", str(paths.work), "--output", str(paths.output_dir(name) / output_file)]
    return argv


CONTENDERS: dict[str, Contender] = {
    c.name: c for c in (
        Contender("mixprep-w1", "mixprep build --workers 1 (JSONL+Parquet+idx+manifest)", _mixprep_argv(1, False)),
        Contender("mixprep-w2", "mixprep build --workers 2 --force", _mixprep_argv(2, True)),
        Contender("hf-datasets", "HF load_dataset(json) + interleave_datasets + to_json",
                  _baseline_argv("hf-datasets", "mixed.jsonl")),
        Contender("json-script", "stdlib json: load, filter, quotas, shuffle, dump", _baseline_argv("json-script", "mixed.jsonl")),
        Contender("polars-floor", "polars scan_ndjson -> filter -> sink_ndjson (no shuffle)",
                  _baseline_argv("polars-floor", "mixed.jsonl")),
        # Scaling on machines with more cores; run only when named in --only.
        *(Contender(f"mixprep-w{n}", f"mixprep build --workers {n} --force", _mixprep_argv(n, True)) for n in (4, 8, 16)),
    )
}
DEFAULT_CONTENDERS = ("mixprep-w1", "mixprep-w2", "hf-datasets", "json-script", "polars-floor")


def run_contender_in_this_process(name: str, paths: Paths, output: Path) -> None:
    workload = Workload.from_json(paths.workload.read_text())
    if name == "hf-datasets":
        run_hf_datasets(workload, output, paths.hf_cache())
    elif name == "json-script":
        run_json_script(workload, output)
    elif name == "polars-floor":
        run_polars_floor(workload, output)
    else:
        msg = f"--run-contender {name!r}: expected one of hf-datasets, json-script, polars-floor"
        raise SystemExit(msg)


# -- measuring ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Result:
    name: str
    summary: str
    status: str                 # "ok", "bad output: ...", "failed (rc N)", "timed out", "unavailable"
    seconds: float | None = None
    mb_per_s: float | None = None
    peak_rss_mib: float | None = None
    peak_pss_mib: float | None = None
    peak_anon_pss_mib: float | None = None
    """PSS without mapped files: what the contender allocated (mixprep maps its inputs to read kept texts back)."""
    cores_busy: float | None = None
    mb_per_cpu_s: float | None = None
    load_before: float | None = None     # 1-minute load average when the first run started
    output_mb: float | None = None
    output_records: int | None = None
    speed_vs_baseline: float | None = None
    rss_vs_baseline: float | None = None
    runs: int = 0
    error_tail: str = ""
    cpu_seconds: float | None = None
    """The whole process tree's CPU seconds (median)."""
    driver_cpu_seconds: float | None = None
    """mixprep: the driver process's own CPU seconds (its "driver:" log line): the serial part."""


def count_lines(path: Path) -> int:
    count = 0
    with path.open("rb") as f:
        while block := f.read(16 << 20):
            count += block.count(b"\n")
    return count


def output_summary(folder: Path) -> tuple[int, int]:
    """(bytes of every file in `folder`, records in its JSONL output(s))."""
    files = [p for p in folder.rglob("*") if p.is_file()]
    records = sum(count_lines(p) for p in files if p.suffix in (".jsonl", ".json") and not p.name.endswith("manifest.json"))
    return sum(p.stat().st_size for p in files), records


def output_problem(contender: str, folder: Path, records: int, workload: Workload) -> str | None:
    """Why a finished run's output does not count (None when it does): mixprep must write all
    four files with exactly total_samples records; every other contender must write records."""
    if contender.startswith(("mixprep", "before")):
        stem = f"{MIXTURE_PHASE}_{MIXTURE_NAME}_train"
        missing = [s for s in (".jsonl", ".parquet", ".idx", ".manifest.json") if not (folder / f"{stem}{s}").exists()]
        if missing:
            return f"missing {', '.join(stem + s for s in missing)}"
        if records != workload.total_samples:
            return f"{records:,} records, expected {workload.total_samples:,}"
    elif records == 0:
        return "no records written"
    return None


def reset_dir(folder: Path) -> None:
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)


def child_env(checkout: Path = REPO_ROOT) -> dict[str, str]:
    env = dict(os.environ)
    # Run mixprep from the checkout even before it is pip-installed.
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(checkout), env.get("PYTHONPATH", "")) if p)
    env.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    return env


def mixprep_available() -> tuple[bool, str]:
    probe = subprocess.run([sys.executable, "-m", "mixprep", "build", "--help"], cwd=REPO_ROOT, env=child_env(),
                           capture_output=True, text=True, timeout=120)
    return probe.returncode == 0, probe.stderr[-2000:]


@dataclass
class Runs:
    """One contender's runs so far (`--repeat` rounds run every contender once each)."""

    contender: Contender
    measurements: list[common.Measurement]
    load_before: float | None = None
    """The 1-minute load average when its first run started."""
    failure: Result | None = None


def run_once(runs: Runs, paths: Paths, timeout_seconds: float) -> None:
    """One more run of the contender, on a clean output folder."""
    contender = runs.contender
    if runs.load_before is None:
        runs.load_before = os.getloadavg()[0]
    reset_dir(paths.output_dir(contender.name))
    shutil.rmtree(paths.hf_cache(), ignore_errors=True)
    # Flush the previous contender's dirty pages so their write-back is not billed here.
    os.sync()
    m = common.run_measured(contender.argv(paths), label=contender.name, cwd=contender.checkout,
                            env=child_env(contender.checkout), timeout_seconds=timeout_seconds, log_dir=paths.logs)
    if not m.ok:
        status = "timed out" if m.timed_out else f"failed (rc {m.returncode})"
        runs.failure = Result(contender.name, contender.summary, status, runs=len(runs.measurements) + 1,
                              error_tail=m.stderr_tail[-1500:])
        return
    runs.measurements.append(m)


def summarize(runs: Runs, paths: Paths, workload: Workload, input_bytes: int) -> Result:
    """Median time and CPU, worst RSS, and the output checked, over a contender's runs."""
    contender = runs.contender
    if runs.failure is not None:
        return runs.failure
    measurements = runs.measurements
    seconds = [m.seconds for m in measurements]
    cpu = [m.cpu_seconds for m in measurements]
    driver_cpu = [float(found.group(1)) for m in measurements if (found := DRIVER_LINE.search(m.stderr_tail))]
    out_bytes, records = output_summary(paths.output_dir(contender.name))
    shutil.rmtree(paths.hf_cache(), ignore_errors=True)
    problem = output_problem(contender.name, paths.output_dir(contender.name), records, workload)
    wall = statistics.median(seconds)
    return Result(
        name=contender.name, summary=contender.summary, status=f"bad output: {problem}" if problem else "ok",
        seconds=wall,
        mb_per_s=input_bytes / common.MB / wall,
        peak_rss_mib=max(m.peak_rss_bytes for m in measurements) / common.MIB,
        peak_pss_mib=max(m.peak_pss_bytes for m in measurements) / common.MIB,
        peak_anon_pss_mib=max(m.peak_anon_pss_bytes for m in measurements) / common.MIB,
        cores_busy=statistics.median(c / s for c, s in zip(cpu, seconds, strict=True)),
        mb_per_cpu_s=input_bytes / common.MB / statistics.median(cpu), load_before=runs.load_before,
        output_mb=out_bytes / common.MB, output_records=records, runs=len(measurements),
        cpu_seconds=statistics.median(cpu), driver_cpu_seconds=statistics.median(driver_cpu) if driver_cpu else None,
    )


def with_ratios(results: list[Result], baseline: str) -> list[Result]:
    base = next((r for r in results if r.name == baseline and r.status == "ok"), None)
    if base is None:
        return results
    return [replace(r, speed_vs_baseline=r.mb_per_s / base.mb_per_s, rss_vs_baseline=r.peak_rss_mib / base.peak_rss_mib)
            if r.status == "ok" else r for r in results]


def evaluate_targets(results: list[Result], input_bytes: int) -> list[dict[str, Any]]:
    """The issue's targets, from this run's numbers (None where a contender did not run)."""
    by = {r.name: r for r in results if r.status == "ok"}

    def ratio(a: str, b: str) -> float | None:
        return by[a].mb_per_s / by[b].mb_per_s if a in by and b in by else None

    mixprep_pss = [by[n].peak_pss_mib * common.MIB for n in ("mixprep-w1", "mixprep-w2") if n in by and by[n].peak_pss_mib]
    mixprep_anon = [by[n].peak_anon_pss_mib * common.MIB for n in ("mixprep-w1", "mixprep-w2") if n in by and by[n].peak_anon_pss_mib]
    checks = [
        ("mixprep-w1 >= 150 MB per CPU-second", by["mixprep-w1"].mb_per_cpu_s if "mixprep-w1" in by else None, 150.0, ">="),
        ("mixprep-w2 MB/s >= 4x hf-datasets", ratio("mixprep-w2", "hf-datasets"), 4.0, ">="),
        ("mixprep-w2 MB/s >= 0.35x polars-floor", ratio("mixprep-w2", "polars-floor"), 0.35, ">="),
        ("mixprep-w2 MB/s >= 1.7x mixprep-w1", ratio("mixprep-w2", "mixprep-w1"), 1.7, ">="),
        (f"mixprep peak PSS <= 1 GB (input {common.format_bytes(input_bytes)}; target stated at 1.5 GB)",
         max(mixprep_pss) / 1e9 if mixprep_pss else None, 1.0, "<="),
        ("mixprep peak PSS without mapped files (anonymous + shared memory) <= 1 GB",
         max(mixprep_anon) / 1e9 if mixprep_anon else None, 1.0, "<="),
    ]
    return [{"target": what, "value": value, "threshold": threshold,
             "met": None if value is None else (value >= threshold if op == ">=" else value <= threshold)}
            for what, value, threshold, op in checks]


TABLE_COLUMNS = (
    ("name", "contender"), ("seconds", "seconds"), ("mb_per_s", "MB/s"), ("peak_rss_mib", "peak RSS MiB"),
    ("peak_pss_mib", "peak PSS MiB"),
    ("peak_anon_pss_mib", "anon PSS MiB"),
    ("cores_busy", "cores busy"), ("mb_per_cpu_s", "MB/CPU-s"), ("output_records", "out records"), ("output_mb", "out MB"),
    ("speed_vs_baseline", f"speed / {BASELINE}"), ("rss_vs_baseline", f"RSS / {BASELINE}"), ("status", "status"),
)


def print_report(results: list[Result], targets: list[dict[str, Any]], header: str) -> None:
    print(header)
    print()
    print(common.format_table([common.to_jsonable(r) for r in results], TABLE_COLUMNS))
    print()
    for t in targets:
        mark = {True: "met", False: "MISSED", None: "not measured"}[t["met"]]
        value = "n/a" if t["value"] is None else f"{t['value']:.2f}"
        print(f"  [{mark}] {t['target']}: {value}")
    serial = serial_part(results)
    if serial:
        print(f"\n  {serial}")
    for r in results:
        if r.error_tail:
            print(f"\n--- {r.name} {r.status}; stderr tail:\n{r.error_tail}")


def serial_part(results: list[Result], workers: int = 16) -> str:
    """Amdahl's law from the widest mixprep run: the driver's own CPU time is serial, the rest
    (the workers') divides among `workers` (an upper bound on the serial part: the driver's
    waiting and progress polling count in it too)."""
    runs = [r for r in results if r.name.startswith("mixprep-w") and r.status == "ok" and r.driver_cpu_seconds is not None]
    pooled = [r for r in runs if r.name != "mixprep-w1"]
    if not pooled or not pooled[-1].cpu_seconds or not pooled[-1].mb_per_s:
        return ""
    r = pooled[-1]
    input_mb = r.mb_per_s * (r.seconds or 0)
    output_gb = (r.output_mb or 0) / 1000
    parallel = max(r.cpu_seconds - r.driver_cpu_seconds, 0.0)
    projected = r.driver_cpu_seconds + parallel / workers
    return (f"serial part ({r.name}): the driver's own {r.driver_cpu_seconds:.1f} CPU-s ({r.driver_cpu_seconds / output_gb:.2f} s per GB "
            f"of output), the workers' {parallel:.1f} CPU-s; Amdahl at {workers} workers: {projected:.1f} s, "
            f"{input_mb / projected:.0f} MB/s")


# -- main --------------------------------------------------------------------------------

def build_workload(paths: Paths, args: argparse.Namespace, size: int) -> tuple[Workload, int]:
    import gen_corpus

    corpus = gen_corpus.ensure_corpus(paths.data, size, args.sources, args.seed, jobs=2)
    ratios = tuple(float(x) for x in args.ratios.split(",")) if args.ratios else default_ratios(args.sources)
    if len(ratios) != args.sources or abs(sum(ratios) - 1) > 1e-6:
        msg = f"--ratios {args.ratios!r}: expected {args.sources} comma-separated ratios summing to 1"
        raise SystemExit(msg)
    workload = Workload(
        sources=tuple(WorkloadSource(name=gen_corpus.source_name(i), path=str((paths.data / s.path).resolve()), ratio=r)
                      for i, (s, r) in enumerate(zip(corpus.sources, ratios, strict=True))),
        min_chars=args.min_chars, total_samples=args.total_samples or corpus.records, seed=args.seed,
    )
    paths.workload.write_text(workload.to_json())
    paths.mixture.write_text(mixture_yaml(workload, paths.output_dir("mixprep")))
    return workload, corpus.bytes


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", default="1.5GB", help="input size over all sources (default 1.5GB)")
    parser.add_argument("--quick", action="store_true", help=f"input of {QUICK_SIZE}; the whole run takes under a minute")
    parser.add_argument("--sources", type=int, default=3)
    parser.add_argument("--ratios", help="comma-separated mix ratios (default 0.5,0.3,0.2 for 3 sources)")
    parser.add_argument("--min-chars", type=int, default=50, help="length filter every contender but HF applies")
    parser.add_argument("--total-samples", type=int, help="default: the input's record count")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--only", help=f"comma-separated subset of: {', '.join(CONTENDERS)}")
    parser.add_argument("--repeat", type=int, default=1,
                        help="rounds, each running every contender once: median time, worst RSS")
    parser.add_argument("--against", type=Path, metavar="CHECKOUT",
                        help="also run each mixprep-wN from this other checkout (a git worktree of an earlier "
                             "commit), as before-wN, in the same rounds")
    parser.add_argument("--timeout", type=float, default=3600, help="seconds per run before the tree is killed")
    parser.add_argument("--work-dir", type=Path, default=DEFAULT_WORK_DIR)
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--keep-outputs", action="store_true", help="leave each contender's output in <work>/out")
    parser.add_argument("--run-contender", help=argparse.SUPPRESS)
    parser.add_argument("--output", type=Path, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    size = common.parse_size(QUICK_SIZE if args.quick and args.size == "1.5GB" else args.size)
    paths = Paths(args.work_dir.resolve(), corpus_key=f"{size}B-{args.sources}src-seed{args.seed}")
    if args.run_contender:
        run_contender_in_this_process(args.run_contender, paths, args.output)
        return 0

    names = args.only.split(",") if args.only else list(DEFAULT_CONTENDERS)
    unknown = [n for n in names if n not in CONTENDERS]
    if unknown:
        msg = f"--only: unknown contender(s) {unknown}; choose from {', '.join(CONTENDERS)}"
        raise SystemExit(msg)
    if args.against is not None and not (args.against / "mixprep" / "__init__.py").is_file():
        msg = f"--against: {args.against} is not a mixprep checkout (no mixprep/__init__.py in it)"
        raise SystemExit(msg)
    paths.work.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(paths.logs, ignore_errors=True)
    workload, input_bytes = build_workload(paths, args, size)
    have_mixprep, why_not = mixprep_available()

    contenders = [CONTENDERS[name] for name in names]
    if args.against is not None:
        contenders += [before_contender(name, args.against.resolve()) for name in names if name.startswith("mixprep-w")]
    unavailable = {c.name: Result(c.name, c.summary, "unavailable", error_tail=why_not)
                   for c in contenders if c.name.startswith(("mixprep", "before")) and not have_mixprep}
    runs = {c.name: Runs(c, []) for c in contenders if c.name not in unavailable}
    # Round by round, every contender once per round: a slower or busier stretch of a shared
    # machine falls on all of them, not on whichever ran then.
    for round_number in range(args.repeat):
        for name, contender_runs in runs.items():
            if contender_runs.failure is None:
                print(f"running {name} (round {round_number + 1} of {args.repeat}) ...", file=sys.stderr, flush=True)
                run_once(contender_runs, paths, args.timeout)
    results = []
    for contender in contenders:
        result = unavailable.get(contender.name) or summarize(runs[contender.name], paths, workload, input_bytes)
        results.append(result)
        if not args.keep_outputs:
            shutil.rmtree(paths.output_dir(contender.name), ignore_errors=True)
    results = with_ratios(results, BASELINE)
    targets = evaluate_targets(results, input_bytes)

    machine = common.machine_info()
    header = (f"bench_build: {common.format_bytes(input_bytes)} in {len(workload.sources)} sources, "
              f"{workload.total_samples:,} samples, min_chars {workload.min_chars}, seed {workload.seed}; "
              f"{machine['cpus']} CPUs ({machine['cpu']}), {machine['memory_gib']} GiB RAM")
    busy = [r.name for r in results if r.load_before is not None and r.load_before > 0.5 * machine["cpus"]]
    if busy:
        header += (f"\nWARNING: the machine was busy (1-min load > {0.5 * machine['cpus']:.1f}) when "
                   f"{', '.join(busy)} started: their MB/s understate an idle machine; compare MB/CPU-s.")
    print_report(results, targets, header)
    if args.json:
        common.write_json(args.json, {
            "command": " ".join([Path(sys.executable).name, *sys.argv]),
            "machine": machine,
            "versions": common.package_versions(["mixprep", "datasets", "polars", "pyarrow", "orjson", "numpy"]),
            "input": {"bytes": input_bytes, "sources": len(workload.sources), "dir": str(paths.data)},
            "workload": workload,
            "baseline": BASELINE,
            "results": results,
            "targets": targets,
        })
    return 0 if all(r.status in ("ok", "unavailable") for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
