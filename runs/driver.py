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
import sqlite3
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from ..errors import RunStoreError
from ..genome.io import from_dict, to_dict
from ..genome.validate import known_analysis
from ..selection.base import Result
from ..selection.strategy import Strategy
from .config import RunConfig, config_from_dict, stored_config
from .execute.executors import make_executor
from .execute.task import DataSpec, Task, TaskResult
from .final import search_config, select_final
from .progress import Progress
from .retention import after_tell
from .setup import RunParts, fingerprint, resolve
from .start import Seed, check_seeds, extend, stored_seeds
from .state import Stop, StopFlag, aborted, disk_full_error, is_disk_full, run_state
from .store import RunStore

log = logging.getLogger("evograph.run")


@dataclass
class RunOutcome:
    run_dir: Path
    finished: bool                     # budget reached (not interrupted, not aborted)
    reason: str
    summary: dict[str, Any] = field(default_factory=dict)
    state: str = ""                    # finished | interrupted | aborted (see runs.state)


def new_run_dir(config: RunConfig, out: str | Path | None) -> Path:
    if out:
        return Path(out)
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path(config.out) / f"{config.name}-{stamp}"


def create_run(config: RunConfig, out: str | Path | None = None,
               source: str = "config", init: Sequence[Seed] = ()) -> Path:
    """Check the config and create the run directory and its store. ``init``: genomes (or
    genome files) the strategy's first initial individuals are (see :mod:`.start`)."""
    parts = resolve(config, source)
    config = parts.config  # as resolved: [fitness] completed by [space] where it needs it
    seeded = check_seeds(parts, init)
    run_dir = new_run_dir(config, out)
    with RunStore.create(run_dir, config.to_dict(), fingerprint(config, parts.space)) as store:
        if seeded:
            store.log_event("seeded", f"starts from {len(seeded['genomes'])} given genome(s)",
                            seeded)
        store.log_event("created", f"run created from {source}", {"dataset": parts.data.describe()})
    return run_dir


def run(run_dir: str | Path, *, force: bool = False, live: bool | None = None,
        overrides: Mapping[str, Any] | Sequence[str] | None = None) -> RunOutcome:
    """Run (or resume) the run in ``run_dir`` until its budget is spent or it is interrupted.
    ``overrides`` (``{"budget.evaluations": 200}`` or ``["budget.evaluations=200"]``) change
    the budget of the run first, e.g. to extend a finished one; other keys need ``force``."""
    run_dir = Path(run_dir)
    store = RunStore.open(run_dir)
    stop = StopFlag()
    try:
        store.acquire_lock()
        config = config_from_dict(stored_config(store.config), source=str(run_dir / "run.db"))
        parts = resolve(config, source=f"{run_dir}/config", complete=False)
        if fingerprint(config, parts.space, store.config) != store.fingerprint and not force:
            raise RunStoreError(f"{run_dir}: the config or search space changed since the run "
                                "started; resume with --force to continue anyway")
        if overrides:
            parts = extend(store, overrides, force)
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


def _attach_log(run_dir: Path) -> None:
    handler = logging.FileHandler(run_dir / "run.log")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    log.handlers = [handler]
    log.setLevel(logging.INFO)
    log.propagate = False


class Driver:
    """One driver per run directory (the store's lock guarantees it)."""

    def __init__(self, store: RunStore, parts: RunParts, stop: StopFlag, live: bool | None):
        self.store, self.parts, self.stop = store, parts, stop
        self.config = search_config(parts.config)  # the budget less the final selection's
        budget = self.config.budget
        self.before = run_state(store).elapsed_s  # earlier sessions' wall time (budget.minutes)
        self.started = time.monotonic()
        self.progress = Progress(store, budget.evaluations, live, minutes=budget.minutes,
                                 elapsed_before=self.before)
        if isinstance(parts.proposer, Strategy):  # the store keeps every genome: states need ids
            # from_dict undoes the to_dict that _ask stores (not variation.decode: a codec's
            # variation serialises its own way, the store never does)
            parts.proposer.keep_genomes_by_id(
                lambda id: from_dict(store.genome_dict(id), where=f"individual {id}"))
            parts.proposer.seed_with(stored_seeds(store))  # before its state counts them
        state = store.load_proposer_state()
        if state is not None:
            parts.proposer.load_state_dict(state[2])
        self.asked, self.told = store.last_batch(), store.told_batch()
        # batches asked and not told: their unfinished ids (a batch is told once this is empty)
        self.open: dict[int, set[int]] = {b: set(store.unfinished(b))
                                          for b in range(self.told + 1, self.asked + 1)}
        self.batch_of = {i: b for b in self.open for i in store.batch_ids(b)}
        self.flops: dict[int, int] = {}  # FLOPs per sample of asked candidates, where known
        self.stopping: Stop | None = None  # why no more batches are asked
        self.data_spec = self._data_spec()    # the same in every task: worked out once

    # -- the loop --------------------------------------------------------------------------------
    def loop(self) -> RunOutcome:
        """One driver session, from its ``started`` event to its ``stopped`` event (which
        records the state it leaves the run in: see :mod:`.state`)."""
        self.store.log_event("started", "driver started",
                             {"pid": os.getpid(), "executor": self.config.executor.name})
        self.started = time.monotonic()
        interrupted = self.store.unfinished()
        if interrupted:  # in flight when the last driver died: they will run again
            self.store.mark_pending(interrupted)
            self.store.log_event("resumed", f"re-running {len(interrupted)} interrupted "
                                 "evaluation(s)", {"ids": interrupted})
        try:
            with self.progress:
                self._session()
        except BaseException as exc:
            self._close(aborted(exc))
            raise
        stop = self._why_stop() if self.stop() else self.stopping
        stop = stop or Stop("finished", "evaluations", "evaluation budget reached")
        self._close(stop)
        return RunOutcome(self.store.run_dir, stop.finished, stop.reason, self.store.summary(),
                          stop.state)

    def _session(self) -> None:
        """Start the executor (unless the budget is already spent: a finished run resumed as
        it was starts no workers) and evolve until a stop."""
        self.stopping = None if self.open else self._why_stop()
        if self.stopping is not None:
            return select_final(self)  # the search is done; a final selection may be left
        ex = self.config.executor
        self.progress.phase(f"starting the {ex.name} executor")
        executor = make_executor(ex, preload=self.data_spec)
        log.info("driver started (%s executor, %d slots)", ex.name, executor.slots)
        self.progress.phase(f"starting {executor.slots} worker(s)" if ex.name != "serial"
                            else "evaluating the first candidate")
        self.slots = self.config.executor.batch or executor.slots
        try:
            self._evolve(executor)
            select_final(self, executor)  # [final]: retrain the best few, pick the best mean
        finally:
            if self.stop():
                executor.abandon()
                self.store.mark_pending(self.store.unfinished())  # re-run on resume
            executor.close()

    def _close(self, stop: Stop) -> None:
        """The session's ``stopped`` event; an aborting error (a full disk) may forbid it."""
        log.info("driver stopped: %s", stop.reason)
        try:
            self.store.log_event("stopped", stop.reason, stop.data())
        except Exception:  # the error being raised already says what went wrong
            if stop.state != "aborted":
                raise

    def elapsed(self) -> float:
        """The run's wall time: earlier driver sessions plus this one so far."""
        return self.before + time.monotonic() - self.started

    def _why_stop(self) -> Stop | None:
        budget = self.config.budget
        if self.stop():
            reason = self.stop.reason or "interrupted"
            return Stop("interrupted", reason.removeprefix("interrupted by "), reason)
        if self.store.count_individuals() >= budget.evaluations:
            return Stop("finished", "evaluations",
                        f"evaluation budget of {budget.evaluations} reached")
        if budget.minutes and self.elapsed() > budget.minutes * 60:
            return Stop("finished", "time", f"time budget of {budget.minutes:g} min reached")
        return self._failure_stop(budget.max_failure_fraction)

    def _failure_stop(self, fraction: float) -> Stop | None:
        recent = self.store.recent_statuses(20)
        bad = sum(status != "completed" for status in recent)
        if len(recent) >= 10 and bad / len(recent) > fraction:
            return Stop("aborted", "failures",
                        f"stopped: {bad} of the last {len(recent)} evaluations failed; see "
                        f"{self.store.run_dir / 'run.log'} and `evograph status --failed`")
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
        after_tell(self)  # [weights]: prune what the retention policy does not keep
        for result in results:
            self.flops.pop(result.id, None)
            self.batch_of.pop(result.id, None)


def _population_ids(proposer: Any) -> set[int] | None:
    population = getattr(proposer, "population", None)
    return {member[0] for member in population()} if callable(population) else None
