"""The run driver: ask -> evaluate -> tell, with every step committed to the run store.

The proposer is asked for one batch at a time (``executor.batch`` proposals, or as many as the
executor has slots); the batch and the proposer's state after the ask are committed in one
transaction, each evaluation is committed as it finishes, and once a whole batch is in, the
proposer is told its results *in id order* and its state committed again. Batches are told in
the order they were asked.

With ``executor.pipeline = P`` (``auto``: 0 for the serial executor, 1 for the pools; see
:attr:`~evograph.runs.config.ExecutorConfig.batches_ahead`) the driver asks up to P batches
ahead of the oldest one still evaluating: batch ``k + 1 + P`` is asked right after batch ``k``
is told, while batches
``k + 1 .. k + P`` still run, so workers never wait for the driver's tell and ask (nor for the
slowest candidate of a batch). P = 0 is the synchronous loop. For any P, the sequence of
operations on the proposer — and so the sequence of proposals — depends only on the seed, not
on the worker count or the order in which results arrive; after a crash or a ``kill -9`` the run
resumes from the last committed state, re-running only the evaluations that were in flight, and
ends in exactly the state an uninterrupted run reaches (deterministic CPU). This bounded,
deterministic staleness is the asynchronous evolution of Real et al. (2019, *Regularized
Evolution for Image Classifier Architecture Search*), made replayable.
"""

from __future__ import annotations

import logging
import math
import os
import signal
import sqlite3
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import torch

from ..errors import RunStoreError
from ..genome.io import from_dict, to_dict
from ..genome.validate import known_analysis
from ..selection.base import Result
from ..selection.strategy import Strategy
from .config import RunConfig, config_from_dict
from .execute.executors import make_executor
from .execute.task import DataSpec, Task, TaskResult
from .progress import Progress
from .setup import RunParts, fingerprint, resolve
from .store import RunStore

log = logging.getLogger("evograph.run")


@dataclass
class RunOutcome:
    run_dir: Path
    finished: bool                     # budget reached (not interrupted, not aborted)
    reason: str
    summary: dict[str, Any] = field(default_factory=dict)


def new_run_dir(config: RunConfig, out: str | Path | None) -> Path:
    if out:
        return Path(out)
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path(config.out) / f"{config.name}-{stamp}"


def create_run(config: RunConfig, out: str | Path | None = None,
               source: str = "config") -> Path:
    """Check the config and create the run directory and its store."""
    parts = resolve(config, source)
    config = parts.config  # as resolved: [fitness] completed by [space] where it needs it
    run_dir = new_run_dir(config, out)
    with RunStore.create(run_dir, config.to_dict(), fingerprint(config, parts.space)) as store:
        store.log_event("created", f"run created from {source}", {"dataset": parts.data.describe()})
    return run_dir


class _StopFlag:
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


def run(run_dir: str | Path, *, force: bool = False, live: bool | None = None,
        overrides: dict[str, Any] | None = None) -> RunOutcome:
    """Run (or resume) the run in ``run_dir`` until its budget is spent or it is interrupted."""
    run_dir = Path(run_dir)
    store = RunStore.open(run_dir)
    stop = _StopFlag()
    try:
        store.acquire_lock()
        config = config_from_dict(store.config, source=str(run_dir / "run.db"))
        parts = resolve(config, source=f"{run_dir}/config", complete=False)
        if fingerprint(config, parts.space) != store.fingerprint and not force:
            raise RunStoreError(f"{run_dir}: the config or search space changed since the run "
                                "started; resume with --force to continue anyway")
        _attach_log(run_dir)
        stop.install()
        try:
            return Driver(store, parts, stop, live).loop()
        except (OSError, sqlite3.OperationalError) as exc:
            if not is_disk_full(str(exc)):
                raise
            raise disk_full_error(run_dir, str(exc)) from None
    finally:
        stop.restore()
        store.release_lock()
        store.close()


DISK_FULL_MARKERS = ("No space left on device", "File too large", "database or disk is full",
                     "Disk quota exceeded")


def is_disk_full(message: str | None) -> bool:
    return bool(message) and any(marker in message for marker in DISK_FULL_MARKERS)


def disk_full_error(run_dir: Path, detail: str) -> RunStoreError:
    return RunStoreError(f"{run_dir}: disk full ({detail.split(' | ')[0]}); nothing committed "
                         f"was lost — free some space, then: evograph resume {run_dir}")


def _attach_log(run_dir: Path) -> None:
    handler = logging.FileHandler(run_dir / "run.log")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    log.handlers = [handler]
    log.setLevel(logging.INFO)
    log.propagate = False


class Driver:
    """One driver per run directory (the store's lock guarantees it)."""

    def __init__(self, store: RunStore, parts: RunParts, stop: _StopFlag, live: bool | None):
        self.store, self.parts, self.stop = store, parts, stop
        self.config = parts.config
        self.started = time.monotonic()
        self.progress = Progress(store, self.config.budget.evaluations, live)
        if isinstance(parts.proposer, Strategy):  # the store keeps every genome: states need ids
            # from_dict undoes the to_dict that _ask stores (not variation.decode: a codec's
            # variation serialises its own way, the store never does)
            parts.proposer.keep_genomes_by_id(
                lambda id: from_dict(store.genome_dict(id), where=f"individual {id}"))
        state = store.load_proposer_state()
        if state is not None:
            parts.proposer.load_state_dict(state[2])
        self.asked, self.told = store.last_batch(), store.told_batch()
        # batches asked and not told: their unfinished ids (a batch is told once this is empty)
        self.open: dict[int, set[int]] = {b: set(store.unfinished(b))
                                          for b in range(self.told + 1, self.asked + 1)}
        self.batch_of = {i: b for b in self.open for i in store.batch_ids(b)}
        self.flops: dict[int, int] = {}  # FLOPs per sample of asked candidates, where known
        self.stopping: str | None = None  # why no more batches are asked
        self.data_spec = self._data_spec()    # the same in every task: worked out once
        interrupted = store.unfinished()
        if interrupted:  # in flight when the last driver died: they will run again
            store.mark_pending(interrupted)
            store.log_event("resumed", f"re-running {len(interrupted)} interrupted evaluation(s)",
                            {"ids": interrupted})

    # -- the loop --------------------------------------------------------------------------------
    def loop(self) -> RunOutcome:
        ex = self.config.executor
        executor = make_executor(ex, preload=self.data_spec)
        self.store.log_event("started", f"driver started with {executor.slots} slot(s)",
                             {"pid": os.getpid()})
        log.info("driver started (%s executor, %d slots)", ex.name, executor.slots)
        self.slots = self.config.executor.batch or executor.slots
        try:
            with self.progress:
                self._evolve(executor)
        finally:
            if self.stop():
                executor.abandon()
                self.store.mark_pending(self.store.unfinished())  # re-run on resume
            executor.close()
        reason = self.stop.reason or self.stopping or "budget reached"
        finished = reason.startswith(("budget reached", "time budget")) and not self.stop()
        self.store.log_event("stopped", reason)
        log.info("driver stopped: %s", reason)
        return RunOutcome(self.store.run_dir, finished, reason, self.store.summary())

    def _why_stop(self) -> str | None:
        budget = self.config.budget
        if self.stop():
            return self.stop.reason
        if self.store.count_individuals() >= budget.evaluations:
            return "budget reached"
        if budget.minutes and time.monotonic() - self.started > budget.minutes * 60:
            return f"time budget of {budget.minutes} min reached"
        return self._failure_stop(budget.max_failure_fraction)

    def _failure_stop(self, fraction: float) -> str | None:
        recent = self.store.recent_statuses(20)
        bad = sum(status != "completed" for status in recent)
        if len(recent) >= 10 and bad / len(recent) > fraction:
            return (f"stopped: {bad} of the last {len(recent)} evaluations failed; "
                    f"see {self.store.run_dir / 'run.log'} and `evograph status`")
        return None

    # -- ask / evaluate / tell ---------------------------------------------------------------------
    def _evolve(self, executor) -> None:
        """Evaluate the open batches' candidates as one stream; whenever the oldest open batch
        is complete, tell it and ask ahead again, feeding the new tasks to the running executor.
        Ends once asking has stopped and every batch is told, or on a stop signal."""
        self._advance()
        while self.open and not self.stop():
            todo = sorted(i for ids in self.open.values() for i in ids)
            for result in executor.run(self._start(todo), self.stop):
                if self._take(result):  # a transient failure: once more
                    executor.submit(self._start([result.id]))
                new = self._advance()
                if new:
                    executor.submit(self._start(new))

    def _advance(self) -> list[int]:
        """Tell every complete batch at the head of the open ones, in order, asking ahead after
        each; returns the ids asked."""
        asked = self._ask_ahead()
        while self.told + 1 in self.open and not self.open[self.told + 1]:
            del self.open[self.told + 1]
            self._tell(self.told + 1)
            asked += self._ask_ahead()
        return asked

    def _ask_ahead(self) -> list[int]:
        """Ask batches while fewer than ``1 + pipeline`` are open and nothing says stop."""
        asked: list[int] = []
        while self.stopping is None and len(self.open) <= self.config.executor.batches_ahead:
            self.stopping = self._why_stop()
            if self.stopping is None:
                asked += self._ask(self.slots)
        return asked

    def _ask(self, slots: int) -> list[int]:
        remaining = self.config.budget.evaluations - self.store.count_individuals()
        proposals = self.parts.proposer.ask(max(1, min(slots, remaining)))
        self.asked += 1
        rows = [{"id": p.id, "genome": to_dict(p.genome), "genome_hash": p.genome.hash,
                 "arch_hash": p.genome.arch_hash, "seed": p.seed, "parents": list(p.parents),
                 "edit": p.edit.to_dict() if p.edit else None} for p in proposals]
        self.store.add_batch(self.asked, rows, self.parts.proposer.state_dict())
        # FLOPs the strategy's validation already worked out: the executors' cost hint
        self.flops.update({p.id: info.flops for p in proposals
                           if (info := known_analysis(p.genome)) is not None})
        ids = [p.id for p in proposals]
        self.open[self.asked] = set(ids)
        self.batch_of.update(dict.fromkeys(ids, self.asked))
        return ids

    def _data_spec(self) -> DataSpec:
        """What a worker needs to load the run's dataset (every task carries the same)."""
        config = self.config
        return DataSpec(config.to_dict()["dataset"], config.seed,
                        "" if config.executor.device == "auto" else config.executor.device)

    def _start(self, ids: list[int]) -> list[Task]:
        """Mark evaluations running (attempt + 1) and make their tasks."""
        self.store.mark_running(ids)
        return [self._task(i) for i in ids]

    def _task(self, individual_id: int) -> Task:
        row = self.store.individual(individual_id)
        parent = row.parents[0] if row.parents else None
        parent_file = self.store.weights_file(parent) if parent is not None else None
        spec, fitness = self.data_spec, self.config.fitness
        return Task(id=row.id, genome=row.genome, seed=row.seed, dataset=spec.dataset,
                    data_seed=spec.data_seed, device=spec.device, fitness=fitness.name,
                    fitness_params=fitness.params, arch_hash=row.arch_hash,
                    parent_weights=str(parent_file) if parent_file else None,
                    inherit=row.inherit, weights_out=str(self.store.weights_file(row.id)),
                    flops=self.flops.get(row.id), run_dir=str(self.store.run_dir))

    def _take(self, result: TaskResult) -> bool:
        """Record a result, or say it is to be retried (a failure, with attempts left, that
        may be transient: never a full disk, which stops the run)."""
        if result.id not in self.batch_of:  # its batch is told: an executor's echo
            log.warning("ignored a second result for evaluation %s", result.id)
            return False
        attempt = self.store.evaluation(result.id).attempt
        if (result.status == "failed" and attempt <= self.config.executor.retries
                and not is_disk_full(result.error)):
            log.warning("evaluation %s failed (attempt %d): %s", result.id, attempt,
                        result.error)
            return True
        self._record(result)
        self.open[self.batch_of[result.id]].discard(result.id)
        return False

    def _record(self, result: TaskResult) -> None:
        if result.status == "failed" and is_disk_full(result.error):
            # not the candidate's fault: stop, leaving it pending so a resume re-runs it
            self.store.mark_pending([result.id])
            raise disk_full_error(self.store.run_dir, result.error)
        weights = os.path.relpath(result.weights, self.store.run_dir) if result.weights else None
        self.store.record_result(result.id, result.status, result.fitness, result.metrics,
                                 error=result.error, weights=weights,
                                 inherited=result.inherited, wall_time=result.wall_time)
        if result.status != "completed":
            log.warning("evaluation %s %s: %s", result.id, result.status,
                        result.error or result.metrics.get("reason"))
        self.progress.record(result.id, result.status, result.fitness, result.metrics)
        self.progress.update()

    def _tell(self, batch: int) -> None:
        results = []
        for individual_id in self.store.batch_ids(batch):
            row = self.store.evaluation(individual_id)
            objectives = tuple(float(row.metrics.get(k, math.inf)) for k in self.parts.objectives)
            results.append(Result(individual_id, row.fitness, objectives))
        proposer = self.parts.proposer
        before = _population_ids(proposer)
        proposer.tell(results)
        events = []
        if before is not None:  # deaths, for the lineage's ages at death
            told = {r.id for r in results if r.fitness is not None}
            gone = (before | told) - (_population_ids(proposer) or set())
            if gone:
                born = max(r.id for r in results) + 1
                events.append(("died", f"{len(gone)} left the population",
                               {"ids": sorted(gone), "born": born}))
        # one transaction: a crash after it must not lose the deaths (a resume does not re-tell)
        self.store.save_proposer_state(batch, "told", proposer.state_dict(), events)
        self.told = batch
        for result in results:
            self.flops.pop(result.id, None)
            self.batch_of.pop(result.id, None)


def _population_ids(proposer: Any) -> set[int] | None:
    population = getattr(proposer, "population", None)
    return {member[0] for member in population()} if callable(population) else None


def default_threads() -> None:
    """The driver itself trains nothing in the local executor; keep it to one thread too."""
    torch.set_num_threads(1)
