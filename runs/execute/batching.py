"""Units of work for the executors: single tasks, or groups of tasks that may train together.

Tasks whose candidates share an architecture (``arch_hash``), optimizer, batch size, fitness,
dataset and device, scored by a fitness generator that declares ``batched``, can be trained as one batched population in one worker
(:mod:`evograph.compile.training.batched`). :func:`plan_units` groups them according to
``executor.batched``:

* ``never``  — every task is its own unit (the default, and what exact replay needs);
* ``always`` — every group of two or more becomes one unit (at most ``max_group`` tasks), the
  same grouping whatever the number of workers;
* ``auto``   — groups are formed only when the batch holds more tasks than the executor has
  slots (otherwise every task already has a worker of its own), split until every slot has a
  unit; the worker then decides from the step times of the trainings it has already run,
  alone and batched, whether batching this kind of network pays
  (:class:`~evograph.compile.training.batch_rule.BatchRule`) and trains one by one when it does not.

A unit whose worker crashes or times out is split back into single tasks and re-queued, so one
bad member costs only its own evaluation; only a single task's failure is reported.
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Iterable
from typing import Any

from ...compile.training.fitness import FITNESS, trains_batched
from ...errors import EvographError
from ...genome.io import from_dict
from ...genome.validate import analyze
from .task import Task, TaskResult, failed_result

MODES = ("never", "always", "auto")


def group_key(task: Task) -> tuple | None:
    """What a task must share with others to train in one batch; None if it cannot batch. The
    driver's ``arch_hash`` hint (the store has it) spares parsing the genome."""
    if not trains_batched(FITNESS.get(task.fitness)):
        return None
    arch_hash, genes = _architecture_and_genes(task)
    if arch_hash is None:
        return None
    fitness = {"name": task.fitness, "params": task.fitness_params}
    return (arch_hash, genes.get("optimizer"), genes.get("batch_size"),
            json.dumps(fitness, sort_keys=True), json.dumps(task.dataset, sort_keys=True),
            task.data_seed, task.device)


def _architecture_and_genes(task: Task) -> tuple[str | None, dict]:
    genome, hint = task.genome, task.arch_hash
    if hint is not None and isinstance(genome.get("genes"), dict):
        return str(hint), genome["genes"]
    try:
        parsed = from_dict(genome)
    except (EvographError, KeyError, TypeError, ValueError):
        return None, {}
    return parsed.arch_hash, parsed.gene


def _groups(tasks: Iterable[Task], max_group: int) -> list[list[Task]]:
    """Tasks grouped by :func:`group_key` in order of first appearance, chunked to
    ``max_group``; tasks that cannot batch stay alone."""
    groups: dict[Any, list[Task]] = {}
    for index, task in enumerate(tasks):
        key = group_key(task)
        groups.setdefault(key if key is not None else ("alone", index), []).append(task)
    units = []
    for members in groups.values():
        units += [members[i:i + max_group] for i in range(0, len(members), max_group)]
    return units


def plan_units(tasks: list[Task], mode: str = "never", slots: int = 1,
               max_group: int = 16) -> list[list[Task]]:
    """Split a batch of tasks into units (see the module docstring for the modes)."""
    if mode not in MODES:
        raise ValueError(f"executor.batched: must be one of {', '.join(MODES)} (got {mode!r})")
    if mode == "never" or max_group < 2 or (mode == "auto" and len(tasks) <= slots):
        return longest_first([[task] for task in tasks], slots)
    units = _groups(tasks, max_group)
    while mode == "auto" and len(units) < slots:
        largest = max(range(len(units)), key=lambda i: len(units[i]))
        unit = units[largest]
        if len(unit) < 2:
            break
        half = (len(unit) + 1) // 2
        units[largest:largest + 1] = [unit[:half], unit[half:]]
    return longest_first(units, slots)


def estimated_cost(unit: list[Task]) -> int:
    """Training work of a unit, up to a common factor: forward FLOPs per sample of each member
    (the samples seen and the epochs are the run's, the same for every task) — a task's
    ``flops`` hint when the driver knows it, else from its genome."""
    total = 0
    for task in unit:
        if task.flops is not None:
            total += task.flops
            continue
        try:
            total += analyze(from_dict(task.genome)).flops
        except (EvographError, KeyError, TypeError, ValueError):
            pass  # an invalid genome fails at once
    return total


def longest_first(units: list[list[Task]], slots: int) -> list[list[Task]]:
    """With several slots, hand out the costliest units first (Graham's LPT rule, 1969): a
    synchronous batch ends when its last evaluation does, and a big network started last
    would keep the batch waiting while the other workers idle. Results are committed by id,
    so the order changes timing only, never the run's outcome."""
    if slots < 2 or len(units) <= slots:
        return units
    costs = [estimated_cost(unit) for unit in units]
    order = sorted(range(len(units)), key=lambda i: -costs[i])  # stable among equals
    return [units[i] for i in order]


class UnitQueue:
    """Units waiting for a worker. A failed group comes back as single tasks at the front."""

    def __init__(self, units: Iterable[list[Task]]):
        self.units: deque[list[Task]] = deque(units)

    def __bool__(self) -> bool:
        return bool(self.units)

    def __len__(self) -> int:
        return len(self.units)

    def pop(self) -> list[Task]:
        return self.units.popleft()

    def push_front(self, unit: list[Task]) -> None:
        self.units.appendleft(unit)

    def extend(self, units: Iterable[list[Task]]) -> None:
        """Queue ``units`` behind those waiting (an earlier batch finishes first)."""
        self.units.extend(units)

    def fail(self, unit: list[Task], reason: str, worker: str = "") -> list[TaskResult]:
        """A unit's worker died or timed out: split a group and re-queue its members (they are
        retried alone, so only the culprit fails); a single task is reported failed."""
        if len(unit) > 1:
            self.units.extendleft([task] for task in reversed(unit))
            return []
        return [failed_result(unit[0], reason, worker)]

    def drain(self, reason: str) -> list[TaskResult]:
        """Fail every waiting task (no worker can take them)."""
        results = [failed_result(task, reason) for unit in self.units for task in unit]
        self.units.clear()
        return results


class QueueingExecutor:
    """What every executor shares: the queue of the ``run`` in progress, which :meth:`submit`
    may extend between two of its results (the driver's pipelined batches, retries); ``run``
    ends once every task it was given, or was submitted meanwhile, has reported."""

    batched: str = "never"
    max_group: int = 16
    slots: int
    _queue: UnitQueue | None = None

    def _plan(self, tasks: list[Task]) -> list[list[Task]]:
        return plan_units(tasks, self.batched, self.slots, self.max_group)

    def _start_queue(self, tasks: list[Task]) -> UnitQueue:
        self._queue = UnitQueue(self._plan(tasks))
        return self._queue

    def submit(self, tasks: list[Task]) -> None:
        """More tasks for the ``run`` being iterated, queued behind those waiting."""
        if self._queue is None:
            raise RuntimeError("submit() adds to a run in progress: call run() first")
        self._queue.extend(self._plan(tasks))
