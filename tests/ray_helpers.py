"""Helpers for test_ray.py that Ray workers must import by name: task wrappers that
fail on purpose or record where they ran, the test data, and the two-node build run
in a child process (a driver can join only one Ray instance)."""
from __future__ import annotations

import json
import os
import random
import sys
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from mixprep.errors import RecordError

SHARD_BYTES = 256 * 1024  # several scan tasks per source file
WORDS = "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi omicron pi rho sigma".split()
PLANTED_ERROR = "planted.jsonl:7: invalid JSON (dataset 'a')"


def task_name(job: Any) -> str:
    """`scan-<task id>` or `<split>-<bucket>`: how a wrapper picks its target."""
    if hasattr(job, "task"):
        return f"scan-{job.task.task_id}"
    return f"{job.split}-{job.bucket}"


def _touch(folder: str, name: str) -> None:
    Path(folder, f"{name}.{uuid.uuid4().hex}").touch()


def attempts(folder: str | Path, target: str) -> int:
    return sum(1 for p in Path(folder).iterdir() if p.name.startswith(f"{target}."))


@dataclass(frozen=True)
class Flaky:
    """Runs `fn`, except on the `target` task, which fails as `mode` says.

    raise / crash: the first attempt does the real work (its files are written), then
    raises / kills its worker process; later attempts succeed. record_error: raises a
    RecordError every time. always: raises a RuntimeError every time.
    """

    fn: Callable[[Any], Any]
    marker_dir: str
    target: str
    mode: Literal["raise", "crash", "record_error", "always"]

    def __call__(self, job: Any) -> Any:
        if task_name(job) != self.target:
            return self.fn(job)
        _touch(self.marker_dir, self.target)
        if self.mode == "always":
            msg = "disk on fire"
            raise RuntimeError(msg)
        if self.mode == "record_error":
            raise RecordError(PLANTED_ERROR)
        if attempts(self.marker_dir, self.target) == 1:
            self.fn(job)
            if self.mode == "crash":
                os._exit(1)
            msg = "transient failure"
            raise RuntimeError(msg)
        return self.fn(job)


@dataclass(frozen=True)
class WhereRan:
    """Runs `fn` and leaves a marker named after the Ray node that ran it."""

    fn: Callable[[Any], Any]
    marker_dir: str

    def __call__(self, job: Any) -> Any:
        import ray

        _touch(self.marker_dir, ray.get_runtime_context().get_node_id())
        return self.fn(job)


# -- data -----------------------------------------------------------------------------

def _texts(rng: random.Random, n: int, max_words: int = 120) -> list[str]:
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(1, max_words))) for _ in range(n)]


def write_pretrain_mixture(folder: Path) -> Path:
    """Two sources; filters remove some records, `b` is too small for its share (wraparound),
    the train split (~1.8 MB) takes two 1 MiB write buckets, and each split is also packed
    (tokens counted in the scan tasks, ids written by the write tasks)."""
    from helpers import train_byte_level_bpe  # driver side only: Ray workers import this module too

    rng = random.Random(0)
    folder.mkdir(parents=True, exist_ok=True)
    for name, n in (("a", 2400), ("b", 300)):
        with open(folder / f"{name}.jsonl", "w", encoding="utf-8") as f:
            for text in _texts(rng, n, max_words=220):
                f.write(json.dumps({"text": text, "id": rng.randint(0, 10**9)}) + "\n")
    train_byte_level_bpe(folder / "tok", [" ".join(WORDS)] * 20, vocab_size=320, special_tokens=["<|endoftext|>"])
    config = folder / "pretrain.yaml"
    config.write_text(
        "metadata:\n  phase: pretrain\n  name: ray\n  seed: 11\n  total_samples: 2600\n"
        "  tokenizer: tok\n  pack: {seq_len: 64}\n"
        "  validation: {fraction: 0.05}\n  filters: {min_chars: 40}\n  shuffle_bucket_mb: 1\n"
        "datasets:\n"
        "  - {name: a, mix_ratio: 0.6, source: a.jsonl}\n"
        "  - {name: b, mix_ratio: 0.4, source: b.jsonl, filters: {max_words: 200}}\n"
    )
    return config


def write_sft_mixture(folder: Path) -> Path:
    """Two sources; some chats ask a question of the evaluation set (decontaminated)."""
    rng = random.Random(1)
    folder.mkdir(parents=True, exist_ok=True)
    leaked = []
    for name, n in (("chat", 900), ("notes", 120)):
        with open(folder / f"{name}.jsonl", "w", encoding="utf-8") as f:
            for i, (question, answer) in enumerate(zip(_texts(rng, n), _texts(rng, n), strict=True)):
                if name == "chat" and i % 60 == 0:
                    leaked.append(" ".join(rng.choice(WORDS) for _ in range(30)))
                    question = f"{question} {leaked[-1]}"
                turns = [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]
                f.write(json.dumps({"conversations": turns}) + "\n")
    with open(folder / "eval.jsonl", "w", encoding="utf-8") as f:
        f.writelines(json.dumps({"question": q}) + "\n" for q in leaked)
    config = folder / "sft.yaml"
    config.write_text(
        "metadata:\n  phase: sft\n  name: ray\n  seed: 5\n  total_samples: 1000\n  filter_on: assistant\n"
        "  validation: {samples: 40}\n  shuffle_bucket_mb: 1\n"
        "  decontaminate: {sources: [eval.jsonl], field: question}\n"
        "datasets:\n"
        "  - {name: chat, mix_ratio: 0.7, source: chat.jsonl, filters: {min_words: 8}}\n"
        "  - {name: notes, mix_ratio: 0.3, source: notes.jsonl}\n"
    )
    return config


INDEX_MTIME = slice(32, 40)  # the .idx header's data_mtime_ns (mixprep/index.py): when, not what


def read_outputs(folder: Path) -> dict[str, bytes]:
    """Every finished output file's bytes, by name (the temporary area excluded); an
    index's record of its JSONL's mtime is zeroed, everything else is compared as is but
    the report (it records how long the build took)."""
    outputs = {}
    for path in sorted(folder.iterdir()):
        if path.is_file() and not path.name.endswith(".report.html"):
            data = bytearray(path.read_bytes())
            if path.suffix == ".idx" and not path.name.endswith(".tokens.idx"):  # a packed split's index has no mtime
                data[INDEX_MTIME] = bytes(8)
            outputs[path.name] = bytes(data)
    return outputs


# -- the two-node cluster, in a child process ------------------------------------------

def two_node_build(config: str, out_dir: str, marker_dir: str, temp_dir: str) -> None:
    """Start a head and a worker node (one CPU each), build with `--ray-address` and
    record which node ran each scan task."""
    import functools

    import ray
    from ray.cluster_utils import Cluster

    import mixprep.build.driver as build_module
    from mixprep.config import load_mixture
    from mixprep.sources.plan import make_plan

    node_args = {"num_cpus": 1, "object_store_memory": 80 * 1024 * 1024, "include_dashboard": False}
    cluster = Cluster(initialize_head=True, head_node_args={**node_args, "temp_dir": temp_dir})
    try:
        cluster.add_node(**node_args)
        cluster.wait_for_nodes()
        build_module.make_plan = functools.partial(make_plan, shard_bytes=SHARD_BYTES)
        build_module.scan_task = WhereRan(build_module.scan_task, marker_dir)
        options = build_module.BuildOptions(
            output_dir=Path(out_dir), executor="ray", ray_address=cluster.address, progress=False
        )
        build_module.build(load_mixture(config), options)
        # The executor joined this cluster, so it disconnects but leaves the cluster running.
        assert not ray.is_initialized()
        assert len(cluster.list_all_nodes()) == 2
    finally:
        cluster.shutdown()


if __name__ == "__main__":
    two_node_build(*sys.argv[1:5])
