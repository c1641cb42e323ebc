"""mixprep.train end to end on CPU with a tiny model: loss falls, resume is exact, SFT masks, files, errors."""
from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from mixprep.errors import ConfigError, OutputError, RecordError, SourceError  # noqa: E402
from mixprep.train.__main__ import main  # noqa: E402
from mixprep.train.checkpoint import load_checkpoint, save_checkpoint  # noqa: E402
from mixprep.train.data import (  # noqa: E402
    SeededBatchSampler,
    detect_phase,
    find_tokenizer,
    load_tokenizer,
    sequential_batches,
    trim_padding_columns,
    validation_path_for,
)
from mixprep.train.metrics import compare_runs, read_metrics  # noqa: E402
from mixprep.train.model import GPT, GPTConfig  # noqa: E402
from mixprep.train.run import Trainer, micro_batch_weight  # noqa: E402

ANIMALS = ["cat", "dog", "fox", "owl", "hen", "pig", "cow", "bee"]
VERBS = ["sees", "likes", "chases", "finds", "hears"]
THINGS = ["the ball", "a red hat", "the old tree", "some bread", "a blue box", "the river"]
COLORS = {"sky": "blue", "grass": "green", "snow": "white", "coal": "black", "sun": "yellow", "blood": "red"}
TINY_MODEL = ["--hidden_size", "64", "--num_hidden_layers", "2", "--num_heads", "4", "--max_seq_len", "64"]


def story(rng: np.random.Generator) -> str:
    count = rng.integers(2, 5)
    return " ".join(f"the {rng.choice(ANIMALS)} {rng.choice(VERBS)} {rng.choice(THINGS)}." for _ in range(count))


def conversation(rng: np.random.Generator) -> dict:
    thing = str(rng.choice(sorted(COLORS)))
    return {"conversations": [
        {"role": "user", "content": f"what color is the {thing}?"},
        {"role": "assistant", "content": f"the {thing} is {COLORS[thing]}."},
    ]}


def write_jsonl(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Pretrain + SFT train/validation files and a tokenizer trained on them (once per module)."""
    from mixprep.train.tokenizer import train_tokenizer

    root = tmp_path_factory.mktemp("corpus")
    rng = np.random.default_rng(0)
    files = {
        "pretrain": write_jsonl(root / "pretrain_toy_train.jsonl", [{"text": story(rng)} for _ in range(240)]),
        "pretrain_val": write_jsonl(root / "pretrain_toy_validation.jsonl", [{"text": story(rng)} for _ in range(24)]),
        "sft": write_jsonl(root / "sft_toy_train.jsonl", [conversation(rng) for _ in range(64)]),
        "sft_val": write_jsonl(root / "sft_toy_validation.jsonl", [conversation(rng) for _ in range(8)]),
    }
    texts = [story(rng) for _ in range(200)] + [json.dumps(conversation(rng)) for _ in range(50)]
    files["tokenizer"] = train_tokenizer(texts, vocab_size=400, out_dir=root / "tok")
    return files


def train_args(corpus: dict[str, Path], out_dir: Path, *extra: str, data: str = "pretrain") -> list[str]:
    return [
        "--prepared_data", str(corpus[data]), "--tokenizer", str(corpus["tokenizer"]), "--out_dir", str(out_dir),
        *TINY_MODEL, "--batch_size", "8", "--learning_rate", "3e-3", "--num_workers", "0", "--device", "cpu",
        "--seed", "0", "--log_interval", "1", "--save_interval", "1000", *extra,
    ]


# ----------------------------------------------------------------------------- sampling units


def test_sampler_order_depends_only_on_seed_and_epoch_and_resumes_mid_epoch():
    full = list(SeededBatchSampler(50, 8, seed=3, epoch=1))
    assert [len(b) for b in full] == [8, 8, 8, 8, 8, 8, 2]
    assert sorted(i for b in full for i in b) == list(range(50))
    assert full == list(SeededBatchSampler(50, 8, seed=3, epoch=1))
    assert full != list(SeededBatchSampler(50, 8, seed=3, epoch=2))
    assert full != list(SeededBatchSampler(50, 8, seed=4, epoch=1))
    resumed = SeededBatchSampler(50, 8, seed=3, epoch=1, start_batch=4)
    assert len(resumed) == 3 and list(resumed) == full[4:]


def test_validation_batches_are_the_first_records_in_order():
    assert sequential_batches(10, 4, 2) == [[0, 1, 2, 3], [4, 5, 6, 7]]
    assert sequential_batches(5, 4, 9) == [[0, 1, 2, 3], [4]]


def test_trimming_padding_columns_leaves_the_loss_unchanged():
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=50, hidden_size=32, num_hidden_layers=2, num_heads=4, max_seq_len=16))
    x = torch.randint(0, 50, (3, 15))
    y = torch.randint(0, 50, (3, 15))
    mask = torch.zeros(3, 15, dtype=torch.long)
    mask[0, :4], mask[1, 2:9], mask[2, :1] = 1, 1, 1
    tx, ty, tm = trim_padding_columns(x, y, mask)
    assert tx.shape == (3, 9)
    with torch.no_grad():
        assert torch.allclose(model(x, y, mask)[1], model(tx, ty, tm)[1], atol=1e-6)


def test_accumulation_weights_make_every_step_an_average_including_a_short_last_one():
    weights = [micro_batch_weight(i, accumulation_steps=4, total_micro_batches=10) for i in range(10)]
    assert weights == [0.25] * 8 + [0.5, 0.5]
    assert micro_batch_weight(0, accumulation_steps=1, total_micro_batches=3) == 1.0


def test_validation_file_name_is_derived_from_the_train_name():
    assert validation_path_for(Path("d/pretrain_toy_train.jsonl")) == Path("d/pretrain_toy_validation.jsonl")
    assert validation_path_for(Path("d/mydata.jsonl")) is None


# ----------------------------------------------------------------------------- end to end


@pytest.mark.slow
def test_pretrain_loss_falls_and_writes_metrics_plot_checkpoint(corpus, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(train_args(corpus, out, "--max_steps", "30", "--save_interval", "15")) == 0
    records = read_metrics(out / "metrics.jsonl")
    assert [r["step"] for r in records] == list(range(1, 31))
    first = np.mean([r["train_loss"] for r in records[:3]])
    last = np.mean([r["train_loss"] for r in records[-3:]])
    assert last < first - 1.5, (first, last)
    validated = [r for r in records if "val_loss" in r]
    assert [r["step"] for r in validated] == [15, 30]
    assert validated[1]["val_loss"] < validated[0]["val_loss"]
    for record in records:
        assert record["tokens_per_s"] > 0 and 0 <= record["data_wait_fraction"] <= 1
        assert {"lr", "epoch", "samples_per_s", "tokens_seen"} <= record.keys()
    assert (out / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    checkpoint = torch.load(out / "checkpoint.pt", weights_only=True)
    assert checkpoint["position"]["step"] == 30
    assert checkpoint["data"]["records"] == 240 and checkpoint["data"]["size"] == corpus["pretrain"].stat().st_size
    assert {"model", "optimizer", "model_config", "train_config"} <= checkpoint.keys()
    config = json.loads((out / "config.json").read_text())
    assert config["phase"] == "pretrain" and config["model"]["hidden_size"] == 64
    assert (out / "tokenizer" / "tokenizer.json").is_file()
    assert "step 30: train_loss" in capsys.readouterr().out


@pytest.mark.slow
def test_resume_reproduces_the_uninterrupted_run(corpus, tmp_path):
    straight, split = tmp_path / "straight", tmp_path / "split"
    # 240 records / batch 8 = 30 batches per epoch; 2 epochs with accumulation 2 -> 30 steps.
    common = ("--epochs", "2", "--accumulation_steps", "2")
    main(train_args(corpus, straight, *common, "--max_steps", "20"))
    main(train_args(corpus, split, *common, "--max_steps", "8"))
    # The resumed leg crosses the epoch boundary (step 15) and loads batches through 2 workers.
    main(train_args(corpus, split, *common, "--max_steps", "20", "--resume", "--num_workers", "2"))
    expected = {r["step"]: r["train_loss"] for r in read_metrics(straight / "metrics.jsonl")}
    resumed = {r["step"]: r["train_loss"] for r in read_metrics(split / "metrics.jsonl")}
    assert sorted(resumed) == list(range(1, 21))  # no duplicated or missing step records
    for step in range(9, 21):
        assert resumed[step] == pytest.approx(expected[step], abs=1e-6), step


@pytest.mark.slow
def test_resume_skips_consumed_batches_without_reading_them(corpus, tmp_path, monkeypatch):
    out = tmp_path / "run"
    main(train_args(corpus, out, "--max_steps", "3"))
    from mixprep.serve.dataset import UnifiedDataset

    read: list[int] = []
    original = UnifiedDataset.__getitem__
    monkeypatch.setattr(UnifiedDataset, "__getitem__", lambda self, i: (read.append(i), original(self, i))[1])
    main(train_args(corpus, out, "--max_steps", "4", "--resume", "--eval_batches", "1"))
    consumed = [i for batch in list(SeededBatchSampler(240, 8, seed=0, epoch=0))[:3] for i in batch]
    fourth = list(SeededBatchSampler(240, 8, seed=0, epoch=0))[3]
    train_reads = read[:8]
    assert train_reads == fourth
    assert not set(train_reads) & set(consumed)


def test_ctrl_c_saves_a_checkpoint_that_resumes_exactly(corpus, tmp_path, monkeypatch):
    straight, interrupted = tmp_path / "straight", tmp_path / "interrupted"
    main(train_args(corpus, straight, "--max_steps", "6"))
    original = Trainer._optimizer_step

    def interrupt_fourth_step(self):
        if self.position.step == 3:
            raise KeyboardInterrupt
        original(self)

    monkeypatch.setattr(Trainer, "_optimizer_step", interrupt_fourth_step)
    with pytest.raises(KeyboardInterrupt):
        main(train_args(corpus, interrupted, "--max_steps", "6"))
    assert torch.load(interrupted / "checkpoint.pt", weights_only=True)["position"]["step"] == 3
    monkeypatch.setattr(Trainer, "_optimizer_step", original)
    main(train_args(corpus, interrupted, "--max_steps", "6", "--resume"))
    expected = [r["train_loss"] for r in read_metrics(straight / "metrics.jsonl")]
    assert [r["train_loss"] for r in read_metrics(interrupted / "metrics.jsonl")] == pytest.approx(expected, abs=1e-6)


def test_progress_bar_on_a_terminal(corpus, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    main(train_args(corpus, tmp_path / "run", "--max_steps", "3"))
    err = capsys.readouterr().err
    assert "3/3" in err and "loss=" in err and "tok/s=" in err


def test_bf16_autocast_is_accepted_on_cpu(corpus, tmp_path):
    out = tmp_path / "bf16"
    main(train_args(corpus, out, "--max_steps", "2", "--dtype", "bf16"))
    assert json.loads((out / "config.json").read_text())["autocast"] == "torch.bfloat16"
    assert all(np.isfinite(r["train_loss"]) for r in read_metrics(out / "metrics.jsonl"))
    # Weights stay fp32 (autocast computes in bf16, the optimizer updates fp32 masters).
    assert torch.load(out / "checkpoint.pt", weights_only=True)["model"]["embed.weight"].dtype == torch.float32


def test_sft_trains_only_on_assistant_tokens(corpus, tmp_path, monkeypatch):
    seen: list[tuple[torch.Tensor, torch.Tensor]] = []
    original = GPT.forward

    def spy(self, input_ids, targets=None, loss_mask=None):
        if self.training:
            seen.append((targets.clone(), loss_mask.clone()))
        return original(self, input_ids, targets, loss_mask)

    monkeypatch.setattr(GPT, "forward", spy)
    out = tmp_path / "sft"
    main(train_args(corpus, out, "--max_steps", "4", data="sft"))
    assert json.loads((out / "config.json").read_text())["phase"] == "sft"  # detected from the records
    tokenizer = load_tokenizer(corpus["tokenizer"])
    answers = {f"the {thing} is {color}.<|im_end|>\n" for thing, color in COLORS.items()}
    rows = 0
    for targets, mask in seen:
        for row_targets, row_mask in zip(targets, mask, strict=True):
            supervised = tokenizer.decode(row_targets[row_mask.bool()].tolist(), skip_special_tokens=False)
            assert supervised in answers, supervised
            rows += 1
    assert rows == 32
    losses = [r["train_loss"] for r in read_metrics(out / "metrics.jsonl")]
    assert all(np.isfinite(losses))


MIXTURE = """\
metadata:
  phase: pretrain_phase1
  name: toy
  seed: 7
  validation: {samples: 16}
  output_dir: dataset
datasets:
  - name: stories
    mix_ratio: 0.6
    source: stories.jsonl
  - name: facts
    mix_ratio: 0.4
    source: facts.jsonl
"""


def test_data_config_builds_the_mixture_then_reuses_it(corpus, tmp_path, caplog):
    rng = np.random.default_rng(1)
    write_jsonl(tmp_path / "stories.jsonl", [{"text": story(rng)} for _ in range(120)])
    facts = [{"text": f"fact {i}: the {animal} is small."} for i, animal in enumerate(ANIMALS * 10)]
    write_jsonl(tmp_path / "facts.jsonl", facts)
    (tmp_path / "toy.yaml").write_text(MIXTURE)
    args = train_args(corpus, tmp_path / "run1", "--max_steps", "6")
    args[:2] = ["--data_config", str(tmp_path / "toy.yaml")]
    caplog.set_level(logging.INFO, logger="mixprep")
    assert main(args) == 0
    # Default data folder: the mixture's metadata.output_dir (next to the YAML), as `mixprep build` uses.
    built = tmp_path / "dataset" / "pretrain_phase1_toy_train.jsonl"
    assert built.is_file() and (tmp_path / "dataset" / "pretrain_phase1_toy_validation.jsonl").is_file()
    assert "built mixture" in caplog.text
    stamp = built.stat().st_mtime_ns
    config = json.loads((tmp_path / "run1" / "config.json").read_text())
    assert config["data"]["train"]["records"] == 184 and config["data"]["train"]["manifest_checksum"]
    last = read_metrics(tmp_path / "run1" / "metrics.jsonl")[-1]
    assert last["step"] == 6 and last["val_loss"] is not None  # validated on the built validation split

    caplog.clear()
    args = train_args(corpus, tmp_path / "run2", "--max_steps", "2", "--output_dir", str(tmp_path / "dataset"))
    args[:2] = ["--mixture_config", str(tmp_path / "toy.yaml")]  # the seed's spelling
    assert main(args) == 0
    assert "reused mixture" in caplog.text and built.stat().st_mtime_ns == stamp


def test_compare_prints_both_runs(tmp_path, capsys):
    for name, val in (("exp001", 2.5), ("exp002", 2.0)):
        (tmp_path / name).mkdir()
        lines = [{"step": s, "train_loss": 4.0 - s / 10, "tokens_per_s": 1000.0, "data_wait_fraction": 0.1,
                  "tokens_seen": s * 100} for s in range(1, 11)]
        lines[-1]["val_loss"] = val
        write_jsonl(tmp_path / name / "metrics.jsonl", lines)
    table = compare_runs([tmp_path / "exp001", tmp_path / "exp002"])
    rows = table.splitlines()
    assert rows[0].split() == ["run", "steps", "tokens", "train_loss", "val_loss", "best_val", "tok/s", "data_wait"]
    assert rows[1].split()[1:6] == ["10", "1000", "3.2000", "2.5000", "2.5000"]
    assert rows[2].split()[0].endswith("exp002*")  # the better validation loss is starred
    png = tmp_path / "both.png"
    assert main(["compare", str(tmp_path / "exp001"), str(tmp_path / "exp002"), "--plot", str(png)]) == 0
    assert "exp002*" in capsys.readouterr().out and png.read_bytes()[:4] == b"\x89PNG"


# ----------------------------------------------------------------------------- errors


def test_no_tokenizer_names_the_fix(corpus, tmp_path):
    args = train_args(corpus, tmp_path / "run")
    del args[2:4]  # drop --tokenizer
    with pytest.raises(ConfigError, match=r"no tokenizer given and none found .*python -m mixprep tokenizer train"):
        main(args)


def test_missing_prepared_data(corpus, tmp_path):
    args = train_args(corpus, tmp_path / "run")
    args[1] = str(tmp_path / "nope_train.jsonl")
    with pytest.raises(SourceError, match=r"--prepared_data .*nope_train.jsonl: no such file; hint: build it"):
        main(args)


def test_existing_run_is_not_overwritten_and_resume_needs_a_checkpoint(corpus, tmp_path):
    out = tmp_path / "run"
    with pytest.raises(ConfigError, match=r"--resume: no checkpoint at .*checkpoint.pt; hint: drop --resume"):
        main(train_args(corpus, out, "--resume"))
    main(train_args(corpus, out, "--max_steps", "1"))
    with pytest.raises(ConfigError, match=r"checkpoint.pt exists: .* hint: pass --resume to continue it"):
        main(train_args(corpus, out, "--max_steps", "1"))
    with pytest.raises(ConfigError, match=r"differs from the checkpoint in --batch_size 4 \(checkpoint: 8\)"):
        main(train_args(corpus, out, "--max_steps", "2", "--resume", "--batch_size", "4"))
    other = tmp_path / "other_train.jsonl"
    other.write_text(corpus["pretrain"].read_text() + json.dumps({"text": "one more"}) + "\n")
    args = train_args(corpus, out, "--max_steps", "2", "--resume")
    args[1] = str(other)
    with pytest.raises(ConfigError, match=r"train data .*other_train.jsonl records 241 \(checkpoint: 240 for"):
        main(args)


def test_corrupt_checkpoint_is_named(tmp_path):
    bad = tmp_path / "checkpoint.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(ConfigError, match=r"--resume: .*checkpoint.pt is not a readable mixprep checkpoint"):
        load_checkpoint(bad)
    torch.save({"format": 99}, bad)
    with pytest.raises(ConfigError, match=r"checkpoint.pt has checkpoint format 99; this mixprep reads format 1"):
        load_checkpoint(bad)


@pytest.mark.slow
def test_module_entry_point_prints_errors_without_traceback(tmp_path):
    missing = tmp_path / "missing_train.jsonl"
    result = subprocess.run(
        [sys.executable, "-m", "mixprep.train", "--prepared_data", str(missing), "--out_dir", str(tmp_path / "o")],
        capture_output=True, text=True, cwd=Path(__file__).resolve().parents[1], timeout=120,
    )
    assert result.returncode == 1
    assert result.stderr.startswith(f"error: --prepared_data {missing}: no such file")
    assert "Traceback" not in result.stderr


def test_unknown_record_shape_is_named(corpus, tmp_path):
    odd = write_jsonl(tmp_path / "odd_train.jsonl", [{"prompt": "x", "answer": "y"}])
    args = train_args(corpus, tmp_path / "run")
    args[1] = str(odd)
    with pytest.raises(RecordError, match=r"odd_train.jsonl:1: record has \['answer', 'prompt'\], neither 'text'"):
        main(args)


@pytest.mark.parametrize(
    ("extra", "error", "message"),
    [
        (["--batch_size", "0"], ConfigError, r"--batch_size 0 is invalid: it must be at least 1"),
        (["--max_steps", "0"], ConfigError, r"--max_steps 0 is invalid"),
        (["--grad_clip", "-1"], ConfigError, r"--grad_clip -1.0 is invalid"),
        (["--num_workers", "-1"], ConfigError, r"--num_workers -1 is invalid: 0 loads in the main process"),
        (["--output_dir", "x"], ConfigError, r"--output_dir/--data_dir only applies with --data_config"),
        (["--device", "cuda:0"] if not torch.cuda.is_available() else ["--device", "nonsense"], ConfigError,
         r"--device (cuda:0: CUDA is not available|'nonsense' is not a device)"),
        (["--hidden_size", "66"], ConfigError, r"--hidden_size 66 is not divisible by --num_heads 4"),
    ],
)
def test_bad_options(corpus, tmp_path, extra, error, message):
    with pytest.raises(error, match=message):
        main(train_args(corpus, tmp_path / "run", *extra))


def test_data_and_tokenizer_messages(corpus, tmp_path):
    args = train_args(corpus, tmp_path / "run", "--validation_data", str(tmp_path / "none.jsonl"))
    with pytest.raises(SourceError, match=r"--validation_data .*none.jsonl: no such file"):
        main(args)
    args = train_args(corpus, tmp_path / "run")
    args[3] = str(tmp_path / "no_tokenizer")
    with pytest.raises(ConfigError, match=r"--tokenizer .*no_tokenizer: no such file or folder; pass --tokenizer DIR"):
        main(args)
    (tmp_path / "empty_tok").mkdir()
    with pytest.raises(ConfigError, match=r"--tokenizer .*empty_tok: AutoTokenizer.from_pretrained cannot load it"):
        load_tokenizer(tmp_path / "empty_tok")
    broken = tmp_path / "broken_train.jsonl"
    broken.write_text("\n{not json\n")
    with pytest.raises(RecordError, match=r"broken_train.jsonl:2: invalid JSON .*cannot detect the phase; pass"):
        detect_phase(broken)
    blank = tmp_path / "blank_train.jsonl"
    blank.write_text("\n  \n")
    with pytest.raises(SourceError, match=r"blank_train.jsonl: no records \(the file is empty or blank\)"):
        detect_phase(blank)


def test_tokenizer_is_found_in_the_run_then_next_to_the_data(tmp_path):
    for folder in (tmp_path / "data" / "tokenizer", tmp_path / "run" / "tokenizer"):
        folder.mkdir(parents=True)
    (tmp_path / "data" / "tokenizer" / "tokenizer.json").write_text("{}")
    train_path = tmp_path / "data" / "x_train.jsonl"
    assert find_tokenizer(None, out_dir=tmp_path / "run", train_path=train_path) == tmp_path / "data" / "tokenizer"
    (tmp_path / "run" / "tokenizer" / "tokenizer_config.json").write_text("{}")
    assert find_tokenizer(None, out_dir=tmp_path / "run", train_path=train_path) == tmp_path / "run" / "tokenizer"


def test_metrics_file_messages(tmp_path):
    with pytest.raises(SourceError, match=r"no metrics file at .*metrics.jsonl; hint: pass a training --out_dir"):
        read_metrics(tmp_path / "metrics.jsonl")
    (tmp_path / "metrics.jsonl").write_text('{"step": 1}\nnot json\n{"step": 2}\n{"step": 3, "tr')
    with pytest.raises(SourceError, match=r"metrics.jsonl:2: not a JSON object"):
        read_metrics(tmp_path / "metrics.jsonl")
    (tmp_path / "metrics.jsonl").write_text('{"step": 1}\n{"step": 2, "tr')  # torn last line: a killed run
    assert read_metrics(tmp_path / "metrics.jsonl") == [{"step": 1}]


def test_unwritable_checkpoint_is_an_output_error(tmp_path):
    with pytest.raises(OutputError, match=r"cannot write checkpoint .*missing/checkpoint.pt"):
        save_checkpoint(tmp_path / "missing" / "checkpoint.pt", {"format": 1})


def test_data_flags_are_exclusive_and_required(corpus, tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["--out_dir", str(tmp_path)])
    assert "one of the arguments --prepared_data --data_config" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(train_args(corpus, tmp_path) + ["--mixture_config", "m.yaml"])
    assert "not allowed with argument" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(train_args(corpus, tmp_path) + ["--output", "x"])
    assert "unrecognized arguments: --output x" in capsys.readouterr().err


# ----------------------------------------------------------------------------- reporting


def test_report_to_tensorboard_logs_every_metrics_record(corpus, tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = tmp_path / "run"
    assert main(train_args(corpus, out, "--max_steps", "6", "--save_interval", "3", "--report_to", "tensorboard")) == 0
    records = read_metrics(out / "metrics.jsonl")
    events = EventAccumulator(str(out / "tensorboard"))
    events.Reload()
    losses = events.Scalars("train/loss")
    assert [e.step for e in losses] == [r["step"] for r in records] == list(range(1, 7))
    assert [e.value for e in losses] == pytest.approx([r["train_loss"] for r in records], rel=1e-6)
    assert [e.step for e in events.Scalars("val/loss")] == [3, 6]
    assert {"train/lr", "throughput/tokens_per_s", "train/tokens_seen"} <= set(events.Tags()["scalars"])


def test_report_to_wandb_works_offline_without_credentials(corpus, tmp_path, monkeypatch, caplog):
    pytest.importorskip("wandb")
    for name in ("WANDB_API_KEY", "WANDB_MODE", "WANDB_DIR"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # no ~/.netrc login, and wandb's caches stay in the test
    out = tmp_path / "run"
    with caplog.at_level(logging.INFO):
        assert main(train_args(corpus, out, "--max_steps", "3", "--report_to", "wandb")) == 0
    runs = list((out / "wandb").glob("offline-run-*/run-*.wandb"))
    assert len(runs) == 1
    data = runs[0].read_bytes()
    assert b"train/loss" in data and b"throughput/tokens_per_s" in data
    assert "wandb: logging offline into" in caplog.text


def test_log_lines_show_an_eta_and_a_long_run_is_announced(corpus, tmp_path, monkeypatch, caplog):
    import mixprep.train.run as run_module

    monkeypatch.setattr(run_module, "LONG_RUN_SECONDS", 0.0)  # any run is "long"
    with caplog.at_level(logging.INFO):
        assert main(train_args(corpus, tmp_path / "run", "--max_steps", "8")) == 0
    steps = [r.getMessage() for r in caplog.records if r.getMessage().startswith("step ")]
    assert len(steps) == 8 and all(" eta " in line for line in steps)
    assert steps[-1].endswith("eta 0s")
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and warnings[0].startswith("this run needs about ") and "at the pace of its first 5 steps" in warnings[0]


def test_format_duration():
    from mixprep.train.console import format_duration

    assert [format_duration(s) for s in (0.4, 45, 725, 11_220)] == ["0s", "45s", "12m05s", "3h07m"]


def test_loss_plot_has_a_title_a_tokens_axis_and_a_learning_rate_panel(corpus, tmp_path, monkeypatch):
    import matplotlib.figure

    drawn = []
    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", lambda fig, *a, **k: drawn.append(fig) or Path(a[0]).write_bytes(b""))
    assert main(train_args(corpus, tmp_path / "run", "--max_steps", "4", "--save_interval", "2")) == 0
    figure = drawn[-1]
    loss_axes, lr_axes = figure.axes[:2]
    assert loss_axes.get_title() == "run: loss and learning rate"
    assert [child.get_xlabel() for child in loss_axes.child_axes] == ["tokens seen"]
    assert lr_axes.get_ylabel() == "learning rate" and len(lr_axes.lines) == 1
    assert list(lr_axes.lines[0].get_xdata()) == [1, 2, 3, 4]


def test_report_to_without_the_package_names_the_install(corpus, tmp_path, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "wandb" else real(name, *a))
    with pytest.raises(ConfigError, match=r'--report_to wandb needs the wandb package: pip install "mixprep\[track\]"'):
        main(train_args(corpus, tmp_path / "run", "--max_steps", "1", "--report_to", "wandb"))
    assert not (tmp_path / "run").exists()  # refused before the run folder was made
