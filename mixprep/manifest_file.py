"""Reading a build's manifest back: the format tag and a reader that returns None for
anything that is not a finished mixprep manifest. Shared by the build (reuse, the dataset
card), the report and `verify`; what a manifest holds is `build.manifest`'s business."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

MANIFEST_FORMAT = "mixprep-manifest/1"


def read_manifest(path: Path) -> dict[str, Any] | None:
    """The manifest at `path`, or None when it is missing, unreadable, not JSON or of another format."""
    try:
        manifest = orjson.loads(path.read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return None
    if not isinstance(manifest, dict) or manifest.get("format") != MANIFEST_FORMAT:
        return None
    return manifest
