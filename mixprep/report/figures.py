"""The report's plots, as inline SVG (`svg`: text kept as text, so the page's numbers and
labels can be read, searched and tested).

Each function takes what one plot needs and returns the `<svg>` element as a string.
"""
from __future__ import annotations

import numpy as np

from mixprep.report.svg import Series, hbars, steps


def shares(names: list[str], requested: list[float], achieved: dict[str, list[float]], title: str) -> str:
    """Grouped bars per source: the requested share (mix_ratio) and the achieved share per unit."""
    series = [("requested (mix_ratio)", requested), *((f"achieved, {unit}", values) for unit, values in achieved.items())]
    bars = [Series(label, [100 * v for v in values], [f"{100 * v:.1f}%" for v in values]) for label, values in series]
    largest = max((100 * v for _, values in series for v in values), default=0)
    return hbars(names, bars, title=title, x_label="share of the split (%)", x_max=max(largest * 1.18, 1))


def funnel(names: list[str], stages: list[tuple[str, list[int]]], title: str) -> str:
    """Records per source at each stage (read -> ... -> written), as grouped horizontal bars."""
    bars = [Series(label, values, [f"{v:,}" for v in values]) for label, values in stages]
    largest = max((v for _, values in stages for v in values), default=0)
    return hbars(names, bars, title=title, x_label="records", x_max=max(largest * 1.2, 1))


def length_histograms(lengths: dict[str, np.ndarray], unit: str, title: str) -> str:
    """One step histogram per source, on log-spaced bins of `unit`."""
    every = [v for v in lengths.values() if len(v)]
    low = max(min((int(v.min()) for v in every), default=1), 1)
    top = max(max((int(v.max()) for v in every), default=1), low + 1)
    bins = np.unique(np.geomspace(low, top + 1, 50).astype(np.int64))
    series = []
    for name, values in lengths.items():
        if len(values):
            counts, _ = np.histogram(values, bins=bins)
            series.append((f"{name} (median {float(np.median(values)):,.0f})", bins.tolist(), counts.tolist()))
    return steps(series, title=title, x_label=unit, y_label="records", log_x=True)


def languages(counts: dict[str, dict[str, int]], title: str, top: int = 8) -> str:
    """Stacked bars per source: the share of its records in each of the most common languages."""
    totals: dict[str, int] = {}
    for per_source in counts.values():
        for language, n in per_source.items():
            totals[language] = totals.get(language, 0) + n
    shown = sorted(totals, key=lambda lang: (-totals[lang], lang))[:top]
    names = list(counts)
    bars = []
    for language in [*shown, "other"]:
        values = []
        for name in names:
            total = sum(counts[name].values()) or 1
            n = counts[name].get(language, 0) if language != "other" else sum(v for lang, v in counts[name].items() if lang not in shown)
            values.append(100 * n / total)
        bars.append(Series(language, values))
    return hbars(names, bars, title=title, x_label="records (%)", stacked=True, x_max=100, legend_right=True)


def score_histogram(scores: dict[str, np.ndarray], title: str) -> str:
    edges = np.linspace(0, 1, 41)
    series = [(name, edges.tolist(), np.histogram(values, bins=edges)[0].tolist()) for name, values in scores.items() if len(values)]
    return steps(series, title=title, x_label="language score", y_label="records")


def repeats(names: list[str], parts: list[tuple[str, list[int]]], title: str) -> str:
    """Stacked bars per source: unique records written, extra copies (wraparound), and what
    dedup and decontamination removed."""
    bars = [Series(label, values, [f"{v:,}" if v else "" for v in values]) for label, values in parts]
    return hbars(names, bars, title=title, x_label="records", stacked=True)
