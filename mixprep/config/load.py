"""Reading a mixture file: YAML loaded safely, within limits, then parsed.

Nothing in the file is evaluated (`yaml.SafeLoader`). Before anything is built from the
YAML, the file's size and the number of values its aliases expand to are checked: a few
hundred bytes of nested aliases can expand to billions of values.
"""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from mixprep.config.parse import parse_mixture
from mixprep.config.schema import (
    MixtureConfig,
)
from mixprep.errors import ConfigError

MAX_CONFIG_BYTES = 10_000_000
MAX_CONFIG_VALUES = 1_000_000


# -- loading ------------------------------------------------------------------

def load_mixture(path: str | Path) -> MixtureConfig:
    """Read a mixture YAML. Raises ConfigError only when it is not a readable YAML mapping."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        msg = f"{path}: mixture file not found"
        raise ConfigError(msg) from None
    except (OSError, UnicodeDecodeError) as exc:
        msg = f"{path}: cannot read the mixture file: {exc}"
        raise ConfigError(msg) from None
    if len(text) > MAX_CONFIG_BYTES:
        msg = f"{path}: {len(text):,} bytes is not a mixture file (at most {MAX_CONFIG_BYTES:,}); check the path"
        raise ConfigError(msg)
    try:
        raw = _load_yaml(text, path)
    except yaml.YAMLError as exc:
        where = ""
        mark = getattr(exc, "problem_mark", None)
        if mark is not None:
            where = f" at line {mark.line + 1}, column {mark.column + 1}"
        problem = getattr(exc, "problem", None) or str(exc)
        msg = f"{path}: invalid YAML{where}: {problem}"
        raise ConfigError(msg) from None
    if not isinstance(raw, Mapping):
        msg = f"{path}: expected a mapping with `metadata` and `datasets`, got {type(raw).__name__}"
        raise ConfigError(msg)
    return parse_mixture(raw, path)


def _load_yaml(text: str, path: Path) -> Any:
    """`yaml.safe_load`, refusing a document whose aliases expand past MAX_CONFIG_VALUES before
    anything is expanded (a few hundred bytes of nested aliases can expand to billions)."""
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        try:
            size = _expanded_size(node, {}, set())
        except RecursionError:
            msg = f"{path}: the YAML nests deeper than Python can follow; a mixture file needs a few levels"
            raise ConfigError(msg) from None
        except ConfigError as exc:
            msg_0 = f"{path}: {exc}"
            raise ConfigError(msg_0) from None
        if size > MAX_CONFIG_VALUES:
            msg = (
                f"{path}: the YAML's aliases expand to {size:,} values (at most {MAX_CONFIG_VALUES:,}); "
                "a mixture file needs far fewer: write the values out"
            )
            raise ConfigError(msg)
        return loader.construct_document(node)
    finally:
        loader.dispose()


def _expanded_size(node: yaml.Node, sizes: dict[int, int], open_nodes: set[int]) -> int:
    """How many values `node` stands for once every alias is expanded (shared nodes counted once each time they appear)."""
    key = id(node)
    if key in sizes:
        return sizes[key]
    if key in open_nodes:
        msg = f"line {node.start_mark.line + 1}: a YAML alias refers to a node that contains it (a recursive structure)"
        raise ConfigError(msg)
    open_nodes.add(key)
    if isinstance(node, yaml.MappingNode):
        size = 1 + sum(_expanded_size(k, sizes, open_nodes) + _expanded_size(v, sizes, open_nodes) for k, v in node.value)
    elif isinstance(node, yaml.SequenceNode):
        size = 1 + sum(_expanded_size(item, sizes, open_nodes) for item in node.value)
    else:
        size = 1
    open_nodes.discard(key)
    sizes[key] = size = min(size, 2**62)
    return size
