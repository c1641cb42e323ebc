"""Filters: every threshold at its edge (kept on one side, removed on the other), blame, config errors."""
from __future__ import annotations

import re

import numpy as np
import polars as pl
import pytest

from mixprep.errors import ConfigError
from mixprep.filters.engine import removal_reasons
from mixprep.filters.rules import GOPHER_QUALITY, GOPHER_REPETITION, LanguageSpec, TokenLimit, merge_chains, parse_filters


def chain_of(filters: dict) -> tuple:
    chain, problems = parse_filters(filters, "filters")
    assert problems == []
    return chain


def kept(texts: list[str], filters: dict) -> list[bool]:
    return (removal_reasons(pl.Series(texts, dtype=pl.String), chain_of(filters)) == 0).tolist()


EDGES = [
    # (filters, kept at the edge, removed just past it)
    ({"min_chars": 3}, "abc", "ab"),
    ({"max_chars": 3}, "abc", "abcd"),
    ({"min_words": 3}, "a b\nc", "a b"),
    ({"max_words": 3}, "a b c", "a b c d"),
    ({"min_mean_word_length": 3}, "abc def", "abc de fgh"),
    ({"max_mean_word_length": 3}, "abc def", "abcd def"),
    ({"max_symbol_word_ratio": 0.1}, "#1 b c d e f g h i j", "#1 b c d e f g h i #j"),
    ({"max_symbol_word_ratio": 0.1}, "a... b c d e f g h i j", "a... b c d e f g h i j…"),
    # Lines are str.splitlines(): blank ones count; bullets are "•" and "-" only.
    ({"max_bullet_line_fraction": 0.5}, "- a\n\n• b\nc", "- a\n  • b\nc"),
    ({"max_bullet_line_fraction": 0.0}, "* a\nb", "- a\nb"),
    ({"max_ellipsis_line_fraction": 0.5}, "a...\nb", "a...\nb… \nc"),
    ({"min_alpha_word_fraction": 0.5}, "abc 123", "abc 123 4.5"),
    # Distinct stop words, as written: "The" is not "the", and "the the" is one.
    ({"min_stop_words": 2}, "the cat, and dog", "the the cat"),
    ({"min_stop_words": 1}, "the cat", "The cat"),
    # Words are spaCy's: "don't" is "do" + "n't"; marks are split off and not counted.
    ({"min_words": 3}, "don't stop", "can stop ..."),
    # Lines split at runs of "\n", nothing stripped: " b" twice is a duplicate, "b" and " b" are not.
    ({"max_duplicate_line_fraction": 0.5}, "a\na\n\n b\n b", "a\na\na"),
    ({"max_duplicate_line_fraction": 0.0}, "b\n b", "b\nb"),
    ({"max_duplicate_line_char_fraction": 2 / 8}, "ab\nab\ncd", "ab\nab\nc"),
    ({"max_duplicate_paragraph_fraction": 0.5}, "p one\n\np one\n\np two\nx\n\np two\nx", "p one\n\np one\n\np one"),
    ({"max_duplicate_paragraph_char_fraction": 5 / 19}, "p one\n\np one\n\nother", "p one\n\np one\n\nothe"),
    # "ab cd" (5 characters with its space) twice in a text of 29 characters.
    ({"max_top_ngram_fraction": {2: 10 / 29}}, "ab cd ab cd ef gh ij kl mn op", "ab cd ab cd ef gh ij kl mn"),
    ({"max_top_ngram_fraction": 0.4}, "ab cd ab cd ef gh ij kl mn op", "ab cd ab cd ab cd ij kl mn op"),
    # The second "a b c d e" repeats the first: its 5 characters (without spaces) of 29; a third adds 5 more.
    ({"max_duplicate_ngram_fraction": {5: 5 / 29}}, "a b c d e a b c d e f g h i j", "a b c d e a b c d e a b c d e"),
    ({"max_duplicate_ngram_fraction": {10: 0.0}}, "a b c d e f g h i j a b c d e f g h i", "a b c d e f g h i j a b c d e f g h i j"),
    ({"drop_lorem_ipsum": True}, "lorem and ipsum", "Some LOREM Ipsum text"),
    ({"drop_curly_brace": True}, "f(x) [1]", "f(x) {1}"),
    ({"drop_javascript_notice": True}, "JavaScript is a language.", "Please enable JavaScript in your browser."),
    ({"min_terminal_punctuation_line_fraction": 0.5}, "Done.\nno", "Done!\nno\n\n"),
]


@pytest.mark.parametrize(("filters", "at_edge", "past_edge"), EDGES, ids=[f"{i}-{next(iter(e[0]))}" for i, e in enumerate(EDGES)])
def test_threshold_edge(filters: dict, at_edge: str, past_edge: str) -> None:
    assert kept([at_edge, past_edge], filters) == [True, False]


def test_disabled_flags_keep_everything() -> None:
    assert kept(["{ lorem ipsum }"], {"drop_curly_brace": False, "drop_lorem_ipsum": False}) == [True]


def test_empty_and_null_texts_have_zero_fractions() -> None:
    chain = chain_of({"max_duplicate_line_fraction": 0.0, "max_top_ngram_fraction": 0.0, "min_words": 1})
    reasons = removal_reasons(pl.Series(["", None, "x"], dtype=pl.String), chain)
    # "" and null pass the line and n-gram filters (fraction 0) and fail min_words (3rd filter).
    assert reasons.tolist() == [3, 3, 0]


def test_empty_text_is_all_duplicate_paragraphs_as_datatrove_drops_it() -> None:
    assert kept(["", " ", "x"], {"max_duplicate_paragraph_fraction": 0.99}) == [False, True, True]


def test_top_ngram_scores_a_short_text_that_repeats_nothing() -> None:
    # datatrove scores the most frequent 2-gram even when it occurs once: here all 17 characters.
    assert kept(["abcdefgh ijklmnop"], {"repetition": "gopher"}) == [False]


ENGLISH = "The weather was cold, and the children stayed inside to read their books by the fire."
FRENCH = "Le temps était froid et les enfants sont restés à la maison pour lire leurs livres."


def test_languages_keep_listed_languages_only() -> None:
    assert kept([ENGLISH, FRENCH], {"languages": ["en"]}) == [True, False]
    assert kept([ENGLISH, FRENCH], {"languages": ["en", "fr"]}) == [True, True]


def test_min_language_score_edge() -> None:
    from mixprep.filters.langid import language_fields

    score = float(language_fields(pl.Series([ENGLISH]))["language_score"][0])
    assert 0.5 < score <= 1.0
    assert kept([ENGLISH], {"languages": ["en"], "min_language_score": score}) == [True]
    if score < 1.0:
        assert kept([ENGLISH], {"languages": ["en"], "min_language_score": min(1.0, score + 1e-4)}) == [False]


def test_language_prefix_bytes_sets_how_much_is_read() -> None:
    english_then_french = ENGLISH + " " + " ".join([FRENCH] * 8)
    assert len(ENGLISH.encode()) < 100 < 512 < len(english_then_french.encode())
    options = {"languages": ["en"], "min_language_score": 0.5}
    assert kept([english_then_french], options) == [False]
    assert kept([english_then_french], {**options, "language_prefix_bytes": 88}) == [True]
    # Both options folded in, whatever their order in the mapping.
    spec = dict(chain_of({"language_prefix_bytes": 88, "languages": ["en"], "min_language_score": 0.5}))["languages"]
    assert (spec.prefix_bytes, spec.min_score) == (88, 0.5)


def test_language_fields_match_py3langid() -> None:
    from py3langid.langid import MODEL_FILE, LanguageIdentifier

    from mixprep.filters.langid import LANGUAGE_PREFIX_BYTES, language_fields

    texts = [ENGLISH, FRENCH, "Der Hund schläft im Garten unter dem alten Baum.", "SHOUTING IN ENGLISH IS STILL ENGLISH", "", "12345"]
    reference = LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)
    fields = language_fields(pl.Series(texts))
    for text, language, score in zip(texts, fields["language"], fields["language_score"], strict=True):
        expected_language, expected_score = reference.classify(text.encode()[:LANGUAGE_PREFIX_BYTES])
        assert language == expected_language
        assert score == pytest.approx(expected_score, abs=1e-4)


@pytest.fixture(scope="module")
def word_tokenizer(tmp_path_factory: pytest.TempPathFactory) -> str:
    tokenizers = pytest.importorskip("tokenizers")
    from tokenizers.models import WordLevel
    from tokenizers.pre_tokenizers import Whitespace

    tokenizer = tokenizers.Tokenizer(WordLevel({"[UNK]": 0, "a": 1, "b": 2}, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = Whitespace()
    folder = tmp_path_factory.mktemp("tok")
    tokenizer.save(str(folder / "tokenizer.json"))
    return str(folder)


def test_token_limits_at_edge(word_tokenizer: str) -> None:
    assert kept(["a b c", "a b"], {"min_tokens": 3, "tokenizer": word_tokenizer}) == [True, False]
    assert kept(["a b c", "a b c d"], {"max_tokens": 3, "tokenizer": word_tokenizer + "/tokenizer.json"}) == [True, False]
    both = {"min_tokens": 2, "max_tokens": 3, "tokenizer": word_tokenizer}
    assert removal_reasons(pl.Series(["a", "a b", "a b c d"]), chain_of(both)).tolist() == [1, 0, 2]


def test_token_limit_after_a_cheap_filter_counts_the_remaining_rows(word_tokenizer: str) -> None:
    """The token counts of the rows a cheap filter left, each matched to its own row."""
    texts = pl.Series(["x", "a b c d e", "y", "a b", "a b c d"])
    chain = chain_of({"min_chars": 2, "max_tokens": 3, "tokenizer": word_tokenizer})
    assert removal_reasons(texts, chain).tolist() == [1, 2, 1, 0, 2]


def test_text_batch_gives_the_texts_of_rows_in_their_order() -> None:
    from mixprep.filters.textstats import TextBatch

    batch = TextBatch(pl.Series(["a", "b", "c"]))
    assert batch.texts_at(np.array([0, 1, 2])) is batch.texts
    assert batch.texts_at(np.array([2, 0, 1])).to_list() == ["c", "a", "b"]
    assert batch.texts_at(np.array([1, 1])).to_list() == ["b", "b"]


def test_feature_needs_an_expression_or_a_computation() -> None:
    from mixprep.filters.registry import Feature

    with pytest.raises(ValueError, match="exactly one of build"):
        Feature("__nothing")
    with pytest.raises(ValueError, match="exactly one of build"):
        Feature("__both", build=lambda: pl.col("text"), compute=lambda batch, rows: pl.Series([]))


def test_missing_tokenizer_is_a_config_error(tmp_path) -> None:
    chain = chain_of({"max_tokens": 3, "tokenizer": str(tmp_path / "nope")})
    with pytest.raises(ConfigError, match=r"tokenizer '.*nope': no such file or folder .*expected a tokenizer.json file"):
        removal_reasons(pl.Series(["a"]), chain)


def test_unreadable_tokenizer_is_a_config_error_naming_the_file(tmp_path) -> None:
    (tmp_path / "tokenizer.json").write_text("{not json")
    chain = chain_of({"max_tokens": 3, "tokenizer": str(tmp_path)})
    with pytest.raises(ConfigError, match=r"tokenizer '.*tokenizer.json': cannot be loaded .*expected a tokenizers JSON file"):
        removal_reasons(pl.Series(["a"]), chain)


def test_blame_goes_to_first_failing_filter_in_config_order() -> None:
    chain = chain_of({"min_words": 3, "drop_curly_brace": True, "max_chars": 10})
    reasons = removal_reasons(pl.Series(["a {", "a b c {", "a b c d e f", "a b c"]), chain)
    assert reasons.dtype == np.int16
    assert reasons.tolist() == [1, 2, 3, 0]


def test_blame_with_costly_filter_before_and_after_cheap_ones() -> None:
    texts = [FRENCH, "court", ENGLISH]
    first = removal_reasons(pl.Series(texts), chain_of({"languages": ["en"], "min_words": 5}))
    assert first.tolist() == [1, 1, 0]
    last = removal_reasons(pl.Series(texts), chain_of({"min_words": 5, "languages": ["en"]}))
    assert last.tolist() == [2, 1, 0]



@pytest.mark.parametrize("short_rows", [1, 15])
def test_costly_feature_reads_only_the_rows_no_earlier_filter_removed(short_rows: int, monkeypatch: pytest.MonkeyPatch) -> None:
    import mixprep.filters.gopher as gopher

    asked: list[list[int]] = []
    repetition = gopher.repetition

    def recording(batch: gopher.TextBatch, rows: np.ndarray) -> np.ndarray:
        asked.append(rows.tolist())
        return repetition(batch, rows)

    monkeypatch.setattr(gopher, "repetition", recording)
    repeated = "same line\nsame line\nsame line\nother line"
    varied = "first line\nsecond line\nthird line\nfourth line"
    texts = ["x"] * short_rows + [repeated if i % 2 else varied for i in range(20 - short_rows)]
    chain = chain_of({"min_chars": 5, "max_duplicate_line_fraction": 0.3})
    expected = [1 if text == "x" else 2 if text == repeated else 0 for text in texts]
    assert removal_reasons(pl.Series(texts), chain).tolist() == expected
    assert asked == [list(range(short_rows, 20))]


@pytest.mark.parametrize("flag", ["drop_curly_brace", "drop_lorem_ipsum", "drop_javascript_notice"])
def test_flag_filter_switched_off_keeps_every_row(flag: str) -> None:
    """A switched-off flag is a literal True: it must cover every row, alone or with others."""
    texts = pl.Series(["a {", "lorem ipsum b c", "enable javascript in your browser", "d e f"])
    assert removal_reasons(texts, chain_of({flag: False})).tolist() == [0, 0, 0, 0]
    assert removal_reasons(texts, chain_of({flag: False, "min_words": 3})).tolist() == [2, 0, 0, 0]


def test_gopher_preset_expands_into_named_rules() -> None:
    chain = chain_of({"quality": "gopher"})
    assert [name for name, _ in chain] == list(GOPHER_QUALITY)
    assert dict(chain)["min_words"] == 50
    # Each removal is blamed on the rule that fired, not on "quality".
    short = "the cat and the dog"
    no_stop_words = " ".join(["zebra"] * 60)
    reasons = removal_reasons(pl.Series([short, no_stop_words]), chain)
    assert [chain[r - 1][0] for r in reasons] == ["min_words", "min_stop_words"]


def test_explicit_component_overrides_preset_in_place() -> None:
    chain = chain_of({"min_words": 10, "quality": "gopher"})
    assert [name for name, _ in chain] == list(GOPHER_QUALITY)
    assert dict(chain)["min_words"] == 10


def test_repetition_preset_thresholds() -> None:
    chain = dict(chain_of({"repetition": "gopher"}))
    assert set(chain) == set(GOPHER_REPETITION)
    assert chain["max_duplicate_ngram_fraction"] == ((5, 0.15), (6, 0.14), (7, 0.13), (8, 0.12), (9, 0.11), (10, 0.10))


def test_gopher_keeps_ordinary_prose() -> None:
    prose = (
        "The committee met on Tuesday to discuss the new budget for the library. After a long debate, "
        "the members agreed to extend the opening hours and to buy more books for the children's section. "
        "Several residents had written letters asking for a quiet reading room, and the chair promised "
        "that the proposal would be studied with care before the next meeting in the spring."
    )
    assert kept([prose], {"quality": "gopher", "repetition": "gopher", "languages": ["en"]}) == [True]


def test_options_fold_into_their_filter() -> None:
    chain = dict(chain_of({"languages": "en", "min_language_score": 0.65, "max_tokens": 5, "tokenizer": "tok"}))
    assert chain["languages"] == LanguageSpec(languages=("en",), min_score=0.65)
    assert chain["max_tokens"] == TokenLimit(limit=5, tokenizer="tok")


def test_merge_chains_local_threshold_wins() -> None:
    merged = merge_chains(chain_of({"quality": "gopher"}), chain_of({"min_words": 5, "drop_curly_brace": True}))
    assert dict(merged)["min_words"] == 5
    assert [name for name, _ in merged] == [*GOPHER_QUALITY, "drop_curly_brace"]


CONFIG_ERRORS = [
    ({"min_word": 3},
     r"^filters\.min_word: unknown filter \(did you mean 'min_words'\?\); valid filters: c4, drop_curly_brace, .*min_words"),
    ({"c4": "yes"}, r"^filters\.c4: expected true \(datatrove's defaults\), false, or a mapping of settings: min_sentences, "),
    ({"c4": {"min_sentence": 3}}, r"^filters\.c4: unknown c4 setting\(s\) 'min_sentence'; valid: min_sentences, "),
    ({"c4": {"min_sentences": -2}}, r"^filters\.c4: min_sentences: expected a whole number \(-1 switches it off\), got -2$"),
    ({"c4": {"javascript": 1}}, r"^filters\.c4: javascript: expected true or false, got 1$"),
    ({"quality": "gophr"}, r"^filters\.quality: unknown preset 'gophr'; valid presets: gopher$"),
    ({"min_stop_words": -1}, r"^filters\.min_stop_words: expected a non-negative integer, got -1$"),
    ({"max_bullet_line_fraction": 1.5}, r"^filters\.max_bullet_line_fraction: expected a fraction between 0 and 1, got 1\.5$"),
    ({"drop_curly_brace": "yes"}, r"^filters\.drop_curly_brace: expected true or false, got 'yes'$"),
    ({"max_top_ngram_fraction": {5: 0.1}},
     r"^filters\.max_top_ngram_fraction: n-gram size 5 is not accepted; expected a fraction between 0 and 1, "
     r"or a mapping \{n: fraction\} with n in 2\.\.4$"),
    ({"max_duplicate_ngram_fraction": {5: 2}},
     r"^filters\.max_duplicate_ngram_fraction: n-gram size 5: expected a fraction between 0 and 1, got 2$"),
    ({"max_duplicate_ngram_fraction": "high"},
     r"^filters\.max_duplicate_ngram_fraction: expected a fraction between 0 and 1, "
     r"or a mapping \{n: fraction\} with n in 5\.\.10, got 'high'$"),
    ({"min_language_score": 0.5}, r"^filters\.min_language_score: only valid together with 'languages' in the same filters mapping$"),
    ({"tokenizer": "gpt2"}, r"^filters\.tokenizer: only valid together with 'min_tokens' or 'max_tokens' in the same filters mapping$"),
    ({"max_tokens": 512},
     r"^filters\.max_tokens: needs 'tokenizer: <path to a tokenizer\.json or its folder>' in the same filters mapping$"),
    ({"max_tokens": 512, "tokenizer": ""}, r"^filters\.tokenizer: expected a path to a tokenizer\.json or a folder holding one, got ''$"),
    ({"languages": ["en", "klingon"]},
     r"^filters\.languages: unknown language code\(s\) 'klingon'; known: ace, af, .*, en, .*, zh, zu, zxx$"),
    ({"languages": []}, r"^filters\.languages: expected a list of ISO 639 language codes such as \[en, de\], got \[\]$"),
    ({"languages": ["en"], "min_language_score": 2}, r"^filters\.min_language_score: expected a fraction between 0 and 1, got 2$"),
    ({"language_prefix_bytes": 256}, r"^filters\.language_prefix_bytes: only valid together with 'languages' in the same filters mapping$"),
    ({"languages": ["en"], "language_prefix_bytes": 0}, r"^filters\.language_prefix_bytes: expected a positive number of bytes, got 0$"),
]


@pytest.mark.parametrize(("filters", "message"), CONFIG_ERRORS, ids=[str(i) for i in range(len(CONFIG_ERRORS))])
def test_config_errors_name_key_and_accepted_values(filters: dict, message: str) -> None:
    _, problems = parse_filters(filters, "filters")
    assert len(problems) == 1
    assert re.search(message, problems[0]), problems[0]


def test_every_problem_is_reported_at_once() -> None:
    _, problems = parse_filters({"min_word": 3, "max_words": -2, "tokenizer": "x"}, "datasets[1].filters")
    assert len(problems) == 3
    assert all(problem.startswith("datasets[1].filters.") for problem in problems)


@pytest.fixture
def language_calls(monkeypatch: pytest.MonkeyPatch) -> list[list[int]]:
    """The rows of each call of the language identifier during the test."""
    import mixprep.filters.langid as langid

    asked: list[list[int]] = []
    language_fields = langid.language_fields

    def recording(batch, prefix_bytes=langid.LANGUAGE_PREFIX_BYTES, rows=None):  # type: ignore[no-untyped-def]
        asked.append(list(range(len(batch))) if rows is None else list(rows))
        return language_fields(batch, prefix_bytes, rows)

    monkeypatch.setattr(langid, "language_fields", recording)
    return asked


def test_filter_batch_hands_on_the_language_verdicts_of_the_kept_rows(language_calls: list[list[int]]) -> None:
    """annotate_language with a `languages` filter: each text is classified once, and the
    kept rows get the very values the filter decided on (what language_fields gives them)."""
    from mixprep.filters.engine import filter_batch
    from mixprep.filters.langid import language_fields
    from mixprep.filters.rules import language_feature

    texts = pl.Series(["x", ENGLISH, FRENCH, ENGLISH + " Again.", "y"])
    chain = chain_of({"min_chars": 2, "languages": ["en"]})
    verdict = filter_batch(texts, chain, (language_feature(),))
    assert verdict.reasons.tolist() == [1, 0, 2, 0, 1]
    assert language_calls == [[1, 2, 3]]
    kept = verdict.kept_features[language_feature().name].struct.unnest()
    expected = language_fields(pl.Series([ENGLISH, ENGLISH + " Again."]))
    assert kept.equals(expected)


def test_filter_batch_computes_a_wanted_feature_for_the_kept_rows_only(language_calls: list[list[int]]) -> None:
    from mixprep.filters.engine import filter_batch
    from mixprep.filters.rules import language_feature

    texts = pl.Series(["x", FRENCH, "y", ENGLISH])
    verdict = filter_batch(texts, chain_of({"min_chars": 2}), (language_feature(),))
    assert language_calls == [[1, 3]]
    assert verdict.kept_features[language_feature().name].struct.field("language").to_list() == ["fr", "en"]
    everything = filter_batch(texts, (), (language_feature(),))
    assert everything.reasons.tolist() == [0, 0, 0, 0]
    assert len(everything.kept_features[language_feature().name]) == 4


def test_texts_decoded_by_the_jsonl_reader_are_filtered_in_place_as_a_series_is() -> None:
    """The build hands the filters the texts' bytes as its reader decoded them (no copy): the
    verdicts, and characters counted as characters, not bytes, must be those of the Series."""
    import orjson

    from mixprep.build.strictjson import text_column
    from mixprep.filters.engine import filter_batch
    from mixprep.sources.readers import line_spans

    words = "the cat sat on a mat and it was good for all of us to see that".split()
    texts = [
        "",
        "é" * 9,  # 9 characters, 18 bytes
        "é" * 10,
        "naïve café " * 12,
        " ".join(words * 5),
        " ".join(words * 5) + "\n" + "x" * 300,
        "日本語のテキスト" * 20,
    ]
    data = b"".join(orjson.dumps({"text": t}) + b"\n" for t in texts)
    starts, ends = line_spans(data)
    column = text_column(data, starts, ends, "text")
    assert column is not None
    series = pl.Series("text", column.views)
    assert series.to_list() == texts
    for filters in ({"min_chars": 10, "max_chars": 200}, {"min_chars": 10, "quality": "gopher", "repetition": "gopher", "c4": True}):
        chain = chain_of(filters)
        in_place = filter_batch(series, chain, buffers=column.buffers).reasons
        assert in_place.tolist() == filter_batch(pl.Series(texts, dtype=pl.String), chain).reasons.tolist()
    lengths = [len(t) for t in texts]
    assert in_place.tolist() != [0] * len(texts)
    assert lengths[1:3] == [9, 10]
    lengths_kept = filter_batch(series, chain_of({"min_chars": 10, "max_chars": 200}), buffers=column.buffers).reasons
    assert lengths_kept.tolist() == [1 if n < 10 else 2 if n > 200 else 0 for n in lengths]


def test_a_batch_refuses_buffers_without_the_kernels_padding() -> None:
    from mixprep.filters.textstats import PADDING, TextBatch

    texts = pl.Series(["ab", "c"])
    offsets = np.array([0, 2, 3], dtype=np.int64)
    TextBatch(texts, (np.frombuffer(b"abc" + bytes(PADDING), dtype=np.uint8), offsets))
    for data in (b"abc", b"abc" + bytes(PADDING - 1), b"abc" + b"x" + bytes(PADDING)):
        with pytest.raises(ValueError, match="PADDING zero bytes"):
            TextBatch(texts, (np.frombuffer(data, dtype=np.uint8), offsets))
    with pytest.raises(ValueError, match="n\\+1 offsets"):
        TextBatch(pl.Series(["ab"]), (np.frombuffer(b"abc" + bytes(PADDING), dtype=np.uint8), offsets))
