"""`--executor ray`: the build's pure tasks as Ray core tasks, on one machine or a cluster.

build.py hands this executor the same task functions and jobs that `--workers N`
runs locally (`scan_task`, `write_bucket`). Each task writes its files under the
build's work folder (inside the output folder, which must be shared storage on a
cluster) and returns only small metadata, so no record data moves through Ray's
object store. Results come back in input order, so the driver consumes them exactly
as it does locally and the output bytes do not depend on the cluster, the node
count or the order tasks finish in. Ray's own sampling, shuffling and file naming
are never used.

Failures: a task that raises anything but a `MixprepError`, or whose worker or node
dies, is retried up to `max_retries` times (a retry overwrites the same files with
the same bytes). A `MixprepError` (a bad record, an unreadable source) is the input's
fault, so it is not retried and reaches the driver unchanged. A task that keeps
failing stops the build with a `MixprepError` that names the task and the error;
build.py then removes its work folder, so no complete-looking output is left.

Ray is imported only here, and only when the executor is created.
"""
from __future__ import annotations

import logging
import os
import secrets
import shutil
import tempfile
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from mixprep.build.scan import ScanJob
from mixprep.build.writers import BucketJob
from mixprep.errors import ConfigError, MixprepError, TaskError

log = logging.getLogger(__name__)


T = TypeVar("T")
R = TypeVar("R")

MAX_RETRIES = 3
IN_FLIGHT_PER_CPU = 2  # enough queued work to keep every CPU busy while the oldest task finishes
LOCAL_OBJECT_STORE_BYTES = 128 * 1024 * 1024  # tasks return a few hundred bytes each; the default is 30% of RAM
# Every task uses one core: polars and Arrow must not start a thread per core in each worker.
WORKER_ENV = {"POLARS_MAX_THREADS": "1"}
INSTALL_HINT = 'pip install "mixprep[ray]"'


@dataclass(frozen=True)
class _TaskFailed:
    """A `MixprepError` raised inside a task, returned as a value so that Ray does not retry it."""

    error: MixprepError


def _run_task(fn: Callable[[T], R], item: T) -> R | _TaskFailed:
    import pyarrow as pa

    pa.set_cpu_count(1)
    pa.set_io_thread_count(1)
    try:
        return fn(item)
    except MixprepError as error:
        return _TaskFailed(error)


def describe_task(item: object) -> str:
    """How an error names a task: the scan's source and byte range, or the output bucket."""
    if isinstance(item, ScanJob):
        return f"scan task {item.task.task_id} ({item.task.describe()})"
    if isinstance(item, BucketJob):
        return f"write task for {item.split} bucket {item.bucket}"
    return f"{type(item).__name__} task"


def import_ray() -> Any:
    try:
        import ray
    except ImportError as exc:
        msg = f"--executor ray needs Ray, which is not installed ({exc}); install it with: {INSTALL_HINT}"
        raise ConfigError(msg) from None
    return ray


class RayExecutor:
    """Runs tasks on Ray, in order, with a bounded number in flight.

    `address=None` reuses this process's Ray connection if there is one, else starts a
    local Ray with `workers` CPUs; `"auto"` or `HOST:PORT` joins a running cluster.
    `close()` disconnects only a connection this executor opened (shutting down the
    local Ray it started); a cluster it joined keeps running.
    """

    def __init__(
        self,
        address: str | None = None,
        workers: int = 1,
        *,
        max_retries: int = MAX_RETRIES,
        max_in_flight: int | None = None,
    ) -> None:
        if workers < 1:
            msg = f"--workers must be >= 1, got {workers}"
            raise ConfigError(msg)
        if max_retries < 0:
            msg = f"max_retries must be >= 0, got {max_retries}"
            raise ConfigError(msg)
        self.ray = import_ray()
        self.max_retries = max_retries
        self._temp_dir: str | None = None
        self._owns_connection = False
        self._saved_env: dict[str, str | None] = {}
        if self.ray.is_initialized():
            log.info("using this process's existing Ray connection")
        else:
            try:
                self._connect(address, workers)
            except BaseException:
                self.close()  # puts back the environment and removes the temp folder
                raise
            self._owns_connection = True
        cpus = int(self.ray.cluster_resources().get("CPU", 1))
        self.max_in_flight = max_in_flight or max(1, IN_FLIGHT_PER_CPU * cpus)
        self._remote = self.ray.remote(_run_task).options(
            num_cpus=1,
            max_retries=max_retries,
            retry_exceptions=True,  # MixprepErrors never reach Ray as exceptions (see _run_task)
        )

    def _connect(self, address: str | None, workers: int) -> None:
        if address is not None:
            try:
                # A job-level environment reaches every worker of this build on every node.
                self.ray.init(address=address, runtime_env={"env_vars": WORKER_ENV}, logging_level=logging.WARNING)
            except (ConnectionError, RuntimeError, ValueError) as exc:
                msg = (
                    f"--ray-address {address}: cannot connect to a Ray cluster ({_first_line(exc)}); start one with "
                    f"`ray start --head` (then use --ray-address auto) or leave out --ray-address to start a local Ray"
                )
                raise ConfigError(msg) from None
            log.info("connected to the Ray cluster at %s", address)
            return
        self._temp_dir = tempfile.mkdtemp(prefix="mixprep-ray-", dir=_short_temp_root())
        # The local Ray's processes inherit this environment (cheaper than a per-task runtime_env).
        self._set_env(_local_ray_env())
        try:
            self.ray.init(
                num_cpus=workers,
                include_dashboard=False,
                object_store_memory=LOCAL_OBJECT_STORE_BYTES,
                logging_level=logging.WARNING,
                _temp_dir=self._temp_dir,
            )
        except (OSError, RuntimeError, ValueError) as exc:
            msg = (
                f"cannot start a local Ray under {self._temp_dir} ({_first_line(exc)}); set RAY_TMPDIR to a short, "
                f"writable folder, or start Ray yourself (`ray start --head`) and pass --ray-address auto"
            )
            raise ConfigError(msg) from None
        log.info("started a local Ray with %d CPUs (sessions and logs under %s)", workers, self._temp_dir)

    def _set_env(self, values: dict[str, str]) -> None:
        for name, value in values.items():
            self._saved_env.setdefault(name, os.environ.get(name))
            os.environ[name] = value

    def _restore_env(self) -> None:
        for name, value in self._saved_env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        self._saved_env.clear()

    def map(self, fn: Callable[[T], R], items: Sequence[T]) -> Iterator[R]:
        return self._ordered_results(fn, list(items))

    def _ordered_results(self, fn: Callable[[T], R], items: list[T]) -> Iterator[R]:
        ray = self.ray
        fn_ref = ray.put(fn)  # one copy in the object store, not one per task
        pending: deque[tuple[int, Any]] = deque()
        submitted = 0
        try:
            while submitted < len(items) or pending:
                while submitted < len(items) and len(pending) < self.max_in_flight:
                    pending.append((submitted, self._remote.remote(fn_ref, items[submitted])))
                    submitted += 1
                index, ref = pending.popleft()
                yield self._result(ref, items[index])
        finally:
            # A failed task or a driver error ends the build: stop the work still queued.
            for _, ref in pending:
                ray.cancel(ref)

    def _result(self, ref: Any, item: object) -> Any:
        try:
            result = self.ray.get(ref)
        except self.ray.exceptions.RayError as exc:
            cause = getattr(exc, "cause", None) or exc
            log.debug("%s failed on Ray:\n%s", describe_task(item), exc)
            msg = (
                f"{describe_task(item)} failed after {self.max_retries + 1} attempts on Ray: "
                f"{type(cause).__name__}: {_first_line(cause)}; the build stopped and wrote no output "
                f"(Ray's log lines above hold the task's traceback)"
            )
            raise TaskError(msg) from None
        if isinstance(result, _TaskFailed):
            raise result.error
        return result

    def close(self, *, abort: bool = False) -> None:
        if self._owns_connection:
            self.ray.shutdown()
            self._owns_connection = False
        self._restore_env()
        if self._temp_dir is not None:
            shutil.rmtree(self._temp_dir, ignore_errors=True)
            self._temp_dir = None


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else "(no message)"


def _local_ray_env() -> dict[str, str]:
    """Environment for a Ray this executor starts: no usage reporting (unless the user
    asked for it), one thread per worker, and nothing written to the user's home."""
    env = dict(WORKER_ENV)
    if "RAY_USAGE_STATS_ENABLED" not in os.environ:
        env["RAY_USAGE_STATS_ENABLED"] = "0"
    # Ray >= 2.5x turns on token authentication for a new local Ray and, without a token,
    # saves a new one in ~/.ray/auth_token; a per-build token in the environment keeps
    # the authentication without writing to the home folder.
    has_token = any(os.environ.get(name) for name in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH"))
    if not has_token and not os.path.exists(os.path.expanduser("~/.ray/auth_token")):
        env["RAY_AUTH_TOKEN"] = secrets.token_hex(32)
    return env


def _short_temp_root() -> str:
    """Ray puts Unix sockets under its temp folder, and socket paths are limited to
    107 bytes: prefer /tmp over a long $TMPDIR (macOS), as Ray itself does."""
    if os.environ.get("RAY_TMPDIR"):
        return os.environ["RAY_TMPDIR"]
    if os.path.isdir("/tmp") and os.access("/tmp", os.W_OK):
        return "/tmp"
    return tempfile.gettempdir()
