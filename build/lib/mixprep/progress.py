"""Progress of a build stage: a tqdm bar on a terminal, a log line every few seconds otherwise.

Only the driver draws progress; tasks report through their results.
"""
from __future__ import annotations

import logging
import sys
import time

log = logging.getLogger("mixprep.build")


class Progress:
    """A tqdm bar on a terminal, a log line every few seconds otherwise."""

    def __init__(self, desc: str, total_bytes: int, enabled: bool | None) -> None:
        self.desc = desc
        self.total = total_bytes
        self.done = 0
        self.records = 0
        self.start = self.last_log = time.monotonic()
        interactive = sys.stderr.isatty() if enabled is None else enabled
        self.bar = None
        if interactive:
            from tqdm import tqdm

            self.bar = tqdm(total=total_bytes, desc=desc, unit="B", unit_scale=True, unit_divisor=1024, leave=False)

    def advance(self, nbytes: int, records: int) -> None:
        self.done += nbytes
        self.records += records
        elapsed = max(time.monotonic() - self.start, 1e-9)
        if self.bar is not None:
            self.bar.update(nbytes)
            self.bar.set_postfix_str(f"{self.records / elapsed:,.0f} rec/s", refresh=False)
        elif time.monotonic() - self.last_log >= 5 or self.done >= self.total:
            self.last_log = time.monotonic()
            log.info(
                "%s: %.0f%% (%.1f MB, %.1f MB/s, %s records, %.0f records/s)",
                self.desc, 100 * self.done / max(self.total, 1), self.done / 1e6,
                self.done / 1e6 / elapsed, f"{self.records:,}", self.records / elapsed,
            )

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
