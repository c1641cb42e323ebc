"""Deduplication across sources, `--write-rejected`, and language annotation, end to end."""
from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
from helpers import build, manifest_of, mixture, read_jsonl, write_jsonl
from hypothesis import given, settings
from hypothesis import strategies as st

from mixprep.build.dedup import (
    duplicates,
    fingerprint_groups,
    fingerprints,
    groups_by_columns,
    groups_by_shards,
    lsh_bands,
)
from mixprep.config import DedupSpec, load_mixture
from mixprep.errors import ConfigError

WORDS = "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi omicron pi".split()


def documents(n: int, seed: int, words: int = 60) -> list[str]:
    r = random.Random(seed)
    return [" ".join(r.choice(WORDS) for _ in range(words)) for _ in range(n)]


@pytest.fixture
def overlapping(tmp_path: Path) -> tuple[Path, list[str]]:
    """a: 200 docs + 20 of them re-cased/re-spaced; b: docs 100..299 (100 shared with a) + 20 near copies."""
    docs = documents(300, seed=1)
    a = [{"text": d} for d in docs[:200]] + [{"text": "  " + d.upper().replace(" ", "\t ") + " "} for d in docs[:20]]
    b = [{"text": d} for d in docs[100:300]] + [{"text": d + " omega"} for d in docs[250:270]]
    write_jsonl(tmp_path / "a.jsonl", a)
    write_jsonl(tmp_path / "b.jsonl", b)
    return tmp_path, docs


def dedup_mixture(folder: Path, dedup: object, **metadata: object) -> Path:
    return mixture(
        folder,
        [{"name": "a", "mix_ratio": 0.5, "source": "a.jsonl"}, {"name": "b", "mix_ratio": 0.5, "source": "b.jsonl"}],
        seed=3,
        dedup=dedup,
        **metadata,
    )


def removed_by_dedup(jsonl: Path) -> dict[str, int]:
    return {name: s["removed"].get("dedup", 0) for name, s in manifest_of(jsonl)["sources"].items()}


def test_exact_dedup_removes_normalized_copies_across_sources(overlapping: tuple[Path, list[str]]) -> None:
    folder, docs = overlapping
    result = build(dedup_mixture(folder, "exact"), folder / "out")
    removed = removed_by_dedup(result.files["train"])
    # 20 re-cased copies inside a, 100 documents shared by a and b: one copy of each survives.
    assert sum(removed.values()) == 120
    owners: dict[str, set[str]] = {}
    for record in read_jsonl(result.files["train"]):
        owners.setdefault(" ".join(record["text"].lower().split()), set()).add(record["source"])
    # Only distinct texts were written (the "omega" variants are near copies, not exact ones),
    # and each text comes from one surviving record: repeats of it are wraparound copies.
    assert set(owners) <= set(docs) | {d + " omega" for d in docs[250:270]}
    assert all(len(sources) == 1 for sources in owners.values())
    assert any(sources == {"a"} for text, sources in owners.items() if text in docs[100:200])
    assert any(sources == {"b"} for text, sources in owners.items() if text in docs[100:200])


def test_near_dedup_also_removes_near_copies(overlapping: tuple[Path, list[str]]) -> None:
    folder, _ = overlapping
    result = build(dedup_mixture(folder, {"method": "near", "threshold": 0.8}), folder / "out")
    assert sum(removed_by_dedup(result.files["train"]).values()) == 140


def test_near_dedup_cut_into_band_shards_gives_the_same_outputs(
    overlapping: tuple[Path, list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    import mixprep.build.select as select

    folder, _ = overlapping
    config = dedup_mixture(folder, {"method": "near", "threshold": 0.8}, validation={"samples": 10})
    whole = build(config, folder / "whole")
    monkeypatch.setattr(select, "SHARD_RECORDS", 50)  # ~470 records: 16 shards a band
    assert select.shard_count(470) == 16
    cut = build(config, folder / "cut")
    for split in ("train", "validation"):
        assert cut.files[split].read_bytes() == whole.files[split].read_bytes()


@pytest.mark.slow
def test_dedup_survivor_depends_on_seed_not_on_workers(overlapping: tuple[Path, list[str]]) -> None:
    folder, _ = overlapping
    config = dedup_mixture(folder, "exact", validation={"samples": 10})
    one = build(config, folder / "w1", workers=1)
    two = build(config, folder / "w2", workers=2)
    for split in ("train", "validation"):
        assert one.files[split].read_bytes() == two.files[split].read_bytes()
    other_seed = dedup_mixture(folder, "exact", validation={"samples": 10}, file_name="other.yaml")
    text = other_seed.read_text().replace("seed: 3", "seed: 4")
    other_seed.write_text(text)
    three = build(other_seed, folder / "s4")
    # Which of two shared copies survives (a's or b's) is a seeded choice: another seed moves some.
    assert removed_by_dedup(three.files["train"]) != removed_by_dedup(one.files["train"])


def test_duplicates_keeps_one_per_group_chosen_by_hash() -> None:
    prints = np.array([5, 7, 5, 5, 9, 7], dtype=np.uint64)
    keys = np.arange(6, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15)
    drop = duplicates(prints, keys)
    assert drop.sum() == 3
    for value in (5, 7, 9):
        assert (~drop[prints == value]).sum() == 1
    # Input order does not decide the survivor: reversing the rows keeps the same records.
    reversed_drop = duplicates(prints[::-1], keys[::-1])[::-1]
    assert np.array_equal(drop, reversed_drop)


def test_near_fingerprints_join_transitively() -> None:
    import polars as pl

    base = documents(1, seed=9, words=80)[0]
    texts = pl.Series([base, base + " one", base + " one two", documents(1, seed=10, words=80)[0]])
    spec = DedupSpec(method="near", threshold=0.8)
    prints = fingerprints(texts, spec, seed=1)
    assert prints.shape == (4, lsh_bands(spec)[0])
    drop = duplicates(prints, np.arange(4, dtype=np.uint64) + np.uint64(1))
    assert drop[:3].sum() == 2 and not drop[3]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("fuzzy", r"metadata\.dedup\.method: expected one of exact, near, got 'fuzzy'"),
        ({"method": "near", "threshold": 1.5}, r"metadata\.dedup\.threshold: expected a Jaccard similarity"),
        ({"method": "near", "treshold": 0.5}, r"metadata\.dedup\.treshold: unknown key; did you mean 'threshold'"),
    ],
)
def test_bad_dedup_settings_are_config_errors(tmp_path: Path, value: object, message: str) -> None:
    write_jsonl(tmp_path / "a.jsonl", [{"text": "x"}])
    write_jsonl(tmp_path / "b.jsonl", [{"text": "y"}])
    config = load_mixture(dedup_mixture(tmp_path, value))
    assert any(__import__("re").search(message, p) for p in config.problems), config.problems
    with pytest.raises(ConfigError, match=message):
        config.raise_if_invalid()


def test_write_rejected_lists_every_removed_record_with_its_reason(overlapping: tuple[Path, list[str]]) -> None:
    folder, _ = overlapping
    with open(folder / "a.jsonl", "a", encoding="utf-8") as handle:
        handle.write('{"text": "short"}\n{"text": oops}\n{"txt": "no text"}\n')
    config = dedup_mixture(folder, "exact", on_bad_record="skip", filters={"min_words": 3})
    result = build(config, folder / "out", write_rejected=True)
    rejected = read_jsonl(folder / "out" / "pretrain_t.rejected.jsonl")
    reasons = [r["reason"] for r in rejected]
    assert reasons.count("dedup") == 120
    assert reasons.count("min_words") == 1
    assert {r["reason"] for r in rejected if "raw" in r} == {"invalid JSON", "missing field 'text'"}
    bad = next(r for r in rejected if r["reason"] == "invalid JSON")
    assert bad["where"].endswith("a.jsonl:222") and bad["raw"] == '{"text": oops}' and bad["source"] == "a"
    assert next(r for r in rejected if r["reason"] == "min_words") == {"text": "short", "source": "a", "reason": "min_words"}
    manifest = manifest_of(result.files["train"])
    counted = sum(sum(s["removed"].values()) + sum(s["bad"].values()) for s in manifest["sources"].values())
    assert counted == len(rejected)


def test_without_the_flag_no_rejected_file(two_sources: Path, tmp_path: Path) -> None:
    build(two_sources, tmp_path / "out")
    assert not list((tmp_path / "out").glob("*.rejected.jsonl"))


@pytest.mark.slow
def test_annotate_language_adds_fields_to_jsonl_and_sidecar(tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    english = "The children walked to the old market and bought fresh bread, apples and a little cheese for lunch."
    french = "Les enfants sont allés au vieux marché et ont acheté du pain frais, des pommes et un peu de fromage."
    german = "Die Kinder gingen zum alten Markt und kauften frisches Brot, Äpfel und ein wenig Käse zum Mittagessen."
    write_jsonl(tmp_path / "a.jsonl", [{"text": english}, {"text": french}, {"text": german}])
    config = mixture(
        tmp_path,
        [{"name": "a", "mix_ratio": 1.0, "source": "a.jsonl", "filters": {"languages": ["en", "fr"]}}],
        annotate_language=True,
    )
    result = build(config, tmp_path / "out")
    records = {r["text"]: r for r in read_jsonl(result.files["train"])}
    assert set(records) == {english, french}
    assert records[english]["language"] == "en" and records[french]["language"] == "fr"
    assert all(0.5 < r["language_score"] <= 1 and r["source"] == "a" for r in records.values())
    sidecar = pq.read_table(result.files["train"].with_suffix(".parquet")).to_pylist()
    assert [(r["text"], r["language"]) for r in sidecar] == [(r["text"], r["language"]) for r in read_jsonl(result.files["train"])]


def test_annotation_reads_the_prefix_the_language_filter_reads(tmp_path: Path) -> None:
    english = "The weather was cold, and the children stayed inside to read their books by the fire."
    french = "Le temps était froid et les enfants sont restés à la maison pour lire leurs livres."
    text = english + " " + " ".join([french] * 8)
    write_jsonl(tmp_path / "a.jsonl", [{"text": text}])
    filters = {"languages": ["en"], "language_prefix_bytes": 88}
    config = mixture(tmp_path, [{"name": "a", "mix_ratio": 1.0, "source": "a.jsonl", "filters": filters}], annotate_language=True)
    (record,) = read_jsonl(build(config, tmp_path / "out").files["train"])
    assert record["language"] == "en"  # kept by the filter, so labelled as the filter saw it


def test_annotate_language_must_be_a_flag(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "a.jsonl", [{"text": "x"}])
    config = mixture(tmp_path, [{"name": "a", "mix_ratio": 1.0, "source": "a.jsonl"}], annotate_language="yes")
    with pytest.raises(ConfigError, match=r"metadata\.annotate_language: expected true or false, got 'yes'"):
        load_mixture(config).raise_if_invalid()


@pytest.mark.slow
def test_every_filter_on_gives_the_same_bytes_for_any_worker_count(tmp_path: Path) -> None:
    from mixprep.train.tokenizer import train_tokenizer

    r = random.Random(5)
    vocabulary = (
        "the of and to in that with have be for on at by from farmer market river bridge children boat lake "
        "morning apples basket rain walked carried watched measured temperature years small heavy old new"
    ).split()

    def prose() -> str:
        sentences = [" ".join(r.choice(vocabulary) for _ in range(r.randint(8, 16))).capitalize() + "." for _ in range(r.randint(4, 14))]
        return "\n".join(sentences)

    extras = ["lorem ipsum dolor sit amet", "function f() { return 1; }", "Please enable JavaScript to view this page.",
              "Le chat dort sur le canapé pendant que la pluie tombe sur le jardin et les enfants jouent dehors."]
    docs = [{"text": prose() + ("\n" + r.choice(extras) if r.random() < 0.2 else "")} for _ in range(400)]
    docs += docs[:40]  # exact duplicates
    write_jsonl(tmp_path / "a.jsonl", docs[:220])
    write_jsonl(tmp_path / "b.jsonl", docs[220:])
    tokenizer = train_tokenizer((d["text"] for d in docs), vocab_size=400, out_dir=tmp_path / "tok")
    filters = {
        "quality": "gopher",
        "repetition": "gopher",
        "drop_lorem_ipsum": True,
        "drop_curly_brace": True,
        "drop_javascript_notice": True,
        "languages": ["en"],
        "min_language_score": 0.5,
        "max_tokens": 2000,
        "tokenizer": str(tokenizer),
    }
    config = mixture(
        tmp_path,
        [{"name": "a", "mix_ratio": 0.5, "source": "a.jsonl"}, {"name": "b", "mix_ratio": 0.5, "source": "b.jsonl"}],
        seed=11,
        filters=filters,
        dedup={"method": "near", "threshold": 0.9},
        annotate_language=True,
        validation={"samples": 6},
        on_bad_record="skip",
    )
    one = build(config, tmp_path / "w1", workers=1, write_rejected=True)
    two = build(config, tmp_path / "w2", workers=2, write_rejected=True)
    removed = {name: s["removed"] for name, s in manifest_of(one.files["train"])["sources"].items()}
    assert sum(sum(r.values()) for r in removed.values()) > 0, "the filters removed nothing: the test proves nothing"
    for split in ("train", "validation"):
        assert one.files[split].read_bytes() == two.files[split].read_bytes()
    rejected = "pretrain_t.rejected.jsonl"
    assert (tmp_path / "w1" / rejected).read_bytes() == (tmp_path / "w2" / rejected).read_bytes()


def test_validation_source_copies_of_train_records_are_dropped(tmp_path: Path) -> None:
    """With dedup on, a validation source may not hold a copy of a train-source record (it
    would score the model on its training data), nor the same record twice."""
    docs = documents(60, seed=7)
    write_jsonl(tmp_path / "train.jsonl", [{"text": d} for d in docs[:50]])
    copies = [{"text": "  " + docs[i].upper() + "\n"} for i in (0, 1, 2)]
    write_jsonl(tmp_path / "val.jsonl", copies + [{"text": d} for d in docs[50:58]] + [{"text": docs[50]}])
    datasets = [{"name": "a", "mix_ratio": 1.0, "source": "train.jsonl", "validation_source": "val.jsonl"}]

    deduplicated = build(mixture(tmp_path, datasets, seed=3, dedup="exact"), tmp_path / "on")
    validation = [record["text"] for record in read_jsonl(deduplicated.files["validation"])]
    assert sorted(validation) == sorted(docs[50:58])
    entry = manifest_of(deduplicated.files["validation"])["sources"]["a"]
    assert entry["validation_source_removed"] == {"duplicate_of_train": 3, "dedup": 1}
    assert manifest_of(deduplicated.files["train"])["sources"]["a"]["removed"].get("dedup", 0) == 0

    kept_all = build(mixture(tmp_path, datasets, seed=3, file_name="no_dedup.yaml"), tmp_path / "off")
    assert len(read_jsonl(kept_all.files["validation"])) == 12


def test_near_copies_in_a_validation_source_are_dropped_too(tmp_path: Path) -> None:
    docs = documents(40, seed=8)
    write_jsonl(tmp_path / "train.jsonl", [{"text": d} for d in docs[:30]])
    write_jsonl(tmp_path / "val.jsonl", [{"text": docs[0] + " omega"}] + [{"text": d} for d in docs[30:40]])
    datasets = [{"name": "a", "mix_ratio": 1.0, "source": "train.jsonl", "validation_source": "val.jsonl"}]
    result = build(mixture(tmp_path, datasets, seed=3, dedup={"method": "near", "threshold": 0.8}), tmp_path / "out")
    assert sorted(r["text"] for r in read_jsonl(result.files["validation"])) == sorted(docs[30:40])


def union_find_labels(prints: np.ndarray) -> np.ndarray:
    parent = list(range(len(prints)))

    def root(i: int) -> int:
        while parent[i] != i:
            i = parent[i]
        return i

    for column in prints.T:
        first: dict[int, int] = {}
        for i, value in enumerate(column.tolist()):
            if value in first:
                a, b = root(first[value]), root(i)
                parent[max(a, b)] = min(a, b)
            else:
                first[value] = i
    return np.array([root(i) for i in range(len(prints))])


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 60), st.integers(1, 6), st.integers(2, 25), st.integers(0, 2**32))
def test_groups_by_columns_are_the_connected_components(n: int, width: int, values: int, seed: int) -> None:
    """Band columns one at a time give the components all bands give at once (smallest index as label)."""
    prints = np.random.default_rng(seed).integers(0, values, size=(n, width)).astype(np.uint64)
    assert fingerprint_groups(prints).tolist() == union_find_labels(prints).tolist()
    assert groups_by_columns(n, iter(prints.T)).tolist() == union_find_labels(prints).tolist()
    # Cut into shards by value (every occurrence of a value in one shard), in any order: the same.
    shards = []
    for column in prints.T:
        for residue in range(3):
            rows = np.flatnonzero(column % np.uint64(3) == np.uint64(residue))[::-1]
            shards.append((column[rows], rows))
    assert groups_by_shards(n, iter(shards[::-1])).tolist() == union_find_labels(prints).tolist()
