"""Decontamination against evaluation sets: the n-gram kernels, the config, and builds."""
from __future__ import annotations

import json
import random
import re
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from helpers import build, manifest_of, mixture, read_jsonl, write_jsonl, write_lines
from hypothesis import given, settings
from hypothesis import strategies as st

from mixprep.build.encode import string_buffers
from mixprep.build.ngrams import build_table, first_matches, ngram_hashes, words_of
from mixprep.config import load_mixture
from mixprep.errors import ConfigError, RecordError

VOCABULARY = [f"w{i}" for i in range(400)]


def sentence(r: random.Random, words: int) -> str:
    return " ".join(r.choice(VOCABULARY) for _ in range(words))


# -- kernels -------------------------------------------------------------------------------

def test_words_are_case_folded_letter_runs_and_single_ideographs() -> None:
    text = "The QUICK, brown fox!  ÉCOLE—Жук 中文字 café_42 (don't) ＂full＂。"
    assert words_of(text) == ["the", "quick", "brown", "fox", "école", "жук", "中", "文", "字", "café", "42", "don", "t", "full"]


def reference_words(text: str) -> list[str]:
    """The kernels' word rule for this test's alphabet, written independently."""
    return re.findall(r"[\u4e00-\u9fff]|[^\W_\u4e00-\u9fff]+", text.lower())


def reference_first_match(text: str, table: dict[tuple[str, ...], int], n: int) -> tuple[int, tuple[str, ...] | None]:
    words = reference_words(text)
    for i in range(len(words) - n + 1):
        gram = tuple(words[i : i + n])
        if gram in table:
            return table[gram], gram
    return -1, None


def buffers(texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    return string_buffers(pa.array(texts, type=pa.large_string()))


ALPHABET = st.sampled_from(["alpha", "Beta", "GAMMA", "dé", "Éa", "中", "文", "x1", "42"])
SEPARATORS = st.sampled_from([" ", ", ", ". ", "\n", "—", "!?", "  ", "_", "。"])


@st.composite
def texts_of_words(draw: st.DrawFn, max_words: int = 14) -> str:
    words = draw(st.lists(ALPHABET, min_size=0, max_size=max_words))
    seps = draw(st.lists(SEPARATORS, min_size=len(words) + 1, max_size=len(words) + 1))
    return "".join(s + w for s, w in zip(seps, [*words, ""], strict=True))


@settings(max_examples=150, deadline=None)
@given(
    evals=st.lists(texts_of_words(), min_size=1, max_size=6),
    train=st.lists(texts_of_words(30), min_size=1, max_size=8),
    n=st.integers(1, 4),
)
def test_first_matches_agree_with_a_reference_on_words(evals: list[str], train: list[str], n: int) -> None:
    data, offsets = buffers(evals)
    hashes, counts = ngram_hashes(data, offsets, n)
    assert counts.tolist() == [max(len(reference_words(e)) - n + 1, 0) for e in evals]
    table = build_table(hashes, np.repeat(np.arange(len(evals)), counts))
    reference: dict[tuple[str, ...], int] = {}
    for i, text in enumerate(evals):
        words = reference_words(text)
        for j in range(len(words) - n + 1):
            reference.setdefault(tuple(words[j : j + n]), i)
    data, offsets = buffers(train)
    found = first_matches(data, offsets, np.arange(len(train)), n, table)
    for text, (eval_id, start, end) in zip(train, found.tolist(), strict=True):
        expected_id, gram = reference_first_match(text, reference, n)
        assert eval_id == expected_id
        if gram is not None:
            assert tuple(reference_words(text.encode()[start:end].decode())) == gram


def test_only_the_requested_rows_are_checked() -> None:
    evals = ["one two three four"]
    data, offsets = buffers(evals)
    hashes, counts = ngram_hashes(data, offsets, 3)
    table = build_table(hashes, np.zeros(len(hashes), dtype=np.int64))
    data, offsets = buffers(["x one two three", "one two three y", "nothing"])
    found = first_matches(data, offsets, np.array([1, 2]), 3, table)
    assert found[:, 0].tolist() == [0, -1]  # row 0 (a match) was not asked about


# -- config ---------------------------------------------------------------------------------

def write_eval(folder: Path, name: str, questions: list[str], **extra: object) -> Path:
    return write_jsonl(folder / "evals" / f"{name}.jsonl", [{"question": q, **extra} for q in questions])


def test_config_reads_sources_fields_and_defaults(tmp_path: Path) -> None:
    write_eval(tmp_path, "gsm8k_test", ["q"])
    write_eval(tmp_path, "arc", ["q"])
    config = load_mixture(mixture(
        tmp_path,
        [{"name": "a", "mix_ratio": 1.0, "source": "evals/arc.jsonl"}],
        decontaminate={
            "sources": ["evals/gsm8k_test.jsonl", {"name": "ARC", "path": "evals/a*.jsonl", "field": ["question", "choices.text"]}],
            "field": "question",
        },
    ))
    spec = config.decontaminate
    assert spec is not None and spec.ngram == 13
    assert [(s.name, s.fields) for s in spec.eval_sets] == [("gsm8k_test", ("question",)), ("ARC", ("question", "choices.text"))]


@pytest.mark.parametrize(
    ("decontaminate", "problem"),
    [
        ({"sources": []}, "metadata.decontaminate.sources: expected a list of evaluation sets"),
        ({"sources": ["evals/missing.jsonl"]}, "metadata.decontaminate.sources[0]: file not found"),
        ({"sources": ["evals/e.jsonl"], "ngram": 0}, "metadata.decontaminate.ngram"),
        ({"sources": ["evals/e.jsonl"], "ngrams": 8}, "did you mean 'ngram'"),
        ({"sources": ["evals/e.jsonl", "evals/e.jsonl"]}, "evaluation set name 'e' is taken by another"),
        ({"sources": [{"path": "evals/e.jsonl", "feild": "q"}]}, "did you mean 'field'"),
        ({"sources": ["evals/e.jsonl"], "field": ""}, "metadata.decontaminate.field: expected a field name"),
        ("evals/e.jsonl", "metadata.decontaminate: expected {sources:"),
    ],
)
def test_config_problems_name_the_key(tmp_path: Path, decontaminate: object, problem: str) -> None:
    write_eval(tmp_path, "e", ["q"])
    write_jsonl(tmp_path / "a.jsonl", [{"text": "x"}])
    config = load_mixture(mixture(tmp_path, [{"name": "a", "mix_ratio": 1.0, "source": "a.jsonl"}], decontaminate=decontaminate))
    assert any(problem in p for p in config.problems), config.problems


# -- builds ---------------------------------------------------------------------------------

@pytest.fixture
def leaky(tmp_path: Path) -> tuple[Path, list[str]]:
    """An evaluation set of 30 questions; a corpus of 300 documents, 6 of which contain a
    question (re-cased, re-punctuated) inside a longer text, and 1 that shares 12 words."""
    r = random.Random(5)
    questions = [sentence(r, 20) + "?" for _ in range(30)]
    write_eval(tmp_path, "bench", questions, answer=7)
    docs = [sentence(r, 80) for _ in range(300)]
    for k, i in enumerate((3, 50, 51, 120, 200, 299)):
        leaked = questions[k * 5].upper().replace(" ", ",  ")
        docs[i] = f"{sentence(r, 30)} Question: {leaked} {sentence(r, 30)}"
    docs[10] = f"{sentence(r, 30)} {' '.join(questions[1].split()[:12])} {sentence(r, 30)}"
    write_jsonl(tmp_path / "web.jsonl", [{"text": d} for d in docs])
    return tmp_path, docs


def leaky_mixture(folder: Path, **metadata: object) -> Path:
    metadata.setdefault("decontaminate", {"sources": ["evals/bench.jsonl"], "field": "question"})
    return mixture(folder, [{"name": "web", "mix_ratio": 1.0, "source": "web.jsonl"}], **metadata)


def test_leaked_questions_are_removed_counted_and_named(leaky: tuple[Path, list[str]]) -> None:
    folder, docs = leaky
    result = build(leaky_mixture(folder), folder / "out", write_rejected=True)
    written = {r["text"] for r in read_jsonl(result.files["train"])}
    removed = {docs[i] for i in (3, 50, 51, 120, 200, 299)}
    assert written == set(docs) - removed  # the 12-word overlap (docs[10]) is kept
    manifest = manifest_of(result.files["train"])
    source = manifest["sources"]["web"]
    assert source["decontaminated"] == 6 and source["removed"] == {"decontaminated": 6}
    bench = manifest["decontamination"]["eval_sets"]["bench"]
    assert manifest["decontamination"]["ngram"] == 13
    assert (bench["records"], bench["records_without_ngrams"], bench["removed_records"]) == (30, 0, {"web": 6})
    assert bench["ngrams"] == 30 * (20 - 13 + 1)  # 20 words a question
    assert {i["role"] for i in manifest["inputs"]} == {"main", "decontaminate"}
    rejected = read_jsonl(folder / "out" / "pretrain_t.rejected.jsonl")
    assert {r["text"] for r in rejected} == removed
    for record in rejected:
        matched = record["matched"]
        line = int(matched["eval_record"].rsplit(":", 1)[1])
        assert matched["eval_set"] == "bench" and matched["eval_record"].startswith(str(folder / "evals" / "bench.jsonl"))
        question = json.loads((folder / "evals" / "bench.jsonl").read_text().splitlines()[line - 1])["question"]
        assert words_of(matched["ngram"]) == words_of(question)[:13]  # the first shared 13 words, as written
        assert matched["ngram"] in record["text"]


def test_decontamination_is_the_same_for_any_worker_count(leaky: tuple[Path, list[str]]) -> None:
    folder, _ = leaky
    one = build(leaky_mixture(folder), folder / "w1", workers=1).files["train"].read_bytes()
    two = build(leaky_mixture(folder), folder / "w2", workers=2).files["train"].read_bytes()
    assert one == two


def test_a_lower_ngram_catches_the_shorter_overlap(leaky: tuple[Path, list[str]]) -> None:
    folder, docs = leaky
    config = leaky_mixture(folder, decontaminate={"sources": ["evals/bench.jsonl"], "field": "question", "ngram": 12})
    written = {r["text"] for r in read_jsonl(build(config, folder / "out").files["train"])}
    assert docs[10] not in written and len(written) == 300 - 7


def test_editing_an_evaluation_set_rebuilds(leaky: tuple[Path, list[str]]) -> None:
    folder, docs = leaky
    config = leaky_mixture(folder)
    build(config, folder / "out")
    assert build(config, folder / "out").reused
    lines = (folder / "evals" / "bench.jsonl").read_text().splitlines()
    (folder / "evals" / "bench.jsonl").write_text("\n".join(lines[:5]) + "\n")  # only questions 0..4 remain
    again = build(config, folder / "out")
    assert not again.reused
    written = {r["text"] for r in read_jsonl(again.files["train"])}
    assert docs[3] not in written and docs[50] in written  # docs[3] leaked question 0, docs[50] question 5


def test_short_evaluation_records_are_reported(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    write_eval(tmp_path, "bench", ["too short to match", sentence(random.Random(1), 15)])
    write_jsonl(tmp_path / "web.jsonl", [{"text": "too short to match, said nobody"}])
    with caplog.at_level("WARNING"):
        result = build(leaky_mixture(tmp_path), tmp_path / "out")
    bench = manifest_of(result.files["train"])["decontamination"]["eval_sets"]["bench"]
    assert (bench["records"], bench["records_without_ngrams"]) == (2, 1)
    assert "1 of 2 records of evaluation set 'bench' have fewer than 13 words" in caplog.text


def test_sft_records_are_checked_on_every_message(tmp_path: Path) -> None:
    r = random.Random(2)
    question = sentence(r, 16)
    write_eval(tmp_path, "bench", [question])

    def chat(user: str) -> dict[str, object]:
        return {"conversations": [{"role": "user", "content": user}, {"role": "assistant", "content": sentence(r, 20)}]}

    write_jsonl(tmp_path / "chat.jsonl", [chat(f"Please solve: {question}"), chat(sentence(r, 20)), chat(sentence(r, 20))])
    config = mixture(
        tmp_path,
        [{"name": "chat", "mix_ratio": 1.0, "source": "chat.jsonl"}],
        phase="sft",
        filter_on="assistant",
        decontaminate={"sources": ["evals/bench.jsonl"], "field": "question"},
    )
    result = build(config, tmp_path / "out")
    records = read_jsonl(result.files["train"])
    assert len(records) == 2 and all(question not in json.dumps(rec) for rec in records)
    assert manifest_of(result.files["train"])["sources"]["chat"]["decontaminated"] == 1


def test_dpo_prompt_leak_is_removed(tmp_path: Path) -> None:
    r = random.Random(3)
    question = sentence(r, 14)
    write_eval(tmp_path, "bench", [question])

    def pair(prompt: str) -> dict[str, str]:
        return {"prompt": prompt, "chosen": sentence(r, 10), "rejected": sentence(r, 10)}

    write_jsonl(tmp_path / "pairs.jsonl", [pair(question.title()), pair(sentence(r, 14))])
    config = mixture(
        tmp_path, [{"name": "p", "mix_ratio": 1.0, "source": "pairs.jsonl"}], phase="dpo",
        decontaminate={"sources": ["evals/bench.jsonl"], "field": "question"},
    )
    records = read_jsonl(build(config, tmp_path / "out").files["train"])
    assert len(records) == 1 and records[0]["prompt"].lower() != question


def test_parquet_and_saved_hf_evaluation_sets_with_nested_fields(tmp_path: Path) -> None:
    datasets = pytest.importorskip("datasets")
    r = random.Random(4)
    stems = [sentence(r, 14) for _ in range(3)]
    choices = [sentence(r, 14) for _ in range(3)]
    (tmp_path / "evals").mkdir()
    arc = [{"question": s, "choices": {"text": [c, "no"]}} for s, c in zip(stems, choices, strict=True)]
    pq.write_table(pa.Table.from_pylist(arc), tmp_path / "evals" / "arc.parquet")
    math = datasets.DatasetDict({"test": datasets.Dataset.from_list([{"problem": sentence(r, 14)}])})
    math.save_to_disk(str(tmp_path / "evals" / "math"))
    math_problem = datasets.load_from_disk(str(tmp_path / "evals" / "math"))["test"][0]["problem"]
    docs = [f"intro {choices[1]} outro", f"intro {stems[2]} outro", f"see {math_problem} end", sentence(r, 30)]
    write_jsonl(tmp_path / "web.jsonl", [{"text": d} for d in docs])
    config = leaky_mixture(tmp_path, decontaminate={"sources": [
        {"path": "evals/arc.parquet", "field": ["question", "choices.text"]},
        {"name": "math", "hf": "evals/math", "split": "test", "field": "problem"},
    ]})
    result = build(config, tmp_path / "out", write_rejected=True)
    assert [rec["text"] for rec in read_jsonl(result.files["train"])] == [docs[3]]
    matched = {rec["text"]: rec["matched"] for rec in read_jsonl(tmp_path / "out" / "pretrain_t.rejected.jsonl")}
    assert matched[docs[0]]["eval_record"] == f"{tmp_path / 'evals' / 'arc.parquet'}: row 1"
    assert matched[docs[1]]["eval_record"] == f"{tmp_path / 'evals' / 'arc.parquet'}: row 2"
    assert matched[docs[2]]["eval_set"] == "math"
    sets = manifest_of(result.files["train"])["decontamination"]["eval_sets"]
    assert (sets["arc"]["records"], sets["math"]["records"]) == (3, 1)


def test_validation_sources_are_decontaminated_too(tmp_path: Path) -> None:
    r = random.Random(6)
    question = sentence(r, 15)
    write_eval(tmp_path, "bench", [question])
    write_jsonl(tmp_path / "train.jsonl", [{"text": sentence(r, 20)} for _ in range(20)])
    write_jsonl(tmp_path / "val.jsonl", [{"text": f"q: {question}"}, *({"text": sentence(r, 20)} for _ in range(4))])
    config = mixture(
        tmp_path, [{"name": "a", "mix_ratio": 1.0, "source": "train.jsonl", "validation_source": "val.jsonl"}],
        decontaminate={"sources": ["evals/bench.jsonl"], "field": "question"},
    )
    result = build(config, tmp_path / "out")
    validation = manifest_of(result.files["validation"])
    assert validation["sources"]["a"]["validation_source_removed"] == {"decontaminated": 1}
    assert len(read_jsonl(result.files["validation"])) == 4
    assert validation["decontamination"]["eval_sets"]["bench"]["removed_records"] == {"a": 1}


def test_an_evaluation_record_without_the_field_names_file_line_and_field(tmp_path: Path) -> None:
    write_lines(tmp_path / "evals" / "bench.jsonl", ['{"question": "a b c"}', "", '{"prompt": "x"}'])
    write_jsonl(tmp_path / "web.jsonl", [{"text": "x"}])
    with pytest.raises(RecordError, match=r"bench\.jsonl:3: missing field 'question' \(evaluation set 'bench'"):
        build(leaky_mixture(tmp_path), tmp_path / "out")
    assert not (tmp_path / "out" / "pretrain_t_train.jsonl").exists()
    write_lines(tmp_path / "evals" / "bench.jsonl", ['{"question": "a b c"}', '{"question": '])
    with pytest.raises(RecordError, match=r"bench\.jsonl:2: .*evaluation set 'bench'"):
        build(leaky_mixture(tmp_path), tmp_path / "out")
    write_lines(tmp_path / "evals" / "bench.jsonl", ['{"question": {"a": 1}}'])
    with pytest.raises(RecordError, match=r"bench\.jsonl:1: field 'question' must be text, a list of texts or a list of messages, got"):
        build(leaky_mixture(tmp_path), tmp_path / "out")


def test_dry_run_counts_decontaminated_records(leaky: tuple[Path, list[str]]) -> None:
    from mixprep.mixer import DatasetMixer

    folder, _ = leaky
    result = DatasetMixer.from_yaml(leaky_mixture(folder)).dry_run(progress=False)
    assert result.stats["web"].removed == {"decontaminated": 6}
    with pytest.raises(ConfigError):
        load_mixture(leaky_mixture(folder, decontaminate={"sources": ["evals/none.jsonl"]})).raise_if_invalid()
