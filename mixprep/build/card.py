"""The output folder's dataset card (`README.md`): what the Hugging Face hub shows and what
`datasets.load_dataset(<folder>)` reads.

Its YAML front matter names one `configs:` entry per mixture built into the folder
(`<phase>_<name>`, the latest build the default), each split pointing at its Parquet
sidecar by a relative path, so loading the folder (or the hub repo it is uploaded to)
gives the mixture's splits and never trips over the JSONL, `.idx` and manifests beside
them. The body is written from the manifests alone: the mixture table, the filters, seed,
counts and how to rebuild. A `README.md` that mixprep did not write is left alone.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import orjson
import yaml

from mixprep.manifest_file import read_manifest

log = logging.getLogger(__name__)

CARD_NAME = "README.md"
MARKER = "<!-- mixprep dataset card: rewritten by each build into this folder; edits are lost -->"


def write_card(out_dir: Path, latest: str) -> Path | None:
    """(Re)write the folder's card from every finished build in it; `latest` is the
    `<phase>_<name>` just built (the default config). None when a README.md that mixprep did
    not write is in the way."""
    path = out_dir / CARD_NAME
    if path.exists() and MARKER not in path.read_text(encoding="utf-8", errors="replace"):
        log.warning("%s exists and was not written by mixprep: the dataset card was not written", path)
        return None
    text = dataset_card(_mixtures(out_dir), latest)
    tmp = out_dir / f".{CARD_NAME}.{os.getpid()}.tmp"
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
    return path


def _mixtures(out_dir: Path) -> dict[str, dict[str, dict[str, Any]]]:
    """`<phase>_<name>` -> split -> manifest, for every finished build in the folder."""
    found: dict[str, dict[str, dict[str, Any]]] = {}
    for path in sorted(out_dir.glob("*.manifest.json")):
        manifest = read_manifest(path)
        if manifest is None or not (out_dir / manifest["output"]["parquet"]["file"]).is_file():
            continue
        found.setdefault(f"{manifest['phase']}_{manifest['name']}", {})[manifest["split"]] = manifest
    return found


def dataset_card(mixtures: dict[str, dict[str, dict[str, Any]]], latest: str) -> str:
    configs = []
    for key in sorted(mixtures, key=lambda k: (k != latest, k)):
        splits = mixtures[key]
        entry: dict[str, Any] = {"config_name": key}
        if key == latest:
            entry["default"] = True
        entry["data_files"] = [{"split": s, "path": splits[s]["output"]["parquet"]["file"]} for s in _ordered(splits)]
        configs.append(entry)
    front = yaml.safe_dump({"configs": configs, "tags": ["mixprep"]}, sort_keys=False)
    sections = [_section(key, mixtures[key]) for key in sorted(mixtures, key=lambda k: (k != latest, k))]
    return f"---\n{front}---\n{MARKER}\n\n" + "\n\n".join(sections) + "\n"


def _ordered(splits: dict[str, Any]) -> list[str]:
    return sorted(splits, key=lambda s: (s != "train", s))


def _section(key: str, splits: dict[str, dict[str, Any]]) -> str:
    train = splits.get("train") or next(iter(splits.values()))
    lines = [
        f"# {train['name']} ({train['phase']})",
        "",
        f"A {train['record_schema']} data mixture built by mixprep "
        f"{train['packages'].get('mixprep', '')} from `{train['config']['path']}` "
        f"(config sha256 `{train['config']['sha256'][:16]}…`), seed {train['seed']}. "
        "Each split is a JSONL file (one record per line, with an `.idx` byte-offset index for random access) "
        "and a Parquet file with the same rows in the same order; `*.manifest.json` holds the full accounting "
        "and `mixprep verify` checks the files against it.",
        "",
        "| split | records | JSONL | Parquet |",
        "|---|--:|---|---|",
    ]
    for split in _ordered(splits):
        output = splits[split]["output"]
        lines.append(f"| {split} | {output['records']:,} | `{output['jsonl']}` ({_mb(output['bytes'])}) | `{output['parquet']['file']}` |")
    lines += ["", "## Mixture", "", *_mixture_table(splits), "", "## Filters", "", *_filters(train)]
    decontamination = train.get("decontamination")
    if decontamination:
        lines += ["", "## Decontamination", "", *_decontamination(decontamination)]
    lines += ["", "## Loading", "", "```python", "from datasets import load_dataset", "",
              f'mixture = load_dataset("path/to/this/folder", "{key}")  # or the hub repo it was uploaded to',
              "```", "", "or, for training with mixprep (O(1) random access to the JSONL):", "", "```python",
              "from mixprep import UnifiedDataset", "",
              f'dataset = UnifiedDataset("{train["output"]["jsonl"]}", tokenizer, max_length=512, '
              f'phase="{_serve_phase(train["record_schema"])}")', "```"]
    packed = train["output"].get("packed")
    if packed:
        lines += ["", f"Packed: each split also as `{packed['dtype']}` token ids, every record followed by `{packed['eod']}` "
                  f"(Megatron-LM's indexed dataset, `{packed['bin']}` + `{packed['idx']}`: {packed['tokens']:,} tokens; "
                  "Megatron-LM, NeMo and GPT-NeoX read it as it is):", "", "```python", "from mixprep import PackedDataset", "",
                  f'windows = PackedDataset("{packed["bin"].removesuffix(".bin")}", seq_len={packed["seq_len"]})  '
                  "# (X, Y, loss_mask), every position trained", "```"]
    return "\n".join(lines)


def _mixture_table(splits: dict[str, dict[str, Any]]) -> list[str]:
    train = splits.get("train") or next(iter(splits.values()))
    validation = splits.get("validation")
    total = train["output"]["records"] or 1
    units = [u for u in ("bytes", "tokens") if all(u in s.get("share", {}) for s in train["sources"].values())]
    rows = [
        "| source | mix ratio | read | bad | removed | available | train records | share | repeated | validation |"
        + "".join(f" {u} share |" for u in units),
        "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|" + "--:|" * len(units),
    ]
    for name, s in train["sources"].items():
        held = validation["sources"][name]["quota"] if validation else 0
        rows.append(
            f"| {name} | {s['mix_ratio']:g} | {s['read']:,} | {sum(s['bad'].values()):,} | {sum(s['removed'].values()):,} | "
            f"{s['available']:,} | {s['quota']:,} | {100 * s['quota'] / total:.1f}% | {s['extra_copies']:,} | {held:,} |"
            + "".join(f" {100 * s['share'][u]:.1f}% |" for u in units)
        )
    mixed_by = train.get("mix_by", "records")
    tokens = f"; {train['output']['tokens']:,} tokens in train" if "tokens" in train["output"] else ""
    note = f"`mix ratio` is a share of {mixed_by}{tokens}"
    return [note + ".", "", *rows]


def _filters(manifest: dict[str, Any]) -> list[str]:
    lines = []
    for name, s in manifest["sources"].items():
        settings = ", ".join(f"`{k}: {_setting(v)}`" for k, v in s.get("filters", {}).items()) or "none"
        removed = ", ".join(f"{k} {v:,}" for k, v in s["removed"].items()) or "nothing"
        lines.append(f"- **{name}** ({', '.join(f'`{p}`' for p in s['source'])}): {settings}; removed: {removed}")
    return lines


def _decontamination(block: dict[str, Any]) -> list[str]:
    lines = [f"Training records sharing a {block['ngram']}-word n-gram with these evaluation sets were removed:", ""]
    for name, s in block["eval_sets"].items():
        removed = sum(s["removed_records"].values())
        lines.append(f"- **{name}** (`{s['source']}`, fields {', '.join(s['fields'])}): {s['records']:,} records, {removed:,} removed")
    return lines


def _setting(value: Any) -> str:
    return orjson.dumps(value).decode() if isinstance(value, (dict, list)) else str(value)


def _mb(size: int) -> str:
    return f"{size / 1e6:,.1f} MB"


def _serve_phase(schema: str) -> str:
    return {"rl": "ppo"}.get(schema, schema)
