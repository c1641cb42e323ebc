"""Remote sources through fsspec: s3:// against a moto S3 server on loopback (as s3fs's
own tests do). A tree read from S3 builds to the same bytes as the same tree on disk."""
from __future__ import annotations

import gzip
import json
import socket
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from helpers import build, manifest_of, mixture, read_jsonl, texts, write_jsonl

from mixprep.config import load_mixture
from mixprep.errors import SourceError
from mixprep.sources import plan

pytest.importorskip("s3fs")
moto_server = pytest.importorskip("moto.server")

BUCKET = "mixprep-test"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    with pytest.MonkeyPatch.context() as env:
        for name, value in (("AWS_ACCESS_KEY_ID", "foo"), ("AWS_SECRET_ACCESS_KEY", "bar"), ("AWS_DEFAULT_REGION", "us-east-1")):
            env.setenv(name, value)
        env.delenv("AWS_PROFILE", raising=False)
        port = free_port()
        server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=port)
        server.start()
        try:
            yield f"http://127.0.0.1:{port}"
        finally:
            server.stop()


@pytest.fixture(scope="module")
def local_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """x/a.jsonl (large enough to shard), x/b.jsonl.gz, x/notes.txt, x/deep/c.jsonl, p/t.parquet."""
    root = tmp_path_factory.mktemp("tree")
    write_jsonl(root / "x" / "a.jsonl", texts("a", 400, words=8))
    (root / "x" / "b.jsonl.gz").write_bytes(gzip.compress("".join(json.dumps(r) + "\n" for r in texts("b", 150)).encode()))
    (root / "x" / "notes.txt").write_text("not data\n")
    write_jsonl(root / "x" / "deep" / "c.jsonl", texts("c", 50))
    (root / "p").mkdir()
    pq.write_table(pa.Table.from_pylist(texts("p", 120)), root / "p" / "t.parquet", row_group_size=50)
    return root


@pytest.fixture(scope="module")
def bucket(s3_endpoint: str, local_tree: Path) -> str:
    import s3fs

    fs = s3fs.S3FileSystem(client_kwargs={"endpoint_url": s3_endpoint}, skip_instance_cache=True)
    fs.mkdir(BUCKET)
    for path in sorted(p for p in local_tree.rglob("*") if p.is_file()):
        fs.put_file(str(path), f"{BUCKET}/{path.relative_to(local_tree).as_posix()}")
    return BUCKET


def s3_source(endpoint: str, path: str) -> dict[str, object]:
    return {"path": path, "storage_options": {"client_kwargs": {"endpoint_url": endpoint}}}


def two_sources(folder: Path, first: object, second: object) -> Path:
    return mixture(
        folder,
        [{"name": "x", "mix_ratio": 0.7, "source": first}, {"name": "p", "mix_ratio": 0.3, "source": second}],
        total_samples=800,
        seed=3,
    )


def test_s3_glob_builds_the_same_bytes_as_local_files(
    tmp_path: Path, s3_endpoint: str, bucket: str, local_tree: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(plan, "SHARD_BYTES", 4096)  # several byte-range shards of a.jsonl, read by seek
    remote = two_sources(
        tmp_path / "remote",
        s3_source(s3_endpoint, f"s3://{bucket}/x/**/*.jsonl*"),
        s3_source(s3_endpoint, f"s3://{bucket}/p/t.parquet"),
    )
    local = two_sources(tmp_path / "local", str(local_tree / "x" / "**" / "*.jsonl*"), str(local_tree / "p" / "t.parquet"))
    remote_out = build(remote, tmp_path / "remote-out").files["train"]
    local_out = build(local, tmp_path / "local-out").files["train"]
    assert remote_out.read_bytes() == local_out.read_bytes()
    records = read_jsonl(remote_out)
    assert len(records) == 800 and {r["text"][0] for r in records} == {"a", "b", "c", "p"}
    inputs = manifest_of(remote_out)["inputs"]
    assert [i["path"] for i in inputs] == [
        f"s3://{bucket}/x/a.jsonl",
        f"s3://{bucket}/x/b.jsonl.gz",
        f"s3://{bucket}/x/deep/c.jsonl",
        f"s3://{bucket}/p/t.parquet",
    ]
    assert all(i["etag"] and i["size"] > 0 for i in inputs)
    assert sum(1 for t in plan.make_plan(load_mixture(remote)) if t.file.relpath == "a.jsonl") > 1


@pytest.mark.slow
def test_s3_output_is_identical_across_workers(tmp_path: Path, s3_endpoint: str, bucket: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(plan, "SHARD_BYTES", 4096)
    config = two_sources(
        tmp_path, s3_source(s3_endpoint, f"s3://{bucket}/x/*.jsonl"), s3_source(s3_endpoint, f"s3://{bucket}/p/*.parquet")
    )
    one = build(config, tmp_path / "w1", workers=1).files["train"].read_bytes()
    two = build(config, tmp_path / "w2", workers=2).files["train"].read_bytes()
    assert one == two


def test_s3_missing_objects_are_clear_errors(tmp_path: Path, s3_endpoint: str, bucket: str) -> None:
    config = two_sources(
        tmp_path, s3_source(s3_endpoint, f"s3://{bucket}/nothing/*.jsonl"), s3_source(s3_endpoint, f"s3://{bucket}/p/t.parquet")
    )
    with pytest.raises(SourceError, match=rf"dataset 'x': glob matches no file: s3://{bucket}/nothing/\*.jsonl"):
        build(config, tmp_path / "o1")
    config = two_sources(
        tmp_path, s3_source(s3_endpoint, f"s3://{bucket}/x/gone.jsonl"), s3_source(s3_endpoint, f"s3://{bucket}/p/t.parquet")
    )
    with pytest.raises(SourceError, match=rf"dataset 'x': file not found: s3://{bucket}/x/gone.jsonl"):
        build(config, tmp_path / "o2")
    config = two_sources(
        tmp_path, s3_source(s3_endpoint, f"s3://{bucket}/x"), s3_source(s3_endpoint, f"s3://{bucket}/p/t.parquet")
    )
    with pytest.raises(SourceError, match=rf"s3://{bucket}/x is a folder; name its files with a glob such as s3://{bucket}/x/\*.jsonl"):
        build(config, tmp_path / "o3")


@pytest.mark.slow
def test_changed_remote_object_changes_the_build_key(tmp_path: Path, s3_endpoint: str, bucket: str) -> None:
    import s3fs

    fs = s3fs.S3FileSystem(client_kwargs={"endpoint_url": s3_endpoint}, skip_instance_cache=True)
    fs.pipe_file(f"{bucket}/y/one.jsonl", b'{"text": "first version"}\n')
    config = mixture(tmp_path, [{"name": "y", "mix_ratio": 1.0, "source": s3_source(s3_endpoint, f"s3://{bucket}/y/*.jsonl")}])
    first = build(config, tmp_path / "out")
    fs.pipe_file(f"{bucket}/y/one.jsonl", b'{"text": "second version!"}\n')
    second = build(config, tmp_path / "out")
    assert not second.reused
    assert [r["text"] for r in read_jsonl(second.files["train"])] == ["second version!"]
    assert manifest_of(second.files["train"])["inputs"][0]["etag"] != first.manifests["train"]["inputs"][0]["etag"]
