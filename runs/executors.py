"""Executors: where evaluations run. All take plain task dicts and yield plain result dicts.

* ``serial`` — in the driver's process (debugging, tests).
* ``local`` — a supervised pool of long-lived spawned worker processes, one torch thread each,
  one per core or per GPU slot. The supervisor waits on each worker's pipe *and* its process
  sentinel, so a worker that segfaults, is SIGKILLed, runs out of memory or hangs past the
  timeout is detected, its task reported ``failed`` with the reason, and the worker replaced —
  ``multiprocess``/``multiprocessing.Pool`` would hang instead.
* ``dask`` — see :mod:`evograph.runs.dask_executor`.

Retries are the driver's business: an executor reports each attempt once.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import resource
import signal
import time
from collections import deque
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from typing import Any, Callable, Iterator

from .worker import evaluate_task, init_worker

Task = dict[str, Any]
Result = dict[str, Any]


def failed(task: Task, reason: str, worker: str = "") -> Result:
    return {"id": task["id"], "status": "failed", "fitness": None, "metrics": {},
            "error": reason, "inherited": None, "weights": None, "worker": worker,
            "wall_time": None}


class SerialExecutor:
    """Evaluate tasks one after another in this process (no timeout enforcement)."""

    name = "serial"

    def __init__(self, device: str = "auto", **_: Any):
        self.device = device
        init_worker(1)

    @property
    def slots(self) -> int:
        return 1

    def run(self, tasks: list[Task], should_stop: Callable[[], bool]) -> Iterator[Result]:
        for task in tasks:
            if should_stop():
                return
            yield evaluate_task({**task, "device": _device_for(task, self.device)})

    def abandon(self) -> list[int]:
        return []

    def close(self) -> None:
        pass


def _device_for(task: Task, device: str) -> str:
    return task.get("device") or device


def _worker_main(conn: Connection, threads: int, memory_limit_mb: int) -> None:
    """Loop of a pool worker: receive a task, evaluate it, send the result; None stops."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the driver handles Ctrl-C for everyone
    if memory_limit_mb > 0:
        limit = memory_limit_mb * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    init_worker(threads)
    while True:
        try:
            task = conn.recv()
        except EOFError:
            return
        if task is None:
            return
        conn.send(evaluate_task(task))


@dataclass
class _Worker:
    process: Any
    conn: Connection
    device: str
    task: Task | None = None
    started: float = 0.0
    name: str = field(default="")


class LocalExecutor:
    """A supervised pool of spawned worker processes (see the module docstring)."""

    name = "local"

    def __init__(self, workers: int = 0, device: str = "auto", per_gpu: int = 1,
                 timeout_s: float = 600.0, memory_limit_mb: int = 0, **_: Any):
        self.devices = worker_devices(workers, device, per_gpu)
        self.timeout_s = timeout_s
        self.memory_limit_mb = memory_limit_mb
        self.ctx = mp.get_context("spawn")
        self.pool: list[_Worker] = [self._start(d, i) for i, d in enumerate(self.devices)]

    @property
    def slots(self) -> int:
        return len(self.pool)

    def _start(self, device: str, index: int) -> _Worker:
        parent, child = self.ctx.Pipe()
        process = self.ctx.Process(target=_worker_main, args=(child, 1, self.memory_limit_mb),
                                   daemon=True, name=f"evograph-worker-{index}")
        process.start()
        child.close()
        return _Worker(process, parent, device, name=f"worker{index}@{device}")

    def _replace(self, worker: _Worker) -> None:
        _kill(worker.process)
        index = self.pool.index(worker)
        self.pool[index] = self._start(worker.device, index)

    def run(self, tasks: list[Task], should_stop: Callable[[], bool]) -> Iterator[Result]:
        queue = deque(tasks)
        while queue or any(w.task for w in self.pool):
            if should_stop():
                return  # the driver abandons in-flight tasks; they stay pending for resume
            self._dispatch(queue)
            yield from self._collect(timeout=0.2)

    def _dispatch(self, queue: deque) -> None:
        for worker in self.pool:
            if worker.task is None and queue:
                task = queue.popleft()
                task = {**task, "device": task.get("device") or worker.device}
                try:
                    worker.conn.send(task)
                except (BrokenPipeError, OSError):
                    self._replace(worker)
                    queue.appendleft(task)
                    continue
                worker.task, worker.started = task, time.monotonic()

    def _collect(self, timeout: float) -> Iterator[Result]:
        busy = [w for w in self.pool if w.task is not None]
        if not busy:
            return
        ready = set(wait([w.conn for w in busy] + [w.process.sentinel for w in busy], timeout))
        for worker in busy:
            result = self._check(worker, ready)
            if result is not None:
                yield result

    def _check(self, worker: _Worker, ready: set) -> Result | None:
        task = worker.task
        if worker.conn in ready:
            try:
                result = worker.conn.recv()
                worker.task = None
                return {**result, "worker": worker.name}
            except (EOFError, OSError):
                pass  # died while sending: fall through to the death check
        if worker.process.sentinel in ready or not worker.process.is_alive():
            code = worker.process.exitcode
            reason = _death_reason(code)
            self._replace(worker)
            return failed(task, f"worker died ({reason})", worker.name)
        if time.monotonic() - worker.started > self.timeout_s:
            self._replace(worker)
            return failed(task, f"timeout after {self.timeout_s:.0f} s", worker.name)
        return None

    def abandon(self) -> list[int]:
        """Kill busy workers (their tasks stay pending for a resume); returns those task ids."""
        ids = []
        for worker in self.pool:
            if worker.task is not None:
                ids.append(worker.task["id"])
                self._replace(worker)
        return ids

    def close(self) -> None:
        for worker in self.pool:
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


def worker_devices(workers: int, device: str, per_gpu: int) -> list[str]:
    """One device string per worker: GPU slots (``per_gpu`` candidates per GPU) when CUDA is
    requested or auto-detected, else one CPU worker per core."""
    import torch

    gpus = torch.cuda.device_count() if device in ("auto", "cuda") else 0
    if device.startswith("cuda:"):
        slots = [device] * per_gpu
    elif gpus:
        slots = [f"cuda:{g}" for g in range(gpus) for _ in range(per_gpu)]
    else:
        slots = ["cpu"] * (os.cpu_count() or 1)
    count = workers or len(slots)
    return [slots[i % len(slots)] for i in range(count)]


EXECUTORS: dict[str, Callable[..., Any]] = {"serial": SerialExecutor, "local": LocalExecutor}


def make_executor(name: str, **options: Any):
    if name == "dask" and "dask" not in EXECUTORS:
        from . import dask_executor  # noqa: F401  (registers itself; optional dependency)
    return EXECUTORS[name](**options)
