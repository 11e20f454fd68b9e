"""Test-only fault injection: make chosen evaluations crash, hang, run out of memory or diverge.

Nothing here does anything unless the worker's environment has ``EVOGRAPH_FAULT_INJECTION=1``.
Then an evaluation misbehaves when its task's ``fault`` is KIND or when
``EVOGRAPH_FAULTS`` names its individual id (or ``*``: every one), e.g.
``EVOGRAPH_FAULTS="3=sigkill,5=hang*1"``
(``*N``: only the first N attempts, counted in files under ``EVOGRAPH_FAULT_STATE``, so a
transient fault can be seen to succeed on retry). Kinds:

* ``sigkill``  — the worker sends itself SIGKILL (the kernel's OOM killer looks like this);
* ``segfault`` — the worker reads address 0 (``ctypes.string_at(0)``): SIGSEGV;
* ``oom``      — the worker allocates more than its whole address-space limit
  (``executor.memory_limit_mb``); with no limit set it raises ``MemoryError`` instead of
  allocating, so a test can never exhaust a shared machine;
* ``hang``     — the worker sleeps forever (until the executor's timeout kills it);
* ``nan``      — the candidate's weights are set to NaN, so its training loss is non-finite.
"""

from __future__ import annotations

import ctypes
import os
import resource
import signal
import time
from pathlib import Path

import torch

from .task import Task

KINDS = ("sigkill", "segfault", "oom", "hang", "nan")


def enabled() -> bool:
    return os.environ.get("EVOGRAPH_FAULT_INJECTION") == "1"


def with_fault(task: Task) -> Task:
    """The task with its fault for this attempt settled in ``task.fault`` ("" for none), so
    that an attempt counts once however many times the task is looked at. Unchanged unless
    fault injection is enabled."""
    if not enabled() or task.fault is not None:
        return task
    return task.replace(fault=_from_env(task.id) or "")


def fault_for(task: Task) -> str | None:
    """The fault this evaluation should suffer, or None (always None unless enabled)."""
    if not enabled():
        return None
    kind = task.fault
    if kind is None:
        kind = _from_env(task.id)
    return kind if kind in KINDS else None


def _from_env(individual: int) -> str | None:
    for entry in filter(None, os.environ.get("EVOGRAPH_FAULTS", "").split(",")):
        who, _, kind = entry.partition("=")
        if who.strip() not in ("*", str(individual)):
            continue
        kind, _, times = kind.strip().partition("*")
        if not times or _count_attempt(individual, kind) <= int(times):
            return kind
    return None


def _count_attempt(individual: int, kind: str) -> int:
    """Record one more firing of this fault; return how many there have been (1 = first)."""
    folder = Path(os.environ.get("EVOGRAPH_FAULT_STATE", "/tmp/evograph-faults"))
    folder.mkdir(parents=True, exist_ok=True)
    marker = folder / f"{individual}-{kind}"
    with open(marker, "ab") as handle:
        handle.write(b".")
        handle.flush()
        os.fsync(handle.fileno())
    return marker.stat().st_size


def trigger_process_fault(task: Task) -> None:
    """Crash, hang or exhaust memory now if the task asks for it (``nan`` acts later)."""
    kind = fault_for(task)
    if kind == "sigkill":
        os.kill(os.getpid(), signal.SIGKILL)
    elif kind == "segfault":
        ctypes.string_at(0)
    elif kind == "hang":
        while True:
            time.sleep(1.0)
    elif kind == "oom":
        soft, _ = resource.getrlimit(resource.RLIMIT_AS)
        if soft == resource.RLIM_INFINITY:
            raise MemoryError("injected fault: allocation past the memory limit (no limit set)")
        torch.empty(soft // 4 + 1, dtype=torch.float32).fill_(1.0)  # more than the whole limit


def apply_module_fault(task: Task, module: torch.nn.Module) -> None:
    """``nan``: poison the candidate's weights so its training loss is non-finite."""
    if fault_for(task) == "nan":
        with torch.no_grad():
            for param in module.parameters():
                param.fill_(float("nan"))
