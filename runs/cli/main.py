"""The ``evograph`` command line. Each command group lives in its own module and registers its
subcommands here; a user mistake (any :class:`EvographError`) prints one line and exits 2."""

from __future__ import annotations

import argparse
import atexit
import contextlib
import os
import signal
import sys
from importlib import import_module

from ...errors import EvographError

COMMAND_MODULES = ("evograph.runs.cli.run", "evograph.runs.cli.lineage", "evograph.runs.cli.hypernet",
                   "evograph.runs.cli.export", "evograph.runs.cli.meta",
                   "evograph.runs.cli.genome")


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


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    # Until a driver installs its own handlers, SIGTERM behaves like Ctrl-C: a quiet exit 130.
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        args = make_parser().parse_args(argv)
        return int(args.handler(args) or 0)
    except EvographError as exc:
        print(f"evograph: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("evograph: interrupted", file=sys.stderr)
        return 130


def _exit_now(signum: int, frame: object) -> None:
    os._exit(128 + signum)


def console_main() -> None:
    """The ``evograph`` command: :func:`main`, then a quick exit.

    Once ``main`` has returned, the run is closed and everything is committed; what is left is
    the interpreter's teardown of torch and friends (about a second), during which Python puts
    the default signal actions back, so a late Ctrl-C would kill the process by the signal.
    Instead: run the exit hooks (log flushing, process-pool cleanup) with a late signal meaning
    "exit now with 128 + signal number", then leave without the module teardown.
    """
    status = main()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, _exit_now)
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # a closed pipe loses nothing of ours
            stream.flush()
    os._exit(status)


if __name__ == "__main__":  # pragma: no cover
    console_main()
