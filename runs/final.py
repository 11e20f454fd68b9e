"""Final selection: after the search, retrain the best few distinct architectures from their
genes with fresh seeds and pick the best mean, not the luckiest single score.

The maximum of thousands of noisy validation scores picks the network that was luckiest on the
validation set (the winner's curse): on digits the best score is reached within a minute by
several networks that then test below a hand-built CNN (docs/final.md has the figures). So
``[final] share`` of the budget (of ``budget.evaluations``, and of ``budget.minutes`` when set) is
kept for this step, and the search stops at the rest (:func:`search_config`). Then the
``candidates`` best distinct architectures (``arch_hash``; each one's best individual, ranked as
:meth:`RunStore.best` ranks) are retrained from their genes, without inherited weights, with the
same ``seeds`` fresh seeds each (derived from the run's seed: the comparison is paired), through
the run's own executor and fitness (``[final] fitness`` may change its parameters: retrained
from scratch, a network needs more epochs than each generation of the search gave it, since
the search's children inherit their parents' training). The pick is the best mean validation
fitness (:func:`~evograph.runs.final_pick.final_pick`, re-exported here).

With a time budget, the best candidate is planned if its seeds fit in the time left, and the
others are admitted one by one as workers free up, while the work in flight and theirs fit
(:mod:`~evograph.runs.final_feed`, which estimates a retraining from the ones that finished); the
rest are dropped from the plan, saying so. The plan is committed in one transaction and each
final evaluation as it finishes; a ``kill -9`` loses nothing, and a resume runs only what was in
flight. Each final evaluation writes its weights (``weights/final-<id>-<seed>.safetensors``),
which the retention policy never prunes: the pick's retrained weights are there for export.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
from typing import Any

import numpy as np

from ..compile.training.fitness import make_fitness
from ..errors import ConfigError
from .config import RunConfig
from .execute.executors import make_executor
from .execute.task import Task, TaskResult
from .final_feed import FinalFeed, makespan, search_estimate
from .final_pick import CandidateScore, FinalPick, final_pick  # noqa: F401  (re-exported)
from .retention import after_tell
from .state import Stop, disk_full_error, is_disk_full
from .store import RunStore
from .store_rows import EvaluationRow

log = logging.getLogger("evograph.run")
FINAL_SEED_TAG = 0x46494E41  # "FINA": final seeds never coincide with an individual's seed


def final_seeds(run_seed: int, n: int) -> list[int]:
    """The ``n`` seeds every candidate is retrained with: the same for all (a paired
    comparison, so seed luck does not decide between candidates), a function of the run's seed
    only."""
    return [int(np.random.SeedSequence([run_seed, FINAL_SEED_TAG, j]).generate_state(1)[0])
            for j in range(n)]


def reserved_evaluations(config: RunConfig) -> int:
    """Evaluations kept for the final selection: whole candidates (``seeds`` each) that fit in
    ``share`` of ``budget.evaluations``; 0 (off, the search uses it all) when none fits."""
    final = config.final
    if final.share <= 0:
        return 0
    room = int(config.budget.evaluations * final.share)
    return min(final.candidates, room // final.seeds) * final.seeds


def final_fitness(config: RunConfig) -> dict[str, Any]:
    """The [fitness] parameters of the retraining: the search's, changed by [final] fitness."""
    return {**config.fitness.params, **config.final.fitness}


def check_final(config: RunConfig, source: str = "config") -> None:
    """Refuse a [final] fitness the run's fitness generator does not take: one line."""
    if config.final.fitness:
        try:
            make_fitness(config.fitness.name, final_fitness(config))
        except ValueError as exc:
            raise ConfigError(f"{source}: final.fitness.{exc}") from None


def cost_scale(config: RunConfig) -> float:
    """How much longer a retraining takes than a search evaluation, as far as the parameters
    tell: the ratio of ``epochs`` (or ``steps``) when [final] fitness changes it, else 1."""
    for key in ("epochs", "steps"):
        before, after = config.fitness.params.get(key), config.final.fitness.get(key)
        if isinstance(before, (int, float)) and isinstance(after, (int, float)) and before > 0:
            return max(1.0, after / before)
    return 1.0


def search_config(config: RunConfig) -> RunConfig:
    """The config the search runs under: its budget less the final selection's share (of the
    evaluations and of the minutes); unchanged when the final selection is off. A [final]
    fitness the generator does not take is refused here, before anything runs."""
    check_final(config, "run config")
    reserved = reserved_evaluations(config)
    if not reserved:
        return config
    budget = config.budget
    search = dataclasses.replace(budget, evaluations=budget.evaluations - reserved,
                                 minutes=budget.minutes * (1 - config.final.share))
    return dataclasses.replace(config, budget=search)


def distinct_best(store: RunStore, n: int) -> list[EvaluationRow]:
    """The best evaluation of each of the ``n`` best distinct architectures, best first."""
    chosen: list[EvaluationRow] = []
    seen: set[str] = set()
    for row in store.best(store.count_individuals()):
        individual = store.individual(row.id)
        key = individual.arch_hash or individual.genome_hash or str(row.id)
        if key not in seen:
            seen.add(key)
            chosen.append(row)
            if len(chosen) == n:
                break
    return chosen


def first_fits(row: EvaluationRow, seeds: int, slots: int, seconds: float,
               scale: float = 1.0) -> bool:
    """Whether the ``seeds`` retrainings of the best candidate fit in ``seconds`` on ``slots``
    workers, by the estimate from its search evaluation (:func:`~.final_feed.search_estimate`);
    the rest is admitted as it runs (:class:`~.final_feed.FinalFeed`)."""
    if not math.isfinite(seconds):
        return True
    return makespan([], seeds, search_estimate(row, scale), slots) <= seconds


def plan(store: RunStore, config: RunConfig, slots: int,
         seconds: float) -> tuple[list[dict], str]:
    """The rows of a final selection (empty when none fits) and what it is, in words."""
    final = config.final
    most = reserved_evaluations(config) // final.seeds
    rows = distinct_best(store, most)
    if not rows:
        return [], "final selection skipped: no completed candidate"
    if not first_fits(rows[0], final.seeds, slots, seconds, cost_scale(config)):
        return [], (f"final selection skipped: {final.seeds} seeds of the best candidate "
                    f"would not fit in the {seconds:.0f} s left")
    seeds = final_seeds(config.seed, final.seeds)
    planned = [{"candidate": row.id, "rank": rank, "seed_index": j, "seed": seed}
               for rank, row in enumerate(rows) for j, seed in enumerate(seeds)]
    return planned, f"final selection of {len(rows)} x {final.seeds}"


class FinalSelection:
    """Runs a run's final selection through an executor (see the module docstring)."""

    def __init__(self, driver: Any):
        self.driver, self.store = driver, driver.store
        self.config: RunConfig = driver.parts.config   # the whole budget, not the search's

    def words(self) -> str | None:
        """What the stored final selection is or was, in words (None: there is none)."""
        rows = self.store.final_rows()
        if rows:
            trimmed = self.store.events("final trimmed")
            more = (f" ({len(trimmed[-1]['data']['candidates'])} more did not fit in the time "
                    "left)" if trimmed else "")
            return (f"final selection of {len({r.candidate for r in rows})} x "
                    f"{len({r.seed_index for r in rows})}{more}")
        skipped = self.store.events("final skipped")
        return skipped[-1]["message"] if skipped else None

    def due(self) -> bool:
        """Whether there is work: a plan to make, or planned evaluations not finished."""
        rows = self.store.final_rows()
        if rows:
            return any(r.status in ("pending", "running") for r in rows)
        return bool(reserved_evaluations(self.config)) and self.words() is None

    def seconds_left(self) -> float:
        minutes = self.config.budget.minutes
        if not minutes:
            return math.inf
        return minutes * 60 - self.driver.elapsed()

    def prepare(self, slots: int) -> None:
        """Make and commit the plan unless the store holds one (or says it was skipped)."""
        if self.words() is not None:
            return
        rows, words = plan(self.store, self.config, slots, self.seconds_left())
        if not rows:
            self.store.log_event("final skipped", words)
            return
        ids = sorted({r["candidate"] for r in rows})
        self.store.add_final_plan(rows, {"candidates": len(ids), "ids": ids,
                                         "seeds": self.config.final.seeds})

    def run(self, executor: Any) -> None:
        """Plan if need be, then evaluate every unfinished final row (retrying failures as the
        search does); on a stop, those in flight go back to pending for the resume."""
        self.prepare(executor.slots)
        rows = self.store.final_rows()
        todo = [r.id for r in rows if r.status in ("pending", "running")]
        interrupted = [r.id for r in rows if r.status == "running"]
        if interrupted:  # in flight when the last driver died
            self.store.mark_final_pending(interrupted)
            self.store.log_event("resumed", f"re-running {len(interrupted)} interrupted final "
                                 "evaluation(s)", {"final_ids": interrupted})
        stop = self.driver.stop
        feed = FinalFeed(self.store, todo, executor.slots, self.seconds_left,
                         cost_scale(self.config))
        tasks: list[Task] = []
        while len(tasks) < executor.slots and (ids := feed.next()):
            tasks += self._start(ids)  # marked running: the work in flight for the next
        try:
            for result in executor.run(tasks, stop):
                retry = self._take(result)
                ids = [-result.id] if retry else feed.next()
                if ids and not stop():
                    executor.submit(self._start(ids))
        finally:
            if stop():
                self.store.mark_final_pending(
                    [r.id for r in self.store.final_rows() if r.status == "running"])

    def _start(self, ids: list[int]) -> list[Task]:
        self.store.mark_final_running(ids)
        rows = {r.id: r for r in self.store.final_rows()}
        return [self._task(rows[i]) for i in ids]

    def _task(self, row: Any) -> Task:
        """A final evaluation's task: the candidate's genome, a final seed, no inheritance,
        its own weights file; its id is the row's, negated (never an individual's)."""
        individual = self.store.individual(row.candidate)
        spec, fitness = self.driver.data_spec, self.config.fitness
        out = self.store.final_weights_file(row.candidate, row.seed_index)
        return Task(id=-row.id, genome=individual.genome, seed=row.seed, dataset=spec.dataset,
                    data_seed=spec.data_seed, device=spec.device, fitness=fitness.name,
                    fitness_params=final_fitness(self.config), arch_hash=individual.arch_hash,
                    parent_weights=None, inherit=False, weights_out=str(out),
                    run_dir=str(self.store.run_dir))

    def _take(self, result: TaskResult) -> bool:
        """Record a result, or say it is to be retried (a failure with attempts left, never a
        full disk: that stops the run with the evaluation pending)."""
        id = -result.id
        row = next(r for r in self.store.final_rows() if r.id == id)
        if result.status == "failed" and is_disk_full(result.error):
            self.store.mark_final_pending([id])
            raise disk_full_error(self.store.run_dir, result.error)
        if result.status == "failed" and row.attempt <= self.config.executor.retries:
            log.warning("final evaluation %s failed (attempt %d): %s", id, row.attempt,
                        result.error)
            return not self.driver.stop()
        weights = os.path.relpath(result.weights, self.store.run_dir) if result.weights else None
        self.store.record_final(id, result.status, result.fitness, result.metrics,
                                error=result.error, weights=weights,
                                wall_time=result.wall_time, worker=result.worker)
        self._say(row, result)
        return False

    def _say(self, row: Any, result: TaskResult) -> None:
        rows = self.store.final_rows()
        done = sum(r.status in ("completed", "infeasible", "failed") for r in rows)
        score = f"fitness {result.fitness:.4f}" if result.fitness is not None else result.status
        line = (f"final selection {done}/{len(rows)}: candidate #{row.candidate} (rank "
                f"{row.rank + 1}), seed {row.seed_index + 1}: {score}")
        log.info(line)
        self.driver.progress.console.print(line, markup=False, highlight=False)


def select_final(driver: Any, executor: Any = None) -> None:
    """The driver's step after the search: prune what the retention policy does not keep, then
    plan (or find) and run the final selection, on ``executor`` (the search's), or on one
    started here when the search had nothing left to do (a resume); its words are added to
    the stop reason. Only when the search ended by its budget."""
    stop = driver.stopping or Stop("finished", "evaluations", "evaluation budget reached")
    if driver.stop() or not stop.finished:
        return
    after_tell(driver, at_least=1)
    selection = FinalSelection(driver)
    if selection.due() and executor is not None:
        selection.run(executor)
    elif selection.due():
        executor = make_executor(driver.config.executor, preload=driver.data_spec)
        try:
            selection.run(executor)
        finally:
            if driver.stop():
                executor.abandon()
            executor.close()
    words = selection.words()
    if words and not driver.stop():
        driver.stopping = dataclasses.replace(stop, reason=f"{stop.reason}; {words}")
