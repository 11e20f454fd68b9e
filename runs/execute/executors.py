"""Executors: where evaluations run. All take tasks and yield their results
(:mod:`evograph.runs.execute.task`).

* ``serial`` — in the driver's process (debugging, tests). No isolation: a crash of an
  evaluation is a crash of the driver, and there is no timeout.
* ``local`` — a supervised pool of long-lived spawned worker processes, one torch thread each,
  one per core or per GPU slot. The supervisor waits on each worker's pipe *and* its process
  sentinel, so a worker that segfaults, is SIGKILLed, runs out of memory or hangs past the
  timeout is detected, its task reported ``failed`` with the reason, and the worker replaced —
  ``multiprocess``/``multiprocessing.Pool`` would hang instead. While the batch has work for
  every worker, each worker holds one unit more than it runs (sent ahead down its pipe), so it
  starts the next one the moment it reports, without waiting for the driver to record the
  result. A worker writes a unit's weights (fsync and all) on a sender thread while it runs
  the next unit, and sends the results once they are on disk; it says when each unit begins,
  so a death or a timeout is charged to the unit running, and the others it held (sent ahead,
  or finished with results unsent) go back to the queue uncharged.
* ``dask`` — a ``dask.distributed`` cluster, see :mod:`evograph.runs.execute.dask_cluster`.

Every executor has the same interface: ``slots`` (evaluations it runs at once),
``run(tasks, should_stop)`` yielding one result per task in completion order, ``submit(tasks)``
(more tasks for the run being iterated, between two of its results), ``abandon()`` (stop
in-flight work, returning its task ids) and ``close()``. Each is built by
:func:`make_executor` from the run's :class:`~evograph.runs.config.ExecutorConfig` and a
``preload`` :class:`~evograph.runs.execute.task.DataSpec` (workers load that dataset as they
start, before the first task), and declares in ``options`` the config keys it reads (``batched``:
``never|always|auto``, see :mod:`evograph.runs.execute.batching`); a key it does not read, set
to other than its default, is one :class:`ConfigError` naming the key and the executor.

Retries are the driver's business: an executor reports each attempt once.

A user's plug-ins (a fitness generator, search space or dataset defined in their script,
notebook or module) reach the pool's and Dask's workers as they start
(:mod:`evograph.runs.execute.plugins`); what a pool worker process runs is
:mod:`evograph.runs.execute.pool_worker`. A worker that re-ran a driver's script lacking the
``__main__`` guard stops the run in one line (:mod:`evograph.runs.execute.mainguard`).
"""

from __future__ import annotations

import multiprocessing as mp
import signal
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, fields
from multiprocessing.connection import Connection, wait
from typing import Any, ClassVar

from ...devices import resolve_device, worker_devices
from ...errors import ConfigError
from ..config import ExecutorConfig
from .batching import QueueingExecutor, UnitQueue
from .mainguard import UNGUARDED_EXIT, WORKER_PREFIX, UnguardedScriptError, unguarded_message
from .plugins import PluginError, pack
from .pool_worker import worker_main
from .process import init_worker
from .task import DataSpec, Task, TaskResult
from .worker import evaluate_unit

STARTUP_FAILURES = 3     # workers dying before ready in a row: give up on the queued tasks


# frozen configs: one shared default each
SERIAL_DEFAULT = ExecutorConfig(name="serial", batched="never")
LOCAL_DEFAULT = ExecutorConfig(batched="never")


class SerialExecutor(QueueingExecutor):
    """Evaluate tasks one after another in this process (no isolation, no timeout)."""

    name = "serial"
    # workers, timeout_s and memory_limit_mb size and guard a pool: a pool's config switched to
    # serial for debugging keeps them, and they mean nothing here (one slot, no timeout, no limit)
    options: ClassVar[tuple[str, ...]] = ("device", "batched", "workers", "timeout_s",
                                          "memory_limit_mb")

    def __init__(self, config: ExecutorConfig = SERIAL_DEFAULT,
                 preload: DataSpec | None = None):
        self.device = worker_devices(1, config.device, 1)[0]
        self.batched = config.batched
        init_worker(1)

    @property
    def slots(self) -> int:
        return 1

    def run(self, tasks: list[Task], should_stop: Callable[[], bool]) -> Iterator[TaskResult]:
        queue = self._start_queue(tasks)
        while queue:
            if should_stop():
                return
            unit = [t.replace(device=resolve_device(t.device, self.device)) for t in queue.pop()]
            yield from evaluate_unit(unit, self.batched)

    def abandon(self) -> list[int]:
        return []

    def close(self) -> None:
        pass


@dataclass(eq=False)
class _Worker:
    """The supervisor's view of one pool worker. ``units`` were sent and not yet reported, in
    order; the worker says when each begins, and the last one begun is the one running (those
    before it are finished, their weights being written): a death is charged to it alone."""

    process: Any
    conn: Connection
    device: str
    name: str
    ready: bool = False
    units: deque = field(default_factory=deque)
    begun: int = 0                               # how many of units, from the first, began
    started: float = 0.0                         # when the running unit began
    deadline: float = field(default=0.0)

    @property
    def unit(self) -> list[Task] | None:
        """The unit running now (the first one sent when none has said so yet), or None."""
        if not self.units:
            return None
        return self.units[max(self.begun, 1) - 1]

    def start_clock(self, now: float, timeout_s: float) -> None:
        """The running unit's timeout runs from now."""
        if self.units:
            self.started = now
            self.deadline = now + timeout_s * len(self.unit)

    def on_begun(self, now: float, timeout_s: float) -> None:
        self.begun = min(self.begun + 1, len(self.units))
        self.start_clock(now, timeout_s)

    def on_results(self, now: float, timeout_s: float) -> list[Task]:
        """The first unit reported; when no later one has begun yet, the clock of the next
        runs from now (as if it began: a worker that never says so still times out)."""
        unit = self.units.popleft()
        self.begun = max(self.begun - 1, 0)
        if not self.begun:
            self.start_clock(now, timeout_s)
        return unit

    def not_running(self) -> list[list[Task]]:
        """The units sent that are not the running one: finished but unreported, or never
        begun. Safe to run again elsewhere."""
        running = self.unit
        return [unit for unit in self.units if unit is not running]


class LocalExecutor(QueueingExecutor):
    """A supervised pool of spawned worker processes (see the module docstring)."""

    name = "local"
    options: ClassVar[tuple[str, ...]] = ("workers", "device", "per_gpu", "timeout_s",
                                          "memory_limit_mb", "batched")

    def __init__(self, config: ExecutorConfig = LOCAL_DEFAULT,
                 preload: DataSpec | None = None):
        self.devices = worker_devices(config.workers, config.device, config.per_gpu)
        self.timeout_s, self.memory_limit_mb = config.timeout_s, config.memory_limit_mb
        self.preload, self.batched = preload, config.batched
        self.plugins = pack()  # the user's plug-ins, serialised once for every worker
        self.ctx = mp.get_context("spawn")
        self.startup_failures = 0
        self.pool: list[_Worker] = [self._start(d, i) for i, d in enumerate(self.devices)]

    @property
    def slots(self) -> int:
        return len(self.pool)

    def _start(self, device: str, index: int) -> _Worker:
        parent, child = self.ctx.Pipe()
        process = self.ctx.Process(target=worker_main, args=(child, device, self.memory_limit_mb,
                                                             self.preload, self.plugins),
                                   daemon=True, name=f"{WORKER_PREFIX}-{index}")
        process.start()
        child.close()
        return _Worker(process, parent, device, f"worker{index}@{device}")

    def _replace(self, worker: _Worker) -> None:
        _kill(worker.process)
        worker.conn.close()
        index = self.pool.index(worker)
        self.pool[index] = self._start(worker.device, index)

    def run(self, tasks: list[Task], should_stop: Callable[[], bool]) -> Iterator[TaskResult]:
        queue = self._start_queue(tasks)
        while queue or any(w.units for w in self.pool):
            if should_stop():
                return  # the driver abandons in-flight tasks; they stay pending for resume
            self._dispatch(queue)
            yield from self._collect(queue, timeout=0.2)

    def _dispatch(self, queue: UnitQueue) -> None:
        """Give idle workers a unit, and busy ones their next unit ahead of time while the
        queue holds at least one unit per worker (so that sending ahead never leaves a worker
        idle at the end of the batch while another holds two)."""
        for worker in self.pool:
            while worker.ready and queue and (
                    not worker.units or (len(worker.units) < 2 and len(queue) >= self.slots)):
                unit = queue.pop()
                try:
                    worker.conn.send({"unit": unit, "mode": self.batched})
                except (BrokenPipeError, OSError):
                    queue.push_front(unit)
                    if not worker.units:       # idle and gone: replace it now; a busy
                        self._replace(worker)  # one's death is handled by _check
                    break
                worker.units.append(unit)
                if len(worker.units) == 1:
                    worker.start_clock(time.monotonic(), self.timeout_s)

    def _collect(self, queue: UnitQueue, timeout: float) -> Iterator[TaskResult]:
        waitables = [w.conn for w in self.pool] + [w.process.sentinel for w in self.pool]
        ready = set(wait(waitables, timeout))
        for worker in list(self.pool):
            yield from self._check(worker, ready, queue)

    def _check(self, worker: _Worker, ready: set, queue: UnitQueue) -> Iterator[TaskResult]:
        if worker.conn in ready:
            yield from self._receive(worker)
        if worker.process.sentinel in ready or not worker.process.is_alive():
            yield from self._died(worker, queue)
        elif worker.unit is not None and time.monotonic() > worker.deadline:
            unit = worker.unit
            self._requeue_waiting(worker, queue)
            self._replace(worker)
            yield from queue.fail(unit, f"timeout after {self.timeout_s * len(unit):.0f} s",
                                  worker.name)

    def _receive(self, worker: _Worker) -> Iterator[TaskResult]:
        """Every message the worker has sent so far: ready, begun, or a unit's results."""
        try:
            while True:
                message = worker.conn.recv()
                if isinstance(message, dict) and "ready" in message:
                    worker.ready, self.startup_failures = True, 0
                elif isinstance(message, dict) and "plugin_error" in message:
                    raise PluginError(message["plugin_error"])
                elif isinstance(message, dict) and "begun" in message:
                    worker.on_begun(time.monotonic(), self.timeout_s)
                elif isinstance(message, list):
                    worker.on_results(time.monotonic(), self.timeout_s)
                    yield from (r.replace(worker=worker.name) for r in message)
                if not worker.conn.poll():
                    return
        except (EOFError, OSError):
            return  # died while sending: the death check handles it

    def _died(self, worker: _Worker, queue: UnitQueue) -> Iterator[TaskResult]:
        worker.process.join(2.0)  # the pipe may report the death before the exit is reaped
        if not worker.ready and worker.process.exitcode == UNGUARDED_EXIT:
            raise UnguardedScriptError(unguarded_message())  # it re-ran the driver's script
        reason = f"worker died ({_death_reason(worker.process.exitcode)})"
        unit, was_ready = worker.unit, worker.ready
        self._requeue_waiting(worker, queue)
        self._replace(worker)
        if unit is not None:
            yield from queue.fail(unit, reason, worker.name)
        elif not was_ready:
            self.startup_failures += 1
            if self.startup_failures >= STARTUP_FAILURES * len(self.pool):
                yield from queue.drain(f"no worker could start: {reason}")

    @staticmethod
    def _requeue_waiting(worker: _Worker, queue: UnitQueue) -> None:
        """Units of a worker being replaced other than the one running (sent ahead and never
        begun, or finished with results unsent) are not its fault: back to the front of the
        queue, in their order, uncharged."""
        for unit in reversed(worker.not_running()):
            queue.push_front(unit)

    def abandon(self) -> list[int]:
        """Kill busy workers (their tasks stay pending for a resume); returns those task ids."""
        ids = []
        for worker in list(self.pool):
            if worker.units:
                ids += [task.id for unit in worker.units for task in unit]
                self._replace(worker)
        return ids

    def close(self) -> None:
        for worker in self.pool:
            if not worker.ready:  # still starting: nothing to finish
                _kill(worker.process)
                continue
            try:
                worker.conn.send(None)
            except (BrokenPipeError, OSError):
                pass
        deadline = time.monotonic() + 3.0
        for worker in self.pool:
            worker.process.join(max(0.0, deadline - time.monotonic()))
            _kill(worker.process)
            worker.conn.close()
        self.pool = []


def _kill(process: Any) -> None:
    if process.is_alive():
        process.kill()
    process.join(5)


def _death_reason(code: int | None) -> str:
    if code is None:
        return "unknown"
    if code < 0:
        try:
            return f"signal {signal.Signals(-code).name}"
        except ValueError:
            return f"signal {-code}"
    return f"exit code {code}"


EXECUTORS: dict[str, type] = {"serial": SerialExecutor, "local": LocalExecutor}
# the driver's keys of [executor], read by no executor
DRIVER_OPTIONS = ("name", "retries", "batch", "pipeline")


def executor_class(name: str) -> type:
    """The executor registered as ``name`` (``dask`` is imported and registered on first use);
    an unknown name is one ConfigError line."""
    if name == "dask" and "dask" not in EXECUTORS:
        from .dask_cluster import DaskExecutor  # dask is imported on first use
        EXECUTORS["dask"] = DaskExecutor
    if name not in EXECUTORS:
        raise ConfigError(f"executor.name: unknown executor {name!r} "
                          f"(known: {', '.join(sorted(set(EXECUTORS) | {'dask'}))})")
    return EXECUTORS[name]


def check_options(config: ExecutorConfig) -> type:
    """The class of ``config.name``, once every key of ``config`` it does not read is at its
    default; else one ConfigError line naming the key and the executor."""
    cls = executor_class(config.name)
    default = ExecutorConfig()
    for spec in fields(ExecutorConfig):
        key, value = spec.name, getattr(config, spec.name)
        if key not in DRIVER_OPTIONS + tuple(cls.options) and value != getattr(default, key):
            raise ConfigError(f"executor.{key}: the {config.name} executor does not use it "
                              f"(got {value!r}; it reads {', '.join(cls.options)})")
    return cls


def make_executor(config: ExecutorConfig, preload: DataSpec | None = None):
    """The executor ``config`` describes (see :func:`check_options`), its workers loading
    ``preload`` as they start and knowing the user's plug-ins
    (:mod:`evograph.runs.execute.plugins`; the serial executor shares this process's)."""
    executor = check_options(config)(config, preload)
    if config.name == "dask":
        from .dask_plugins import ship_plugins
        ship_plugins(executor)
    return executor
