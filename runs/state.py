"""The state of a run, told from its store: running, finished (by which budget), interrupted (by
what), aborted (why), or new — and its wall-clock time across all driver sessions.

A driver session is the span from a ``started`` event to its ``stopped`` event; the driver
writes the state it leaves the run in into the ``stopped`` event's data (:class:`Stop`). A
driver killed by ``-9`` (or a machine that went down) writes no ``stopped``: its session ends
at the last thing it recorded, and the run is *interrupted*. Whether a driver is running now
is the driver lock's answer (:func:`driver_pid`), not the events': a killed driver's lock is
released by the kernel. ``evograph status``, the HTML report, the live view and the driver's
time budget (``budget.minutes`` counts the run's wall time across resumes) all read it here.
The driver's side of it lives here too: :class:`StopFlag` (signals) and :func:`aborted`.
"""

from __future__ import annotations

import fcntl
import os
import signal
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ..errors import RunStoreError
from .store_schema import LOCK_NAME

STATES = ("new", "running", "finished", "interrupted", "aborted")


@dataclass(frozen=True)
class Stop:
    """Why a driver session ended: the state it leaves the run in (finished, interrupted,
    aborted), what ended it (``by``: evaluations, time, SIGINT, SIGTERM, failures, disk full,
    error) and one line for people."""

    state: str
    by: str
    reason: str

    @property
    def finished(self) -> bool:
        return self.state == "finished"

    def data(self) -> dict[str, str]:
        """What the ``stopped`` event keeps (its message is the reason)."""
        return {"state": self.state, "by": self.by}


@dataclass(frozen=True)
class RunState:
    """A run's state now. ``elapsed_s``: wall clock summed over driver sessions (the current
    one up to now); ``sessions``: how many drivers have started; ``pid``: the running driver's
    process id (None unless running; -1 when its lock names none)."""

    state: str
    by: str | None
    reason: str
    elapsed_s: float
    sessions: int
    pid: int | None = None

    def line(self) -> str:
        """The state in one line, e.g. ``finished: time budget of 2 min reached``."""
        return f"{self.state}: {self.reason}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def run_state(store: Any, now: float | None = None) -> RunState:
    """The state of the run in ``store`` (a :class:`~evograph.runs.store.RunStore`, read-only
    is enough) from its ``started``/``stopped`` events and its driver lock."""
    now = time.time() if now is None else now
    starts, stops = store.events("started"), store.events("stopped")
    pid = driver_pid(store.run_dir)
    elapsed, last_stop = 0.0, None
    for k, start in enumerate(starts):
        following = starts[k + 1] if k + 1 < len(starts) else None
        stop = next((s for s in stops if s["id"] > start["id"]
                     and (following is None or s["id"] < following["id"])), None)
        if stop is not None:
            end = stop["time"]
        elif following is None and pid is not None:
            end = now  # the session running now
        else:  # killed: it ended with the last thing it recorded
            end = store.last_activity(start["time"], following and following["time"]) \
                or start["time"]
        elapsed += max(0.0, end - start["time"])
        last_stop = stop if following is None else None
    return _classify(store.run_dir, starts, last_stop, pid, elapsed)


def _classify(run_dir: Path, starts: list[dict], stop: dict | None, pid: int | None,
              elapsed: float) -> RunState:
    n = len(starts)
    if pid is not None:
        where = f"driver pid {pid}" if pid > 0 else "a driver holds the run"
        return RunState("running", None, f"running ({where})", elapsed, n, pid)
    if not starts:
        return RunState("new", None, f"created, not started yet; start it with: evograph "
                        f"resume {run_dir}", 0.0, 0)
    if stop is None:
        return RunState("interrupted", "killed", "the driver stopped without closing (killed, "
                        f"or the machine went down); resume it: evograph resume {run_dir}",
                        elapsed, n)
    closed = stop_of(stop)
    reason = closed.reason
    if closed.state == "interrupted":
        reason += f"; continue it with: evograph resume {run_dir}"
    return RunState(closed.state, closed.by, reason, elapsed, n)


def stop_of(event: dict) -> Stop:
    """The :class:`Stop` a ``stopped`` event records (runs written before the event carried
    its state are read from the message)."""
    data, message = event.get("data") or {}, event["message"]
    if "state" in data:
        return Stop(data["state"], data.get("by", "?"), message.removeprefix("stopped: "))
    if message == "budget reached":
        return Stop("finished", "evaluations", "evaluation budget reached")
    if message.startswith("time budget"):
        return Stop("finished", "time", message)
    if message.startswith("interrupted by "):
        return Stop("interrupted", message.removeprefix("interrupted by "), message)
    if message.startswith("stopped:"):
        return Stop("aborted", "failures", message.removeprefix("stopped: "))
    return Stop("aborted", "error", message)


class StopFlag:
    """First SIGINT/SIGTERM: stop proposing and leave cleanly. Second: exit at once."""

    def __init__(self) -> None:
        self.reason: str | None = None
        self._previous: dict[int, Any] = {}

    def __call__(self) -> bool:
        return self.reason is not None

    def install(self) -> None:
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._previous[sig] = signal.signal(sig, self._handle)

    def restore(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    def _handle(self, signum: int, frame: Any) -> None:
        if self.reason is not None:
            os._exit(128 + signum)
        self.reason = f"interrupted by {signal.Signals(signum).name}"
        # A second signal takes the OS default action: it ends the process at once, even while
        # the main thread is blocked in a long C call (an fsync, a big kernel), when a Python
        # handler would wait. Everything committed is safe; resume re-runs what was in flight.
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, signal.SIG_DFL)


def aborted(exc: BaseException) -> Stop:
    """The state an exception leaves a driver session in (its first line as the reason)."""
    if isinstance(exc, KeyboardInterrupt):
        return Stop("interrupted", "KeyboardInterrupt", "interrupted")
    text = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    by = "disk full" if is_disk_full(text) or "disk full" in text else "error"
    return Stop("aborted", by, f"{type(exc).__name__}: {text}")


DISK_FULL_MARKERS = ("No space left on device", "File too large", "database or disk is full",
                     "Disk quota exceeded")


def is_disk_full(message: str | None) -> bool:
    return bool(message) and any(marker in message for marker in DISK_FULL_MARKERS)


def disk_full_error(run_dir: Path, detail: str) -> RunStoreError:
    return RunStoreError(f"{run_dir}: disk full ({detail.split(' | ')[0]}); nothing committed "
                         f"was lost — free some space, then: evograph resume {run_dir}")


def driver_pid(run_dir: str | os.PathLike) -> int | None:
    """The pid of the driver holding ``run_dir``'s lock, or None when none does (-1: held,
    but the lock file names no pid yet). The lock is probed only when the pid it names is
    alive: a reader's probe never gets in the way of a driver starting after a clean stop."""
    try:
        fd = os.open(Path(run_dir) / LOCK_NAME, os.O_RDONLY)
    except OSError:
        return None  # no driver has ever run here
    try:
        text = os.pread(fd, 32, 0).decode(errors="replace").strip()
        pid = int(text) if text.isdigit() else -1
        if pid > 0 and not _alive(pid):
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError:
            return pid
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    return True
