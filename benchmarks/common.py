"""Shared helpers for the benchmark scripts: sizes, process-tree measurement, tables, JSON.

Every benchmark in this folder runs each contender as a child process and measures it
from the outside with `run_measured`, so one contender's imports, caches and leaked
memory never count against another. What a measurement guarantees:

- `seconds` is wall time from spawn to exit, interpreter start-up included (a user pays it too).
- `peak_rss_bytes` is the largest *sum* of RSS over the child and all of its descendants
  seen by polling psutil every `poll_seconds` (default 50 ms). Summing RSS counts pages
  that processes share (library code, copy-on-write pages after fork) once per process,
  so it is an upper bound on the tree's footprint. `peak_pss_bytes` is the same with PSS
  (shared pages divided among their sharers: the tree's actual share of RAM, Linux
  only; equal to RSS elsewhere), read every `pss_poll_seconds` (default 1 s) and whenever
  RSS has grown 5%, because each read walks the page tables (~10 ms per GB), CPU the child
  would otherwise get. A spike shorter than one poll can be missed. `peak_anon_pss_bytes`
  counts only anonymous and shared-memory pages (Pss_Anon + Pss_Shmem): what the tree
  allocated itself, without files it maps (a build that maps its inputs to read them back
  shows their page-cache pages in PSS; they are clean, shared and reclaimable).
- `cpu_seconds` is user + system time of the child and every descendant (from `os.wait4`),
  so `cpu_seconds / seconds` says how many cores were kept busy. A descendant that outlives
  its parent (multiprocessing's fork server, whose workers are its children, exits after
  the build's process) would take its CPU time to init: on Linux this process is made their
  reaper (`PR_SET_CHILD_SUBREAPER`), waits for them after the child and counts their time.

Scripts import this module as a sibling (`import common`): running `python benchmarks/X.py`
puts this folder on `sys.path`.
"""
from __future__ import annotations

import contextlib
import ctypes
import functools
import json
import math
import os
import platform
import re
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import psutil

MB = 1_000_000
MIB = 1 << 20

_SIZE_UNITS = {
    "": 1, "b": 1,
    "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
    "k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12,
    "kib": 1 << 10, "mib": 1 << 20, "gib": 1 << 30, "tib": 1 << 40,
}
_SIZE_PATTERN = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$")


def parse_size(text: str) -> int:
    """'1.5GB' -> 1_500_000_000 bytes. Decimal units (KB, MB, GB) and binary ones (KiB, MiB, GiB)."""
    match = _SIZE_PATTERN.match(text)
    unit = match.group(2).lower() if match else None
    if match is None or unit not in _SIZE_UNITS:
        msg = (f"cannot read size {text!r}: expected a number with an optional unit "
               f"({', '.join(u for u in _SIZE_UNITS if u)}), e.g. '1.5GB' or '200MiB'")
        raise ValueError(msg)
    return int(float(match.group(1)) * _SIZE_UNITS[unit])


def format_bytes(n: float) -> str:
    for unit, factor in (("GB", 10**9), ("MB", 10**6), ("KB", 10**3)):
        if abs(n) >= factor:
            return f"{n / factor:.2f} {unit}"
    return f"{int(n)} B"


@dataclass(frozen=True)
class Measurement:
    """One child process tree, measured from outside."""
    argv: tuple[str, ...]
    returncode: int
    seconds: float
    cpu_seconds: float
    peak_rss_bytes: int
    peak_pss_bytes: int
    timed_out: bool
    stdout_tail: str
    stderr_tail: str
    peak_anon_pss_bytes: int = 0

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and not self.timed_out


@dataclass(frozen=True)
class TreeMemory:
    rss: int
    """Sum of RSS: pages shared between processes (libraries, fork copy-on-write) count once per process."""
    pss: int | None
    """Sum of PSS: each shared page split between its sharers, so the tree's real footprint.
    None when not asked for: reading it walks every page table (~10 ms per GB of RSS)."""
    anon_pss: int | None = None
    """Sum of PSS of anonymous and shared-memory pages only (mapped files left out)."""
    descendants: tuple[int, ...] = ()
    """The pids under the root when it was read."""


def tree_memory(root: psutil.Process, *, with_pss: bool) -> TreeMemory:
    """RSS (and PSS) summed over `root` and its descendants; processes that exit mid-scan count as 0."""
    rss = pss = anon = 0
    try:
        members = [root, *root.children(recursive=True)]
    except psutil.Error:
        return TreeMemory(0, 0 if with_pss else None, 0 if with_pss else None)
    for proc in members:
        try:
            # memory_full_info reads /proc/PID/smaps_rollup: both numbers, at the price of a page walk.
            info = proc.memory_full_info() if with_pss else proc.memory_info()
            rollup = _smaps_rollup(proc.pid) if with_pss else {}
        except psutil.Error:
            # The process exited between listing and reading: it holds no memory now.
            continue
        rss += info.rss
        pss += getattr(info, "pss", info.rss)
        anon += rollup.get("Pss_Anon", 0) + rollup.get("Pss_Shmem", 0) if rollup else getattr(info, "uss", info.rss)
    return TreeMemory(rss, pss if with_pss else None, anon if with_pss else None, tuple(p.pid for p in members[1:]))


def _smaps_rollup(pid: int) -> dict[str, int]:
    """Bytes per field of /proc/PID/smaps_rollup (Linux 4.14+); empty where it cannot be read."""
    try:
        text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except OSError:
        return {}
    fields = {}
    for line in text.splitlines()[1:]:
        name, _, rest = line.partition(":")
        parts = rest.split()
        if len(parts) == 2 and parts[1] == "kB":
            fields[name] = int(parts[0]) * 1024
    return fields


def _kill_tree(root: psutil.Process) -> None:
    try:
        members = [*root.children(recursive=True), root]
    except psutil.Error:
        members = [root]
    for proc in members:
        try:
            proc.send_signal(signal.SIGKILL)
        except psutil.Error:
            continue


def _tail(path: Path, limit: int = 4000) -> str:
    data = path.read_bytes()
    return data[-limit:].decode("utf-8", errors="replace")


@functools.cache
def _subreaper() -> bool:
    """Make this process the reaper of its orphaned descendants (Linux, once), so their CPU
    time reaches `os.wait4` here instead of init."""
    if not sys.platform.startswith("linux"):
        return False
    pr_set_child_subreaper = 36
    return ctypes.CDLL(None, use_errno=True).prctl(pr_set_child_subreaper, 1, 0, 0, 0) == 0


def _reap_orphans(descendants: set[int], timeout_seconds: float) -> float:
    """Wait for the measured child's descendants that outlived it (reparented here): their
    user + system CPU seconds, their own reaped children's included. Only pids seen in the
    child's tree are waited for (other children of this process, a test runner's, are not
    ours to reap); one still reaped by its own parent is that parent's. Past the timeout,
    what is left is killed: a benchmark leaves no process behind."""
    if not _subreaper():
        return 0.0
    cpu = 0.0
    pending = set(descendants)
    deadline = time.perf_counter() + timeout_seconds
    while pending:
        for pid in sorted(pending):
            try:
                done, _, usage = os.wait4(pid, os.WNOHANG)
            except ChildProcessError:
                pending.discard(pid)  # not a child of this process
                continue
            if done:
                cpu += usage.ru_utime + usage.ru_stime
                pending.discard(pid)
        if pending and time.perf_counter() > deadline:
            for pid in pending:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        if pending:
            time.sleep(0.01)
    return cpu


def run_measured(
    argv: Sequence[str],
    *,
    label: str,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    timeout_seconds: float = 3600.0,
    poll_seconds: float = 0.05,
    pss_poll_seconds: float = 1.0,
    log_dir: Path | None = None,
) -> Measurement:
    """Run `argv` to completion, polling the tree's RSS; kill the whole tree past the timeout.

    stdout/stderr go to `<log_dir>/<label>.<n>.stdout|stderr` (a pipe left undrained could
    stall the child), and their last few KB come back in the measurement.
    """
    log_dir = Path(log_dir) if log_dir is not None else Path.cwd()
    log_dir.mkdir(parents=True, exist_ok=True)
    stamp = f"{re.sub(r'[^A-Za-z0-9_.-]+', '_', label)[:60]}.{time.monotonic_ns()}"
    out_path, err_path = log_dir / f"{stamp}.stdout", log_dir / f"{stamp}.stderr"
    peak_rss = peak_pss = peak_anon = 0
    descendants: set[int] = set()
    _subreaper()  # before the child starts: its orphans must come here
    timed_out = False
    pss_at = -math.inf
    rss_at_pss = 0
    with out_path.open("wb") as out, err_path.open("wb") as err:
        start = time.perf_counter()
        child = subprocess.Popen(list(argv), cwd=cwd, env=dict(env) if env is not None else None,
                                 stdout=out, stderr=err, stdin=subprocess.DEVNULL)
        root = psutil.Process(child.pid)
        while True:
            # Read the tree before reaping: after wait4 the pid may be reused.
            now = time.perf_counter()
            # PSS costs a page-table walk, which would steal CPU from the child on a small
            # machine: read it every pss_poll_seconds, and sooner (but at most 4x/s) when RSS
            # has grown 5% since the last reading, so the peak is not missed by much.
            want_pss = now - pss_at >= pss_poll_seconds or (now - pss_at >= 0.25 and peak_rss > rss_at_pss * 1.05)
            memory = tree_memory(root, with_pss=want_pss)
            descendants.update(memory.descendants)
            peak_rss = max(peak_rss, memory.rss)
            if memory.pss is not None:
                peak_pss, pss_at, rss_at_pss = max(peak_pss, memory.pss), now, memory.rss
                peak_anon = max(peak_anon, memory.anon_pss or 0)
            pid, status, usage = os.wait4(child.pid, os.WNOHANG)
            if pid == child.pid:
                break
            if time.perf_counter() - start > timeout_seconds:
                timed_out = True
                _kill_tree(root)
                pid, status, usage = os.wait4(child.pid, 0)
                break
            time.sleep(poll_seconds)
        seconds = time.perf_counter() - start
    # Tell Popen the child is reaped so it does not try again (and warn) at exit.
    child.returncode = os.waitstatus_to_exitcode(status)
    orphans_cpu = _reap_orphans(descendants, timeout_seconds=30.0)
    return Measurement(
        argv=tuple(argv),
        returncode=child.returncode,
        seconds=seconds,
        cpu_seconds=usage.ru_utime + usage.ru_stime + orphans_cpu,
        peak_rss_bytes=peak_rss,
        peak_pss_bytes=peak_pss,
        peak_anon_pss_bytes=peak_anon,
        timed_out=timed_out,
        stdout_tail=_tail(out_path),
        stderr_tail=_tail(err_path),
    )


def machine_info() -> dict[str, Any]:
    """What a reader needs to compare numbers across machines."""
    cpu_model = platform.processor() or "unknown"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    usable_cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "cpu": cpu_model,
        "cpus": usable_cpus,
        "memory_gib": round(psutil.virtual_memory().total / (1 << 30), 1),
        "os": platform.platform(),
        "python": platform.python_version(),
    }


def package_versions(names: Sequence[str]) -> dict[str, str]:
    from importlib import metadata

    versions = {}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def format_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[tuple[str, str]]) -> str:
    """A Markdown table (readable in a terminal too). `columns` = ((key, header), ...);
    floats print with two decimals, None as 'n/a'."""
    def cell(value: Any) -> str:
        if value is None:
            return "n/a"
        if isinstance(value, float):
            return f"{value:,.2f}"
        if isinstance(value, int):
            return f"{value:,}"
        return str(value)

    body = [[cell(row.get(key)) for key, _ in columns] for row in rows]
    headers = [header for _, header in columns]
    widths = [max(len(h), *(len(r[i]) for r in body)) if body else len(h) for i, h in enumerate(headers)]
    numeric = [all(r[i].replace(",", "").replace(".", "").replace("-", "").isdigit() or r[i] == "n/a"
                   for r in body) for i in range(len(headers))]

    def line(cells: Sequence[str]) -> str:
        padded = [c.rjust(w) if num else c.ljust(w) for c, w, num in zip(cells, widths, numeric, strict=True)]
        return "| " + " | ".join(padded) + " |"

    rule = "|" + "|".join(("-" * (w + 1) + ":") if num else ("-" * (w + 2))
                          for w, num in zip(widths, numeric, strict=True)) + "|"
    return "\n".join([line(headers), rule, *(line(r) for r in body)])


def to_jsonable(value: Any) -> Any:
    if hasattr(value, "__dataclass_fields__"):
        return to_jsonable(asdict(value))
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


def write_json(path: Path, payload: Any) -> None:
    """Write `payload` (dataclasses, Paths and mappings allowed) as indented JSON, atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(to_jsonable(payload), indent=2, sort_keys=False) + "\n")
    os.replace(tmp, path)
