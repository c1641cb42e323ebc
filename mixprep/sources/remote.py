"""Remote sources through fsspec (`s3://`, `gs://`, `https://`, `hf://`, ...): list and open.

Used by `plan` (listing a pattern into objects with size and version) and `sources`
(opening one object for reading). A remote pattern has the same meaning as a local
one: a glob expands to the matching *files*, in sorted order, and each file is named
relative to the pattern's last glob-free folder, so the same tree built from S3 or
from a local copy gives the same record identities and the same output bytes.
Local paths never come here: `plan` and `sources` keep their plain os/open fast path.

fsspec (and the file system package a scheme needs, e.g. s3fs) is imported only
when a remote source is used. Options for the file system come from the source's
`storage_options`, then from fsspec's own configuration (`FSSPEC_S3_ENDPOINT_URL`
style environment variables, ~/.config/fsspec). Every request is bounded by the
source's `timeouts` (connect, read, attempts) unless `storage_options` set the
file system's own: a store that never answers is an error in seconds, not minutes.
`http(s)://` URLs keep their scheme (fsspec's HTTP file system wants whole URLs) and
are streamed when read front to back.
"""
from __future__ import annotations

import datetime as dt
import glob
import posixpath
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, BinaryIO

from mixprep.config.schema import RemoteTimeouts
from mixprep.errors import SourceError

# "s3://", "gs://", "hf://", "https://", "memory://"; not "C:\..." (one-letter drive).
_URL_RE = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.-]+)://")
READ_BLOCK_BYTES = 8 * 1024 * 1024
"""fsspec's read-ahead per request: large enough that a 16 MiB block is two requests."""
HTTP_SCHEMES = ("http", "https")


@dataclass(frozen=True)
class RemoteObject:
    url: str
    relpath: str
    size: int
    mtime_ns: int
    etag: str | None


def scheme_of(path: str) -> str | None:
    match = _URL_RE.match(path)
    return match.group("scheme").lower() if match else None


def is_remote(path: str) -> bool:
    """True for URLs fsspec must read; `file://` and plain paths stay on the local fast path."""
    return scheme_of(path) not in (None, "file", "local")


def split_url(url: str) -> tuple[str, str]:
    """("s3", "bucket/key") for "s3://bucket/key"."""
    scheme = scheme_of(url)
    assert scheme is not None
    return scheme, url[len(scheme) + 3 :]


def fs_path(url: str) -> str:
    """The path the scheme's file system expects: HTTP wants the whole URL, others drop the scheme."""
    scheme, path = split_url(url)
    return url if scheme in HTTP_SCHEMES else path


def pattern_root(pattern: str) -> str:
    """The path (without scheme) that matches are named relative to: the last glob-free folder."""
    _, path = split_url(pattern)
    parts = path.split("/")
    for i, part in enumerate(parts):
        if glob.has_magic(part):
            return "/".join(parts[:i])
    return posixpath.dirname(path)


def list_objects(
    pattern: str, storage_options: Mapping[str, Any] | None, timeouts: RemoteTimeouts, dataset_name: str
) -> list[RemoteObject]:
    """Every file a remote path or glob names, sorted by path. Raises SourceError for none."""
    fs = _filesystem(pattern, storage_options, timeouts, dataset_name)
    scheme = split_url(pattern)[0]
    path = fs_path(pattern)
    magic = glob.has_magic(split_url(pattern)[1])
    # fsspec caches instances and their listings per process: a second build in the same
    # process must see objects written since (a stale size/ETag would reuse old outputs).
    fs.invalidate_cache()
    try:
        if magic:
            infos = fs.glob(path, detail=True)
        else:
            infos = {path: fs.info(path)}
    except FileNotFoundError as exc:
        failure = _network_failure_behind(exc)
        if failure is not None:
            msg = f"dataset {dataset_name!r}: cannot list {pattern}: {describe_network_error(failure, timeouts, pattern)}"
            raise SourceError(msg) from None
        infos = {}
    except network_errors() as exc:
        msg = f"dataset {dataset_name!r}: cannot list {pattern}: {describe_network_error(exc, timeouts, pattern)}"
        raise SourceError(msg) from None
    files = {name: info for name, info in infos.items() if info.get("type") == "file"}
    if not files:
        if not magic and infos:
            msg = f"dataset {dataset_name!r}: {pattern} is a folder; name its files with a glob such as {pattern.rstrip('/')}/*.jsonl"
        else:
            kind = "glob matches no file" if magic else "file not found"
            msg = f"dataset {dataset_name!r}: {kind}: {pattern}"
        raise SourceError(msg)
    root = pattern_root(pattern)
    objects = []
    for name in sorted(files):
        info = files[name]
        stripped = name.split("://", 1)[-1]
        objects.append(
            RemoteObject(
                url=f"{scheme}://{stripped}",
                relpath=posixpath.relpath(stripped, root) if root else stripped,
                size=int(info.get("size") or 0),
                mtime_ns=_mtime_ns(info),
                etag=_etag(info),
            )
        )
    return objects


def open_object(
    url: str, storage_options: Mapping[str, Any] | None, timeouts: RemoteTimeouts, *, sequential: bool = False
) -> BinaryIO:
    """A binary handle on a remote file: seekable (ranged requests), or for `sequential` reads
    over HTTP one streamed response, which also works with servers that ignore ranges."""
    fs = _filesystem(url, storage_options, timeouts, None)
    try:
        if sequential and split_url(url)[0] in HTTP_SCHEMES:
            return fs.open(fs_path(url), "rb", block_size=0)  # type: ignore[no-any-return]
        return fs.open(fs_path(url), "rb", block_size=READ_BLOCK_BYTES)  # type: ignore[no-any-return]
    except FileNotFoundError as exc:
        failure = _network_failure_behind(exc)
        if failure is None:
            raise
        msg = f"{url}: cannot open: {describe_network_error(failure, timeouts, url)}"
        raise SourceError(msg) from None
    except network_errors() as exc:
        msg = f"{url}: cannot open: {describe_network_error(exc, timeouts, url)}"
        raise SourceError(msg) from None


def network_errors() -> tuple[type[BaseException], ...]:
    """What a failed request raises, from the packages that are installed (botocore, aiohttp, fsspec)."""
    errors: list[type[BaseException]] = [OSError, TimeoutError]
    try:
        from fsspec.exceptions import FSTimeoutError

        errors.append(FSTimeoutError)
    except ImportError:
        pass
    try:
        from botocore.exceptions import BotoCoreError, ClientError

        errors += [BotoCoreError, ClientError]
    except ImportError:
        pass
    try:
        import aiohttp

        errors.append(aiohttp.ClientError)
    except ImportError:
        pass
    return tuple(errors)


def _network_failure_behind(exc: FileNotFoundError) -> BaseException | None:
    """fsspec's HTTP file system reports a refused connection or a timeout as "not found";
    the cause tells them apart from a real 404."""
    cause = exc.__cause__
    if cause is None or isinstance(cause, FileNotFoundError) or getattr(cause, "status", None) in (404, 410):
        return None
    return cause if isinstance(cause, network_errors()) else None


def describe_network_error(exc: BaseException, timeouts: RemoteTimeouts, url: str) -> str:
    """One line: what failed, within which limits, and where the limits are set."""
    text = str(exc) or type(exc).__name__
    if isinstance(exc, TimeoutError) or "timeout" in type(exc).__name__.lower() or "timed out" in text.lower():
        text = f"no answer in time ({text})"
    # botocore retries s3 requests; fsspec's HTTP file system makes each request once.
    attempts = f"{timeouts.attempts} attempt(s) with " if scheme_of(url) in ("s3", "s3a") else ""
    return (
        f"{text}; gave up after {attempts}connect timeout {timeouts.connect:g} s, read timeout {timeouts.read:g} s "
        "(`timeouts: {connect, read, attempts}` in the source; check the URL, credentials and storage_options)"
    )


def fsspec_options(scheme: str, storage_options: Mapping[str, Any] | None, timeouts: RemoteTimeouts) -> dict[str, Any]:
    """The source's storage_options plus the request limits in the form the scheme's
    file system takes them; a limit the user set in storage_options wins."""
    options = dict(storage_options or {})
    if scheme in ("s3", "s3a"):
        config = dict(options.get("config_kwargs") or {})
        config.setdefault("connect_timeout", timeouts.connect)
        config.setdefault("read_timeout", timeouts.read)
        config.setdefault("retries", {"max_attempts": timeouts.attempts, "mode": "standard"})
        options["config_kwargs"] = config
    elif scheme in HTTP_SCHEMES:
        import aiohttp

        client = dict(options.get("client_kwargs") or {})
        client.setdefault("timeout", aiohttp.ClientTimeout(total=None, sock_connect=timeouts.connect, sock_read=timeouts.read))
        options["client_kwargs"] = client
    return options


def _filesystem(
    url: str, storage_options: Mapping[str, Any] | None, timeouts: RemoteTimeouts, dataset_name: str | None
) -> Any:
    where = f"dataset {dataset_name!r}: " if dataset_name else ""
    try:
        import fsspec
    except ImportError:
        msg = f"{where}{url} is a remote path and needs fsspec; install it with `pip install 'mixprep[sources]'`"
        raise SourceError(msg) from None
    scheme = scheme_of(url)
    assert scheme is not None
    try:
        fs = fsspec.filesystem(scheme, **fsspec_options(scheme, storage_options, timeouts))
    except (ImportError, ValueError) as exc:
        msg = f"{where}cannot open {scheme}:// paths: {exc} (a scheme may need its package, e.g. s3fs for s3://, gcsfs for gs://)"
        raise SourceError(msg) from None
    except TypeError as exc:
        msg = f"{where}storage_options {dict(storage_options or {})!r} are not accepted by the {scheme}:// file system: {exc}"
        raise SourceError(msg) from None
    if hasattr(fs, "retries") and scheme in ("s3", "s3a"):
        # s3fs retries each call 5 times on top of botocore's own attempts (5 x 5 x 15 s read
        # timeout: the 415 s hang); botocore's `attempts` are the only retries.
        fs.retries = 1
    return fs


def _etag(info: Mapping[str, Any]) -> str | None:
    """The object's content version as the store reports it (S3/HTTP ETag, GCS etag or md5, HF blob id)."""
    for key in ("ETag", "etag", "md5Hash", "blob_id", "VersionId"):
        value = info.get(key)
        if value:
            return str(value).strip('"')
    lfs = info.get("lfs")
    if isinstance(lfs, Mapping) and lfs.get("sha256"):
        return str(lfs["sha256"])
    return None


def _mtime_ns(info: Mapping[str, Any]) -> int:
    """Modification time in ns when the store reports one; 0 when it does not (the ETag still pins it)."""
    for key in ("LastModified", "last_modified", "mtime", "updated", "created"):
        value = info.get(key)
        if isinstance(value, str):
            try:
                value = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
            except ValueError:
                continue
        if isinstance(value, dt.datetime):
            if value.tzinfo is None:
                value = value.replace(tzinfo=dt.timezone.utc)
            return int(value.timestamp() * 1_000_000) * 1000
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return int(value * 1_000_000_000)
    return 0
