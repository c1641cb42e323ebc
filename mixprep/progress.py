"""Progress of a build stage: a tqdm bar on a terminal, a log line every few seconds otherwise.

Only the driver draws progress. Tasks report through their results, and scan tasks also
while they run: each block's bytes and records go into the task's slot of a small file in
the work folder (`TaskCounters`), which the driver's bar sums four times a second; so a
large build shows movement from its first block, not from its first finished 64 MB
task. Sizes are decimal (MB = 10^6 bytes) in the bar and in the logs.
"""
from __future__ import annotations

import logging
import sys
import threading
import time

import numpy as np

log = logging.getLogger("mixprep.build")


class TaskCounters:
    """Bytes and records each task has done so far, in a small file every worker maps: two
    int64 per task, written only by the task that owns them (no lock, nothing handed to a
    worker when it starts), summed by the driver's bar."""

    def __init__(self, path: str, tasks: int) -> None:
        self.path = path
        with open(path, "wb") as handle:
            handle.truncate(16 * max(tasks, 1))
        self._values = np.memmap(path, dtype=np.int64, mode="r", shape=(max(tasks, 1), 2))

    def read(self) -> tuple[int, int]:
        nbytes, records = self._values.sum(axis=0).tolist()
        return int(nbytes), int(records)


class TaskReporter:
    """A running task's side of `TaskCounters`: what it has done so far, in its own slot."""

    def __init__(self, path: str | None, task: int) -> None:
        self._slot = None if path is None else np.memmap(path, dtype=np.int64, mode="r+", offset=16 * task, shape=(2,))
        self.nbytes = 0
        self.records = 0

    def add(self, nbytes: int, records: int) -> None:
        self.nbytes += nbytes
        self.records += records
        if self._slot is not None:
            self._slot[0] = self.nbytes
            self._slot[1] = self.records


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

    def follow(self, counter: TaskCounters, every: float = 0.25) -> None:
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
