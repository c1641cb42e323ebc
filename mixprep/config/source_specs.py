"""A `source:` entry of a mixture (a path, a glob, a list of them, a URL, a mapping with
options, or a Hugging Face dataset) -> `SourceSpec`, local patterns checked as they parse."""
from __future__ import annotations

import glob
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mixprep.config.checks import Problems, canonical, integer_value
from mixprep.config.schema import HubSource, RemoteTimeouts, SourceSpec
from mixprep.sources.formats import FORMATS, format_for, not_a_data_file

SOURCE_MAPPING_KEYS = ("path", "format", "storage_options", "timeouts", "hf", "split", "config", "revision")
TIMEOUT_KEYS = ("connect", "read", "attempts")
HUB_ONLY_KEYS = ("split", "config", "revision")
# "owner/name" (or a bare legacy name such as "wikitext"); anything else must be an existing folder.
HUB_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*(/[A-Za-z0-9][A-Za-z0-9_.-]*)?$")
URL_RE = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]+://")


def parse_source(
    raw: Any, where: str, name: str, base: Path, data_dir: Path | None, problems: Problems
) -> SourceSpec:
    fmt: str | None = None
    storage_options: dict[str, Any] | None = None
    timeouts = RemoteTimeouts()
    if raw is None:
        assert data_dir is not None  # only `source` may be omitted, never validation_source
        return _defaultparse_source(name, data_dir, where, problems)
    if isinstance(raw, Mapping):
        problems.unknown_keys(raw, SOURCE_MAPPING_KEYS, where)
        fmt = raw.get("format")
        if fmt is not None and fmt not in FORMATS:
            problems.add(f"{where}.format", f"expected one of {', '.join(FORMATS)}, got {fmt!r}")
            fmt = None
        if raw.get("hf") is not None:
            return _hubparse_source(raw, where, base, problems)
        for key in HUB_ONLY_KEYS:
            if raw.get(key) is not None:
                problems.add(f"{where}.{key}", f"applies to Hugging Face sources only; use `source: {{hf: owner/name, {key}: ...}}`")
        storage_options = _storage_options(raw.get("storage_options"), f"{where}.storage_options", problems)
        timeouts = _timeouts(raw.get("timeouts"), f"{where}.timeouts", problems)
        raw = raw.get("path")
        if raw is None:
            problems.add(f"{where}.path", "missing; give a file, a glob or a list of them (or `hf:` for a Hugging Face dataset)")
            return SourceSpec(patterns=())
    entries = raw if isinstance(raw, list) else [raw]
    patterns: list[str] = []
    for j, item in enumerate(entries):
        item_where = f"{where}[{j}]" if isinstance(raw, list) else where
        if not isinstance(item, str) or not item:
            problems.add(item_where, f"expected a path or glob, got {item!r}")
            continue
        if URL_RE.match(item) and not item.startswith("file://"):
            # Remote: listed at plan time (no network while parsing a config).
            patterns.append(item)
            continue
        pattern = str(base / Path(item.removeprefix("file://")).expanduser())
        patterns.append(pattern)
        _check_local_pattern(pattern, fmt, item_where, problems)
    return SourceSpec(patterns=tuple(patterns), format=fmt, storage_options=storage_options, timeouts=timeouts)


def _check_local_pattern(pattern: str, fmt: str | None, where: str, problems: Problems) -> None:
    matches = glob.glob(pattern, recursive=True)
    other = None if glob.has_magic(pattern) else not_a_data_file(pattern)
    if other:
        problems.add(where, other)
    elif not matches:
        kind = "glob matches no file" if glob.has_magic(pattern) else "file not found"
        problems.add(where, f"{kind}: {pattern}")
    elif fmt is None:
        for match in matches:
            if Path(match).is_file() and format_for(match) is None:
                problems.add(
                    where,
                    f"cannot tell the format of {match}; use a .jsonl/.json/.csv/.tsv name (optionally + .gz/.zst/.bz2/.xz), "
                    f".parquet or .arrow, or `source: {{path: ..., format: {'|'.join(FORMATS)}}}`",
                )
                break


def _storage_options(raw: Any, where: str, problems: Problems) -> dict[str, Any] | None:
    if raw is None:
        return None
    if not isinstance(raw, Mapping):
        problems.add(where, f"expected a mapping of fsspec options (e.g. {{client_kwargs: {{endpoint_url: ...}}}}), got {raw!r}")
        return None
    return dict(canonical(raw))


def _timeouts(raw: Any, where: str, problems: Problems) -> RemoteTimeouts:
    """`timeouts: {connect: 10, read: 60, attempts: 3}` (seconds, seconds, requests)."""
    if raw is None:
        return RemoteTimeouts()
    if not isinstance(raw, Mapping):
        problems.add(where, f"expected {{connect: SECONDS, read: SECONDS, attempts: N}}, got {raw!r}")
        return RemoteTimeouts()
    problems.unknown_keys(raw, TIMEOUT_KEYS, where)
    values: dict[str, Any] = {}
    for key in ("connect", "read"):
        value = raw.get(key)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 86_400:
            problems.add(f"{where}.{key}", f"expected seconds, more than 0 and at most 86400, got {value!r}")
            continue
        values[key] = float(value)
    attempts = integer_value(raw, "attempts", where, problems, default=None, minimum=1)
    if attempts is not None:
        if attempts > 100:
            problems.add(f"{where}.attempts", f"expected at most 100 attempts, got {attempts!r}")
        else:
            values["attempts"] = attempts
    return RemoteTimeouts(**values)


def _hubparse_source(raw: Mapping[str, Any], where: str, base: Path, problems: Problems) -> SourceSpec:
    """`{hf: owner/name | folder, split, config, revision}`: a folder when one exists there, else a hub id."""
    for key in ("path", "storage_options", "timeouts", "format"):
        if raw.get(key) is not None:
            problems.add(f"{where}.{key}", "cannot be combined with `hf:`; a Hugging Face source is found by its id or folder")
    options: dict[str, str | None] = {}
    for key in ("hf", *HUB_ONLY_KEYS):
        value = raw.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, (str, int, float)) or not str(value)):
            problems.add(f"{where}.{key}", f"expected a non-empty string, got {value!r}")
            value = None
        options[key] = None if value is None else str(value)
    repo = options["hf"] or ""
    folder = base / Path(repo).expanduser()
    if repo and folder.is_dir():
        hub = HubSource(str(folder), True, options["split"], options["config"], options["revision"])
    elif HUB_ID_RE.match(repo):
        hub = HubSource(repo, False, options["split"], options["config"], options["revision"])
    else:
        if repo:
            problems.add(f"{where}.hf", f"{repo!r} is neither an existing folder ({folder}) nor a hub id like owner/name")
        hub = HubSource(repo, False)
    return SourceSpec(patterns=(), hub=hub)


def _defaultparse_source(name: str, data_dir: Path, where: str, problems: Problems) -> SourceSpec:
    for candidate in (data_dir / f"{name}.jsonl", data_dir / f"{name}.parquet"):
        if candidate.is_file():
            return SourceSpec(patterns=(str(candidate),))
    folder = data_dir / name
    if folder.is_dir():
        return SourceSpec(patterns=(str(folder / "**" / "*"),))
    problems.add(
        where,
        f"no `source` given and none of {data_dir / (name + '.jsonl')}, {data_dir / (name + '.parquet')} "
        f"or {folder}/ exists; set `source:` or metadata.data_dir",
    )
    return SourceSpec(patterns=())
