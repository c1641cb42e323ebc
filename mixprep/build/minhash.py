"""MinHash signatures and LSH band hashes in compiled code: near-dedup's fingerprints.

The construction is datasketch's MinHash (its default `affine32` scheme since 2.0):
`num_perm` permutations `h_k(x) = (a_k * x + b_k) mod 2^32` of 32-bit shingle hashes
(pre-mixed by MurmurHash3's finalizer), with
odd `a_k` and `b_k` drawn from numpy's `RandomState(seed)` exactly as datasketch draws them,
and the signature is each permutation's minimum over the text's shingles: `ngram` consecutive words of the
normalized text joined by one space (a text of fewer words is one shingle). Only the
shingle hash differs: datasketch takes 32 bits of each shingle's SHA-1 (~250 ns a shingle
even compiled, which alone would hold near-dedup to ~15 MB/s); here each word is hashed once
and a shingle's hash chains its words' hashes through splitmix64's finalizer. Both are
uniform 32-bit hashes of the shingle's text, so the signatures estimate the same Jaccard
similarity and LSH finds pairs with the same probabilities (tests/test_minhash.py compares
the two on planted near-duplicates). Band hashes mix the band number in, so equal rows in
different bands never collide.
"""
from __future__ import annotations

import numba
import numpy as np
import polars as pl

import mixprep.numba_cache  # noqa: F401 - a writable kernel cache before the first @njit(cache=True)
from mixprep.build.encode import string_buffers

_SPACE = 32


def permutations(num_perm: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(a, b) uint32 arrays of the permutations, drawn as datasketch 2's MinHash draws them."""
    generator = np.random.RandomState((seed ^ (seed >> 32)) & 0xFFFFFFFF)  # RandomState takes 32 bits
    a = generator.randint(0, 1 << 31, num_perm, dtype=np.uint32) * np.uint32(2) + np.uint32(1)
    b = generator.randint(0, 1 << 32, num_perm, dtype=np.uint32)
    return a, b


def signatures(texts: pl.Series, ngram: int, num_perm: int, seed: int) -> np.ndarray:
    """(n, num_perm) uint32 MinHash signatures of lowercased texts; words are split at any
    run of Unicode white space here (what `dedup.normalized` collapses with a regex, ~15x
    slower than this whole kernel's pass)."""
    data, offsets = string_buffers(texts.to_arrow())
    a, b = permutations(num_perm, seed)
    out = np.empty((len(texts), num_perm), dtype=np.uint32)
    _signatures(data, offsets.astype(np.int64), ngram, a, b, out)
    return out


def band_hashes(signature: np.ndarray, bands: int, rows: int) -> np.ndarray:
    """(n, bands) uint64: one hash per LSH band of `rows` signature values."""
    out = np.empty((len(signature), bands), dtype=np.uint64)
    _band_hashes(np.ascontiguousarray(signature), bands, rows, out)
    return out


# -- kernels ---------------------------------------------------------------------------

@numba.njit(cache=True, nogil=True, inline="always")
def mix64(x: np.uint64) -> np.uint64:
    """splitmix64's finalizer: every input bit reaches every output bit."""
    x ^= x >> np.uint64(30)
    x *= np.uint64(0xBF58476D1CE4E5B9)
    x ^= x >> np.uint64(27)
    x *= np.uint64(0x94D049BB133111EB)
    x ^= x >> np.uint64(31)
    return x


_M32 = np.uint64(0xFFFFFFFF)


@numba.njit(cache=True, nogil=True, inline="always")
def _fmix32(hv: np.uint32) -> np.uint32:
    """MurmurHash3's 32-bit finalizer: datasketch's pre-mix before the affine permutations."""
    x = np.uint64(hv)
    x ^= x >> np.uint64(16)
    x = (x * np.uint64(0x85EBCA6B)) & _M32
    x ^= x >> np.uint64(13)
    x = (x * np.uint64(0xC2B2AE35)) & _M32
    x ^= x >> np.uint64(16)
    return np.uint32(x)


@numba.njit(cache=True, nogil=True, inline="always")
def _permute_into(hv: np.uint32, a: np.ndarray, b: np.ndarray, minimum: np.ndarray) -> None:
    """minimum[k] = min(minimum[k], (a[k] * hv + b[k]) mod 2^32). uint32 arrays, and the
    arithmetic written so LLVM can narrow it to 32-bit lanes (8 per AVX2 multiply)."""
    x = np.uint64(hv)
    for k in range(len(a)):
        value = np.uint32((np.uint64(a[k]) * x + np.uint64(b[k])) & _M32)
        minimum[k] = min(minimum[k], value)


@numba.njit(cache=True, nogil=True, inline="always")
def _word_hash(data: np.ndarray, start: int, end: int) -> np.uint64:
    """FNV-1a over the word's bytes, then mixed (FNV alone is weak in its high bits)."""
    h = np.uint64(0xCBF29CE484222325)
    for i in range(start, end):
        h = (h ^ np.uint64(data[i])) * np.uint64(0x100000001B3)
    return mix64(h + np.uint64(end - start))


@numba.njit(cache=True, nogil=True, inline="always")
def _space_at(data: np.ndarray, i: int, end: int) -> int:
    """Bytes of the Unicode white space character at data[i] (what `\\s` matches), or 0."""
    byte = data[i]
    if byte == 32 or 9 <= byte <= 13:
        return 1
    if byte < 0xC2:
        return 0
    if byte == 0xC2 and i + 1 < end and (data[i + 1] == 0x85 or data[i + 1] == 0xA0):
        return 2
    if i + 2 < end:
        second, third = data[i + 1], data[i + 2]
        if byte == 0xE1 and second == 0x9A and third == 0x80:  # U+1680
            return 3
        if byte == 0xE2 and second == 0x80 and (third <= 0x8A or third == 0xA8 or third == 0xA9 or third == 0xAF):
            return 3  # U+2000-200A, U+2028, U+2029, U+202F
        if byte == 0xE2 and second == 0x81 and third == 0x9F:  # U+205F
            return 3
        if byte == 0xE3 and second == 0x80 and third == 0x80:  # U+3000
            return 3
    return 0


@numba.njit(cache=True, nogil=True)
def _signatures(data: np.ndarray, offsets: np.ndarray, ngram: int, a: np.ndarray, b: np.ndarray, out: np.ndarray) -> None:
    minimum = np.empty(len(a), dtype=np.uint32)
    words = np.empty(64, dtype=np.uint64)  # the text's word hashes (grown as needed)
    for row in range(len(offsets) - 1):
        start, end = offsets[row], offsets[row + 1]
        # Words are the runs between white space (the normalization's collapse and strip);
        # a text without any is one empty word, as "".split(" ") is.
        count = 0
        i = start
        while i < end:
            space = _space_at(data, i, end)
            if space:
                i += space
                continue
            word_start = i
            while i < end and _space_at(data, i, end) == 0:
                i += 1
            if count == len(words):
                grown = np.empty(2 * len(words), dtype=np.uint64)
                grown[:count] = words[:count]
                words = grown
            words[count] = _word_hash(data, word_start, i)
            count += 1
        if count == 0:
            words[0] = _word_hash(data, start, start)
            count = 1
        minimum[:] = np.uint32(0xFFFFFFFF)
        width = min(ngram, count)
        for s in range(max(1, count - ngram + 1)):
            h = np.uint64(0x9E3779B97F4A7C15) * np.uint64(width)
            for w in range(s, s + width):
                h = mix64(h ^ words[w])
            _permute_into(_fmix32(np.uint32(h >> np.uint64(32))), a, b, minimum)
        out[row, :] = minimum


@numba.njit(cache=True, nogil=True)
def _band_hashes(signature: np.ndarray, bands: int, rows: int, out: np.ndarray) -> None:
    for row in range(signature.shape[0]):
        for band in range(bands):
            h = mix64(np.uint64(band + 1) * np.uint64(0x9E3779B97F4A7C15))
            for k in range(band * rows, (band + 1) * rows):
                h = mix64(h ^ np.uint64(signature[row, k]))
            out[row, band] = h
