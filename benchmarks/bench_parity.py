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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", type=Path, default=Path("bench_parity/corpus.jsonl"))
    parser.add_argument("--max-docs", type=int, default=30_000)
    parser.add_argument("--show", type=int, default=5, help="disagreements printed per filter")
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


if __name__ == "__main__":
    main()
