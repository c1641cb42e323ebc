"""`python -m mixprep` -> the CLI."""

from mixprep.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
