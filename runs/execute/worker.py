"""One evaluation, as run inside a worker: a :class:`~evograph.runs.execute.task.Task` in, a
:class:`~evograph.runs.execute.task.TaskResult` out. Nothing else crosses a process boundary, so
the same functions run in-process, in a spawned pool worker or on a Dask worker.

A *unit* is what an executor hands a worker: one task, or a group of tasks sharing an
architecture that :func:`evaluate_group` may train together
(:mod:`evograph.compile.training.batched`) when their fitness generator declares ``batched``.
What a generator needs — a built module and its weights files, the run directory — is what it
declares (:class:`evograph.compile.training.fitness.FitnessGenerator`); nothing here names one.

For tests, :mod:`evograph.runs.execute.faults` can make chosen evaluations crash, hang, run out
of memory or diverge (only when ``EVOGRAPH_FAULT_INJECTION=1``).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import torch

from ... import meta as _meta  # noqa: F401  (registers the meta-learners' fitness generators)
from ...compile.builder import build
from ...compile.determinism import use_deterministic_kernels
from ...compile.inherit import inherit_weights
from ...compile.training.batch_rule import BatchRule, cost_class
from ...compile.training.batched import batch_problem, score_batched
from ...compile.training.fitness import (
    Score,
    bind_run,
    make_fitness,
    needs_module,
    trains_batched,
)
from ...genome.core import Genome
from ...genome.io import from_dict
from ...genome.validate import analyze
from . import process
from .faults import apply_module_fault, trigger_process_fault, with_fault
from .task import Task, TaskResult, error_fields
from .weights import PendingWrite, parent_weights, save_weights

OnStart = Callable[[], None] | None


def _fitness(task: Task) -> Any:
    generator = make_fitness(task.fitness, task.fitness_params)
    bind_run(generator, task.run_dir)
    return generator


def _prepare(task: Task, device: torch.device, genome: Genome | None = None):
    """Build the task's genome (``genome``, when the caller has parsed it already) on
    ``device`` and inherit its parent's weights; also the seconds the build took (analysis
    included, as a plain ``build`` call does it)."""
    genome = from_dict(task.genome) if genome is None else genome
    start = time.perf_counter()
    module = build(genome, seed=task.seed, device=device, info=analyze(genome))
    build_time = time.perf_counter() - start
    inherited = None
    tensors = parent_weights(task.parent_weights) if task.parent_weights else None
    if tensors is not None:
        inherited = inherit_weights(module, tensors, task.inherit).to_dict()
    apply_module_fault(task, module)
    return genome, module, inherited, build_time


def _complete(result: TaskResult, task: Task, genome: Genome, module: torch.nn.Module | None,
              score: Score, build_time: float,
              deferred: list[PendingWrite] | None = None) -> TaskResult:
    """``result`` filled in from ``score`` (and the ``build_time`` metric), the weights of a
    completed candidate saved: now, or appended to ``deferred`` for the caller to write before
    sending the result (a failure now raises before the result names a weights file)."""
    result = result.replace(status=score.status, fitness=score.fitness,
                            metrics={**score.metrics, "build_time": build_time})
    if score.status != "completed" or not task.weights_out or module is None:
        return result
    result = result.replace(weights=task.weights_out)
    meta = {"individual": str(task.id), "genome_hash": genome.hash}
    if deferred is None:
        save_weights(module, task.weights_out, meta)
    else:
        deferred.append(PendingWrite(result, module, task.weights_out, meta))
    return result


def evaluate_task(task: Task, deferred: list[PendingWrite] | None = None,
                  on_train_start: OnStart = None) -> TaskResult:
    """Build, inherit, score and save one candidate (build, inherit and save only when its
    generator ``needs_module``). Never raises: errors become statuses. With ``deferred``, the
    weights are not written here but appended to it (see :class:`PendingWrite`); the result
    then must not leave the process before they are. ``on_train_start`` is called once the
    candidate is built, as its scoring begins (a pool worker's sender thread writes the
    previous unit's weights from then on)."""
    start = time.perf_counter()
    task = with_fault(task)
    result = TaskResult.blank(task)
    try:
        trigger_process_fault(task)
        device = process.device_for(task.device)
        use_deterministic_kernels(device)
        fitness = _fitness(task)
        if needs_module(fitness):
            genome, module, inherited, build_time = _prepare(task, device)
            result = result.replace(inherited=inherited)
        else:
            genome, module, build_time = from_dict(task.genome), None, 0.0
        data = process.dataset_for(task.data_spec(), device)
        if on_train_start is not None:
            on_train_start()
        score = fitness.score(module, genome, data, seed=task.seed, device=device)
        if trains_batched(fitness) and _ran_every_step(score):
            process.STEP_TIMES.observe_alone(cost_class(genome, device), score.metrics["train_time"]
                                            / fitness.schedule(genome, data)[1])
        result = _complete(result, task, genome, module, score, build_time, deferred)
    except Exception as exc:  # noqa: BLE001 - one bad candidate never stops a run
        result = result.replace(**error_fields(exc))
    return result.replace(wall_time=time.perf_counter() - start)


def evaluate_group(tasks: list[Task], mode: str = "auto",
                   deferred: list[PendingWrite] | None = None,
                   on_train_start: OnStart = None) -> list[TaskResult]:
    """Evaluate tasks that share an architecture, optimizer, batch size, fitness and dataset,
    training them together when ``mode`` (a
    :class:`~evograph.compile.training.batch_rule.BatchRule` mode) says so, else one by one.
    Never raises; results come back in the order of ``tasks``; ``deferred`` and
    ``on_train_start`` as in :func:`evaluate_task`."""
    tasks = [with_fault(task) for task in tasks]
    start = time.perf_counter()
    together: list[PendingWrite] = []  # kept only if the batched path succeeds
    try:
        for task in tasks:
            trigger_process_fault(task)  # a crash takes the group along; the executor splits it
        results = _train_together(tasks, mode, None if deferred is None else together,
                                  on_train_start)
    except Exception:  # noqa: BLE001 - anything odd in the batched path: fall back, one by one
        results = None
    if results is None:
        return [evaluate_task(task, deferred, on_train_start) for task in tasks]
    if deferred is not None:
        deferred.extend(together)
    share = (time.perf_counter() - start) / len(tasks)
    return [result.replace(wall_time=share) for result in results]


def _train_together(tasks: list[Task], mode: str, deferred: list[PendingWrite] | None,
                    on_train_start: OnStart) -> list[TaskResult] | None:
    """The batched path of :func:`evaluate_group`; None when the group should go one by one
    (decided before anything is built). Its training time joins this process's step times."""
    fitness = _fitness(tasks[0])
    if not trains_batched(fitness):
        return None
    genomes = [from_dict(task.genome) for task in tasks]
    genes_for = getattr(fitness, "genes_for", None)   # the genes it trains with
    if batch_problem(genomes, [genes_for(g) for g in genomes] if genes_for else None):
        return None
    device = process.device_for(tasks[0].device)
    batched, speedup = BatchRule(mode, times=process.STEP_TIMES).decide(genomes, device)
    if not batched:
        return None
    use_deterministic_kernels(device)
    prepared = [_prepare(task, device, genome) for task, genome in zip(tasks, genomes)]
    data = process.dataset_for(tasks[0].data_spec(), device)
    if on_train_start is not None:
        on_train_start()
    scores = score_batched(fitness, [p[1] for p in prepared], genomes, data,
                           [task.seed for task in tasks], device)
    if any(_ran_every_step(score) for score in scores):   # the batched loop ran to its end
        seconds = sum(score.metrics["train_time"] for score in scores)
        process.STEP_TIMES.observe_batched(cost_class(genomes[0], device), len(tasks),
                                          seconds / fitness.schedule(genomes[0], data)[1])
    results = []
    for task, (genome, module, inherited, build_time), score in zip(tasks, prepared, scores):
        score.metrics["batched"] = {"size": len(tasks), "speedup": speedup}
        result = TaskResult.blank(task).replace(inherited=inherited)
        results.append(_complete(result, task, genome, module, score, build_time, deferred))
    return results


def _ran_every_step(score: Score) -> bool:
    """Whether training ran all its steps (a non-finite loss stops it early): only then is
    its time a measure of its steps for the batching rule."""
    curve = score.metrics.get("loss_curve")
    return bool(curve) and math.isfinite(curve[-1])


def evaluate_unit(unit: list[Task], mode: str = "never",
                  deferred: list[PendingWrite] | None = None,
                  on_train_start: OnStart = None) -> list[TaskResult]:
    """One unit of work: a single task, or a group (see :func:`evaluate_group`); ``deferred``
    and ``on_train_start`` as in :func:`evaluate_task`."""
    if len(unit) == 1:
        return [evaluate_task(unit[0], deferred, on_train_start)]
    return evaluate_group(unit, mode, deferred, on_train_start)
