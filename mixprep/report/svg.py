"""Two chart kinds as inline SVG, drawn directly: horizontal bars (grouped or stacked) and
step histograms (linear or log x). Text stays text, so the page's numbers and labels can
be read, searched and tested.

Written out by hand rather than by a plotting library: matplotlib took ~1.2 s a report
(importing it, laying out text twice per figure), a third of the toy build; this takes
milliseconds. The output is a function of the numbers alone (no timestamp, no ids).
"""
from __future__ import annotations

import html
import math
from collections.abc import Sequence
from dataclasses import dataclass

WIDTH = 720
FONT = 11
CHAR_WIDTH = 6.2  # px per character at FONT, for sans-serif text: enough to lay out labels
COLORS = ["#4C72B0", "#DD8452", "#55A868", "#C44E52", "#8172B3", "#937860", "#DA8BC3", "#8C8C8C", "#CCB974", "#64B5CD"]
INK, GRID = "#333", "#ddd"


@dataclass(frozen=True)
class Series:
    label: str
    values: Sequence[float]
    texts: Sequence[str] | None = None
    """A label per bar (None: no labels)."""


def hbars(
    categories: Sequence[str], series: Sequence[Series], *, title: str, x_label: str, stacked: bool = False,
    x_max: float | None = None, legend_right: bool = False,
) -> str:
    """One row per category: a bar per series side by side, or the series stacked."""
    left = 12 + max((len(c) for c in categories), default=0) * CHAR_WIDTH
    legend_width = (24 + max(len(s.label) for s in series) * CHAR_WIDTH) if legend_right and series else 0
    per_bar = 14 if not stacked else 20
    row = per_bar * (1 if stacked else len(series)) + 10
    legend_rows = 0 if legend_right else len(series)
    top, plot_height = 28, max(row * len(categories), 20)
    height = top + plot_height + 38 + legend_rows * 15
    right = WIDTH - 16 - legend_width
    totals = [sum(s.values[i] for s in series) for i in range(len(categories))] if stacked else []
    largest = max(totals or [v for s in series for v in s.values] or [0])
    scale = _Linear(0, x_max if x_max is not None else max(largest * (1.05 if stacked else 1.2), 1), left, right)
    out = _open(height, title)
    out += scale.grid(top, top + plot_height, x_label)
    for i, category in enumerate(categories):
        y = top + i * row + 5
        out.append(_text(left - 6, y + (row - 10) / 2 + 4, category, anchor="end"))
        start = 0.0
        for k, s in enumerate(series):
            value = s.values[i]
            x0 = scale(start) if stacked else left
            x1 = scale(start + value) if stacked else scale(value)
            bar_y = y if stacked else y + k * per_bar
            bar_h = row - 10 if stacked else per_bar - 2
            out.append(f'<rect x="{x0:.1f}" y="{bar_y:.1f}" width="{max(x1 - x0, 0):.1f}" height="{bar_h:.1f}" fill="{_color(k)}"/>')
            label = s.texts[i] if s.texts is not None else ""
            if label and stacked:
                if x1 - x0 > len(label) * CHAR_WIDTH * 0.9:
                    out.append(_text((x0 + x1) / 2, bar_y + bar_h / 2 + 3.5, label, anchor="middle", size=9, fill="#fff"))
            elif label:
                out.append(_text(x1 + 3, bar_y + bar_h / 2 + 3.5, label, size=9))
            start += value
    entries = [(s.label, _color(k)) for k, s in enumerate(series)]
    if legend_right:
        out += _legend(right + 14, top + 4, entries)
    else:
        out += _legend(left, top + plot_height + 38, entries)
    return _close(out)


def steps(
    series: Sequence[tuple[str, Sequence[float], Sequence[int]]], *, title: str, x_label: str, y_label: str, log_x: bool = False
) -> str:
    """Step histograms: (label, bin edges, counts) per series, drawn as outlines."""
    drawn = [(label, edges, counts) for label, edges, counts in series if len(counts)]
    left, top, plot_height = 64, 28, 190
    right = WIDTH - 16
    height = top + plot_height + 38 + len(drawn) * 15
    low = min((e[0] for _, e, _ in drawn), default=0.0)
    high = max((e[-1] for _, e, _ in drawn), default=1.0)
    x = (_Log if log_x else _Linear)(low, max(high, low + 1e-9), left, right)
    peak = max((max(c) for _, _, c in drawn), default=1) or 1
    y = _Linear(0, peak * 1.08, top + plot_height, top)
    out = _open(height, title)
    out += x.grid(top, top + plot_height, x_label)
    out += y.y_axis(left, right, y_label)
    for k, (_, edges, counts) in enumerate(drawn):
        points = [f"{x(edges[0]):.1f},{y(0):.1f}"]
        for j, count in enumerate(counts):
            points += [f"{x(edges[j]):.1f},{y(count):.1f}", f"{x(edges[j + 1]):.1f},{y(count):.1f}"]
        points.append(f"{x(edges[-1]):.1f},{y(0):.1f}")
        out.append(f'<polyline points="{" ".join(points)}" fill="none" stroke="{_color(k)}" stroke-width="1.5"/>')
    out += _legend(left, top + plot_height + 38, [(label, _color(k)) for k, (label, _, _) in enumerate(drawn)])
    return _close(out)


# -- axes --------------------------------------------------------------------------------

class _Linear:
    def __init__(self, low: float, high: float, start: float, end: float) -> None:
        self.low, self.high, self.start, self.end = low, high, start, end

    def __call__(self, value: float) -> float:
        return self.start + (value - self.low) / ((self.high - self.low) or 1) * (self.end - self.start)

    def ticks(self) -> list[float]:
        step = _nice_step((self.high - self.low) / 5)
        first = math.ceil(self.low / step) * step
        return [first + k * step for k in range(int((self.high - first) / step + 1e-9) + 1)]

    def label(self, value: float) -> str:
        return f"{value:,.0f}" if abs(value) >= 10 or value == int(value) else f"{value:g}"

    def grid(self, top: float, bottom: float, label: str) -> list[str]:
        return _x_grid(self, self.ticks(), top, bottom, label)

    def y_axis(self, left: float, right: float, label: str) -> list[str]:
        out = [f'<line x1="{left}" y1="{self.start}" x2="{left}" y2="{self.end}" stroke="{INK}"/>']
        for tick in self.ticks():
            at = self(tick)
            out.append(f'<line x1="{left}" y1="{at:.1f}" x2="{right}" y2="{at:.1f}" stroke="{GRID}"/>')
            out.append(_text(left - 4, at + 3.5, self.label(tick), anchor="end", size=9))
        middle = (self.start + self.end) / 2
        turned = f'transform="rotate(-90 14 {middle:.1f})" text-anchor="middle"'
        out.append(f'<text x="14" y="{middle:.1f}" {turned}>{html.escape(label)}</text>')
        return out


class _Log(_Linear):
    def __init__(self, low: float, high: float, start: float, end: float) -> None:
        super().__init__(max(low, 1e-9), max(high, max(low, 1e-9) * 10), start, end)

    def __call__(self, value: float) -> float:
        span = math.log10(self.high) - math.log10(self.low)
        return self.start + (math.log10(max(value, self.low)) - math.log10(self.low)) / span * (self.end - self.start)

    def ticks(self) -> list[float]:
        ticks = []
        for power in range(math.floor(math.log10(self.low)), math.ceil(math.log10(self.high)) + 1):
            for sub in (1, 2, 5):  # labels within a decade too
                value = sub * 10.0**power
                if self.low <= value <= self.high:
                    ticks.append(value)
        return ticks


def _x_grid(scale: _Linear, ticks: list[float], top: float, bottom: float, label: str) -> list[str]:
    out = [f'<line x1="{scale.start}" y1="{bottom}" x2="{scale.end}" y2="{bottom}" stroke="{INK}"/>']
    for tick in ticks:
        at = scale(tick)
        out.append(f'<line x1="{at:.1f}" y1="{top}" x2="{at:.1f}" y2="{bottom}" stroke="{GRID}"/>')
        out.append(_text(at, bottom + 13, scale.label(tick), anchor="middle", size=9))
    out.append(_text((scale.start + scale.end) / 2, bottom + 28, label, anchor="middle"))
    return out


def _nice_step(rough: float) -> float:
    """1, 2 or 5 times a power of ten, at least `rough`."""
    if rough <= 0:
        return 1.0
    power = 10.0 ** math.floor(math.log10(rough))
    return next(m * power for m in (1, 2, 5, 10) if m * power >= rough)


# -- pieces ------------------------------------------------------------------------------

def _open(height: float, title: str) -> list[str]:
    return [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height:.0f}" viewBox="0 0 {WIDTH} {height:.0f}" '
        f'font-family="DejaVu Sans, Helvetica, Arial, sans-serif" font-size="{FONT}" fill="{INK}">',
        f'<rect width="{WIDTH}" height="{height:.0f}" fill="#fff"/>',
        _text(WIDTH / 2, 17, title, anchor="middle", size=12),
    ]


def _close(parts: list[str]) -> str:
    return "\n".join([*parts, "</svg>"])


def _legend(x: float, y: float, entries: list[tuple[str, str]]) -> list[str]:
    out = []
    for k, (label, color) in enumerate(entries):
        row = y + k * 15
        out.append(f'<rect x="{x:.1f}" y="{row - 9:.1f}" width="10" height="10" fill="{color}"/>')
        out.append(_text(x + 15, row, label, size=10))
    return out


def _text(x: float, y: float, text: str, *, anchor: str = "start", size: int = FONT, fill: str | None = None) -> str:
    attributes = f' text-anchor="{anchor}"' if anchor != "start" else ""
    attributes += f' font-size="{size}"' if size != FONT else ""
    attributes += f' fill="{fill}"' if fill else ""
    return f'<text x="{x:.1f}" y="{y:.1f}"{attributes}>{html.escape(text)}</text>'


def _color(k: int) -> str:
    return COLORS[k % len(COLORS)]

