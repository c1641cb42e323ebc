"""The output folder and the build's work folder: where intermediate files live.

A build writes only under `<output_dir>/.mixprep-tmp/<phase>_<name>.<pid>.<random>/`
until it commits; a killed build's folder is removed by the next build of the same
mixture once its process is gone. The path helpers below are the work folder's
layout, shared by the tasks that write a file and the ones that read it; every file
is written under a unique temporary name and renamed, so a retried task (Ray) never
sees half a file.
"""
from __future__ import annotations

import errno
import logging
import os
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa

from mixprep.config.schema import MixtureConfig
from mixprep.errors import OutputError

log = logging.getLogger(__name__)


TMP_FOLDER = ".mixprep-tmp"


def prepare_output_dir(path: Path) -> Path:
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        msg = f"output folder {path} cannot be created: {exc.strerror or exc}"
        raise OutputError(msg) from None
    if not os.access(path, os.W_OK | os.X_OK):
        msg = f"output folder {path} is not writable; choose another with --output-dir"
        raise OutputError(msg)
    return path


def make_work_dir(out_dir: Path, config: MixtureConfig) -> Path:
    root = out_dir / TMP_FOLDER
    prefix = f"{config.phase}_{config.name}."
    try:
        root.mkdir(exist_ok=True)
        _remove_abandoned(root, prefix)
        work = root / f"{prefix}{os.getpid()}.{os.urandom(4).hex()}"
        work.mkdir()
    except OSError as exc:
        msg = f"output folder {out_dir} is not writable: {exc.strerror or exc}"
        raise OutputError(msg) from None
    return work


def remove_work_dir(work: Path) -> None:
    shutil.rmtree(work, ignore_errors=True)
    try:
        work.parent.rmdir()  # only when no other build is using it
    except OSError:
        pass


def _remove_abandoned(root: Path, prefix: str) -> None:
    """Delete work folders of killed builds of this mixture (their process is gone)."""
    for entry in root.glob(f"{prefix}*"):
        try:
            pid = int(entry.name[len(prefix):].split(".")[0])
        except ValueError:
            continue
        if not _process_alive(pid):
            shutil.rmtree(entry, ignore_errors=True)


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def check_outputs_are_not_inputs(config: MixtureConfig, out_dir: Path, outputs: list[Path], inputs: list[str]) -> None:
    """Refuse a build that would overwrite one of its inputs, or read an earlier build's
    output as input (an output folder that is also a source folder)."""
    written = {os.path.realpath(path) for path in outputs}
    for path in inputs:
        if os.path.realpath(path) in written:
            msg = (
                f"{config.path}: the source file {path} is also an output of this build (output folder {out_dir}); "
                "the build would overwrite it or read its own output: choose another --output-dir or narrow the source"
            )
            raise OutputError(msg)


def check_outputs_are_replaceable(outputs: list[Path]) -> None:
    """Refuse, before any work, an output name taken by a folder or another non-file: the
    commit's rename would fail only after the whole build."""
    for path in outputs:
        if os.path.lexists(path) and not os.path.isfile(path):
            kind = "a folder" if os.path.isdir(path) else "not a regular file"
            msg = f"{path} is {kind}, where this build writes one of its outputs; remove or rename it, or choose another --output-dir"
            raise OutputError(msg)


def check_free_space(folder: Path, needed: int) -> None:
    """Refuse to start an output that cannot fit, naming the folder and the sizes."""
    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        return  # cannot tell: the writes themselves will say
    if free < needed:
        msg = (
            f"not enough space in {folder}: the JSONL alone needs {needed / 1e6:,.1f} MB and "
            f"{free / 1e6:,.1f} MB are free; free some space or choose another --output-dir"
        )
        raise OutputError(msg)


def out_of_space(exc: BaseException, work: Path, input_bytes: int) -> OutputError | None:
    """For a write that failed with ENOSPC/EDQUOT (in this process or a worker): one error
    naming the full folder, how much the build had written there and about how much it needs.
    Called before the work folder is removed, so its size is what the build had written."""
    if not isinstance(exc, OSError) or exc.errno not in (errno.ENOSPC, errno.EDQUOT):
        return None
    written = _bytes_under(work)
    try:
        free = f"{(shutil.disk_usage(work).free + written) / 1e6:,.1f} MB are free once it is removed"
    except OSError:
        free = "the free space could not be read"
    reason = "no space left" if exc.errno == errno.ENOSPC else "disk quota exceeded"
    folder = work.parent.parent if work.parent.name == TMP_FOLDER else work.parent
    return OutputError(
        f"{reason} in {folder}: the build's work folder there held {written / 1e6:,.1f} MB when a write failed; "
        f"a build needs up to about {input_bytes / 1e6:,.1f} MB for the kept records while scanning (the size of "
        f"the inputs) plus the outputs, and {free}. Free some space or choose another --output-dir; the inputs "
        "were not touched and the work folder was removed"
    )


def _bytes_under(folder: Path) -> int:
    total = 0
    for root, _, names in os.walk(folder):
        for name in names:
            try:
                total += os.lstat(os.path.join(root, name)).st_blocks * 512
            except OSError:
                continue
    return total


def values_path(work_dir: str, task_id: int) -> str:
    """A scan task's kept values that are not read back from its input, back to back:
    plain pretrain texts, or whole JSON lines."""
    return os.path.join(work_dir, "scan", f"{task_id:06d}.values")


SPAN_DTYPE = np.dtype([("in_input", "?"), ("start", "<i8"), ("length", "<i8"), ("size", "<i8")])
"""Where kept row i's value is: in the task's input file (`in_input`: its raw JSON string,
`length` bytes at `start`, decoding to `size` bytes) or in `values_path` (`size` bytes at
`start`, and `length == size`)."""


def value_spans_path(work_dir: str, task_id: int) -> str:
    """SPAN_DTYPE per kept row of a scan task, in row order."""
    return os.path.join(work_dir, "scan", f"{task_id:06d}.spans.npy")


def input_path_file(work_dir: str, task_id: int) -> str:
    """The input file (one line, UTF-8) that a scan task's `in_input` spans point into."""
    return os.path.join(work_dir, "scan", f"{task_id:06d}.input")


def keys_path(work_dir: str, task_id: int) -> str:
    return os.path.join(work_dir, "scan", f"{task_id:06d}.keys.npy")


def rejected_path(work_dir: str, task_id: int) -> str:
    return os.path.join(work_dir, "scan", f"{task_id:06d}.rejected.jsonl")


def prints_path(work_dir: str, task_id: int) -> str:
    """uint64 (width, n) dedup fingerprints of a task's kept rows: one row per LSH band (1 for exact)."""
    return os.path.join(work_dir, "scan", f"{task_id:06d}.dedup.npy")


def release_memory() -> None:
    """Hand the allocator's cached free pages back to the OS between tasks, so a
    worker's footprint stays at one task's working set instead of its high-water mark."""
    pa.default_memory_pool().release_unused()


class ReusedBuffer:
    """One uint8 buffer per process that every task reuses, grown when a task needs more: a
    fresh buffer per task is that many new pages for the kernel to fault in and zero. Only
    the caller that took it uses it, until it returns."""

    def __init__(self, least: int = 1) -> None:
        self._least = least
        self._buffer: np.ndarray | None = None

    def take(self, size: int) -> np.ndarray:
        if self._buffer is None or len(self._buffer) < size:
            self._buffer = np.empty(max(size, self._least), dtype=np.uint8)
        return self._buffer[:size]

    def release(self) -> None:
        self._buffer = None


def unique_tmp(path: str) -> str:
    """A temporary name no other attempt of the same task uses (Ray may run two at once)."""
    return f"{path}.{os.getpid()}-{os.urandom(4).hex()}.tmp"


def save_array(path: str, array: np.ndarray) -> None:
    tmp = unique_tmp(path)
    with open(tmp, "wb") as handle:  # a handle: np.save adds no ".npy" suffix
        np.save(handle, array)
    os.replace(tmp, path)


def bucket_dir(work_dir: str, split: str) -> str:
    """Where a split's write tasks leave their sidecar parts."""
    return os.path.join(work_dir, f"out-{split}")
