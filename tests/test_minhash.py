"""Compiled MinHash (build/minhash.py): datasketch's permutations, Jaccard estimates that
hold, and LSH that finds the near-duplicate pairs datasketch's LSH finds."""
from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from mixprep.build.dedup import fingerprints, lsh_bands, normalized
from mixprep.build.minhash import band_hashes, permutations, signatures
from mixprep.config.schema import DedupSpec

datasketch = pytest.importorskip("datasketch")


def shingles(text: str, ngram: int = 5) -> set[str]:
    words = text.split(" ")
    return {" ".join(words[j : j + ngram]) for j in range(max(1, len(words) - ngram + 1))}


def jaccard(a: str, b: str) -> float:
    x, y = shingles(a), shingles(b)
    return len(x & y) / len(x | y)


def test_permutations_are_datasketchs() -> None:
    for num_perm, seed in ((128, 1), (64, 7), (256, 2**40 + 3)):
        a, b = permutations(num_perm, seed)
        reference = datasketch.MinHash(num_perm=num_perm, seed=(seed ^ (seed >> 32)) & 0xFFFFFFFF).permutations
        assert np.array_equal(a, reference[0]) and np.array_equal(b, reference[1])


def corpus(seed: int, documents: int, words: int = 120) -> list[str]:
    rng = np.random.default_rng(seed)
    vocab = np.array([f"w{i}" for i in range(3000)])
    return [" ".join(rng.choice(vocab, words)) for _ in range(documents)]


def edited(text: str, rng: np.random.Generator, edits: int) -> str:
    words = text.split(" ")
    for _ in range(edits):
        words[int(rng.integers(len(words)))] = f"x{int(rng.integers(10**6))}"
    return " ".join(words)


def test_signatures_estimate_jaccard() -> None:
    rng = np.random.default_rng(3)
    base = corpus(1, 60)
    pairs = [(t, edited(t, rng, int(rng.integers(0, 20)))) for t in base]
    first = signatures(pl.Series([a for a, _ in pairs]), 5, 256, 11)
    second = signatures(pl.Series([b for _, b in pairs]), 5, 256, 11)
    estimates = (first == second).mean(axis=1)
    truth = np.array([jaccard(a, b) for a, b in pairs])
    assert np.abs(estimates - truth).mean() < 0.03  # 256 permutations: standard error <= 0.031
    assert np.corrcoef(estimates, truth)[0, 1] > 0.97


def test_short_and_empty_texts_are_one_shingle() -> None:
    sig = signatures(pl.Series(["", "a b", "a b", "a c"]), 5, 64, 0)
    assert (sig[1] == sig[2]).all() and not (sig[0] == sig[1]).all() and not (sig[1] == sig[3]).all()


def lsh_pairs(prints: np.ndarray) -> set[tuple[int, int]]:
    pairs = set()
    for column in prints.T:
        groups: dict[int, list[int]] = {}
        for i, value in enumerate(column.tolist()):
            groups.setdefault(value, []).append(i)
        for members in groups.values():
            pairs.update((a, b) for a in members for b in members if a < b)
    return pairs


def datasketch_pairs(norm: list[str], spec: DedupSpec, seed: int) -> set[tuple[int, int]]:
    lsh = datasketch.MinHashLSH(threshold=spec.threshold, num_perm=spec.num_perm)
    hashes = []
    for i, text in enumerate(norm):
        minhash = datasketch.MinHash(num_perm=spec.num_perm, seed=seed)
        minhash.update_batch([s.encode() for s in shingles(text, spec.ngram)])
        lsh.insert(i, minhash)
        hashes.append(minhash)
    return {(min(i, j), max(i, j)) for i in range(len(norm)) for j in lsh.query(hashes[i]) if i != j}


def test_lsh_finds_the_planted_near_duplicates_datasketch_finds() -> None:
    """Case and whitespace changes, an edited word, swapped paragraphs: near-duplicates with a
    Jaccard similarity of 0.9 or more, found by datasketch's own MinHash LSH at the same
    threshold and permutations; ours must find >= 99% of its pairs (and nothing dissimilar)."""
    rng = np.random.default_rng(5)
    originals = corpus(2, 200, words=160)
    variants = []
    for i, text in enumerate(originals):
        if i % 3 == 0:
            variants.append("  " + text.upper().replace(" ", "\n ") + " ")
        elif i % 3 == 1:
            variants.append(edited(text, rng, 1))
        else:
            words = text.split(" ")
            variants.append(" ".join(words[80:] + words[:80]))  # paragraphs swapped
    texts = originals + variants
    spec = DedupSpec(method="near", threshold=0.7, num_perm=128, ngram=5)
    norm = normalized(pl.Series(texts)).to_list()
    ours = lsh_pairs(fingerprints(pl.Series(texts), spec, seed=1))
    theirs = datasketch_pairs(norm, spec, seed=1)
    assert all(jaccard(norm[a], norm[b]) >= 0.9 for a, b in theirs)
    assert len(theirs) >= 195  # nearly every planted pair
    assert len(theirs & ours) / len(theirs) >= 0.99
    assert all(jaccard(norm[a], norm[b]) > 0.5 for a, b in ours)


def test_lsh_recall_by_similarity_matches_datasketchs() -> None:
    """Near the threshold LSH finds a pair only with some probability, for datasketch as for
    us: over many pairs the share found at each similarity must be the same."""
    rng = np.random.default_rng(9)
    originals = corpus(4, 400, words=100)
    variants = [edited(t, rng, int(rng.integers(1, 12))) for t in originals]
    texts = originals + variants
    spec = DedupSpec(method="near", threshold=0.7, num_perm=128, ngram=5)
    norm = normalized(pl.Series(texts)).to_list()
    ours = lsh_pairs(fingerprints(pl.Series(texts), spec, seed=3))
    theirs = datasketch_pairs(norm, spec, seed=3)
    planted = [(i, i + len(originals)) for i in range(len(originals))]
    similarity = np.array([jaccard(norm[a], norm[b]) for a, b in planted])
    for low, high in ((0.5, 0.65), (0.65, 0.8), (0.8, 1.01)):
        band = [p for p, j in zip(planted, similarity, strict=True) if low <= j < high]
        assert len(band) >= 30, (low, len(band))
        found_ours = sum(p in ours for p in band) / len(band)
        found_theirs = sum(p in theirs for p in band) / len(band)
        assert abs(found_ours - found_theirs) <= 0.15, (low, high, found_ours, found_theirs)


def test_band_hashes_differ_between_bands_for_equal_rows() -> None:
    bands, rows = lsh_bands(DedupSpec(method="near", threshold=0.8, num_perm=128, ngram=5))
    signature = np.zeros((1, bands * rows), dtype=np.uint32)
    hashed = band_hashes(signature, bands, rows)
    assert len(set(hashed[0].tolist())) == bands
