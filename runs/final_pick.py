"""The final selection's outcome, read from the store: each candidate's mean ± spread over its
retrainings, and the pick (the best mean). Light to import (numpy and the store only): ``status``,
``best``, the report and export read it; :mod:`evograph.runs.final` makes it.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from .store import RunStore


@dataclasses.dataclass(frozen=True)
class CandidateScore:
    """One candidate's retrainings: mean ± standard deviation (ddof 1; 0 for one seed) of the
    validation fitness and, where the fitness reports it, of the test accuracy, over the ``n``
    seeds that completed (of ``planned``)."""

    id: int
    rank: int                      # 0: the best distinct architecture of the search
    search_fitness: float | None   # its score in the search (one seed, maybe inherited weights)
    mean: float
    std: float
    n: int
    planned: int
    test_mean: float | None
    test_std: float | None
    weights: tuple[str, ...]       # retrained weights files (relative to the run directory)
    seeds: tuple[int, ...]         # the seeds of those files, in the same order
    fitnesses: tuple[float, ...]   # each file's validation fitness


@dataclasses.dataclass(frozen=True)
class FinalPick:
    """The final selection's outcome: the pick (``id``, its :class:`CandidateScore`), how many
    candidates were re-evaluated, and every candidate's score (best mean first)."""

    id: int
    score: CandidateScore
    candidates: int
    seeds: int
    scores: tuple[CandidateScore, ...]

    @property
    def mean(self) -> float:
        return self.score.mean

    @property
    def std(self) -> float:
        return self.score.std

    @property
    def n(self) -> int:
        """Retrainings of the pick that completed (its mean is over these)."""
        return self.score.n

    @property
    def weights(self) -> tuple[str, ...]:
        """The pick's retrained weights files, relative to the run directory, in seed order."""
        return self.score.weights

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "mean": self.mean, "std": self.std, "n": self.n,
                "candidates": self.candidates, "seeds": self.seeds,
                "test_mean": self.score.test_mean, "test_std": self.score.test_std,
                "weights": list(self.weights),
                "scores": [dataclasses.asdict(s) for s in self.scores]}


def _mean_std(values: list[float]) -> tuple[float, float]:
    array = np.asarray(values, float)
    return float(array.mean()), float(array.std(ddof=1)) if len(array) > 1 else 0.0


def candidate_scores(store: RunStore) -> list[CandidateScore]:
    """Every candidate with at least one completed retraining, best mean first (ties: the
    better rank in the search)."""
    by_candidate: dict[int, list] = {}
    for row in store.final_rows():
        by_candidate.setdefault(row.candidate, []).append(row)
    scores = []
    for candidate, rows in by_candidate.items():
        done = [r for r in rows if r.status == "completed" and r.fitness is not None]
        if not done:
            continue
        mean, std = _mean_std([r.fitness for r in done])
        tests = [r.metrics["test_accuracy"] for r in done
                 if isinstance(r.metrics.get("test_accuracy"), (int, float))]
        test_mean, test_std = _mean_std(tests) if len(tests) == len(done) else (None, None)
        kept = [r for r in done if r.weights]
        scores.append(CandidateScore(
            candidate, rows[0].rank, store.evaluation(candidate).fitness, mean, std, len(done),
            len(rows), test_mean, test_std, tuple(r.weights for r in kept),
            tuple(r.seed for r in kept), tuple(r.fitness for r in kept)))
    return sorted(scores, key=lambda s: (-s.mean, s.rank))


def final_pick(store: RunStore) -> FinalPick | None:
    """The final selection's pick once every planned evaluation has finished; None while it
    runs, or in a run without one (then ``store.best(1)`` is the run's answer)."""
    rows = store.final_rows()
    if not rows or any(r.status in ("pending", "running") for r in rows):
        return None
    scores = candidate_scores(store)
    if not scores:
        return None
    return FinalPick(scores[0].id, scores[0], len({r.candidate for r in rows}),
                     len({r.seed_index for r in rows}), tuple(scores))


def final_summary(store: RunStore) -> dict[str, Any] | None:
    """The final selection for ``status`` and ``best`` (JSON-ready): its plan, its progress
    and, once done, the pick; None in a run that has none (off, or the search not over)."""
    rows = store.final_rows()
    if not rows:
        skipped = store.events("final skipped")
        return {"state": "skipped", "reason": skipped[-1]["message"]} if skipped else None
    done = sum(r.status not in ("pending", "running") for r in rows)
    pick = final_pick(store)
    return {"state": "done" if pick else "running" if done < len(rows) else "failed",
            "candidates": len({r.candidate for r in rows}),
            "seeds": len({r.seed_index for r in rows}), "evaluations": len(rows), "done": done,
            "pick": pick.to_dict() if pick else None}


def final_line(summary: dict[str, Any]) -> str:
    """The final selection in one line, e.g. ``#12: val 0.9889 ± 0.0030 over 3 seeds (test
    0.9833 ± 0.0040); the best mean of 5 candidates x 3 seeds retrained from their genes``."""
    if summary["state"] == "skipped":
        return summary["reason"]
    plan = f"{summary['candidates']} candidates x {summary['seeds']} seeds"
    pick = summary["pick"]
    if pick is None:
        what = "running" if summary["state"] == "running" else "every retraining failed"
        return f"{what}: {summary['done']} of {summary['evaluations']} done ({plan})"
    test = (f" (test {pick['test_mean']:.4f} ± {pick['test_std']:.4f})"
            if pick["test_mean"] is not None else "")
    return (f"#{pick['id']}: val {pick['mean']:.4f} ± {pick['std']:.4f} over {pick['n']} "
            f"seeds{test}; the best mean of {plan} retrained from their genes")
