"""Gopher and C4 as datatrove computes them: the compiled words, statistics and line cleaning
against datatrove's own values on the tricky cases (stored once, so no spaCy is needed) and
against the definitions written out in Python (filter_reference) on random text."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from filter_reference import c4_rows, quality_counts, reference_words, repetition
from hypothesis import given, settings
from hypothesis import strategies as st

from mixprep.filters import english_words
from mixprep.filters.c4 import DOCUMENT_REASONS, LINE_FIELDS, C4Spec, clean
from mixprep.filters.engine import removal_reasons
from mixprep.filters.gopher import quality_counts as kernel_quality_counts
from mixprep.filters.gopher import repetition as kernel_repetition
from mixprep.filters.rules import parse_filters
from mixprep.filters.textstats import TextBatch

FIXTURES = json.loads((Path(__file__).parent / "data" / "datatrove_fixtures.json").read_text(encoding="utf-8"))
CASES = FIXTURES["cases"]
# datatrove's reason -> the mixprep filter a preset blames for it.
QUALITY_REASONS = {
    "gopher_short_doc": "min_words", "gopher_long_doc": "max_words", "gopher_below_avg_threshold": "min_mean_word_length",
    "gopher_above_avg_threshold": "max_mean_word_length", "gopher_too_many_hashes": "max_symbol_word_ratio",
    "gopher_too_many_ellipsis": "max_symbol_word_ratio", "gopher_too_many_bullets": "max_bullet_line_fraction",
    "gopher_too_many_end_ellipsis": "max_ellipsis_line_fraction", "gopher_below_alpha_threshold": "min_alpha_word_fraction",
    "gopher_enough_stop_words": "min_stop_words",
}
REPETITION_REASONS = {
    "empty": "max_duplicate_paragraph_fraction", "dup_para_frac": "max_duplicate_paragraph_fraction",
    "dup_para_char_frac": "max_duplicate_paragraph_char_fraction", "dup_line_frac": "max_duplicate_line_fraction",
    "dup_line_char_frac": "max_duplicate_line_char_fraction",
    **{f"top_{n}_gram": "max_top_ngram_fraction" for n in (2, 3, 4)},
    **{f"duplicated_{n}_n_grams": "max_duplicate_ngram_fraction" for n in range(5, 11)},
}


def blamed(texts: list[str], filters: dict) -> list[str]:
    """Per text: "" when kept, else the name of the filter blamed."""
    chain, problems = parse_filters(filters, "filters")
    assert problems == []
    return ["" if r == 0 else chain[r - 1][0] for r in removal_reasons(pl.Series(texts, dtype=pl.String), chain).tolist()]


# -- against datatrove's stored values -----------------------------------------------------

def test_fixtures_were_computed_by_the_datatrove_version_the_manifest_names() -> None:
    from mixprep.filters.fields import REFERENCE

    assert REFERENCE == f"datatrove {FIXTURES['datatrove']}"
    assert len(CASES) >= 40


@pytest.mark.parametrize("case", CASES, ids=[f"{i}" for i in range(len(CASES))])
def test_words_are_spacys(case: dict) -> None:
    assert english_words.words(case["text"]) == case["words"]


def test_gopher_quality_verdicts_and_reasons_are_datatroves() -> None:
    ours = blamed([c["text"] for c in CASES], {"quality": "gopher"})
    theirs = ["" if c["gopher_quality"][0] else QUALITY_REASONS[c["gopher_quality"][1]] for c in CASES]
    assert ours == theirs


def test_gopher_repetition_verdicts_and_reasons_are_datatroves() -> None:
    ours = blamed([c["text"] for c in CASES], {"repetition": "gopher"})
    theirs = ["" if c["gopher_repetition"][0] else REPETITION_REASONS[c["gopher_repetition"][1]] for c in CASES]
    assert ours == theirs


def test_c4_verdicts_reasons_and_cleaned_texts_are_datatroves() -> None:
    counts, texts = clean(pl.Series([c["text"] for c in CASES]), C4Spec())
    reasons = ["" if code == 0 else DOCUMENT_REASONS[code - 1] for code in counts[:, 0].tolist()]
    assert reasons == ["" if c["c4"][0] else c["c4"][1] for c in CASES]
    assert [t if r == "" else None for t, r in zip(texts.to_list(), reasons, strict=True)] == [c.get("c4_text") for c in CASES]
    assert blamed([c["text"] for c in CASES], {"c4": True}) == ["" if c["c4"][0] else "c4" for c in CASES]


# -- against the definitions written out -----------------------------------------------------

PIECES = [
    " ", "  ", "\n", "\n\n", "\r\n", "\r", "\t", "\u00a0", "\u2003", "\u2028", "\x0b", "\x1c", "\x85",
    "-", "--", "*", "•", "#", ".", "..", "...", "…", "!", "?", '"', "'", "’", "”", "“", "(", ")", "[1]", "[edit]", "{",
    ",", ";", ":", "/", "%", "$",
    "a", "b", "ab", "The", "the", "THE", "and", "that", "with", "be", "to", "of", "have", "cannot", "gonna", "and/or",
    "can't", "don't", "I'm", "it's", "we’ll", "Mr.", "e.g.", "U.S.", "x1", "1", "42", "4.5", "3-4", "a-b", "é", "ß",
    "漢字", "١٢", "e\u0301", "🙂", "javascript", "Lorem ipsum", "privacy policy",
]


def texts_strategy(max_size: int = 40) -> st.SearchStrategy[list[str]]:
    text = st.lists(st.sampled_from(PIECES), max_size=max_size).map("".join)
    return st.lists(text, min_size=1, max_size=10)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(PIECES), max_size=30).map("".join))
def test_words_match_the_rules_written_out(text: str) -> None:
    assert english_words.words(text) == reference_words(text)


def test_a_word_with_one_mark_splits_as_the_rules_say() -> None:
    """"word," and "word." take a shortcut in the splitter; spaCy's exceptions ("Mr.", "etc."),
    acronyms ("a.") and initials ("J.") of that shape must still come out whole."""
    exceptions = json.loads((Path(english_words.__file__).parent / "spacy_en_exceptions.json").read_text(encoding="utf-8"))["exceptions"]
    stems = {"word", "a", "J", "I", "Mr", "etc", "vs", "No", "3", "42", "x1", "A1"}
    stems |= {text[:-1] for text in exceptions if len(text) > 1 and text[:-1].isascii() and text[:-1].isalnum()}
    marks = [chr(b) for b in range(33, 127) if not chr(b).isalnum()]
    filler = " and some more plain words after it to fill the block"
    for stem in sorted(stems):
        for mark in marks:
            for text in (f"{stem}{mark}{filler}", f"{filler} {stem}{mark}{filler}"):
                assert english_words.words(text) == reference_words(text), text


@settings(max_examples=200, deadline=None)
@given(texts_strategy())
def test_quality_counts_match_the_definitions(texts: list[str]) -> None:
    np.testing.assert_array_equal(kernel_quality_counts(pl.Series(texts)), np.array([quality_counts(t) for t in texts]))


def block_edge_texts() -> list[str]:
    """Marks, line breaks and long words placed on every side of the kernels' 32-byte blocks."""
    marks = ["...", "..", ".", "....", "......", "…", "#", "##", "\n", "\n\n", "\r\n", "\u2028", "\x85", "é", "- ", "•"]
    words = ["w" * 31, "w" * 32, "w" * 33, "9" * 32, "#" * 33, "ab1", "!!", "the", "have", "théâtre", "naïve" * 7]
    texts = []
    for shift in range(0, 36):
        for mark in marks:
            # The mark at `shift`, again in later blocks, then three times in a row; then lines and
            # paragraphs that repeat, with characters of several bytes, so the repetition
            # kernel's character counts of duplicates are read.
            line = "é" * (shift % 5) + "naïve " * (shift % 4) + "z" * 40
            spread = (" " + "y" * 36 + mark) * 3  # the mark again in later blocks, at other offsets
            texts.append("x" * shift + mark + spread + " " + mark * 3 + " end." + mark + "\n" + line + "\n" + line + "\n\n" + line)
    texts += [" ".join(words[i:] + words[:i]) + "\n" + "-" * 40 for i in range(len(words))]
    return texts


def test_quality_and_repetition_across_block_edges_match_the_definitions() -> None:
    texts = block_edge_texts()
    np.testing.assert_array_equal(kernel_quality_counts(pl.Series(texts)), np.array([quality_counts(t) for t in texts]))
    np.testing.assert_allclose(kernel_repetition(pl.Series(texts)), np.array([repetition(t) for t in texts]))


def test_c4_phrases_and_brackets_across_block_edges_match_the_definitions() -> None:
    phrases = ["Lorem Ipsum", "javaScript", "terms of use", "PRIVACY policy", "cookie policy", "uses cookies", "use of cookies",
               "use cookies", "{", "[3]", "[edit]", "use of cookie", "privacy polic", "lorem ipsu"]
    texts = []
    for shift in range(0, 40):
        for phrase in phrases:
            line = f"{'x' * shift} {phrase} and so on with more words."
            texts.append("One two three four five.\n" * 5 + line + "\n" + f"Then {phrase} again, at the end of a line of words.")
    counts, cleaned = clean(pl.Series(texts), C4Spec())
    reasons, expected_texts, _ = c4_rows(texts)
    assert ["" if code == 0 else DOCUMENT_REASONS[code - 1] for code in counts[:, 0].tolist()] == reasons
    assert [t for t, r in zip(cleaned.to_list(), reasons, strict=True) if r == ""] == [
        t for t, r in zip(expected_texts, reasons, strict=True) if r == ""]


# Few distinct words, so n-grams up to 10 words repeat often.
REPETITIVE = st.lists(st.sampled_from(["a", "b", "cc", "é", "a.", "\n", "\n\n", " ", "  ", "\t", "don't"]), max_size=80).map(" ".join)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(REPETITIVE, st.lists(st.sampled_from(PIECES), max_size=40).map("".join)), min_size=1, max_size=6))
def test_repetition_matches_the_definitions(texts: list[str]) -> None:
    np.testing.assert_allclose(kernel_repetition(pl.Series(texts)), np.array([repetition(t) for t in texts]))


SENTENCES = st.lists(st.sampled_from(PIECES + [" The cat sat with the dog. ", "Yes! ", "Really?\n", "Wait... ", '"Go." ']),
                     max_size=60).map("".join)


@settings(max_examples=300, deadline=None)
@given(st.lists(SENTENCES, min_size=1, max_size=6))
def test_c4_cleaning_matches_the_definitions(texts: list[str]) -> None:
    counts, cleaned = clean(pl.Series(texts), C4Spec())
    reasons, expected_texts, line_counts = c4_rows(texts)
    assert ["" if code == 0 else DOCUMENT_REASONS[code - 1] for code in counts[:, 0].tolist()] == reasons
    kept = [r == "" for r in reasons]
    assert [t for t, k in zip(cleaned.to_list(), kept, strict=True) if k] == [t for t, k in zip(expected_texts, kept, strict=True) if k]
    # Line counts are complete for kept documents (a dropped one stops at the line that dropped it).
    np.testing.assert_array_equal(counts[kept, 2:], line_counts[kept])


# -- settings and edges ----------------------------------------------------------------------

LINES = [f"Line {i} has a few words and ends well." for i in range(6)]


def test_c4_cuts_citations_of_any_decimal_digits_and_strips_what_they_leave() -> None:
    texts = [
        "\n".join([*LINES, "The war ended in 1945 [١٢]. It was long [edit]."]),
        "\n".join(["[3] Lead sentence with several words in it.", *LINES, "Last one [citation needed] ends here [7]"]),
    ]
    counts, cleaned = clean(pl.Series(texts), C4Spec())
    reasons, expected, _ = c4_rows(texts)
    assert reasons == ["", ""] and counts[:, 0].tolist() == [0, 0]
    assert cleaned.to_list() == expected
    assert cleaned[0].endswith("The war ended in 1945 . It was long .")
    assert cleaned[1].startswith("Lead sentence")  # the cut left a space, stripped with the document


def test_c4_settings_switch_each_rule() -> None:
    text = "\n".join([*LINES[:2], "Enable javascript to see it.", "no terminal", "Short one.", "See our privacy policy today."])
    counts, texts = clean(pl.Series([text]), C4Spec(min_sentences=2))
    assert dict(zip(LINE_FIELDS, counts[0, 2:].tolist(), strict=True)) == {
        "lines": 6, "too_long_word": 0, "no_terminal_punctuation": 1, "too_few_words": 1, "javascript": 1, "policy": 1, "kept_lines": 2}
    assert texts[0] == "\n".join(LINES[:2])
    relaxed = C4Spec(min_sentences=-1, min_words_per_line=-1, terminal_punctuation=False, javascript=False, policy=False)
    counts, texts = clean(pl.Series([text]), relaxed)
    assert counts[0, 0] == 0 and texts[0] == text
    counts, _ = clean(pl.Series(["\n".join([*LINES, "It uses {x} here."])]), C4Spec(curly_bracket=False))
    assert counts[0, 0] == 0
    counts, _ = clean(pl.Series(["\n".join([*LINES, "lorem IPSUM dolor sit."])]), C4Spec())
    assert DOCUMENT_REASONS[counts[0, 0] - 1] == "lorem_ipsum"


def test_c4_long_word_and_citations() -> None:
    text = "\n".join([*LINES[:5], "a " * 3 + "x" * 1001 + ".", "Cited here[12] and there [edit] too[citation needed]."])
    counts, texts = clean(pl.Series([text]), C4Spec())
    assert counts[0, 2 + LINE_FIELDS.index("too_long_word")] == 1
    assert texts[0].endswith("Cited here and there  too.")
    _, texts = clean(pl.Series([text]), C4Spec(max_word_length=-1, remove_citations=False))
    assert "x" * 1001 in texts[0] and "[12]" in texts[0]


def test_kernels_read_the_chosen_rows_of_a_shared_batch() -> None:
    texts = ["the cat and the dog", "", "x\nx\ny", "one two three four five one two three four five"]
    batch = TextBatch(pl.Series(texts))
    rows = np.array([3, 0, 2])
    np.testing.assert_array_equal(kernel_quality_counts(batch, rows), kernel_quality_counts(pl.Series([texts[r] for r in rows])))
    np.testing.assert_allclose(kernel_repetition(batch, rows), np.array([repetition(texts[r]) for r in rows]))
    counts, cleaned = clean(batch, C4Spec(min_sentences=0), rows)
    assert cleaned.to_list() == ["", "", ""] and counts[:, 0].tolist() == [0, 0, 0]


def test_sliced_and_null_texts() -> None:
    series = pl.Series(["skip me", None, "the cat and the dog"]).slice(1, 2)
    np.testing.assert_array_equal(kernel_quality_counts(series), np.array([quality_counts(""), quality_counts("the cat and the dog")]))
