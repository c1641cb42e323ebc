"""`mixprep train` flags -> frozen `TrainOptions` (what a run is given, saved as config.json).
"""
from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Literal

from mixprep.errors import ConfigError
from mixprep.flags import FlagParser
from mixprep.train.data import PHASES, is_packed_path
from mixprep.train.trackers import REPORT_TO, check_available

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainOptions:
    """Everything `mixprep train` was asked to do, parsed once at the edge."""

    prepared_data: Path | None
    data_config: Path | None
    data_dir: Path | None
    validation_data: Path | None
    out_dir: Path
    tokenizer: Path | None
    phase: Literal["auto", "pretrain", "sft"]
    max_seq_len: int
    epochs: int
    batch_size: int
    learning_rate: float
    weight_decay: float
    accumulation_steps: int
    grad_clip: float | None
    max_steps: int | None
    hidden_size: int
    num_hidden_layers: int
    num_heads: int
    num_workers: int
    build_workers: int
    seed: int
    device: str
    dtype: Literal["auto", "fp32", "bf16"]
    log_interval: int
    save_interval: int
    eval_batches: int
    resume: bool
    report_to: Literal["none", "tensorboard", "wandb"] = "none"
    packed: bool = False
    """Train on packed token windows (`build --pack`): --max_seq_len tokens each, all carrying loss."""


# ----------------------------------------------------------------------------- CLI


def options_to_json(opts: TrainOptions) -> dict[str, Any]:
    return {f.name: (str(v) if isinstance(v := getattr(opts, f.name), Path) else v) for f in fields(opts)}


def build_parser() -> FlagParser:
    parser = FlagParser(
        prog="mixprep train",
        # --out_dir (the run) and --output_dir (the seed's data folder) are one typo apart:
        # no prefix matching, so `--out` or `--output` is an error rather than a silent guess.
        allow_abbrev=False,
        description="Train a compact GPT on a prepared mixture (or build it first from a mixture YAML). "
        "`mixprep train compare RUN_DIR RUN_DIR ...` compares finished runs.",
    )
    data = parser.add_argument_group("data")
    source = data.add_mutually_exclusive_group(required=True)
    source.add_argument("--prepared_data", type=Path, metavar="FILE.jsonl",
                        help="a JSONL written by `mixprep build` (or any such JSONL), or a packed split's "
                        "<stem>.tokens (Megatron .bin/.idx, as `build --pack` writes)")
    source.add_argument("--data_config", "--mixture_config", type=Path, metavar="MIXTURE.yaml",
                        help="a mixture YAML: build its train/validation files first (reused when up to date)")
    data.add_argument("--output_dir", "--data_dir", dest="data_dir", type=Path, default=None, metavar="DIR",
                      help="with --data_config: where the built files go (default: the mixture's "
                      "metadata.output_dir, as `mixprep build` uses, so both share them)")
    data.add_argument("--validation_data", type=Path, default=None, metavar="FILE.jsonl",
                      help="validation JSONL (default: the train file's name with _train -> _validation)")
    data.add_argument("--tokenizer", type=Path, default=None, metavar="DIR",
                      help="tokenizer folder (default: <out_dir>/tokenizer, then tokenizer/ next to the data)")
    data.add_argument("--phase", choices=("auto", *PHASES), default="auto",
                      help="record schema; auto: sft for {'conversations'} records, pretrain for {'text'}")
    data.add_argument("--max_seq_len", type=int, default=512, help="tokens per sample (model context)")
    data.add_argument("--packed", action="store_true",
                      help="train on packed windows of --max_seq_len tokens, every position carrying loss: the "
                      "<stem>.tokens.bin beside --prepared_data, or --data_config built with pack (pretrain only)")
    data.add_argument("--num_workers", type=int, default=2, help="DataLoader worker processes")
    data.add_argument("--build_workers", type=int, default=1, help="with --data_config: build processes")

    run = parser.add_argument_group("run")
    run.add_argument("--out_dir", type=Path, default=Path("out"), metavar="DIR",
                     help="checkpoints, metrics.jsonl, loss.png (default ./out)")
    run.add_argument("--epochs", type=int, default=1)
    run.add_argument("--batch_size", type=int, default=32)
    run.add_argument("--learning_rate", type=float, default=5e-4, help="peak; cosine decay to a tenth over --epochs")
    run.add_argument("--weight_decay", type=float, default=0.1)
    run.add_argument("--accumulation_steps", type=int, default=1, help="micro-batches per optimizer step")
    run.add_argument("--grad_clip", type=float, default=1.0, help="max gradient norm; 0 disables clipping")
    run.add_argument("--max_steps", type=int, default=None, help="stop after this many optimizer steps")
    run.add_argument("--seed", type=int, default=42, help="weight init and sampling order")
    run.add_argument("--device", default="auto", help="auto (cuda if present), cpu, cuda, cuda:N")
    run.add_argument("--dtype", choices=("auto", "fp32", "bf16"), default="auto",
                     help="auto: bf16 autocast on a GPU that supports it, fp32 otherwise")
    run.add_argument("--log_interval", type=int, default=10, help="steps between metrics records")
    run.add_argument("--save_interval", type=int, default=500, help="steps between checkpoints + validation")
    run.add_argument("--eval_batches", type=int, default=50, help="validation batches per evaluation")
    run.add_argument("--resume", action="store_true", help="continue the run in --out_dir from its checkpoint")
    run.add_argument("--report_to", choices=REPORT_TO, default="none",
                     help="also log metrics to tensorboard (<out_dir>/tensorboard) or wandb (offline without credentials)")

    model = parser.add_argument_group("model")
    model.add_argument("--hidden_size", type=int, default=512)
    model.add_argument("--num_hidden_layers", type=int, default=8)
    model.add_argument("--num_heads", type=int, default=8)
    return parser


def parse_options(argv: Sequence[str]) -> TrainOptions:
    args = build_parser().parse_args(list(argv))
    positive = ("epochs", "batch_size", "accumulation_steps", "log_interval", "save_interval", "eval_batches",
                "max_seq_len")
    for name in positive:
        if getattr(args, name) < 1:
            msg = f"--{name} {getattr(args, name)} is invalid: it must be at least 1"
            raise ConfigError(msg)
    if args.max_steps is not None and args.max_steps < 1:
        msg = f"--max_steps {args.max_steps} is invalid: it must be at least 1 (omit it to train all --epochs)"
        raise ConfigError(msg)
    if args.num_workers < 0:
        msg = f"--num_workers {args.num_workers} is invalid: 0 loads in the main process, N > 0 uses N workers"
        raise ConfigError(msg)
    if args.grad_clip < 0:
        msg = f"--grad_clip {args.grad_clip} is invalid: a positive max norm, or 0 to disable"
        raise ConfigError(msg)
    if args.data_dir is not None and args.data_config is None:
        msg = "--output_dir/--data_dir only applies with --data_config (where to build the mixture's files)"
        raise ConfigError(msg)
    check_available(args.report_to)
    if args.prepared_data is not None and is_packed_path(args.prepared_data):
        args.packed = True
    if args.packed and args.phase == "sft":
        msg = "--packed trains pretrain windows; SFT records stay unpacked (their loss masks differ per record)"
        raise ConfigError(msg)
    values = vars(args)
    values["grad_clip"] = args.grad_clip or None
    return TrainOptions(**values)
