"""`--executor ray` gives the bytes `--workers N` gives: on one local Ray, after retried
tasks, and on a simulated two-node cluster; errors name the task and are not retried
when they are the input's fault.

One local Ray serves the whole test session (starting one takes seconds); everything
it writes stays under pytest's temporary folder.
"""
from __future__ import annotations

import functools
import importlib.util
import itertools
import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pyarrow.parquet as pq
import pytest

import mixprep.build.driver as build_module
from mixprep.build.driver import BuildOptions, build
from mixprep.build.executors import make_executor
from mixprep.build.workdir import TMP_FOLDER
from mixprep.config import load_mixture
from mixprep.errors import ConfigError, MixprepError, RecordError
from mixprep.sources.plan import make_plan

sys.path.insert(0, str(Path(__file__).parent))
from ray_helpers import (  # noqa: E402
    PLANTED_ERROR,
    SHARD_BYTES,
    Flaky,
    attempts,
    read_outputs,
    write_pretrain_mixture,
    write_sft_mixture,
)

RAY_MISSING = importlib.util.find_spec("ray") is None
needs_ray = pytest.mark.skipif(RAY_MISSING, reason='Ray is not installed: pip install "mixprep[ray]"')
REPO = Path(__file__).resolve().parents[1]
# Every test here starts or uses a Ray cluster (seconds each).
pytestmark = pytest.mark.slow


@pytest.fixture(scope="session")
def ray_session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    if RAY_MISSING:
        pytest.skip('Ray is not installed: pip install "mixprep[ray]"')
    import ray

    saved = {name: os.environ.get(name) for name in ("RAY_USAGE_STATS_ENABLED", "RAY_AUTH_TOKEN", "PYTHONPATH")}
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    # Ray's workers inherit this: they unpickle the task wrappers from ray_helpers by name.
    os.environ["PYTHONPATH"] = os.pathsep.join([str(REPO), str(Path(__file__).parent)])
    # Without a token in the environment Ray saves a new one in ~/.ray/auth_token.
    os.environ["RAY_AUTH_TOKEN"] = secrets.token_hex(32)
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        object_store_memory=80 * 1024 * 1024,
        logging_level="WARNING",
        _temp_dir=str(tmp_path_factory.mktemp("ray")),
    )
    try:
        yield
    finally:
        ray.shutdown()
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@pytest.fixture(scope="module")
def mixtures(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("sources")
    return {"pretrain": write_pretrain_mixture(folder), "sft": write_sft_mixture(folder)}


@pytest.fixture(autouse=True)
def small_shards(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(build_module, "make_plan", functools.partial(make_plan, shard_bytes=SHARD_BYTES))


def run_build(config: Path, out: Path, **options: object) -> dict[str, bytes]:
    options.setdefault("small_input_bytes", 0)  # `workers=2` starts a pool even for this small input
    options.setdefault("report", False)
    build(load_mixture(config), BuildOptions(output_dir=out, progress=False, **options))  # type: ignore[arg-type]
    return read_outputs(out)


@pytest.fixture(scope="module")
def local_outputs(mixtures: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, bytes]]:
    """`--workers 1` outputs, the reference every Ray build must match byte for byte."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(build_module, "make_plan", functools.partial(make_plan, shard_bytes=SHARD_BYTES))
        return {phase: run_build(config, tmp_path_factory.mktemp(f"w1-{phase}")) for phase, config in mixtures.items()}


PACKED = {"pretrain": (".tokens.bin", ".tokens.idx"), "sft": ()}


def train_manifest(outputs: dict[str, bytes], phase: str) -> dict:
    return json.loads(outputs[f"{phase}_ray_train.manifest.json"])


# -- same bytes -------------------------------------------------------------------------

@needs_ray
@pytest.mark.parametrize("phase", ["pretrain", "sft"])
def test_ray_matches_workers_1_and_2(
    phase: str, ray_session: None, mixtures: dict[str, Path], local_outputs: dict, tmp_path: Path
) -> None:
    config = mixtures[phase]
    reference = local_outputs[phase]
    two_workers = run_build(config, tmp_path / "w2", workers=2)
    on_ray = run_build(config, tmp_path / "ray", executor="ray")

    assert sorted(reference) == sorted(
        ["README.md"]  # the dataset card
        + [
            f"{phase}_ray_{split}{suffix}"
            for split in ("train", "validation")
            for suffix in (".jsonl", ".parquet", ".idx", ".manifest.json", *PACKED[phase])
        ]
    )
    assert two_workers == reference
    assert on_ray == reference
    for split in ("train", "validation"):
        stem = f"{phase}_ray_{split}"
        rows = pq.read_table(tmp_path / "ray" / f"{stem}.parquet").to_pylist()
        assert rows == pq.read_table(tmp_path / "w2" / f"{stem}.parquet").to_pylist()
        assert len(rows) == len(reference[f"{stem}.jsonl"].splitlines())

    # The mixture really exercises filters, wraparound, several scan tasks and buckets.
    sources = train_manifest(reference, phase)["sources"]
    assert sum(sum(s["removed"].values()) for s in sources.values()) > 0
    assert max(s["extra_copies"] for s in sources.values()) > 0
    assert len(make_plan(load_mixture(config), shard_bytes=SHARD_BYTES)) > 2
    if phase == "pretrain":  # ~1.8 MB: several 1 MiB write buckets, each filling its part of the packed split
        assert len(train_manifest(reference, phase)["output"]["checksum"]["chunks"]) > 1
        assert len(train_manifest(reference, phase)["output"]["packed"]["checksum"]["chunks"]) > 1
    else:  # the evaluation set's table is read by the Ray workers too
        assert 0 < sources["chat"]["decontaminated"] <= 15  # 15 planted; the filters may remove some first


# -- retries ----------------------------------------------------------------------------

@needs_ray
@pytest.mark.parametrize(
    ("task", "target", "mode"),
    [
        ("scan_task", "scan-1", "raise"),  # an exception in the task: Ray retries it
        ("scan_task", "scan-2", "crash"),  # the worker process dies: a system failure, retried
        ("write_bucket", "train-1", "crash"),
    ],
)
def test_a_task_retried_after_failing_once_gives_the_same_digest(
    task: str,
    target: str,
    mode: str,
    ray_session: None,
    mixtures: dict[str, Path],
    local_outputs: dict,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    markers = tmp_path / "attempts"
    markers.mkdir()
    flaky = Flaky(getattr(build_module, task), str(markers), target, mode)  # type: ignore[arg-type]
    monkeypatch.setattr(build_module, task, flaky)

    outputs = run_build(mixtures["pretrain"], tmp_path / "out", executor="ray")

    assert attempts(markers, target) == 2
    expected = train_manifest(local_outputs["pretrain"], "pretrain")["output"]["checksum"]
    assert train_manifest(outputs, "pretrain")["output"]["checksum"] == expected
    assert outputs == local_outputs["pretrain"]


@needs_ray
def test_a_mixprep_error_is_not_retried_and_reaches_the_driver_unchanged(
    ray_session: None, mixtures: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    markers = tmp_path / "attempts"
    markers.mkdir()
    monkeypatch.setattr(build_module, "scan_task", Flaky(build_module.scan_task, str(markers), "scan-1", "record_error"))

    with pytest.raises(RecordError, match=f"^{re.escape(PLANTED_ERROR)}$") as caught:
        run_build(mixtures["pretrain"], tmp_path / "out", executor="ray")

    assert type(caught.value) is RecordError
    assert attempts(markers, "scan-1") == 1
    assert read_outputs(tmp_path / "out") == {}


@needs_ray
def test_a_bad_record_stops_a_ray_build_with_the_local_message(ray_session: None, tmp_path: Path) -> None:
    source = tmp_path / "bad.jsonl"
    source.write_text("".join(json.dumps({"text": f"record number {i}"}) + "\n" for i in range(6)) + "{oops\n")
    config = tmp_path / "bad.yaml"
    config.write_text("metadata: {phase: pretrain, name: bad}\ndatasets:\n  - {name: a, mix_ratio: 1.0, source: bad.jsonl}\n")

    with pytest.raises(RecordError) as local:
        run_build(config, tmp_path / "local")
    with pytest.raises(RecordError, match=r"bad\.jsonl:7: .*on_bad_record: skip") as on_ray:
        run_build(config, tmp_path / "ray", executor="ray")

    assert str(on_ray.value) == str(local.value)
    assert read_outputs(tmp_path / "ray") == {}


@needs_ray
@pytest.mark.parametrize(
    ("task", "target", "expected"),
    [
        ("scan_task", "scan-0", r"scan task 0 \(a: .*a\.jsonl bytes 0-\d+\)"),
        ("write_bucket", "train-1", r"write task for train bucket 1"),
    ],
)
def test_a_task_that_keeps_failing_stops_the_build_naming_the_task(
    task: str,
    target: str,
    expected: str,
    ray_session: None,
    mixtures: dict[str, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    markers = tmp_path / "attempts"
    markers.mkdir()
    monkeypatch.setattr(build_module, task, Flaky(getattr(build_module, task), str(markers), target, "always"))
    out = tmp_path / "out"

    with pytest.raises(MixprepError, match=f"^{expected} failed after 4 attempts on Ray: RuntimeError: disk on fire;"):
        run_build(mixtures["pretrain"], out, executor="ray")

    assert attempts(markers, target) == 4
    assert read_outputs(out) == {}  # nothing that looks like a finished output
    assert not any((out / TMP_FOLDER).glob("*"))  # the work folder is gone too


# -- the executor itself ---------------------------------------------------------------------

def _sleep_then_return(item: tuple[int, float]) -> tuple[int, float, float]:
    index, seconds = item
    start = time.monotonic()
    time.sleep(seconds)
    return index, start, time.monotonic()


@needs_ray
def test_results_come_in_input_order_with_a_bounded_number_in_flight(ray_session: None) -> None:
    from mixprep.build.ray_executor import RayExecutor

    reversed_finish = [(i, 0.4 - 0.1 * i) for i in range(4)]
    executor = RayExecutor()
    try:
        assert [r[0] for r in executor.map(_sleep_then_return, reversed_finish)] == [0, 1, 2, 3]
    finally:
        executor.close()

    one_at_a_time = RayExecutor(max_in_flight=1)
    try:
        spans = [r[1:] for r in one_at_a_time.map(_sleep_then_return, [(i, 0.2) for i in range(4)])]
    finally:
        one_at_a_time.close()
    # The session has two CPUs, so only the in-flight bound keeps these from overlapping.
    assert all(end <= next_start for (_, end), (next_start, _) in itertools.pairwise(spans))


@needs_ray
def test_close_leaves_a_ray_connection_it_did_not_open(ray_session: None) -> None:
    import ray

    from mixprep.build.ray_executor import RayExecutor

    executor = RayExecutor(address="auto")  # the session's connection is reused, not replaced
    executor.close()
    assert ray.is_initialized()


@needs_ray
def test_an_unreachable_ray_address_is_a_clear_error(ray_session: None, monkeypatch: pytest.MonkeyPatch) -> None:
    import ray

    from mixprep.build.ray_executor import RayExecutor

    def no_cluster(**kwargs: object) -> None:
        msg = "Could not find any running Ray instance. Please specify the one to connect to."
        raise ConnectionError(msg)

    # As in a fresh process: not connected yet, and nothing listening at the address.
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", no_cluster)
    expected = (
        "--ray-address auto: cannot connect to a Ray cluster (Could not find any running Ray instance. Please specify "
        "the one to connect to.); start one with `ray start --head` (then use --ray-address auto) or leave out "
        "--ray-address to start a local Ray"
    )
    with pytest.raises(ConfigError, match=f"^{re.escape(expected)}$"):
        RayExecutor(address="auto")


def test_without_ray_the_error_says_how_to_install_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # makes `import ray` fail as if it were not installed
    from mixprep.build.ray_executor import RayExecutor

    with pytest.raises(ConfigError, match=r'^--executor ray needs Ray, which is not installed .*pip install "mixprep\[ray\]"$'):
        RayExecutor()
    with pytest.raises(ConfigError, match=r"--executor ray needs Ray"):
        make_executor("ray", 1)


def test_workers_below_one_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    from mixprep.build.ray_executor import RayExecutor

    with pytest.raises(ConfigError, match=r"^--workers must be >= 1, got 0$"):
        RayExecutor(workers=0)


# -- in child processes: a driver can join only one Ray instance ----------------------------

def _child_env(tmp_path: Path, ray_temp: Path) -> dict[str, str]:
    (ray_temp / "ray").mkdir()  # Ray records the cluster's address in $RAY_TMPDIR/ray
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env.update(
        PYTHONPATH=os.pathsep.join([str(REPO), str(Path(__file__).parent)]),
        RAY_USAGE_STATS_ENABLED="0",
        RAY_AUTH_TOKEN=secrets.token_hex(32),
        RAY_TMPDIR=str(ray_temp),
        TMPDIR=str(tmp_path),
    )
    return env


@needs_ray
def test_a_two_node_cluster_gives_the_same_bytes(
    mixtures: dict[str, Path], local_outputs: dict, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    out, markers = tmp_path / "out", tmp_path / "nodes"
    markers.mkdir()
    # Ray's socket paths (temp/session_<date>_<pid>/sockets/plasma_store) must fit in 107 bytes,
    # which pytest's folder names do not leave room for.
    temp = Path(tempfile.mkdtemp(prefix="mxr", dir="/tmp" if os.access("/tmp", os.W_OK) else None))
    request.addfinalizer(lambda: shutil.rmtree(temp, ignore_errors=True))
    done = subprocess.run(
        [sys.executable, str(Path(__file__).parent / "ray_helpers.py"), str(mixtures["pretrain"]), str(out), str(markers), str(temp)],
        env=_child_env(tmp_path, temp),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert read_outputs(out) == local_outputs["pretrain"]
    nodes = {p.name.split(".")[0] for p in markers.iterdir()}
    assert len(nodes) == 2, f"scan tasks ran on {nodes}"


@needs_ray
def test_the_cli_starts_and_stops_its_own_local_ray_writing_only_under_temp(
    mixtures: dict[str, Path], local_outputs: dict, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    out, home = tmp_path / "out", tmp_path / "home"
    home.mkdir()
    temp = Path(tempfile.mkdtemp(prefix="mxr", dir="/tmp" if os.access("/tmp", os.W_OK) else None))
    request.addfinalizer(lambda: shutil.rmtree(temp, ignore_errors=True))
    env = {**_child_env(tmp_path, temp), "HOME": str(home)}
    command = [sys.executable, "-m", "mixprep", "build", str(mixtures["pretrain"]), "--output-dir", str(out)]
    done = subprocess.run(
        [*command, "--executor", "ray", "--workers", "2", "--no-progress"],
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=240,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    # Default sharding here, small shards in the reference: record identity does not depend on it.
    assert read_outputs(out) == local_outputs["pretrain"]
    # No ~/.ray/auth_token, no usage-stats files: only matplotlib's font cache and config
    # folder (the report's plots), as any matplotlib program leaves them.
    folders = {p.relative_to(home).as_posix() for p in home.rglob("*") if p.is_dir()}
    assert folders <= {".cache", ".cache/matplotlib", ".config", ".config/matplotlib"}
    assert not any(".ray" in p.parts for p in home.rglob("*"))
    assert list(temp.glob("mixprep-ray-*")) == []  # its session folder is removed on close


@needs_ray
def test_a_local_ray_that_cannot_start_is_a_clear_error(ray_session: None, monkeypatch: pytest.MonkeyPatch) -> None:
    import ray

    from mixprep.build.ray_executor import RayExecutor

    def too_long(**kwargs: object) -> None:
        msg = "validate_socket_filename failed: AF_UNIX path length cannot exceed 107 bytes"
        raise OSError(msg)

    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", too_long)
    before = dict(os.environ)
    with pytest.raises(
        ConfigError, match=r"^cannot start a local Ray under \S+/mixprep-ray-\w+ \(validate_socket_filename .*set RAY_TMPDIR"
    ):
        RayExecutor(workers=2)
    assert dict(os.environ) == before  # the environment it set for Ray is put back
