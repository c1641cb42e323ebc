"""Keep/drop agreement of mixprep's Gopher and C4 filters with Hugging Face datatrove's
(`GopherQualityFilter`, `GopherRepetitionFilter`, `C4QualityFilter`, default parameters),
on real text: what issue 17 measures. Installs nothing: datatrove (with spaCy, which its
English word splitting and sentence counting use) must already be in the environment,

    pip install datatrove spacy nltk        # spacy.blank("en") needs no model download
    python benchmarks/bench_parity.py [--corpus corpus.jsonl] [--show 5] [--max-docs 30000]

The corpus (written to --corpus when it does not exist): every record of ../shared/data's
pretrain files (Austen chapters, fortunes, KJV chapters), the text of its SFT, DPO and RL
records (message contents joined), and the documents a Debian system ships: licenses
(/usr/share/common-licenses), package copyright files, changelogs and README/NEWS files
under /usr/share/doc (decompressed), and man pages rendered to text when `man` is
installed. Prints, per filter: documents, agreement, mixprep-only drops, datatrove-only
drops, and the first --show disagreements with both sides' reasons; and each side's
documents per second.
"""
from __future__ import annotations

import argparse
import gzip
import json
import re
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
MAX_DOCUMENT_BYTES = 200_000
MIXPREP_CHAINS: dict[str, dict[str, Any]] = {
    "gopher quality": {"quality": "gopher"},
    "gopher repetition": {"repetition": "gopher"},
    # mixprep has no `c4` preset yet: its C4 flags, as a user would combine them.
    "c4": {"drop_lorem_ipsum": True, "drop_curly_brace": True, "drop_javascript_notice": True},
}


# -- the corpus ------------------------------------------------------------------------------

def record_text(record: dict[str, Any]) -> str | None:
    """A record's text: `text`, or its messages' contents (SFT, DPO, RL) joined by newlines."""
    if isinstance(record.get("text"), str):
        return record["text"]
    parts: list[str] = []
    for key in ("conversations", "prompt", "chosen", "messages"):
        value = record.get(key)
        if isinstance(value, str):
            parts.append(value)
        elif isinstance(value, list):
            parts += [m["content"] for m in value if isinstance(m, dict) and isinstance(m.get("content"), str)]
    return "\n".join(parts) if parts else None


def shared_documents(folder: Path) -> Iterator[tuple[str, str]]:
    for path in sorted(folder.glob("*.jsonl")):
        with open(path, encoding="utf-8") as handle:
            for number, line in enumerate(handle, start=1):
                text = record_text(json.loads(line))
                if text:
                    yield f"{path.name}:{number}", text


def debian_documents(roots: tuple[Path, ...] = (Path("/usr/share/common-licenses"), Path("/usr/share/doc"))) -> Iterator[tuple[str, str]]:
    """Licenses, copyright files, changelogs, READMEs and NEWS as the system ships them."""
    for root in roots:
        if not root.is_dir():
            continue
        for path in sorted(root.rglob("*")):
            name = path.name.lower()
            wanted = root.name == "common-licenses" or name == "copyright" or name.startswith(("changelog", "readme", "news"))
            if not wanted or not path.is_file() or path.is_symlink():
                continue
            text = read_text(path)
            if text and text.strip():
                yield str(path), text[:MAX_DOCUMENT_BYTES]


def man_documents(limit: int = 400) -> Iterator[tuple[str, str]]:
    """Man pages rendered to plain text (`man -P cat`), when man is installed."""
    folder = Path("/usr/share/man/man1")
    if not folder.is_dir():
        return
    for path in sorted(folder.glob("*.gz"))[:limit]:
        try:
            rendered = subprocess.run(["man", "-P", "cat", str(path)], capture_output=True, text=True, timeout=10,
                                      env={"MANWIDTH": "80", "PATH": "/usr/bin:/bin"})
        except (OSError, subprocess.TimeoutExpired):
            return
        if rendered.returncode == 0 and rendered.stdout.strip():
            yield str(path), rendered.stdout[:MAX_DOCUMENT_BYTES]


def read_text(path: Path) -> str | None:
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError, gzip.BadGzipFile):
        return None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return None


def write_corpus(path: Path, shared: Path, max_docs: int) -> int:
    documents = 0
    with open(path, "w", encoding="utf-8") as out:
        for source in (shared_documents(shared), debian_documents(), man_documents()):
            for where, text in source:
                out.write(json.dumps({"id": where, "text": text}, ensure_ascii=False) + "\n")
                documents += 1
                if documents >= max_docs:
                    return documents
    return documents


def read_corpus(path: Path) -> tuple[list[str], list[str]]:
    ids, texts = [], []
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            record = json.loads(line)
            ids.append(record["id"])
            texts.append(record["text"])
    return ids, texts


# -- verdicts ---------------------------------------------------------------------------------

def mixprep_verdicts(texts: list[str], chain_config: dict[str, Any], batch: int = 4096) -> tuple[np.ndarray, list[str]]:
    """Per text: kept, and the name of the first filter that removed it ('' when kept)."""
    from mixprep.filters.engine import removal_reasons
    from mixprep.filters.rules import parse_filters

    chain, problems = parse_filters(chain_config, "bench")
    assert not problems, problems
    names = [name for name, _ in chain]
    reasons = np.concatenate([removal_reasons(pl.Series(texts[i : i + batch], dtype=pl.String), chain)
                              for i in range(0, len(texts), batch)]) if texts else np.zeros(0, dtype=np.int64)
    return reasons == 0, ["" if r == 0 else names[r - 1] for r in reasons.tolist()]


def datatrove_filters() -> dict[str, Callable[[str], tuple[bool, str]]]:
    """Filter name -> function(text) -> (kept, datatrove's reason)."""
    from datatrove.data import Document
    from datatrove.pipeline.filters import C4QualityFilter, GopherQualityFilter, GopherRepetitionFilter

    def verdict(filter_: Any) -> Callable[[str], tuple[bool, str]]:
        def run(text: str) -> tuple[bool, str]:
            result = filter_.filter(Document(text=text, id="0"))
            return (True, "") if result is True else (False, result[1] if isinstance(result, tuple) else "removed")
        return run

    return {"gopher quality": verdict(GopherQualityFilter()), "gopher repetition": verdict(GopherRepetitionFilter()),
            "c4": verdict(C4QualityFilter())}


def agreement(ours: np.ndarray, theirs: np.ndarray) -> dict[str, float]:
    return {"documents": len(ours), "agreement": float(np.mean(ours == theirs)) if len(ours) else 1.0,
            "mixprep_only_drops": int(np.sum(~ours & theirs)), "datatrove_only_drops": int(np.sum(ours & ~theirs))}


# -- a rule set for spaCy's English words (what a compiled splitter should implement) ----------
# datatrove's English words are `spacy.blank("en")` tokens, whitespace dropped. These rules,
# written out (no spaCy), give the same Gopher quality verdicts on 0.996 of this corpus with
# datatrove's own definitions (`--prototype` measures it): the reference for issue 17's kernels.

PREFIX_CHARS = set('"\'([{<«“‘„‚`$£€¥#§*•–—¿¡')
SUFFIX_CHARS = set('"\')]}>»”’.,;:!?%*…')
CONTRACTIONS = ("n't", "'s", "'re", "'ve", "'ll", "'d", "'m", "n’t", "’s", "’re", "’ve", "’ll", "’d", "’m")
ABBREVIATIONS = frozenset(
    "Mr. Mrs. Ms. Dr. St. Jr. Sr. Ltd. Inc. Co. Corp. vs. etc. e.g. i.e. Prof. Mt. No. Jan. Feb. Mar. Apr. Jun. Jul. Aug. "
    "Sep. Sept. Oct. Nov. Dec. a.m. p.m. U.S. Gen. Gov. Rev.".split()
)
SPECIAL_CASES = {"and/or": ["and/or"], "cannot": ["can", "not"], "Cannot": ["Can", "not"], "gonna": ["gon", "na"], "gotta": ["got", "ta"]}
INFIX = re.compile(r"(\.{2,}|…|(?<=[0-9])[+\-*^](?=[0-9-])|(?<=[A-Za-z])(?:---|--|-|–|—|~)(?=[A-Za-z])"
                   r"|(?<=[A-Za-z0-9])[:<>=/](?=[A-Za-z])|(?<=[A-Za-z]),(?=[A-Za-z]))")
RUN = re.compile(r"\.{2,}|-{2,}|…")
ACRONYM = re.compile(r"(?:[A-Za-z]\.){2,}|[a-z]\.")
STOP_WORDS = frozenset(["the", "be", "to", "of", "and", "that", "have", "with"])


def reference_words(text: str) -> list[str]:
    """spaCy-like English words: each whitespace chunk loses prefix and suffix punctuation
    (one mark at a time; `...` and `--` whole), contraction suffixes (`n't`, `'s`, ...),
    then splits at infixes (hyphens and slashes between letters, ellipses), abbreviations
    and a few special cases kept or split as spaCy's exceptions do."""
    words: list[str] = []
    for chunk in text.split():
        prefixes, suffixes = [], []
        while chunk and not RUN.fullmatch(chunk):
            if len(chunk) > 1 and not any(c.isalnum() for c in chunk) and not RUN.match(chunk):
                prefixes.append(chunk[0])
                chunk = chunk[1:]
                continue
            if chunk in ABBREVIATIONS or chunk in SPECIAL_CASES or ACRONYM.fullmatch(chunk):
                break
            run = RUN.match(chunk)
            if run and run.end() < len(chunk):
                prefixes.append(run.group())
                chunk = chunk[run.end():]
            elif len(chunk) > 1 and chunk[0] in PREFIX_CHARS:
                prefixes.append(chunk[0])
                chunk = chunk[1:]
            elif (run := re.search(r"(\.{2,}|-{2,}|…)$", chunk)) and run.start() > 0:
                suffixes.append(run.group())
                chunk = chunk[: run.start()]
            elif len(chunk) > 1 and chunk[-1] in SUFFIX_CHARS:
                suffixes.append(chunk[-1])
                chunk = chunk[:-1]
            elif found := next((c for c in CONTRACTIONS if chunk.lower().endswith(c) and len(chunk) > len(c)), None):
                suffixes.append(chunk[-len(found):])
                chunk = chunk[: -len(found)]
            else:
                break
        words += prefixes
        words += SPECIAL_CASES.get(chunk) or [p for p in INFIX.split(chunk) if p]
        words += suffixes[::-1]
    return words


def gopher_quality_keeps(words: list[str], text: str, punctuation: set[str]) -> bool:
    """datatrove's GopherQualityFilter (default thresholds) over the given words."""
    if not words:
        return False
    non_symbol = [w for w in words if any(ch not in punctuation for ch in w)]
    if not 50 <= len(non_symbol) <= 100_000 or not 3 <= float(np.mean([len(w) for w in non_symbol])) <= 10:
        return False
    lines = text.splitlines()
    return (
        text.count("#") / len(words) <= 0.1
        and (text.count("...") + text.count("…")) / len(words) <= 0.1
        and sum(s.lstrip().startswith(("•", "-")) for s in lines) / len(lines) <= 0.9
        and sum(s.rstrip().endswith(("...", "…")) for s in lines) / len(lines) <= 0.3
        and sum(any(c.isalpha() for c in w) for w in words) / len(words) >= 0.8
        and len(STOP_WORDS & set(words)) >= 2
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", type=Path, default=Path("bench_parity/corpus.jsonl"))
    parser.add_argument("--max-docs", type=int, default=30_000)
    parser.add_argument("--show", type=int, default=5, help="disagreements printed per filter")
    parser.add_argument("--prototype", action="store_true",
                        help="also: Gopher quality verdicts from `reference_words` with datatrove's definitions, vs datatrove")
    args = parser.parse_args()
    try:
        filters = datatrove_filters()
    except ImportError as exc:
        msg = f"needs datatrove and spacy in this environment ({exc}): pip install datatrove spacy nltk"
        raise SystemExit(msg) from None
    if not args.corpus.exists():
        args.corpus.parent.mkdir(parents=True, exist_ok=True)
        print(f"wrote {write_corpus(args.corpus, SHARED_DATA, args.max_docs):,} documents to {args.corpus}")
    ids, texts = read_corpus(args.corpus)
    megabytes = sum(len(t.encode()) for t in texts) / 1e6
    print(f"{len(texts):,} documents, {megabytes:.1f} MB")
    for name, chain in MIXPREP_CHAINS.items():
        started = time.perf_counter()
        ours, our_reasons = mixprep_verdicts(texts, chain)
        ours_seconds = time.perf_counter() - started
        started = time.perf_counter()
        results = [filters[name](t) for t in texts]
        theirs_seconds = time.perf_counter() - started
        theirs = np.array([kept for kept, _ in results], dtype=bool)
        found = agreement(ours, theirs)
        print(f"\n{name}: agreement {found['agreement']:.4f} on {found['documents']:,} documents; dropped by mixprep only "
              f"{found['mixprep_only_drops']:,}, by datatrove only {found['datatrove_only_drops']:,}; "
              f"mixprep {megabytes / ours_seconds:.1f} MB/s, datatrove {megabytes / theirs_seconds:.1f} MB/s")
        for i in np.flatnonzero(ours != theirs)[: args.show].tolist():
            print(f"  {ids[i]}: mixprep {'keeps' if ours[i] else 'drops (' + our_reasons[i] + ')'}, datatrove "
                  f"{'keeps' if theirs[i] else 'drops (' + results[i][1] + ')'}: {texts[i][:100]!r}")
        if args.prototype and name == "gopher quality":
            from datatrove.utils.text import PUNCTUATION_SET

            rules = np.array([gopher_quality_keeps(reference_words(t), t, PUNCTUATION_SET) for t in texts])
            print(f"  reference_words + datatrove's definitions: agreement {float(np.mean(rules == theirs)):.4f}")


if __name__ == "__main__":
    main()
