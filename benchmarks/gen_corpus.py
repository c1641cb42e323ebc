"""Seeded generator of realistic JSONL pretraining sources, of any size, for the benchmarks.

Place in the flow: the first step of every benchmark (`bench_build.py` and friends), which
need the same large, messy input every time without shipping any real text.

`generate(out_dir, total_bytes, sources, seed)` writes `src0.jsonl ... src{k-1}.jsonl`
(each about `total_bytes / sources` bytes) plus `corpus.json` describing them. One record
per line: `{"id": "src0-000000042", "text": "..."}`. What the output guarantees:

- **Deterministic**: the bytes depend only on (seed, source index, size). Every chunk draws
  from `np.random.default_rng([seed, source, chunk])`; the vocabulary is fixed in this file.
- **Size**: each file stops at the first record that reaches its share of `total_bytes`,
  so it overshoots by less than one record (at most ~21 KB).
- **English-like text**: words drawn from a Zipf-Mandelbrot distribution over hand-written
  English function/content words followed by a long tail of syllable-built pseudo-words;
  punctuation, capitalised sentence starts, paragraph breaks; every text ends with ".".
- **Long-tailed lengths**: log-normal text length (mean ~1 KB, sigma 1), clipped at 20 KiB.
  Every chunk (2 MiB) also plants 2 tiny texts (0-12 bytes, some empty) and 1 near-20 KB
  text among its first 64 records, so any file of at least ~64 KB has both kinds.
- **Hard characters**: non-ASCII words (accented Latin, Greek, Cyrillic, CJK, Devanagari,
  emoji outside the BMP) and characters JSON must escape: double quotes, backslashes,
  newlines, carriage returns, tabs and control characters (U+0001, U+0008, U+000C, U+001B,
  U+001F; never U+0000, which too many C-based tools truncate at).

Speed: the text is assembled with numpy (a byte gather over a token pool, no per-word
Python), and each record costs one slice + decode + `orjson.dumps`: about 40 MB/s per
core; `--jobs 2` writes two sources at once (1.5 GB in ~25 s on two idle cores).

CLI: `python benchmarks/gen_corpus.py --size 1.5GB --sources 3 --out DIR --seed 0`.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import orjson
from common import format_bytes, parse_size

# Bump when the bytes for a given (seed, sources, size) change, so cached corpora are rebuilt.
GENERATOR_VERSION = 1
CORPUS_MANIFEST = "corpus.json"

CHUNK_BYTES = 2 << 20
MEAN_TEXT_BYTES = 1000
LENGTH_SIGMA = 1.0
MAX_TEXT_BYTES = 20 * 1024
LARGE_TEXT_MIN_BYTES = 18_000
TINY_TEXT_MAX_BYTES = 12
TINY_PROBABILITY = 0.002
LARGE_PROBABILITY = 0.0002
PLANTED_WINDOW = 64
ZIPF_OFFSET = 2.7  # Mandelbrot's q: flattens the head so "the" is ~6% of words, as in English.
PSEUDO_WORDS = 12_000
SPECIAL_SPREAD = 2_000

# -- vocabulary (written for this generator; ordered roughly by frequency) ----------------

FUNCTION_WORDS = """
the of and to a in that is was he for it with as his on be at by i this had not are but
from or have an they which one you were her all she there would their we him been has when
who will more no if out so said what up its about into than them can only other new some
could time these two may then do first any my now such like our over man me even most made
after also did many before must through back years where much your way well down should
because each just those people how too little state good very make world still own see men
work long get here between both life being under never day same another know while last
might us great old year off come since against go came right used take three
""".split()

NOUNS = """
river stone garden window letter market village forest morning evening winter summer
country mountain city harbour bridge library teacher student doctor farmer sailor engine
machine question answer problem method result figure table record system network signal
pattern number season history story language picture kitchen station island valley field
child mother father brother sister friend neighbour stranger captain soldier merchant
candle lantern mirror blanket basket bottle kettle ladder hammer needle thread ribbon
weather storm thunder rain snow cloud shadow light silence music voice letterbox journey
road path train ship wagon horse dog cat bird fish apple bread cheese butter honey salt
paper pencil notebook chapter page sentence word meaning reason chance moment hour minute
""".split()

VERBS = """
walked carried opened closed wrote read found lost kept held brought bought taught thought
remembered forgot noticed watched followed turned moved stood waited listened answered
asked called looked seemed became began finished returned arrived left built broke fixed
painted cooked cleaned counted measured changed compared explained described discovered
learned gathered shared promised refused allowed suggested decided expected imagined
""".split()

ADJECTIVES = """
small large quiet bright dark early late warm cold heavy light narrow wide deep shallow
simple careful sudden gentle strange familiar ordinary distant nearby empty crowded
ancient modern wooden golden silver green blue grey yellow red white black tired busy
""".split()

ADVERBS = """
quickly slowly quietly carefully suddenly gently nearly almost rather often rarely always
sometimes perhaps certainly probably simply finally clearly together alone outside inside
""".split()

# Non-ASCII words: 2-, 3- and 4-byte UTF-8, combining-free, so upper-casing is well defined.
UNICODE_WORDS = """
café naïve façade résumé über Straße Zürich mañana jalapeño smörgåsbord déjà coöperate
Ångström crème brûlée fiancée São Kraków Dvořák Øresund Þingvellir
λόγος θάλασσα данные модель Москва привет 東京 数据 模型 学习 日本語 한국어 모델
मॉडल नमस्ते שלום مرحبا ไทย 😀 🚀 🌍 🧪 ✓ → € £ ¥ π ∑ ∞ ° ½ …
""".split()

# Words with characters a JSON writer must escape (quotes, backslashes) or that look like
# JSON themselves; written as Python escapes so this file stays readable.
ESCAPE_WORDS = [
    '"quoted"', '"', 'said:"yes"', 'C:\\Users\\data', 'path\\to\\file', '\\n', '\\"',
    '{"key":', '"value"}', '[1,2,3]', 'x="1"', "it's", "don't", "O'Brien", '\\u0041', 'a\\\\b',
]

# Each token is a word plus the separator after it. The probabilities are per word.
SEPARATORS: tuple[tuple[str, float], ...] = (
    (" ", 0.855), (", ", 0.06), (". ", 0.045), (".\n\n", 0.01), (".\n", 0.006),
    ("; ", 0.005), (": ", 0.004), ("? ", 0.004), ("! ", 0.002), (" - ", 0.003),
    (" — ", 0.002), (" (", 0.002), (") ", 0.002),
)
SENTENCE_ENDS = frozenset({". ", ".\n\n", ".\n", "? ", "! "})
RECORD_END = ". "  # the last token of a record ends with ". "; the trailing space is cut

# A few spaces become characters that JSON must escape; same byte length, so it is a
# cheap in-place substitution. Rates are per space character.
SPACE_SUBSTITUTES: tuple[tuple[bytes, float], ...] = (
    (b"\n", 0.002), (b"\t", 0.001), (b'"', 0.0005), (b"\\", 0.0002), (b"\r", 0.0001),
    (b"\x01", 0.00004), (b"\x08", 0.00004), (b"\x0c", 0.00004), (b"\x1b", 0.00004), (b"\x1f", 0.00004),
)

_ONSETS = "b c d f g h j k l m n p r s t v w br cr dr fl gr pl pr st sh th tr ch wh".split()
_VOWELS = "a e i o u ai ea ee oo ou ie".split()
_CODAS = ["", "", "", "", "", "", "n", "r", "s", "t", "l", "nd", "st", "ng", "ck", "m"]


def _pseudo_words(count: int) -> list[str]:
    """Pronounceable made-up words (1-4 syllables) for the long tail of the vocabulary."""
    rng = np.random.default_rng([GENERATOR_VERSION, 1])
    seen: set[str] = set()
    words: list[str] = []
    while len(words) < count:
        syllables = int(rng.choice([1, 1, 2, 2, 2, 3]))
        word = "".join(
            _ONSETS[rng.integers(len(_ONSETS))] + _VOWELS[rng.integers(len(_VOWELS))] + _CODAS[rng.integers(len(_CODAS))]
            for _ in range(syllables)
        )
        if word not in seen:
            seen.add(word)
            words.append(word)
    return words


def _capitalized(word: str) -> str:
    return word[:1].upper() + word[1:]


@dataclass(frozen=True)
class TokenPool:
    """Every (word, capitalised?, separator) combination as one byte string in `pool`.

    Token id = (word + vocab_size * capitalised) * n_separators + separator.
    """
    pool: np.ndarray        # uint8: all tokens back to back
    starts: np.ndarray      # int64 offset of each token in `pool`
    lengths: np.ndarray     # int64 byte length of each token
    vocab_size: int
    n_separators: int
    sentence_end: np.ndarray  # bool per separator id: the next word starts a sentence
    record_end: int           # separator id that closes every record
    separator_cdf: np.ndarray  # cumulative probability of separator ids (last entry exactly 1)


@lru_cache(maxsize=1)
def token_pool() -> TokenPool:
    rng = np.random.default_rng([GENERATOR_VERSION, 2])
    real = NOUNS + VERBS + ADJECTIVES + ADVERBS
    pseudo = _pseudo_words(PSEUDO_WORDS)
    # Real words right after the function words; non-ASCII and escape words spread over the
    # ranks where the made-up words begin (a few in 100 records each); the long tail is made up.
    special = UNICODE_WORDS + ESCAPE_WORDS + pseudo[:SPECIAL_SPREAD]
    vocab = (FUNCTION_WORDS + [real[i] for i in rng.permutation(len(real))]
             + [special[i] for i in rng.permutation(len(special))] + pseudo[SPECIAL_SPREAD:])
    words = vocab + [_capitalized(w) for w in vocab]
    separators = [s for s, _ in SEPARATORS]
    tokens = [(w + s).encode("utf-8") for w in words for s in separators]
    lengths = np.fromiter((len(t) for t in tokens), dtype=np.int64, count=len(tokens))
    cdf = np.cumsum([p for _, p in SEPARATORS])
    cdf /= cdf[-1]
    return TokenPool(
        pool=np.frombuffer(b"".join(tokens), dtype=np.uint8),
        starts=np.concatenate([[0], np.cumsum(lengths)[:-1]]),
        lengths=lengths,
        vocab_size=len(vocab),
        n_separators=len(separators),
        sentence_end=np.array([s in SENTENCE_ENDS for s in separators]),
        record_end=separators.index(RECORD_END),
        separator_cdf=cdf,
    )


# -- one chunk: lengths -> tokens -> bytes -> records ------------------------------------

def draw_text_lengths(rng: np.random.Generator, budget: int) -> np.ndarray:
    """Target byte lengths of the texts in one chunk, summing to about `budget`."""
    n = int(budget / MEAN_TEXT_BYTES * 1.5) + PLANTED_WINDOW
    mu = np.log(MEAN_TEXT_BYTES) - LENGTH_SIGMA**2 / 2  # so the log-normal's mean is MEAN_TEXT_BYTES
    lengths = rng.lognormal(mu, LENGTH_SIGMA, n).astype(np.int64)
    roll = rng.random(n)
    lengths[roll < TINY_PROBABILITY] = rng.integers(0, TINY_TEXT_MAX_BYTES + 1, int((roll < TINY_PROBABILITY).sum()))
    large = roll > 1 - LARGE_PROBABILITY
    lengths[large] = rng.integers(LARGE_TEXT_MIN_BYTES, MAX_TEXT_BYTES + 1, int(large.sum()))
    planted = rng.choice(PLANTED_WINDOW, size=3, replace=False)
    lengths[planted[0]] = 0
    lengths[planted[1]] = rng.integers(1, TINY_TEXT_MAX_BYTES + 1)
    lengths[planted[2]] = rng.integers(LARGE_TEXT_MIN_BYTES, MAX_TEXT_BYTES + 1)
    np.clip(lengths, 0, MAX_TEXT_BYTES, out=lengths)
    fits = int(np.searchsorted(np.cumsum(lengths), budget, side="right"))
    return lengths[:max(fits, PLANTED_WINDOW)]


def draw_word_ranks(rng: np.random.Generator, n: int, vocab_size: int) -> np.ndarray:
    """Zipf-Mandelbrot ranks (P(r) ~ 1/(r + q)) by inverting the continuous CDF: no table lookup."""
    q = ZIPF_OFFSET
    u = rng.random(n)
    ranks = (q * np.power((vocab_size + q) / q, u) - q).astype(np.int64)
    return np.minimum(ranks, vocab_size - 1)


def draw_tokens(rng: np.random.Generator, pool: TokenPool, min_bytes: int) -> tuple[np.ndarray, np.ndarray]:
    """Word ranks and separator ids for a token stream of at least `min_bytes` bytes."""
    mean_token = 6.5
    words: list[np.ndarray] = []
    seps: list[np.ndarray] = []
    have = 0
    while have < min_bytes:
        n = int((min_bytes - have) / mean_token * 1.05) + 256
        w = draw_word_ranks(rng, n, pool.vocab_size)
        s = np.searchsorted(pool.separator_cdf, rng.random(n), side="right")
        have += int(pool.lengths[w * pool.n_separators + s].sum())
        words.append(w)
        seps.append(s)
    return np.concatenate(words), np.concatenate(seps)


def gather_bytes(pool: TokenPool, token_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Concatenate tokens into one mutable uint8 buffer; returns it and each token's end offset."""
    lengths = pool.lengths[token_ids]
    ends = np.cumsum(lengths)
    source = np.repeat(pool.starts[token_ids] - (ends - lengths), lengths) + np.arange(int(ends[-1]))
    return pool.pool[source], ends


def substitute_spaces(rng: np.random.Generator, buffer: np.ndarray) -> None:
    """Turn a few spaces into newlines, tabs, quotes, backslashes and control characters."""
    spaces = np.flatnonzero(buffer == ord(" "))
    rates = np.array([r for _, r in SPACE_SUBSTITUTES])
    count = int(rng.binomial(spaces.size, rates.sum()))
    if count == 0:
        return
    where = spaces[rng.integers(0, spaces.size, count)]
    which = rng.choice(len(rates), size=count, p=rates / rates.sum())
    buffer[where] = np.frombuffer(b"".join(b for b, _ in SPACE_SUBSTITUTES), dtype=np.uint8)[which]


def chunk_texts(seed: int, source: int, chunk: int) -> tuple[bytes, np.ndarray, np.ndarray]:
    """One chunk's texts as (buffer, start offsets, end offsets): text i = buffer[start[i]:end[i]]."""
    rng = np.random.default_rng([seed, source, chunk])
    pool = token_pool()
    targets = np.cumsum(draw_text_lengths(rng, CHUNK_BYTES))
    words, seps = draw_tokens(rng, pool, int(targets[-1]) + MAX_TEXT_BYTES)
    unit_ends = np.cumsum(pool.lengths[words * pool.n_separators + seps])
    # Text i is tokens (last[i-1], last[i]]: the first token whose end reaches its target.
    last = np.searchsorted(unit_ends, targets, side="left")
    words, seps = words[:last[-1] + 1], seps[:last[-1] + 1]
    seps[last] = pool.record_end
    capital = np.empty(words.size, dtype=bool)
    capital[0] = True
    capital[1:] = pool.sentence_end[seps[:-1]]
    token_ids = (words + pool.vocab_size * capital) * pool.n_separators + seps
    buffer, ends = gather_bytes(pool, token_ids)
    substitute_spaces(rng, buffer)
    first = np.concatenate([[0], last[:-1] + 1])
    empty = first > last  # a target so short that no token was needed
    first = np.minimum(first, last)
    starts = np.where(empty, 0, ends[first] - pool.lengths[token_ids[first]])
    # Drop the record-ending token's trailing space.
    stops = np.where(empty, 0, ends[last] - 1)
    return buffer.tobytes(), starts, stops


def source_lines(seed: int, source: int) -> Iterator[list[bytes]]:
    """Endless JSONL lines of one source, one chunk's worth per item."""
    name = source_name(source)
    dumps, newline = orjson.dumps, orjson.OPT_APPEND_NEWLINE
    index = 0
    chunk = 0
    while True:
        buffer, starts, stops = chunk_texts(seed, source, chunk)
        lines = []
        for start, stop in zip(starts.tolist(), stops.tolist(), strict=True):
            lines.append(dumps({"id": f"{name}-{index:09d}", "text": buffer[start:stop].decode("utf-8")}, option=newline))
            index += 1
        yield lines
        chunk += 1


# -- files ------------------------------------------------------------------------------

@dataclass(frozen=True)
class SourceFile:
    path: str            # relative to the corpus folder
    bytes: int
    records: int


@dataclass(frozen=True)
class Corpus:
    generator_version: int
    seed: int
    total_bytes: int
    sources: tuple[SourceFile, ...]

    @property
    def records(self) -> int:
        return sum(s.records for s in self.sources)

    @property
    def bytes(self) -> int:
        return sum(s.bytes for s in self.sources)


def source_name(source: int) -> str:
    return f"src{source}"


def write_source(path: Path, seed: int, source: int, target_bytes: int) -> SourceFile:
    """Write lines of one source until the file reaches `target_bytes`; temp name, then rename."""
    tmp = path.with_name(path.name + ".tmp")
    written = 0
    records = 0
    with tmp.open("wb") as out:
        for lines in source_lines(seed, source):
            sizes = np.cumsum(np.fromiter(map(len, lines), dtype=np.int64, count=len(lines)))
            keep = int(np.searchsorted(sizes, target_bytes - written, side="left")) + 1
            keep = min(keep, len(lines))
            out.write(b"".join(lines[:keep]))
            written += int(sizes[keep - 1])
            records += keep
            if written >= target_bytes:
                break
    os.replace(tmp, path)
    return SourceFile(path=path.name, bytes=written, records=records)


def generate(out_dir: str | Path, total_bytes: int, sources: int, seed: int, *, jobs: int = 1) -> Corpus:
    """Write `sources` JSONL files totalling about `total_bytes` into `out_dir`, plus corpus.json.

    `jobs` > 1 writes that many sources at once in worker processes; the bytes are the same.
    """
    if total_bytes < sources or sources < 1:
        msg = f"need at least 1 source and 1 byte per source, got total_bytes={total_bytes}, sources={sources}"
        raise ValueError(msg)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    share, remainder = divmod(total_bytes, sources)
    paths = [out / f"{source_name(i)}.jsonl" for i in range(sources)]
    targets = [share + (remainder if i == sources - 1 else 0) for i in range(sources)]
    if jobs > 1 and sources > 1:
        with ProcessPoolExecutor(max_workers=min(jobs, sources)) as pool:
            files = tuple(pool.map(write_source, paths, [seed] * sources, range(sources), targets))
    else:
        files = tuple(map(write_source, paths, [seed] * sources, range(sources), targets))
    corpus = Corpus(generator_version=GENERATOR_VERSION, seed=seed, total_bytes=total_bytes, sources=files)
    (out / CORPUS_MANIFEST).write_text(json.dumps(asdict(corpus), indent=2) + "\n")
    return corpus


def load_corpus(out_dir: str | Path) -> Corpus | None:
    """The corpus described by out_dir/corpus.json, or None when it is missing or its files changed."""
    folder = Path(out_dir)
    manifest = folder / CORPUS_MANIFEST
    if not manifest.exists():
        return None
    raw = json.loads(manifest.read_text())
    corpus = Corpus(
        generator_version=raw["generator_version"], seed=raw["seed"], total_bytes=raw["total_bytes"],
        sources=tuple(SourceFile(**s) for s in raw["sources"]),
    )
    for source in corpus.sources:
        path = folder / source.path
        if not path.exists() or path.stat().st_size != source.bytes:
            return None
    return corpus


def ensure_corpus(out_dir: str | Path, total_bytes: int, sources: int, seed: int, *, jobs: int = 1) -> Corpus:
    """Reuse the corpus in out_dir when it was generated with these parameters; else generate it."""
    existing = load_corpus(out_dir)
    if (existing is not None and existing.generator_version == GENERATOR_VERSION and existing.seed == seed
            and existing.total_bytes == total_bytes and len(existing.sources) == sources):
        return existing
    return generate(out_dir, total_bytes, sources, seed, jobs=jobs)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", default="100MB", help="total size of all sources, e.g. 1.5GB, 200MiB (default 100MB)")
    parser.add_argument("--sources", type=int, default=3, help="number of JSONL files (default 3)")
    parser.add_argument("--out", required=True, type=Path, help="output folder")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1),
                        help="sources written at once, in processes (default 2); output bytes do not depend on it")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    corpus = generate(args.out, parse_size(args.size), args.sources, args.seed, jobs=args.jobs)
    seconds = time.perf_counter() - start
    for source in corpus.sources:
        print(f"{args.out / source.path}: {source.records:,} records, {format_bytes(source.bytes)}")
    print(f"{corpus.records:,} records, {format_bytes(corpus.bytes)} in {seconds:.1f} s "
          f"({corpus.bytes / 1e6 / seconds:.0f} MB/s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
