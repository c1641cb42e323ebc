"""The report page: one self-contained HTML file (inline CSS and SVG, no script, nothing
fetched), written next to the outputs as `<phase>_<name>.report.html`.

Every number in its tables comes from the manifests; each source's row carries
`data-source` and each cell `data-field`, so a test (or a user's script) can read the
rendered page and compare it with the manifest.
"""
from __future__ import annotations

import html
import os
from pathlib import Path
from typing import Any

import numpy as np

from mixprep.errors import OutputError
from mixprep.manifest_file import MANIFEST_FORMAT
from mixprep.report import figures
from mixprep.report.data import SplitData, mixture_manifests, split_data

STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2rem auto; max-width: 60rem; color: #222; padding: 0 1rem; }
h1 small, h2 small { color: #666; font-weight: normal; }
table { border-collapse: collapse; margin: 0.5rem 0 1rem; font-size: 0.85rem; }
th, td { border-bottom: 1px solid #ddd; padding: 0.25rem 0.6rem; text-align: right; }
th:first-child, td:first-child { text-align: left; }
figure { margin: 1rem 0; }
figure svg { max-width: 100%; height: auto; }
figcaption { color: #555; font-size: 0.85rem; }
pre { background: #f6f8fa; padding: 0.5rem; white-space: pre-wrap; word-break: break-all; font-size: 0.78rem; }
.facts td { text-align: left; }
"""
TABLE_FIELDS = (
    ("read", "read"), ("bad", "bad"), ("removed", "removed"), ("kept", "kept"), ("held_out_for_validation", "held out"),
    ("available", "available"), ("quota", "written"), ("extra_copies", "extra copies"), ("share", "share"),
)


def report_name(phase: str, name: str) -> str:
    return f"{phase}_{name}.report.html"


def write_report(
    out_dir: Path, phase: str, name: str, facts: dict[str, Any] | None = None, lengths: dict[str, dict[str, np.ndarray]] | None = None
) -> Path:
    """Draw the report of the mixture's finished splits in `out_dir` (write to a temporary
    name, then rename). `facts`: how the build ran (seconds by phase, input bytes, workers),
    known only to the build itself; a redrawn report says they were not recorded.
    `lengths`: per split and source, each written text's characters, from a build that
    knows them (otherwise they are read from the Parquet sidecar's texts)."""
    manifests = mixture_manifests(out_dir, phase, name)
    if not manifests:
        msg = f"no finished build of {phase}_{name} in {out_dir} (no {MANIFEST_FORMAT} manifest); build it first"
        raise OutputError(msg)
    splits = [split_data(out_dir, manifest, (lengths or {}).get(split)) for split, manifest in manifests.items()]
    path = out_dir / report_name(phase, name)
    tmp = out_dir / f".{path.name}.{os.getpid()}.tmp"
    tmp.write_text(render(splits, facts), encoding="utf-8")
    os.replace(tmp, path)
    return path


def render(splits: list[SplitData], facts: dict[str, Any] | None) -> str:
    first = splits[0].manifest
    title = f"{first['name']} ({first['phase']})"
    parts = [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>mixprep report: {html.escape(title)}</title>",
        f"<style>{STYLE}</style></head><body>",
        f"<h1>{html.escape(first['name'])} <small>{html.escape(first['phase'])} · {html.escape(first['record_schema'])}</small></h1>",
        _facts(first, splits, facts),
    ]
    parts += [_split_section(data) for data in splits]
    if first.get("decontamination"):
        parts.append(_decontamination(first["decontamination"]))
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def _facts(manifest: dict[str, Any], splits: list[SplitData], facts: dict[str, Any] | None) -> str:
    packages = ", ".join(f"{k} {v}" for k, v in manifest["packages"].items())
    rows = [
        ("config", f"{manifest['config']['path']} (sha256 {manifest['config']['sha256'][:16]}…)"),
        ("seed", str(manifest["seed"])),
        ("splits", ", ".join(f"{d.split}: {d.manifest['output']['records']:,} records" for d in splits)),
        ("options", ", ".join(f"{k}: {v}" for k, v in manifest["options"].items())),
        ("packages", packages),
    ]
    if facts:
        seconds = facts.get("seconds_by_phase", {})
        total = sum(seconds.values())
        rows.append(("time by phase", ", ".join(f"{k} {v:.1f} s" for k, v in seconds.items()) + f" (total {total:.1f} s)"))
        if facts.get("input_bytes") and total:
            megabytes = facts["input_bytes"] / 1e6
            rows.append(("throughput", f"{megabytes:,.3g} MB of input in {total:.1f} s: {megabytes / total:,.3g} MB/s "
                                       f"with {facts.get('workers', 1)} worker(s)"))
    else:
        rows.append(("time by phase", "not recorded (this report was redrawn from the manifests)"))
    body = "".join(f'<tr><th scope="row">{html.escape(k)}</th><td>{html.escape(v)}</td></tr>' for k, v in rows)
    return f'<section id="facts"><h2>Build</h2><table class="facts">{body}</table></section>'


def _split_section(data: SplitData) -> str:
    manifest = data.manifest
    split, output = data.split, manifest["output"]
    sources = manifest["sources"]
    names = list(sources)
    total = output["records"] or 1
    total_bytes = sum(data.bytes_by_source.values()) or 1
    parts = [
        f'<section class="split" id="split-{split}" data-split="{split}">',
        f"<h2>{split} <small>{output['records']:,} records, {output['bytes'] / 1e6:,.1f} MB</small></h2>",
        _table(manifest, data),
        _figure(f"{split}-shares", figures.shares(
            names,
            [sources[n]["mix_ratio"] for n in names],
            {
                "records": [output["records_by_source"].get(n, 0) / total for n in names],
                "bytes": [data.bytes_by_source.get(n, 0) / total_bytes for n in names],
                **({"tokens": [sources[n]["share"]["tokens"] for n in names]} if "tokens" in output else {}),
            },
            f"{split}: requested vs achieved share",
        ), "Requested share (mix_ratio) against the share each source has of the split's records, bytes and (with a tokenizer) tokens."),
    ]
    if split == "train":
        stages = [
            ("read", [sources[n]["read"] for n in names]),
            ("well-formed", [sources[n]["read"] - sum(sources[n]["bad"].values()) for n in names]),
            ("kept by the filters", [sources[n]["kept"] for n in names]),
            ("available to train", [sources[n]["available"] for n in names]),
            ("written", [sources[n]["quota"] for n in names]),
        ]
        parts.append(_figure("train-funnel", figures.funnel(names, stages, "train: filter funnel per source"),
                             "Records per source at each stage; the table above counts what each filter removed."))
        removed = [
            ("unique records written", [sources[n]["unique"] for n in names]),
            ("extra copies (wraparound)", [sources[n]["extra_copies"] for n in names]),
            ("removed by dedup", [sources[n]["removed"].get("dedup", 0) for n in names]),
            ("decontaminated", [sources[n]["removed"].get("decontaminated", 0) for n in names]),
        ]
        parts.append(_figure("train-repeats", figures.repeats(names, removed, "train: repeats and removals"),
                             "Wraparound repeats a source that has fewer records than its share; dedup and decontamination removals."))
    parts.append(_figure(f"{split}-lengths", figures.length_histograms(data.lengths, data.length_unit, f"{split}: record lengths"),
                         f"Distribution of {data.length_unit} per source (log scale)."))
    if data.languages is not None and data.language_scores is not None:
        parts.append(_figure(f"{split}-languages", figures.languages(data.languages, f"{split}: languages"),
                             "Share of each source's records per detected language (the most common ones)."))
        parts.append(_figure(f"{split}-language-scores", figures.score_histogram(data.language_scores, f"{split}: language scores"),
                             "Language identifier's probability for the detected language."))
    parts.append(_samples(data))
    parts.append("</section>")
    return "\n".join(parts)


def _table(manifest: dict[str, Any], data: SplitData) -> str:
    total = manifest["output"]["records"] or 1
    header = "".join(f"<th>{html.escape(label)}</th>" for _, label in TABLE_FIELDS)
    rows = []
    for name, s in manifest["sources"].items():
        values = {
            **s,
            "bad": sum(s["bad"].values()),
            "removed": sum(s["removed"].values()),
            "share": f"{100 * s['quota'] / total:.1f}%",
        }
        cells = "".join(f'<td data-field="{field}">{_cell(values[field])}</td>' for field, _ in TABLE_FIELDS)
        rows.append(f'<tr data-source="{html.escape(name)}"><th scope="row">{html.escape(name)}</th>{cells}</tr>')
        if s["removed"]:
            detail = ", ".join(f"{html.escape(k)} {v:,}" for k, v in s["removed"].items())
            rows.append(f'<tr class="removed-by"><td colspan="{len(TABLE_FIELDS) + 1}">{html.escape(name)} removed by: {detail}</td></tr>')
    head = f"<thead><tr><th>source</th>{header}</tr></thead>"
    return f'<table class="sources" data-split="{data.split}">{head}<tbody>{"".join(rows)}</tbody></table>'


def _cell(value: Any) -> str:
    return f"{value:,}" if isinstance(value, int) else html.escape(str(value))


def _figure(figure_id: str, svg: str, caption: str) -> str:
    return f'<figure class="plot" id="{figure_id}">{svg}<figcaption>{html.escape(caption)}</figcaption></figure>'


def _samples(data: SplitData) -> str:
    parts = [f"<h3>Sample records ({data.split})</h3>"]
    for name, records in data.samples.items():
        parts.append(f"<h4>{html.escape(name)}</h4>")
        parts += [f'<pre class="sample" data-source="{html.escape(name)}">{html.escape(record)}</pre>' for record in records]
    return "\n".join(parts)


def _decontamination(block: dict[str, Any]) -> str:
    rows = "".join(
        f'<tr data-eval-set="{html.escape(name)}"><th scope="row">{html.escape(name)}</th><td>{s["records"]:,}</td>'
        f'<td>{s["ngrams"]:,}</td><td>{s["records_without_ngrams"]:,}</td><td>{sum(s["removed_records"].values()):,}</td></tr>'
        for name, s in block["eval_sets"].items()
    )
    return (
        f'<section id="decontamination"><h2>Decontamination <small>{block["ngram"]}-word n-grams</small></h2>'
        "<table><thead><tr><th>evaluation set</th><th>records</th><th>n-grams</th><th>too short to match</th>"
        f"<th>records removed</th></tr></thead><tbody>{rows}</tbody></table></section>"
    )
