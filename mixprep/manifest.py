"""What a build records next to its outputs, and how a rerun decides to reuse them.

The manifest holds no wall-clock time or host name, so the same build gives the
same manifest bytes. `build_key` hashes everything that determines the output
(config, input files' size and mtime, package versions, options); a rerun whose
key matches an existing, intact output reuses it.
"""
from __future__ import annotations

import hashlib
import os
import platform
from collections.abc import Iterable
from importlib import metadata
from pathlib import Path
from typing import Any

import orjson

from mixprep.plan import ScanTask

MANIFEST_FORMAT = "mixprep-manifest/1"
RECORDED_PACKAGES = ("mixprep", "pyarrow", "polars", "numpy", "orjson", "xxhash")


def package_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in RECORDED_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "unknown"
    return versions


def input_fingerprints(tasks: Iterable[ScanTask]) -> list[dict[str, Any]]:
    seen: dict[str, dict[str, Any]] = {}
    for task in tasks:
        file = task.file
        if file.path not in seen:
            seen[file.path] = {
                "dataset": task.dataset_name,
                "role": task.role,
                "path": file.path,
                "size": file.size,
                "mtime_ns": file.mtime_ns,
            }
            # Only where known, so local files keep exactly the keys (and build keys) they had.
            if file.etag is not None:
                seen[file.path]["etag"] = file.etag
            if file.revision is not None:
                seen[file.path]["revision"] = file.revision
    return list(seen.values())


def build_key(config_digest: str, inputs: list[dict[str, Any]], options: dict[str, Any]) -> str:
    payload = {"config": config_digest, "inputs": inputs, "options": options, "packages": package_versions()}
    return hashlib.sha256(orjson.dumps(payload, option=orjson.OPT_SORT_KEYS)).hexdigest()


def write_manifest(path: Path, manifest: dict[str, Any]) -> None:
    path.write_bytes(orjson.dumps(manifest, option=orjson.OPT_INDENT_2) + b"\n")


def read_manifest(path: Path) -> dict[str, Any] | None:
    try:
        manifest = orjson.loads(path.read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return None
    if not isinstance(manifest, dict) or manifest.get("format") != MANIFEST_FORMAT:
        return None
    return manifest


def outputs_intact(manifest: dict[str, Any], jsonl: Path, parquet: Path, index: Path) -> bool:
    """Cheap check that the files a manifest describes are still the ones on disk."""
    output = manifest.get("output", {})
    try:
        return (
            os.path.getsize(jsonl) == output.get("bytes")
            and os.path.getsize(parquet) == output.get("parquet", {}).get("bytes")
            and index.is_file()
        )
    except OSError:
        return False
