"""The local process pool: workers forked from a fork server that loaded the build once."""
from __future__ import annotations

import os
import sys

import pytest

from mixprep.build.executors import LocalExecutor

# Nothing here imports the build's task modules: the workers unpickle `_worker_state` from
# this module, and must be found with them loaded already.


def _worker_state(variable: str) -> tuple[int, bool, int, str | None]:
    """In a worker, before it ran any build task: its pid, whether the build's modules were
    there already, how many kernels numba had loaded, and an environment variable."""
    imported = "mixprep.build.scan" in sys.modules and "polars" in sys.modules
    from mixprep.build import strictjson
    from mixprep.sources import readers

    loaded = len(readers._line_spans.overloads) + len(strictjson._strict_fields.overloads)
    return os.getpid(), imported, loaded, os.environ.get(variable)


def _states_from_a_new_pool(variable: str) -> list[tuple[int, bool, int, str | None]]:
    executor = LocalExecutor(2)
    try:
        return list(executor.map(_worker_state, [variable] * 4))
    finally:
        executor.close()


@pytest.mark.slow
def test_pool_workers_start_with_the_build_loaded_and_the_drivers_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    variable = "MIXPREP_TEST_WORKER_VARIABLE"
    monkeypatch.setenv(variable, "first")
    first = _states_from_a_new_pool(variable)
    assert all(imported for _, imported, _, _ in first), "a worker imported the build itself"
    assert all(kernels >= 2 for _, _, kernels, _ in first), "a worker loaded the kernels itself"
    assert {value for *_, value in first} == {"first"}
    # The fork server outlives the pool and keeps the environment it started with; workers
    # of the next pool must still see the driver's environment as it is then.
    monkeypatch.setenv(variable, "second")
    second = _states_from_a_new_pool(variable)
    assert {value for *_, value in second} == {"second"}
    assert {pid for pid, *_ in first}.isdisjoint(pid for pid, *_ in second), "the second pool has workers of its own"


def test_the_worker_preload_runs_every_kernel_it_names() -> None:
    # The fork server ignores a preload that fails (workers then load what they need), so
    # a broken warm-up would only show as slow workers: call it here, where it must not raise.
    from mixprep.build import preload

    preload.load_kernels()


@pytest.mark.slow
def test_without_a_fork_server_workers_are_spawned_and_still_get_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    import multiprocessing

    monkeypatch.setattr(multiprocessing, "get_all_start_methods", lambda: ["fork", "spawn"])
    variable = "MIXPREP_TEST_WORKER_VARIABLE"
    monkeypatch.setenv(variable, "spawned")
    states = _states_from_a_new_pool(variable)
    assert {value for *_, value in states} == {"spawned"}
    assert not any(imported for _, imported, _, _ in states), "a spawned worker starts bare"
