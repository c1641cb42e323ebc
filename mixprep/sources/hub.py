"""Hugging Face sources (`source: {hf: ..., split, config, revision}`) -> local data files.

Called by `plan` when a dataset's source is a Hugging Face dataset; returns the files
of the requested split, sorted, each named relative to the dataset's root (the
record identity), plus the commit they come from when one is known. Three kinds:

- a folder written by `datasets`' `save_to_disk`: a Dataset (`state.json` +
  `data-*.arrow` IPC streams) or a DatasetDict (`dataset_dict.json` + one such
  folder per split). Its Arrow files are read directly; `datasets` is not imported.
- a local folder laid out like a hub dataset repo (`data/train-*.parquet`,
  `<config>/train/*.parquet`, `train.jsonl`, or the `configs:` in its README): split
  files are found with the hub's own rules (`datasets.data_files`, imported lazily).
- a hub id `owner/name`: a snapshot in the local Hugging Face cache is used when there
  is one (no network); otherwise, online, the split's files are downloaded at the
  resolved commit. Offline (`HF_HUB_OFFLINE`, or the hub unreachable within
  `HUB_TIMEOUT_S`) it fails at once with what was tried and how to pre-download.

The manifest records the commit (`revision`) of every hub file, so a build says
exactly which version of a hub dataset it read.
"""
from __future__ import annotations

import importlib
import logging
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import yaml

from mixprep.config.schema import HubSource
from mixprep.errors import SourceError
from mixprep.sources.formats import format_for

log = logging.getLogger(__name__)


HUB_TIMEOUT_S = 10.0
"""Per request to the hub: a build that cannot reach it must fail fast, not hang."""
DEFAULT_SPLIT = "train"
_SHA_RE = re.compile(r"^[0-9a-f]{40}$")
_TRUE = ("1", "on", "yes", "true")


@dataclass(frozen=True)
class HubFile:
    path: str
    relpath: str
    format: str


@dataclass(frozen=True)
class HubFiles:
    files: tuple[HubFile, ...]
    revision: str | None
    """The commit sha the files come from (hub ids, downloaded folders); None for other folders."""


def resolve_hub(spec: HubSource, dataset_name: str) -> HubFiles:
    where = f"dataset {dataset_name!r}: "
    if spec.local:
        root = Path(spec.repo)
        revision = _local_dir_commit(root)
        _check_local_revision(spec, revision, where)
        return HubFiles(tuple(_folder_files(root, spec, where)), revision)
    folder, sha = _hub_snapshot(spec, where)
    return HubFiles(tuple(_folder_files(Path(folder), spec, where)), sha)


# -- folders ---------------------------------------------------------------------

def _folder_files(root: Path, spec: HubSource, where: str) -> list[HubFile]:
    if (root / "dataset_dict.json").is_file():
        return _dataset_dict_files(root, spec, where)
    if (root / "state.json").is_file():
        return _saved_dataset_files(root, root, spec, where)
    return _repo_files(str(root), spec, where)


def _dataset_dict_files(root: Path, spec: HubSource, where: str) -> list[HubFile]:
    splits = _read_json(root / "dataset_dict.json", where).get("splits") or []
    split = spec.split or DEFAULT_SPLIT
    if split not in splits:
        msg = (
            f"{where}{root} (a DatasetDict saved with save_to_disk) has no split {split!r}; "
            f"splits: {', '.join(map(str, splits))}; set `split:`"
        )
        raise SourceError(msg)
    if spec.config is not None:
        msg = f"{where}{root} is a DatasetDict saved with save_to_disk; it has no configs, drop `config: {spec.config}`"
        raise SourceError(msg)
    return _saved_dataset_files(root / split, root, spec, where)


def _saved_dataset_files(folder: Path, root: Path, spec: HubSource, where: str) -> list[HubFile]:
    state = _read_json(folder / "state.json", where)
    saved_split = state.get("_split")
    if folder == root and spec.split is not None and saved_split not in (None, spec.split):
        msg = (
            f"{where}{folder} is the {saved_split!r} split saved with save_to_disk, not {spec.split!r}; "
            "drop `split:` or point at the right folder"
        )
        raise SourceError(msg)
    names = [entry.get("filename") for entry in state.get("_data_files") or []]
    if not names or not all(isinstance(n, str) for n in names):
        msg = f"{where}{folder / 'state.json'} lists no data files (`_data_files`); is this folder written by save_to_disk?"
        raise SourceError(msg)
    files = []
    for name in names:  # state.json's order is the dataset's row order
        path = folder / name
        if not path.is_file():
            msg = f"{where}{path} is listed in {folder / 'state.json'} but missing; the saved dataset is incomplete"
            raise SourceError(msg)
        files.append(HubFile(str(path), path.relative_to(root).as_posix(), "arrow"))
    return files


def _split_files(patterns: dict[str, list[str]], split: str, base: str, what: str) -> set[str]:
    """The files of one split, by `datasets`' pattern resolution (imported only here)."""
    if split not in patterns:
        msg = f"{what} has no split {split!r} (found: {', '.join(patterns) or 'none'}); set `split:`"
        raise SourceError(msg)
    from datasets.data_files import resolve_pattern

    found: set[str] = set()
    for pattern in patterns[split]:
        try:
            found.update(resolve_pattern(pattern, base))
        except FileNotFoundError:
            continue
    return found


def _repo_files(root: str, spec: HubSource, where: str) -> list[HubFile]:
    split_patterns, base = _split_patterns(root, spec, where)
    split = spec.split or DEFAULT_SPLIT
    matched = _split_files(split_patterns, split, base, f"{where}{root}")
    files = []
    for path in sorted(matched):
        fmt = format_for(path)
        if fmt is not None:  # a repo also holds images, scripts, licences
            files.append(HubFile(path, os.path.relpath(path, root).replace(os.sep, "/"), fmt))
    if not files:
        msg = (
            f"{where}split {split!r} of {root} has no file mixprep can read "
            f"(patterns {split_patterns[split]}; readable: .parquet, .arrow, .jsonl/.json (+ .gz/.zst/.bz2/.xz), .csv, .tsv)"
        )
        raise SourceError(msg)
    return files


def _split_patterns(root: str, spec: HubSource, where: str) -> tuple[dict[str, list[str]], str]:
    """{split: [glob patterns]} and the folder they are relative to, by the hub's rules."""
    card_configs = _card_configs(Path(root) / "README.md", where)
    if card_configs:
        return _configured_patterns(card_configs, root, spec, where), root
    base = root
    if spec.config is not None:
        base = os.path.join(root, spec.config)
        if not os.path.isdir(base):
            found = sorted(p.name for p in Path(root).iterdir() if p.is_dir() and not p.name.startswith("."))
            msg = (
                f"{where}{root} has no config {spec.config!r} "
                f"(no README `configs:` and no folder {spec.config}/; folders: {', '.join(found) or 'none'})"
            )
            raise SourceError(msg)
    try:
        return _default_patterns(base), base
    except FileNotFoundError:
        msg = f"{where}{base} holds no data files (expected e.g. data/train-*.parquet, train.jsonl or a save_to_disk folder)"
        raise SourceError(msg) from None


def _default_patterns(base: str) -> dict[str, list[str]]:
    """The hub's default split rules (`datasets.data_files`), with plain-string split names."""
    from datasets.data_files import get_data_patterns

    return {str(split): list(patterns) for split, patterns in get_data_patterns(base).items()}


def _card_configs(readme: Path, where: str) -> list[Mapping[str, Any]]:
    try:
        text = readme.read_text(encoding="utf-8")
    except (FileNotFoundError, NotADirectoryError):
        return []
    except (OSError, UnicodeDecodeError) as exc:
        msg = f"{where}cannot read {readme}: {exc}"
        raise SourceError(msg) from None
    return _card_configs_from_text(text, str(readme), where)


def _configured_patterns(
    configs: list[Mapping[str, Any]], root: str, spec: HubSource, where: str
) -> dict[str, list[str]]:
    names = [str(c.get("config_name", "default")) for c in configs]
    if spec.config is not None:
        chosen = [c for c, name in zip(configs, names, strict=True) if name == spec.config]
    else:
        chosen = [c for c in configs if c.get("default")] or (configs if len(configs) == 1 else [])
        chosen = chosen or [c for c, name in zip(configs, names, strict=True) if name == "default"]
    if not chosen:
        wanted = f"no config {spec.config!r}" if spec.config is not None else "several configs and no default"
        msg = f"{where}{root}/README.md has {wanted}; configs: {', '.join(names)}; set `config:`"
        raise SourceError(msg)
    config = chosen[0]
    data_dir = str(config.get("data_dir") or "")
    data_files = config.get("data_files")
    if data_files is None:
        found = _default_patterns(os.path.join(root, data_dir) if data_dir else root)
        return {s: [f"{data_dir}/{p}" if data_dir else p for p in ps] for s, ps in found.items()}
    patterns: dict[str, list[str]] = {}
    if isinstance(data_files, (str, list)) and not (isinstance(data_files, list) and data_files and isinstance(data_files[0], Mapping)):
        patterns[DEFAULT_SPLIT] = _as_list(data_files)
    else:
        for entry in data_files if isinstance(data_files, list) else [data_files]:
            patterns.setdefault(str(entry.get("split", DEFAULT_SPLIT)), []).extend(_as_list(entry.get("path")))
    return {s: [f"{data_dir}/{p}" if data_dir else p for p in ps] for s, ps in patterns.items()}


def _as_list(value: Any) -> list[str]:
    if value is None:
        return []
    return [str(v) for v in value] if isinstance(value, list) else [str(value)]


def _read_json(path: Path, where: str) -> dict[str, Any]:
    try:
        value = orjson.loads(path.read_bytes())
    except (OSError, orjson.JSONDecodeError) as exc:
        msg = f"{where}cannot read {path}: {exc}"
        raise SourceError(msg) from None
    if not isinstance(value, dict):
        msg = f"{where}{path}: expected a JSON object, got {type(value).__name__}"
        raise SourceError(msg)
    return value


def _local_dir_commit(root: Path) -> str | None:
    """The commit a `huggingface-cli download --local-dir` copy came from (its download metadata)."""
    metadata = root / ".cache" / "huggingface" / "download"
    if not metadata.is_dir():
        return None
    for path in sorted(metadata.rglob("*.metadata")):
        first = path.read_text(encoding="utf-8", errors="replace").split("\n", 1)[0].strip()
        if _SHA_RE.match(first):
            return first
    return None


def _check_local_revision(spec: HubSource, commit: str | None, where: str) -> None:
    if spec.revision is None:
        return
    if commit is None:
        msg = (
            f"{where}`revision: {spec.revision}` applies to hub ids, and {spec.repo} is a local folder without download "
            f"metadata to check it against; drop `revision:`"
        )
        raise SourceError(msg)
    if not commit.startswith(spec.revision):
        msg = (
            f"{where}{spec.repo} holds commit {commit}, not revision {spec.revision!r}; set `revision: {commit}` "
            f"(a local copy is checked against a commit, not a branch) or drop `revision:`"
        )
        raise SourceError(msg)


# -- hub ids -----------------------------------------------------------------------

def _hub_snapshot(spec: HubSource, where: str) -> tuple[str, str]:
    """(local folder, commit sha) of the dataset at spec.revision: the cache first, then the hub."""
    try:
        from huggingface_hub import HfApi, snapshot_download
        from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError, RevisionNotFoundError
    except ImportError:
        msg = f"{where}`hf: {spec.repo}` is a hub id and needs huggingface_hub; install `mixprep[sources]` or point `hf:` at a local folder"
        raise SourceError(msg) from None
    cache_dir = _cache_dir()
    endpoint = os.environ.get("HF_ENDPOINT") or None
    revision = spec.revision or "main"
    try:
        folder = snapshot_download(spec.repo, repo_type="dataset", revision=revision, cache_dir=cache_dir, local_files_only=True)
        log.info("%s: using the cached snapshot %s", spec.repo, folder)
        return folder, Path(folder).name
    except FileNotFoundError:  # LocalEntryNotFoundError: not in the cache
        pass
    tried = f"the Hugging Face cache ({cache_dir or 'default location'}) has no snapshot of {spec.repo} at {revision!r}"
    if _offline():
        raise _offline_error(spec, where, f"{tried}, and offline mode is on (HF_HUB_OFFLINE / HF_DATASETS_OFFLINE)")
    network_errors = _network_errors(HfHubHTTPError)
    try:
        info = HfApi(endpoint=endpoint).dataset_info(spec.repo, revision=revision, timeout=HUB_TIMEOUT_S)
    except RepositoryNotFoundError:
        msg = f"{where}hub dataset {spec.repo!r} does not exist or is private (log in with `hf auth login` for a gated or private one)"
        raise SourceError(msg) from None
    except RevisionNotFoundError:
        msg = f"{where}hub dataset {spec.repo!r} has no revision {revision!r}; give a branch, tag or commit sha"
        raise SourceError(msg) from None
    except network_errors as exc:
        raise _offline_error(spec, where, f"{tried}, and {endpoint or 'the hub'} cannot be reached ({exc})") from None
    sha = str(info.sha)
    relpaths = _hub_split_files(spec, sha, where)
    try:
        folder = snapshot_download(
            spec.repo,
            repo_type="dataset",
            revision=sha,
            cache_dir=cache_dir,
            endpoint=endpoint,
            allow_patterns=["README.md", *relpaths],
            etag_timeout=HUB_TIMEOUT_S,
        )
    except network_errors as exc:
        msg = f"{where}downloading {len(relpaths)} file(s) of {spec.repo}@{sha} failed: {exc}"
        raise SourceError(msg) from None
    return folder, sha


def _hub_split_files(spec: HubSource, sha: str, where: str) -> list[str]:
    """The split's data files on the hub at `sha`, found through the hf:// file system."""
    from huggingface_hub import HfFileSystem

    root = f"hf://datasets/{spec.repo}@{sha}"
    readme = f"datasets/{spec.repo}@{sha}/README.md"
    fs = HfFileSystem()
    card_configs: list[Mapping[str, Any]] = []
    if fs.exists(readme):
        card_configs = _card_configs_from_text(fs.read_text(readme, encoding="utf-8"), f"hf://{readme}", where)
    if card_configs:
        patterns = _configured_patterns(card_configs, root, spec, where)
        base = root
    else:
        base = f"{root}/{spec.config}" if spec.config else root
        try:
            patterns = _default_patterns(base)
        except FileNotFoundError:
            msg = f"{where}hub dataset {spec.repo}@{sha} has no data files under {base}"
            raise SourceError(msg) from None
    found = _split_files(patterns, spec.split or DEFAULT_SPLIT, base, f"{where}hub dataset {spec.repo}")
    prefix = f"{root}/"
    return sorted(p[len(prefix) :] for p in found if p.startswith(prefix) and format_for(p) is not None)


def _card_configs_from_text(text: str, readme: str, where: str) -> list[Mapping[str, Any]]:
    """The `configs:` list of a dataset card's YAML header (the hub's manual configuration)."""
    if not text.startswith("---"):
        return []
    try:
        card = yaml.safe_load(text[3:].split("\n---", 1)[0]) or {}
    except yaml.YAMLError as exc:
        msg = f"{where}{readme}: invalid YAML header: {exc}"
        raise SourceError(msg) from None
    configs = card.get("configs") if isinstance(card, Mapping) else None
    return [c for c in configs if isinstance(c, Mapping)] if isinstance(configs, list) else []


def _offline_error(spec: HubSource, where: str, tried: str) -> SourceError:
    revision = spec.revision or "main"
    split = spec.split or DEFAULT_SPLIT
    config = f", config: {spec.config}" if spec.config else ""
    msg = (
        f"{where}cannot read hub dataset {spec.repo!r} (revision {revision!r}): {tried}.\n"
        f"Pre-download it where the hub is reachable:\n"
        f"  huggingface-cli download --repo-type dataset {spec.repo} --revision {revision} --local-dir DIR\n"
        f"  (`hf download` in recent huggingface_hub; without --local-dir it fills the cache, which is then used offline)\n"
        f"then point the source at the copy: `source: {{hf: DIR, split: {split}{config}}}`"
    )
    return SourceError(msg)


def _offline() -> bool:
    if any(os.environ.get(name, "").strip().lower() in _TRUE for name in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")):
        return True
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


def _cache_dir() -> str | None:
    """HF_HUB_CACHE / HF_HOME as set now (huggingface_hub reads them once, at import)."""
    if os.environ.get("HF_HUB_CACHE"):
        return os.environ["HF_HUB_CACHE"]
    if os.environ.get("HF_HOME"):
        return os.path.join(os.environ["HF_HOME"], "hub")
    return None


def _network_errors(*extra: type[BaseException]) -> tuple[type[BaseException], ...]:
    """Exceptions that mean "the hub did not answer": OS errors and the HTTP client's own."""
    errors: list[type[BaseException]] = [OSError, *extra]
    for module_name in ("httpx2", "httpx", "requests"):
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            continue
        base = getattr(module, "HTTPError", None) or getattr(module, "RequestException", None)
        if isinstance(base, type) and issubclass(base, BaseException):
            errors.append(base)
    return tuple(errors)

