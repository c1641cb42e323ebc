"""`mixprep train`: fit a compact GPT to a prepared mixture, the last step of the workflow.

Place in the flow: mixture YAML -> `mixprep build` -> `<phase>_<name>_train.jsonl` (+ `_validation`)
-> `UnifiedDataset` -> seeded batches -> `train.model.GPT` -> checkpoints and metrics in
`--out_dir`. `--prepared_data FILE.jsonl` trains on a file that exists; `--data_config MIXTURE.yaml`
(alias `--mixture_config`) first builds the train/validation files through the engine, which
reuses outputs that are up to date.

Guarantees:
- Sampling order depends only on `--seed` and the epoch: epoch e visits a permutation drawn from
  `np.random.default_rng([seed, e])`, cut into `--batch_size` batches. `--resume` restarts at the
  first micro-batch the checkpoint had not consumed, without reading or tokenizing the ones before
  it, so a resumed run sees the same batches and (on CPU, fp32) reproduces the uninterrupted
  run's losses bit for bit.
- The learning-rate schedule (cosine from `--learning_rate` to a tenth of it) spans the whole
  `--epochs` budget; `--max_steps` only stops early. A capped run is therefore a prefix of the
  full one, and resuming it with a larger `--max_steps` continues the same curve.
- The loss is averaged over `loss_mask` (pretrain: every non-padding target; SFT: assistant
  tokens only), and `--accumulation_steps` micro-batches weigh equally in each optimizer step.
- `<out_dir>/checkpoint.pt` (model, optimizer, step, position, config, data fingerprint) is written
  atomically at every `--save_interval`, at the end, and on Ctrl-C; resuming against different
  data, model shape or batch settings is refused with the differences listed.
- `<out_dir>/metrics.jsonl` + `loss.png` (see `train.metrics`), with `--report_to` also
  TensorBoard or W&B (`train.trackers`), `config.json` (what the run was
  given) and `tokenizer/` (a copy, so a run folder is self-contained).
"""
from __future__ import annotations

import contextlib
import importlib.util
import json
import logging
import math
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset

from mixprep.errors import ConfigError, SourceError
from mixprep.train.checkpoint import CHECKPOINT_FILE, CHECKPOINT_FORMAT, load_checkpoint, resume_conflicts, save_checkpoint
from mixprep.train.console import describe, format_duration, make_progress
from mixprep.train.data import (
    TOKENIZER_DIR,
    SeededBatchSampler,
    batches_per_epoch,
    data_fingerprint,
    detect_phase,
    find_tokenizer,
    load_tokenizer,
    make_loader,
    packed_tokenizer,
    packed_windows,
    resolve_data,
    sequential_batches,
    trim_padding_columns,
)
from mixprep.train.metrics import METRICS_FILE, PLOT_FILE, MetricsLog, plot_losses
from mixprep.train.model import GPT, GPTConfig
from mixprep.train.options import TrainOptions, options_to_json
from mixprep.train.trackers import make_tracker

logger = logging.getLogger(__name__)


CONFIG_FILE = "config.json"
PACE_STEPS = 5  # steps measured before judging how long the run will take
LONG_RUN_SECONDS = 3600


@dataclass(frozen=True)
class DataFiles:
    """The files one run trains and validates on, and the train file's identity."""

    train: Path
    validation: Path | None
    fingerprint: dict[str, Any]


@dataclass(frozen=True)
class Position:
    """How far training got: optimizer steps taken and micro-batches consumed over all epochs."""

    step: int = 0
    micro_batches_done: int = 0
    tokens_seen: int = 0


@dataclass(frozen=True)
class TrainResult:
    """What `train` returns (the CLI prints it)."""

    out_dir: Path
    step: int
    train_loss: float | None
    val_loss: float | None
    checkpoint: Path
    num_parameters: int


# ----------------------------------------------------------------------------- device + precision


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        msg = f"--device {name!r} is not a device torch knows; accepted: auto, cpu, cuda, cuda:N, mps"
        raise ConfigError(msg) from exc
    if device.type == "cuda" and not torch.cuda.is_available():
        msg = f"--device {name}: CUDA is not available in this torch build/machine; hint: --device cpu or auto"
        raise ConfigError(msg)
    return device


def resolve_autocast_dtype(name: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype, or None for plain fp32. auto: bf16 on a GPU that supports it."""
    if name == "fp32":
        return None
    if name == "bf16":
        return torch.bfloat16
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return None


def autocast_context(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


# ----------------------------------------------------------------------------- optimization


def make_optimizer(model: GPT, opts: TrainOptions, device: torch.device) -> torch.optim.AdamW:
    # Decay matrices (embedding included, as nanoGPT does), not norm gains.
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": opts.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=opts.learning_rate, betas=(0.9, 0.95), fused=device.type == "cuda")


def learning_rate_at(step: int, *, peak: float, total_steps: int) -> float:
    """Cosine from `peak` to `peak / 10` over `total_steps` (MiniMind's schedule)."""
    progress = min(step / max(total_steps, 1), 1.0)
    floor = peak / 10
    return floor + 0.5 * (peak - floor) * (1 + math.cos(math.pi * progress))


def micro_batch_weight(micro_index: int, *, accumulation_steps: int, total_micro_batches: int) -> float:
    """1 / size of the accumulation group `micro_index` belongs to.

    The last group of a run may be short (total not a multiple of the accumulation); weighting
    by its real size keeps every optimizer step an average, not a shrunken sum.
    """
    group_start = (micro_index // accumulation_steps) * accumulation_steps
    return 1.0 / min(accumulation_steps, total_micro_batches - group_start)


# ----------------------------------------------------------------------------- checkpoints


def checkpoint_payload(
    model: GPT, optimizer: torch.optim.Optimizer, position: Position, opts: TrainOptions, data: DataFiles
) -> dict[str, Any]:
    return {
        "format": CHECKPOINT_FORMAT,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "position": asdict(position),
        "model_config": model.config.to_dict(),
        "train_config": options_to_json(opts),
        "data": data.fingerprint,
    }


# ----------------------------------------------------------------------------- the loop


@dataclass
class Window:
    """Running totals between two metrics records (mutable on purpose: the loop updates it)."""

    started: float
    data_wait: float = 0.0
    tokens: int = 0
    supervised: int = 0  # positions that carry loss (padding excluded)
    samples: int = 0
    loss_sum: torch.Tensor | None = None
    steps: int = 0

    def add_step(self, loss: torch.Tensor, tokens: int) -> None:
        # Kept on the device: calling .item() every step would sync the GPU each step.
        self.loss_sum = loss if self.loss_sum is None else self.loss_sum + loss
        self.steps += 1
        self.tokens += tokens


class Trainer:
    """One training run: model, optimizer, data and position; `run()` trains to the end."""

    def __init__(self, opts: TrainOptions) -> None:
        self.opts = opts
        self.device = resolve_device(opts.device)
        self.autocast_dtype = resolve_autocast_dtype(opts.dtype, self.device)
        opts.out_dir.mkdir(parents=True, exist_ok=True)
        self.checkpoint_path = opts.out_dir / CHECKPOINT_FILE
        saved = self._load_or_refuse_checkpoint()

        train_path, validation_path = resolve_data(
            prepared_data=opts.prepared_data, validation_data=opts.validation_data, data_config=opts.data_config,
            data_dir=opts.data_dir, build_workers=opts.build_workers, pack_seq_len=opts.max_seq_len if opts.packed else None,
        )
        self.tokenizer = load_tokenizer(find_tokenizer(
            opts.tokenizer or packed_tokenizer(train_path, opts), out_dir=opts.out_dir, train_path=train_path
        ))
        if opts.packed:
            self.phase = "pretrain"
        else:
            self.phase = detect_phase(train_path) if opts.phase == "auto" else opts.phase
        self.train_set = self._dataset(train_path)
        self.val_set = self._dataset(validation_path) if validation_path is not None else None
        if len(self.train_set) == 0:
            msg = f"{train_path}: no records to train on"
            raise SourceError(msg)
        self.data = DataFiles(train_path, validation_path, data_fingerprint(train_path, len(self.train_set)))

        torch.manual_seed(opts.seed)  # weight init; the data order has its own seeded generator
        model_config = GPTConfig(
            vocab_size=len(self.tokenizer), hidden_size=opts.hidden_size, num_hidden_layers=opts.num_hidden_layers,
            num_heads=opts.num_heads, max_seq_len=opts.max_seq_len,
        )
        self.model = GPT(model_config).to(self.device)
        self.optimizer = make_optimizer(self.model, opts, self.device)
        self.position = Position()
        if saved is not None:
            self._restore(saved, model_config)

        self.batches_per_epoch = batches_per_epoch(len(self.train_set), opts.batch_size)
        self.total_micro_batches = opts.epochs * self.batches_per_epoch
        self.schedule_steps = math.ceil(self.total_micro_batches / opts.accumulation_steps)
        self.stop_step = min(self.schedule_steps, opts.max_steps) if opts.max_steps else self.schedule_steps
        self.metrics = MetricsLog(opts.out_dir, resume_step=self.position.step if saved is not None else None)
        self._write_run_files()
        self.tracker = make_tracker(opts.report_to, opts.out_dir, options_to_json(opts))
        self.started = Position()  # where this process began (a resumed run's earlier steps took no time here)
        self.started_at = 0.0
        self.last_train_loss: float | None = None
        self.last_val_loss: float | None = None
        # A missing plotting library should cost the picture, not the run (found out at step 500).
        self.can_plot = importlib.util.find_spec("matplotlib") is not None
        if not self.can_plot:
            logger.warning("matplotlib is not installed: no %s (pip install 'mixprep[train]')", PLOT_FILE)

    def _load_or_refuse_checkpoint(self) -> dict[str, Any] | None:
        if self.opts.resume:
            return load_checkpoint(self.checkpoint_path)
        if self.checkpoint_path.exists():
            msg = (
                f"{self.checkpoint_path} exists: --out_dir {self.opts.out_dir} holds a run already; "
                f"hint: pass --resume to continue it, or choose a new --out_dir (or delete it) to start over"
            )
            raise ConfigError(msg)
        return None

    def _dataset(self, path: Path) -> Dataset:
        if self.opts.packed:
            return packed_windows(path, self.opts.max_seq_len, len(self.tokenizer))
        from mixprep.serve.dataset import UnifiedDataset

        return UnifiedDataset(path, self.tokenizer, max_length=self.opts.max_seq_len, phase=self.phase)

    def _restore(self, saved: dict[str, Any], model_config: GPTConfig) -> None:
        problems = resume_conflicts(saved, options=options_to_json(self.opts), model_config=model_config.to_dict(),
                                    data=self.data.fingerprint)
        if problems:
            msg = (
                f"--resume from {self.checkpoint_path}: this run differs from the checkpoint in "
                f"{'; '.join(problems)}; hint: resume with the original options and data, or start a new --out_dir"
            )
            raise ConfigError(msg)
        self.model.load_state_dict(saved["model"])
        self.optimizer.load_state_dict(saved["optimizer"])
        self.position = Position(**saved["position"])
        logger.info("resumed %s at step %d", self.checkpoint_path, self.position.step)

    def _write_run_files(self) -> None:
        tokenizer_copy = self.opts.out_dir / TOKENIZER_DIR
        self.tokenizer.save_pretrained(str(tokenizer_copy))
        config = {
            "options": options_to_json(self.opts),
            "phase": self.phase,
            "model": self.model.config.to_dict(),
            "num_parameters": self.model.num_parameters(),
            "data": {
                "train": self.data.fingerprint,
                "validation": str(self.data.validation) if self.data.validation is not None else None,
            },
            "schedule_steps": self.schedule_steps,
            "device": str(self.device),
            "autocast": str(self.autocast_dtype) if self.autocast_dtype is not None else "fp32",
        }
        (self.opts.out_dir / CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")

    # -- one micro-batch / one optimizer step

    def _forward_backward(self, batch: Sequence[torch.Tensor], weight: float) -> torch.Tensor:
        x, y, mask = (t.to(self.device, non_blocking=True) for t in batch)
        with autocast_context(self.device, self.autocast_dtype):
            _, loss = self.model(x, y, mask)
        (loss * weight).backward()
        return loss.detach() * weight

    def _optimizer_step(self) -> None:
        lr = learning_rate_at(self.position.step, peak=self.opts.learning_rate, total_steps=self.schedule_steps)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        if self.opts.grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.opts.grad_clip)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)

    # -- evaluation, saving, logging

    @torch.no_grad()
    def evaluate(self) -> float | None:
        """Token-averaged loss over the first --eval_batches validation batches (None: no validation)."""
        if self.val_set is None or len(self.val_set) == 0:
            return None
        batches = sequential_batches(len(self.val_set), self.opts.batch_size, self.opts.eval_batches)
        loader = make_loader(self.val_set, batches, num_workers=self.opts.num_workers,
                             pin_memory=self.device.type == "cuda")
        self.model.eval()
        total = torch.zeros((), dtype=torch.float64, device=self.device)
        count = 0
        for x, y, mask in loader:
            x, y, mask = trim_padding_columns(x, y, mask)
            with autocast_context(self.device, self.autocast_dtype):
                _, loss = self.model(x.to(self.device), y.to(self.device), mask.to(self.device))
            tokens = int(mask.sum())
            total += loss.double() * tokens
            count += tokens
        self.model.train()
        return float(total) / count if count else None

    def save(self) -> Path:
        payload = checkpoint_payload(self.model, self.optimizer, self.position, self.opts, self.data)
        save_checkpoint(self.checkpoint_path, payload)
        return self.checkpoint_path

    def _record(self, window: Window, *, with_validation: bool) -> dict[str, Any]:
        # float() syncs the GPU first, so the interval covers the work queued in it, not just enqueued.
        train_loss = float(window.loss_sum) / window.steps if window.steps else None
        elapsed = max(time.perf_counter() - window.started, 1e-9)
        record: dict[str, Any] = {
            "step": self.position.step,
            "epoch": round(self.position.micro_batches_done / self.batches_per_epoch, 4),
            "train_loss": train_loss,
            "lr": learning_rate_at(max(self.position.step - 1, 0), peak=self.opts.learning_rate,
                                   total_steps=self.schedule_steps),
            "tokens_per_s": round(window.tokens / elapsed, 1),
            "supervised_tokens_per_s": round(window.supervised / elapsed, 1),
            "samples_per_s": round(window.samples / elapsed, 2),
            "data_wait_fraction": round(window.data_wait / elapsed, 4),
            "tokens_seen": self.position.tokens_seen,
        }
        if with_validation:
            record["val_loss"] = self.evaluate()
            self.last_val_loss = record["val_loss"]
        self.last_train_loss = train_loss
        return record

    def _log_and_maybe_save(self, window: Window, progress: Any) -> bool:
        """Write a metrics record (and at a save: validate, checkpoint, plot); True if one was written."""
        step = self.position.step
        final = step >= self.stop_step
        saving = final or step % self.opts.save_interval == 0
        if not (saving or step % self.opts.log_interval == 0):
            return False
        record = self._record(window, with_validation=saving)
        self.metrics.append(record)
        if self.tracker is not None:
            self.tracker.log(record)
        if saving:
            self.save()
            if self.can_plot:
                plot_losses(self.opts.out_dir / METRICS_FILE, self.opts.out_dir / PLOT_FILE)
        describe(record, progress, self.seconds_left())
        return True

    def seconds_left(self) -> float | None:
        """The rest of the run at the pace of this process so far (None before its first step)."""
        done = self.position.step - self.started.step
        if done <= 0:
            return None
        return (time.perf_counter() - self.started_at) / done * (self.stop_step - self.position.step)

    def _warn_if_long(self) -> None:
        """Say so, a few steps in, when the pace measured so far means hours."""
        left = self.seconds_left()
        if left is not None and left > LONG_RUN_SECONDS:
            logger.warning(
                "this run needs about %s more at the pace of its first %d steps (%s-parameter model on %s, %d steps): "
                "lower --max_steps or the model size (--hidden_size, --num_hidden_layers), or use a GPU (--device cuda)",
                format_duration(left), self.position.step - self.started.step, f"{self.model.num_parameters():,}",
                self.device, self.stop_step,
            )

    # -- the loop

    def _micro_batches(self) -> Iterator[tuple[int, float, Sequence[torch.Tensor]]]:
        """(global micro-batch index, seconds blocked waiting for it, batch) from the saved position on."""
        start = self.position.micro_batches_done
        first_epoch = start // self.batches_per_epoch
        for epoch in range(first_epoch, self.opts.epochs):
            first = start - epoch * self.batches_per_epoch if epoch == first_epoch else 0
            sampler = SeededBatchSampler(len(self.train_set), self.opts.batch_size, seed=self.opts.seed,
                                         epoch=epoch, start_batch=first)
            loader = make_loader(self.train_set, sampler, num_workers=self.opts.num_workers,
                                 pin_memory=self.device.type == "cuda")
            iterator = iter(loader)
            for offset in range(len(sampler)):
                asked = time.perf_counter()
                batch = next(iterator)
                yield epoch * self.batches_per_epoch + first + offset, time.perf_counter() - asked, batch

    def run(self) -> TrainResult:
        opts = self.opts
        logger.info(
            "training %s-parameter GPT on %s (%d records, phase %s) on %s; %d steps of %d x %d samples",
            f"{self.model.num_parameters():,}", self.data.train, len(self.train_set), self.phase, self.device,
            self.stop_step, opts.accumulation_steps, opts.batch_size,
        )
        self.model.train()
        progress = make_progress(total=self.stop_step, initial=self.position.step)
        window = Window(started=time.perf_counter())
        self.started, self.started_at = self.position, time.perf_counter()
        step_loss: torch.Tensor | None = None
        step_tokens = 0
        try:
            if self.position.step < self.stop_step:
                for micro_index, waited, batch in self._micro_batches():
                    window.data_wait += waited
                    x, y, mask = trim_padding_columns(*batch)
                    weight = micro_batch_weight(micro_index, accumulation_steps=opts.accumulation_steps,
                                                total_micro_batches=self.total_micro_batches)
                    loss = self._forward_backward((x, y, mask), weight)
                    step_loss = loss if step_loss is None else step_loss + loss
                    step_tokens += x.numel()
                    window.samples += x.shape[0]
                    window.supervised += int(mask.sum())  # on the CPU still: no device sync
                    done = micro_index + 1
                    if done % opts.accumulation_steps and done != self.total_micro_batches:
                        continue
                    self._optimizer_step()
                    window.add_step(step_loss, step_tokens)
                    self.position = Position(self.position.step + 1, done, self.position.tokens_seen + step_tokens)
                    step_loss, step_tokens = None, 0
                    if progress is not None:
                        progress.update(1)
                    if self.position.step - self.started.step == PACE_STEPS:
                        self._warn_if_long()
                    if self._log_and_maybe_save(window, progress):
                        window = Window(started=time.perf_counter())
                    if self.position.step >= self.stop_step:
                        break
        except KeyboardInterrupt:
            # The weights and optimizer are exactly those after the last completed step; a
            # half-accumulated step only touched gradients, which are not saved.
            logger.warning("interrupted: saving %s at step %d", self.checkpoint_path, self.position.step)
            self.save()
            raise
        finally:
            if progress is not None:
                progress.close()
            if self.tracker is not None:
                self.tracker.close()
        return TrainResult(opts.out_dir, self.position.step, self.last_train_loss, self.last_val_loss,
                           self.checkpoint_path, self.model.num_parameters())


def train(opts: TrainOptions) -> TrainResult:
    """Train (or resume) one run as `opts` describes; returns where it stopped."""
    return Trainer(opts).run()
