"""The compiled language identifier against py3langid's own classify, on enough texts to
exercise every path: the eight-way lockstep walks, several chunks, the doc-major scoring
with prefetch, texts with and without features, ASCII and normalised prefixes."""
from __future__ import annotations

import unicodedata

import numpy as np
import polars as pl
import pytest

from mixprep.filters import langid

VOCABULARIES = {
    "en": "the of and to in is was that for it with as his on be at by had are but from or have an they which one you were".split(),
    "fr": "le la les de des et est une un dans pour qui que sur avec pas plus par ce il elle nous vous sont été leur".split(),
    "de": "der die das und ist nicht ein eine zu mit von auf für sich dem den auch es an als wird bei über schläft".split(),
    "es": "el la los las de que y en un una es por con para no se del al lo como más pero sus le ya está también".split(),
    "ru": "и в не на я быть он с что а по это она этот к но они мы как из у который то за свой".split(),
}


def mixed_texts(count: int, seed: int = 0) -> list[str]:
    """Texts of 0..900 bytes: single-language word salads, mixtures, upper case, digits, punctuation."""
    rng = np.random.default_rng(seed)
    languages = list(VOCABULARIES)
    texts = []
    for i in range(count):
        kind = i % 7
        words = VOCABULARIES[languages[int(rng.integers(len(languages)))]]
        if kind == 5:  # two languages interleaved
            words = words + VOCABULARIES[languages[int(rng.integers(len(languages)))]]
        n = int(rng.integers(0, 150))
        text = " ".join(words[int(j)] for j in rng.integers(0, len(words), n))
        if kind == 3:
            text = text.upper()
        elif kind == 4:
            text = " ".join(str(int(x)) for x in rng.integers(0, 10_000, n // 4)) + "!?"
        elif kind == 6:
            text = text.replace(" ", ", ", n // 10) + "."
        texts.append(text)
    return texts


def reference_prefix(text: str) -> bytes:
    """What mixprep classifies: py3langid's normalisation (all-uppercase lowered, NFC), then the byte prefix."""
    text = text.lower() if text.isupper() else text
    return unicodedata.normalize("NFC", text).encode()[: langid.LANGUAGE_PREFIX_BYTES]


def test_labels_and_scores_equal_py3langid_over_many_chunks() -> None:
    from py3langid.langid import MODEL_FILE, LanguageIdentifier

    texts = mixed_texts(3 * langid.CHUNK_DOCUMENTS + 13)
    reference = LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)
    fields = langid.language_fields(pl.Series(texts))
    mismatches = []
    for i, text in enumerate(texts):
        expected_language, expected_score = reference.classify(reference_prefix(text))
        if fields["language"][i] != expected_language or abs(fields["language_score"][i] - expected_score) > 1e-4:
            mismatches.append((i, text[:40], fields["language"][i], expected_language))
    assert not mismatches, mismatches[:5]
    assert len(set(fields["language"].to_list())) >= 4


@pytest.mark.slow
def test_int16_table_is_exact_and_float_fallback_agrees() -> None:
    model = langid.load_model()
    assert model.feature_rows.dtype == np.int16 and model.row_scale == 512.0
    texts = mixed_texts(40, seed=1)
    exact = langid.language_scores(pl.Series(texts))
    rows, scale = langid.feature_rows(model.feature_rows[:, : len(model.labels)].astype(np.float32) / 512 + 1e-6)
    assert rows.dtype == np.float32 and scale == 1.0
    as_float = langid.LanguageModel(**{**model.__dict__, "feature_rows": rows, "row_scale": scale})
    data, offsets = langid.utf8_buffers(pl.Series(texts))
    ends, ascii_prefix, upper = langid._prefixes(data, offsets[:-1], offsets[1:], langid.LANGUAGE_PREFIX_BYTES)
    direct = np.flatnonzero(ascii_prefix & ~upper)
    best, probability = langid._run_classifier(as_float, model.ascii_automaton, data, offsets[:-1][direct], ends[direct])
    assert best.tolist() == exact[0][direct].tolist()
    assert probability == pytest.approx(exact[1][direct], abs=1e-4)


def test_table_that_is_not_a_multiple_of_one_512th_stays_float() -> None:
    rows, scale = langid.feature_rows(np.array([[-1.0, -2.0 - 1e-3]], dtype=np.float32))
    assert rows.dtype == np.float32 and scale == 1.0 and rows.shape == (1, langid.ROW_WIDTH)
    rows, scale = langid.feature_rows(np.array([[-1.0, -2.5]], dtype=np.float32))
    assert rows.dtype == np.int16 and rows[0, :3].tolist() == [-512, -1280, 0]


def test_softmax_winner_matches_numpy() -> None:
    """The vectorised exp and the alias folding against numpy's softmax, on rows with
    close and far scores, ties, a featureless (all-zero) row and a duplicate column on top."""
    rng = np.random.default_rng(3)
    rows = list(rng.normal(-300, 80, (300, 142)) / 22)
    rows.append(np.zeros(142))
    tied = np.full(142, -5.0)
    tied[[10, 20]] = -1.0
    rows.append(tied)
    duplicate_on_top = rng.normal(-20, 5, 142)
    duplicate_on_top[60] = 0.0
    duplicate_on_top[3] = -0.5
    rows.append(duplicate_on_top)
    deep = np.full(142, -1e6)
    deep[7] = 0.0
    rows.append(deep)
    first, duplicate = np.array([3, 50]), np.array([60, 90])
    for row in rows:
        expected = np.exp(row - row.max())
        expected /= expected.sum()
        expected[first] += expected[duplicate]
        expected[duplicate] = 0.0
        winner, probability = langid._most_probable(row.copy(), np.empty(142), np.empty(142), first, duplicate)
        assert winner == int(np.argmax(expected))
        assert probability == pytest.approx(expected[winner], rel=1e-12)


@pytest.mark.slow
def test_ascii_automaton_walks_ascii_text_as_the_whole_automaton_does() -> None:
    model = langid.load_model()
    full, ascii_only = model.automaton, model.ascii_automaton
    assert len(ascii_only.row_base) < len(full.row_base) and ascii_only.next_state.nbytes < full.next_state.nbytes / 4
    rng = np.random.default_rng(5)
    texts = [bytes(rng.integers(0, 128, int(rng.integers(1, 600))).astype(np.uint8)) for _ in range(50)]
    texts += [text.encode() for text in mixed_texts(200, seed=2) if text.isascii()]
    for text in texts:
        data = np.frombuffer(text, dtype=np.uint8)
        walks = []
        for automaton in (full, ascii_only):
            emitted = np.empty(len(data), dtype=np.int32)
            langid._walk(data, 0, len(data), 0, automaton.next_state, automaton.row_base, automaton.feature_of_state, emitted, 0)
            walks.append(emitted)
        np.testing.assert_array_equal(walks[0], walks[1])
    # and whole classifications, through the lockstep walks
    data = np.frombuffer(b"".join(texts), dtype=np.uint8)
    ends = np.cumsum([len(text) for text in texts])
    starts = ends - [len(text) for text in texts]
    by_full = langid._run_classifier(model, full, data, starts, ends)
    by_ascii = langid._run_classifier(model, ascii_only, data, starts, ends)
    np.testing.assert_array_equal(by_full[0], by_ascii[0])
    np.testing.assert_array_equal(by_full[1], by_ascii[1])


def test_prefix_ends_and_classes_match_python() -> None:
    """`_prefixes` against Python's definitions, on texts whose deciding byte (a lowercase
    letter, a non-ASCII character, the prefix's end) falls before, on and past 32-byte blocks."""
    rng = np.random.default_rng(7)
    texts = []
    for _ in range(400):
        length = int(rng.integers(0, 140))
        text = "".join(rng.choice(list("ABCXYZ 0123.,\n"), length))
        if rng.random() < 0.4 and length:
            where = int(rng.integers(0, length))
            text = text[:where] + str(rng.choice(["q", "é", "漢", "Ω", "z"])) + text[where + 1 :]
        texts.append(text)
    texts += ["A" * n for n in (1, 31, 32, 33, 70)] + ["1" * 40 + "A", "Z" * 40 + "a", "1" * 33, "." * 31 + "Z" + "0" * 9]
    limit = 64
    data, offsets = langid.utf8_buffers(pl.Series(texts), padding=8)
    ends, ascii_prefix, upper = langid._prefixes(data, offsets[:-1], offsets[1:], limit)
    for i, text in enumerate(texts):
        encoded = text.encode()
        prefix = encoded[:limit].decode("utf-8", errors="ignore").encode()  # less a character the limit cuts
        assert ends[i] - offsets[i] == len(prefix)
        assert ascii_prefix[i] == prefix.isascii()
        assert upper[i] == (prefix.isascii() and prefix.decode().isupper())
