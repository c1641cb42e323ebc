"""Where a run's metrics go besides `metrics.jsonl`: TensorBoard or Weights & Biases (`--report_to`).

Both receive every record `metrics.jsonl` gets, at its optimizer step, under the same
names grouped as the dashboards show them (`train/loss`, `val/loss`, `train/lr`,
`throughput/tokens_per_s`, ...). TensorBoard event files go to `<out_dir>/tensorboard/`.
W&B logs online when it has credentials (`WANDB_API_KEY`, or `WANDB_MODE=online` after
`wandb login`) and offline otherwise, into `<out_dir>/wandb/` (`wandb sync` uploads it
later), so a run never waits on the network. Each library is imported only when asked for.
"""
from __future__ import annotations

import importlib.util
import logging
import os
from pathlib import Path
from typing import Any, Protocol

from mixprep.errors import ConfigError

logger = logging.getLogger(__name__)

REPORT_TO = ("none", "tensorboard", "wandb")
TAGS = {
    "train_loss": "train/loss",
    "val_loss": "val/loss",
    "lr": "train/lr",
    "epoch": "train/epoch",
    "tokens_seen": "train/tokens_seen",
    "tokens_per_s": "throughput/tokens_per_s",
    "samples_per_s": "throughput/samples_per_s",
    "data_wait_fraction": "throughput/data_wait_fraction",
}


class Tracker(Protocol):
    def log(self, record: dict[str, Any]) -> None: ...

    def close(self) -> None: ...


def check_available(kind: str) -> None:
    """Refuse `--report_to` a library that is not installed, before the run starts."""
    if kind != "none" and importlib.util.find_spec(kind) is None:
        msg = f'--report_to {kind} needs the {kind} package: pip install "mixprep[track]" (or pip install {kind})'
        raise ConfigError(msg)


def make_tracker(kind: str, out_dir: Path, config: dict[str, Any]) -> Tracker | None:
    check_available(kind)
    if kind == "tensorboard":
        return TensorBoardTracker(out_dir / "tensorboard", config)
    if kind == "wandb":
        return WandbTracker(out_dir, config)
    return None


def scalars(record: dict[str, Any]) -> dict[str, float]:
    """A metrics record's numbers under their dashboard names (None values left out)."""
    return {TAGS[k]: float(v) for k, v in record.items() if k in TAGS and v is not None}


class TensorBoardTracker:
    def __init__(self, folder: Path, config: dict[str, Any]) -> None:
        from torch.utils.tensorboard import SummaryWriter  # needs the tensorboard package

        self.writer = SummaryWriter(log_dir=str(folder))
        self.writer.add_text("config", "\n".join(f"    {k}: {v}" for k, v in sorted(config.items())))
        logger.info("tensorboard: logging to %s (tensorboard --logdir %s)", folder, folder)

    def log(self, record: dict[str, Any]) -> None:
        for tag, value in scalars(record).items():
            self.writer.add_scalar(tag, value, global_step=record["step"])
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


class WandbTracker:
    def __init__(self, out_dir: Path, config: dict[str, Any]) -> None:
        import wandb

        mode = os.environ.get("WANDB_MODE") or ("online" if os.environ.get("WANDB_API_KEY") else "offline")
        self.run = wandb.init(
            project=os.environ.get("WANDB_PROJECT", "mixprep"),
            name=out_dir.name,
            dir=str(out_dir),
            config=config,
            mode=mode,
            settings=wandb.Settings(silent=True, console="off"),
        )
        where = "offline into " + str(out_dir / "wandb") + " (upload later with `wandb sync`)" if mode == "offline" else mode
        logger.info("wandb: logging %s", where)

    def log(self, record: dict[str, Any]) -> None:
        self.run.log(scalars(record), step=record["step"])

    def close(self) -> None:
        self.run.finish()
