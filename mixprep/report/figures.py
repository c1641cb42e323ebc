"""The report's plots, drawn by matplotlib as inline SVG (text kept as text, so the page's
numbers and labels can be read, searched and tested).

Each function takes what one plot needs and returns the `<svg>` element as a string.
matplotlib is imported here only, when a report is drawn.
"""
from __future__ import annotations

import io
from typing import Any

import numpy as np

WIDTH = 7.5  # inches; a figure per row of the page
COLORS = ["#4C72B0", "#DD8452", "#55A868", "#C44E52", "#8172B3", "#937860", "#DA8BC3", "#8C8C8C", "#CCB974", "#64B5CD"]


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({"svg.fonttype": "none", "font.size": 9, "axes.spines.top": False, "axes.spines.right": False})
    return plt


def _ticker() -> Any:
    import matplotlib.ticker

    return matplotlib.ticker


def _svg(figure: Any) -> str:
    buffer = io.StringIO()
    figure.tight_layout()
    figure.savefig(buffer, format="svg", metadata={"Date": None})  # no timestamp: the same data, the same bytes
    _pyplot().close(figure)
    text = buffer.getvalue()
    return text[text.index("<svg") :]


def shares(names: list[str], requested: list[float], achieved: dict[str, list[float]], title: str) -> str:
    """Grouped bars per source: the requested share (mix_ratio) and the achieved share per unit."""
    plt = _pyplot()
    series = [("requested (mix_ratio)", requested), *((f"achieved, {unit}", values) for unit, values in achieved.items())]
    figure, axes = plt.subplots(figsize=(WIDTH, 0.6 + 0.45 * len(names) * len(series) / 2 + 1))
    height = 0.8 / len(series)
    y = np.arange(len(names))
    for k, (label, values) in enumerate(series):
        bars = axes.barh(y + k * height, [100 * v for v in values], height, label=label, color=COLORS[k % len(COLORS)])
        axes.bar_label(bars, labels=[f"{100 * v:.1f}%" for v in values], padding=2, fontsize=7)
    axes.set_yticks(y + height * (len(series) - 1) / 2, names)
    axes.invert_yaxis()
    axes.set_xlabel("share of the split (%)")
    axes.set_xlim(0, max(100 * max(max(v) for _, v in series) * 1.18, 1))
    axes.set_title(title)
    axes.legend(loc="lower right", fontsize=7)
    return _svg(figure)


def funnel(names: list[str], stages: list[tuple[str, list[int]]], title: str) -> str:
    """Records per source at each stage (read -> ... -> written), as grouped horizontal bars."""
    plt = _pyplot()
    figure, axes = plt.subplots(figsize=(WIDTH, 0.8 + 0.3 * len(names) * len(stages) / 2 + 1))
    height = 0.8 / len(stages)
    y = np.arange(len(names))
    for k, (label, values) in enumerate(stages):
        bars = axes.barh(y + k * height, values, height, label=label, color=COLORS[k % len(COLORS)])
        axes.bar_label(bars, labels=[f"{v:,}" for v in values], padding=2, fontsize=7)
    axes.set_yticks(y + height * (len(stages) - 1) / 2, names)
    axes.invert_yaxis()
    axes.set_xlabel("records")
    axes.set_xlim(0, max(max(max(v) for _, v in stages) * 1.2, 1))
    axes.set_title(title)
    axes.legend(loc="lower right", fontsize=7)
    return _svg(figure)


def length_histograms(lengths: dict[str, np.ndarray], unit: str, title: str) -> str:
    """One step histogram per source, on log-spaced bins of `unit`."""
    plt = _pyplot()
    figure, axes = plt.subplots(figsize=(WIDTH, 3.2))
    every = [v for v in lengths.values() if len(v)]
    low = max(min((int(v.min()) for v in every), default=1), 1)
    top = max(max((int(v.max()) for v in every), default=1), low + 1)
    bins = np.unique(np.geomspace(low, top + 1, 50).astype(np.int64))
    for k, (name, values) in enumerate(lengths.items()):
        if len(values):
            median = float(np.median(values))
            counts, _ = np.histogram(values, bins=bins)
            axes.stairs(counts, bins, linewidth=1.5, color=COLORS[k % len(COLORS)], label=f"{name} (median {median:,.0f})")
    axes.set_xscale("log")
    # Plain numbers: the log axis's default "10^k" labels go through mathtext, ~0.3 s a figure.
    axes.xaxis.set_major_locator(_ticker().LogLocator(subs=(1.0, 2.0, 5.0)))  # labels within a decade too
    axes.xaxis.set_major_formatter(_ticker().FuncFormatter(lambda value, _: f"{value:,.0f}"))
    axes.xaxis.set_minor_formatter(_ticker().NullFormatter())
    axes.set_xlabel(unit)
    axes.set_ylabel("records")
    axes.set_title(title)
    axes.legend(fontsize=7)
    return _svg(figure)


def languages(counts: dict[str, dict[str, int]], title: str, top: int = 8) -> str:
    """Stacked bars per source: the share of its records in each of the most common languages."""
    plt = _pyplot()
    totals: dict[str, int] = {}
    for per_source in counts.values():
        for language, n in per_source.items():
            totals[language] = totals.get(language, 0) + n
    shown = sorted(totals, key=lambda lang: (-totals[lang], lang))[:top]
    names = list(counts)
    figure, axes = plt.subplots(figsize=(WIDTH, 0.8 + 0.4 * len(names) + 0.8))
    left = np.zeros(len(names))
    for k, language in enumerate([*shown, "other"]):
        values = []
        for name in names:
            total = sum(counts[name].values()) or 1
            n = counts[name].get(language, 0) if language != "other" else sum(v for lang, v in counts[name].items() if lang not in shown)
            values.append(100 * n / total)
        axes.barh(names, values, left=left, label=language, color=COLORS[k % len(COLORS)])
        left += values
    axes.invert_yaxis()
    axes.set_xlabel("records (%)")
    axes.set_xlim(0, 100)
    axes.set_title(title)
    axes.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5))
    return _svg(figure)


def score_histogram(scores: dict[str, np.ndarray], title: str) -> str:
    plt = _pyplot()
    figure, axes = plt.subplots(figsize=(WIDTH, 2.8))
    for k, (name, values) in enumerate(scores.items()):
        if len(values):
            edges = np.linspace(0, 1, 41)
            axes.stairs(np.histogram(values, bins=edges)[0], edges, linewidth=1.5, color=COLORS[k % len(COLORS)], label=name)
    axes.set_xlabel("language score")
    axes.set_ylabel("records")
    axes.set_title(title)
    axes.legend(fontsize=7)
    return _svg(figure)


def repeats(names: list[str], parts: list[tuple[str, list[int]]], title: str) -> str:
    """Stacked bars per source: unique records written, extra copies (wraparound), and what
    dedup and decontamination removed."""
    plt = _pyplot()
    figure, axes = plt.subplots(figsize=(WIDTH, 0.8 + 0.4 * len(names) + 0.6))
    left = np.zeros(len(names))
    for k, (label, values) in enumerate(parts):
        bars = axes.barh(names, values, left=left, label=label, color=COLORS[k % len(COLORS)])
        axes.bar_label(bars, labels=[f"{v:,}" if v else "" for v in values], label_type="center", fontsize=7)
        left += values
    axes.invert_yaxis()
    axes.set_xlim(0, max(float(left.max()) * 1.05, 1))
    axes.set_xlabel("records")
    axes.set_title(title)
    axes.legend(fontsize=7, loc="lower right")
    return _svg(figure)
