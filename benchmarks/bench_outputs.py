"""What the build's output options cost on the toy mixture: sidecar compression, the report,
and counting tokens.

Generates the example data (`mixprep example-data`) and builds `configs/toy_mixture.yaml`
as a user would (`python -m mixprep build ... --force`, each build its own measured process)
with each variant, alternating them `--repeat` times (the machine is noisy: compare within a
round), and prints per variant: wall seconds, CPU seconds, the train sidecar's size, the
report's own seconds (from the build's log line), and the tokens counted.

    python benchmarks/bench_outputs.py                           # compression none / snappy / zstd, report, tokens
    python benchmarks/bench_outputs.py --repeat 3 --tokenizer ../shared/data/tokenizers/minimind
"""
from __future__ import annotations

import argparse
import json
import math
import re
import sys
import tempfile
from pathlib import Path

import common

REPO = Path(__file__).resolve().parents[1]
SHARED_TOKENIZER = REPO.parent / "shared" / "data" / "tokenizers" / "minimind"
REPORT_LINE = re.compile(r"report: \S+ \((\d+(?:\.\d+)?)s\)")


def variants(tokenizer: Path | None) -> dict[str, list[str]]:
    """Variant name -> extra build arguments (`--config-tokenizer` stands for a mixture with a tokenizer)."""
    found = {f"sidecar {c}": ["--parquet-compression", c, "--no-report"] for c in ("none", "snappy", "zstd")}
    found["zstd + report"] = []
    if tokenizer is not None:
        found["zstd + tokens"] = ["--no-report", "--config-tokenizer"]
    return found


def toy_configs(folder: Path, tokenizer: Path | None) -> tuple[Path, Path | None]:
    """The shipped toy mixture pointed at `folder/data`, and the same with `tokenizer:`."""
    text = (REPO / "configs" / "toy_mixture.yaml").read_text().replace("../data", str(folder / "data"))
    plain = folder / "toy_mixture.yaml"
    plain.write_text(text)
    if tokenizer is None:
        return plain, None
    with_tokens = folder / "toy_tokens.yaml"
    with_tokens.write_text(text.replace("metadata:\n", f"metadata:\n  tokenizer: {tokenizer}\n", 1))
    return plain, with_tokens


def build_once(config: Path, out: Path, extra: list[str]) -> dict[str, float]:
    """One measured build: seconds, CPU seconds, train sidecar MB, report seconds, tokens."""
    argv = [sys.executable, "-m", "mixprep", "build", str(config), "--output-dir", str(out), "--force", "--no-progress", *extra]
    measured = common.run_measured(argv, label=out.name, cwd=REPO, log_dir=out.parent / "logs")
    if not measured.ok:
        msg = f"build failed ({measured.returncode}): {measured.stderr_tail[-2000:]}"
        raise RuntimeError(msg)
    manifest = json.loads(next(out.glob("*_train.manifest.json")).read_text())
    report = REPORT_LINE.search(measured.stderr_tail)
    return {
        "seconds": measured.seconds,
        "cpu_seconds": measured.cpu_seconds,
        "sidecar_mb": manifest["output"]["parquet"]["bytes"] / 1e6,
        "report_seconds": float(report.group(1)) if report else math.nan,
        "tokens": float(manifest["output"].get("tokens", 0)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--tokenizer", type=Path, default=SHARED_TOKENIZER if SHARED_TOKENIZER.is_dir() else None,
                        help="tokenizer for the token-counting variant (default: ../shared/data/tokenizers/minimind if present)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-outputs-") as temp:
        folder = Path(temp)
        example = [sys.executable, "-m", "mixprep", "example-data", str(folder / "data")]
        common.run_measured(example, label="data", cwd=REPO, log_dir=folder / "logs")
        plain, with_tokens = toy_configs(folder, args.tokenizer)
        results: dict[str, list[dict[str, float]]] = {}
        for round_ in range(args.repeat):
            for name, extra in variants(args.tokenizer).items():
                config = with_tokens if "--config-tokenizer" in extra else plain
                extra = [a for a in extra if a != "--config-tokenizer"]
                assert config is not None
                results.setdefault(name, []).append(build_once(config, folder / f"out-{round_}-{len(results)}", extra))
    print(common.format_table([summary(name, runs) for name, runs in results.items()], COLUMNS))


COLUMNS = (("variant", "toy build"), ("seconds", "seconds"), ("cpu", "CPU seconds"), ("sidecar", "sidecar MB"),
           ("report", "report s"), ("tokens", "tokens"))


def summary(name: str, runs: list[dict[str, float]]) -> dict[str, object]:
    """One table row: every round's seconds (compare within a round), the first run's sizes."""
    def each(key: str, digits: int = 1) -> str:
        return ", ".join(f"{r[key]:.{digits}f}" for r in runs)

    return {
        "variant": name, "seconds": each("seconds"), "cpu": each("cpu_seconds"), "sidecar": round(runs[0]["sidecar_mb"], 1),
        "report": None if math.isnan(runs[0]["report_seconds"]) else each("report_seconds", 2),
        "tokens": int(runs[0]["tokens"]) if runs[0]["tokens"] else None,
    }


if __name__ == "__main__":
    main()
