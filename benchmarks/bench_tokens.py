"""Token-true mixtures and packed output (issue 18): what tokens cost and what packing buys.

Generates the toy data (`mixprep example-data`), then prints, each against its baseline
measured in the same run:
1. counting: MB of text per CPU-second, mixprep's byte-level counter vs the tokenizers
   library's `encode_batch_fast` (CPU time of all threads), and whether every count agrees,
   on the toy stories and on ../shared/data's real English (Austen, fortunes, KJV; a cold cache);
2. builds (each its own measured process): the toy by records without a tokenizer, with
   one (counting), `mix_by: tokens`, and `--pack`; the same for `--mixture` (with `--workers`);
3. positions that carry loss: `UnifiedDataset` pretrain windows vs `PackedDataset` ones
   over the same built split, at 512 and 2048 tokens;
4. `PackedDataset` reads: windows of 2048 tokens per second in one process, and the RSS
   growth over 100,000 random windows of a generated multi-GB token file;
5. training (`mixprep train`, a tiny CPU model, the same steps): supervised (non-padding)
   tokens per second with `--packed` vs without.

    python benchmarks/bench_tokens.py                                    # MiniMind tokenizer from ../shared
    python benchmarks/bench_tokens.py --tokenizer DIR --bin-gb 4 --train-steps 40
    python benchmarks/bench_tokens.py --mixture bench_build/data/<1.5 GB corpus>/mix.yaml --workers 2
"""
from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import common
import numpy as np
import psutil

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
SHARED_TOKENIZER = SHARED_DATA / "tokenizers" / "minimind"


# -- 1. counting ----------------------------------------------------------------------------

def read_texts(files: list[Path], limit_bytes: int) -> list[str]:
    texts, size = [], 0
    for path in files:
        with open(path, encoding="utf-8") as handle:
            for line in handle:
                text = json.loads(line).get("text")
                if not isinstance(text, str):
                    break  # not a pretrain file (example-data also writes SFT, DPO and RL ones)
                texts.append(text)
                size += len(text.encode())
                if size >= limit_bytes:
                    return texts
    return texts


def count_speeds(texts: list[str], tokenizer_json: Path, batch: int = 2000) -> dict[str, Any]:
    """MB per CPU-second of both counters over the same batches, after one warm-up batch each."""
    from tokenizers import Tokenizer

    from mixprep.filters.bytelevel import ByteLevelBPE

    library = Tokenizer.from_file(str(tokenizer_json))
    compiled = ByteLevelBPE(tokenizer_json)
    batches = [texts[i : i + batch] for i in range(0, len(texts), batch)]
    compiled.count(batches[0][:10])  # loads the compiled kernels
    library.encode_batch_fast(batches[0][:10], add_special_tokens=False)
    mb = sum(len(t.encode()) for t in texts) / 1e6
    started = time.process_time()
    ours = np.concatenate([compiled.count(b) for b in batches])
    ours_cpu = time.process_time() - started
    started = time.process_time()
    theirs = np.array([len(e.ids) for b in batches for e in library.encode_batch_fast(b, add_special_tokens=False)])
    theirs_cpu = time.process_time() - started
    return {
        "mb": mb, "mixprep_mb_per_cpu_s": mb / ours_cpu, "library_mb_per_cpu_s": mb / theirs_cpu,
        "ratio": theirs_cpu / ours_cpu, "equal": bool(np.array_equal(ours, theirs)), "tokens": int(ours.sum()),
        "distinct_words_cached": compiled.entries, "cache_restarts": compiled.restarts,
    }


# -- 2. builds ------------------------------------------------------------------------------

def toy_variants(folder: Path, tokenizer: Path) -> dict[str, tuple[Path, list[str]]]:
    """The shipped toy mixture, pointed at folder/data, in each variant (written into folder)."""
    text = (REPO / "configs" / "toy_mixture.yaml").read_text().replace("../data", str(folder / "data"))
    base = folder / "toy_mixture.yaml"
    base.write_text(text)
    return mixture_variants(base, tokenizer, seq_len=512, folder=folder)


def mixture_variants(config: Path, tokenizer: Path, *, seq_len: int, folder: Path | None = None) -> dict[str, tuple[Path, list[str]]]:
    """Variant -> (mixture YAML, extra build flags): by records without a tokenizer, by
    records counting tokens, `mix_by: tokens` (total_samples dropped: it counts records),
    and records + tokens + `--pack`. Written beside `config` (its relative paths keep
    resolving) unless `folder` is given."""
    import yaml

    raw = yaml.safe_load(config.read_text())
    meta = dict(raw.get("metadata") or {})
    meta.pop("tokenizer", None)
    meta.pop("mix_by", None)
    meta.pop("pack", None)
    by_tokens = {k: v for k, v in meta.items() if k != "total_samples"}
    where = folder if folder is not None else config.parent
    variants = {}
    for name, metadata in (("records", meta), ("records + tokens", {**meta, "tokenizer": str(tokenizer)}),
                           ("mix_by: tokens", {**by_tokens, "tokenizer": str(tokenizer), "mix_by": "tokens"})):
        path = where / f"{config.stem}.bench-tokens-{len(variants)}.yaml"
        path.write_text(yaml.safe_dump({**raw, "metadata": metadata}, sort_keys=False))
        variants[name] = (path, [])
    variants[f"records + tokens + --pack {seq_len}"] = (variants["records + tokens"][0], ["--pack", str(seq_len)])
    return variants


def build_table(variants: dict[str, tuple[Path, list[str]]], folder: Path, extra: list[str], label: str) -> dict[str, dict[str, Any]]:
    """Build each variant (its own measured process) and print seconds, CPU seconds and speed vs by records."""
    builds = {}
    for name, (config, flags) in variants.items():
        builds[name] = build_once(config, folder / f"out-{label}-{len(builds)}", [*flags, *extra])
    base = builds["records"]["seconds"]
    rows = [{"variant": name, "seconds": round(b["seconds"], 2), "cpu": round(b["cpu_seconds"], 2),
             "vs": round(base / b["seconds"], 2), "tokens": b["manifest"]["output"].get("tokens")}
            for name, b in builds.items()]
    print(common.format_table(rows, (("variant", f"{label} build"), ("seconds", "seconds"), ("cpu", "CPU s"),
                                     ("vs", "speed vs records"), ("tokens", "train tokens"))))
    return builds


def build_once(config: Path, out: Path, extra: list[str]) -> dict[str, Any]:
    argv = [sys.executable, "-m", "mixprep", "build", str(config), "--output-dir", str(out), "--force", "--no-progress",
            "--no-report", *extra]
    measured = common.run_measured(argv, label=out.name, cwd=REPO, log_dir=out.parent / "logs")
    if not measured.ok:
        msg = f"build failed ({measured.returncode}): {measured.stderr_tail[-2000:]}"
        raise RuntimeError(msg)
    manifest = json.loads(next(out.glob("*_train.manifest.json")).read_text())
    return {"seconds": measured.seconds, "cpu_seconds": measured.cpu_seconds, "manifest": manifest,
            "train": next(out.glob("*_train.jsonl"))}


# -- 3. positions that carry loss ------------------------------------------------------------

def loss_positions(train_jsonl: Path, tokenizer: Path, seq_len: int, windows: int = 2000) -> dict[str, float]:
    """Share of positions with loss: UnifiedDataset pretrain samples vs packed windows."""
    from transformers import AutoTokenizer

    from mixprep import PackedDataset, UnifiedDataset

    unpacked = UnifiedDataset(train_jsonl, AutoTokenizer.from_pretrained(str(tokenizer)), max_length=seq_len, phase="pretrain")
    rng = np.random.default_rng(0)
    picks = rng.choice(len(unpacked), size=min(windows, len(unpacked)), replace=False)
    plain = np.mean([float(unpacked[int(i)][2].float().mean()) for i in picks])
    packed = PackedDataset(train_jsonl.with_name(train_jsonl.name.removesuffix(".jsonl") + ".tokens"), seq_len)
    picks = rng.choice(len(packed), size=min(windows, len(packed)), replace=False)
    packed_share = np.mean([float(packed[int(i)][2].float().mean()) for i in picks])
    return {"seq_len": seq_len, "unpacked": float(plain), "packed": float(packed_share)}


# -- 4. PackedDataset reads ---------------------------------------------------------------------

def make_token_file(prefix: Path, gigabytes: float, *, document_tokens: int = 700) -> int:
    """A uint16 token file of about `gigabytes` (random ids, documents of ~700 tokens) and its index."""
    from mixprep.serve.indexed import write_indexed_index

    tokens = int(gigabytes * 1e9) // 2
    rng = np.random.default_rng(0)
    chunk = 1 << 26
    with open(prefix.with_name(prefix.name + ".bin"), "wb") as out:
        for start in range(0, tokens, chunk):
            out.write(rng.integers(1, 6400, size=min(chunk, tokens - start), dtype=np.uint16).tobytes())
    documents = np.full(tokens // document_tokens, document_tokens, dtype=np.int64)
    documents[-1] += tokens - int(documents.sum())
    write_indexed_index(prefix.with_name(prefix.name + ".idx"), documents, np.dtype(np.uint16))
    return tokens


def read_speed(prefix: Path, seq_len: int, reads: int) -> dict[str, float]:
    """Random windows per second in this process, and RSS before/after (MB)."""
    from mixprep import PackedDataset

    dataset = PackedDataset(prefix, seq_len)
    picks = [random.Random(0).randrange(len(dataset)) for _ in range(reads)]
    dataset[0]
    process = psutil.Process()
    before = process.memory_info().rss
    started = time.perf_counter()
    for i in picks:
        dataset[i]
    seconds = time.perf_counter() - started
    return {"windows_per_s": reads / seconds, "rss_growth_mb": (process.memory_info().rss - before) / 1e6,
            "file_gb": os.path.getsize(prefix.with_name(prefix.name + ".bin")) / 1e9, "windows": len(dataset)}


# -- 5. training ------------------------------------------------------------------------------

def train_speed(train_jsonl: Path, tokenizer: Path, out: Path, *, packed: bool, steps: int, seq_len: int) -> dict[str, float]:
    data = train_jsonl.with_name(train_jsonl.name.removesuffix(".jsonl") + ".tokens") if packed else train_jsonl
    argv = [sys.executable, "-m", "mixprep", "train", "--prepared_data", str(data), "--tokenizer", str(tokenizer),
            "--max_seq_len", str(seq_len), "--hidden_size", "64", "--num_hidden_layers", "2", "--num_heads", "2",
            "--batch_size", "32", "--max_steps", str(steps), "--log_interval", str(max(steps // 4, 1)),
            "--save_interval", str(steps * 10), "--num_workers", "1", "--out_dir", str(out)]
    measured = common.run_measured(argv, label=out.name, cwd=REPO, log_dir=out.parent / "logs")
    if not measured.ok:
        msg = f"train failed ({measured.returncode}): {measured.stderr_tail[-2000:]}"
        raise RuntimeError(msg)
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()][1:]  # the first holds warm-up
    return {
        "tokens_per_s": float(np.mean([r["tokens_per_s"] for r in records])),
        "supervised_tokens_per_s": float(np.mean([r["supervised_tokens_per_s"] for r in records])),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokenizer", type=Path, default=SHARED_TOKENIZER)
    parser.add_argument("--count-mb", type=float, default=20.0, help="text counted by both counters")
    parser.add_argument("--bin-gb", type=float, default=2.0, help="size of the token file PackedDataset reads")
    parser.add_argument("--reads", type=int, default=100_000)
    parser.add_argument("--train-steps", type=int, default=24)
    parser.add_argument("--mixture", type=Path, default=None,
                        help="also build this mixture by records, counting tokens, by tokens and packed (e.g. the 1.5 GB bench corpus)")
    parser.add_argument("--workers", type=int, default=2, help="--workers for the --mixture builds")
    args = parser.parse_args()
    tokenizer_json = args.tokenizer / "tokenizer.json"
    with tempfile.TemporaryDirectory(prefix="bench-tokens-") as temp:
        folder = Path(temp)
        example = [sys.executable, "-m", "mixprep", "example-data", str(folder / "data")]
        common.run_measured(example, label="data", cwd=REPO, log_dir=folder / "logs")
        texts = read_texts(sorted((folder / "data").glob("*.jsonl")), int(args.count_mb * 1e6))
        real = [SHARED_DATA / name for name in ("austen.jsonl", "fortunes.jsonl", "kjv.jsonl") if (SHARED_DATA / name).is_file()]
        for label, corpus in (("toy stories", texts), ("real English (../shared/data)", read_texts(real, 10**9) if real else [])):
            if not corpus:
                continue
            speeds = count_speeds(corpus, tokenizer_json)
            print(f"counting {speeds['mb']:.1f} MB of {label}: mixprep {speeds['mixprep_mb_per_cpu_s']:.1f} MB/CPU-s, tokenizers "
                  f"library {speeds['library_mb_per_cpu_s']:.1f} MB/CPU-s ({speeds['ratio']:.1f}x); counts equal: {speeds['equal']} "
                  f"({speeds['tokens']:,} tokens, {speeds['distinct_words_cached']:,} distinct words cached)")

        builds = build_table(toy_variants(folder, args.tokenizer), folder, [], "toy")
        if args.mixture is not None:
            variants = mixture_variants(args.mixture.resolve(), args.tokenizer.resolve(), seq_len=2048)
            try:
                build_table(variants, folder, ["--workers", str(args.workers)], args.mixture.stem)
            finally:
                for path, _ in variants.values():
                    path.unlink(missing_ok=True)
        packed_train = builds["records + tokens + --pack 512"]["train"]
        for seq_len in (512, 2048):
            share = loss_positions(packed_train, args.tokenizer, seq_len)
            print(f"positions with loss at {seq_len}: unpacked {share['unpacked']:.1%}, packed {share['packed']:.1%}")

        prefix = folder / "big.tokens"
        make_token_file(prefix, args.bin_gb)
        reads = read_speed(prefix, 2048, args.reads)
        print(f"PackedDataset over a {reads['file_gb']:.2f} GB token file: {reads['windows_per_s']:,.0f} windows/s of 2048 "
              f"tokens; RSS growth after {args.reads:,} random windows: {reads['rss_growth_mb']:.1f} MB")
        prefix.with_name(prefix.name + ".bin").unlink()

        runs = {packed: train_speed(packed_train, args.tokenizer, folder / f"run-{packed}", packed=packed,
                                    steps=args.train_steps, seq_len=512) for packed in (False, True)}
        ratio = runs[True]["supervised_tokens_per_s"] / runs[False]["supervised_tokens_per_s"]
        print(f"train at 512: supervised tokens/s unpacked {runs[False]['supervised_tokens_per_s']:,.0f} "
              f"(of {runs[False]['tokens_per_s']:,.0f} processed), packed {runs[True]['supervised_tokens_per_s']:,.0f} "
              f"({ratio:.2f}x)")


if __name__ == "__main__":
    main()
