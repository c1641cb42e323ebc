"""Training checkpoints: one file per run, written atomically, checked before a resume.

Place in the flow: `mixprep.train` saves `<out_dir>/checkpoint.pt` at every save interval and
loads it for `--resume`.

Format (version 1), a `torch.save`d dict of plain types and tensors, so it loads with
`torch.load(path, weights_only=True)`:
  format: 1
  model: state_dict (fp32 weights; the rotary tables are rebuilt from model_config)
  optimizer: AdamW state_dict
  position: {"step": optimizer steps, "micro_batches_done": over all epochs, "tokens_seen"}
  model_config: mixprep.model.GPTConfig fields
  train_config: every `mixprep train` option
  data: {"path", "size", "records", "xxh3" (offset-index fingerprint), "manifest_checksum" (when built)}

Guarantees: a crash mid-save leaves the previous checkpoint intact (temp file + os.replace);
a resume is refused, listing every difference, when the data, the model shape or an option in
`RESUME_LOCKED` differ from the checkpoint's.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from mixprep.errors import ConfigError, OutputError

CHECKPOINT_FILE = "checkpoint.pt"
CHECKPOINT_FORMAT = 1
# Options that decide which batches a step sees or what the weights mean: a resumed run
# must keep them, or "continues where it stopped" would silently stop being true.
RESUME_LOCKED = ("phase", "max_seq_len", "batch_size", "accumulation_steps", "epochs", "learning_rate",
                 "weight_decay", "seed")
DATA_IDENTITY = ("size", "records", "xxh3")


def save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    """Write `payload` to `path` through a temporary file in the same folder."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        torch.save(payload, tmp)
        os.replace(tmp, path)  # a crash mid-save leaves the previous checkpoint intact
    except (OSError, RuntimeError) as exc:  # torch reports a missing folder as RuntimeError
        msg = f"cannot write checkpoint {path}: {exc}"
        raise OutputError(msg) from exc


def load_checkpoint(path: Path) -> dict[str, Any]:
    """The checkpoint at `path`, on CPU; ConfigError when missing, unreadable or another format."""
    if not path.is_file():
        msg = f"--resume: no checkpoint at {path}; hint: drop --resume to start a fresh run in that --out_dir"
        raise ConfigError(msg)
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises a zoo of types for a corrupt/foreign file
        msg = f"--resume: {path} is not a readable mixprep checkpoint ({type(exc).__name__}: {exc})"
        raise ConfigError(msg) from exc
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        found = payload.get("format") if isinstance(payload, dict) else type(payload).__name__
        msg = f"--resume: {path} has checkpoint format {found!r}; this mixprep reads format {CHECKPOINT_FORMAT}"
        raise ConfigError(msg)
    return payload


def resume_conflicts(
    saved: dict[str, Any], *, options: dict[str, Any], model_config: dict[str, Any], data: dict[str, Any]
) -> list[str]:
    """Human-readable differences that would make a resumed run not continue the saved one."""
    problems = [
        f"--{key} {options[key]} (checkpoint: {saved['train_config'].get(key)})"
        for key in RESUME_LOCKED if saved["train_config"].get(key) != options[key]
    ]
    problems += [
        f"model {key} {value} (checkpoint: {saved['model_config'].get(key)})"
        for key, value in model_config.items() if saved["model_config"].get(key) != value
    ]
    for key in DATA_IDENTITY:
        if saved["data"].get(key) != data[key]:
            problems.append(
                f"train data {data['path']} {key} {data[key]} (checkpoint: {saved['data'].get(key)} "
                f"for {saved['data'].get('path')})"
            )
    return problems
