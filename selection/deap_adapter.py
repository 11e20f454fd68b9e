"""A thin adapter over DEAP's selection tools (``deap.tools``), the only module that touches DEAP.

Why an adapter (docs/design.md, principles 2 and 4):

* DEAP draws from Python's *global* ``random``. Every call here runs inside :func:`seeded_random`,
  which seeds ``random`` from *our* ``numpy.random.Generator`` and restores the global state
  afterwards, so the run seed drives DEAP and nobody else's randomness is disturbed.
* DEAP's ``creator`` builds classes at run time, which breaks spawn workers, Ray and Dask. The
  Fitness classes here are ordinary module-level subclasses of ``deap.base.Fitness``.
* DEAP compares fitnesses as tuples, where NaN makes every comparison False, so a NaN can end up
  "best". Every entry point refuses non-finite values (strategies filter them out first).

Callers pass plain ``(key, value)`` pairs and get keys back; DEAP individuals never leave here.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Hashable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
from deap import base, tools
from deap.tools import emo  # assignCrowdingDist is not re-exported by deap.tools

Entry = tuple[Hashable, float]                  # (key, fitness to maximise)
MultiEntry = tuple[Hashable, Sequence[float]]   # (key, (fitness to maximise, *objectives to min))


class MaxFitness(base.Fitness):
    """A single fitness to maximise (accuracy, the fraction of ones of the toy problem, ...)."""

    weights = (1.0,)


_PARETO_CLASSES: dict[int, type] = {}


def pareto_fitness_class(n_values: int) -> type:
    """The Fitness class for ``(fitness to maximise, *n_values-1 objectives to minimise)``.

    Built once per size with ``type`` (not ``deap.creator``) and bound to this module under its
    own name, so it pickles like any module-level class once created."""
    if n_values < 1:
        raise ValueError(f"a Pareto fitness needs at least one value, got {n_values}")
    if n_values == 1:
        return MaxFitness
    if n_values not in _PARETO_CLASSES:
        name = f"ParetoFitness{n_values}"
        cls = type(name, (base.Fitness,), {"weights": (1.0,) + (-1.0,) * (n_values - 1),
                                           "__module__": __name__, "__qualname__": name})
        globals()[name] = cls
        _PARETO_CLASSES[n_values] = cls
    return _PARETO_CLASSES[n_values]


class Individual:
    """What DEAP's tools need from an individual: a ``fitness`` attribute (and our key)."""

    __slots__ = ("fitness", "key")

    def __init__(self, key: Hashable, fitness: base.Fitness):
        self.key = key
        self.fitness = fitness


@contextmanager
def seeded_random(rng: np.random.Generator | None) -> Iterator[None]:
    """Run a block with Python's global ``random`` seeded from ``rng``; restore it afterwards.

    With ``rng`` None the block must not draw (deterministic DEAP tools); the global state is
    still saved and restored, so nothing leaks either way."""
    saved = random.getstate()
    try:
        if rng is not None:
            random.seed(int(rng.integers(2**63)))
        yield
    finally:
        random.setstate(saved)


def deap_call(fn: Callable[..., Any], *args: Any, rng: np.random.Generator | None = None,
              **kwargs: Any) -> Any:
    """Call a DEAP function under :func:`seeded_random` (the one way this module calls DEAP)."""
    with seeded_random(rng):
        return fn(*args, **kwargs)


def _require_finite(values: Sequence[float], key: Hashable) -> tuple[float, ...]:
    out = tuple(float(v) for v in values)
    if not all(math.isfinite(v) for v in out):
        raise ValueError(f"individual {key!r} has non-finite fitness {out}: filter it out "
                         "before selection (DEAP would rank NaN arbitrarily)")
    return out


def single(entries: Sequence[Entry]) -> list[Individual]:
    """DEAP individuals for single-objective entries (all values must be finite)."""
    return [Individual(key, MaxFitness(_require_finite((value,), key))) for key, value in entries]


def multi(entries: Sequence[MultiEntry]) -> list[Individual]:
    """DEAP individuals for ``(fitness, *objectives)`` entries, all of one length."""
    if not entries:
        return []
    sizes = {len(values) for _, values in entries}
    if len(sizes) != 1:
        raise ValueError(f"entries mix objective counts {sorted(sizes)}")
    cls = pareto_fitness_class(sizes.pop())
    return [Individual(key, cls(_require_finite(values, key))) for key, values in entries]


def _keys(individuals: Sequence[Individual]) -> list[Hashable]:
    return [ind.key for ind in individuals]


# -- single objective ----------------------------------------------------------------------------
def sel_best(entries: Sequence[Entry], k: int) -> list[Hashable]:
    """The ``k`` best keys, best first; ties keep input order (``tools.selBest``, stable sort)."""
    return _keys(deap_call(tools.selBest, single(entries), k))


def sel_worst(entries: Sequence[Entry], k: int) -> list[Hashable]:
    """The ``k`` worst keys, worst first; ties keep input order (``tools.selWorst``)."""
    return _keys(deap_call(tools.selWorst, single(entries), k))


def sel_tournament(entries: Sequence[Entry], k: int, tournsize: int,
                   rng: np.random.Generator) -> list[Hashable]:
    """``k`` winners of tournaments of ``tournsize`` entries drawn uniformly with replacement
    (``tools.selTournament``) — the sample-then-take-the-best step of regularized evolution."""
    if not entries:
        raise ValueError("tournament over an empty population")
    return _keys(deap_call(tools.selTournament, single(entries), k, tournsize, rng=rng))


# -- multi objective (Deb et al. 2002, NSGA-II) --------------------------------------------------
def sel_nsga2(entries: Sequence[MultiEntry], k: int) -> list[Hashable]:
    """NSGA-II environmental selection (``tools.selNSGA2``): whole fronts in rank order, the last
    one cut by crowding distance. Deterministic; ``k`` is capped at ``len(entries)``."""
    return _keys(deap_call(tools.selNSGA2, multi(entries), min(k, len(entries))))


def first_front(entries: Sequence[MultiEntry]) -> list[Hashable]:
    """Keys of the non-dominated entries (``tools.sortNondominated``, first front only)."""
    if not entries:
        return []
    inds = multi(entries)
    fronts = deap_call(tools.sortNondominated, inds, len(inds), first_front_only=True)
    return _keys(fronts[0])


def rank_and_crowding(entries: Sequence[MultiEntry]) -> dict[Hashable, tuple[int, float]]:
    """``key -> (front rank, crowding distance)`` for the crowded-comparison operator: fronts
    from ``tools.sortNondominated``, distances from ``emo.assignCrowdingDist`` (inf at the
    boundaries of each front)."""
    inds = multi(entries)
    if not inds:
        return {}
    fronts = deap_call(tools.sortNondominated, inds, len(inds))
    out: dict[Hashable, tuple[int, float]] = {}
    for rank, front in enumerate(fronts):
        deap_call(emo.assignCrowdingDist, front)
        for ind in front:
            out[ind.key] = (rank, float(ind.fitness.crowding_dist))
    return out


def crowded_tournament(ranked: dict[Hashable, tuple[int, float]], k: int,
                       rng: np.random.Generator) -> list[Hashable]:
    """``k`` binary tournaments under Deb et al.'s crowded comparison: lower front rank wins,
    then larger crowding distance, then a coin flip.

    DEAP's ``selTournamentDCD`` needs a population size that is a multiple of four; a
    steady-state run has any size, so the tournament is done here on DEAP's ranks and
    distances, drawing from ``rng`` directly."""
    keys = list(ranked)
    if not keys:
        raise ValueError("crowded tournament over an empty population")
    chosen = []
    for _ in range(k):
        if len(keys) == 1:
            chosen.append(keys[0])
            continue
        i, j = (int(x) for x in rng.choice(len(keys), size=2, replace=False))
        (ra, ca), (rb, cb) = ranked[keys[i]], ranked[keys[j]]
        if ra != rb:
            chosen.append(keys[i] if ra < rb else keys[j])
        elif ca != cb:
            chosen.append(keys[i] if ca > cb else keys[j])
        else:
            chosen.append(keys[i] if rng.random() < 0.5 else keys[j])
    return chosen
