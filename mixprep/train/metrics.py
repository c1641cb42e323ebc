"""Training metrics on disk: `metrics.jsonl`, `loss.png`, and comparing runs.

Place in the flow: `mixprep.train` appends one JSON object per logged step to
`<out_dir>/metrics.jsonl` and redraws `<out_dir>/loss.png` (loss against step and tokens
seen, over a learning-rate panel) at every save; `compare_runs`
reads several runs' files back and `python -m mixprep.metrics DIR DIR ...` prints them
side by side.

Record format (one per line; `val_loss` is present on the lines written at a save):
  {"step": 120, "epoch": 0, "train_loss": 3.91, "lr": 0.00049, "tokens_per_s": 20480.0,
   "supervised_tokens_per_s": 4900.0, "samples_per_s": 40.0, "data_wait_fraction": 0.03, "tokens_seen": 245760, "val_loss": 3.95}
`step` counts optimizer steps; `tokens_per_s` counts the positions the model processed
(input tokens, trailing all-padding columns trimmed), `supervised_tokens_per_s` those that
carry loss (what padding wastes is the difference; packed windows waste none); `data_wait_fraction` is the time the
loop spent blocked on the DataLoader divided by the wall time of the interval.

Guarantees: a resumed run first truncates `metrics.jsonl` to the checkpoint's step, so the
file never holds two records for one step; matplotlib is imported only when plotting.
"""
from __future__ import annotations

import json
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mixprep.errors import OutputError, SourceError
from mixprep.flags import FlagParser

METRICS_FILE = "metrics.jsonl"
PLOT_FILE = "loss.png"


def read_metrics(path: Path) -> list[dict]:
    """All records of a metrics.jsonl; a torn last line (a run killed mid-write) is skipped."""
    if not path.is_file():
        msg = f"no metrics file at {path}; hint: pass a training --out_dir that has run at least one --log_interval"
        raise SourceError(msg)
    records = []
    lines = path.read_text(encoding="utf-8").splitlines()
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as exc:
            if number == len(lines):
                break
            msg = f"{path}:{number}: not a JSON object ({exc.msg}); metrics.jsonl holds one object per line"
            raise SourceError(msg) from exc
    return records


class MetricsLog:
    """Append-only metrics.jsonl, flushed per record so a crash loses at most the current line."""

    def __init__(self, out_dir: Path, *, resume_step: int | None) -> None:
        self.path = out_dir / METRICS_FILE
        if resume_step is None:
            self.path.write_text("", encoding="utf-8")
        elif self.path.exists():
            self._truncate_after(resume_step)

    def _truncate_after(self, step: int) -> None:
        # Records logged after the checkpoint will be logged again by the resumed run.
        kept = [r for r in read_metrics(self.path) if r["step"] <= step]
        text = "".join(json.dumps(r) + "\n" for r in kept)
        self.path.write_text(text, encoding="utf-8")

    def append(self, record: dict) -> None:
        with self.path.open("a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")


def plot_losses(metrics_path: Path, png_path: Path, *, title: str | None = None) -> Path:
    """Train and validation loss against step (tokens seen on the top axis) over a panel of
    the learning rate, written with matplotlib's Agg backend."""
    records = read_metrics(metrics_path)
    name = title or metrics_path.parent.name
    return _plot_runs({name: records}, png_path, title=f"{name}: loss and learning rate")


def _plot_runs(runs: dict[str, list[dict]], png_path: Path, *, title: str = "loss and learning rate") -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, lr_ax) = plt.subplots(2, 1, figsize=(8, 6.5), sharex=True, height_ratios=(3, 1))
    try:
        for index, (name, records) in enumerate(runs.items()):
            color = f"C{index}"
            train = [(r["step"], r["train_loss"]) for r in records if r.get("train_loss") is not None]
            val = [(r["step"], r["val_loss"]) for r in records if r.get("val_loss") is not None]
            rates = [(r["step"], r["lr"]) for r in records if r.get("lr") is not None]
            if train:
                ax.plot(*zip(*train, strict=True), color=color, label=f"{name} train")
            if val:
                ax.plot(*zip(*val, strict=True), color=color, linestyle="--", marker="o", label=f"{name} validation")
            if rates:
                lr_ax.plot(*zip(*rates, strict=True), color=color)
        _tokens_axis(ax, next(iter(runs.values()), []))
        ax.set_title(title)
        ax.set_ylabel("loss (cross-entropy, nats/token)")
        ax.grid(alpha=0.3)
        ax.legend()
        lr_ax.set_xlabel("optimizer step")
        lr_ax.set_ylabel("learning rate")
        lr_ax.grid(alpha=0.3)
        fig.tight_layout()
        png_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = png_path.with_name(png_path.name + ".tmp.png")
        fig.savefig(tmp, dpi=100)
        tmp.replace(png_path)
    except OSError as exc:
        msg = f"cannot write the loss plot {png_path}: {exc}"
        raise OutputError(msg) from exc
    finally:
        plt.close(fig)
    return png_path


def _tokens_axis(ax: Any, records: list[dict]) -> None:
    """A top axis labelled in tokens seen (the first run's), mapped from steps by interpolation."""
    points = sorted({(0, 0)} | {(r["step"], r["tokens_seen"]) for r in records if r.get("tokens_seen") is not None})
    if len(points) < 2:
        return
    steps, tokens = (np.array(v, dtype=float) for v in zip(*points, strict=True))
    top = ax.secondary_xaxis(
        "top",
        functions=(lambda s: np.interp(s, steps, tokens), lambda t: np.interp(t, tokens, steps)),
    )
    top.set_xlabel("tokens seen")


@dataclass(frozen=True)
class RunSummary:
    """What one run reached, for a side-by-side table."""

    name: str
    steps: int
    tokens_seen: int
    final_train_loss: float | None
    final_val_loss: float | None
    best_val_loss: float | None
    tokens_per_s: float | None
    data_wait_fraction: float | None


def summarize_run(run_dir: Path, *, tail: int = 5) -> RunSummary:
    """Summary of a run; the train loss is the mean of the last `tail` logged values (less noisy)."""
    records = read_metrics(run_dir / METRICS_FILE)
    train = [r["train_loss"] for r in records if r.get("train_loss") is not None]
    val = [r["val_loss"] for r in records if r.get("val_loss") is not None]
    speed = [r["tokens_per_s"] for r in records if r.get("tokens_per_s") is not None]
    wait = [r["data_wait_fraction"] for r in records if r.get("data_wait_fraction") is not None]
    return RunSummary(
        name=str(run_dir),
        steps=max((r["step"] for r in records), default=0),
        tokens_seen=max((r.get("tokens_seen", 0) for r in records), default=0),
        final_train_loss=statistics.fmean(train[-tail:]) if train else None,
        final_val_loss=val[-1] if val else None,
        best_val_loss=min(val) if val else None,
        tokens_per_s=statistics.median(speed) if speed else None,
        data_wait_fraction=statistics.median(wait) if wait else None,
    )


def format_comparison(summaries: Sequence[RunSummary]) -> str:
    """A fixed-width table, one row per run, best final validation loss marked with '*'."""
    header = ("run", "steps", "tokens", "train_loss", "val_loss", "best_val", "tok/s", "data_wait")
    vals = [s.final_val_loss for s in summaries if s.final_val_loss is not None]
    best = min(vals) if vals else None

    def num(value: float | None, spec: str) -> str:
        return "-" if value is None else format(value, spec)

    rows = [header]
    for s in summaries:
        mark = "*" if best is not None and s.final_val_loss == best else ""
        rows.append((
            s.name + mark, str(s.steps), str(s.tokens_seen), num(s.final_train_loss, ".4f"),
            num(s.final_val_loss, ".4f"), num(s.best_val_loss, ".4f"), num(s.tokens_per_s, ".0f"),
            num(s.data_wait_fraction, ".3f"),
        ))
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows)


def compare_runs(run_dirs: Sequence[Path], *, plot: Path | None = None) -> str:
    """The comparison table for `run_dirs`; with `plot`, also one figure overlaying their curves."""
    summaries = [summarize_run(Path(d)) for d in run_dirs]
    if plot is not None:
        _plot_runs({str(d): read_metrics(Path(d) / METRICS_FILE) for d in run_dirs}, plot)
    return format_comparison(summaries)


def compare_main(argv: list[str] | None = None) -> int:
    """`python -m mixprep.metrics RUN_DIR RUN_DIR ... [--plot FILE.png]` (also `mixprep train compare`)."""
    parser = FlagParser(
        prog="mixprep train compare", description="Compare training runs' metrics.jsonl side by side."
    )
    parser.add_argument("runs", nargs="+", type=Path, help="training --out_dir folders")
    parser.add_argument("--plot", type=Path, default=None, help="also write one PNG overlaying their loss curves")
    args = parser.parse_args(argv)
    print(compare_runs(args.runs, plot=args.plot))
    if args.plot is not None:
        print(f"wrote {args.plot}")
    return 0


if __name__ == "__main__":
    import sys

    from mixprep.errors import MixprepError

    try:
        raise SystemExit(compare_main())
    except MixprepError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(1) from None
