"""Where build tasks run: this process, a local process pool, or Ray.

Every executor maps a pure task function over a list of jobs and yields the
results in input order, whatever order they finish in; that, and tasks that
depend only on their job, is what keeps the output independent of the executor.
"""
from __future__ import annotations

import contextlib
import multiprocessing
import multiprocessing.forkserver
import multiprocessing.resource_tracker
import os
import signal
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import InvalidStateError, ProcessPoolExecutor
from multiprocessing import get_context
from typing import Literal, Protocol, TypeVar

from mixprep.errors import ConfigError

T = TypeVar("T")
R = TypeVar("R")


HELD_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Executor(Protocol):
    def map(self, fn: Callable[[T], R], items: Sequence[T]) -> Iterator[R]: ...
    def close(self, *, abort: bool = False) -> None: ...


def _init_worker(environment: dict[str, str]) -> None:
    import pyarrow as pa

    # A worker forked from the fork server has the server's environment, from when it
    # started; tasks must see the driver's as it is now (credentials, tokens, caches).
    os.environ.clear()
    os.environ.update(environment)
    # Ctrl-C reaches the whole process group: the driver alone handles it, and stops the
    # workers itself, so they print no tracebacks of their own.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT, signal.SIGTERM})
    # Each worker gets one core; N workers use N cores without oversubscribing.
    pa.set_cpu_count(1)
    pa.set_io_thread_count(1)


WORKER_PRELOAD = "mixprep.build.preload"
"""Imported once by the fork server that forks the pool's workers (see that module)."""


def _worker_context() -> multiprocessing.context.BaseContext:
    """Workers forked from multiprocessing's fork server, which imports WORKER_PRELOAD first.

    Not `fork` from this process: it runs threads (polars', the sidecar writer's, a
    progress bar's) that a fork would copy mid-lock. The fork server is a fresh
    single-threaded interpreter, started at the first pool and shared by later ones in this
    process (a preload set after it started is ignored; workers then load what they need).
    Where the platform has no fork server, workers are spawned and load it all themselves."""
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return get_context("spawn")
    context = get_context("forkserver")
    context.set_forkserver_preload([WORKER_PRELOAD])
    return context


def start_worker_server() -> None:
    """Start the pools' fork server now, so that it loads WORKER_PRELOAD (~2 s) while this
    process does other work; the first pool then finds it ready. The CLI calls it before
    importing the build for itself (~1 s of the two overlap)."""
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return
    # The resource tracker first, which the server needs: starting it unblocks SIGINT and
    # SIGTERM in this thread, and would start the server without them held.
    multiprocessing.resource_tracker.ensure_running()
    saved = _one_polars_thread()  # for polars in the server (see LocalExecutor)
    try:
        with held_signals():  # the server, and the workers it forks, start with them blocked
            _worker_context()
            multiprocessing.forkserver.ensure_running()
    finally:
        _restore_polars_threads(saved)


def _one_polars_thread() -> str | None:
    """Set POLARS_MAX_THREADS to 1 for the processes started meanwhile; the previous value."""
    saved = os.environ.get("POLARS_MAX_THREADS")
    os.environ["POLARS_MAX_THREADS"] = "1"
    return saved


def _restore_polars_threads(saved: str | None) -> None:
    if saved is None:
        os.environ.pop("POLARS_MAX_THREADS", None)
    else:
        os.environ["POLARS_MAX_THREADS"] = saved


class LocalExecutor:
    """`--workers 1` runs tasks in this process; more uses a process pool (`_worker_context`)."""

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self.pool: ProcessPoolExecutor | None = None
        self._not_workers: set[multiprocessing.Process] = set()
        self._saved_env: str | None = None
        if workers > 1:
            # polars reads its thread count when imported: in the fork server, which starts with this
            # environment, or in a worker after its initializer set it.
            self._saved_env = _one_polars_thread()
            self.pool = ProcessPoolExecutor(
                workers, mp_context=_worker_context(), initializer=_init_worker, initargs=(dict(os.environ),)
            )
            # Children that exist before the pool are not its workers: a program that calls the
            # library may have processes of its own, which an abort must leave alone.
            self._not_workers = set(multiprocessing.active_children())
            _start_ignoring_ctrl_c(self.pool, workers)

    @property
    def in_this_process(self) -> bool:
        """Tasks run in the calling process (their results need not be pickled)."""
        return self.pool is None

    def map(self, fn: Callable[[T], R], items: Sequence[T]) -> Iterator[R]:
        if self.pool is None:
            return (fn(item) for item in items)
        return self.pool.map(fn, items)

    def close(self, *, abort: bool = False) -> None:
        """Wait for the workers to exit; with `abort` (an error or a signal), stop them now."""
        if self.pool is not None:
            if abort:
                # Workers first, then the pool: its manager thread sees them gone and ends
                # before this interpreter does.
                with _quiet_broken_pool():
                    _stop([p for p in multiprocessing.active_children() if p not in self._not_workers])
                    self.pool.shutdown(wait=True, cancel_futures=True)
            else:
                self.pool.shutdown(wait=True, cancel_futures=True)
            self.pool = None
            _restore_polars_threads(self._saved_env)


@contextlib.contextmanager
def held_signals() -> Iterator[None]:
    """Hold Ctrl-C and SIGTERM for the length of the block; one that came meanwhile is raised
    again after it. Held twice over: blocked in this thread (a mask that processes started
    here inherit through exec), and deferred at the Python level, because other threads
    (the pool's) do not block them and Python would raise KeyboardInterrupt in this one."""
    deferred: list[int] = []
    try:
        previous_handlers = {s: signal.signal(s, lambda signum, _frame: deferred.append(signum)) for s in HELD_SIGNALS}
    except ValueError:  # not the main thread: signals are someone else's
        yield
        return
    previous_mask = signal.pthread_sigmask(signal.SIG_BLOCK, set(HELD_SIGNALS))
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous_mask)
        for signum, handler in previous_handlers.items():
            signal.signal(signum, handler)
        for signum in deferred:
            signal.raise_signal(signum)


def _start_ignoring_ctrl_c(pool: ProcessPoolExecutor, workers: int) -> None:
    """Start every worker now, with the signals held: a worker is born with SIGINT and SIGTERM
    blocked, so a signal while it is still importing cannot make it print Python's start-up
    traceback (its initializer then ignores SIGINT for good and lets SIGTERM in), and no
    KeyboardInterrupt can fall between a spawn and the write of the child's start-up data."""
    with held_signals():
        for _ in range(workers):  # each submit finds no idle worker and starts one (no wait)
            pool.submit(_ready)


def _ready() -> None:
    """A task that does nothing: it makes the pool start a worker."""


@contextlib.contextmanager
def _quiet_broken_pool() -> Iterator[None]:
    """Silence one known CPython error while a pool is being torn down on purpose: before
    3.12 its manager thread calls `set_exception` on futures that `map()` already cancelled
    and dies printing `InvalidStateError` (a CPython bug). Nothing in it concerns the user."""
    previous = threading.excepthook

    def hook(args: threading.ExceptHookArgs) -> None:
        if args.exc_type is not InvalidStateError:
            previous(args)

    threading.excepthook = hook
    try:
        yield
    finally:
        threading.excepthook = previous


def _stop(workers: list[multiprocessing.Process]) -> None:
    """Kill worker processes and reap them. SIGKILL, not SIGTERM: a worker has nothing to
    clean up (its files are in the work folder, which the driver removes), and one still
    starting holds SIGTERM blocked until its initializer runs."""
    for worker in workers:
        worker.kill()
    for worker in workers:
        worker.join()


def make_executor(kind: Literal["local", "ray"], workers: int, *, ray_address: str | None = None) -> Executor:
    """The executor a build asks for: local processes, or Ray (imported only then)."""
    if kind == "ray":
        from mixprep.build.ray_executor import RayExecutor

        return RayExecutor(address=ray_address, workers=workers)
    if workers < 1:
        msg = f"--workers must be >= 1, got {workers}"
        raise ConfigError(msg)
    return LocalExecutor(workers)
