"""The rows of the run store and their JSON columns: strict JSON in, Python values out.

Every structured column of ``run.db`` is JSON text (never pickle), written by :func:`dumps` so
that NaN/inf and numpy values of a metric survive as plain strings and numbers.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

from .store_schema import SCHEMA_VERSION, eval_sql

# --- JSON columns -------------------------------------------------------------------------------

def plain(value: Any) -> Any:
    """Strict-JSON-safe copy: non-finite floats become the strings 'nan', 'inf', '-inf' (so a raw
    NaN fitness can be kept in metrics); numpy scalars and arrays become Python values."""
    if isinstance(value, float):
        return value if math.isfinite(value) else repr(value)
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if hasattr(value, "tolist") and not isinstance(value, (str, bytes)):  # numpy scalar / array
        return plain(value.tolist())
    return value


def dumps(value: Any) -> str:
    """Strict JSON of ``value``; the common case (plain finite data: a strategy's state, metrics)
    goes straight to the C encoder, and only what it refuses takes the :func:`plain` walk."""
    try:
        return json.dumps(value, sort_keys=True, allow_nan=False)
    except (TypeError, ValueError):  # NaN/inf, numpy values, keys of mixed types
        return json.dumps(plain(value), sort_keys=True, allow_nan=False)


def loads(text: str | None, default: Any = None) -> Any:
    return default if text is None else json.loads(text)


def finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


# --- rows ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class IndividualRow:
    """One individual and its birth: who its parents were and which edit made it."""

    id: int
    genome: dict
    genome_hash: str | None
    arch_hash: str | None
    seed: int | None
    batch: int
    created_at: float
    parents: tuple[int, ...]
    mutation: str | None
    args: dict
    inherit: bool
    changed: tuple
    inherited: dict | None


@dataclass(frozen=True)
class EvaluationRow:
    """The evaluation state of one individual (``fitness`` is None unless completed and finite)."""

    id: int
    status: str
    attempt: int
    fitness: float | None
    metrics: dict
    error: str | None
    weights: str | None
    started_at: float | None
    finished_at: float | None
    wall_time: float | None
    worker: str | None
    pruned_at: float | None = None  # when the retention policy deleted its weights file

    @property
    def pruned(self) -> bool:
        """Whether its weights were pruned by the run's retention policy (``weights`` is then
        None: they existed and were deleted on purpose, see :mod:`evograph.runs.retention`)."""
        return self.pruned_at is not None


@dataclass(frozen=True)
class FinalRow:
    """One final-selection evaluation: ``candidate`` (an individual, ``rank`` among the distinct
    architectures by validation fitness) retrained from its genes with seed ``seed`` (the
    ``seed_index``-th of the final seeds). Statuses and fitness as in :class:`EvaluationRow`."""

    id: int
    candidate: int
    rank: int
    seed_index: int
    seed: int
    status: str
    attempt: int
    fitness: float | None
    metrics: dict
    error: str | None
    weights: str | None
    started_at: float | None
    finished_at: float | None
    wall_time: float | None
    worker: str | None


IND_SQL = ("SELECT i.id, i.genome, i.genome_hash, i.arch_hash, i.seed, i.batch, i.created_at, "
            "b.parents, b.mutation, b.args, b.inherit, b.changed, b.inherited "
            "FROM individuals i JOIN births b ON b.child = i.id")
EVAL_SQL = eval_sql(SCHEMA_VERSION)
FINAL_SQL = ("SELECT id, candidate, rank, seed_index, seed, status, attempt, fitness, metrics, "
             "error, weights, started_at, finished_at, wall_time, worker FROM final_evaluations")


def individual_row(r: tuple) -> IndividualRow:
    return IndividualRow(r[0], json.loads(r[1]), r[2], r[3], r[4], r[5], r[6],
                         tuple(json.loads(r[7])), r[8], json.loads(r[9]), bool(r[10]),
                         tuple(json.loads(r[11])), loads(r[12]))


def evaluation_row(r: tuple) -> EvaluationRow:
    return EvaluationRow(r[0], r[1], r[2], r[3], json.loads(r[4]), *r[5:])


def final_row(r: tuple) -> FinalRow:
    return FinalRow(*r[:8], json.loads(r[8]), *r[9:])
