"""NaN/inf never reach selection (docs/design.md, reliability): with failed and infeasible results
mixed in at random, every parent has a finite fitness, best() is finite, populations hold only
finite fitnesses and nsga2's Pareto front only finite entries."""

from __future__ import annotations

import math

import numpy as np
from evograph.selection import STRATEGIES, Result
from evograph.selection.toy import evolve
from hypothesis import given
from hypothesis import strategies as st

from .test_strategies import strategy

# Strategies of evograph.selection; meta-learner proposers (the RL controller) register
# themselves too and are tested in tests/meta.
EVOLUTION_STRATEGIES = sorted(name for name, cls in STRATEGIES.items()
                              if cls.__module__.startswith("evograph.selection"))

BAD_VALUES = [float("nan"), float("inf"), float("-inf"), None]
fitnesses = st.one_of(st.floats(-1e6, 1e6), st.sampled_from(BAD_VALUES))
objectives = st.one_of(st.floats(0, 1e3), st.sampled_from([float("nan"), float("inf")]))


def table_evaluator(values: list, objs: list):
    """Fitness of individual ``id`` is ``values[id % len(values)]``, its objective
    ``objs[id % len(objs)]``."""
    def evaluate(p) -> Result:
        f = values[p.id % len(values)]
        return Result(p.id, f, (objs[p.id % len(objs)],))
    return evaluate


def is_finite(value) -> bool:
    return value is not None and math.isfinite(value)


@given(name=st.sampled_from(EVOLUTION_STRATEGIES),
       values=st.lists(fitnesses, min_size=1, max_size=25),
       objs=st.lists(objectives, min_size=1, max_size=7),
       workers=st.integers(1, 5), seed=st.integers(0, 2**32))
def test_non_finite_results_never_reach_selection(name, values, objs, workers, seed):
    s = strategy(name, seed=seed)
    evaluate = table_evaluator(values, objs)
    results: dict[int, Result] = {}

    def recording(p):
        results[p.id] = evaluate(p)
        return results[p.id]

    proposals = evolve(s, recording, 50, workers, np.random.default_rng(seed))
    feasible = {i for i, r in results.items() if is_finite(r.fitness)
                and (name != "nsga2" or all(is_finite(x) for x in r.objectives))}
    for p in proposals:
        assert set(p.parents) <= feasible, f"{p.id} bred from an infeasible parent"
    best = s.best()
    assert best is None or (math.isfinite(best[1]) and best[0] in feasible)
    if feasible:
        assert best is not None
        assert best[1] == max(results[i].fitness for i in feasible)
    assert all(i in feasible and math.isfinite(f) for i, f in s.population())
    if name == "nsga2":
        for i, f, obj in s.pareto_front():
            assert i in feasible and math.isfinite(f) and all(math.isfinite(x) for x in obj)


@given(values=st.lists(st.sampled_from([0.1, 0.5, float("nan"), float("inf")]), min_size=4,
                       max_size=12))
def test_nan_is_never_the_best_even_against_poor_scores(values):
    """DEAP compares fitness tuples, where NaN makes comparisons False (it could win); the
    strategies filter such results before any DEAP call."""
    for name in EVOLUTION_STRATEGIES:
        s = strategy(name)
        evolve(s, table_evaluator(values, [1.0]), 30, 2)
        best = s.best()
        assert best is None or best[1] in (0.1, 0.5)
