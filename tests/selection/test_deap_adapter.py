"""The DEAP adapter: our Generator drives DEAP, the global ``random`` is left as it was, no
``deap.creator``, and non-finite fitness is refused before DEAP can rank it."""

from __future__ import annotations

import ast
import math
import pickle
import random
from pathlib import Path

import numpy as np
import pytest
from evograph.selection import deap_adapter as deap

SELECTION = Path(__file__).resolve().parents[2] / "selection"
ENTRIES = [(i, f) for i, f in enumerate([0.3, 0.9, 0.1, 0.5, 0.9, 0.2, 0.7])]


def test_seeded_random_restores_the_global_state_even_on_error():
    random.seed(5)
    state = random.getstate()
    with pytest.raises(RuntimeError), deap.seeded_random(np.random.default_rng(0)):
        random.random()
        raise RuntimeError
    assert random.getstate() == state


def test_our_generator_drives_deap_not_the_global_seed():
    picks = []
    for global_seed in (1, 2):
        random.seed(global_seed)
        picks.append(deap.sel_tournament(ENTRIES, 20, 3, np.random.default_rng(42)))
    assert picks[0] == picks[1]
    assert picks[0] != deap.sel_tournament(ENTRIES, 20, 3, np.random.default_rng(43))


def test_tournament_winners_are_the_best_of_their_sample():
    picks = deap.sel_tournament(ENTRIES, 200, len(ENTRIES) * 4, np.random.default_rng(0))
    assert {dict(ENTRIES)[k] for k in picks} == {0.9}


def test_best_and_worst_keep_input_order_on_ties():
    assert deap.sel_best(ENTRIES, 3) == [1, 4, 6]
    assert deap.sel_worst(ENTRIES, 2) == [2, 5]


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_fitness_is_refused(bad):
    with pytest.raises(ValueError, match="non-finite"):
        deap.sel_best(ENTRIES + [(99, bad)], 1)
    with pytest.raises(ValueError, match="non-finite"):
        deap.sel_nsga2([(0, (1.0, 2.0)), (1, (0.5, bad))], 1)


def test_fitness_classes_are_module_level_and_cached():
    assert deap.MaxFitness.weights == (1.0,)
    cls = deap.pareto_fitness_class(3)
    assert cls is deap.pareto_fitness_class(3) and cls.weights == (1.0, -1.0, -1.0)
    assert getattr(deap, cls.__name__) is cls
    assert pickle.loads(pickle.dumps(cls)) is cls
    assert deap.pareto_fitness_class(1) is deap.MaxFitness


def test_no_deap_creator_anywhere_in_selection():
    for path in SELECTION.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and "deap" in node.module:
                assert "creator" not in [a.name for a in node.names], path
                assert "creator" not in node.module, path
            if isinstance(node, ast.Import):
                assert all("creator" not in a.name for a in node.names), path


# (fitness to maximise, cost to minimise)
POINTS = {0: (0.9, 10.0), 1: (0.8, 5.0), 2: (0.7, 6.0), 3: (0.5, 1.0), 4: (0.9, 12.0),
          5: (0.6, 5.0), 6: (0.4, 20.0)}


def brute_force_front(points: dict) -> set:
    def dominates(a, b):
        return a[0] >= b[0] and a[1] <= b[1] and a != b
    return {k for k, v in points.items() if not any(dominates(w, v) for w in points.values())}


def test_first_front_matches_brute_force():
    assert set(deap.first_front(list(POINTS.items()))) == brute_force_front(POINTS) == {0, 1, 3}


def test_nsga2_keeps_whole_fronts_first():
    kept = deap.sel_nsga2(list(POINTS.items()), 4)
    assert {0, 1, 3} <= set(kept) and len(kept) == 4


def test_rank_and_crowding_and_crowded_tournament():
    ranked = deap.rank_and_crowding(list(POINTS.items()))
    assert {k for k, (rank, _) in ranked.items() if rank == 0} == {0, 1, 3}
    assert math.isinf(ranked[0][1]) and math.isinf(ranked[3][1])  # front boundaries
    picks = deap.crowded_tournament(ranked, 300, np.random.default_rng(0))
    counts = {k: picks.count(k) for k in POINTS}
    assert counts[6] == 0  # dominated by every other point: it loses every pair
    assert counts[0] > counts[6] and counts[3] > counts[2]
