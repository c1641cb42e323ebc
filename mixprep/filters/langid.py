"""Language identification for a whole record batch in one call (py3langid's model, compiled).

Used by the `languages:` filter (`rules`) and by `language_fields`, which
turns texts into `language` / `language_score` output columns.

py3langid (a maintained fork of langid.py) ships its naive-Bayes model inside the
package (`py3langid/data/model.npz.xz`), so nothing is downloaded at run time. Its own
`classify` walks a byte-level automaton in a Python loop, one byte at a time. This
module evaluates the *same* model with numba over the whole batch: sixteen automaton
walks advance in lockstep (the transition table is 39 MB, so a lone walk waits on
memory at every byte; ASCII text walks the part of it that ASCII bytes reach);
features are counted without branches; each document's 142 class scores are summed
in one cache-resident row from the probability table, which is stored as exact int16
(py3langid's log-probabilities are multiples of 1/512) with the next rows prefetched.
The softmax uses its own vectorised exp. Labels are identical to
`py3langid.classify(text.encode()[:LANGUAGE_PREFIX_BYTES])` with `norm_probs=True`
and scores agree to ~3e-6 (tests/test_langid.py checks mixed-language texts).

What is classified: the first `LANGUAGE_PREFIX_BYTES` bytes of each text (512, or a
filter's `language_prefix_bytes`), less a character the limit cuts, after the
normalisation py3langid applies (all-uppercase text is lowercased, then NFC) - what
py3langid itself does with a byte string. The bound keeps long documents cheap; its
cost in accuracy per prefix length is measured by `benchmarks/bench_langid.py`, and
the speed of each step is in benchmarks/NOTES.md and the README.
"""
from __future__ import annotations

import functools
import logging
from dataclasses import dataclass

import numba
import numpy as np
import polars as pl
import pyarrow as pa

import mixprep.numba_cache  # noqa: F401 - a writable kernel cache before the first @njit(cache=True)
from mixprep.filters.fields import LANGUAGE_PREFIX_BYTES
from mixprep.filters.intrinsics import bytes_between, prefetch
from mixprep.filters.textstats import TextBatch, batch_rows, utf8_buffers

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Automaton:
    """py3langid's byte automaton: the state after each byte, and the n-gram it completes."""

    next_state: np.ndarray
    """Transition table (uint32 or uint16), indexed by row_base[state] + byte."""
    row_base: np.ndarray
    """uint32, per state: the first index of its row in `next_state`."""
    feature_of_state: np.ndarray
    """int32, per state: the n-gram feature it emits, or the number of features (none)."""


@dataclass(frozen=True)
class LanguageModel:
    """py3langid's model as flat numpy arrays."""

    automaton: Automaton
    """Rows of 256 bytes, every state (39 MB)."""
    ascii_automaton: Automaton
    """The same walk for ASCII text: the states ASCII bytes reach, rows of 128 (4 MB); a byte
    >= 128 would read the next row, so only ranges known to be ASCII walk it."""
    feature_rows: np.ndarray
    """(features x ROW_WIDTH): log P(feature | language) * row_scale, zero-padded past the classes."""
    row_scale: float
    """What `feature_rows` is multiplied by: 512 when the table is stored as exact int16, else 1 (float32)."""
    log_prior: np.ndarray
    """float32 (classes,): log P(language)."""
    labels: tuple[str, ...]
    """ISO 639 code per class column; a few appear twice (script variants)."""
    alias_pairs: tuple[tuple[int, int], ...]
    """(first column, duplicate column) for labels that appear twice."""


ROW_WIDTH = 144
"""Classes per stored row, padded from 142: whole vectors, and a loop length known when compiling."""


def _huge_page_copy(array: np.ndarray) -> np.ndarray:
    """A copy in memory that numpy allocates, which it backs with transparent huge pages on Linux.

    The identifier reads the transition table (39 MB) and the probability table at
    random; with 4 KiB pages nearly every read also misses the TLB, which made the
    automaton walk 2-3x slower.
    """
    copy = np.empty_like(array, order="C")
    copy[...] = array
    return copy


def feature_rows(log_prob: np.ndarray) -> tuple[np.ndarray, float]:
    """The probability table padded to ROW_WIDTH, as int16 * 512 when that is exact.

    py3langid's log-probabilities are multiples of 1/512 between -16 and 0, so int16
    holds them exactly in half the bytes of float32 (the rows are read at random from
    memory, so bytes are time). Scaling by a power of two commutes with float rounding:
    sums of weight * (512 * p) are exactly 512 times the sums of weight * p.
    """
    n_features, n_classes = log_prob.shape
    if n_classes > ROW_WIDTH:
        msg = f"language model has {n_classes} classes, more than {ROW_WIDTH}"
        raise ValueError(msg)
    scaled = log_prob.astype(np.float64) * 512
    if np.array_equal(scaled, np.round(scaled)) and np.abs(scaled).max(initial=0) < 2**15:
        rows, scale = np.zeros((n_features, ROW_WIDTH), dtype=np.int16), 512.0
        rows[:, :n_classes] = scaled
    else:
        rows, scale = np.zeros((n_features, ROW_WIDTH), dtype=np.float32), 1.0
        rows[:, :n_classes] = log_prob
    return _huge_page_copy(rows), scale


def ascii_automaton(full: Automaton) -> Automaton:
    """`full` restricted to the states that ASCII bytes reach from the start state (47,350
    of 104,583 for py3langid's model), renumbered from 0 (the start state stays 0), each
    with a row of 128 next states (uint16 where they fit): 4 MB instead of 39. Most text
    is ASCII, and its walk then reads a table whose busy rows stay in the core's cache
    (~25% less time per byte). Identical walks on ASCII input.
    """
    row_width = 256
    reached = np.zeros(len(full.row_base), dtype=np.bool_)
    reached[0] = True
    frontier = np.zeros(1, dtype=np.int64)
    while len(frontier):  # breadth first: one level per byte of the longest n-gram
        successors = np.zeros(len(full.row_base), dtype=np.bool_)
        successors[full.next_state[(full.row_base[frontier][:, None] + np.arange(128)).ravel()]] = True
        frontier = np.flatnonzero(successors & ~reached)
        reached[frontier] = True
    states = np.flatnonzero(reached)
    renumbered = np.zeros(len(full.row_base), dtype=np.int64)
    renumbered[states] = np.arange(len(states))
    # States that share a row in `full` share it here too.
    full_rows, row_of_state = np.unique(full.row_base[states] // row_width, return_inverse=True)
    targets = renumbered[full.next_state[(full_rows[:, None] * row_width + np.arange(128)).ravel()]]
    return Automaton(
        next_state=_huge_page_copy(targets.astype(np.uint16 if len(states) <= 1 << 16 else np.uint32)),
        row_base=row_of_state.astype(np.uint32) << 7,
        feature_of_state=full.feature_of_state[states],
    )


@functools.lru_cache(maxsize=1)
def load_model() -> LanguageModel:
    """Load py3langid's bundled model once per process (about 0.5 s)."""
    from py3langid.langid import MODEL_FILE, LanguageIdentifier

    identifier = LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)
    labels = tuple(identifier.nb_classes)
    first: dict[str, int] = {}
    aliases: list[tuple[int, int]] = []
    for column, label in enumerate(labels):
        if label in first:
            aliases.append((first[label], column))
        else:
            first[label] = column
    logger.debug("loaded py3langid model: %d languages, %d features", len(first), identifier.nb_ptc.shape[0])
    rows, scale = feature_rows(np.asarray(identifier.nb_ptc, dtype=np.float32))
    automaton = Automaton(
        next_state=_huge_page_copy(np.frombuffer(identifier.tk_nextmove, dtype=np.uint32)),
        row_base=np.asarray(identifier.tk_row, dtype=np.uint32) << 8,
        feature_of_state=np.where(np.asarray(identifier.tk_output) < 0, rows.shape[0], identifier.tk_output).astype(np.int32),
    )
    return LanguageModel(
        automaton=automaton,
        ascii_automaton=ascii_automaton(automaton),
        feature_rows=rows,
        row_scale=scale,
        log_prior=np.asarray(identifier.nb_pc, dtype=np.float32),
        labels=labels,
        alias_pairs=tuple(aliases),
    )


def known_languages() -> frozenset[str]:
    return frozenset(load_model().labels)


def normalized_prefixes(data: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Byte ranges of whole characters -> (one uint8 buffer of them normalised, n+1 int64 offsets).

    py3langid's own normalisation: all-uppercase text is lowercased, then NFC.
    """
    buffer, offsets = _gather_ranges(data, starts, ends)
    prefixes = pl.Series(pa.LargeStringArray.from_buffers(len(starts), pa.py_buffer(offsets), pa.py_buffer(buffer)))
    text = pl.col("t")
    all_upper = (text == text.str.to_uppercase()) & (text != text.str.to_lowercase())
    normalized = (
        pl.DataFrame({"t": prefixes})
        .select(pl.when(all_upper).then(text.str.to_lowercase()).otherwise(text).str.normalize("NFC"))
        .to_series()
    )
    return utf8_buffers(normalized)


@numba.njit(cache=True)
def _gather_ranges(data: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    offsets = np.zeros(len(starts) + 1, dtype=np.int64)
    for d in range(len(starts)):
        offsets[d + 1] = offsets[d] + ends[d] - starts[d]
    buffer = np.empty(offsets[-1], dtype=np.uint8)
    for d in range(len(starts)):
        buffer[offsets[d] : offsets[d + 1]] = data[starts[d] : ends[d]]
    return buffer, offsets


@numba.njit(cache=True)
def _prefixes(data: np.ndarray, starts: np.ndarray, stops: np.ndarray, limit: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per text: (end of its prefix, whether the prefix is ASCII, whether it is all-uppercase ASCII).

    The prefix is the first `limit` bytes, less a character that the limit cuts (what
    py3langid's `decode_trimmed` does with a byte string). An ASCII prefix needs no NFC
    (ASCII is always normalised), and "all uppercase" is then: at least one A-Z and no
    a-z, which is what py3langid's `isupper()` asks.
    """
    n = len(starts)
    ends = np.empty(n, dtype=np.int64)
    ascii = np.ones(n, dtype=np.bool_)
    upper = np.zeros(n, dtype=np.bool_)
    for d in range(n):
        start = starts[d]
        end = min(stops[d], start + limit)
        if end < stops[d]:
            while end > start and (data[end] & 0xC0) == 0x80:  # data[end] continues a cut character
                end -= 1
        ends[d] = end
        high = upper_bytes = lower_bytes = np.uint64(0)
        i = start
        while i + 32 <= end and high == 0:  # 32 bytes per step (vector compares)
            high = bytes_between(data, i, 128, 255)
            upper_bytes |= bytes_between(data, i, 65, 90)
            lower_bytes |= bytes_between(data, i, 97, 122)
            i += 32
        while i < end and high == 0:  # the last 0-31 bytes
            b = data[i]
            high = np.uint64(b >= 128)
            upper_bytes |= np.uint64(65 <= b <= 90)
            lower_bytes |= np.uint64(97 <= b <= 122)
            i += 1
        ascii[d] = high == 0
        upper[d] = high == 0 and upper_bytes != 0 and lower_bytes == 0
    return ends, ascii, upper


CHUNK_DOCUMENTS = 256
"""Documents walked and counted at once (their features are held, one int32 per prefix byte)."""

PREFETCH_AHEAD = 8
"""Features ahead whose probability rows are requested before they are read."""

LOG1P_COUNTS = np.log1p(np.arange(1024, dtype=np.float64)).astype(np.float32)
"""log(1 + count) for the counts a prefix can have (a 512-byte prefix has at most 512)."""


@numba.njit(cache=True)
def _walk(
    data: np.ndarray, start: int, end: int, state: int,
    next_state: np.ndarray, row_base: np.ndarray, feature_of_state: np.ndarray, emitted: np.ndarray, shift: int,
) -> None:
    for i in range(start, end):
        state = next_state[row_base[state] + data[i]]
        emitted[i + shift] = feature_of_state[state]


@numba.njit(cache=True)
def _walk_sixteen(
    data: np.ndarray, starts: np.ndarray, emit_starts: np.ndarray, length: int,
    next_state: np.ndarray, row_base: np.ndarray, feature_of_state: np.ndarray, emitted: np.ndarray,
) -> tuple[int, int, int, int, int, int, int, int, int, int, int, int, int, int, int, int]:
    """Sixteen automaton walks in lockstep over `length` bytes each; returns their states.

    Each step reads a random row of a 39 MB table and depends on the step before, so one
    walk waits on memory at every byte. Independent walks, their states in registers and
    their writes unconditional, let the CPU have that many reads in flight (sixteen named
    registers beat eight, and beat a loop over an array of states: benchmarks/NOTES.md).
    """
    p0, p1, p2, p3, p4, p5, p6, p7 = starts[0], starts[1], starts[2], starts[3], starts[4], starts[5], starts[6], starts[7]
    p8, p9, p10, p11 = starts[8], starts[9], starts[10], starts[11]
    p12, p13, p14, p15 = starts[12], starts[13], starts[14], starts[15]
    q0, q1, q2, q3 = emit_starts[0], emit_starts[1], emit_starts[2], emit_starts[3]
    q4, q5, q6, q7 = emit_starts[4], emit_starts[5], emit_starts[6], emit_starts[7]
    q8, q9, q10, q11 = emit_starts[8], emit_starts[9], emit_starts[10], emit_starts[11]
    q12, q13, q14, q15 = emit_starts[12], emit_starts[13], emit_starts[14], emit_starts[15]
    s0 = s1 = s2 = s3 = s4 = s5 = s6 = s7 = s8 = s9 = s10 = s11 = s12 = s13 = s14 = s15 = 0
    for t in range(length):
        s0 = next_state[row_base[s0] + data[p0 + t]]
        s1 = next_state[row_base[s1] + data[p1 + t]]
        s2 = next_state[row_base[s2] + data[p2 + t]]
        s3 = next_state[row_base[s3] + data[p3 + t]]
        s4 = next_state[row_base[s4] + data[p4 + t]]
        s5 = next_state[row_base[s5] + data[p5 + t]]
        s6 = next_state[row_base[s6] + data[p6 + t]]
        s7 = next_state[row_base[s7] + data[p7 + t]]
        s8 = next_state[row_base[s8] + data[p8 + t]]
        s9 = next_state[row_base[s9] + data[p9 + t]]
        s10 = next_state[row_base[s10] + data[p10 + t]]
        s11 = next_state[row_base[s11] + data[p11 + t]]
        s12 = next_state[row_base[s12] + data[p12 + t]]
        s13 = next_state[row_base[s13] + data[p13 + t]]
        s14 = next_state[row_base[s14] + data[p14 + t]]
        s15 = next_state[row_base[s15] + data[p15 + t]]
        emitted[q0 + t] = feature_of_state[s0]
        emitted[q1 + t] = feature_of_state[s1]
        emitted[q2 + t] = feature_of_state[s2]
        emitted[q3 + t] = feature_of_state[s3]
        emitted[q4 + t] = feature_of_state[s4]
        emitted[q5 + t] = feature_of_state[s5]
        emitted[q6 + t] = feature_of_state[s6]
        emitted[q7 + t] = feature_of_state[s7]
        emitted[q8 + t] = feature_of_state[s8]
        emitted[q9 + t] = feature_of_state[s9]
        emitted[q10 + t] = feature_of_state[s10]
        emitted[q11 + t] = feature_of_state[s11]
        emitted[q12 + t] = feature_of_state[s12]
        emitted[q13 + t] = feature_of_state[s13]
        emitted[q14 + t] = feature_of_state[s14]
        emitted[q15 + t] = feature_of_state[s15]
    return s0, s1, s2, s3, s4, s5, s6, s7, s8, s9, s10, s11, s12, s13, s14, s15


@numba.njit(cache=True)
def _distinct_features(
    data: np.ndarray,
    starts: np.ndarray,
    ends: np.ndarray,
    next_state: np.ndarray,
    row_base: np.ndarray,
    feature_of_state: np.ndarray,
    counts: np.ndarray,
    log1p_counts: np.ndarray,
    emitted: np.ndarray,
    once: np.ndarray,
    once_ends: np.ndarray,
    repeated: np.ndarray,
    repeated_weights: np.ndarray,
    repeated_ends: np.ndarray,
) -> None:
    """Walk the byte automaton over each range; list each distinct feature it emits.

    Document d's features seen once end at once_ends[d] in `once`; those seen k > 1 times
    end at repeated_ends[d] in `repeated`, with weight log(1 + k) (py3langid's) in
    `repeated_weights`. Both in order of first occurrence. `emitted` and `once` must hold
    one slot per byte of all ranges (a byte emits at most one feature); `counts` has a
    slot per feature and one more, for "no feature".
    """
    n = len(starts)
    nothing = len(counts) - 1
    lengths = ends - starts
    # The feature (or `nothing`) after each prefix byte, documents back to back.
    emit_start = np.zeros(n + 1, dtype=np.int64)
    for d in range(n):
        emit_start[d + 1] = emit_start[d] + lengths[d]
    # Longest first, so each lockstep block holds documents of nearly equal length.
    order = np.argsort(-lengths, kind="mergesort")
    block_starts = np.empty(16, dtype=np.int64)
    block_emit_starts = np.empty(16, dtype=np.int64)
    block_states = np.empty(16, dtype=np.int64)
    for block in range(0, n, 16):
        lanes = min(16, n - block)
        common = lengths[order[block + lanes - 1]]
        for j in range(16):
            # A last block of fewer documents walks its last one in the spare lanes too:
            # the same walk writes the same features to the same places.
            d = order[block + min(j, lanes - 1)]
            block_starts[j] = starts[d]
            block_emit_starts[j] = emit_start[d]
        block_states[:] = _walk_sixteen(
            data, block_starts, block_emit_starts, common, next_state, row_base, feature_of_state, emitted)
        for j in range(lanes):  # each walk's bytes past the block's shortest
            d = order[block + j]
            _walk(data, starts[d] + common, ends[d], block_states[j], next_state, row_base, feature_of_state, emitted,
                  emit_start[d] - starts[d])
    k = r = 0
    for d in range(n):
        first = k
        # Without branches: whether a byte emits, and whether its feature is new, are
        # coin flips for the CPU. The bytes that emit nothing (~1 in 4) are dropped in a
        # pass of their own first: counting them into a spare slot took 1.6x as long.
        emitting = emit_start[d]
        for i in range(emit_start[d], emit_start[d + 1]):
            feature = emitted[i]
            emitted[emitting] = feature
            emitting += feature != nothing
        for i in range(emit_start[d], emitting):
            feature = emitted[i]
            once[k] = feature
            k += counts[feature] == 0
            counts[feature] += 1
        # Split the distinct features by count (compacting `once` in place: k <= j).
        distinct = k
        k = first
        for j in range(first, distinct):
            feature = once[j]
            count = counts[feature]
            counts[feature] = 0
            once[k] = feature
            k += count == 1
            repeated[r] = feature
            if count < len(log1p_counts):
                repeated_weights[r] = log1p_counts[count]
            else:
                repeated_weights[r] = np.float32(np.log1p(np.float64(count)))
            r += count > 1
        once_ends[d] = k
        repeated_ends[d] = r


_LOG2_E = 1.4426950408889634
_LN2_HIGH = 0.6931471803691238  # ln 2 in two parts: k * _LN2_HIGH is exact for |k| < 2**20
_LN2_LOW = 1.9082149292705877e-10
_ROUNDING_SHIFT = 6755399441055744.0  # 1.5 * 2**52: x + it rounds x to an integer kept in the low mantissa bits
_ROUNDING_SHIFT_BITS = 0x4338000000000000


@numba.njit(inline="always", cache=True)
def _largest(values: np.ndarray) -> float:
    """max(values), four running maxima at a time (the compiler does not vectorise a
    floating-point max; one running maximum waits on the last at every element)."""
    n = len(values)
    n4 = n - n % 4
    top0 = top1 = top2 = top3 = values[0]
    for c in range(0, n4, 4):
        top0, top1 = max(top0, values[c]), max(top1, values[c + 1])
        top2, top3 = max(top2, values[c + 2]), max(top3, values[c + 3])
    for c in range(n4, n):
        top0 = max(top0, values[c])
    return max(max(top0, top1), max(top2, top3))


@numba.njit(fastmath={"nnan", "ninf", "nsz", "contract"}, cache=True)
def _most_probable(
    row: np.ndarray, exps: np.ndarray, powers: np.ndarray, alias_first: np.ndarray, alias_duplicate: np.ndarray,
) -> tuple[int, float]:
    """Softmax of the class scores in `row`, duplicate labels folded into their first
    column (py3langid's `_decide`): (winning column, its probability).

    exp(x) = 2**k * exp(r) with k = round(x / ln 2) and |r| <= ln(2) / 2, exp(r) by its
    Taylor series to r**11 (relative error < 1e-14): plain arithmetic that the compiler
    vectorises, where libm's exp is a call per class (142 per text took ~2 us, as long as
    scoring 100 of its n-grams). 2**k is built from k's bits. `exps` and `powers` are
    scratch rows; flags: no reassociation, which the rounding step relies on.
    """
    n = len(row)
    n4 = n - n % 4
    top = _largest(row)
    for c in range(n):
        x = max(row[c] - top, -700.0)  # exp(-700) ~ 1e-304: nothing next to the top's 1
        shifted = x * _LOG2_E + _ROUNDING_SHIFT
        k = shifted - _ROUNDING_SHIFT
        r = (x - k * _LN2_HIGH) - k * _LN2_LOW
        exps[c] = 1.0 + r * (1.0 + r * (1 / 2 + r * (1 / 6 + r * (1 / 24 + r * (1 / 120 + r * (1 / 720 + r * (
            1 / 5040 + r * (1 / 40320 + r * (1 / 362880 + r * (1 / 3628800 + r * (1 / 39916800)))))))))))
        powers[c] = shifted
    bits = powers.view(np.int64)
    for c in range(n):
        bits[c] = (bits[c] - _ROUNDING_SHIFT_BITS + 1023) << 52  # the float64 2**k
    total0 = total1 = total2 = total3 = 0.0
    for c in range(0, n4, 4):
        exps[c] *= powers[c]
        exps[c + 1] *= powers[c + 1]
        exps[c + 2] *= powers[c + 2]
        exps[c + 3] *= powers[c + 3]
        total0, total1 = total0 + exps[c], total1 + exps[c + 1]
        total2, total3 = total2 + exps[c + 2], total3 + exps[c + 3]
    for c in range(n4, n):
        exps[c] *= powers[c]
        total0 += exps[c]
    total = (total0 + total1) + (total2 + total3)
    for k in range(len(alias_first)):
        exps[alias_first[k]] += exps[alias_duplicate[k]]
        exps[alias_duplicate[k]] = 0.0
    best = _largest(exps)
    winner = 0
    while exps[winner] != best:  # the first column holding it, as a strict ">" scan finds
        winner += 1
    return winner, best / total


ONCE_GROUP = 4
"""Rows of once-seen features added together before they reach the accumulator."""

FOLD_EVERY = 1 << 14
"""Once-seen features per integer accumulator before it is folded into float64 (int32 stays exact)."""


@numba.njit(cache=True)
def _classify(
    data: np.ndarray,
    starts: np.ndarray,
    ends: np.ndarray,
    next_state: np.ndarray,
    row_base: np.ndarray,
    feature_of_state: np.ndarray,
    rows: np.ndarray,
    row_scale: float,
    log_prior: np.ndarray,
    log1p_counts: np.ndarray,
    alias_first: np.ndarray,
    alias_duplicate: np.ndarray,
    sums: np.ndarray,
    best: np.ndarray,
    probability: np.ndarray,
) -> None:
    """py3langid's naive Bayes over each byte range: log(1 + count) feature weights, softmax.

    Most of a document's distinct features (~90% in English prose) occur once, so their
    weight is the same log(2): their table rows are summed as integers, four rows per
    step (exact, and a third of the instructions of a multiply-add per row), and the sum
    is weighed once. The rest are multiplied in one by one. The table (100k features)
    does not fit in the core's own caches, so the rows of the next features are
    prefetched while the current ones are added. `sums` is the integer accumulator row
    (int32 for the int16 table, float64 for a float table).
    """
    n_features = rows.shape[0]
    n_classes = len(log_prior)
    flat = rows.reshape(-1)
    line = max(1, 64 // rows.itemsize)  # elements per cache line
    unscale = 1.0 / row_scale  # a power of two: exact
    log_two = np.log(2.0)
    counts = np.zeros(n_features + 1, dtype=np.int32)
    scores = np.zeros(ROW_WIDTH, dtype=np.float32)
    wide = np.zeros(ROW_WIDTH, dtype=np.float64)
    row = np.empty(n_classes, dtype=np.float64)
    exps = np.empty(n_classes, dtype=np.float64)
    powers = np.empty(n_classes, dtype=np.float64)
    # Scratch sized for the largest chunk, allocated once per call (fresh pages per
    # chunk cost the kernel's page zeroing).
    largest = 0
    for chunk_start in range(0, len(starts), CHUNK_DOCUMENTS):
        size = 0
        for d in range(chunk_start, min(len(starts), chunk_start + CHUNK_DOCUMENTS)):
            size += ends[d] - starts[d]
        largest = max(largest, size)
    emitted = np.empty(largest, dtype=np.int32)
    once = np.empty(largest, dtype=np.int64)
    repeated = np.empty(largest // 2 + 1, dtype=np.int64)  # a repeated feature takes two bytes
    repeated_weights = np.empty(largest // 2 + 1, dtype=np.float32)
    once_ends = np.empty(CHUNK_DOCUMENTS, dtype=np.int64)
    repeated_ends = np.empty(CHUNK_DOCUMENTS, dtype=np.int64)
    for chunk_start in range(0, len(starts), CHUNK_DOCUMENTS):
        chunk_end = min(len(starts), chunk_start + CHUNK_DOCUMENTS)
        _distinct_features(
            data, starts[chunk_start:chunk_end], ends[chunk_start:chunk_end], next_state, row_base, feature_of_state,
            counts, log1p_counts, emitted, once, once_ends, repeated, repeated_weights, repeated_ends,
        )
        total_once = once_ends[chunk_end - chunk_start - 1]
        total_repeated = repeated_ends[chunk_end - chunk_start - 1]
        j = r = 0
        for local in range(chunk_end - chunk_start):
            d = chunk_start + local
            has_features = j < once_ends[local] or r < repeated_ends[local]
            wide[:] = 0.0
            while j < once_ends[local]:
                sums[:] = 0
                stop = min(once_ends[local], j + FOLD_EVERY)
                while j + ONCE_GROUP <= stop:
                    if j + PREFETCH_AHEAD + ONCE_GROUP <= total_once:
                        for q in range(ONCE_GROUP):
                            ahead = once[j + PREFETCH_AHEAD + q] * ROW_WIDTH
                            e = 0
                            while e < ROW_WIDTH:  # every cache line of the row (no range step: it divides)
                                prefetch(flat, ahead + e)
                                e += line
                    r0, r1, r2, r3 = rows[once[j]], rows[once[j + 1]], rows[once[j + 2]], rows[once[j + 3]]
                    for c in range(ROW_WIDTH):
                        sums[c] += (r0[c] + r1[c]) + (r2[c] + r3[c])
                    j += ONCE_GROUP
                while j < stop:
                    r0 = rows[once[j]]
                    for c in range(ROW_WIDTH):
                        sums[c] += r0[c]
                    j += 1
                for c in range(ROW_WIDTH):
                    wide[c] += sums[c]
            scores[:] = 0
            while r < repeated_ends[local]:
                if r + PREFETCH_AHEAD < total_repeated:
                    ahead = repeated[r + PREFETCH_AHEAD] * ROW_WIDTH
                    e = 0
                    while e < ROW_WIDTH:
                        prefetch(flat, ahead + e)
                        e += line
                feature_row = rows[repeated[r]]
                w = repeated_weights[r]
                for c in range(ROW_WIDTH):
                    scores[c] += w * np.float32(feature_row[c])
                r += 1
            if has_features:
                scale = 1.0 / np.sqrt(max(ends[d] - starts[d], 1))
                for c in range(n_classes):
                    row[c] = ((log_two * wide[c] + np.float64(scores[c])) * unscale + log_prior[c]) * scale
            else:
                row[:] = 0.0  # py3langid scores a featureless text uniformly (all zeros)
            best[d], probability[d] = _most_probable(row, exps, powers, alias_first, alias_duplicate)


def _run_classifier(
    model: LanguageModel, automaton: Automaton, data: np.ndarray, starts: np.ndarray, ends: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    best = np.zeros(len(starts), dtype=np.int64)
    probability = np.zeros(len(starts), dtype=np.float64)
    if len(starts):
        first = np.array([pair[0] for pair in model.alias_pairs], dtype=np.int64)
        duplicate = np.array([pair[1] for pair in model.alias_pairs], dtype=np.int64)
        sums = np.zeros(ROW_WIDTH, dtype=np.int32 if model.feature_rows.dtype == np.int16 else np.float64)
        _classify(data, starts, ends, automaton.next_state, automaton.row_base, automaton.feature_of_state, model.feature_rows,
                  model.row_scale, model.log_prior, LOG1P_COUNTS, first, duplicate, sums, best, probability)
    return best, probability


def language_scores(
    texts: pl.Series | TextBatch, prefix_bytes: int = LANGUAGE_PREFIX_BYTES, rows: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Per text of `rows` (all by default): (class column of the best language, its probability in [0, 1]).

    Texts whose prefix is ASCII and not all-uppercase (most of an English corpus) need no
    normalisation: they are classified straight from the batch's own buffer, with the
    automaton's ASCII part. Only the others go through polars' lowercasing and NFC first.
    """
    model = load_model()
    batch, rows = batch_rows(texts, rows)
    data, offsets = batch.data, batch.offsets
    starts, stops = offsets[rows], offsets[rows + 1]
    ends, ascii, upper = _prefixes(data, starts, stops, prefix_bytes)
    direct = ascii & ~upper
    best = np.zeros(len(rows), dtype=np.int64)
    probability = np.zeros(len(rows), dtype=np.float64)
    best[direct], probability[direct] = _run_classifier(model, model.ascii_automaton, data, starts[direct], ends[direct])
    others = np.flatnonzero(~direct)
    if len(others):
        normalized, normalized_offsets = normalized_prefixes(data, starts[others], ends[others])
        best[others], probability[others] = _run_classifier(
            model, model.automaton, normalized, normalized_offsets[:-1], normalized_offsets[1:])
    return best, probability


def language_fields(
    texts: pl.Series | TextBatch, prefix_bytes: int = LANGUAGE_PREFIX_BYTES, rows: np.ndarray | None = None,
) -> pl.DataFrame:
    """Texts (of `rows`, all by default) -> DataFrame with `language` (ISO 639 code) and
    `language_score` (0..1), from the first `prefix_bytes` of each text."""
    if len(texts) == 0 or (rows is not None and len(rows) == 0):
        return pl.DataFrame({"language": [], "language_score": []}, schema={"language": pl.String, "language_score": pl.Float32})
    best, score = language_scores(texts, prefix_bytes, rows)
    labels = pl.Series("language", load_model().labels, dtype=pl.String)
    return pl.DataFrame({"language": labels.gather(best), "language_score": pl.Series(score, dtype=pl.Float32)})
