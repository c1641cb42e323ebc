"""Remote sources through fsspec: s3:// against a moto S3 server on loopback (as s3fs's
own tests do), http:// against the standard library's file server. A tree read from S3
or HTTP builds to the same bytes as the same tree on disk; a store that does not answer
is one error line within the source's timeouts."""

from __future__ import annotations

import functools
import gzip
import http.server
import json
import socket
import threading
import time
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
    config = two_sources(tmp_path, s3_source(s3_endpoint, f"s3://{bucket}/x/*.jsonl"), s3_source(s3_endpoint, f"s3://{bucket}/p/*.parquet"))
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
    config = two_sources(tmp_path, s3_source(s3_endpoint, f"s3://{bucket}/x"), s3_source(s3_endpoint, f"s3://{bucket}/p/t.parquet"))
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


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts connections and never answers (a hung store or proxy)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                accepted.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield int(server.getsockname()[1])
    finally:
        stop.set()
        thread.join()
        for conn in accepted:
            conn.close()
        server.close()


@pytest.fixture(scope="module")
def http_root(local_tree: Path) -> Iterator[str]:
    """local_tree served over HTTP by http.server (no byte ranges: files are streamed)."""
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(local_tree))
    handler.log_message = lambda *args: None  # type: ignore[attr-defined]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_http_sources_build_the_same_bytes_as_local_files(tmp_path: Path, http_root: str, local_tree: Path) -> None:
    remote = two_sources(tmp_path / "remote", [f"{http_root}/x/a.jsonl", f"{http_root}/x/b.jsonl.gz"], f"{http_root}/x/deep/c.jsonl")
    local = two_sources(
        tmp_path / "local",
        [str(local_tree / "x" / "a.jsonl"), str(local_tree / "x" / "b.jsonl.gz")],
        str(local_tree / "x" / "deep" / "c.jsonl"),
    )
    remote_out = build(remote, tmp_path / "remote-out").files["train"]
    assert remote_out.read_bytes() == build(local, tmp_path / "local-out").files["train"].read_bytes()
    assert {r["text"][0] for r in read_jsonl(remote_out)} == {"a", "b", "c"}
    assert [i["path"] for i in manifest_of(remote_out)["inputs"]] == [
        f"{http_root}/x/a.jsonl",
        f"{http_root}/x/b.jsonl.gz",
        f"{http_root}/x/deep/c.jsonl",
    ]


def test_an_http_glob_matches_the_links_of_a_folder_page(tmp_path: Path, http_root: str) -> None:
    config = two_sources(tmp_path, f"{http_root}/x/*.jsonl*", f"{http_root}/x/deep/*.jsonl")
    inputs = [i["path"] for i in manifest_of(build(config, tmp_path / "out").files["train"])["inputs"]]
    assert inputs == [f"{http_root}/x/a.jsonl", f"{http_root}/x/b.jsonl.gz", f"{http_root}/x/deep/c.jsonl"]


def test_http_missing_file_is_not_found(tmp_path: Path, http_root: str) -> None:
    config = two_sources(tmp_path, f"{http_root}/x/gone.jsonl", f"{http_root}/x/a.jsonl")
    with pytest.raises(SourceError, match=rf"dataset 'x': file not found: {http_root}/x/gone.jsonl$"):
        build(config, tmp_path / "out")


def quick_timeouts(source: dict[str, object]) -> dict[str, object]:
    return {**source, "timeouts": {"connect": 1, "read": 1, "attempts": 2}}


def test_silent_s3_endpoint_fails_within_the_timeouts(tmp_path: Path, silent_port: int, s3_endpoint: str) -> None:
    config = two_sources(
        tmp_path,
        quick_timeouts(s3_source(f"http://127.0.0.1:{silent_port}", "s3://bucket/x/*.jsonl")),
        quick_timeouts(s3_source(f"http://127.0.0.1:{silent_port}", "s3://bucket/p/*.parquet")),
    )
    started = time.monotonic()
    with pytest.raises(SourceError) as failure:
        build(config, tmp_path / "out")
    # 2 attempts x (1 s read) plus start-up; s3fs's own 5 retries and a 15 s read timeout
    # made this 415 s before.
    assert time.monotonic() - started < 20
    message = str(failure.value)
    assert message.startswith("dataset 'x': cannot list s3://bucket/x/*.jsonl: no answer in time")
    assert "gave up after 2 attempt(s) with connect timeout 1 s, read timeout 1 s" in message
    assert "\n" not in message
    assert not [p for p in (tmp_path / "out").rglob("*") if p.is_file()]


def test_refused_s3_endpoint_is_one_clear_error(tmp_path: Path, s3_endpoint: str) -> None:
    closed = f"http://127.0.0.1:{free_port()}"
    config = two_sources(tmp_path, quick_timeouts(s3_source(closed, "s3://bucket/x/*.jsonl")), s3_source(closed, "s3://bucket/p/*.parquet"))
    started = time.monotonic()
    with pytest.raises(SourceError, match=r"dataset 'x': cannot list s3://bucket/x/\*.jsonl: Could not connect to the endpoint URL"):
        build(config, tmp_path / "out")
    assert time.monotonic() - started < 20


def test_silent_http_server_fails_within_the_timeouts(tmp_path: Path, silent_port: int, http_root: str) -> None:
    url = f"http://127.0.0.1:{silent_port}/a.jsonl"
    config = two_sources(tmp_path, quick_timeouts({"path": url}), f"{http_root}/x/a.jsonl")
    started = time.monotonic()
    with pytest.raises(SourceError, match=rf"dataset 'x': cannot list {url}: no answer in time .*read timeout 1 s"):
        build(config, tmp_path / "out")
    assert time.monotonic() - started < 20
