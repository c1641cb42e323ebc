"""Does `mixprep build`'s peak memory follow its input? (issue: a 4x larger input may not
raise peak memory by more than 25%).

Builds the bench_build workload (3 generated sources, length filter, exact sampling,
global shuffle) at `--size` and at 4x that size, with `--workers 1` and `2`, each as its
own measured process tree, and prints peak RSS (summed over processes) and PSS (shared
pages split between them) per size, and the 4x/1x ratios.

    python benchmarks/bench_memory.py                 # 200 MB and 800 MB
    python benchmarks/bench_memory.py --size 400MB    # 400 MB and 1.6 GB
"""
from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_build  # noqa: E402
import common  # noqa: E402

TARGET_GROWTH = 1.25


def measure(size: int, workers: int, work_dir: Path) -> common.Measurement:
    args = bench_build.parse_args(["--size", str(size), "--work-dir", str(work_dir)])
    paths = bench_build.Paths(work_dir.resolve(), corpus_key=f"{size}B-{args.sources}src-seed{args.seed}")
    paths.work.mkdir(parents=True, exist_ok=True)
    bench_build.build_workload(paths, args, size)
    out = paths.output_dir("mixprep")
    shutil.rmtree(out, ignore_errors=True)
    argv = [sys.executable, "-m", "mixprep", "build", str(paths.mixture), "--workers", str(workers),
            "--output-dir", str(out), "--no-progress", "-q"]
    result = common.run_measured(argv, label=f"mixprep-w{workers}-{size}", log_dir=paths.logs,
                                 env=bench_build.child_env())
    shutil.rmtree(out, ignore_errors=True)
    if not result.ok:
        msg = f"mixprep failed at {size} bytes, --workers {workers}:\n{result.stderr_tail}"
        raise SystemExit(msg)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", default="200MB", help="the smaller input (the larger is 4x)")
    parser.add_argument("--work-dir", type=Path, default=bench_build.DEFAULT_WORK_DIR)
    args = parser.parse_args(argv)
    small = common.parse_size(args.size)
    rows = []
    for workers in (1, 2):
        runs = {size: measure(size, workers, args.work_dir) for size in (small, 4 * small)}
        a, b = runs[small], runs[4 * small]
        rows.append({
            "workers": workers,
            "input": f"{common.format_bytes(small)} -> {common.format_bytes(4 * small)}",
            "rss_mib": f"{a.peak_rss_bytes / 2**20:,.0f} -> {b.peak_rss_bytes / 2**20:,.0f}",
            "pss_mib": f"{a.peak_pss_bytes / 2**20:,.0f} -> {b.peak_pss_bytes / 2**20:,.0f}",
            "rss_ratio": f"{b.peak_rss_bytes / a.peak_rss_bytes:.2f}",
            "pss_ratio": f"{b.peak_pss_bytes / a.peak_pss_bytes:.2f}",
            "seconds": f"{a.seconds:.1f} -> {b.seconds:.1f}",
        })
    print(common.format_table(rows, [("workers", "workers"), ("input", "input"), ("rss_mib", "peak RSS MiB"),
                                     ("pss_mib", "peak PSS MiB"), ("rss_ratio", "RSS 4x/1x"),
                                     ("pss_ratio", "PSS 4x/1x"), ("seconds", "seconds")]))
    worst = max(float(r["pss_ratio"]) for r in rows)
    verdict = "met" if worst <= TARGET_GROWTH else "MISSED"
    print(f"\n  [{verdict}] peak memory at 4x the input <= {TARGET_GROWTH}x: worst PSS ratio {worst:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
