"""Where numba keeps compiled kernels: imported (for its effect) before the first
`@numba.njit(cache=True)` of a module.

The kernels are compiled once per machine and cached on disk (`cache=True`). numba looks
for a writable folder next to the source (`__pycache__`) and then in the user's cache
(`~/.cache/numba`); where neither is writable (a read-only install and a read-only or
missing HOME, as in some containers and CI jobs) it refuses to define the functions at
all. Then the cache goes to a per-user folder under the system's temporary directory,
so the build works and pays the compile time once per boot, not once per process.
An explicit NUMBA_CACHE_DIR is always left alone.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numba

CACHE_ENV = "NUMBA_CACHE_DIR"


def _writable(folder: Path) -> bool:
    """What numba's cache locators check: the folder can be created and a file made in it."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            return True
    except OSError:
        return False


def _user_cache() -> Path:
    root = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(root) / "numba"


def fallback_cache_dir() -> Path:
    return Path(tempfile.gettempdir()) / f"mixprep-numba-cache-{os.getuid() if hasattr(os, 'getuid') else 'user'}"


def choose_cache_dir(package_dirs: list[Path]) -> Path | None:
    """None when numba's own locations work for every package folder; else the fallback."""
    if os.environ.get(CACHE_ENV):
        return None
    if all(_writable(folder / "__pycache__") for folder in package_dirs) or _writable(_user_cache()):
        return None
    return fallback_cache_dir()


_here = Path(__file__).resolve().parent
_fallback = choose_cache_dir([_here / "filters", _here / "build"])
if _fallback is not None:
    # numba read its environment when it was imported: set its config for this process,
    # and the environment for the workers this process spawns.
    numba.config.CACHE_DIR = str(_fallback)
    os.environ[CACHE_ENV] = str(_fallback)
