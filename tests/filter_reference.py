"""The filter definitions written out in plain Python: the oracle for mixprep/filters/{english,gopher,c4}.py.

Words follow spaCy's English tokenizer rules as regular expressions over each whitespace
chunk (the compiled splitter implements the same rules as a state machine); the Gopher
and C4 statistics are datatrove 0.10.1's code, restated over these words. Slow and
obviously right; tests/test_gopher.py checks the kernels against it on random text, and
against datatrove's own values (tests/data/datatrove_fixtures.json) on the tricky cases.
"""
from __future__ import annotations

import json
import re
import unicodedata
from collections import Counter

import numpy as np

from mixprep.filters.english_tables import DATATROVE_PUNCTUATION, EXCEPTIONS_FILE, PREFIX_MARKS, SENTENCE_ENDS, SUFFIX_MARKS

PREFIX_CHARS = set(PREFIX_MARKS)  # spaCy's own sets, as data
SUFFIX_CHARS = set(SUFFIX_MARKS)
POSSESSIVE = re.compile(r".['’][sS]")
EXCEPTIONS = json.loads(EXCEPTIONS_FILE.read_text(encoding="utf-8"))["exceptions"]  # spaCy's own table
URL = re.compile(r"(?:[\w+\-.]{2,}://)?(?:\S+@)?(?:[A-Za-z0-9\u00a1-\uffff](?:[A-Za-z0-9\u00a1-\uffff_-]*[A-Za-z0-9\u00a1-\uffff])?\.)+"
                 r"[a-z\u00df-\U0010ffff]{2,}(?::\d{2,5})?(?:[/?#]\S*)?")
INFIX = re.compile(r"(\.{2,}|…|(?<=[0-9])[+\-*^](?=[0-9-])|(?<=[A-Za-z0-9])(?:---|--|-|–|—|~)(?=[A-Za-z])"
                   r"|(?<=[A-Za-z0-9])[:<>=/](?=[A-Za-z])|(?<=[A-Za-z]),(?=[A-Za-z]))")
RUN = re.compile(r"\.{2,}|…")
ACRONYM = re.compile(r"(?:[A-Za-z]\.){2,}|[a-z]\.")
STOP_WORDS = ("the", "be", "to", "of", "and", "that", "have", "with")
PUNCTUATION = set(DATATROVE_PUNCTUATION)


def chunk_words(chunk: str) -> list[str]:
    """spaCy-like words of one whitespace-free chunk."""
    prefixes, suffixes = [], []
    while chunk and chunk not in EXCEPTIONS and not ACRONYM.fullmatch(chunk) and not RUN.fullmatch(chunk):
        run = RUN.match(chunk)
        if run and run.end() < len(chunk):
            prefixes.append(run.group())
            chunk = chunk[run.end():]
        elif len(chunk) > 1 and (chunk[0] in PREFIX_CHARS or unicodedata.category(chunk[0]) == "So"):
            prefixes.append(chunk[0])
            chunk = chunk[1:]
        elif (run := re.search(r"(\.{2,}|…)$", chunk)) and run.start() > 0:
            suffixes.append(run.group())
            chunk = chunk[: run.start()]
        elif len(chunk) > 1 and (chunk[-1] in SUFFIX_CHARS or unicodedata.category(chunk[-1]) == "So") and not _initial(chunk):
            suffixes.append(chunk[-1])
            chunk = chunk[:-1]
        elif POSSESSIVE.search(chunk) and chunk[-1] in "sS" and len(chunk) > 2 and chunk[-2] in "'’":
            suffixes.append(chunk[-2:])
            chunk = chunk[:-2]
        else:
            break
    if chunk in EXCEPTIONS:
        middle, at = [], 0
        for length in EXCEPTIONS[chunk]:
            middle.append(chunk[at : at + length])
            at += length
    elif chunk and URL.fullmatch(chunk) and not _has_uppercase_tld(chunk):
        middle = [chunk]
    else:
        middle = [p for p in INFIX.split(chunk) if p]
    return prefixes + middle + suffixes[::-1]


def _has_uppercase_tld(chunk: str) -> bool:
    host = re.split(r"[:/?#]", chunk.split("://")[-1].split("@")[-1])[0]
    return any(c.isupper() or not c.isalpha() for c in host.rsplit(".", 1)[-1])


def _initial(chunk: str) -> bool:
    """Ends with one capital letter and a dot ("I.", "J."): spaCy keeps that dot."""
    return chunk.endswith(".") and chunk[-2].isupper() and (len(chunk) == 2 or not chunk[-3].isupper())


def merge_special_spans(words: list[str]) -> list[str]:
    """spaCy's special-case matcher: 2-3 adjacent words of a chunk that spell an exception become its words."""
    out: list[str] = []
    k = 0
    while k < len(words):
        for width in (3, 2):
            joined = "".join(words[k : k + width])
            if k + width <= len(words) and joined in EXCEPTIONS:
                at = 0
                for length in EXCEPTIONS[joined]:
                    out.append(joined[at : at + length])
                    at += length
                k += width
                break
        else:
            out.append(words[k])
            k += 1
    return out


def reference_words(text: str) -> list[str]:
    return [word for chunk in text.split() for word in merge_special_spans(chunk_words(chunk))]


# -- Gopher quality (datatrove's GopherQualityFilter, its counts) ------------------------

def quality_counts(text: str) -> list[int]:
    """In QUALITY_FIELDS order."""
    words = reference_words(text)
    counted = [w for w in words if any(ch not in PUNCTUATION for ch in w)]
    lines = text.splitlines()
    return [
        len(counted),
        sum(map(len, counted)),
        len(words),
        text.count("#"),
        text.count("...") + text.count("…"),
        len(lines),
        sum(s.lstrip().startswith(("•", "-")) for s in lines),
        sum(s.rstrip().endswith(("...", "…")) for s in lines),
        sum(bool(s.rstrip()) and s.rstrip()[-1] in ".!?\"'”’…" for s in lines),
        sum(any(c.isalpha() for c in w) for w in words),
        len(set(STOP_WORDS) & set(words)),
    ]


# -- Gopher repetition (datatrove's GopherRepetitionFilter, its fractions) ------------------

def _duplicates(pieces: list[str]) -> tuple[int, int]:
    seen: set[str] = set()
    count = chars = 0
    for piece in pieces:
        if piece in seen:
            count += 1
            chars += len(piece)
        seen.add(piece)
    return count, chars


def repetition(text: str) -> list[float]:
    """In REPETITION_FIELDS order; n-grams compared as word tuples."""
    if not text:
        return [1.0] + [0.0] * 12
    paragraphs = re.split(r"\n{2,}", text.strip())
    lines = re.split("\n+", text)
    values: list[float] = []
    for pieces in (paragraphs, lines):
        count, chars = _duplicates(pieces)
        values += [count / len(pieces), chars / len(text)]
    words = reference_words(text)
    for n in (2, 3, 4):
        grams = [tuple(words[i : i + n]) for i in range(len(words) - n + 1)]
        if not grams:
            values.append(0.0)
            continue
        gram, count = Counter(grams).most_common(1)[0]
        values.append(len(" ".join(gram)) * count / len(text))
    for n in range(5, 11):
        seen: set[tuple[str, ...]] = set()
        repeated, idx = 0, 0
        while idx < len(words) - n + 1:
            gram = tuple(words[idx : idx + n])
            if gram in seen:
                repeated += len("".join(gram))
                idx += n
            else:
                seen.add(gram)
                idx += 1
        values.append(repeated / len(text))
    return values


# -- C4 (datatrove's C4QualityFilter) --------------------------------------------------------

CITATION = re.compile(r"\[\d*]|\[edit]|\[citation needed]")
POLICY = ("terms of use", "privacy policy", "cookie policy", "uses cookies", "use of cookies", "use cookies")


def spacy_tokens(text: str) -> list[str]:
    """spaCy's tokens with whitespace kept: a run of whitespace after a word is a token
    unless it is one space (which spaCy attaches to the word); at the start it always is."""
    tokens: list[str] = []
    for piece in re.split(r"(\s+)", text):
        if not piece:
            continue
        if piece.isspace():
            rest = piece[1:] if tokens and piece[0] == " " else piece
            if rest:
                tokens.append(rest)
        else:
            tokens += merge_special_spans(chunk_words(piece))
    return tokens


def sentences(text: str) -> int:
    """spaCy's sentencizer over `spacy_tokens`: a sentence starts at the first token that is
    neither punctuation nor a sentence end after a sentence end."""
    tokens = spacy_tokens(text)
    count = 1 if tokens else 0
    seen_end = False
    for token in tokens:
        is_punct = all(_category_p(c) for c in token)
        is_end = token in SENTENCE_ENDS and len(token) == 1
        if seen_end and not is_punct and not is_end:
            count += 1
            seen_end = False
        elif is_end:
            seen_end = True
    return count


def _category_p(c: str) -> bool:
    return unicodedata.category(c).startswith("P")


def c4(text: str) -> tuple[str, str, Counter]:
    """(reason or "", cleaned text, line counts by rule)."""
    counts: Counter = Counter()
    kept: list[str] = []
    total = 0
    for line in text.splitlines():
        counts["lines"] += 1
        line = line.strip()
        words = line.split()
        if any(len(w) > 1000 for w in words):
            counts["too_long_word"] += 1
            continue
        line = CITATION.sub("", line)
        if not line.endswith((".", "?", "!", '"', "'")) or line.endswith("..."):
            counts["no_terminal_punctuation"] += 1
            continue
        if len(words) < 3:
            counts["too_few_words"] += 1
            continue
        lower = re.sub("[A-Z]+", lambda m: m.group().lower(), line)  # ASCII case only, as the kernel
        if "lorem ipsum" in lower:
            return "lorem_ipsum", "", counts
        if "javascript" in lower:
            counts["javascript"] += 1
            continue
        if "{" in line:
            return "curly_bracket", "", counts
        if any(p in lower for p in POLICY):
            counts["policy"] += 1
            continue
        total += sentences(line)
        kept.append(line)
        counts["kept_lines"] += 1
    if total < 5:
        return "too_few_sentences", "", counts
    return "", "\n".join(kept).strip(), counts


def c4_rows(texts: list[str]) -> tuple[list[str], list[str], np.ndarray]:
    from mixprep.filters.c4 import LINE_FIELDS

    results = [c4(t) for t in texts]
    counts = np.array([[r[2].get(name, 0) for name in LINE_FIELDS] for r in results], dtype=np.int64).reshape(len(texts), -1)
    return [r[0] for r in results], [r[1] for r in results], counts
