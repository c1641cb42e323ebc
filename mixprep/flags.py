"""Command-line flags that take either spelling: `--output-dir` and `--output_dir` alike.

`build` was written with hyphens and `train` with underscores (the spelling MiniMind's
scripts use), so a user switching between them guessed wrong half the time. Every parser
here is a `FlagParser`: a long option given in the other spelling is read as the declared
one, `--help` shows the declared spelling, and defaults are printed with each flag's help.
"""
from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any


class FlagParser(argparse.ArgumentParser):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", argparse.ArgumentDefaultsHelpFormatter)
        super().__init__(*args, **kwargs)

    def parse_known_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        given = list(sys.argv[1:] if args is None else args)
        end = given.index("--") if "--" in given else len(given)  # after "--" nothing is a flag
        return super().parse_known_args([self._respell(a) for a in given[:end]] + given[end:], namespace)

    def _respell(self, arg: str) -> str:
        if not arg.startswith("--"):
            return arg
        name, equals, value = arg.partition("=")
        if name in self._option_string_actions:
            return arg
        body = name[2:]
        for other in ("--" + body.replace("-", "_"), "--" + body.replace("_", "-")):
            if other in self._option_string_actions:
                return other + equals + value
        return arg

    def add_subparsers(self, **kwargs: Any) -> Any:
        kwargs.setdefault("parser_class", FlagParser)
        return super().add_subparsers(**kwargs)
