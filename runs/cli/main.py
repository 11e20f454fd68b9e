"""The ``evograph`` command line. Each command group lives in its own module and registers its
subcommands here; a user mistake (any :class:`EvographError`) and an :class:`OSError` (a read-only
or missing folder, a full disk) print one line and exit 2.

Building the parser imports no torch and none of the run machinery: every command module imports
what its handler needs inside the handler, so ``evograph --help``, ``--version`` and a config
mistake answer in a fraction of a second (``benchmarks/cli_startup.py`` measures it).
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import os
import re
import signal
import sys
from importlib import import_module

from ... import __version__
from ...errors import EvographError
from ...files import TMP_SUFFIX

COMMAND_MODULES = ("evograph.runs.cli.run", "evograph.runs.cli.lineage", "evograph.runs.cli.hypernet",
                   "evograph.runs.cli.export", "evograph.runs.cli.meta",
                   "evograph.runs.cli.genome")


# an atomic write's temporary file, ``.NAME.HEX.tmp``: an error names NAME, the user's path
_TEMP_NAME = re.compile(r"^\.(?P<name>.+)\.[0-9a-f]{8}" + re.escape(TMP_SUFFIX) + "$")


def make_parser() -> argparse.ArgumentParser:
    """The full parser, every command registered; it imports no torch (handlers import theirs)."""
    parser = argparse.ArgumentParser(prog="evograph", description="Genome-centric neuroevolution.")
    parser.add_argument("--version", action="version", version=f"evograph {__version__}")
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


def _user_path(filename: object) -> str:
    """The path to name in an error: an atomic write's temporary file is named by its target."""
    path = os.fsdecode(filename) if isinstance(filename, (str, bytes, os.PathLike)) else \
        str(filename)
    head, tail = os.path.split(path)
    match = _TEMP_NAME.match(tail)
    return os.path.join(head, match["name"]) if match else path


def os_error_line(exc: OSError) -> str:
    """One line for an :class:`OSError`: ``PATH: reason`` (``A -> B: reason`` for a rename)."""
    reason = exc.strerror or str(exc) or type(exc).__name__
    if exc.filename is None:
        return reason
    where = _user_path(exc.filename)
    if exc.filename2 is not None:
        where += f" -> {_user_path(exc.filename2)}"
    return f"{where}: {reason}"


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv``, run the command's handler and return the exit status: 2 and one line on
    standard error for a user mistake or an :class:`OSError`, 130 for Ctrl-C."""
    # Until a driver installs its own handlers, SIGTERM behaves like Ctrl-C: a quiet exit 130.
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        args = make_parser().parse_args(argv)
        return int(args.handler(args) or 0)
    except EvographError as exc:
        print(f"evograph: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `evograph status RUN | head`: the reader left, nothing is wrong
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except OSError as exc:  # a read-only or missing folder, a full disk: one line naming the path
        print(f"evograph: error: {os_error_line(exc)}", file=sys.stderr)
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
