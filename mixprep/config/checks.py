"""Shared by the config parsers: the problem list every check adds to, and typed reads of
one YAML value that add a problem (naming the key path) instead of raising."""
from __future__ import annotations

import difflib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

MAX_INTEGER = 2**63 - 1  # counts and seeds travel as int64 through numpy and Arrow


class Problems:
    """Every problem of one mixture file, each as `<file>: <key path>: <what is wrong>`."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.items: list[str] = []

    def add(self, key_path: str, message: str) -> None:
        self.items.append(f"{self.path.name}: {key_path}: {message}" if key_path else f"{self.path.name}: {message}")

    def unknown_keys(self, mapping: Mapping[str, Any], valid: tuple[str, ...], prefix: str) -> None:
        for key in mapping:
            if key in valid:
                continue
            hint = difflib.get_close_matches(str(key), valid, n=1)
            did_you_mean = f"did you mean {hint[0]!r}? " if hint else ""
            where = f"{prefix}.{key}" if prefix else str(key)
            self.add(where, f"unknown key; {did_you_mean}valid keys: {', '.join(valid)}")


def string_value(mapping: Mapping[str, Any], key: str, prefix: str, problems: Problems, *, default: str) -> str:
    value = mapping.get(key, default)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        problems.add(f"{prefix}.{key}", f"expected a string, got {value!r}")
        return default
    return str(value)


def integer_value(
    mapping: Mapping[str, Any], key: str, prefix: str, problems: Problems, *, default: int | None, minimum: int
) -> Any:
    value = mapping.get(key, default)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value <= MAX_INTEGER:
        problems.add(f"{prefix}.{key}", f"expected an integer from {minimum} to {MAX_INTEGER:,} (2^63 - 1), got {value!r}")
        return default
    return value


def choice_value(
    mapping: Mapping[str, Any], key: str, choices: tuple[str, ...], prefix: str, problems: Problems, *, default: str
) -> str:
    value = mapping.get(key, default)
    if value not in choices:
        problems.add(f"{prefix}.{key}", f"expected one of {', '.join(choices)}, got {value!r}")
        return default
    return value


def canonical(value: Any) -> Any:
    """YAML values as JSON-able data (dates and sets become strings), for hashing."""
    if isinstance(value, Mapping):
        return {str(k): canonical(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [canonical(v) for v in value]
    if isinstance(value, int) and not isinstance(value, bool) and not -(2**63) <= value < 2**64:
        return str(value)  # beyond what the digest's JSON encoder takes
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)
