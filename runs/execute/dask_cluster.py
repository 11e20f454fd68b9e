"""The ``dask`` executor: evaluations on a ``dask.distributed`` cluster.

With ``executor.scheduler`` empty it starts a ``LocalCluster`` of worker *processes* (one thread
each, one per core or GPU slot, like the ``local`` executor); with an address
(``scheduler = "tcp://host:8786"``) it connects to an existing scheduler, so the same config
scales from a laptop to many machines. Workers receive the same tasks and run the same
:func:`evograph.runs.execute.worker.evaluate_unit` as every other executor, so results are
identical.

Fault isolation rests on dask's nannies: a worker that segfaults, is SIGKILLed or exceeds its
memory is restarted by its nanny, and the scheduler fails the task with ``KilledWorker`` — here
reported as ``failed`` with the reason. The ``LocalCluster`` is created with
``distributed.scheduler.allowed-failures = 0`` so a fatal task is not re-run by dask behind the
driver's back (the driver's bounded retries apply; give an external scheduler the same
setting). Each unit is pinned to a worker thread that runs no other unit of the run, so no
innocent unit queued behind a fatal or hung one dies with it.
Dask cannot stop a running task, so a task running past its timeout is reported ``failed`` and
its worker restarted. A worker plugin gives each worker one torch thread, its device (per worker
name, for GPUs) and the ``memory_limit_mb`` address-space limit.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, ClassVar

from distributed.diagnostics.plugin import WorkerPlugin

from ...devices import worker_devices
from ...errors import ConfigError
from ..config import ExecutorConfig
from .batching import QueueingExecutor, UnitQueue
from .task import DataSpec, Task, TaskResult
from .worker import evaluate_unit

DASK_DEFAULT = ExecutorConfig(name="dask", batched="never")   # frozen: one shared default


class EvographWorkerPlugin(WorkerPlugin):
    """Sets up every (re)started dask worker like a ``local`` pool worker."""

    def __init__(self, devices: list[str] | None, memory_limit_mb: int,
                 preload: DataSpec | None = None):
        self.devices, self.memory_limit_mb, self.preload = devices, memory_limit_mb, preload

    def setup(self, worker: Any) -> None:
        from evograph.runs.execute.process import init_worker  # imports torch before the first task
        device = "auto"
        if self.devices:
            name = str(worker.name)
            index = int(name) if name.isdigit() else sum(map(ord, name))
            device = self.devices[index % len(self.devices)]
        init_worker(1, device, self.memory_limit_mb, self.preload)


@dataclass
class _Flight:
    future: Any
    unit: list[Task]
    worker: str                     # address of the worker it is pinned to
    deadline: float | None = None   # from the moment it is seen processing
    orphaned_at: float | None = None  # when its worker was first seen gone, it still pending


class DaskExecutor(QueueingExecutor):
    """Evaluate units on a dask.distributed cluster (see the module docstring)."""

    name = "dask"
    options: ClassVar[tuple[str, ...]] = ("workers", "device", "per_gpu", "timeout_s",
                                          "memory_limit_mb", "batched", "scheduler")

    def __init__(self, config: ExecutorConfig = DASK_DEFAULT,
                 preload: DataSpec | None = None):
        self.timeout_s, self.batched = config.timeout_s, config.batched
        self.cluster, devices = None, None
        if config.scheduler:
            self.client = _connect(config.scheduler)
        else:
            devices = worker_devices(config.workers, config.device, config.per_gpu)
            self.cluster = _local_cluster(len(devices))
            self.client = _connect(self.cluster)
        self.client.register_plugin(EvographWorkerPlugin(devices, config.memory_limit_mb,
                                                         preload), name="evograph-worker")
        self._slots = max(1, sum(self.client.nthreads().values()))
        self.flight: dict[str, _Flight] = {}
        self._checked, self._no_workers_since = 0.0, None

    @property
    def slots(self) -> int:
        return self._slots

    def run(self, tasks: list[Task], should_stop: Callable[[], bool]) -> Iterator[TaskResult]:
        queue = self._start_queue(tasks)
        while queue or self.flight:
            if should_stop():
                return  # the driver abandons in-flight tasks; they stay pending for resume
            if queue and len(self.flight) < self.slots:
                for worker in self._free_threads()[:self.slots - len(self.flight)]:
                    if not queue:
                        break
                    self._launch(queue.pop(), worker)
            yield from self._harvest(queue)

    def _free_threads(self) -> list[str]:
        """One address per worker thread alive now and running no unit of ours.

        Each unit is pinned to a free thread's worker: left to itself the scheduler may stack
        a unit behind a busy worker's (seen while a nanny restarted a dead worker, and beside a
        freshly started one), and an innocent unit held there dies with a fatal one, or with
        the restart that stops a hung one."""
        busy = Counter(flight.worker for flight in self.flight.values())
        return [address for address, threads in self.client.nthreads().items()
                for _ in range(max(0, threads - busy[address]))]

    def _launch(self, unit: list[Task], worker: str) -> None:
        key = f"evograph-eval-{uuid.uuid4().hex}"
        future = self.client.submit(evaluate_unit, unit, self.batched, key=key, pure=False,
                                    retries=0, workers=[worker], allow_other_workers=False)
        self.flight[key] = _Flight(future, unit, worker)

    def _harvest(self, queue: UnitQueue) -> Iterator[TaskResult]:
        deadline = time.monotonic() + 0.2
        while time.monotonic() < deadline and all(f.future.status == "pending"
                                                  for f in self.flight.values()):
            time.sleep(0.02)  # future.status is local state: polling costs no round trip
        self._note_started()
        if self._workers_lost(queue):
            for flight in self.flight.values():
                self.client.cancel(flight.future)
                queue.push_front(flight.unit)
            self.flight = {}
            yield from queue.drain("the dask cluster has had no worker for 5 minutes")
            return
        for key, flight in list(self.flight.items()):
            status = flight.future.status
            if status == "finished":
                del self.flight[key]
                yield from flight.future.result()
            elif status in ("error", "cancelled", "lost"):
                del self.flight[key]
                yield from queue.fail(flight.unit, _failure_reason(flight.future),
                                      flight.worker)
            elif flight.deadline is not None and time.monotonic() > flight.deadline:
                del self.flight[key]
                self._stop(flight)
                yield from queue.fail(flight.unit, f"timeout after "
                                      f"{self.timeout_s * len(flight.unit):.0f} s",
                                      flight.worker)

    def _note_started(self) -> None:
        """Start each unit's clock when the scheduler first reports it processing."""
        waiting = {k: f for k, f in self.flight.items() if f.deadline is None}
        if not waiting:
            return
        for keys in self.client.processing().values():
            for key in keys:
                flight = waiting.get(key)
                if flight is not None:
                    flight.deadline = time.monotonic() + self.timeout_s * len(flight.unit)

    def _workers_lost(self, queue: UnitQueue, patience_s: float = 300.0) -> bool:
        """True once the cluster has had no worker for ``patience_s`` (checked every 2 s).
        Units pinned to a worker that is gone go back to the queue, uncharged."""
        now = time.monotonic()
        if now - self._checked < 2.0:
            return False
        self._checked = now
        live = self.client.nthreads()
        self._requeue_orphans(queue, live, now)
        if live:
            self._no_workers_since = None
            return False
        self._no_workers_since = self._no_workers_since or now
        return now - self._no_workers_since > patience_s

    def _requeue_orphans(self, queue: UnitQueue, live: dict, now: float) -> None:
        """A unit pinned to a worker that left before running it waits for that worker
        forever; one still pending two checks after its worker was seen gone is cancelled and
        queued again. (A unit that killed its worker is reported failed by then: dask
        reports a ``KilledWorker`` as the worker is removed.)"""
        for key, flight in list(self.flight.items()):
            if flight.worker in live or flight.future.status != "pending":
                flight.orphaned_at = None
            elif flight.orphaned_at is None:
                flight.orphaned_at = now
            elif now - flight.orphaned_at >= 2.0:
                del self.flight[key]
                self.client.cancel(flight.future)
                queue.push_front(flight.unit)

    def _stop(self, flight: _Flight) -> None:
        """Dask cannot interrupt a running task: restart its worker, then drop the task. (In this
        order: a cancelled task frees its worker in the scheduler's eyes, and a task sent there
        before the restart would die with the hung one.)"""
        self.client.restart_workers([flight.worker], timeout=120, raise_for_error=False)
        self.client.cancel(flight.future)

    def abandon(self) -> list[int]:
        """Cancel in-flight units (their tasks stay pending for a resume); returns task ids.
        On an external cluster, workers running them are restarted to stop the work."""
        ids = [task.id for flight in self.flight.values() for task in flight.unit]
        for flight in self.flight.values():
            if self.cluster is None and flight.deadline is not None:  # seen running there
                self.client.restart_workers([flight.worker], timeout=120, raise_for_error=False)
            self.client.cancel(flight.future)
        self.flight = {}
        return ids

    def close(self) -> None:
        for flight in self.flight.values():
            self.client.cancel(flight.future)
        self.flight = {}
        self.client.close()
        if self.cluster is not None:
            self.cluster.close()
            self.cluster = None


def _local_cluster(n_workers: int):
    import dask
    from distributed import LocalCluster
    # A cluster forgets a worker whose nanny has not restarted it within this time; a worker
    # importing torch on a loaded machine can take longer than the 15 s default.
    dask.config.set({"distributed.deploy.lost-worker-timeout": "1h"})
    # allowed-failures 0: a task that kills its worker fails at once (the driver retries);
    # worker-saturation 1: a worker holds only the task it runs, so no innocent task queued
    # behind a fatal one dies with it.
    with dask.config.set({"distributed.scheduler.allowed-failures": 0,
                          "distributed.scheduler.worker-saturation": 1.0}):
        return LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True,
                            dashboard_address=None, silence_logs=logging.CRITICAL,
                            scheduler_kwargs={"dashboard_address": ":0"})  # any free port


def _connect(target: Any, timeout_s: float = 30.0):
    """A client of ``target`` (a cluster or a scheduler address) with at least one worker;
    one error line if there is none within ``timeout_s`` (x4 for workers to come up)."""
    from distributed import Client
    try:
        client = Client(target, timeout=f"{timeout_s}s", set_as_default=False)
        client.wait_for_workers(1, timeout=4 * timeout_s)
    except (OSError, TimeoutError) as exc:
        raise ConfigError(f"executor.scheduler: cannot use dask scheduler {target!r} "
                          f"({type(exc).__name__}: {exc})") from None
    return client


def _failure_reason(future: Any) -> str:
    if future.status != "error":
        return f"dask task {future.status}"
    exc = future.exception()
    if type(exc).__name__ == "KilledWorker":
        return f"worker died (dask KilledWorker; last worker {exc.last_worker.address})"
    return f"{type(exc).__name__}: {exc}"[:500]


