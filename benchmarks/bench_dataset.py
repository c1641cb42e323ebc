"""Benchmark UnifiedDataset against a MiniMind-style baseline, in one process.

Prints a table and a JSON line: index build MB/s (page cache warm), index reopen time,
RSS growth after random reads, and samples/s per phase for mixprep next to MiniMind's
way (records from `datasets.load_dataset("json")`, whole-text tokenization, then
truncation) on the same files and tokenizer, with the ratio.

    python benchmarks/bench_dataset.py --quick          # < 1 minute
    python benchmarks/bench_dataset.py                  # 512 MB pretrain file
    python benchmarks/bench_dataset.py --size 4GB       # the issue's real run

Targets (issue 3): index >= 1 GB/s; reopen < 50 ms; RSS growth < 50 MB; pretrain
samples/s >= 1.5x the baseline and >= 3,000/s at max_length=512 on multi-KB documents.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import orjson
import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mixprep.serve.dataset import UnifiedDataset  # noqa: E402
from mixprep.serve.index import ensure_index  # noqa: E402
from mixprep.train.tokenizer import train_tokenizer  # noqa: E402

SHARED_TOKENIZER = ROOT.parent / "shared" / "data" / "tokenizers" / "minimind"
WORDS = (
    "the of and to in is was he for it with as his on be at by had not are but from or have an they which one "
    "you were all we her she there would their been has when who will more no if out so said what up its about "
    "into than them can only other new some could time these two may then do first any my now such like over "
    "our even most made after also did many before must through back years where much your way well down should "
    "because each just those people how too little state good very make world still own see men work long get "
    "here between both life being under never day same another know while last might us great old year off come "
    "since against go came right used take three 1611 42 2024 café naïve “quoted” — 中文 日本"
).split()


@dataclass(frozen=True)
class Sizes:
    pretrain_bytes: int
    chat_records: int
    samples: int
    random_reads: int


def parse_size(text: str) -> int:
    match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([KMG]?)B?", text.strip().upper())
    if not match:
        msg = f"--size {text!r}: expected a number with K/M/G, e.g. 512MB or 4GB"
        raise SystemExit(msg)
    return int(float(match.group(1)) * {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30}[match.group(2)])


def document(rng: np.random.Generator, n_words: int) -> str:
    words = rng.choice(len(WORDS), n_words)
    breaks = rng.random(n_words) < 0.08
    return "".join(WORDS[w] + (".\n" if b else " ") for w, b in zip(words, breaks, strict=True))


def write_pretrain(path: Path, size: int, rng: np.random.Generator) -> int:
    """~4 KB documents; a pool of distinct documents repeated with a counter keeps writing fast."""
    pool = [document(rng, int(rng.integers(500, 1100))) for _ in range(512)]
    written, n = 0, 0
    with open(path, "wb", buffering=1 << 22) as f:
        while written < size:
            line = orjson.dumps({"text": f"{n} " + pool[n % len(pool)], "source": "bench"}) + b"\n"
            f.write(line)
            written += len(line)
            n += 1
    return n


def write_chat_files(folder: Path, count: int, rng: np.random.Generator) -> dict[str, Path]:
    def turn(role: str, words: int) -> dict:
        return {"role": role, "content": document(rng, words)}

    records = {
        "sft": [
            {"conversations": [turn("user", 40), turn("assistant", 150), turn("user", 30), turn("assistant", 120)]}
            for _ in range(count)
        ],
        "dpo": [{"prompt": document(rng, 40), "chosen": document(rng, 120), "rejected": document(rng, 100)} for _ in range(count)],
        "rlaif": [{"conversations": [turn("user", 60), {"role": "assistant", "content": ""}]} for _ in range(count)],
    }
    paths = {}
    for phase, rows in records.items():
        paths[phase] = folder / f"{phase}.jsonl"
        paths[phase].write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in rows))
    return paths


# ------------------------------------------------------------------ MiniMind baseline


class MiniMindStyle:
    """MiniMind's lm_dataset.py way: HF datasets rows, whole-text tokenization, then truncation."""

    def __init__(self, path: Path, tokenizer, max_length: int, cache_dir: Path) -> None:
        from datasets import load_dataset

        self.samples = load_dataset("json", data_files=str(path), split="train", cache_dir=str(cache_dir))
        self.tok = tokenizer
        self.max_length = max_length
        self.bos_id = tokenizer(f"{tokenizer.bos_token}assistant\n", add_special_tokens=False).input_ids
        self.eos_id = tokenizer(f"{tokenizer.eos_token}\n", add_special_tokens=False).input_ids

    def pretrain(self, index: int):
        import torch

        tokens = self.tok(
            str(self.samples[index]["text"]),
            add_special_tokens=False,
            max_length=self.max_length - 2,
            truncation=True,
        ).input_ids
        tokens = [self.tok.bos_token_id] + tokens + [self.tok.eos_token_id]
        input_ids = torch.tensor(tokens + [self.tok.pad_token_id] * (self.max_length - len(tokens)))
        labels = input_ids.clone()
        labels[input_ids == self.tok.pad_token_id] = -100
        return input_ids, labels

    def _chat(self, text: str):
        import torch

        input_ids = self.tok(text).input_ids[: self.max_length]
        input_ids += [self.tok.pad_token_id] * (self.max_length - len(input_ids))
        labels = [-100] * len(input_ids)
        i = 0
        while i < len(input_ids):
            if input_ids[i : i + len(self.bos_id)] == self.bos_id:
                start = i + len(self.bos_id)
                end = start
                while end < len(input_ids):
                    if input_ids[end : end + len(self.eos_id)] == self.eos_id:
                        break
                    end += 1
                for j in range(start, min(end + len(self.eos_id), self.max_length)):
                    labels[j] = input_ids[j]
                i = end + len(self.eos_id) if end < len(input_ids) else len(input_ids)
            else:
                i += 1
        return torch.tensor(input_ids), torch.tensor(labels)

    def sft(self, index: int):
        return self._chat(self.tok.apply_chat_template(self.samples[index]["conversations"], tokenize=False))

    def dpo(self, index: int):
        row = self.samples[index]
        out = []
        for answer in (row["chosen"], row["rejected"]):
            messages = [{"role": "user", "content": row["prompt"]}, {"role": "assistant", "content": answer}]
            out.append(self._chat(self.tok.apply_chat_template(messages, tokenize=False)))
        return out

    def rlaif(self, index: int):
        prompt = self.tok.apply_chat_template(self.samples[index]["conversations"][:-1], tokenize=False, add_generation_prompt=True)
        return prompt, self.tok(prompt).input_ids[-self.max_length :]


# ------------------------------------------------------------------ measurements


def rss_mb() -> tuple[float, float]:
    """(anonymous, file-backed) resident MB: mmap'd data pages are file-backed and reclaimable."""
    fields = {}
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(("RssAnon:", "RssFile:")):
                key, value = line.split(":")
                fields[key] = int(value.split()[0]) / 1024
    return fields.get("RssAnon", psutil.Process().memory_info().rss / 2**20), fields.get("RssFile", 0.0)


def rate(fn, indices: np.ndarray) -> float:
    start = time.perf_counter()
    for i in indices:
        fn(int(i))
    return len(indices) / (time.perf_counter() - start)


def bench_index(path: Path) -> dict:
    size = path.stat().st_size
    path.with_suffix(".idx").unlink(missing_ok=True)
    with open(path, "rb") as f:  # warm the page cache, as the target assumes
        while f.read(1 << 24):
            pass
    start = time.perf_counter()
    index = ensure_index(path, rebuild=True)
    build = time.perf_counter() - start
    reopen = []
    for _ in range(5):
        start = time.perf_counter()
        ensure_index(path)
        reopen.append(time.perf_counter() - start)
    return {"records": len(index), "bytes": size, "index_build_s": build, "index_mb_s": size / build / 1e6,
            "reopen_ms": statistics.median(reopen) * 1e3}


def bench_rss(ds: UnifiedDataset, reads: int, rng: np.random.Generator) -> dict:
    records = ds._reader()
    indices = rng.integers(0, len(ds), reads)
    anon0, file0 = rss_mb()
    start = time.perf_counter()
    for i in indices:
        records.read(int(i))
    elapsed = time.perf_counter() - start
    anon1, file1 = rss_mb()
    return {"random_reads": reads, "reads_per_s": reads / elapsed, "rss_anon_growth_mb": anon1 - anon0,
            "rss_file_growth_mb": file1 - file0}


def bench_phases(files: dict[str, Path], tokenizer, sizes: Sizes, work: Path, rng: np.random.Generator) -> dict:
    results = {}
    for phase, path in files.items():
        ours = UnifiedDataset(path, tokenizer, 512, phase)
        baseline = MiniMindStyle(path, tokenizer, 512, work / "hf_cache")
        n = min(sizes.samples if phase == "pretrain" else sizes.samples // 2, len(ours))
        indices = rng.integers(0, len(ours), n)
        rate(ours.__getitem__, indices[:50])  # warm caches for both sides alike
        rate(getattr(baseline, phase), indices[:50])
        mine = rate(ours.__getitem__, indices)
        theirs = rate(getattr(baseline, phase), indices)
        results[phase] = {"mixprep_samples_s": mine, "minimind_samples_s": theirs, "ratio": mine / theirs, "samples": n}
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="512MB", help="pretrain JSONL size (default 512MB; the real run: 4GB)")
    parser.add_argument("--quick", action="store_true", help="64 MB and fewer samples: under a minute")
    parser.add_argument("--tokenizer", type=Path, default=None, help="tokenizer folder (default: shared minimind, else trained)")
    parser.add_argument("--workdir", type=Path, default=None, help="where to write the generated data (default: a temp dir)")
    args = parser.parse_args(argv)

    sizes = Sizes(parse_size("64MB"), 1000, 1500, 20_000) if args.quick else Sizes(parse_size(args.size), 4000, 4000, 100_000)
    rng = np.random.default_rng(0)
    work = Path(tempfile.mkdtemp(prefix="mixprep-bench-", dir=args.workdir))
    try:
        from transformers import AutoTokenizer

        tok_dir = args.tokenizer or (SHARED_TOKENIZER if SHARED_TOKENIZER.is_dir() else None)
        if tok_dir is None:
            tok_dir = train_tokenizer((document(rng, 300) for _ in range(2000)), vocab_size=6400, out_dir=work / "tok")
        tokenizer = AutoTokenizer.from_pretrained(str(tok_dir))
        pretrain = work / "pretrain.jsonl"
        start = time.perf_counter()
        write_pretrain(pretrain, sizes.pretrain_bytes, rng)
        generate_s = time.perf_counter() - start
        files = {"pretrain": pretrain, **write_chat_files(work, sizes.chat_records, rng)}

        report = {"tokenizer": str(tok_dir), "generate_s": generate_s, **bench_index(pretrain)}
        ds = UnifiedDataset(pretrain, tokenizer, 512)
        report.update(bench_rss(ds, sizes.random_reads, rng))
        report["phases"] = bench_phases(files, tokenizer, sizes, work, rng)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    print_table(report)
    print(json.dumps(report))
    return 0


def print_table(r: dict) -> None:
    print(f"pretrain JSONL: {r['bytes'] / 1e6:,.0f} MB, {r['records']:,} records; tokenizer {r['tokenizer']}")
    print(f"{'index build':<28}{r['index_mb_s']:>10,.0f} MB/s   ({r['index_build_s']:.2f} s; target >= 1,000)")
    print(f"{'index reopen':<28}{r['reopen_ms']:>10.2f} ms     (target < 50)")
    print(f"{'random record reads':<28}{r['reads_per_s']:>10,.0f} /s     ({r['random_reads']:,} reads)")
    print(f"{'RSS growth, anonymous':<28}{r['rss_anon_growth_mb']:>10.1f} MB     (target < 50)")
    print(f"{'RSS growth, file-backed':<28}{r['rss_file_growth_mb']:>10.1f} MB     (mmap'd page cache, reclaimable)")
    print(f"\n{'phase':<10}{'mixprep/s':>12}{'MiniMind/s':>12}{'ratio':>8}")
    for phase, p in r["phases"].items():
        print(f"{phase:<10}{p['mixprep_samples_s']:>12,.0f}{p['minimind_samples_s']:>12,.0f}{p['ratio']:>7.2f}x")


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    raise SystemExit(main())
