"""Where build tasks run: this process, a local process pool, or Ray.

Every executor maps a pure task function over a list of jobs and yields the
results in input order, whatever order they finish in; that, and tasks that
depend only on their job, is what keeps the output independent of the executor.
"""
from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from typing import Literal, Protocol, TypeVar

from mixprep.errors import ConfigError

T = TypeVar("T")
R = TypeVar("R")


class Executor(Protocol):
    def map(self, fn: Callable[[T], R], items: Sequence[T]) -> Iterator[R]: ...
    def close(self) -> None: ...


def _init_worker() -> None:
    import pyarrow as pa

    # Each worker gets one core; N workers use N cores without oversubscribing.
    pa.set_cpu_count(1)
    pa.set_io_thread_count(1)


class LocalExecutor:
    """`--workers 1` runs tasks in this process; more uses a spawn-based process pool."""

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self.pool: ProcessPoolExecutor | None = None
        self._saved_env: str | None = None
        if workers > 1:
            # polars reads its thread count at import time, so it must be in the environment the workers inherit.
            self._saved_env = os.environ.get("POLARS_MAX_THREADS")
            os.environ["POLARS_MAX_THREADS"] = "1"
            self.pool = ProcessPoolExecutor(workers, mp_context=get_context("spawn"), initializer=_init_worker)

    def map(self, fn: Callable[[T], R], items: Sequence[T]) -> Iterator[R]:
        if self.pool is None:
            return (fn(item) for item in items)
        return self.pool.map(fn, items)

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)
            self.pool = None
            if self._saved_env is None:
                os.environ.pop("POLARS_MAX_THREADS", None)
            else:
                os.environ["POLARS_MAX_THREADS"] = self._saved_env


def make_executor(kind: Literal["local", "ray"], workers: int, *, ray_address: str | None = None) -> Executor:
    """The executor a build asks for: local processes, or Ray (imported only then)."""
    if kind == "ray":
        from mixprep.build.ray_executor import RayExecutor

        return RayExecutor(address=ray_address, workers=workers)
    if workers < 1:
        msg = f"--workers must be >= 1, got {workers}"
        raise ConfigError(msg)
    return LocalExecutor(workers)
