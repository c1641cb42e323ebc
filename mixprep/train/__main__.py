"""`python -m mixprep.train` and `mixprep train`: parse flags, train, print one result line.
"""
from __future__ import annotations

import logging
import os
import sys

from mixprep.errors import MixprepError
from mixprep.train.options import parse_options
from mixprep.train.run import train


def main(argv: list[str] | None = None) -> int:
    """Entry point of `python -m mixprep train` and `python -m mixprep.train`; raises MixprepError."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["compare"]:
        from mixprep.train.metrics import compare_main

        return compare_main(argv[1:])
    opts = parse_options(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", datefmt="%H:%M:%S")
    if opts.num_workers > 0:
        # Rust tokenizers warn (and may deadlock) when used in the parent and then forked.
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    result = train(opts)
    val = f"{result.val_loss:.4f}" if result.val_loss is not None else "-"
    loss = f"{result.train_loss:.4f}" if result.train_loss is not None else "-"
    print(f"step {result.step}: train_loss {loss}, val_loss {val}; checkpoint {result.checkpoint}")
    return 0


if __name__ == "__main__":
    try:
        raise SystemExit(main())
    except MixprepError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(1) from None
