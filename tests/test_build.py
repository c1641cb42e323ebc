"""The build end to end (DESIGN §2-§4, issue 2 "Done means"): exact counts with
wraparound, byte-identical outputs across worker counts and reruns, validation
hold-out, caps, phases, bad records, and failures that leave nothing complete-looking."""
from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from helpers import (
    REPO,
    build,
    complete_looking_outputs,
    manifest_of,
    mixture,
    read_jsonl,
    source_counts,
    texts,
    write_jsonl,
    write_lines,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mixprep.build import writers
from mixprep.build.workdir import TMP_FOLDER
from mixprep.errors import ConfigError, OutputError, RecordError, SamplingError
from mixprep.examples import note, story
from mixprep.mixer import DatasetMixer
from mixprep.serve.index import HEADER_SIZE, open_index
from mixprep.sources import plan
from mixprep.sources import readers as sources
from mixprep.verify import verify

# -- the toy mixture at its real sizes ---------------------------------------------------

def test_toy_mixture_exact_counts_with_wraparound_in_manifest(toy_build, example_data: Path) -> None:
    train = toy_build.files["train"]
    manifest = toy_build.manifests["train"]
    records = read_jsonl(train)
    assert len(records) == 80_000
    assert source_counts(records) == {"tinystories": 48_000, "custom_data": 32_000}
    assert manifest["output"]["records_by_source"] == {"tinystories": 48_000, "custom_data": 32_000}
    assert all(set(r) == {"text", "source"} for r in records[:100])

    custom = manifest["sources"]["custom_data"]
    assert (custom["read"], custom["available"], custom["quota"]) == (30_000, 30_000, 32_000)
    assert (custom["unique"], custom["repeated_records"], custom["extra_copies"]) == (30_000, 2_000, 2_000)
    assert custom["repeat_factor"] == custom["sample_factor"] == pytest.approx(32 / 30, abs=1e-6)
    stories = manifest["sources"]["tinystories"]
    assert (stories["available"], stories["quota"], stories["unique"], stories["extra_copies"]) == (50_000, 48_000, 48_000, 0)
    # Subsampled: 0.96 of what is available is taken, each record once.
    assert (stories["sample_factor"], stories["repeat_factor"]) == (0.96, 1.0)

    # The 2,000 extra copies really are repeats of custom_data inputs, spread through the shuffle.
    inputs = Counter(r["text"] for r in read_jsonl(example_data / "custom_data.jsonl"))
    written = Counter(r["text"] for r in records if r["source"] == "custom_data")
    assert set(written) == set(inputs)
    assert sum((written - inputs).values()) == 2_000
    repeated = {t for t in written if written[t] > inputs[t]}
    positions = [i for i, r in enumerate(records) if r["source"] == "custom_data" and r["text"] in repeated]
    assert positions[0] < 8_000 and positions[-1] > 72_000
    assert verify(train).ok


def test_toy_validation_split_comes_from_its_own_sources(toy_build, example_data: Path) -> None:
    validation = read_jsonl(toy_build.files["validation"])
    assert source_counts(validation) == {"tinystories": 1_200, "custom_data": 800}
    own = {r["text"] for r in read_jsonl(example_data / "tinystories_validation.jsonl")}
    assert {r["text"] for r in validation if r["source"] == "tinystories"} == own
    assert toy_build.files["validation"].name == "pretrain_phase1_toy_validation.jsonl"


def test_toy_parquet_sidecar_and_index_match_the_jsonl(toy_build) -> None:
    train = toy_build.files["train"]
    data = train.read_bytes()
    table = pq.read_table(train.with_suffix(".parquet"))
    lines = data.splitlines()
    assert table.num_rows == len(lines) == 80_000
    for i in (0, 1, 12_345, 79_999):
        assert orjson.loads(lines[i]) == {"text": table["text"][i].as_py(), "source": table["source"][i].as_py()}
    index = open_index(train.with_suffix(".idx"), train)
    assert len(index) == 80_000
    starts = np.concatenate(([0], np.flatnonzero(np.frombuffer(data, np.uint8) == 10)[:-1] + 1))
    assert np.array_equal(np.asarray(index.offsets), np.append(starts, len(data)).astype(np.uint64))


# -- determinism: workers, reruns, seeds ----------------------------------------------------

@pytest.fixture
def scaled_toy(tmp_path: Path) -> Path:
    """The toy mixture at 1/10 size (5,000 + 3,000 -> 4,800 + 3,200 with wraparound), ~2.7 MB,
    so 1 MB shuffle buckets give several buckets."""
    rng = random.Random(5)
    write_jsonl(tmp_path / "data" / "tinystories.jsonl", [{"text": story(rng)} for _ in range(5_000)])
    write_jsonl(tmp_path / "data" / "custom_data.jsonl", [{"text": note(rng), "id": i} for i in range(3_000)])
    return mixture(
        tmp_path,
        [
            {"name": "tinystories", "mix_ratio": 0.6, "max_samples": 5_000, "filters": {"max_chars": 20_000}},
            {"name": "custom_data", "mix_ratio": 0.4, "max_samples": 3_000},
        ],
        phase="pretrain_phase1",
        name="toy",
        data_dir="data",
        filters={"min_chars": 20},
        total_samples=8_000,
        validation={"fraction": 0.01},
        shuffle_bucket_mb=1,
    )


def leftover_work(out: Path) -> list[Path]:
    """What a build left in its temporary folder (nothing, once it finished or failed cleanly)."""
    folder = out / TMP_FOLDER
    return list(folder.iterdir()) if folder.exists() else []


def built_files(jsonl: Path) -> dict[str, Path]:
    stem = jsonl.name[: -len(".jsonl")]
    return {suffix: jsonl.with_name(stem + suffix) for suffix in (".jsonl", ".parquet", ".idx", ".manifest.json")}


@pytest.mark.slow
def test_workers_1_2_3_give_byte_identical_outputs(scaled_toy: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(plan, "SHARD_BYTES", 300_000)  # several byte-range tasks per file
    results = {w: build(scaled_toy, tmp_path / f"w{w}", workers=w) for w in (1, 2, 3)}
    reference = results[1]
    manifest = reference.manifests["train"]
    assert manifest["output"]["records_by_source"] == {"tinystories": 4_800, "custom_data": 3_200}
    custom = manifest["sources"]["custom_data"]
    assert custom["held_out_for_validation"] == 30  # 1% of its own 3,000 kept records
    assert (custom["available"], custom["extra_copies"]) == (2_970, 230)
    for split in ("train", "validation"):
        ref = built_files(reference.files[split])
        ref_index = ref[".idx"].read_bytes()
        for w in (2, 3):
            other = built_files(results[w].files[split])
            assert other[".jsonl"].read_bytes() == ref[".jsonl"].read_bytes(), (split, w)
            index = other[".idx"].read_bytes()
            # The header holds the file's mtime (bytes 32..40); offsets and everything else match.
            assert index[HEADER_SIZE:] == ref_index[HEADER_SIZE:]
            assert index[:32] == ref_index[:32] and index[40:HEADER_SIZE] == ref_index[40:HEADER_SIZE]
            assert json.loads(other[".manifest.json"].read_text()) == json.loads(ref[".manifest.json"].read_text())
            # In-process tasks' sidecar is encoded by the driver, pool workers' parts are put
            # together (parquet_parts): the same file, byte for byte.
            assert other[".parquet"].read_bytes() == ref[".parquet"].read_bytes(), (split, w)
    assert verify(results[3].files["train"]).ok


def test_bucket_and_shard_sizes_do_not_change_the_bytes(scaled_toy: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    one = build(scaled_toy, tmp_path / "one")
    text = scaled_toy.read_text().replace("shuffle_bucket_mb: 1", "shuffle_bucket_mb: 64")
    big_buckets = scaled_toy.with_name("big.yaml")
    big_buckets.write_text(text)
    monkeypatch.setattr(plan, "SHARD_BYTES", 100_000)
    monkeypatch.setattr(sources, "BLOCK_BYTES", 20_000)
    two = build(big_buckets, tmp_path / "two")
    for split in ("train", "validation"):
        assert one.files[split].read_bytes() == two.files[split].read_bytes()


def test_rerun_reuses_outputs_and_force_rebuilds_identically(two_sources: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    first = build(two_sources, out)
    files = built_files(first.files["train"])
    before = {s: (p.read_bytes(), p.stat().st_mtime_ns) for s, p in files.items()}
    rows_before = pq.read_table(files[".parquet"])

    again = build(two_sources, out)
    assert again.reused is True
    assert {s: (p.read_bytes(), p.stat().st_mtime_ns) for s, p in files.items()} == before

    forced = build(two_sources, out, force=True)
    assert forced.reused is False
    assert files[".jsonl"].read_bytes() == before[".jsonl"][0]
    assert files[".manifest.json"].read_bytes() == before[".manifest.json"][0]
    assert pq.read_table(files[".parquet"]).equals(rows_before)
    assert files[".jsonl"].stat().st_mtime_ns != before[".jsonl"][1]


def test_changed_input_or_damaged_output_is_not_reused(two_sources: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    first = build(two_sources, out)
    data = two_sources.parent / "data" / "b.jsonl"
    stat = data.stat()
    os.utime(data, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    assert build(two_sources, out).reused is False
    with open(first.files["train"], "ab") as handle:
        handle.write(b'{"text": "appended"}\n')
    rebuilt = build(two_sources, out)
    assert rebuilt.reused is False
    assert verify(rebuilt.files["train"]).ok


def test_another_seed_gives_another_order_of_the_same_records(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "a.jsonl", texts("a", 300))
    write_jsonl(tmp_path / "b.jsonl", texts("b", 200))
    datasets = [{"name": "a", "mix_ratio": 0.6, "source": "a.jsonl"}, {"name": "b", "mix_ratio": 0.4, "source": "b.jsonl"}]
    lines = {}
    for seed in (1, 2):
        config = mixture(tmp_path, datasets, seed=seed, file_name=f"s{seed}.yaml")
        lines[seed] = build(config, tmp_path / f"out{seed}").files["train"].read_bytes().splitlines()
    assert len(lines[1]) == 500  # T = available: every record exactly once
    assert sorted(lines[1]) == sorted(lines[2])
    assert lines[1] != lines[2]
    assert sum(a == b for a, b in zip(lines[1], lines[2], strict=False)) < 25


def test_output_is_shuffled_not_grouped_by_source(two_sources: Path, tmp_path: Path) -> None:
    records = read_jsonl(build(two_sources, tmp_path / "out").files["train"])
    assert source_counts(records) == {"a": 600, "b": 400}
    first_half = source_counts(records[:500])
    assert 240 < first_half["a"] < 360
    a_texts = [r["text"] for r in records if r["source"] == "a"]
    assert a_texts != sorted(a_texts)


# -- validation, caps, splits ---------------------------------------------------------------------

def test_validation_hold_out_never_shares_a_record_with_train(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "a.jsonl", texts("a", 400))
    write_jsonl(tmp_path / "b.jsonl", texts("b", 100))
    config = mixture(
        tmp_path,
        [{"name": "a", "mix_ratio": 0.5, "source": "a.jsonl"}, {"name": "b", "mix_ratio": 0.5, "source": "b.jsonl"}],
        total_samples=600,
        validation={"fraction": 0.1},
    )
    result = build(config, tmp_path / "out")
    train, validation = read_jsonl(result.files["train"]), read_jsonl(result.files["validation"])
    assert source_counts(validation) == {"a": 40, "b": 10}  # 0.1 of what each source holds
    assert source_counts(train) == {"a": 300, "b": 300}  # b: 90 left -> wraparound
    assert {r["text"] for r in train}.isdisjoint({r["text"] for r in validation})
    manifest = result.manifests["train"]
    assert manifest["sources"]["b"]["held_out_for_validation"] == 10
    assert manifest["sources"]["b"]["available"] == 90
    assert result.manifests["validation"]["output"]["records_by_source"] == {"a": 40, "b": 10}


def test_a_validation_fraction_never_fails_on_small_or_upsampled_sources(tmp_path: Path) -> None:
    """Shared by mix_ratio, 0.3 of 1,150 records asked 173 of the 3-record source."""
    write_jsonl(tmp_path / "big.jsonl", texts("a", 1000))
    write_jsonl(tmp_path / "small.jsonl", texts("b", 147))
    write_jsonl(tmp_path / "tiny.jsonl", texts("c", 3))
    write_jsonl(tmp_path / "tiny_val.jsonl", texts("v", 2))
    config = mixture(
        tmp_path,
        [
            {"name": "a", "mix_ratio": 0.4, "source": "big.jsonl"},
            {"name": "b", "mix_ratio": 0.3, "source": "small.jsonl"},
            {"name": "c", "mix_ratio": 0.3, "source": "tiny.jsonl", "validation_source": "tiny_val.jsonl"},
        ],
        total_samples=2000,
        validation={"fraction": 0.3},
    )
    result = build(config, tmp_path / "out")
    validation = read_jsonl(result.files["validation"])
    # 0.3 x 1000, 0.3 x 147 = 44.1, and 0.3 x 3 = 0.9 from c's own split (capped at its 2).
    assert source_counts(validation) == {"a": 300, "b": 44, "c": 1}
    assert source_counts(read_jsonl(result.files["train"])) == {"a": 800, "b": 600, "c": 600}
    write_jsonl(tmp_path / "small.jsonl", texts("b", 1))
    write_jsonl(tmp_path / "tiny.jsonl", texts("c", 10))
    one = build(config, tmp_path / "out2")  # 0.3 x 1 rounds to 0: the single record stays in train
    assert source_counts(read_jsonl(one.files["validation"])) == {"a": 300, "c": 2}  # 0.3 x 10, capped at c's split
    assert one.manifests["train"]["sources"]["b"]["available"] == 1


def test_validation_samples_and_split_selection(two_sources: Path, tmp_path: Path) -> None:
    config = two_sources.with_name("v.yaml")
    config.write_text(two_sources.read_text().replace("seed: 7", "seed: 7\n  validation: {samples: 10}"))
    only_validation = build(config, tmp_path / "v", splits=("validation",))
    assert set(only_validation.files) == {"validation"}
    assert [p.name for p in complete_looking_outputs(tmp_path / "v")] == [
        "README.md",  # the dataset card
        "pretrain_t_validation.idx", "pretrain_t_validation.jsonl", "pretrain_t_validation.manifest.json", "pretrain_t_validation.parquet",
    ]
    assert source_counts(read_jsonl(only_validation.files["validation"])) == {"a": 6, "b": 4}
    with pytest.raises(ConfigError, match=r"split 'validation' is not defined by this mixture; add metadata.validation"):
        build(two_sources, tmp_path / "x", splits=("validation",))
    with pytest.raises(ConfigError, match=r"unknown split 'test'; valid: train, validation, all"):
        build(config, tmp_path / "x", splits=("test",))


def test_max_samples_cap_is_a_seeded_subset_not_the_first_n(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "a.jsonl", texts("a", 1000))
    picked = {}
    for seed in (1, 2):
        config = mixture(
            tmp_path, [{"name": "a", "mix_ratio": 1.0, "source": "a.jsonl", "max_samples": 100}], seed=seed, file_name=f"{seed}.yaml"
        )
        result = build(config, tmp_path / f"o{seed}")
        picked[seed] = {int(r["text"].split()[0].split("-")[1]) for r in read_jsonl(result.files["train"])}
        assert result.manifests["train"]["sources"]["a"]["available"] == 100
    assert len(picked[1]) == 100  # T defaults to the sum of available: no repeats
    assert picked[1] != set(range(100))
    assert max(picked[1]) > 500 and picked[1] != picked[2]


def test_total_samples_defaults_to_sum_of_available(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "a.jsonl", texts("a", 70))
    write_jsonl(tmp_path / "b.jsonl", texts("b", 30))
    config = mixture(tmp_path, [{"name": "a", "mix_ratio": 0.5, "source": "a.jsonl"}, {"name": "b", "mix_ratio": 0.5, "source": "b.jsonl"}])
    manifest = build(config, tmp_path / "o").manifests["train"]
    assert manifest["output"]["records_by_source"] == {"a": 50, "b": 50}
    assert manifest["sources"]["b"]["extra_copies"] == 20


def test_filters_count_removals_per_source_and_reason(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "a.jsonl", texts("a", 50) + [{"text": "tiny"}] * 3 + [{"text": "x " * 300}] * 2)
    config = mixture(
        tmp_path,
        [{"name": "a", "mix_ratio": 1.0, "source": "a.jsonl", "filters": {"max_words": 100}}],
        filters={"min_chars": 10},
    )
    manifest = build(config, tmp_path / "o").manifests["train"]
    assert manifest["sources"]["a"]["removed"] == {"min_chars": 3, "max_words": 2}
    assert (manifest["sources"]["a"]["read"], manifest["sources"]["a"]["kept"]) == (55, 50)


def test_custom_text_field_is_written_as_text(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "a.jsonl", [{"body": f"body {i}", "text": 5} for i in range(10)])
    config = mixture(tmp_path, [{"name": "a", "mix_ratio": 1.0, "source": "a.jsonl", "text_field": "body"}])
    records = read_jsonl(build(config, tmp_path / "o").files["train"])
    assert sorted(r["text"] for r in records) == sorted(f"body {i}" for i in range(10))
    assert all(set(r) == {"text", "source"} for r in records)


def test_repeats_warn_above_and_max_factor(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    write_jsonl(tmp_path / "a.jsonl", texts("a", 10))
    ds = [{"name": "a", "mix_ratio": 1.0, "source": "a.jsonl"}]
    with caplog.at_level("WARNING"):
        build(mixture(tmp_path, ds, total_samples=25, file_name="w.yaml"), tmp_path / "w")
    assert "dataset 'a': quota 25 from 10 available records: wraparound, repeat factor 2.50 (15 extra copies)" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING"):
        build(mixture(tmp_path, ds, total_samples=25, repeats={"warn_above": 3}, file_name="q.yaml"), tmp_path / "q")
    assert "wraparound" not in caplog.text
    config = mixture(tmp_path, ds, total_samples=25, repeats={"max_factor": 2}, file_name="m.yaml")
    with pytest.raises(
        SamplingError,
        match=r"dataset 'a': quota 25 from 10 available records needs a repeat factor of 2\.50, "
        r"above metadata\.repeats\.max_factor 2",
    ):
        build(config, tmp_path / "m")
    assert complete_looking_outputs(tmp_path / "m") == []


def test_dry_run_plans_without_writing(two_sources: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = DatasetMixer.from_yaml(two_sources).dry_run(output_dir=out, progress=False)
    assert [(q.name, q.available, q.quota) for q in result.quotas] == [("a", 600, 600), ("b", 300, 400)]
    assert complete_looking_outputs(out) == []
    assert leftover_work(out) == []


def test_prepare_dataset_places_outputs_at_the_requested_name(two_sources: Path, tmp_path: Path) -> None:
    target = tmp_path / "ds" / "toy_train.jsonl"
    assert DatasetMixer.from_yaml(two_sources).prepare_dataset(output_file=target, split="train") == str(target)
    assert len(target.read_bytes().splitlines()) == 1000
    assert all(target.with_suffix(s).is_file() for s in (".parquet", ".idx"))
    assert manifest_of(target)["output"]["records"] == 1000


# -- phases -------------------------------------------------------------------------------------

CHAT = [{"role": "user", "content": "hi there"}, {"role": "assistant", "content": "hello, how can I help?"}]
PHASE_RECORDS = {
    "sft": [{"conversations": CHAT, "id": i, "meta": {"lang": "en"}} for i in range(20)],
    "dpo": [{"prompt": f"q{i}", "chosen": "good answer", "rejected": "bad"} for i in range(10)]
    + [{"chosen": CHAT, "rejected": [CHAT[0], {"role": "assistant", "content": f"no {i}"}]} for i in range(10)],
    "rlaif": [{"prompt": f"write about {i}"} for i in range(10)] + [{"conversations": CHAT[:1], "n": i} for i in range(10)],
}


@pytest.mark.parametrize("phase", ["sft", "dpo", "rlaif"])
def test_phases_keep_records_whole_and_add_source(tmp_path: Path, phase: str) -> None:
    records = PHASE_RECORDS[phase]
    write_jsonl(tmp_path / "in.jsonl", [{**r, "source": "upstream"} if i == 0 else r for i, r in enumerate(records)])
    config = mixture(tmp_path, [{"name": "mine", "mix_ratio": 1.0, "source": "in.jsonl"}], phase=phase)
    result = build(config, tmp_path / "out")
    out = read_jsonl(result.files["train"])
    assert result.files["train"].name == f"{phase}_t_train.jsonl"
    expected = sorted(orjson.dumps({**r, "source": "mine"}, option=orjson.OPT_SORT_KEYS) for r in records)
    assert sorted(orjson.dumps(r, option=orjson.OPT_SORT_KEYS) for r in out) == expected
    assert pq.read_metadata(result.files["train"].with_suffix(".parquet")).num_rows == len(records)
    assert verify(result.files["train"]).ok


@pytest.mark.parametrize(
    ("phase", "record", "reason"),
    [
        ("sft", {"text": "plain"}, "missing field 'conversations'"),
        ("sft", {"conversations": [{"role": "user"}]}, r"conversations\[0\]\.content must be a string \(got null\)"),
        ("sft", {"conversations": []}, "field 'conversations' must be a non-empty list of messages"),
        ("dpo", {"chosen": "a", "rejected": "b"}, "missing field 'prompt' \\(needed when chosen/rejected are strings\\)"),
        ("dpo", {"prompt": "p", "chosen": "a"}, "missing field 'rejected'"),
        ("ppo", {"text": "x"}, "missing field 'prompt' or 'conversations'"),
        ("rlaif", {"prompt": 3}, r"field 'prompt' must be a non-empty list of messages \(got number\)"),
    ],
)
def test_wrong_shape_record_is_a_bad_record(tmp_path: Path, phase: str, record: dict, reason: str) -> None:
    good = PHASE_RECORDS["sft" if phase == "sft" else "dpo" if phase == "dpo" else "rlaif"][:3]
    write_jsonl(tmp_path / "in.jsonl", [*good, record])
    config = mixture(tmp_path, [{"name": "mine", "mix_ratio": 1.0, "source": "in.jsonl"}], phase=phase)
    with pytest.raises(RecordError, match=rf"in\.jsonl:4: {reason}.*dataset 'mine'.*on_bad_record: skip"):
        build(config, tmp_path / "out")
    assert complete_looking_outputs(tmp_path / "out") == []
    skipping = mixture(
        tmp_path, [{"name": "mine", "mix_ratio": 1.0, "source": "in.jsonl"}], phase=phase, on_bad_record="skip", file_name="s.yaml"
    )
    manifest = build(skipping, tmp_path / "skip").manifests["train"]
    assert sum(manifest["sources"]["mine"]["bad"].values()) == 1
    assert manifest["output"]["records"] == 3


# -- bad records -----------------------------------------------------------------------------------

BAD_LINES = [
    '{"text": "fine record one"}',
    '{"text": broken',
    '{"txt": "no text field"}',
    '{"text": 42}',
    '["not", "an", "object"]',
    '{"text": null}',
    "{oops",
]


def test_on_bad_record_skip_counts_per_reason_in_manifest(tmp_path: Path) -> None:
    write_lines(tmp_path / "a.jsonl", BAD_LINES + [json.dumps(r) for r in texts("a", 5)])
    config = mixture(tmp_path, [{"name": "a", "mix_ratio": 1.0, "source": "a.jsonl"}], on_bad_record="skip")
    result = build(config, tmp_path / "o")
    source = result.manifests["train"]["sources"]["a"]
    assert source["bad"] == {
        "invalid JSON": 2,
        "missing field 'text'": 1,
        "field 'text' is not a string": 2,
        "expected a JSON object": 1,
    }
    assert (source["read"], source["kept"]) == (12, 6)
    assert result.manifests["train"]["output"]["records"] == 6


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('{"text": broken', r"a\.jsonl:3: invalid JSON \("),
        ('{"body": "x"}', r"a\.jsonl:3: missing field 'text'"),
        ('{"text": 42}', r"a\.jsonl:3: field 'text' is not a string \(got number\)"),
        ('{"text": ["a"]}', r"a\.jsonl:3: field 'text' is not a string \(got array\)"),
    ],
)
def test_bad_line_stops_the_build_with_file_and_line(tmp_path: Path, line: str, message: str) -> None:
    write_lines(tmp_path / "a.jsonl", ['{"text": "one"}', "", line, '{"text": "four"}'])
    config = mixture(tmp_path, [{"name": "a", "mix_ratio": 1.0, "source": "a.jsonl"}])
    with pytest.raises(RecordError, match=message + r".*dataset 'a'.*set metadata\.on_bad_record: skip"):
        build(config, tmp_path / "out")
    assert complete_looking_outputs(tmp_path / "out") == []


def test_bad_line_deep_in_a_sharded_file_reports_the_right_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    lines = [json.dumps(r) for r in texts("a", 400)]
    lines[317] = '{"text": 3.5}'
    write_lines(tmp_path / "a.jsonl", lines)
    monkeypatch.setattr(plan, "SHARD_BYTES", 2_000)
    monkeypatch.setattr(sources, "BLOCK_BYTES", 700)
    config = mixture(tmp_path, [{"name": "a", "mix_ratio": 1.0, "source": "a.jsonl"}])
    with pytest.raises(RecordError, match=r"a\.jsonl:318: field 'text' is not a string \(got number\)"):
        build(config, tmp_path / "out")


def test_bad_parquet_rows_are_reported_by_row(tmp_path: Path) -> None:
    import pyarrow as pa

    pq.write_table(pa.table({"text": ["ok", None, "fine"]}), tmp_path / "a.parquet")
    config = mixture(tmp_path, [{"name": "a", "mix_ratio": 1.0, "source": "a.parquet"}])
    with pytest.raises(RecordError, match=r"a\.parquet: row 1: field 'text' is missing or null"):
        build(config, tmp_path / "out")


# -- every bad-input path: the message, and nothing complete-looking left ------------------------

def _good_datasets() -> list[dict]:
    return [{"name": "a", "mix_ratio": 0.5, "source": "a.jsonl"}, {"name": "b", "mix_ratio": 0.5, "source": "b.jsonl"}]


CONFIG_BREAKAGES = {
    "missing file": (lambda d: d[1].update(source="nope.jsonl"), r"datasets\[1\]\.source: file not found: .*nope\.jsonl"),
    "empty glob": (lambda d: d[1].update(source="*.parquet"), r"datasets\[1\]\.source: glob matches no file: .*\*\.parquet"),
    "unknown key": (lambda d: d[0].update(max_sampels=3), r"datasets\[0\]\.max_sampels: unknown key; did you mean 'max_samples'\?"),
    "ratios not summing to 1": (lambda d: d[1].update(mix_ratio=0.3), r"datasets: mix_ratio values sum to 0\.8, expected 1"),
    "negative ratio": (lambda d: d[1].update(mix_ratio=-0.5), r"datasets\[1\]\.mix_ratio: expected a number from 0 to 1, got -0\.5"),
}


@pytest.mark.parametrize("case", sorted(CONFIG_BREAKAGES))
def test_bad_config_refused_with_message_and_no_output(tmp_path: Path, case: str) -> None:
    write_jsonl(tmp_path / "a.jsonl", texts("a", 5))
    write_jsonl(tmp_path / "b.jsonl", texts("b", 5))
    datasets = _good_datasets()
    breakage, message = CONFIG_BREAKAGES[case]
    breakage(datasets)
    config = mixture(tmp_path, datasets)
    with pytest.raises(ConfigError, match=r"(?s)mix\.yaml: the mixture has \d problem\(s\):\n.*  - mix\.yaml: " + message):
        build(config, tmp_path / "out")
    assert complete_looking_outputs(tmp_path / "out") == []


def test_invalid_yaml_refused_with_message_and_no_output(tmp_path: Path) -> None:
    path = tmp_path / "mix.yaml"
    path.write_text("metadata: {phase: x\ndatasets: []\n")
    with pytest.raises(ConfigError, match=r"mix\.yaml: invalid YAML at line 2, column \d+"):
        DatasetMixer.from_yaml(path).build(output_dir=tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_empty_source_says_what_each_filter_removed(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "a.jsonl", texts("a", 10))
    write_jsonl(tmp_path / "b.jsonl", [{"text": "hi"}] * 4 + [{"text": "word " * 50}] * 3)
    write_lines(tmp_path / "b.jsonl", tmp_path.joinpath("b.jsonl").read_text().splitlines() + ["{bad"])
    datasets = _good_datasets()
    datasets[1]["filters"] = {"min_chars": 5, "max_words": 20}
    config = mixture(tmp_path, datasets, on_bad_record="skip")
    with pytest.raises(
        SamplingError,
        match=r"dataset 'b': needs 5 records but none are available \(8 read from .*b\.jsonl, 1 bad \(invalid JSON\), "
        r"3 removed by max_words, 4 removed by min_chars\)",
    ):
        build(config, tmp_path / "out")
    assert complete_looking_outputs(tmp_path / "out") == []


def test_empty_file_is_an_empty_source(tmp_path: Path) -> None:
    (tmp_path / "a.jsonl").write_bytes(b"\n\n")
    config = mixture(tmp_path, [{"name": "a", "mix_ratio": 1.0, "source": "a.jsonl"}], total_samples=3)
    with pytest.raises(SamplingError, match=r"dataset 'a': needs 3 records but none are available \(0 read from .*a\.jsonl\)"):
        build(config, tmp_path / "out")
    assert complete_looking_outputs(tmp_path / "out") == []


def test_output_folder_not_writable(two_sources: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("I am a file, not a folder")
    with pytest.raises(OutputError, match=r"output folder .*a-file/out cannot be created: Not a directory"):
        build(two_sources, blocker / "out")
    assert blocker.read_text() == "I am a file, not a folder"


KILL_SCRIPT = """
import os, signal, sys
from mixprep.build import writers
from mixprep.mixer import DatasetMixer

original = writers.SplitWriter.add

def add_then_die(self, part):
    original(self, part)  # the temporary JSONL now holds part of the output
    os.kill(os.getpid(), signal.SIGKILL)

writers.SplitWriter.add = add_then_die
DatasetMixer.from_yaml(sys.argv[1]).build(output_dir=sys.argv[2], progress=False)
"""


@pytest.mark.slow
def test_build_killed_mid_write_leaves_nothing_complete_looking(two_sources: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, "-c", KILL_SCRIPT, str(two_sources), str(out)], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == -9, proc.stderr
    partial = list((out / TMP_FOLDER).rglob("*.jsonl"))
    assert any(p.stat().st_size > 0 for p in partial), "the build was not killed while writing"
    assert complete_looking_outputs(out) == []
    # The next build finishes, and clears the dead build's temporary folder.
    result = build(two_sources, out)
    assert verify(result.files["train"]).ok
    assert leftover_work(out) == []


@pytest.mark.parametrize("error", [OSError(28, "No space left on device"), RuntimeError("injected failure")])
def test_exception_while_writing_leaves_nothing_complete_looking(
    two_sources: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, error: Exception
) -> None:
    original = writers.SplitWriter.add

    def add_then_fail(self: writers.SplitWriter, part: writers.BucketResult) -> None:
        original(self, part)
        raise error

    monkeypatch.setattr(writers.SplitWriter, "add", add_then_fail)
    out = tmp_path / "out"
    expected = (
        (OutputError, r"cannot write the train split of pretrain_t_train\.jsonl in .*: No space left on device")
        if isinstance(error, OSError)
        else (RuntimeError, "injected failure")
    )
    with pytest.raises(expected[0], match=expected[1]):
        build(two_sources, out)
    assert complete_looking_outputs(out) == []
    assert leftover_work(out) == []


def test_failure_on_the_sidecar_thread_is_reported_by_the_build(
    two_sources: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The Parquet sidecar is encoded on its own thread: its errors still stop the build cleanly."""

    def fail(self: writers.SplitWriter, path: str, schema: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(writers.SplitWriter, "_write_sidecar", fail)
    out = tmp_path / "out"
    with pytest.raises(OutputError, match=r"cannot write the train split of pretrain_t_train\.jsonl in .*: No space left on device"):
        build(two_sources, out)
    assert complete_looking_outputs(out) == []
    assert leftover_work(out) == []


def test_failed_rebuild_keeps_the_previous_complete_outputs(two_sources: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "out"
    first = build(two_sources, out)
    before = first.files["train"].read_bytes()

    def fail(self: writers.SplitWriter, part: writers.BucketResult) -> None:
        msg = "injected failure"
        raise RuntimeError(msg)

    monkeypatch.setattr(writers.SplitWriter, "add", fail)
    with pytest.raises(RuntimeError, match="injected failure"):
        build(two_sources, out, force=True)
    assert first.files["train"].read_bytes() == before
    assert verify(first.files["train"]).ok


# -- the shipped example mixtures, on the generated example data --------------------------------

@pytest.mark.parametrize(
    ("config_name", "train", "validation", "extra_copies"),
    [
        ("sft_mixture.yaml", {"stories": 3_500, "notes": 1_500}, 120, 0),
        ("dpo_mixture.yaml", {"math": 2_900}, 100, 0),
        ("rlaif_mixture.yaml", {"prompts": 3_000}, None, 1_000),
    ],
)
def test_shipped_phase_mixtures_build(
    example_data: Path, tmp_path: Path, config_name: str, train: dict, validation: int | None, extra_copies: int
) -> None:
    text = (REPO / "configs" / config_name).read_text().replace("../data", str(example_data))
    config = tmp_path / config_name
    config.write_text(text)
    result = build(config, tmp_path / "out")
    manifest = result.manifests["train"]
    assert manifest["output"]["records_by_source"] == train
    assert sum(s["extra_copies"] for s in manifest["sources"].values()) == extra_copies
    if validation is None:
        assert set(result.files) == {"train"}
    else:
        assert result.manifests["validation"]["output"]["records"] == validation
    record = read_jsonl(result.files["train"])[0]
    assert record["source"] in train and ("conversations" in record or "chosen" in record or "prompt" in record)
    assert verify(result.files["train"]).ok


def test_manifest_records_seed_config_inputs_and_packages(toy_build, toy_config: Path) -> None:
    manifest = toy_build.manifests["train"]
    assert (manifest["seed"], manifest["split"], manifest["phase"], manifest["name"]) == (42, "train", "pretrain_phase1", "toy")
    assert len(manifest["config"]["sha256"]) == 64 and manifest["config"]["path"] == toy_config.name
    assert [(i["dataset"], i["role"]) for i in manifest["inputs"]] == [
        ("tinystories", "main"), ("tinystories", "validation"), ("custom_data", "main"), ("custom_data", "validation"),
    ]
    assert all(i["size"] > 0 and i["mtime_ns"] > 0 for i in manifest["inputs"])
    assert {"python", "pyarrow", "polars", "numpy"} <= set(manifest["packages"])
    assert manifest["output"]["index"] == {"file": "pretrain_phase1_toy_train.idx", "entries": 80_001}
    assert manifest["output"]["parquet"]["rows"] == 80_000
    assert json.loads(toy_build.files["train"].with_name("pretrain_phase1_toy_train.manifest.json").read_text()) == manifest


def test_progress_is_plain_log_lines_off_a_terminal(two_sources: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level("INFO", logger="mixprep"):
        build(two_sources, tmp_path / "out")
    lines = [r.getMessage() for r in caplog.records]
    assert any(line.startswith("scan: 100%") and "MB/s" in line and "records/s" in line for line in lines), lines
    assert any(line.startswith("write train: 100%") and "1,000 records" in line for line in lines), lines


def test_moving_the_data_folder_does_not_change_the_output(tmp_path: Path) -> None:
    outputs = []
    for where in ("here", "elsewhere/deeper"):
        folder = tmp_path / where
        write_jsonl(folder / "data" / "a.jsonl", texts("a", 120))
        write_jsonl(folder / "data" / "b.jsonl", texts("b", 40))
        config = mixture(
            folder,
            [{"name": "a", "mix_ratio": 0.5, "source": "data/*.jsonl"}, {"name": "b", "mix_ratio": 0.5, "source": "data/b.jsonl"}],
            total_samples=150,
            validation={"samples": 10},
        )
        result = build(config, folder / "out")
        outputs.append((result.files["train"].read_bytes(), result.files["validation"].read_bytes()))
    assert outputs[0] == outputs[1]


def test_manifest_paths_are_relative_to_the_config_and_filters_resolved(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "project" / "data" / "a.jsonl", texts("a", 50))
    outside = write_jsonl(tmp_path / "elsewhere" / "b.jsonl", texts("b", 50))
    config = mixture(
        tmp_path / "project",
        [
            {"name": "a", "mix_ratio": 0.5, "source": "data/*.jsonl", "filters": {"max_chars": 500}},
            {"name": "b", "mix_ratio": 0.5, "source": str(outside)},
        ],
        filters={"min_chars": 5},
    )
    manifest = manifest_of(build(config, tmp_path / "out").files["train"])
    assert manifest["config"]["path"] == "mix.yaml"
    assert [i["path"] for i in manifest["inputs"]] == ["data/a.jsonl", str(outside)]  # outside the project: absolute
    assert (manifest["sources"]["a"]["source"], manifest["sources"]["b"]["source"]) == (["data/*.jsonl"], [str(outside)])
    assert manifest["sources"]["a"]["filters"] == {"min_chars": 5, "max_chars": 500}  # the global filter merged in first
    assert manifest["sources"]["b"]["filters"] == {"min_chars": 5}


@pytest.mark.slow
@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.text(min_size=0, max_size=60), min_size=1, max_size=12))
def test_any_text_round_trips_exactly(tmp_path_factory: pytest.TempPathFactory, values: list[str]) -> None:
    folder = tmp_path_factory.mktemp("roundtrip")
    write_jsonl(folder / "a.jsonl", [{"text": v} for v in values])
    config = mixture(folder, [{"name": "a", "mix_ratio": 1.0, "source": "a.jsonl"}])
    result = build(config, folder / "out")
    assert sorted(r["text"] for r in read_jsonl(result.files["train"])) == sorted(values)
    table = pq.read_table(result.files["train"].with_suffix(".parquet"))
    assert sorted(table["text"].to_pylist()) == sorted(values)


def test_sidecar_keeps_disagreeing_and_free_form_fields_as_json_text(tmp_path: Path) -> None:
    from mixprep.verify import verify

    def chat(i: int, **extra: object) -> dict[str, object]:
        turns = [{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": f"a{i}"}]
        return {"conversations": turns, **extra}

    # `meta` is an object whose inner types disagree; `id` is a number in train data and a
    # string only in the validation source, which the sidecar of both splits must survive.
    write_jsonl(tmp_path / "train.jsonl", [chat(i, id=i, meta={"score": i if i % 2 else f"s{i}"}) for i in range(40)])
    write_jsonl(tmp_path / "val.jsonl", [chat(i, id=f"v{i}", meta={"score": 1.5}) for i in range(5)])
    config = mixture(
        tmp_path,
        [{"name": "chat", "mix_ratio": 1.0, "source": "train.jsonl", "validation_source": "val.jsonl"}],
        phase="sft",
    )
    result = build(config, tmp_path / "out")
    for split, jsonl in result.files.items():
        report = verify(jsonl)
        assert report.ok, (split, report.problems)
        rows = pq.read_table(jsonl.with_suffix(".parquet")).to_pylist()
        by_line = read_jsonl(jsonl)
        assert [json.loads(r["meta"]) for r in rows] == [r["meta"] for r in by_line]
        assert [json.loads(r["id"]) for r in rows] == [r["id"] for r in by_line]
        # Checked message fields stay columns of structs.
        assert rows[0]["conversations"][0]["role"] == "user"


def test_messages_whose_extra_keys_disagree_are_kept_as_json_text(tmp_path: Path) -> None:
    """A message key that is a number in one record and a string in another had no Parquet
    type: the build failed with no file, line or field. The field is now JSON text."""
    from mixprep.verify import verify

    records = []
    for i in range(40):
        user: dict[str, object] = {"role": "user", "content": f"q{i}"}
        if i == 7:
            user["name"] = 7
        if i == 9:
            user["name"] = "bob"
        records.append({"conversations": [user, {"role": "assistant", "content": f"a{i}", "tag": "t"}]})
    write_jsonl(tmp_path / "chat.jsonl", records)
    config = mixture(tmp_path, [{"name": "chat", "mix_ratio": 1.0, "source": "chat.jsonl"}], phase="sft")
    jsonl = build(config, tmp_path / "out").files["train"]
    assert verify(jsonl).ok
    table = pq.read_table(jsonl.with_suffix(".parquet"))
    assert table.schema.field("conversations").type == pa.string()
    assert [json.loads(v) for v in table["conversations"].to_pylist()] == [r["conversations"] for r in read_jsonl(jsonl)]
    # Extra keys that agree keep the column nested.
    write_jsonl(tmp_path / "chat.jsonl", [{**r, "conversations": [{**m, "name": "x"} for m in r["conversations"]]} for r in records])
    table = pq.read_table(build(config, tmp_path / "out").files["train"].with_suffix(".parquet"))
    assert pa.types.is_list(table.schema.field("conversations").type)
