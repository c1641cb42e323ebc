"""What `language_prefix_bytes` buys: language-id accuracy and speed per prefix length.

    python benchmarks/bench_langid.py [--docs-per-language 60] [--prefixes 128,256,512,1024,0]

Real translated text in many languages, with its language known: the gettext catalogs
(`*/LC_MESSAGES/*.mo`) installed on the machine, whose directory names the language.
Each catalog's translations (format directives and accelerator marks removed, at least
20 bytes, not equal to their English source) are shuffled with a fixed seed and joined
into ~1.5 KB documents, at most `--docs-per-language` per language, for every language
that py3langid knows and that has 200+ messages (English is left out: its catalogs are
the untranslated source). ../shared/data is English prose and cannot show this.

Per prefix (0 = the whole text): accuracy against the catalog's language, agreement with
the whole-text label, and classification MB/s (of the documents' bytes, CPU time, one
thread). Skips cleanly when fewer than 10 languages are installed.
"""
from __future__ import annotations

import os

os.environ.setdefault("POLARS_MAX_THREADS", "1")

import argparse  # noqa: E402
import gettext  # noqa: E402
import glob  # noqa: E402
import random  # noqa: E402
import re  # noqa: E402
import time  # noqa: E402
from collections import defaultdict  # noqa: E402

import numpy as np  # noqa: E402
import polars as pl  # noqa: E402

from mixprep.filters import langid  # noqa: E402

CATALOGS = "/usr/share/**/LC_MESSAGES/*.mo"
DIRECTIVES = re.compile(r"%[-+ #0-9.]*[a-zA-Z]|\{[^}]*\}|&|_(?=\w)")
DOCUMENT_BYTES = 1500
MIN_MESSAGES = 200


def catalog_language(path: str) -> str:
    """/usr/share/locale/pt_BR/LC_MESSAGES/x.mo -> "pt"; vim's "pl.UTF-8" -> "pl"."""
    folder = path.split("/LC_MESSAGES/")[0].rsplit("/", 1)[-1]
    return folder.split(".")[0].split("@")[0].split("_")[0].lower()


def translations(paths: list[str], known: frozenset[str]) -> dict[str, list[str]]:
    by_language: dict[str, set[str]] = defaultdict(set)
    for path in paths:
        language = catalog_language(path)
        if language not in known or language == "en":
            continue
        try:
            with open(path, "rb") as file:
                catalog = gettext.GNUTranslations(file)._catalog
        except (OSError, ValueError, IndexError, UnicodeDecodeError):  # a malformed catalog header
            continue
        for source, translated in catalog.items():
            if not source or not isinstance(translated, str):
                continue
            text = DIRECTIVES.sub("", translated).strip()
            english = source[1] if isinstance(source, tuple) else source
            if len(text.encode()) >= 20 and text != english:
                by_language[language].add(text)
    return {language: sorted(texts) for language, texts in by_language.items() if len(texts) >= MIN_MESSAGES}


def documents(by_language: dict[str, list[str]], per_language: int, seed: int = 0) -> tuple[list[str], np.ndarray]:
    rng = random.Random(seed)
    texts: list[str] = []
    truth: list[str] = []
    for language, messages in sorted(by_language.items()):
        messages = list(messages)
        rng.shuffle(messages)
        current: list[str] = []
        size = made = 0
        for message in messages:
            current.append(message)
            size += len(message.encode()) + 1
            if size >= DOCUMENT_BYTES:
                texts.append(" ".join(current))
                truth.append(language)
                current, size, made = [], 0, made + 1
                if made == per_language:
                    break
    return texts, np.array(truth)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs-per-language", type=int, default=60)
    parser.add_argument("--prefixes", default="128,256,512,1024,0", help="bytes per text; 0 = the whole text")
    args = parser.parse_args()
    by_language = translations(sorted(glob.glob(CATALOGS, recursive=True)), langid.known_languages())
    if len(by_language) < 10:
        print(f"gettext catalogs: {len(by_language)} languages with {MIN_MESSAGES}+ messages under {CATALOGS}; need 10, skipped")
        return
    texts, truth = documents(by_language, args.docs_per_language)
    series = pl.Series("text", texts)
    megabytes = series.str.len_bytes().sum() / 1e6
    print(f"{len(texts):,} documents ({megabytes:.1f} MB, ~{DOCUMENT_BYTES} B each) in {len(by_language)} languages "
          f"from gettext catalogs: {', '.join(sorted(by_language))}")
    labels = np.array(langid.load_model().labels)
    langid.language_scores(series.slice(0, 8))  # load the model and the compiled kernels
    prefixes = [int(value) for value in args.prefixes.split(",")]
    results: dict[int, tuple[np.ndarray, float]] = {}
    for prefix in prefixes:
        limit = prefix or max(1, int(series.str.len_bytes().max()))
        start = time.process_time()
        best, _ = langid.language_scores(series, limit)
        results[prefix] = labels[best], time.process_time() - start
    whole = langid.language_scores(series, max(1, int(series.str.len_bytes().max())))[0]
    print(f"{'prefix bytes':>12s} {'accuracy':>9s} {'wrong':>6s} {'= whole text':>13s} {'MB/s':>7s}")
    for prefix, (got, seconds) in results.items():
        print(f"{prefix or 'whole':>12} {np.mean(got == truth):9.4f} {int(np.sum(got != truth)):6d} "
              f"{np.mean(got == labels[whole]):13.4f} {megabytes / seconds:7.1f}")


if __name__ == "__main__":
    main()
