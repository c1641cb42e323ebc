"""Progress of a build stage: a tqdm bar on a terminal, a log line every few seconds otherwise.

Only the driver draws progress. Tasks report through their results, and scan tasks also
while they run: each block's bytes go into a counter in shared memory (`LiveCounter`,
handed to pool workers when they start), which the driver's bar reads four times a
second; so a large build shows movement from its first block, not from its first
finished 64 MB task. Sizes are decimal (MB = 10^6 bytes) in the bar and in the logs.
"""
from __future__ import annotations

import logging
import sys
import threading
import time
from typing import Any

log = logging.getLogger("mixprep.build")


class LiveCounter:
    """Bytes and records done so far, summed over the processes that share it."""

    def __init__(self, context: Any) -> None:
        self._values = context.Array("q", 2)  # bytes, records; with a lock across processes

    def add(self, nbytes: int, records: int) -> None:
        with self._values.get_lock():
            self._values[0] += nbytes
            self._values[1] += records

    def read(self) -> tuple[int, int]:
        with self._values.get_lock():
            return int(self._values[0]), int(self._values[1])


_reporting_to: LiveCounter | None = None


def report_to(counter: LiveCounter | None) -> None:
    """Where this process's `report` calls go (set in each pool worker and in the driver)."""
    global _reporting_to
    _reporting_to = counter


def report(nbytes: int, records: int) -> None:
    """Work a running task has done; nothing where no bar follows (Ray workers, tests)."""
    if _reporting_to is not None:
        _reporting_to.add(nbytes, records)


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

            self.bar = tqdm(total=total_bytes, desc=desc, unit="B", unit_scale=True, unit_divisor=1000, leave=False)
        self._stop = threading.Event()
        self._follower: threading.Thread | None = None

    def follow(self, counter: LiveCounter, every: float = 0.25) -> None:
        """Show what `counter` says, as it changes, until `close`."""
        base_bytes, base_records = counter.read()

        def catch_up() -> None:
            nbytes, records = counter.read()
            self.advance(nbytes - base_bytes - self.done, records - base_records - self.records)

        def poll() -> None:
            while not self._stop.wait(every):
                catch_up()
            catch_up()  # what the last tasks reported after the previous look

        self._follower = threading.Thread(target=poll, name="mixprep-progress", daemon=True)
        self._follower.start()

    def advance(self, nbytes: int, records: int) -> None:
        if not nbytes and not records:
            return
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
        self._stop.set()
        if self._follower is not None:
            self._follower.join()
        if self.bar is not None:
            self.bar.close()
