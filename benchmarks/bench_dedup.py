"""Near-dedup fingerprints: mixprep's compiled MinHash against the datasketch loop it replaced.

Builds a corpus of generated documents (~1 KB, Zipf-like vocabulary) with planted near-
duplicates (an edited word or several, case and whitespace changes, swapped halves), then
in this process, on one core:
- MB/s of fingerprinting (normalize, shingle, MinHash, LSH band hashes) for mixprep's
  `build.dedup.fingerprints` and for the per-record datasketch loop (MinHash.update_batch
  over the same shingles, then the same band hashing), on the same texts;
- the pairs each finds (sharing an LSH band), and, on a sample, precision and recall against
  exact Jaccard similarity of the shingle sets at the threshold, plus how many of
  datasketch's pairs mixprep finds;
- with `--group-records N`: the driver's grouping of N records' band hashes (10% duplicated,
  spread over 20 band-major task files as the scan writes them): peak memory allocated
  (tracemalloc, which numpy reports to) and seconds, each band cut into shards by value
  (the build's way, one shard per SHARD_RECORDS records; here at least 8), one whole band
  at a time, and all bands of all records concatenated first (how the driver grouped before).

    python benchmarks/bench_dedup.py --documents 20000            # ~20 MB, about a minute
    python benchmarks/bench_dedup.py --documents 5000 --threshold 0.8
    python benchmarks/bench_dedup.py --documents 2000 --group-records 5000000
"""
from __future__ import annotations

import argparse
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np
import polars as pl
import xxhash

from mixprep.build.dedup import fingerprint_groups, fingerprints, groups_by_columns, groups_by_shards, lsh_bands, normalized
from mixprep.build.select import band_columns, band_shards, shard_count
from mixprep.config.schema import DedupSpec


def make_corpus(documents: int, seed: int) -> tuple[list[str], list[tuple[int, int]]]:
    rng = np.random.default_rng(seed)
    vocab = np.array([f"w{i}" for i in range(20_000)])
    weights = 1 / np.arange(1, len(vocab) + 1)
    weights /= weights.sum()
    originals = [" ".join(rng.choice(vocab, int(rng.integers(120, 220)), p=weights)) for _ in range(documents)]
    texts, planted = list(originals), []
    for i in range(0, documents, 4):  # a quarter of the documents get a near-copy
        words = originals[i].split(" ")
        kind = (i // 4) % 4
        if kind == 0:
            copy = originals[i].upper().replace(" ", "  ")
        elif kind == 3:
            copy = " ".join(words[len(words) // 2 :] + words[: len(words) // 2])
        else:
            for _ in range(1 if kind == 1 else 6):
                words[int(rng.integers(len(words)))] = f"edit{int(rng.integers(10**6))}"
            copy = " ".join(words)
        planted.append((i, len(texts)))
        texts.append(copy)
    return texts, planted


def shingles(text: str, ngram: int) -> set[str]:
    words = text.split(" ")
    return {" ".join(words[j : j + ngram]) for j in range(max(1, len(words) - ngram + 1))}


def datasketch_fingerprints(texts: list[str], spec: DedupSpec, seed: int) -> np.ndarray:
    """The loop mixprep used before (one datasketch MinHash per record, in Python)."""
    from datasketch import MinHash

    bands, rows = lsh_bands(spec)
    norm = normalized(pl.Series(texts)).to_list()
    out = np.zeros((len(norm), bands), dtype=np.uint64)
    for i, text in enumerate(norm):
        minhash = MinHash(num_perm=spec.num_perm, seed=seed)
        minhash.update_batch([s.encode() for s in shingles(text, spec.ngram)])
        values = minhash.hashvalues[: bands * rows].astype(np.uint64).reshape(bands, rows)
        out[i] = [xxhash.xxh3_64_intdigest(values[b].tobytes(), seed=b) for b in range(bands)]
    return out


def band_pairs(prints: np.ndarray) -> set[tuple[int, int]]:
    pairs: set[tuple[int, int]] = set()
    for column in prints.T:
        order = np.argsort(column, kind="stable")
        sorted_values = column[order]
        start = 0
        for end in range(1, len(order) + 1):
            if end == len(order) or sorted_values[end] != sorted_values[start]:
                members = sorted(order[start:end].tolist())
                pairs.update((a, b) for k, a in enumerate(members) for b in members[k + 1 :])
                start = end
    return pairs


def grouping_memory(records: int, bands: int, seed: int) -> None:
    """Peak allocated bytes and seconds of grouping `records` x `bands` band hashes: each band
    cut into shards by value (the build's way at scale), each band whole, all bands at once."""
    rng = np.random.default_rng(seed)
    with tempfile.TemporaryDirectory() as folder:
        paths = []
        for task, rows in enumerate(np.array_split(np.arange(records), 20)):
            table = rng.integers(0, 2**63, size=(len(rows), bands), dtype=np.int64).astype(np.uint64)
            table[::10] = table[1::10]  # every tenth record duplicates its neighbour
            paths.append(str(Path(folder) / f"{task}.npy"))
            np.save(paths[-1], np.ascontiguousarray(table.T))  # band-major, as the scan writes it
        shards = max(shard_count(records), 8)
        runs = {
            f"{shards} shards a band": lambda: groups_by_shards(records, band_shards(paths, bands, shards)),
            "one band at a time": lambda: groups_by_columns(records, band_columns(paths, bands)),
            "all bands at once": lambda: fingerprint_groups(np.concatenate([np.load(p).T for p in paths])),
        }
        for name, run in runs.items():
            tracemalloc.start()
            start = time.perf_counter()
            labels = run()
            seconds = time.perf_counter() - start
            peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
            print(f"grouping {records:,} records x {bands} bands, {name}: peak allocated {peak / 2**20:,.0f} MiB "
                  f"({peak / records:.0f} bytes/record), {seconds:.1f} s, {len(np.unique(labels)):,} groups")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--documents", type=int, default=20_000)
    parser.add_argument("--threshold", type=float, default=0.8)
    parser.add_argument("--num-perm", type=int, default=128)
    parser.add_argument("--ngram", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--sample", type=int, default=300_000, help="random pairs checked against exact Jaccard for precision")
    parser.add_argument("--group-records", type=int, default=0, help="also measure the driver's grouping of this many records")
    args = parser.parse_args()
    spec = DedupSpec(method="near", threshold=args.threshold, num_perm=args.num_perm, ngram=args.ngram)
    texts, planted = make_corpus(args.documents, args.seed)
    megabytes = sum(len(t.encode()) for t in texts) / 1e6
    fingerprints(pl.Series(texts[:10]), spec, args.seed)  # load the compiled kernels once
    start = time.perf_counter()
    ours = fingerprints(pl.Series(texts), spec, args.seed)
    ours_seconds = time.perf_counter() - start
    subset = texts[: max(1, len(texts) // 10)]  # the Python loop is slow: time a tenth
    start = time.perf_counter()
    datasketch_fingerprints(subset, spec, args.seed)
    theirs_mb_s = sum(len(t.encode()) for t in subset) / 1e6 / (time.perf_counter() - start)
    theirs = datasketch_fingerprints(texts, spec, args.seed)
    print(f"corpus: {len(texts):,} documents, {megabytes:.1f} MB, {len(planted):,} planted near-copies; "
          f"threshold {spec.threshold}, num_perm {spec.num_perm}, bands x rows {lsh_bands(spec)}")
    print(f"fingerprints, one core: mixprep {megabytes / ours_seconds:.1f} MB/s, datasketch loop {theirs_mb_s:.1f} MB/s "
          f"({megabytes / ours_seconds / theirs_mb_s:.1f}x)")
    norm = normalized(pl.Series(texts)).to_list()
    sets = [shingles(t, spec.ngram) for t in norm]

    def similar(a: int, b: int) -> bool:
        return len(sets[a] & sets[b]) / len(sets[a] | sets[b]) >= spec.threshold

    ours_pairs, theirs_pairs = band_pairs(ours), band_pairs(theirs)
    truth_planted = [p for p in planted if similar(*p)]
    for name, pairs in (("mixprep", ours_pairs), ("datasketch", theirs_pairs)):
        precision = sum(similar(a, b) for a, b in pairs) / max(len(pairs), 1)
        recall = sum(p in pairs for p in truth_planted) / max(len(truth_planted), 1)
        print(f"{name:>10}: {len(pairs):,} candidate pairs; precision (exact Jaccard >= threshold) {precision:.3f}; "
              f"recall of the {len(truth_planted):,} planted pairs at or above the threshold {recall:.3f}")
    agreed = len(ours_pairs & theirs_pairs) / max(len(theirs_pairs), 1)
    strong = {p for p in theirs_pairs if len(sets[p[0]] & sets[p[1]]) / len(sets[p[0]] | sets[p[1]]) >= 0.9}
    print(f"mixprep finds {agreed:.3f} of datasketch's pairs; {len(strong & ours_pairs) / max(len(strong), 1):.3f} of those "
          f"with Jaccard >= 0.9 (near the threshold LSH finds a pair with some probability, for both alike)")
    rng = np.random.default_rng(args.seed)
    a = rng.integers(0, len(texts), args.sample)
    b = rng.integers(0, len(texts), args.sample)
    missed = sum(1 for x, y in zip(a.tolist(), b.tolist(), strict=True) if x < y and similar(x, y) and (x, y) not in ours_pairs)
    print(f"random sample of {args.sample:,} pairs: {missed} similar pairs mixprep did not find")
    if args.group_records:
        grouping_memory(args.group_records, lsh_bands(spec)[0], args.seed)


if __name__ == "__main__":
    main()
