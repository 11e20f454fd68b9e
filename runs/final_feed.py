"""Which final evaluation to start next, so that a time budget is spent on as many candidates
as fit in it, and none is started that cannot finish.

A candidate is admitted whole (all its seeds) or not at all: its mean over fewer seeds would not
be comparable with the others'. Candidates are admitted in rank order, each when a worker frees
up for its first seed, if the list schedule of the work in flight plus its seeds (:func:`makespan`)
ends within the time left. The time of a retraining is estimated from the candidate's own
evaluation in the search: before any retraining has finished, its training time scaled by the
ratio of epochs the final fitness changes (:func:`search_estimate`, pessimistic, since the
search's short trainings are dominated by the time outside training); after, by the measured
ratio of retraining to search time (the median over the finished retrainings).

The candidates that do not fit are dropped from the plan in one transaction with a ``final
trimmed`` event that says why (:meth:`~evograph.runs.store_final.StoreFinal.drop_final_rows`);
without a time budget every planned candidate runs.
"""

from __future__ import annotations

import heapq
import math
import time
from collections.abc import Callable

import numpy as np

from .store import RunStore
from .store_rows import EvaluationRow


def search_estimate(row: EvaluationRow, scale: float) -> float:
    """A retraining's seconds from the candidate's search evaluation: the time outside training
    as it was, the training ``scale`` times longer (the whole wall time when the training time
    was not recorded)."""
    wall = row.wall_time or 0.0
    train = row.metrics.get("train_time")
    if not isinstance(train, (int, float)) or not 0 <= train <= wall:
        return wall * scale
    return wall - train + train * scale


def makespan(busy: list[float], tasks: int, each: float, slots: int) -> float:
    """Seconds until ``tasks`` more tasks of ``each`` seconds have finished on ``slots`` workers
    that are busy for ``busy`` more seconds each (the idle ones for 0), each task started on the
    first worker free (list scheduling, as the executors dispatch)."""
    free = list(busy) + [0.0] * max(0, slots - len(busy))
    heapq.heapify(free)
    for _ in range(tasks):
        heapq.heappush(free, heapq.heappop(free) + each)
    return max(free, default=0.0)


class FinalFeed:
    """Hands out the ids of final rows to start, in plan order (see the module docstring).

    ``todo``: the unfinished rows' ids in plan order; ``seconds_left``: the time budget left
    (``math.inf`` without one); ``scale``: the epochs ratio of the first estimate."""

    def __init__(self, store: RunStore, todo: list[int], slots: int,
                 seconds_left: Callable[[], float], scale: float):
        rows = {r.id: r for r in store.final_rows()}
        self.store, self.slots, self.seconds_left, self.scale = store, slots, seconds_left, scale
        self.todo = [rows[i] for i in todo]
        # candidates with a retraining started in this session or an earlier one
        self.admitted = {r.candidate for r in rows.values() if r.attempt > 0}
        self.search = {c: store.evaluation(c) for c in {r.candidate for r in rows.values()}}

    def next(self) -> list[int]:
        """The next row to start, as a list: empty when none is left, or when the rest does not
        fit (then it is dropped from the plan). The caller marks it running before asking
        again: the rows running are the work in flight."""
        if not self.todo:
            return []
        row = self.todo[0]
        if row.candidate not in self.admitted and not self._fits(row.candidate):
            self._drop_rest()
            return []
        self.admitted.add(row.candidate)
        self.todo.pop(0)
        return [row.id]

    def estimate(self, candidate: int) -> float:
        """Seconds of one retraining of ``candidate`` (see the module docstring)."""
        search = self.search[candidate]
        ratios = [r.wall_time / self.search[r.candidate].wall_time
                  for r in self.store.final_rows()
                  if r.status == "completed" and r.wall_time
                  and self.search[r.candidate].wall_time]
        if ratios and search.wall_time:
            return float(np.median(ratios)) * search.wall_time
        return search_estimate(search, self.scale)

    def _fits(self, candidate: int) -> bool:
        left = self.seconds_left()
        if not math.isfinite(left):
            return True
        now = time.time()
        busy = [max(0.0, self.estimate(r.candidate) - (now - (r.started_at or now)))
                for r in self.store.final_rows() if r.status == "running"]
        seeds = sum(r.candidate == candidate for r in self.todo)
        return makespan(busy, seeds, self.estimate(candidate), self.slots) <= left

    def _drop_rest(self) -> None:
        dropped = self.todo
        self.todo = []
        candidates = sorted({r.candidate for r in dropped})
        self.store.drop_final_rows(
            [r.id for r in dropped],
            f"final selection trimmed: {len(candidates)} candidate(s) would not finish in the "
            f"{max(0.0, self.seconds_left()):.0f} s left",
            {"candidates": candidates, "seconds_left": self.seconds_left()})
