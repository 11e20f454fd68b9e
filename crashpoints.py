"""Named crash points for the reliability suite: a test-only switch that SIGKILLs the process at
a chosen point of the store's write path, to prove that every point is recoverable.

Set ``EVOGRAPH_CRASH_AT=NAME`` (or ``NAME:N`` to die at the N-th time the point is reached) in
the environment of a driver; without it every call is a no-op costing one dict lookup.
"""

from __future__ import annotations

import os
import signal
from collections import Counter

ENV = "EVOGRAPH_CRASH_AT"
POINTS = (
    "store.add_batch.before_commit", "store.add_batch.after_commit",
    "store.mark_running.after_commit",
    "store.record_result.before_commit", "store.record_result.after_commit",
    "store.save_proposer_state.before_commit", "store.save_proposer_state.after_commit",
    "atomic_write.before_rename", "atomic_write.after_rename",
)
_hits: Counter = Counter()


def crash_point(name: str) -> None:
    """Die here (SIGKILL, no cleanup) if the environment names this point."""
    target = os.environ.get(ENV)
    if not target:
        return
    point, _, nth = target.partition(":")
    if point != name:
        return
    _hits[name] += 1
    if _hits[name] >= int(nth or 1):
        os.kill(os.getpid(), signal.SIGKILL)
