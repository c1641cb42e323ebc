"""Byte-level BPE merges, compiled: a tokenizer's merge ranks as a hash table, and the
library's merge order (the lowest-ranked pair first, leftmost among equals) over each word.
Used by `bytelevel` for the words its cache has not seen yet."""
from __future__ import annotations

from typing import Any

import numba
import numpy as np

import mixprep.numba_cache  # noqa: F401 - a writable kernel cache before the first @njit(cache=True)


def byte_chars() -> list[str]:
    """GPT-2's bytes -> printable characters map (`bytes_to_unicode`)."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    chars = {b: chr(b) for b in printable}
    extra = 0
    for b in range(256):
        if b not in chars:
            chars[b] = chr(256 + extra)
            extra += 1
    return [chars[b] for b in range(256)]


BYTE_CHARS = byte_chars()


@numba.njit(cache=True)
def build_merge_table(first: np.ndarray, second: np.ndarray, merged: np.ndarray, bits: int) -> tuple[np.ndarray, np.ndarray]:
    """Open-addressing table: key (first << 32 | second) + 1 -> value (rank << 32 | merged id)."""
    keys = np.zeros(1 << bits, dtype=np.uint64)
    values = np.zeros(1 << bits, dtype=np.int64)
    mask = np.uint64((1 << bits) - 1)
    for rank in range(len(first)):
        key = ((np.uint64(first[rank]) << np.uint64(32)) | np.uint64(second[rank])) + np.uint64(1)
        s = (key * np.uint64(0x9E3779B97F4A7C15)) >> np.uint64(64 - bits)
        while keys[s] != np.uint64(0) and keys[s] != key:
            s = (s + np.uint64(1)) & mask
        if keys[s] == np.uint64(0):  # a repeated pair keeps its first (lowest) rank
            keys[s] = key
            values[s] = (np.int64(rank) << np.int64(32)) | np.int64(merged[rank])
    return keys, values


@numba.njit(inline="always")
def _merge_of(keys: np.ndarray, values: np.ndarray, bits: int, a: int, b: int) -> int:
    key = ((np.uint64(a) << np.uint64(32)) | np.uint64(b)) + np.uint64(1)
    mask = np.uint64(len(keys) - 1)
    s = (key * np.uint64(0x9E3779B97F4A7C15)) >> np.uint64(64 - bits)
    while keys[s] != np.uint64(0):
        if keys[s] == key:
            return values[s]
        s = (s + np.uint64(1)) & mask
    return -1


@numba.njit(cache=True)
def bpe_words(
    data: np.ndarray, starts: np.ndarray, ends: np.ndarray, byte_ids: np.ndarray,
    merge_keys: np.ndarray, merge_values: np.ndarray, bits: int, out: np.ndarray, out_at: np.ndarray,
) -> int:
    """BPE each word [starts[w], ends[w]): its bytes' ids, then repeatedly the lowest-ranked
    pair's merge (leftmost first), as the library's BPE model does. Word w's ids go to
    out[out_at[w] : out_at[w + 1]] (`out` has room for one id per byte, `out_at` one entry
    per word and one more); returns the ids written."""
    k = 0
    symbols = np.empty(64, dtype=np.int64)
    for w in range(len(starts)):
        n = ends[w] - starts[w]
        if n > len(symbols):
            symbols = np.empty(2 * n, dtype=np.int64)
        for i in range(n):
            symbols[i] = byte_ids[data[starts[w] + i]]
        while n > 1:
            best_rank, best_at, best_id = np.int64(1) << np.int64(62), -1, 0
            for i in range(n - 1):
                found = _merge_of(merge_keys, merge_values, bits, symbols[i], symbols[i + 1])
                if found >= 0 and (found >> 32) < best_rank:
                    best_rank, best_at, best_id = found >> 32, i, found & 0xFFFFFFFF
            if best_at < 0:
                break
            symbols[best_at] = best_id
            for i in range(best_at + 1, n - 1):
                symbols[i] = symbols[i + 1]
            n -= 1
        out_at[w] = k
        for i in range(n):
            out[k + i] = symbols[i]
        k += n
    out_at[len(starts)] = k
    return k


def merge_tables(spec: dict[str, Any]) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """(byte -> id, merge table keys, values, table bits) of a byte-level BPE model spec."""
    vocab = spec["model"]["vocab"]
    pairs = [m.split(" ", 1) if isinstance(m, str) else m for m in spec["model"]["merges"]]
    first = np.array([vocab[a] for a, _ in pairs], dtype=np.int64)
    second = np.array([vocab[b] for _, b in pairs], dtype=np.int64)
    merged = np.array([vocab[a + b] for a, b in pairs], dtype=np.int64)
    bits = max(int(np.ceil(np.log2(max(len(pairs), 1) * 2))) + 1, 4)
    keys, values = build_merge_table(first, second, merged, bits)
    byte_ids = np.array([vocab[BYTE_CHARS[b]] for b in range(256)], dtype=np.int64)
    return byte_ids, keys, values, bits


# -- the tokenizer ----------------------------------------------------------------------

def pair_in_vocab(merge: Any, vocab: dict[str, int]) -> bool:
    a, b = merge.split(" ", 1) if isinstance(merge, str) else merge
    return a in vocab and b in vocab and a + b in vocab
