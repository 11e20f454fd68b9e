"""The ``evograph`` command line. Each command group lives in its own module and registers its
subcommands here; a user mistake (any :class:`EvographError`) prints one line and exits 2."""

from __future__ import annotations

import argparse
import sys
from importlib import import_module

from ..errors import EvographError

COMMAND_MODULES = ("evograph.runs.cli_run", "evograph.runs.cli_lineage",
                   "evograph.runs.cli_export", "evograph.runs.cli_meta",
                   "evograph.runs.cli_genome")


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="evograph", description="Genome-centric neuroevolution.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:  # a command group not built yet
                continue
            raise
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = make_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except EvographError as exc:
        print(f"evograph: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("evograph: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
