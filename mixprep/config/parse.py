"""Mixture YAML -> `schema` types. All validation of a mixture lives here (sources in
`source_specs`, typed reads of single values in `checks`).

Every problem is collected, not raised: each names the YAML file and the key path
(`toy.yaml: datasets[1].mix_ratio: ...`), with a "did you mean" hint for a mistyped
key, and ends up in `MixtureConfig.problems`. The YAML is loaded with `safe_load`;
nothing in it is evaluated.
"""
from __future__ import annotations

import dataclasses
import difflib
import glob
import hashlib
import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import orjson

from mixprep.config.checks import Problems, canonical, choice_value, integer_value, string_value
from mixprep.config.schema import (
    DECONTAMINATION_NGRAM,
    DEFAULT_BUCKET_MB,
    DEFAULT_SEED,
    DEFAULT_SEQ_LEN,
    PHASE_PREFIXES,
    RATIO_TOLERANCE,
    DatasetSpec,
    DecontaminationSpec,
    DedupSpec,
    EvalSet,
    MixtureConfig,
    PackSpec,
    RepeatPolicy,
    SourceSpec,
    ValidationSpec,
    record_schema_for,
)
from mixprep.config.source_specs import SOURCE_MAPPING_KEYS, parse_source
from mixprep.filters.registry import FilterChain
from mixprep.filters.rules import merge_chains, parse_filters

METADATA_KEYS = (
    "phase", "name", "seed", "total_samples", "validation", "data_dir", "output_dir", "filters",
    "on_bad_record", "repeats", "filter_on", "shuffle_bucket_mb", "text_field", "dedup",
    "annotate_language", "decontaminate", "tokenizer", "mix_by", "total_tokens", "pack",
)
DATASET_KEYS = (
    "name", "mix_ratio", "max_samples", "max_tokens", "source", "validation_source", "text_field", "filters",
)
VALIDATION_KEYS = ("fraction", "samples")
REPEATS_KEYS = ("warn_above", "max_factor")
DEDUP_KEYS = ("method", "threshold", "num_perm", "ngram")
DEDUP_METHODS = ("exact", "near")
DECONTAMINATE_KEYS = ("sources", "ngram", "field")
EVAL_SET_KEYS = ("name", "field")
MAX_DECONTAMINATION_NGRAM = 1000


def parse_mixture(raw: Mapping[str, Any], path: Path) -> MixtureConfig:
    problems = Problems(path)
    base = path.resolve().parent
    problems.unknown_keys(raw, ("metadata", "datasets"), "")
    meta = raw.get("metadata") or {}
    if not isinstance(meta, Mapping):
        problems.add("metadata", f"expected a mapping, got {type(meta).__name__}")
        meta = {}
    problems.unknown_keys(meta, METADATA_KEYS, "metadata")

    phase = string_value(meta, "phase", "metadata", problems, default="pretrain")
    name = string_value(meta, "name", "metadata", problems, default=path.stem)
    for key, value in (("phase", phase), ("name", name)):
        if "/" in value or "\\" in value or not value or not value.isprintable():
            problems.add(
                f"metadata.{key}",
                f"{value!r} must be a non-empty name without slashes or control characters (it goes into file names)",
            )
    _check_phase(phase, problems)
    longest = f"{phase}_{name}_validation.manifest.json".encode()
    if len(longest) > MAX_FILE_NAME_BYTES:
        problems.add(
            "metadata.name",
            f"phase and name make output file names of up to {len(longest)} bytes ({longest[:40].decode(errors='replace')}...); "
            f"file systems take {MAX_FILE_NAME_BYTES}: shorten the phase or the name",
        )
    seed = integer_value(meta, "seed", "metadata", problems, default=DEFAULT_SEED, minimum=0)
    total_samples = integer_value(meta, "total_samples", "metadata", problems, default=None, minimum=1)
    data_dir = base / string_value(meta, "data_dir", "metadata", problems, default=".")
    output_dir_raw = meta.get("output_dir")
    output_dir = (base / str(output_dir_raw)) if output_dir_raw is not None else None
    default_text_field = string_value(meta, "text_field", "metadata", problems, default="text")
    on_bad_record = choice_value(meta, "on_bad_record", ("error", "skip"), "metadata", problems, default="error")
    filter_on = choice_value(meta, "filter_on", ("all", "assistant"), "metadata", problems, default="all")
    bucket_mb = integer_value(meta, "shuffle_bucket_mb", "metadata", problems, default=DEFAULT_BUCKET_MB, minimum=1)
    validation = _validation(meta.get("validation"), problems)
    repeats = _repeats(meta.get("repeats"), problems)
    global_filters = _filters(meta.get("filters"), "metadata.filters", problems)
    dedup = _dedup(meta.get("dedup"), problems)
    decontaminate = _decontaminate(meta.get("decontaminate"), base, problems)
    tokenizer = _tokenizer(meta.get("tokenizer"), base, problems)
    mix_by = choice_value(meta, "mix_by", ("records", "tokens"), "metadata", problems, default="records")
    total_tokens = integer_value(meta, "total_tokens", "metadata", problems, default=None, minimum=1)
    _check_mix_by(meta, mix_by, total_tokens, problems)
    pack = _pack(meta, phase, problems)
    annotate_language = meta.get("annotate_language", False)
    if not isinstance(annotate_language, bool):
        problems.add("metadata.annotate_language", f"expected true or false, got {annotate_language!r}")
        annotate_language = False

    datasets = _datasets(
        raw.get("datasets"), base, data_dir, default_text_field, global_filters, problems, has_tokenizer=meta.get("tokenizer") is not None
    )
    _check_cleaning(phase, meta, raw.get("datasets"), problems)
    if datasets:
        total = math.fsum(d.mix_ratio for d in datasets)
        if abs(total - 1.0) > RATIO_TOLERANCE:
            problems.add("datasets", f"mix_ratio values sum to {total:.6g}, expected 1 (within {RATIO_TOLERANCE:g})")

    digest = hashlib.sha256(orjson.dumps(canonical(raw), option=orjson.OPT_SORT_KEYS)).hexdigest()
    return MixtureConfig(
        path=path,
        phase=phase,
        name=name,
        seed=seed,
        datasets=tuple(datasets),
        total_samples=total_samples,
        validation=validation,
        output_dir=output_dir,
        on_bad_record=on_bad_record,  # type: ignore[arg-type]
        repeats=repeats,
        filter_on=filter_on,  # type: ignore[arg-type]
        shuffle_bucket_mb=bucket_mb,
        dedup=dedup,
        decontaminate=decontaminate,
        annotate_language=annotate_language,
        tokenizer=tokenizer,
        mix_by=mix_by,  # type: ignore[arg-type]
        total_tokens=total_tokens,
        pack=pack,
        problems=tuple(problems.items),
        raw_digest=digest,
    )


# -- pieces ---------------------------------------------------------------------

MAX_FILE_NAME_BYTES = 255  # ext4, xfs, btrfs, APFS, NTFS


def _check_cleaning(phase: str, meta: Mapping[str, Any], entries: Any, problems: Problems) -> None:
    """`c4` rewrites a pretrain text (its kept lines); other phases' records are conversations or pairs."""
    if record_schema_for(phase) == "pretrain":
        return
    places = [("metadata.filters", meta.get("filters"))]
    if isinstance(entries, list):
        places += [(f"datasets[{i}].filters", e.get("filters")) for i, e in enumerate(entries) if isinstance(e, Mapping)]
    for where, filters in places:
        if isinstance(filters, Mapping) and "c4" in filters:
            problems.add(f"{where}.c4", f"C4 line cleaning rewrites pretrain texts; phase {phase!r} keeps its records as they are")


def _check_phase(phase: str, problems: Problems) -> None:
    """The phase's prefix picks the record schema: a typo would read every record as pretrain text."""
    lowered = phase.lower()
    prefixes = [prefix for prefix, _ in PHASE_PREFIXES]
    if not phase or any(lowered.startswith(prefix) for prefix in prefixes):
        return
    word = re.split(r"[^a-z]", lowered, maxsplit=1)[0]
    hint = difflib.get_close_matches(word, prefixes, n=1, cutoff=0.5)
    did_you_mean = f"; did you mean {hint[0]!r} ({hint[0] + lowered[len(word):]!r})?" if hint else ""
    problems.add(
        "metadata.phase",
        f"{phase!r} starts with none of {', '.join(prefixes)} (the prefix picks the record schema: pretrain text, "
        f"sft conversations, dpo pairs, ppo/rlaif/grpo prompts){did_you_mean}",
    )


def _validation(raw: Any, problems: Problems) -> ValidationSpec | None:
    if raw is None:
        return None
    if not isinstance(raw, Mapping):
        problems.add("metadata.validation", f"expected {{fraction: F}} or {{samples: N}}, got {raw!r}")
        return None
    problems.unknown_keys(raw, VALIDATION_KEYS, "metadata.validation")
    fraction, samples = raw.get("fraction"), raw.get("samples")
    if (fraction is None) == (samples is None):
        problems.add("metadata.validation", "give exactly one of `fraction` or `samples`")
        return None
    if fraction is not None:
        if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0 < fraction < 1:
            problems.add("metadata.validation.fraction", f"expected a number between 0 and 1 (exclusive), got {fraction!r}")
            return None
        return ValidationSpec(fraction=float(fraction))
    if isinstance(samples, bool) or not isinstance(samples, int) or samples < 1:
        problems.add("metadata.validation.samples", f"expected an integer >= 1, got {samples!r}")
        return None
    return ValidationSpec(samples=samples)


def _repeats(raw: Any, problems: Problems) -> RepeatPolicy:
    if raw is None:
        return RepeatPolicy()
    if not isinstance(raw, Mapping):
        problems.add("metadata.repeats", f"expected {{warn_above: F, max_factor: F}}, got {raw!r}")
        return RepeatPolicy()
    problems.unknown_keys(raw, REPEATS_KEYS, "metadata.repeats")
    values: dict[str, float | None] = {}
    for key in REPEATS_KEYS:
        value = raw.get(key)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 1:
            problems.add(f"metadata.repeats.{key}", f"expected a number >= 1, got {value!r}")
            continue
        values[key] = float(value)
    return RepeatPolicy(**values)  # type: ignore[arg-type]


def _dedup(raw: Any, problems: Problems) -> DedupSpec | None:
    """`dedup: exact`, `dedup: near`, or `dedup: {method: near, threshold: 0.8, num_perm: 128, ngram: 5}`."""
    if raw is None or raw is False:
        return None
    if isinstance(raw, str):
        raw = {"method": raw}
    if not isinstance(raw, Mapping):
        problems.add("metadata.dedup", f"expected exact, near or {{method: near, threshold: F}}, got {raw!r}")
        return None
    problems.unknown_keys(raw, DEDUP_KEYS, "metadata.dedup")
    method = raw.get("method")
    if method not in DEDUP_METHODS:
        problems.add("metadata.dedup.method", f"expected one of {', '.join(DEDUP_METHODS)}, got {method!r}")
        return None
    threshold = raw.get("threshold", 0.8)
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0 < threshold < 1:
        problems.add("metadata.dedup.threshold", f"expected a Jaccard similarity between 0 and 1 (exclusive), got {threshold!r}")
        return None
    num_perm = integer_value(raw, "num_perm", "metadata.dedup", problems, default=128, minimum=16)
    ngram = integer_value(raw, "ngram", "metadata.dedup", problems, default=5, minimum=1)
    return DedupSpec(method=method, threshold=float(threshold), num_perm=num_perm, ngram=ngram)


def _decontaminate(raw: Any, base: Path, problems: Problems) -> DecontaminationSpec | None:
    """`decontaminate: {sources: [evals/gsm8k.jsonl, {name: arc, hf: ./arc, split: test, field: question}], ngram: 13, field: text}`."""
    where = "metadata.decontaminate"
    if raw is None or raw is False:
        return None
    if not isinstance(raw, Mapping):
        problems.add(where, f"expected {{sources: [evaluation files or sources], ngram: 13, field: text}}, got {raw!r}")
        return None
    problems.unknown_keys(raw, DECONTAMINATE_KEYS, where)
    ngram = integer_value(raw, "ngram", where, problems, default=DECONTAMINATION_NGRAM, minimum=1)
    if ngram > MAX_DECONTAMINATION_NGRAM:
        problems.add(f"{where}.ngram", f"expected at most {MAX_DECONTAMINATION_NGRAM} words, got {ngram}")
    default_fields = _eval_fields(raw.get("field", "text"), f"{where}.field", problems)
    entries = raw.get("sources")
    if isinstance(entries, (str, Mapping)):
        entries = [entries]
    if not isinstance(entries, list) or not entries:
        problems.add(f"{where}.sources", f"expected a list of evaluation sets (paths, globs or source mappings), got {entries!r}")
        return None
    eval_sets: list[EvalSet] = []
    for j, entry in enumerate(entries):
        entry_where = f"{where}.sources[{j}]"
        name, fields = None, default_fields
        if isinstance(entry, Mapping):
            problems.unknown_keys(entry, SOURCE_MAPPING_KEYS + EVAL_SET_KEYS, entry_where)
            name = entry.get("name")
            if name is not None and (not isinstance(name, str) or not name):
                problems.add(f"{entry_where}.name", f"expected a non-empty string, got {name!r}")
                name = None
            if "field" in entry:
                fields = _eval_fields(entry["field"], f"{entry_where}.field", problems)
            entry = {k: v for k, v in entry.items() if k in SOURCE_MAPPING_KEYS}
        if entry is None:
            problems.add(entry_where, "expected a path, a glob or a source mapping, got nothing")
            continue
        source = parse_source(entry, entry_where, f"sources[{j}]", base, None, problems)
        name = name or _eval_set_name(source, j)
        if any(e.name == name for e in eval_sets):
            problems.add(entry_where, f"evaluation set name {name!r} is taken by another; give each a `name:`")
        eval_sets.append(EvalSet(name=name, source=source, fields=fields))
    return DecontaminationSpec(eval_sets=tuple(eval_sets), ngram=ngram) if eval_sets else None


def _check_mix_by(meta: Mapping[str, Any], mix_by: str, total_tokens: int | None, problems: Problems) -> None:
    if mix_by == "tokens":
        if meta.get("tokenizer") is None:
            problems.add("metadata.mix_by", "tokens needs metadata.tokenizer (a local tokenizer folder) to count them")
        if meta.get("total_samples") is not None:
            problems.add("metadata.total_samples", "counts records; with mix_by: tokens give metadata.total_tokens instead")
    elif total_tokens is not None:
        problems.add("metadata.total_tokens", "applies with mix_by: tokens only (mix_by: records sizes the split by total_samples)")


def with_pack(config: MixtureConfig, seq_len: int | None) -> MixtureConfig:
    """`build --pack [SEQ_LEN]`: the mixture with packed output on (its own `pack:` settings
    kept, `seq_len` replaced when given), checked as `metadata.pack` is."""
    raw = dataclasses.asdict(config.pack) if config.pack is not None else {}
    if seq_len is not None:
        raw["seq_len"] = seq_len
    problems = Problems(config.path)
    meta = {"pack": {k: v for k, v in raw.items() if v is not None}, "tokenizer": config.tokenizer}
    pack = _pack(meta, config.phase, problems, where="--pack (metadata.pack)")
    return dataclasses.replace(config, pack=pack, problems=config.problems + tuple(problems.items))


def _pack(meta: Mapping[str, Any], phase: str, problems: Problems, where: str = "metadata.pack") -> PackSpec | None:
    """`pack: {seq_len: 2048, eod: "<|endoftext|>"}` (or `pack: true` for the defaults)."""
    raw = meta.get("pack")
    if raw is None or raw is False:
        return None
    if raw is True:
        raw = {}
    if not isinstance(raw, Mapping):
        problems.add(where, f"expected true or a mapping such as {{seq_len: 2048}}, got {raw!r}")
        return None
    problems.unknown_keys(raw, ("seq_len", "eod"), where)
    seq_len = integer_value(raw, "seq_len", where, problems, default=DEFAULT_SEQ_LEN, minimum=1)
    eod = raw.get("eod")
    if eod is not None and (not isinstance(eod, str) or not eod):
        problems.add(f"{where}.eod", f"expected the end-of-document token as written in the vocabulary, got {eod!r}")
        eod = None
    if meta.get("tokenizer") is None:
        problems.add(where, "writes token ids, which needs metadata.tokenizer (a local tokenizer folder)")
    if record_schema_for(phase) != "pretrain":
        problems.add(
            where,
            f"phase {phase!r} keeps one record per sample: SFT, DPO and RL records stay unpacked (their loss masks "
            "and pairs differ per record); packing applies to pretrain phases",
        )
    return PackSpec(seq_len=seq_len, eod=eod)


def _tokenizer(raw: Any, base: Path, problems: Problems) -> str | None:
    """`tokenizer: tokenizers/minimind` (a folder holding tokenizer.json, or the file), relative to the YAML."""
    if raw is None:
        return None
    if not isinstance(raw, str) or not raw:
        problems.add("metadata.tokenizer", f"expected the path of a tokenizer folder or tokenizer.json, got {raw!r}")
        return None
    path = base / Path(raw).expanduser()
    if not path.exists():
        problems.add("metadata.tokenizer", f"no such file or folder: {path} (tokenizers are never downloaded: save it locally first)")
        return None
    return str(path)


def _eval_fields(raw: Any, where: str, problems: Problems) -> tuple[str, ...]:
    values = raw if isinstance(raw, list) else [raw]
    if not values or not all(isinstance(v, str) and v and not v.startswith(".") and not v.endswith(".") for v in values):
        problems.add(where, f"expected a field name (dotted for a nested one: choices.text) or a list of them, got {raw!r}")
        return ("text",)
    return tuple(values)


def _eval_set_name(source: SourceSpec, index: int) -> str:
    """An evaluation set's default name: the hub dataset's, or its first file's stem (or folder's, for a glob)."""
    if source.hub is not None:
        return Path(source.hub.repo.rstrip("/")).name
    if not source.patterns:
        return f"eval{index}"
    pattern = source.patterns[0].rstrip("/")
    parts = [p for p in re.split(r"[/\\]", pattern) if p]
    stem = parts[-1].split(".")[0] if parts else ""
    if not stem or glob.has_magic(stem):
        stem = next((p for p in reversed(parts[:-1]) if not glob.has_magic(p)), f"eval{index}")
    return stem


def _filters(raw: Any, key_path: str, problems: Problems) -> FilterChain:
    if raw is None:
        return ()
    if not isinstance(raw, Mapping):
        problems.add(key_path, f"expected a mapping of filter: threshold, got {raw!r}")
        return ()
    chain, filter_problems = parse_filters(raw, key_path)
    for problem in filter_problems:
        problems.items.append(f"{problems.path.name}: {problem}")
    base = problems.path.resolve().parent
    return tuple((name, _resolve_tokenizer(value, base)) for name, value in chain)


def _resolve_tokenizer(value: Any, base: Path) -> Any:
    """A filter's relative `tokenizer:` path resolves against the YAML's folder, like sources."""
    tokenizer = getattr(value, "tokenizer", None)
    if isinstance(tokenizer, str) and tokenizer and not Path(tokenizer).is_absolute() and (base / tokenizer).exists():
        return dataclasses.replace(value, tokenizer=str(base / tokenizer))
    return value


def _datasets(
    raw: Any,
    base: Path,
    data_dir: Path,
    default_text_field: str,
    global_filters: FilterChain,
    problems: Problems,
    *,
    has_tokenizer: bool,
) -> list[DatasetSpec]:
    if not isinstance(raw, list) or not raw:
        problems.add("datasets", f"expected a non-empty list of datasets, got {raw!r}")
        return []
    datasets: list[DatasetSpec] = []
    seen: set[str] = set()
    for i, entry in enumerate(raw):
        where = f"datasets[{i}]"
        if not isinstance(entry, Mapping):
            problems.add(where, f"expected a mapping with name and mix_ratio, got {entry!r}")
            continue
        problems.unknown_keys(entry, DATASET_KEYS, where)
        name = entry.get("name")
        if not isinstance(name, str) or not name:
            problems.add(f"{where}.name", f"expected a non-empty string, got {name!r}")
            name = f"dataset{i}"
        elif name in seen:
            problems.add(f"{where}.name", f"{name!r} is used by another dataset; names must be unique (they label records)")
        seen.add(name)
        ratio = entry.get("mix_ratio")
        if ratio is None:
            problems.add(f"{where}.mix_ratio", "missing; every dataset needs a mix_ratio (a number >= 0; all sum to 1)")
            ratio = 0.0
        elif isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not 0 <= ratio <= 1 or not math.isfinite(ratio):
            problems.add(f"{where}.mix_ratio", f"expected a number from 0 to 1, got {ratio!r}")
            ratio = 0.0
        max_samples = integer_value(entry, "max_samples", where, problems, default=None, minimum=1)
        max_tokens = integer_value(entry, "max_tokens", where, problems, default=None, minimum=1)
        if max_tokens is not None and not has_tokenizer:
            problems.add(
                f"{where}.max_tokens",
                "caps the source's tokens, which needs metadata.tokenizer to count them "
                "(a per-record limit is `filters: {max_tokens: N}`)",
            )
        text_field = string_value(entry, "text_field", where, problems, default=default_text_field)
        local_filters = _filters(entry.get("filters"), f"{where}.filters", problems)
        source = parse_source(entry.get("source"), f"{where}.source", name, base, data_dir, problems)
        validation_source = None
        if entry.get("validation_source") is not None:
            validation_source = parse_source(entry["validation_source"], f"{where}.validation_source", name, base, None, problems)
        datasets.append(
            DatasetSpec(
                name=name,
                mix_ratio=float(ratio),
                source=source,
                max_samples=max_samples,
                max_tokens=max_tokens,
                validation_source=validation_source,
                text_field=text_field,
                filters=merge_chains(global_filters, local_filters),
            )
        )
    return datasets


