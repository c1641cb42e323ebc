"""Where numba keeps compiled kernels: imported (for its effect) before the first
`@numba.njit(cache=True)` of a module.

The kernels are compiled once per machine and cached on disk (`cache=True`). numba looks
for a writable folder next to the source (`__pycache__`) and then in the user's cache
(`~/.cache/numba`); where neither is writable (a read-only install and a read-only or
missing HOME, as in some containers and CI jobs) it refuses to define the functions at
all. Then the cache goes to a per-user folder under the system's temporary directory,
so the build works and pays the compile time once per boot, not once per process.
An explicit NUMBA_CACHE_DIR is always left alone.

numba keeps a kernel compiled until its *own* source file changes; the helpers it inlines
from other modules (`textstats`, `english_tables`, `intrinsics`) are not part of that
check, so after an edit or a `git pull` that touched only a helper, the kernels kept
running the old helper: silently different results. `track_imports` makes the check
cover the package's modules a kernel's module imports, directly or not.
"""
from __future__ import annotations

import functools
import hashlib
import os
import re
import tempfile
from pathlib import Path

import numba
from numba.core import caching

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


# -- a kernel's cache is stale when any module it imports changed ----------------------------

_COMMENT = re.compile(r"#[^\n]*")


def _imported_files(path: Path, root: Path, package: str) -> set[Path]:
    """The files of `package`'s modules that the module at `path` names in an import (a
    lazy one too), found by pattern: `from package.x import y` counts x and, if it is a
    module, x.y."""
    text = _COMMENT.sub("", path.read_text(encoding="utf-8"))
    name = re.escape(package) + r"(?:\.\w+)*"
    files: set[Path] = set()

    def add(module: str) -> None:
        base = root.joinpath(*module.split(".")[1:])
        files.update(candidate for candidate in (base.with_suffix(".py"), base / "__init__.py") if candidate.is_file())

    for match in re.finditer(rf"^[ \t]*import[ \t]+({name})", text, re.M):
        add(match.group(1))
    for match in re.finditer(rf"^[ \t]*from[ \t]+({name})[ \t]+import[ \t]+(\([^)]*\)|[^\n]*)", text, re.M):
        add(match.group(1))
        for imported in match.group(2).strip("()").split(","):
            words = imported.split()
            if words:
                add(f"{match.group(1)}.{words[0]}")
    return files


@functools.cache
def imports_digest(path: Path, root: Path, package: str) -> str:
    """sha256 over the module at `path` and every module of `package` (rooted at `root`)
    it imports, directly or through others."""
    seen: set[Path] = set()
    pending = [path]
    while pending:
        file = pending.pop()
        if file not in seen:
            seen.add(file)
            pending.extend(_imported_files(file, root, package) - seen)
    digest = hashlib.sha256()
    for file in sorted(seen):
        digest.update(str(file.relative_to(root.parent) if file.is_relative_to(root.parent) else file).encode())
        digest.update(file.read_bytes())
    return digest.hexdigest()


def _tracking(locator: type, root: Path, package: str) -> type:
    """`locator` for the kernels of `package` only, their source stamp widened to `imports_digest`."""

    class Tracking(locator):
        @classmethod
        def from_function(cls, py_func, py_file):  # noqa: ANN001, ANN206 - numba's signature
            if not (Path(py_file).is_file() and Path(py_file).resolve().is_relative_to(root)):
                return None  # not ours, or inside a zip: numba's own locators
            return super().from_function(py_func, py_file)

        def get_source_stamp(self):  # noqa: ANN202
            return super().get_source_stamp(), imports_digest(Path(self._py_file).resolve(), root, package)

    Tracking.__name__ = Tracking.__qualname__ = f"Tracking{locator.__name__}"
    return Tracking


def track_imports(root: Path, package: str) -> None:
    """Have numba recompile a kernel of `package` (its folder `root`) when a module it imports
    changed, not only its own file: each of numba's source-file cache locations gets a
    variant that these kernels find first."""
    root = root.resolve()
    implementation = getattr(caching, "CacheImpl", None) or caching._CacheImpl  # noqa: SLF001 - older numba's name
    locators = implementation._locator_classes  # noqa: SLF001 - numba has no public hook for this
    source_backed = [c for c in locators if issubclass(c, caching._SourceFileBackedLocatorMixin)]  # noqa: SLF001
    locators[:0] = [_tracking(c, root, package) for c in source_backed]


track_imports(_here, "mixprep")
