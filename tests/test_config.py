"""Mixture YAML -> frozen config (DESIGN §1): defaults, sources, and every problem
named with the YAML file and key path, all listed at once."""
from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest
from helpers import build, mixture, texts, write_jsonl, write_yaml

from mixprep.config import load_mixture, record_schema_for
from mixprep.errors import ConfigError
from mixprep.mixer import DatasetMixer


@pytest.fixture
def data(tmp_path: Path) -> Path:
    write_jsonl(tmp_path / "data" / "a.jsonl", texts("a", 10))
    write_jsonl(tmp_path / "data" / "b.jsonl", texts("b", 10))
    return tmp_path / "data"


def two(ratio_a: float = 0.5, ratio_b: float = 0.5, **extra_b) -> list[dict]:
    return [
        {"name": "a", "mix_ratio": ratio_a, "source": "data/a.jsonl"},
        {"name": "b", "mix_ratio": ratio_b, "source": "data/b.jsonl", **extra_b},
    ]


def problems_of(path: Path) -> list[str]:
    return list(load_mixture(path).problems)


def test_shipped_toy_mixture_parses_to_typed_frozen_config(toy_config: Path, example_data: Path) -> None:
    config = load_mixture(toy_config)
    assert config.is_valid, config.problems
    assert (config.phase, config.name, config.seed, config.record_schema) == ("pretrain_phase1", "toy", 42, "pretrain")
    assert [(d.name, d.mix_ratio, d.max_samples) for d in config.datasets] == [
        ("tinystories", 0.6, 50000),
        ("custom_data", 0.4, 30000),
    ]
    # Global filters come first, per-dataset ones after.
    assert config.datasets[0].filters == (("min_chars", 20), ("max_chars", 20000))
    assert config.datasets[1].filters == (("min_chars", 20),)
    assert config.datasets[0].source.patterns == (str(example_data / "tinystories.jsonl"),)
    assert config.splits() == ("train", "validation")
    assert config.stem("train") == "pretrain_phase1_toy_train"
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.seed = 1  # type: ignore[misc]


def test_defaults_name_from_file_stem_seed_42_text_field(tmp_path: Path, data: Path) -> None:
    path = write_yaml(tmp_path / "my_mix.yaml", {"metadata": {"phase": "pretrain_pt"}, "datasets": two()})
    config = load_mixture(path)
    assert config.is_valid, config.problems
    assert (config.name, config.seed, config.total_samples, config.validation) == ("my_mix", 42, None, None)
    assert config.on_bad_record == "error"
    assert all(d.text_field == "text" for d in config.datasets)
    assert config.splits() == ("train",)


def test_relative_sources_resolve_against_the_yaml_folder_not_cwd(
    tmp_path: Path, data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = mixture(tmp_path, two())
    monkeypatch.chdir("/")
    config = load_mixture(path)
    assert config.is_valid, config.problems
    assert config.datasets[0].source.patterns == (str(tmp_path / "data" / "a.jsonl"),)


def test_source_as_list_glob_mapping_and_data_dir_lookup(tmp_path: Path, data: Path) -> None:
    write_jsonl(tmp_path / "data" / "c.jsonl", texts("c", 3))
    path = mixture(
        tmp_path,
        [
            {"name": "listed", "mix_ratio": 0.25, "source": ["data/a.jsonl", "data/b.jsonl"]},
            {"name": "globbed", "mix_ratio": 0.25, "source": "data/*.jsonl"},
            {"name": "mapped", "mix_ratio": 0.25, "source": {"path": "data/a.jsonl", "format": "jsonl"}},
            {"name": "c", "mix_ratio": 0.25},  # found as data_dir/c.jsonl
        ],
        data_dir="data",
    )
    config = load_mixture(path)
    assert config.is_valid, config.problems
    listed, globbed, mapped, by_name = config.datasets
    assert len(listed.source.patterns) == 2
    assert globbed.source.patterns == (str(tmp_path / "data" / "*.jsonl"),)
    assert mapped.source.format == "jsonl"
    assert by_name.source.patterns == (str(tmp_path / "data" / "c.jsonl"),)


@pytest.mark.parametrize(
    ("phase", "schema"),
    [
        ("pretrain_phase1", "pretrain"),
        ("sft_mini", "sft"),
        ("SFT", "sft"),
        ("dpo", "dpo"),
        ("ppo_x", "rl"),
        ("rlaif", "rl"),
        ("midtrain", "pretrain"),
    ],
)
def test_phase_prefix_selects_record_schema(phase: str, schema: str) -> None:
    assert record_schema_for(phase) == schema


def test_missing_mixture_file() -> None:
    with pytest.raises(ConfigError, match=r"nope\.yaml: mixture file not found"):
        load_mixture("/definitely/not/here/nope.yaml")


def test_invalid_yaml_names_file_line_and_column(tmp_path: Path) -> None:
    path = write_yaml(tmp_path / "broken.yaml", "metadata:\n  phase: x\n datasets: [\n")
    with pytest.raises(ConfigError, match=r"broken\.yaml: invalid YAML at line \d+, column \d+"):
        load_mixture(path)


def test_yaml_is_loaded_safely_nothing_is_evaluated(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    path = write_yaml(tmp_path / "evil.yaml", f"metadata: !!python/object/apply:os.system ['touch {marker}']\n")
    with pytest.raises(ConfigError, match=r"evil\.yaml: invalid YAML"):
        load_mixture(path)
    assert not marker.exists()


def test_yaml_that_is_not_a_mapping(tmp_path: Path) -> None:
    path = write_yaml(tmp_path / "list.yaml", "- a\n- b\n")
    with pytest.raises(ConfigError, match=r"list\.yaml: expected a mapping with `metadata` and `datasets`, got list"):
        load_mixture(path)


def test_unknown_keys_get_did_you_mean_with_key_path(tmp_path: Path, data: Path) -> None:
    datasets = two()
    datasets[1]["mix_ration"] = datasets[1].pop("mix_ratio")
    datasets[0]["max_sample"] = 5
    path = write_yaml(tmp_path / "typo.yaml", {"metadata": {"phase": "p", "sed": 1}, "datasets": datasets})
    problems = problems_of(path)
    joined = "\n".join(problems)
    assert "typo.yaml: metadata.sed: unknown key; did you mean 'seed'?" in joined
    assert "typo.yaml: datasets[0].max_sample: unknown key; did you mean 'max_samples'?" in joined
    assert "typo.yaml: datasets[1].mix_ration: unknown key; did you mean 'mix_ratio'?" in joined
    assert "valid keys: name, mix_ratio" in joined


def test_unknown_filter_gets_did_you_mean(tmp_path: Path, data: Path) -> None:
    path = mixture(tmp_path, two(filters={"min_char": 5}))
    assert any(
        re.search(r"datasets\[1\]\.filters\.min_char: unknown filter.*did you mean 'min_chars'", p) for p in problems_of(path)
    ), problems_of(path)


def test_ratios_not_summing_to_one(tmp_path: Path, data: Path) -> None:
    path = mixture(tmp_path, two(0.5, 0.4))
    assert problems_of(path) == ["mix.yaml: datasets: mix_ratio values sum to 0.9, expected 1 (within 1e-06)"]
    report = DatasetMixer.from_yaml(path).validate_mixture()
    assert report["is_valid"] is False
    assert report["total_ratio"] == pytest.approx(0.9)
    assert report["errors"] == problems_of(path)


def test_ratios_within_tolerance_are_accepted(tmp_path: Path, data: Path) -> None:
    path = mixture(tmp_path, two(0.1 + 0.2, 0.7))  # 0.30000000000000004 + 0.7
    assert problems_of(path) == []


def test_ratios_outside_0_to_1(tmp_path: Path, data: Path) -> None:
    path = mixture(tmp_path, two(1.1, -0.1))
    problems = problems_of(path)
    assert "mix.yaml: datasets[0].mix_ratio: expected a number from 0 to 1, got 1.1" in problems
    assert "mix.yaml: datasets[1].mix_ratio: expected a number from 0 to 1, got -0.1" in problems


def test_missing_file_and_empty_glob_are_config_problems(tmp_path: Path, data: Path) -> None:
    path = mixture(
        tmp_path,
        [
            {"name": "a", "mix_ratio": 0.5, "source": "data/missing.jsonl"},
            {"name": "b", "mix_ratio": 0.5, "source": "data/*.parquet"},
        ],
    )
    problems = problems_of(path)
    assert f"mix.yaml: datasets[0].source: file not found: {tmp_path / 'data' / 'missing.jsonl'}" in problems
    assert f"mix.yaml: datasets[1].source: glob matches no file: {tmp_path / 'data' / '*.parquet'}" in problems


def test_dataset_without_source_or_data_dir_match(tmp_path: Path) -> None:
    path = mixture(tmp_path, [{"name": "ghost", "mix_ratio": 1.0}])
    (problem,) = problems_of(path)
    assert problem.startswith("mix.yaml: datasets[0].source: no `source` given and none of")
    assert "ghost.jsonl" in problem and "set `source:` or metadata.data_dir" in problem


def test_every_problem_listed_at_once_and_build_refuses(tmp_path: Path, data: Path) -> None:
    datasets = two(0.7, -0.1)
    datasets[0]["textfield"] = "body"
    datasets.append({"name": "a", "mix_ratio": 0.1, "source": "data/a.jsonl"})
    path = mixture(tmp_path, datasets, seed=-3, validation={"fraction": 2})
    problems = problems_of(path)
    assert len(problems) == 6, problems
    for needle in (
        "metadata.seed: expected an integer from 0 to 9,223,372,036,854,775,807 (2^63 - 1), got -3",
        "metadata.validation.fraction: expected a number between 0 and 1",
        "datasets[0].textfield: unknown key; did you mean 'text_field'?",
        "datasets[1].mix_ratio: expected a number from 0 to 1, got -0.1",
        "datasets[2].name: 'a' is used by another dataset",
        "datasets: mix_ratio values sum to 0.8",  # the negative ratio counts as 0
    ):
        assert any(needle in p for p in problems), (needle, problems)
    with pytest.raises(ConfigError, match=r"mix\.yaml: the mixture has 6 problem\(s\):\n  - ") as caught:
        build(path, tmp_path / "out")
    assert all(p in str(caught.value) for p in problems)
    assert not (tmp_path / "out").exists()


def test_validation_needs_exactly_one_of_fraction_or_samples(tmp_path: Path, data: Path) -> None:
    path = mixture(tmp_path, two(), validation={"fraction": 0.1, "samples": 5})
    assert "mix.yaml: metadata.validation: give exactly one of `fraction` or `samples`" in problems_of(path)
    ok = load_mixture(mixture(tmp_path, two(), validation={"samples": 4}))
    assert ok.is_valid and ok.validation is not None and ok.validation.samples == 4
    assert ok.splits() == ("train", "validation")


def test_on_bad_record_and_repeats_choices(tmp_path: Path, data: Path) -> None:
    path = mixture(tmp_path, two(), on_bad_record="ignore", repeats={"max_factor": 0.5})
    problems = problems_of(path)
    assert "mix.yaml: metadata.on_bad_record: expected one of error, skip, got 'ignore'" in problems
    assert "mix.yaml: metadata.repeats.max_factor: expected a number >= 1, got 0.5" in problems


def test_name_with_slash_is_refused_because_it_goes_into_file_names(tmp_path: Path, data: Path) -> None:
    path = mixture(tmp_path, two(), name="../escape")
    assert any("metadata.name: '../escape' must be a non-empty name without slashes" in p for p in problems_of(path))


def test_validate_mixture_reports_valid_mixture(tmp_path: Path, data: Path) -> None:
    report = DatasetMixer.from_yaml(mixture(tmp_path, two(0.25, 0.75))).validate_mixture()
    assert report["is_valid"] is True and report["errors"] == []
    assert report["total_ratio"] == 1.0
    assert report["datasets"]["b"]["mix_ratio"] == 0.75 and report["datasets"]["b"]["files"] == 1


def test_config_digest_changes_with_content(tmp_path: Path, data: Path) -> None:
    first = load_mixture(mixture(tmp_path, two(), seed=1)).raw_digest
    second = load_mixture(mixture(tmp_path, two(), seed=2)).raw_digest
    again = load_mixture(mixture(tmp_path, two(), seed=1)).raw_digest
    assert first == again != second


def test_per_dataset_filter_threshold_overrides_the_global_one(tmp_path: Path, data: Path) -> None:
    datasets = two(filters={"min_chars": 5, "min_words": 2})
    config = load_mixture(mixture(tmp_path, datasets, filters={"min_chars": 20, "max_words": 100}))
    assert config.datasets[0].filters == (("min_chars", 20), ("max_words", 100))
    assert config.datasets[1].filters == (("min_chars", 5), ("max_words", 100), ("min_words", 2))


@pytest.mark.parametrize(
    ("phase", "hint"),
    [("stf_v1", "; did you mean 'sft' ('sft_v1')?"), ("pretrian", "; did you mean 'pretrain' ('pretrain')?"), ("chat", "")],
)
def test_an_unknown_phase_prefix_is_a_validation_error_with_a_hint(tmp_path: Path, phase: str, hint: str) -> None:
    write_jsonl(tmp_path / "a.jsonl", texts("a", 5))
    config = mixture(tmp_path, [{"name": "a", "mix_ratio": 1.0, "source": "a.jsonl"}], phase=phase)
    report = DatasetMixer.from_yaml(config).validate_mixture()
    assert not report["is_valid"]
    expected = (
        f"mix.yaml: metadata.phase: {phase!r} starts with none of pretrain, sft, dpo, ppo, rlaif, grpo "
        f"(the prefix picks the record schema: pretrain text, sft conversations, dpo pairs, ppo/rlaif/grpo prompts){hint}"
    )
    assert report["errors"] == [expected]


def test_huge_integers_and_control_characters_are_problems_not_tracebacks(tmp_path: Path, data: Path) -> None:
    big = 2**64
    datasets = two()
    datasets[0]["max_samples"] = big
    datasets[1]["mix_ratio"] = 10**400
    path = write_yaml(tmp_path / "odd.yaml", {"metadata": {"phase": "pretrain\x00x", "seed": big, "name": "a\tb"}, "datasets": datasets})
    problems = problems_of(path)
    for needle in (
        "metadata.phase: 'pretrain\\x00x' must be a non-empty name without slashes or control characters",
        "metadata.name: 'a\\tb' must be a non-empty name without slashes or control characters",
        f"metadata.seed: expected an integer from 0 to 9,223,372,036,854,775,807 (2^63 - 1), got {big}",
        f"datasets[0].max_samples: expected an integer from 1 to 9,223,372,036,854,775,807 (2^63 - 1), got {big}",
        "datasets[1].mix_ratio: expected a number from 0 to 1, got 1000",
    ):
        assert any(needle in p for p in problems), (needle, problems)


def test_remote_timeouts_default_parse_and_are_checked(tmp_path: Path, data: Path) -> None:
    url = "s3://bucket/a/*.jsonl"
    datasets = [
        {"name": "a", "mix_ratio": 0.5, "source": {"path": url, "timeouts": {"connect": 2.5, "read": 30, "attempts": 4}}},
        {"name": "b", "mix_ratio": 0.5, "source": {"path": url}},
    ]
    config = load_mixture(mixture(tmp_path, datasets))
    assert config.is_valid, config.problems
    first, second = (d.source.timeouts for d in config.datasets)
    assert (first.connect, first.read, first.attempts) == (2.5, 30.0, 4)
    assert (second.connect, second.read, second.attempts) == (10.0, 60.0, 3)
    datasets[0]["source"]["timeouts"] = {"connect": 0, "read": "soon", "attempts": 1000, "total": 5}
    datasets[1]["source"]["timeouts"] = 30
    problems = "\n".join(problems_of(mixture(tmp_path, datasets)))
    assert "datasets[0].source.timeouts.connect: expected seconds, more than 0 and at most 86400, got 0" in problems
    assert "datasets[0].source.timeouts.read: expected seconds, more than 0 and at most 86400, got 'soon'" in problems
    assert "datasets[0].source.timeouts.attempts: expected at most 100 attempts, got 1000" in problems
    assert "datasets[0].source.timeouts.total: unknown key" in problems
    assert "datasets[1].source.timeouts: expected {connect: SECONDS, read: SECONDS, attempts: N}, got 30" in problems
