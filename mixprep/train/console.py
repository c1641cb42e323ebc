"""What a run prints: a tqdm bar on a terminal, else one log line per metrics record, with the ETA."""
from __future__ import annotations

import logging
import sys
from typing import Any

logger = logging.getLogger("mixprep.train.run")  # the run's own logger: one stream of messages for a run


def make_progress(*, total: int, initial: int) -> Any:
    """A tqdm bar on a terminal; None otherwise (log lines instead)."""
    if not sys.stderr.isatty():
        return None
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, unit="step", dynamic_ncols=True)


def format_duration(seconds: float) -> str:
    """"45s", "12m05s", "3h07m"."""
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def describe(record: dict[str, Any], progress: Any, seconds_left: float | None = None) -> None:
    loss = record["train_loss"]
    postfix = {"loss": f"{loss:.4f}" if loss is not None else "-", "tok/s": f"{record['tokens_per_s']:.0f}"}
    if record.get("val_loss") is not None:
        postfix["val"] = f"{record['val_loss']:.4f}"
    if progress is not None:
        progress.set_postfix(postfix, refresh=False)
        if "val_loss" in record:
            progress.write(f"step {record['step']}: val_loss {postfix.get('val', '-')}")
        return
    logger.info(
        "step %d  epoch %.3f  loss %s  val %s  lr %.3g  tok/s %s  data_wait %.1f%%  eta %s",
        record["step"], record["epoch"], postfix["loss"], postfix.get("val", "-"), record["lr"],
        postfix["tok/s"], 100 * record["data_wait_fraction"], "-" if seconds_left is None else format_duration(seconds_left),
    )
