"""The build report: a mixture's manifests and outputs -> one self-contained HTML page.

Modules in the order data moves through them:
- `data`: what the page shows, read from the manifests and the output files.
- `figures`: the plots (inline SVG, drawn by `svg`).
- `page`: the page itself, and `write_report`.
"""
from __future__ import annotations

from mixprep.report.page import report_name, write_report

__all__ = ["report_name", "write_report"]
