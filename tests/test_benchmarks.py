"""Smoke tests for the benchmark scripts (benchmarks/gen_corpus.py, common.py, bench_build.py).

The scripts import each other as siblings (`import common`), the way `python benchmarks/X.py`
runs them, so this module puts benchmarks/ on sys.path. Inputs are a few MB at most; the
end-to-end run measures every contender as a real subprocess on a ~300 KB corpus.
"""
from __future__ import annotations

import json
import math
import sys
from collections import Counter
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import yaml

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

import bench_build  # noqa: E402
import bench_codec  # noqa: E402
import bench_decontam  # noqa: E402
import bench_dedup  # noqa: E402
import bench_langid  # noqa: E402
import bench_outputs  # noqa: E402
import bench_parity  # noqa: E402
import bench_tokens  # noqa: E402
import common  # noqa: E402
import gen_corpus  # noqa: E402

CONTROL_CHARS = {chr(c) for c in range(32)} - {"\n", "\t", "\r"}


def read_texts(path: Path) -> list[str]:
    return [json.loads(line)["text"] for line in path.read_text(encoding="utf-8").splitlines()]


@pytest.fixture(scope="module")
def corpus_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("corpus")
    gen_corpus.generate(folder, 3_000_000, 3, seed=7)
    return folder


# -- gen_corpus ---------------------------------------------------------------------------

@pytest.mark.slow
def test_generate_is_deterministic_for_a_seed_and_any_jobs(tmp_path: Path, corpus_dir: Path) -> None:
    gen_corpus.generate(tmp_path / "again", 3_000_000, 3, seed=7, jobs=2)
    gen_corpus.generate(tmp_path / "other", 3_000_000, 3, seed=8)
    for i in range(3):
        name = f"src{i}.jsonl"
        assert (tmp_path / "again" / name).read_bytes() == (corpus_dir / name).read_bytes()
        assert (tmp_path / "other" / name).read_bytes() != (corpus_dir / name).read_bytes()


def test_generate_hits_the_size_and_describes_itself(corpus_dir: Path) -> None:
    corpus = gen_corpus.load_corpus(corpus_dir)
    assert corpus is not None and corpus.seed == 7 and len(corpus.sources) == 3
    for source in corpus.sources:
        path = corpus_dir / source.path
        assert 1_000_000 <= path.stat().st_size == source.bytes < 1_000_000 + 22_000
        assert source.records == len(path.read_bytes().splitlines())


def test_generated_records_have_the_promised_properties(corpus_dir: Path) -> None:
    ids: set[str] = set()
    all_texts: list[str] = []
    for i in range(3):
        lines = (corpus_dir / f"src{i}.jsonl").read_bytes().splitlines()
        records = [json.loads(line) for line in lines]
        assert all(set(r) == {"id", "text"} for r in records)
        ids.update(r["id"] for r in records)
        texts = [r["text"] for r in records]
        sizes = [len(t.encode("utf-8")) for t in texts]
        # Long-tailed lengths around ~1 KB, with planted tiny (some empty) and ~20 KB texts.
        assert 700 <= sum(sizes) / len(sizes) <= 1500
        assert sorted(sizes)[len(sizes) // 2] < sum(sizes) / len(sizes)  # median below mean: right-skewed
        assert min(sizes) == 0 and sum(s <= gen_corpus.TINY_TEXT_MAX_BYTES for s in sizes) >= 2
        assert gen_corpus.LARGE_TEXT_MIN_BYTES <= max(sizes) <= gen_corpus.MAX_TEXT_BYTES + 64
        assert all(t.endswith(".") for t in texts if t)
        all_texts += texts
    assert len(ids) == sum(1 for _ in all_texts)
    joined = "".join(all_texts)
    for char in ('"', "\\", "\n", "\t", "\r"):
        assert char in joined, f"no {char!r} in the corpus"
    assert CONTROL_CHARS & set(joined), "no control characters in the corpus"
    assert any(ord(c) > 0xFFFF for c in joined), "no characters outside the BMP"
    assert sum(not t.isascii() for t in all_texts) > len(all_texts) // 10
    # English-like: the head of the word distribution is English function words.
    top = [w for w, _ in Counter(joined.lower().split()).most_common(5)]
    assert "the" in top and "of" in top


def test_ensure_corpus_reuses_a_matching_corpus_and_regenerates_a_changed_one(tmp_path: Path) -> None:
    first = gen_corpus.ensure_corpus(tmp_path, 90_000, 3, seed=1)
    stamp = (tmp_path / "src0.jsonl").stat().st_mtime_ns
    assert gen_corpus.ensure_corpus(tmp_path, 90_000, 3, seed=1) == first
    assert (tmp_path / "src0.jsonl").stat().st_mtime_ns == stamp
    second = gen_corpus.ensure_corpus(tmp_path, 90_000, 3, seed=2)
    assert second.seed == 2 and (tmp_path / "src0.jsonl").stat().st_mtime_ns != stamp


def test_generate_refuses_impossible_sizes(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="need at least 1 source and 1 byte per source, got total_bytes=2, sources=3"):
        gen_corpus.generate(tmp_path, 2, 3, seed=0)


def test_gen_corpus_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert gen_corpus.main(["--size", "60KB", "--sources", "2", "--out", str(tmp_path), "--jobs", "1"]) == 0
    assert "records" in capsys.readouterr().out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["corpus.json", "src0.jsonl", "src1.jsonl"]


# -- common ------------------------------------------------------------------------------

@pytest.mark.parametrize(("text", "expected"), [
    ("1.5GB", 1_500_000_000), ("200MiB", 200 << 20), ("300kb", 300_000), ("42", 42), ("2 G", 2_000_000_000),
])
def test_parse_size(text: str, expected: int) -> None:
    assert common.parse_size(text) == expected


def test_parse_size_names_the_bad_value() -> None:
    with pytest.raises(ValueError, match=r"cannot read size '1.5 parsecs': expected a number with an optional unit"):
        common.parse_size("1.5 parsecs")


GRANDCHILD_ALLOCATES = """
import subprocess, sys
code = "import time; block = bytearray(300 << 20); block[::4096] = b'x' * len(block[::4096]); time.sleep(0.6)"
sys.exit(subprocess.call([sys.executable, "-c", code]))
"""


def test_run_measured_sums_rss_over_the_whole_tree(tmp_path: Path) -> None:
    m = common.run_measured([sys.executable, "-c", GRANDCHILD_ALLOCATES], label="tree", log_dir=tmp_path)
    assert m.ok and m.returncode == 0
    assert m.peak_rss_bytes >= 300 << 20, "the grandchild's 300 MiB was not counted"
    assert m.peak_pss_bytes >= 290 << 20
    assert m.seconds >= 0.6 and m.cpu_seconds > 0


ORPHAN_BURNS_CPU = """
import subprocess, sys, time
# The grandchild outlives its parent, like multiprocessing's fork server after a build's driver.
burn = "import time; end = time.process_time() + 0.8\\nwhile time.process_time() < end: pass"
subprocess.Popen([sys.executable, "-c", "import time; time.sleep(0.6); exec(" + repr(burn) + ")"], start_new_session=True)
time.sleep(0.3)  # long enough to be seen in the tree, as a build's fork server is
"""


def test_run_measured_counts_the_cpu_of_descendants_that_outlive_the_child(tmp_path: Path) -> None:
    m = common.run_measured([sys.executable, "-c", ORPHAN_BURNS_CPU], label="orphan", log_dir=tmp_path)
    assert m.ok
    assert m.cpu_seconds >= 0.8, "the orphan's CPU time went to init"


def test_run_measured_kills_the_tree_past_the_timeout(tmp_path: Path) -> None:
    code = "import subprocess, sys; subprocess.call([sys.executable, '-c', 'import time; time.sleep(60)'])"
    m = common.run_measured([sys.executable, "-c", code], label="slow", timeout_seconds=1.0, log_dir=tmp_path)
    assert m.timed_out and not m.ok
    assert m.seconds < 10


def test_run_measured_reports_failures_with_stderr(tmp_path: Path) -> None:
    m = common.run_measured([sys.executable, "-c", "raise SystemExit('boom')"], label="fail", log_dir=tmp_path)
    assert m.returncode == 1 and "boom" in m.stderr_tail


def test_format_table_aligns_numbers_and_marks_missing_values() -> None:
    table = common.format_table(
        [{"name": "a", "speed": 1234.5, "n": 3}, {"name": "bb", "speed": None, "n": 10}],
        [("name", "who"), ("speed", "MB/s"), ("n", "runs")],
    )
    lines = table.splitlines()
    assert lines[0] == "| who |     MB/s | runs |"
    assert lines[1] == "|-----|---------:|-----:|"
    assert lines[2] == "| a   | 1,234.50 |    3 |"
    assert lines[3] == "| bb  |      n/a |   10 |"


# -- bench_build ---------------------------------------------------------------------------

def test_exact_quotas_use_largest_remainder() -> None:
    assert bench_build.exact_quotas([0.5, 0.3, 0.2], 7) == [4, 2, 1]
    assert bench_build.exact_quotas([0.5, 0.5], 3) == [2, 1]  # a tie goes to the earlier source
    assert sum(bench_build.exact_quotas([0.5, 0.333333, 0.166667], 1001)) == 1001


def test_default_ratios_sum_to_one() -> None:
    assert bench_build.default_ratios(3) == (0.5, 0.3, 0.2)
    for k in (4, 5, 7):
        ratios = bench_build.default_ratios(k)
        assert len(ratios) == k and abs(sum(ratios) - 1) < 1e-6 and list(ratios) == sorted(ratios, reverse=True)


def tiny_workload(corpus_dir: Path, total: int) -> bench_build.Workload:
    return bench_build.Workload(
        sources=tuple(bench_build.WorkloadSource(f"src{i}", str(corpus_dir / f"src{i}.jsonl"), r)
                      for i, r in enumerate((0.5, 0.3, 0.2))),
        min_chars=50, total_samples=total, seed=3,
    )


def test_json_script_meets_quotas_exactly_and_filters(tmp_path: Path, corpus_dir: Path) -> None:
    workload = tiny_workload(corpus_dir, 4000)
    bench_build.run_json_script(workload, tmp_path / "a.jsonl")
    bench_build.run_json_script(workload, tmp_path / "b.jsonl")
    assert (tmp_path / "a.jsonl").read_bytes() == (tmp_path / "b.jsonl").read_bytes()
    records = [json.loads(line) for line in (tmp_path / "a.jsonl").read_text().splitlines()]
    counts = Counter(r["source"] for r in records)
    assert [counts[f"src{i}"] for i in range(3)] == bench_build.exact_quotas([0.5, 0.3, 0.2], 4000) == [2000, 1200, 800]
    assert min(len(r["text"]) for r in records) >= 50
    # src0 holds fewer than 2,000 records that pass, so it wraps around; the others do not repeat.
    repeats = Counter((r["source"], r["text"]) for r in records)
    assert any(n > 1 for (s, _), n in repeats.items() if s == "src0")


def test_polars_floor_keeps_exactly_the_long_enough_texts(tmp_path: Path, corpus_dir: Path) -> None:
    workload = tiny_workload(corpus_dir, 100)
    bench_build.run_polars_floor(workload, tmp_path / "out.jsonl")
    records = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    expected = sum(len(t) >= 50 for i in range(3) for t in read_texts(corpus_dir / f"src{i}.jsonl"))
    assert len(records) == expected
    assert {r["source"] for r in records} == {"src0", "src1", "src2"}


def test_mixture_yaml_states_the_workload(tmp_path: Path, corpus_dir: Path) -> None:
    workload = tiny_workload(corpus_dir, 1234)
    raw = yaml.safe_load(bench_build.mixture_yaml(workload, tmp_path / "out"))
    assert raw["metadata"]["total_samples"] == 1234 and raw["metadata"]["seed"] == 3
    assert [(d["name"], d["mix_ratio"], d["source"], d["filters"]) for d in raw["datasets"]] == [
        (s.name, s.ratio, s.path, {"min_chars": 50}) for s in workload.sources
    ]


@pytest.mark.slow
def test_bench_build_end_to_end_on_a_tiny_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Every contender as a measured subprocess; mixprep must accept the generated mixture."""
    work, report = tmp_path / "work", tmp_path / "report.json"
    rc = bench_build.main(["--size", "300KB", "--work-dir", str(work), "--json", str(report),
                           "--only", "mixprep-w1,hf-datasets,json-script,polars-floor"])
    printed = capsys.readouterr().out
    payload = json.loads(report.read_text())
    results = {r["name"]: r for r in payload["results"]}
    assert rc == 0, printed
    assert set(results) == {"mixprep-w1", "hf-datasets", "json-script", "polars-floor"}
    total = payload["workload"]["total_samples"]
    data = Path(payload["input"]["dir"])
    assert data == work / "data" / "300000B-3src-seed0"
    assert total == sum(s["records"] for s in json.loads((data / "corpus.json").read_text())["sources"])
    for name, r in results.items():
        assert r["status"] == "ok", (name, r)
        assert r["seconds"] > 0 and r["mb_per_s"] > 0 and r["peak_rss_mib"] > 10 and r["output_records"] > 0
        assert r["speed_vs_baseline"] is None  # mixprep-w2 was not run
    for name in ("mixprep-w1", "hf-datasets", "json-script"):
        assert results[name]["output_records"] == total, name
    assert results["polars-floor"]["output_records"] < total  # it filters and never repeats
    assert "| contender" in printed and "polars-floor" in printed
    assert (work / "mixture.yaml").exists() and not (work / "out" / "json-script").exists()
    targets = {t["target"]: t for t in payload["targets"]}
    assert payload["machine"]["cpus"] >= 1 and targets["mixprep-w2 MB/s >= 4x hf-datasets"]["met"] is None  # w2 not run
    assert targets["mixprep-w1 >= 150 MB per CPU-second"]["value"] == pytest.approx(results["mixprep-w1"]["mb_per_cpu_s"])
    assert 0 < results["mixprep-w1"]["driver_cpu_seconds"] <= results["mixprep-w1"]["cpu_seconds"]  # its "driver:" log line


@pytest.mark.slow
def test_bench_build_against_another_checkout_runs_both_in_alternating_rounds(tmp_path: Path) -> None:
    work, report = tmp_path / "work", tmp_path / "report.json"
    rc = bench_build.main(["--size", "300KB", "--work-dir", str(work), "--json", str(report), "--only", "mixprep-w1",
                           "--against", str(bench_build.REPO_ROOT), "--repeat", "2"])
    assert rc == 0
    results = {r["name"]: r for r in json.loads(report.read_text())["results"]}
    assert set(results) == {"mixprep-w1", "before-w1"}
    assert all(r["status"] == "ok" and r["runs"] == 2 for r in results.values()), results
    assert results["before-w1"]["output_records"] == results["mixprep-w1"]["output_records"] > 0
    logs = sorted(p.name.split(".")[0] for p in (work / "logs").glob("*.stderr"))
    assert logs == ["before-w1", "before-w1", "mixprep-w1", "mixprep-w1"]


def test_bench_build_against_a_folder_that_is_no_checkout_says_so(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match=r"--against: .* is not a mixprep checkout"):
        bench_build.main(["--size", "300KB", "--work-dir", str(tmp_path / "work"), "--against", str(tmp_path)])


def test_serial_part_is_amdahls_law_over_the_driver_cpu() -> None:
    pooled = bench_build.Result(
        "mixprep-w2", "", "ok", seconds=20.0, mb_per_s=75.0, cpu_seconds=30.0, driver_cpu_seconds=3.0, output_mb=2000.0
    )
    line = bench_build.serial_part([pooled], workers=16)
    # 3 s serial + 27 s / 16 = 4.69 s for 1,500 MB of input; 3 s per 2 GB of output
    assert "1.50 s per GB" in line and "4.7 s" in line and "320 MB/s" in line
    assert bench_build.serial_part([replace(pooled, name="mixprep-w1")]) == ""  # no pool, no serial part to show


# -- bench_langid ---------------------------------------------------------------------------

def write_mo(path: Path, messages: dict[str, str]) -> None:
    """A gettext catalog in the GNU .mo layout (what msgfmt writes), header entry included."""
    import struct

    entries = sorted({"": "Content-Type: text/plain; charset=UTF-8\n", **messages}.items())
    sources = [key.encode() for key, _ in entries]
    targets = [value.encode() for _, value in entries]
    start = 7 * 4 + 16 * len(entries)
    blob = b""
    source_table, target_table = [], []
    for text in sources + targets:
        (source_table if len(source_table) < len(sources) else target_table).append((len(text), start + len(blob)))
        blob += text + b"\0"
    header = struct.pack("<7I", 0x950412DE, 0, len(entries), 28, 28 + 8 * len(entries), 0, 0)
    tables = b"".join(struct.pack("<2I", *pair) for pair in source_table + target_table)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(header + tables + blob)


@pytest.mark.parametrize(("path", "language"), [
    ("/usr/share/locale/pt_BR/LC_MESSAGES/x.mo", "pt"),
    ("/usr/share/vim/vim90/lang/pl.UTF-8/LC_MESSAGES/vim.mo", "pl"),
    ("/usr/share/locale/sr@latin/LC_MESSAGES/x.mo", "sr"),
])
def test_langid_bench_reads_the_language_off_the_catalog_folder(path: str, language: str) -> None:
    assert bench_langid.catalog_language(path) == language


def test_langid_bench_keeps_real_translations_and_builds_labelled_documents(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bench_langid, "MIN_MESSAGES", 3)
    german = {f"Message number {i}": f"Die Nachricht Nummer {i} wurde %s gespeichert" for i in range(40)}
    german["Kept as is"] = "Kept as is"  # untranslated: dropped
    german["Short"] = "Kurz"  # under 20 bytes: dropped
    write_mo(tmp_path / "de" / "LC_MESSAGES" / "app.mo", german)
    write_mo(tmp_path / "en_GB" / "LC_MESSAGES" / "app.mo", {"Colour": "Colour of the window frame here"})
    write_mo(tmp_path / "fr" / "LC_MESSAGES" / "app.mo", {"One message": "Un seul message ne suffit pas ici"})
    (tmp_path / "xx" / "LC_MESSAGES").mkdir(parents=True)
    (tmp_path / "xx" / "LC_MESSAGES" / "broken.mo").write_bytes(b"not a catalog")
    paths = sorted(str(path) for path in tmp_path.glob("*/LC_MESSAGES/*.mo"))
    found = bench_langid.translations(paths, frozenset({"de", "en", "fr", "xx"}))
    assert list(found) == ["de"]  # English is the source language; French has too few messages
    assert len(found["de"]) == 40 and all("%s" not in text for text in found["de"])
    texts, truth = bench_langid.documents(found, per_language=1)
    assert truth.tolist() == ["de"] and len(texts[0].encode()) >= bench_langid.DOCUMENT_BYTES


# -- bench_codec ---------------------------------------------------------------------------

def test_bench_codec_times_each_loop_on_whole_line_blocks(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = "".join(json.dumps({"id": i, "text": f"line {i}\n" * (1 + i % 50)}) + "\n" for i in range(3000)).encode()
    blocks = bench_codec.blocks_of(data * 3)
    assert b"".join(blocks) == data * 3 and all(b.endswith(b"\n") for b in blocks)
    (tmp_path / "a.jsonl").write_bytes(data)
    assert bench_codec.main(["--file", str(tmp_path / "a.jsonl"), "--repeat", "1"]) == 0
    printed = capsys.readouterr().out
    speeds = [float(line.split()[-2]) for line in printed.splitlines() if line.endswith("GB/s")]
    assert len(speeds) == 5 and all(s > 0 for s in speeds)
    (tmp_path / "b.jsonl").write_bytes(b'{"text": 5}\n')
    with pytest.raises(SystemExit, match="refuses"):
        bench_codec.main(["--file", str(tmp_path / "b.jsonl"), "--repeat", "1"])


# -- bench_outputs -------------------------------------------------------------------------

def test_bench_outputs_measures_a_build_and_reads_its_report_line(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    for name in ("tinystories", "tinystories_validation", "custom_data", "custom_data_validation"):
        with open(tmp_path / "data" / f"{name}.jsonl", "w") as f:  # the toy mixture's four files, small
            f.writelines(json.dumps({"text": f"{name} {i} " * 20}) + "\n" for i in range(300))
    plain, with_tokens = bench_outputs.toy_configs(tmp_path, Path("/some/tokenizer"))
    assert with_tokens is not None and "  tokenizer: /some/tokenizer\n" in with_tokens.read_text()
    assert str(tmp_path / "data") in plain.read_text() and "../data" not in plain.read_text()
    assert list(bench_outputs.variants(None)) == ["sidecar none", "sidecar snappy", "sidecar zstd", "zstd + report"]
    result = bench_outputs.build_once(plain, tmp_path / "out", [])
    assert result["seconds"] > 0 and result["sidecar_mb"] > 0 and result["tokens"] == 0
    assert 0 <= result["report_seconds"] < result["seconds"]  # the report's log line was found (NaN otherwise)
    assert math.isnan(bench_outputs.build_once(plain, tmp_path / "out2", ["--no-report"])["report_seconds"])


# -- bench_decontam ------------------------------------------------------------------------

def test_bench_decontam_plants_leaks_that_both_checks_find(tmp_path: Path) -> None:
    questions = bench_decontam.make_questions(0.02, seed=0)
    documents, leaked = bench_decontam.make_documents(0.3, questions, leak_every=20, seed=0)
    assert len(leaked) == len(documents) // 20 and len(leaked) > 5
    index, _ = bench_decontam.mixprep_index(questions, 13, str(tmp_path))
    found, _ = bench_decontam.mixprep_check(documents, index)
    verdicts, _ = bench_decontam.python_check(documents, questions, 13)
    assert set(np.flatnonzero(found).tolist()) == leaked == {i for i, v in enumerate(verdicts) if v}


# -- bench_dedup ---------------------------------------------------------------------------

def test_bench_dedup_plants_near_copies_and_finds_pairs_sharing_a_band() -> None:
    texts, planted = bench_dedup.make_corpus(40, seed=1)
    assert len(texts) == 50 and len(planted) == 10
    assert texts[planted[0][1]] == texts[planted[0][0]].upper().replace(" ", "  ")
    prints = np.array([[1, 7], [2, 7], [1, 8], [3, 9]], dtype=np.uint64)
    assert bench_dedup.band_pairs(prints) == {(0, 2), (0, 1)}


def test_bench_dedup_grouping_memory_prints_both_ways_with_the_same_groups(capsys: pytest.CaptureFixture[str]) -> None:
    bench_dedup.grouping_memory(4000, 3, seed=0)
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3
    assert "8 shards a band" in lines[0] and "one band at a time" in lines[1] and "all bands at once" in lines[2]
    assert all(line.endswith(" s, 3,600 groups") for line in lines)  # every tenth record joins its neighbour


# -- bench_tokens --------------------------------------------------------------------------

def test_bench_tokens_counts_agree_and_windows_read_from_a_generated_token_file(tmp_path: Path) -> None:
    import tokenizers

    model = tokenizers.Tokenizer(tokenizers.models.BPE())
    model.pre_tokenizer = tokenizers.pre_tokenizers.ByteLevel(add_prefix_space=False)
    model.train_from_iterator(["a cat and a dog, 12 of them"] * 20, tokenizers.trainers.BpeTrainer(
        vocab_size=300, initial_alphabet=tokenizers.pre_tokenizers.ByteLevel.alphabet()))
    model.save(str(tmp_path / "tokenizer.json"))
    texts = [f"a cat and {i} dogs" for i in range(500)]
    speeds = bench_tokens.count_speeds(texts, tmp_path / "tokenizer.json", batch=100)
    assert speeds["equal"] and speeds["tokens"] == sum(len(e.ids) for e in model.encode_batch(texts, add_special_tokens=False))
    tokens = bench_tokens.make_token_file(tmp_path / "big.tokens", 0.001, document_tokens=70)
    assert (tmp_path / "big.tokens.bin").stat().st_size == 2 * tokens
    reads = bench_tokens.read_speed(tmp_path / "big.tokens", 64, 200)
    assert reads["windows"] == (tokens - 1) // 64 and reads["windows_per_s"] > 0
    configs = bench_tokens.toy_variants(tmp_path, tmp_path)
    assert "mix_by: tokens" in configs["mix_by: tokens"][0].read_text() and configs["records + tokens + --pack 512"][1] == ["--pack", "512"]
    mixture = tmp_path / "m" / "mix.yaml"
    mixture.parent.mkdir()
    mixture.write_text(yaml.safe_dump({"metadata": {"name": "m", "total_samples": 10, "tokenizer": "old"},
                                       "datasets": [{"name": "a", "mix_ratio": 1.0, "source": "a.jsonl"}]}))
    variants = bench_tokens.mixture_variants(mixture, tmp_path / "tok", seq_len=2048)
    metadata = {name: yaml.safe_load(path.read_text())["metadata"] for name, (path, _) in variants.items()}
    assert all(path.parent == mixture.parent for path, _ in variants.values())  # beside it: its relative sources resolve
    assert metadata["records"] == {"name": "m", "total_samples": 10}
    assert metadata["mix_by: tokens"] == {"name": "m", "tokenizer": str(tmp_path / "tok"), "mix_by": "tokens"}
    assert variants["records + tokens + --pack 2048"][1] == ["--pack", "2048"]


# -- bench_parity --------------------------------------------------------------------------

def test_bench_parity_corpus_and_mixprep_verdicts(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "a.jsonl").write_text(json.dumps({"text": "plain text"}) + "\n" + json.dumps(
        {"conversations": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}) + "\n")
    assert list(bench_parity.shared_documents(shared)) == [("a.jsonl:1", "plain text"), ("a.jsonl:2", "hi\nhello")]
    licenses = tmp_path / "common-licenses"
    licenses.mkdir()
    (licenses / "GPL").write_text("GNU GENERAL PUBLIC LICENSE")
    (licenses / "empty").write_text("  ")
    assert [t for _, t in bench_parity.debian_documents((licenses,))] == ["GNU GENERAL PUBLIC LICENSE"]
    corpus = tmp_path / "corpus.jsonl"
    assert bench_parity.write_corpus(corpus, shared, max_docs=2) == 2
    assert bench_parity.read_corpus(corpus) == (["a.jsonl:1", "a.jsonl:2"], ["plain text", "hi\nhello"])
    prose = " ".join(["The cat sat with the dog and looked at the moon again."] * 8)
    kept, reasons = bench_parity.mixprep_verdicts([prose, "lorem ipsum dolor", "{ x }"], bench_parity.MIXPREP_CHAINS["c4"])
    assert kept.tolist() == [True, False, False] and reasons == ["", "c4", "c4"]
    found = bench_parity.agreement(np.array([True, False, True]), np.array([True, True, False]))
    assert found == {"documents": 3, "agreement": 1 / 3, "mixprep_only_drops": 1, "datatrove_only_drops": 1}

