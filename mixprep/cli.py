"""`python -m mixprep` / `mixprep`: parse arguments, call the library, print.

No logic and no heavy imports here: subcommands import what they use when they
run, so `mixprep --help` stays fast. A `MixprepError` is printed as one message
without a traceback and exits with status 1.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mixprep.errors import ConfigError, MixprepError, OutputError
from mixprep.flags import FlagParser

if TYPE_CHECKING:
    from mixprep.config.schema import MixtureConfig

DELEGATED = {"train": "mixprep.train.__main__", "tokenizer": "mixprep.train.tokenizer"}

# Optional packages, imported only by the features that need them, and the extra that installs each.
EXTRAS = {
    "torch": "train", "transformers": "train", "tokenizers": "train", "jinja2": "train",
    "regex": "train", "datasets": "sources", "huggingface_hub": "sources", "fsspec": "sources", "s3fs": "sources",
    "gcsfs": "sources", "py3langid": "sources", "scipy": "sources", "datasketch": "sources", "ray": "ray",
    "tensorboard": "track", "wandb": "track",
}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in DELEGATED:
        # These own their argparse (also runnable as `python -m mixprep.train`).
        from importlib import import_module

        return _run(lambda: import_module(DELEGATED[argv[0]]).main(argv[1:]))
    args = make_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING if getattr(args, "quiet", False) else logging.INFO, format="%(message)s", stream=sys.stderr)
    for chatty in ("botocore", "aiobotocore", "s3fs", "fsspec", "httpx", "urllib3"):  # "Found credentials in ..."
        logging.getLogger(chatty).setLevel(logging.WARNING)
    return _run(lambda: args.handler(args))


def _run(call: Any) -> int:
    received: list[int] = []

    def on_terminate(signum: int, frame: Any) -> None:
        received.append(signum)
        raise KeyboardInterrupt  # unwinds like Ctrl-C: workers stopped, work folder removed

    try:
        previous = signal.signal(signal.SIGTERM, on_terminate)
    except ValueError:  # not the main thread: leave signals to whoever owns it
        previous = None
    try:
        return int(call() or 0)
    except MixprepError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        what = "terminated" if received else "interrupted"
        print(f"{what}; no output was left half-written", file=sys.stderr)
        return 143 if received else 130
    except ModuleNotFoundError as exc:
        package = (exc.name or "").split(".")[0]
        if package not in EXTRAS:
            raise
        extra = EXTRAS[package]
        print(f'error: this needs the optional package {package!r}; install it with: pip install "mixprep[{extra}]"', file=sys.stderr)
        return 1
    except BrokenPipeError:
        # Output piped into `head` and the like: stop quietly, as Unix tools do.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def make_parser() -> argparse.ArgumentParser:
    parser = FlagParser(prog="mixprep", description="Build exact, deterministic training-data mixtures.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    build = sub.add_parser(
        "build",
        help="build a mixture's JSONL + Parquet + index + manifest",
        description="Build a mixture: every split's JSONL, Parquet sidecar, offset index and manifest, "
        "written atomically; a rerun with unchanged config and inputs reuses them.",
    )
    build.add_argument("config", nargs="?", help="mixture YAML")
    build.add_argument("--mixture_config", "--config", dest="config_option", metavar="CONFIG", help="the mixture YAML, as a flag")
    build.add_argument("--workers", type=int, default=1, help="local processes")
    build.add_argument(
        "--in-process-below",
        type=float,
        default=64,
        metavar="MB",
        help="inputs smaller than this run in this process whatever --workers says (starting workers costs more)",
    )
    build.add_argument("--output-dir", dest="output_dir", help="where outputs go (default: metadata.output_dir or ./dataset)")
    build.add_argument("--split", choices=("train", "validation", "all"), default="all", help="which split(s) to write")
    build.add_argument("--force", action="store_true", help="rebuild even when the outputs are up to date")
    build.add_argument("--dry-run", action="store_true", help="scan and print the plan (available/quota/repeats) without writing")
    build.add_argument("--executor", choices=("local", "ray"), default="local", help="run tasks in local processes or on Ray")
    build.add_argument("--ray-address", default=None, help="Ray cluster address (auto, HOST:PORT); default: start a local Ray")
    build.add_argument(
        "--parquet-compression",
        default="zstd",
        choices=("none", "lz4", "snappy", "zstd"),
        help="sidecar compression (default zstd: a sidecar 0.16-0.5x the size of an uncompressed one for ~10%% more "
        "build time on 1.5 GB; none for the fastest build)",
    )
    build.add_argument(
        "--write-rejected",
        action="store_true",
        help="also write every removed record, with its reason, to <phase>_<name>.rejected.jsonl",
    )
    build.add_argument(
        "--sha256",
        action="store_true",
        help="also record the JSONL's whole-file sha256 (what `sha256sum` prints; one more pass over the output)",
    )
    build.add_argument(
        "--pack",
        nargs="?",
        type=int,
        const=0,
        default=None,
        metavar="SEQ_LEN",
        help="also write each split as token ids in Megatron's indexed-dataset format (<stem>.tokens.bin/.idx), as "
        "metadata.pack does; SEQ_LEN sets the training window, else metadata.pack.seq_len or 2048; off when absent",
    )
    build.add_argument("--no-report", action="store_true", help="skip drawing <phase>_<name>.report.html")
    build.add_argument("--no-progress", action="store_true", help="log lines instead of a progress bar")
    build.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors")
    build.set_defaults(handler=cmd_build)

    validate = sub.add_parser(
        "validate",
        help="check a mixture file; non-zero exit when invalid",
        description="Check a mixture YAML without reading its data: every problem at once, each with the file and "
        "key, as JSON; exit 1 when the mixture is invalid.",
    )
    validate.add_argument("config")
    validate.set_defaults(handler=cmd_validate)

    verify = sub.add_parser(
        "verify",
        help="re-check outputs against their manifest and index",
        description="Re-check built JSONL files: the manifest's checksum (all cores), every index offset, records "
        "per source in the JSONL and the Parquet sidecar, and a packed split's index, sizes, range checksums and "
        "token ids; exit 1 on any mismatch.",
    )
    verify.add_argument("files", nargs="+", metavar="FILE.jsonl")
    verify.set_defaults(handler=cmd_verify)

    index = sub.add_parser(
        "index",
        help="build (or refresh) the offset index of a JSONL file",
        description="Write FILE.idx beside each JSONL (or in the cache folder when that folder is read-only).",
    )
    index.add_argument("files", nargs="+", metavar="FILE.jsonl")
    index.add_argument("--force", action="store_true", help="rebuild even when the index is fresh")
    index.set_defaults(handler=cmd_index)

    example = sub.add_parser(
        "example-data",
        help="generate the example sources the configs/ mixtures read",
        description="Write the seeded example sources that the mixtures in configs/ read.",
    )
    example.add_argument("out", nargs="?", default="data", help="folder to write (default ./data)")
    example.add_argument("--seed", type=int, default=0)
    example.set_defaults(handler=cmd_example_data)

    report = sub.add_parser(
        "report",
        help="(re)draw a build's HTML report from its manifest and outputs",
        description="Draw <phase>_<name>.report.html beside the outputs of a finished build, from its manifests, "
        "JSONL, index and Parquet sidecar (how long the build took is known only to the build itself).",
    )
    report.add_argument("manifest", metavar="MANIFEST.json", help="a split's manifest (or its JSONL)")
    report.set_defaults(handler=cmd_report)

    sub.add_parser("train", help="train a small GPT on a built mixture (see `mixprep train --help`)")
    sub.add_parser("tokenizer", help="train a byte-level BPE tokenizer (see `mixprep tokenizer train --help`)")
    return parser


def _start_the_pool_early(config: MixtureConfig, args: argparse.Namespace) -> None:
    """A build that will run a local pool starts the pool's fork server before importing the
    build: the server loads the build's modules and kernels (~2 s) while this process
    imports its own (~1 s). Only for local files, whose sizes need no server to ask; a
    problem with them is left for the build to report, with its own message."""
    if args.executor != "local" or args.workers < 2:
        return
    from mixprep.sources import remote
    from mixprep.sources.plan import input_bytes, make_plan

    specs = [spec for d in config.datasets for spec in (d.source, d.validation_source) if spec is not None]
    if any(spec.hub is not None or any(remote.is_remote(p) for p in spec.patterns) for spec in specs):
        return
    try:
        size = input_bytes(make_plan(config))
    except (MixprepError, OSError):
        return  # the build names the problem
    if size >= args.in_process_below * 1e6:
        from mixprep.build.executors import start_worker_server

        start_worker_server()


def cmd_build(args: argparse.Namespace) -> int:
    from mixprep.config.load import load_mixture
    from mixprep.config.parse import with_pack

    if (args.config is None) == (args.config_option is None):
        msg = "build needs one mixture YAML: `mixprep build CONFIG` or `mixprep build --mixture_config CONFIG`"
        raise ConfigError(msg)
    config = load_mixture(args.config or args.config_option)
    if args.pack is not None and not args.dry_run:
        config = with_pack(config, args.pack or None)
    _start_the_pool_early(config, args)
    from mixprep.mixer import DatasetMixer

    mixer = DatasetMixer(config)
    splits = None if args.split == "all" else (args.split,)
    options: dict[str, Any] = {
        "executor": args.executor,
        "ray_address": args.ray_address,
        "parquet_compression": args.parquet_compression,
        "progress": False if args.no_progress else None,
        "small_input_bytes": int(args.in_process_below * 1e6),
    }
    if not args.dry_run:
        options["write_rejected"] = args.write_rejected
        options["sha256"] = args.sha256
        options["report"] = not args.no_report
    if args.dry_run:
        result = mixer.dry_run(output_dir=args.output_dir, workers=args.workers, **options)
        print(plan_table(result))
        return 0
    result = mixer.build(output_dir=args.output_dir, splits=splits, workers=args.workers, force=args.force, **options)
    for split, manifest in result.manifests.items():
        if not args.quiet:
            print(summary_table(manifest, reused=result.reused))
        print(f"-> {result.files[split]}")
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    from mixprep.mixer import DatasetMixer

    report = DatasetMixer.from_yaml(args.config).validate_mixture()
    print(json.dumps(report, indent=2))
    return 0 if report["is_valid"] else 1


def cmd_verify(args: argparse.Namespace) -> int:
    from mixprep.verify import verify

    status = 0
    for name in args.files:
        report = verify(name)
        print(f"{report.path}: {'OK' if report.ok else 'FAILED'} ({report.records:,} records)")
        for check in report.checks:
            print(f"  ok   {check}")
        for problem in report.problems:
            print(f"  FAIL {problem}")
        status |= 0 if report.ok else 1
    return status


def cmd_report(args: argparse.Namespace) -> int:
    from mixprep.report import write_report

    path = Path(args.manifest)
    if path.suffix == ".jsonl":
        path = path.with_name(path.name[: -len(".jsonl")] + ".manifest.json")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
        phase, name = manifest["phase"], manifest["name"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        msg = f"{path}: not a mixprep manifest ({exc})"
        raise OutputError(msg) from None
    print(f"-> {write_report(path.parent, phase, name)}")
    return 0


def cmd_index(args: argparse.Namespace) -> int:
    from mixprep.serve.index import ensure_index

    for name in args.files:
        index = ensure_index(Path(name), rebuild=args.force)
        print(f"{name}: {len(index):,} records -> {index.path}")
    return 0


def cmd_example_data(args: argparse.Namespace) -> int:
    from mixprep.examples import write_example_data

    for path, count in write_example_data(Path(args.out), seed=args.seed).items():
        print(f"{path}: {count:,} records")
    return 0


# -- tables ----------------------------------------------------------------------

def _table(header: list[str], rows: list[list[Any]]) -> str:
    cells = [header] + [[f"{c:,}" if isinstance(c, int) else str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = ["  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True))) for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def summary_table(manifest: dict[str, Any], *, reused: bool = False) -> str:
    rows = []
    total = manifest["output"]["records"] or 1
    units = [u for u in ("bytes", "tokens") if all(u in s.get("share", {}) for s in manifest["sources"].values())]
    for name, s in manifest["sources"].items():
        rows.append([
            name, s["read"], sum(s["bad"].values()), sum(s["removed"].values()), s["available"], s["quota"],
            s["extra_copies"], f"{s['mix_ratio']:.1%}", f"{100 * s['quota'] / total:.1f}%",
            *(f"{s['share'][unit]:.1%}" for unit in units),
        ])
    header = ["source", "read", "bad", "filtered", "available", "written", "repeats", "asked", "share", *(f"{u} share" for u in units)]
    state = " (reused: up to date)" if reused else ""
    tokens = f", {manifest['output']['tokens']:,} tokens" if "tokens" in manifest["output"] else ""
    title = f"{manifest['split']}: {manifest['output']['records']:,} records, {manifest['output']['bytes'] / 1e6:,.1f} MB{tokens}{state}"
    return f"{title}\n{_table(header, rows)}"


def plan_table(result: Any) -> str:
    rows = []
    units = result.units
    totals = {u: sum(v.get(u, 0) for v in units.values()) for u in ("bytes", "tokens")}
    shown = [u for u in ("bytes", "tokens") if totals[u]]
    for q in result.quotas:
        s = result.stats[q.name]
        factor = f"{q.repeat_factor:.2f}x" if q.available else ("-" if not q.quota else "EMPTY")
        shares = [f"{units.get(q.name, {}).get(u, 0) / totals[u]:.1%}" for u in shown]
        counts = [s.read, sum(s.bad.values()), sum(s.removed.values()), q.held_out, q.available, q.quota]
        rows.append([q.name, *counts, factor, q.validation, *shares])
    header = ["source", "read", "bad", "filtered", "held out", "available", "quota", "repeat", "validation", *(f"{u} share" for u in shown)]
    return _table(header, rows)


if __name__ == "__main__":
    raise SystemExit(main())
