"""The build report: drawn by every build (and by `mixprep report`), one self-contained HTML
file; rendered in headless Chromium, every plot is there and the numbers match the manifest."""
from __future__ import annotations

import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from helpers import build, manifest_of, mixture, write_jsonl

from mixprep.cli import main

CONFIGS = Path(__file__).resolve().parents[1] / "configs"

CHROMIUM = next((shutil.which(name) for name in ("chromium", "chromium-browser", "google-chrome") if shutil.which(name)), None)
needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="needs a Chromium binary (.ci/run installs Debian's chromium)")


class Page(HTMLParser):
    """What a test reads of the page: the figures and their SVG, the source tables' cells,
    the samples, and any element that would load something."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.figures: list[str] = []
        self.svg_in_figure: dict[str, int] = {}
        self.cells: dict[tuple[str, str, str], str] = {}  # (split, source, field) -> text
        self.samples: list[str] = []
        self.loads: list[str] = []
        self._figure: str | None = None
        self._split = ""
        self._source = ""
        self._field: str | None = None
        self._sample = False
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "figure":
            self._figure = a.get("id") or ""
            self.figures.append(self._figure)
        elif tag == "svg" and self._figure is not None:
            self.svg_in_figure[self._figure] = self.svg_in_figure.get(self._figure, 0) + 1
        elif tag == "table" and "sources" in (a.get("class") or ""):
            self._split = a.get("data-split") or ""
        elif tag == "tr" and a.get("data-source"):
            self._source = a["data-source"] or ""
        elif tag == "td" and a.get("data-field"):
            self._field = a["data-field"]
        elif tag == "pre" and "sample" in (a.get("class") or ""):
            self._sample = True
            self.samples.append("")
        if tag in ("script", "link", "img", "iframe") or (tag not in ("a",) and any(k in ("src", "href") for k in a)):
            self.loads.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if tag == "figure":
            self._figure = None
        elif tag == "td":
            self._field = None
        elif tag == "pre":
            self._sample = False

    def handle_data(self, data: str) -> None:
        if self._field is not None:
            self.cells[(self._split, self._source, self._field)] = data
        if self._sample:
            self.samples[-1] += data


def rendered(report: Path, tmp_path: Path) -> tuple[str, Path]:
    """The DOM after Chromium rendered the page, and a screenshot of it."""
    assert CHROMIUM is not None
    flags = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", f"--user-data-dir={tmp_path / 'chrome'}"]
    dom = subprocess.run([*flags, "--dump-dom", report.as_uri()], capture_output=True, text=True, timeout=120, check=True).stdout
    shot = tmp_path / f"{report.stem}.png"
    screenshot = [*flags, "--window-size=1200,2400", f"--screenshot={shot}", report.as_uri()]
    subprocess.run(screenshot, capture_output=True, timeout=120, check=True)
    return dom, shot


def check_numbers_match(page: Page, folder: Path, stem: str, splits: tuple[str, ...]) -> None:
    for split in splits:
        manifest = manifest_of(folder / f"{stem}_{split}.jsonl")
        total = manifest["output"]["records"]
        for name, s in manifest["sources"].items():
            expected = {
                "read": s["read"], "bad": sum(s["bad"].values()), "removed": sum(s["removed"].values()), "kept": s["kept"],
                "available": s["available"], "quota": s["quota"], "extra_copies": s["extra_copies"],
            }
            for field, value in expected.items():
                assert page.cells[(split, name, field)] == f"{value:,}", (split, name, field)
            assert page.cells[(split, name, "share")] == f"{100 * s['quota'] / total:.1f}%"


def check_screenshot(shot: Path) -> None:
    import matplotlib.image

    pixels = matplotlib.image.imread(shot)
    assert pixels.shape[0] >= 2000 and pixels.shape[1] >= 1100
    assert float(np.std(pixels[..., :3])) > 0.05  # drawn, not a blank page
    assert len(np.unique((pixels[..., :3] * 255).astype(np.uint8).reshape(-1, 3), axis=0)) > 20  # plots in colour


# -- builds ---------------------------------------------------------------------------------

def filtered_mixture(folder: Path) -> Path:
    rng = np.random.default_rng(0)
    english = [" ".join(rng.choice(["the", "cat", "sat", "on", "a", "warm", "mat", "today"], 30)) for _ in range(300)]
    german = [" ".join(rng.choice(["der", "hund", "und", "die", "katze", "schlafen", "heute", "gern"], 30)) for _ in range(100)]
    write_jsonl(folder / "web.jsonl", [{"text": t} for t in english + german + ["short"] * 20 + english[:10]])  # 10 copies: dedup
    write_jsonl(folder / "books.jsonl", [{"text": f"<script>alert({i})</script> {t}"} for i, t in enumerate(english[:80])])
    return mixture(
        folder,
        [
            {"name": "web", "mix_ratio": 0.7, "source": "web.jsonl", "filters": {"min_words": 3}},
            {"name": "books", "mix_ratio": 0.3, "source": "books.jsonl"},
        ],
        name="filtered",
        dedup="exact",
        annotate_language=True,
        validation={"fraction": 0.05},
    )


@needs_chromium
def test_toy_report_renders_every_plot_and_the_manifest_numbers(toy_config: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    build(toy_config, out, report=True)
    report = out / "pretrain_phase1_toy.report.html"
    dom, shot = rendered(report, tmp_path)
    page = Page(dom)
    assert page.figures == ["train-shares", "train-funnel", "train-repeats", "train-lengths", "validation-shares", "validation-lengths"]
    assert all(page.svg_in_figure.get(f) == 1 for f in page.figures)
    check_numbers_match(page, out, "pretrain_phase1_toy", ("train", "validation"))
    assert "time by phase" in dom and "MB/s with 1 worker(s)" in dom
    assert page.loads == []  # self-contained: nothing fetched
    check_screenshot(shot)


@needs_chromium
def test_sft_report(example_data: Path, tmp_path: Path) -> None:
    config = tmp_path / "sft_mixture.yaml"
    config.write_text((CONFIGS / "sft_mixture.yaml").read_text().replace("../data", str(example_data)))
    build(config, tmp_path / "out", report=True)
    dom, shot = rendered(tmp_path / "out" / "sft_chat.report.html", tmp_path)
    page = Page(dom)
    assert len(page.figures) == 6 and all(page.svg_in_figure.get(f) == 1 for f in page.figures)
    assert "bytes of the JSON record" in dom
    check_numbers_match(page, tmp_path / "out", "sft_chat", ("train", "validation"))
    assert all(s.startswith('{"conversations"') for s in page.samples)
    check_screenshot(shot)


@needs_chromium
def test_filtered_report_shows_removals_languages_and_escaped_samples(tmp_path: Path) -> None:
    build(filtered_mixture(tmp_path), tmp_path / "out", report=True, write_rejected=True)
    dom, shot = rendered(tmp_path / "out" / "pretrain_filtered.report.html", tmp_path)
    page = Page(dom)
    assert {"train-languages", "train-language-scores", "validation-languages"} <= set(page.figures)
    assert all(page.svg_in_figure.get(f) == 1 for f in page.figures)
    check_numbers_match(page, tmp_path / "out", "pretrain_filtered", ("train", "validation"))
    assert re.search(r"web removed by: [^<]*min_words 20", dom)
    assert re.search(r"<text[^>]*>de</text>", dom)  # the German records are labelled, in the languages legend
    assert page.loads == []  # the <script> in the books' samples is text, not an element
    assert sum("<script>alert(" in s for s in page.samples) == 6  # three books samples a split
    assert int(page.cells[("train", "web", "removed")]) == 20 + 10  # min_words, and the copies dedup dropped
    check_screenshot(shot)


# -- without a browser ------------------------------------------------------------------------

def test_report_is_redrawn_by_the_cli_and_skipped_with_no_report(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_jsonl(tmp_path / "a.jsonl", [{"text": f"record {i} " * (i % 7 + 1)} for i in range(200)])
    config = mixture(tmp_path, [{"name": "a", "mix_ratio": 1.0, "source": "a.jsonl"}])
    assert main(["build", str(config), "--output-dir", str(tmp_path / "out"), "--no-report", "-q"]) == 0
    report = tmp_path / "out" / "pretrain_t.report.html"
    assert not report.exists()
    capsys.readouterr()
    assert main(["report", str(tmp_path / "out" / "pretrain_t_train.manifest.json")]) == 0
    assert capsys.readouterr().out.strip() == f"-> {report}"
    page = Page(report.read_text())
    assert page.figures == ["train-shares", "train-funnel", "train-repeats", "train-lengths"]
    assert "not recorded (this report was redrawn from the manifests)" in report.read_text()
    assert main(["report", str(tmp_path / "a.jsonl")]) == 1  # not a manifest: one line, exit 1
    other = tmp_path / "other.manifest.json"
    other.write_text('{"format": "someone-else/2", "phase": "pretrain", "name": "x"}')
    assert main(["report", str(other)]) == 1
    assert "no finished build of pretrain_x" in capsys.readouterr().err


def test_the_report_reflects_the_data(tmp_path: Path) -> None:
    """The numbers behind the plots: shares per unit and lengths come from the outputs."""
    from mixprep.report.data import mixture_manifests, split_data

    write_jsonl(tmp_path / "a.jsonl", [{"text": "x" * 10} for _ in range(30)])
    write_jsonl(tmp_path / "b.jsonl", [{"text": "y" * 100} for _ in range(30)])
    datasets = [{"name": "a", "mix_ratio": 0.5, "source": "a.jsonl"}, {"name": "b", "mix_ratio": 0.5, "source": "b.jsonl"}]
    config = mixture(tmp_path, datasets)
    build(config, tmp_path / "out")
    data = split_data(tmp_path / "out", mixture_manifests(tmp_path / "out", "pretrain", "t")["train"])
    assert {n: set(v.tolist()) for n, v in data.lengths.items()} == {"a": {10}, "b": {100}}
    line = len('{"text":"","source":""}\n')
    assert data.bytes_by_source == {"a": 30 * (line + 10 + 1), "b": 30 * (line + 100 + 1)}
    assert [len(s) for s in data.samples.values()] == [3, 3]


def test_the_lengths_a_build_hands_its_report_are_the_sidecars(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A build draws its histograms from the characters its scan counted (no second read of
    every text): per source, the same multiset the sidecar's texts give, repeats included."""
    from mixprep.build import driver
    from mixprep.report.data import mixture_manifests, split_data

    handed: dict[str, dict[str, np.ndarray]] = {}

    def capture(out_dir: Path, phase: str, name: str, facts: object, lengths: dict[str, dict[str, np.ndarray]]) -> Path:
        handed.update(lengths)
        return out_dir / "report.html"

    monkeypatch.setattr(driver, "write_report", capture)
    filtered_mixture(tmp_path)  # its inputs
    write_jsonl(tmp_path / "few.jsonl", [{"text": "é" * (i + 1) + "😀"} for i in range(7)])  # wraps around: repeats
    datasets = [
        {"name": "web", "mix_ratio": 0.5, "source": "web.jsonl", "filters": {"min_words": 3}},
        {"name": "books", "mix_ratio": 0.3, "source": "books.jsonl"},
        {"name": "few", "mix_ratio": 0.2, "source": "few.jsonl"},
    ]
    config = mixture(tmp_path, datasets, name="filtered", dedup="exact", validation={"fraction": 0.05}, total_samples=300)
    build(config, tmp_path / "out", report=True)
    manifests = mixture_manifests(tmp_path / "out", "pretrain", "filtered")
    assert set(handed) == set(manifests) == {"train", "validation"}
    for split, manifest in manifests.items():
        counted = split_data(tmp_path / "out", manifest).lengths
        assert set(handed[split]) == set(counted) == {"web", "books", "few"}
        for source, lengths in counted.items():
            assert sorted(handed[split][source].tolist()) == sorted(lengths.tolist())
    assert len(handed["train"]["few"]) > 7  # the wraparound's copies are counted


def test_svg_bars_are_drawn_to_scale_and_labels_are_escaped() -> None:
    from mixprep.report.svg import Series, hbars, steps

    drawn = hbars(["a<b", "c"], [Series("s & t", [10.0, 20.0], ["10", "20"])], title="t", x_label="x", x_max=40)
    widths = [float(w) for w in re.findall(r'<rect x="[\d.]+" y="[\d.]+" width="([\d.]+)" height="12.0"', drawn)]
    assert len(widths) == 2 and widths[1] == pytest.approx(2 * widths[0], rel=1e-3)
    assert "<text" in drawn and "a&lt;b" in drawn and "s &amp; t" in drawn and "a<b" not in drawn
    stacked = hbars(["a"], [Series("p", [30.0]), Series("q", [70.0])], title="t", x_label="%", stacked=True, x_max=100)
    starts = [float(x) for x in re.findall(r'<rect x="([\d.]+)" y="[\d.]+" width="[\d.]+" height="20.0"', stacked)]
    ends = [float(x) + float(w) for x, w in re.findall(r'<rect x="([\d.]+)" y="[\d.]+" width="([\d.]+)" height="20.0"', stacked)]
    assert starts[1] == pytest.approx(ends[0])  # q starts where p ends
    histogram = steps([("n", [10, 100, 1000], [5, 3])], title="t", x_label="chars", y_label="records", log_x=True)
    labels = re.findall(r">([\d,]+)</text>", histogram)
    assert {"10", "20", "50", "100", "200", "500", "1,000"} <= set(labels)  # log ticks within each decade
    assert histogram.count("<polyline") == 1
