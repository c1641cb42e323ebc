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
    "c4": {"c4": True},
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


def datatrove_results(args: argparse.Namespace, name: str, run: Callable[[str], tuple[bool, str]],
                      texts: list[str]) -> tuple[list[tuple[bool, str]], bool]:
    """datatrove's (kept, reason) per text, and whether they came from the cache (--cache:
    stored beside the corpus by filter name)."""
    cache = args.corpus.with_name(f"{args.corpus.stem}.datatrove.{name.replace(' ', '_')}.json")
    if args.cache and cache.exists() and cache.stat().st_mtime >= args.corpus.stat().st_mtime:
        return [tuple(result) for result in json.loads(cache.read_text())], True
    results = [run(t) for t in texts]
    if args.cache:
        cache.write_text(json.dumps(results))
    return results, False


def agreement(ours: np.ndarray, theirs: np.ndarray) -> dict[str, float]:
    return {"documents": len(ours), "agreement": float(np.mean(ours == theirs)) if len(ours) else 1.0,
            "mixprep_only_drops": int(np.sum(~ours & theirs)), "datatrove_only_drops": int(np.sum(ours & ~theirs))}


# -- fixtures: datatrove's own values on the tricky cases, stored for tests that run without it --

PROSE = (
    "The committee met on Tuesday to discuss the new budget for the library. After a long debate, the members "
    "agreed to extend the opening hours and to buy more books for the children's section. Several residents had "
    "written letters asking for a quiet reading room, and the chair promised that the proposal would be studied "
    "with care before the next meeting in the spring."
)
LINES = [
    "The river rose all night, and by morning the lower fields were under water.",
    "Farmers moved their animals to the hill before the road was closed.",
    "The school opened its hall to the families who had to leave their homes.",
    "Volunteers brought blankets, bread and hot tea to the people waiting there.",
    "By the evening the rain had stopped and the water began to fall again.",
    "Nobody was hurt, though the old mill by the bridge lost part of its wall.",
]
FIXTURE_TEXTS = [
    # words: contractions, marks, abbreviations, infixes, special cases
    'Mr. Smith can\'t go -- he said "no..." (really).',
    "well-known 1995-2011 and/or e.g. U.S.A. cannot",
    "Dots....and more: yes, no; 100% #tag",
    "I'm sure you'll see they've gone, haven't they? We'd've... O'Neill's",
    "\u201cCurly quotes\u201d and \u2018single\u2019 ones \u2014 dashes \u2013 too\u2026 done",
    "Gonna gotta Cannot cannot can't won't don't Don't DON'T",
    "#hashtag ##double # alone #1 $5 \u00a310 50% (a) [b] {c} <d>",
    "URLs http://example.com/a-b?x=1 and me@example.org, x=y+z, 3*4^2, 10:30, a/b, A:B",
    "!!! ??? ... --- ((( ))) ...\u2026 \u2026\u2026",
    "caf\u00e9 na\u00efve \u00c6r\u00f8sk\u00f8bing \u6771\u4eac 123abc abc123 \u00bd Hi \U0001f642! Great \U0001f44d\U0001f3fd... ok",
    # whitespace and line ends
    "Unicode\u00a0no-break\u2003em\u3000ideographic\u2028line\u2029para\x85next",
    "tab\tseparated\x0bvertical\x0cform\x1cfile\x1dgroup\x1erecord\x1funit",
    "ends without newline",
    "trailing newline\n",
    "\nshort\n",
    "\r\nwindows\r\nlines\r\n",
    # bullets and ellipses
    "Bullets:\n\u2022 one\n- two\n* three\n  - four\n\n",
    "\n".join(f"- {line}" for line in LINES),
    "\n".join(f"{line[:-1]}..." for line in LINES[:3]) + "\n" + "\n".join(LINES[3:]),
    "\n".join(f"{line[:-1]} \u2026" for line in LINES[:2]) + "\n" + "\n".join(LINES[2:]) + "\n\n\n\n",
    # Gopher quality near its limits
    PROSE,
    PROSE.upper(),
    PROSE.replace("the ", "The "),
    " ".join(PROSE.split()[:49]),
    " ".join(["Yes, said he; no, said she, and so on, and on, and on -- the end."] * 8),
    PROSE + " #a #b #c #d #e #f #g #h",
    # Gopher repetition
    "\n".join(LINES),
    "\n".join(LINES + LINES[:2]),
    "\n\n".join([PROSE, PROSE, "The end of the story came later, when the rain had stopped."]),
    "\n\n".join([LINES[0], LINES[1], LINES[0]]),
    PROSE + " " + PROSE,
    " ".join(PROSE.split()[:20] * 2 + PROSE.split()[20:]),
    "abcdefgh ijklmnop",
    # C4 line rules
    "\n".join(LINES[:4] + ["Short line.", "no terminal punctuation here", "Ends with dots and more..."]),
    "\n".join(LINES[:5] + ["Please enable JavaScript to view this page."]),
    "\n".join(LINES[:5] + ["Read our privacy policy and terms of use."]),
    "\n".join(LINES[:5] + ["Lorem ipsum dolor sit amet, consectetur."]),
    "\n".join(LINES[:5] + ["Lorem ipsum."]),
    "\n".join(LINES[:5] + ["The code uses {braces} here."]),
    "\n".join(LINES[:5] + ["The code uses {braces} here"]),
    "\n".join(line[:-1] + "[1]." for line in LINES[:3]) + "\n" + LINES[3] + "[edit]\n" + LINES[4] + " [citation needed]",
    "\n".join(LINES[:4] + ["x" * 1001 + " is a very long word."]),
    "Wait... what? He said \"Go.\" Then he left! Really? Yes. No.",
    'One two three. Four five six. "Seven eight nine."  "Ten."\nA b c! D e f? G h i.',
    "\n".join(LINES[:4]),
    "  \n".join(LINES) + "  ",
]


def write_exceptions(path: Path) -> None:
    """spaCy's English tokenizer exceptions (`nlp.tokenizer.rules`: "don't" -> do + n't, "Mr.",
    ":)" ...) as {string: [token lengths]}, for mixprep/filters/english.py. Whitespace-free only."""
    import spacy

    rules = spacy.blank("en").tokenizer.rules
    from spacy.attrs import ORTH

    table = {text: [len(token.get("ORTH", token.get(ORTH))) for token in tokens] for text, tokens in sorted(rules.items())
             if not any(c.isspace() for c in text)}
    assert all(sum(lengths) == len(text) for text, lengths in table.items())
    entries = ",\n".join(f"{json.dumps(text, ensure_ascii=False)}: {json.dumps(lengths)}" for text, lengths in table.items())
    path.write_text(f'{{"spacy": {json.dumps(spacy.__version__)}, "exceptions": {{\n{entries}\n}}}}\n', encoding="utf-8")


def write_fixtures(path: Path) -> None:
    """datatrove's words, verdicts and C4 output for FIXTURE_TEXTS, as JSON (tests/data)."""
    from datatrove.data import Document
    from datatrove.pipeline.filters import C4QualityFilter, GopherQualityFilter, GopherRepetitionFilter
    from datatrove.utils.text import split_into_words

    quality, repetition, c4 = GopherQualityFilter(), GopherRepetitionFilter(), C4QualityFilter()
    cases = []
    for text in FIXTURE_TEXTS:
        case: dict[str, Any] = {"text": text, "words": split_into_words(text)}
        for name, filter_ in (("gopher_quality", quality), ("gopher_repetition", repetition), ("c4", c4)):
            document = Document(text=text, id="0")
            result = filter_.filter(document)
            case[name] = [True, ""] if result is True else [False, result[1]]
            if name == "c4" and result is True:
                case["c4_text"] = document.text
        cases.append(case)
    path.write_text(json.dumps({"datatrove": "0.10.1", "cases": cases}, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", type=Path, default=Path("bench_parity/corpus.jsonl"))
    parser.add_argument("--max-docs", type=int, default=30_000)
    parser.add_argument("--show", type=int, default=5, help="disagreements printed per filter")
    parser.add_argument("--cache", action="store_true",
                        help="keep datatrove's verdicts beside the corpus and reuse them (they take minutes)")
    parser.add_argument("--write-fixtures", type=Path, metavar="JSON",
                        help="write datatrove's values on the tricky cases (tests/data/datatrove_fixtures.json) and stop")
    parser.add_argument("--write-exceptions", type=Path, metavar="JSON",
                        help="write spaCy's English tokenizer exceptions (mixprep/filters/spacy_en_exceptions.json) and stop")
    args = parser.parse_args()
    if args.write_exceptions:
        write_exceptions(args.write_exceptions)
        print(f"wrote {args.write_exceptions}")
        return
    try:
        filters = datatrove_filters()
    except ImportError as exc:
        msg = f"needs datatrove and spacy in this environment ({exc}): pip install datatrove spacy nltk"
        raise SystemExit(msg) from None
    if args.write_fixtures:
        write_fixtures(args.write_fixtures)
        print(f"wrote {len(FIXTURE_TEXTS)} cases to {args.write_fixtures}")
        return
    if not args.corpus.exists():
        args.corpus.parent.mkdir(parents=True, exist_ok=True)
        print(f"wrote {write_corpus(args.corpus, SHARED_DATA, args.max_docs):,} documents to {args.corpus}")
    ids, texts = read_corpus(args.corpus)
    megabytes = sum(len(t.encode()) for t in texts) / 1e6
    print(f"{len(texts):,} documents, {megabytes:.1f} MB")
    whole = {key: value for chain in MIXPREP_CHAINS.values() for key, value in chain.items()} | {"languages": ["en"]}
    # Compiling or loading the kernels stays outside the timing. On a cold cache the first 50
    # texts left kernels to compile inside it (4.4 MB per CPU-s, then 40.3 warm): language id's
    # full automaton (non-ASCII or all-uppercase prefixes) is a second compiled specialization,
    # and in the whole chain the earlier filters removed such texts before language id saw them.
    rare = [t for t in texts if not t.isascii()][:20] + [t for t in texts if t.isupper()][:5]
    mixprep_verdicts(texts[:50] + texts[::100] + rare, whole)
    mixprep_verdicts(rare, {"languages": ["en"]})
    started = time.process_time()
    mixprep_verdicts(texts, whole)
    print(f"mixprep's whole chain (Gopher quality + repetition + c4 + languages [en]): "
          f"{megabytes / (time.process_time() - started):.1f} MB per CPU-second")
    for name, chain in MIXPREP_CHAINS.items():
        started = time.perf_counter()
        ours, our_reasons = mixprep_verdicts(texts, chain)
        ours_seconds = time.perf_counter() - started
        started = time.perf_counter()
        results, cached = datatrove_results(args, name, filters[name], texts)
        theirs_seconds = time.perf_counter() - started
        theirs = np.array([kept for kept, _ in results], dtype=bool)
        found = agreement(ours, theirs)
        print(f"\n{name}: agreement {found['agreement']:.4f} on {found['documents']:,} documents; dropped by mixprep only "
              f"{found['mixprep_only_drops']:,}, by datatrove only {found['datatrove_only_drops']:,}; "
              f"mixprep {megabytes / ours_seconds:.1f} MB/s, datatrove "
              f"{'(cached verdicts)' if cached else f'{megabytes / theirs_seconds:.1f} MB/s'}")
        for i in np.flatnonzero(ours != theirs)[: args.show].tolist():
            print(f"  {ids[i]}: mixprep {'keeps' if ours[i] else 'drops (' + our_reasons[i] + ')'}, datatrove "
                  f"{'keeps' if theirs[i] else 'drops (' + results[i][1] + ')'}: {texts[i][:100]!r}")

if __name__ == "__main__":
    main()
