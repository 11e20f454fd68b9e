"""The spawn-child guard: a script that calls evograph without ``if __name__ == "__main__":``.

Worker processes are *spawned*: each starts a fresh interpreter and imports the driver's script
again (as ``__mp_main__``) so that what it defines exists there too. A script that calls
``evograph.run`` at its top level therefore starts a new run in every worker, which never
becomes a worker: every evaluation failed, a run directory per worker, and the script exited 0.
:func:`refuse_spawned_rerun`, called first by the Python API, recognises that re-import and
stops it; the pool that spawned the worker then stops the run with one line saying what to add
(:class:`UnguardedScriptError`).

Calling evograph on purpose from a child process (a function run by the user's own process
pool, say) is not a re-import and goes on as usual.
"""

from __future__ import annotations

import multiprocessing
import sys
from pathlib import Path

from ...errors import EvographError

UNGUARDED_EXIT = 87                 # a pool worker's exit status when it was such a re-import
WORKER_PREFIX = "evograph-worker"   # the local pool's worker processes are named so


class UnguardedScriptError(EvographError):
    """The driver's script re-ran in a worker process: it lacks the ``__main__`` guard."""


def _main_script() -> str:
    main = sys.modules.get("__main__")
    path = getattr(main, "__file__", None)
    return Path(path).name if path else "your script"


def unguarded_message(script: str | None = None) -> str:
    """The one line that says what to add."""
    return (f"{script or _main_script()}: the code that calls evograph must run under "
            "'if __name__ == \"__main__\":' - worker processes import the script again, and "
            "without the guard each would start a run of its own")


def spawned_rerun() -> bool:
    """Whether this process is a spawned child re-importing its parent's main script right now:
    the script's top-level code runs as ``__mp_main__``, the name under which ``multiprocessing``
    (and ``multiprocess``) import it while a child prepares, before its target runs (and before
    ``parent_process()`` is set, so that cannot tell)."""
    frame = sys._getframe(1)
    while frame is not None:
        if frame.f_code.co_name == "<module>" and frame.f_globals.get("__name__") == "__mp_main__":
            return True
        frame = frame.f_back
    return False


def refuse_spawned_rerun() -> None:
    """Stop here when this is a spawned re-import of the driver's script (see the module
    docstring). In one of evograph's own workers, silently with :data:`UNGUARDED_EXIT` (the
    pool says it once, in the driver); in anyone else's child process, with the one line."""
    if not spawned_rerun():
        return
    if multiprocessing.current_process().name.startswith(WORKER_PREFIX):
        raise SystemExit(UNGUARDED_EXIT)
    print(f"evograph: error: {unguarded_message()}", file=sys.stderr)
    raise SystemExit(UNGUARDED_EXIT)
