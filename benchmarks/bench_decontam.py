"""Decontamination: mixprep's compiled n-gram check against the Python set lookup users write.

Generates an evaluation set of questions (~`--eval-mb` MB, 15-60 words each, Zipf-like
vocabulary) and a training corpus (~1 KB documents from the same vocabulary) in which
`--leak-every`-th document has a question pasted into it, re-cased and re-punctuated.
Then, in this process, on one core:
- the index: seconds to read the evaluation texts into the n-gram table;
- MB/s of training text checked by `build.decontaminate.contaminated` (the scan's call,
  batch by batch as a scan task sees them), and the planted leaks found / missed, and
  clean documents flagged;
- the same check written the usual way (lowercase, regex words, a Python set of n-gram
  tuples, as lm-evaluation-harness's decontamination does) on a sample, with its MB/s,
  the ratio, and whether the two agree on every sampled document.

    python benchmarks/bench_decontam.py                       # 10 MB eval set, 200 MB of training text
    python benchmarks/bench_decontam.py --eval-mb 1 --train-mb 20
"""
from __future__ import annotations

import argparse
import re
import tempfile
import time

import numpy as np
import polars as pl

from mixprep.build.decontaminate import DecontIndex, EvalFile, build_index, contaminated
from mixprep.config.schema import DecontaminationSpec, EvalSet, SourceSpec
from mixprep.sources.plan import resolve_files

BATCH = 8192  # records per batch, about what a scan block holds
WORD = re.compile(r"[^\W_]+")


def vocabulary(seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    letters = np.array(list("abcdefghijklmnopqrstuvwxyz"))
    words = np.array(["".join(rng.choice(letters, int(rng.integers(2, 10)))) for _ in range(30_000)])
    weights = 1 / np.arange(1, len(words) + 1) ** 0.9
    return words, weights / weights.sum()


def make_questions(megabytes: float, seed: int) -> list[str]:
    words, p = vocabulary(seed)
    rng = np.random.default_rng(seed + 1)
    questions, size = [], 0
    while size < megabytes * 1e6:
        question = " ".join(rng.choice(words, int(rng.integers(15, 60)), p=p)) + "?"
        questions.append(question)
        size += len(question) + 1
    return questions


def make_documents(megabytes: float, questions: list[str], leak_every: int, seed: int) -> tuple[list[str], set[int]]:
    words, p = vocabulary(seed)
    rng = np.random.default_rng(seed + 2)
    documents, leaked, size = [], set(), 0
    while size < megabytes * 1e6:
        body = " ".join(rng.choice(words, 170, p=p))
        if len(documents) % leak_every == leak_every - 1:
            question = questions[int(rng.integers(len(questions)))]
            body = f"{body[:400]} Q: {question.upper().replace(' ', ', ')} {body[400:]}"
            leaked.add(len(documents))
        documents.append(body)
        size += len(body)
    return documents, leaked


def python_check(documents: list[str], questions: list[str], n: int) -> tuple[list[bool], float]:
    """The usual way: a set of lowercased word n-gram tuples, one lookup per n-gram."""
    grams = set()
    for question in questions:
        words = WORD.findall(question.lower())
        grams.update(tuple(words[i : i + n]) for i in range(len(words) - n + 1))
    start = time.perf_counter()
    verdicts = []
    for document in documents:
        words = WORD.findall(document.lower())
        verdicts.append(any(tuple(words[i : i + n]) in grams for i in range(len(words) - n + 1)))
    return verdicts, time.perf_counter() - start


def mixprep_index(questions: list[str], n: int, folder: str) -> tuple[DecontIndex, float]:
    path = f"{folder}/questions.jsonl"
    with open(path, "w", encoding="utf-8") as handle:
        handle.writelines(f'{{"question": "{q}"}}\n' for q in questions)
    spec = DecontaminationSpec((EvalSet("bench", SourceSpec((path,)), ("question",)),), ngram=n)
    files = [EvalFile(s, f) for s in spec.eval_sets for f in resolve_files(s.source, s.name)]
    start = time.perf_counter()
    index, _ = build_index(spec, files, folder)
    return index, time.perf_counter() - start


def mixprep_check(documents: list[str], index: DecontIndex) -> tuple[np.ndarray, float]:
    batches = [pl.Series("text", documents[i : i + BATCH], dtype=pl.String) for i in range(0, len(documents), BATCH)]
    contaminated(batches[0][:10], np.arange(10), index)  # compiled-kernel load, not counted
    start = time.perf_counter()
    found = [contaminated(batch, np.arange(len(batch)), index)[:, 0] >= 0 for batch in batches]
    return np.concatenate(found), time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--eval-mb", type=float, default=10.0)
    parser.add_argument("--train-mb", type=float, default=200.0)
    parser.add_argument("--ngram", type=int, default=13)
    parser.add_argument("--leak-every", type=int, default=500)
    parser.add_argument("--python-sample", type=int, default=20_000, help="documents the Python check reads")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    questions = make_questions(args.eval_mb, args.seed)
    documents, leaked = make_documents(args.train_mb, questions, args.leak_every, args.seed)
    train_mb = sum(len(d.encode()) for d in documents) / 1e6
    eval_mb = sum(len(q.encode()) for q in questions) / 1e6
    print(f"evaluation set: {len(questions):,} questions, {eval_mb:.1f} MB; training text: {len(documents):,} documents, "
          f"{train_mb:.1f} MB, {len(leaked):,} with a pasted question")
    with tempfile.TemporaryDirectory() as folder:
        index, seconds = mixprep_index(questions, args.ngram, folder)
        print(f"index: {seconds:.2f} s ({eval_mb / seconds:.1f} MB/s of evaluation text)")
        found, seconds = mixprep_check(documents, index)
    flagged = set(np.flatnonzero(found).tolist())
    mixprep_rate = train_mb / seconds
    print(f"mixprep: {mixprep_rate:.1f} MB/s per core ({seconds:.2f} s); leaks found {len(flagged & leaked):,} of {len(leaked):,}, "
          f"clean documents flagged {len(flagged - leaked):,}")
    sample = documents[: args.python_sample]
    verdicts, seconds = python_check(sample, questions, args.ngram)
    sample_mb = sum(len(d.encode()) for d in sample) / 1e6
    python_rate = sample_mb / seconds
    agree = sum(v == bool(found[i]) for i, v in enumerate(verdicts))
    print(f"python set of {args.ngram}-gram tuples: {python_rate:.2f} MB/s per core on {len(sample):,} documents; "
          f"mixprep is {mixprep_rate / python_rate:.1f}x; verdicts agree on {agree:,} of {len(sample):,}")


if __name__ == "__main__":
    main()
