"""What each strategy does, checked on hand-made fitness values (the papers' rules)."""

from __future__ import annotations

import numpy as np
import pytest
from evograph.selection import Result, make_strategy
from evograph.selection.toy import bitstring_variation, evolve, noisy_ones, ones_fraction


def tell_all(s, proposals, fitness):
    s.tell([Result(p.id, fitness(p)) for p in proposals])


def by_id(value_of_id):
    return lambda p: value_of_id(p.id)


# -- tournament (Real et al. 2017) ---------------------------------------------------------------
def test_tournament_kills_the_worse_and_mutates_the_better():
    s = make_strategy("tournament", bitstring_variation(16), 0, population_size=6)
    tell_all(s, s.ask(6), by_id(float))          # fitness = id
    for _ in range(4):
        before = dict(s.population())
        (child,) = s.ask(1)
        after = dict(s.population())
        (killed,) = set(before) - set(after)
        (parent,) = child.parents
        assert parent in after and before[parent] > before[killed]
        assert child.edit.mutation == "flip-bit"


def test_tournament_population_stays_bounded():
    s = make_strategy("tournament", bitstring_variation(16), 0, population_size=5)
    evolve(s, noisy_ones(0.0), 80, workers=3)
    assert 1 <= len(s.population()) <= 5


# -- aging / regularized evolution (Real et al. 2019) --------------------------------------------
def test_aging_removes_the_oldest():
    s = make_strategy("aging", bitstring_variation(16), 0, population_size=4, sample_size=2)
    tell_all(s, s.ask(4), by_id(lambda i: [0.9, 0.1, 0.5, 0.3][i]))
    (child,) = s.ask(1)
    s.tell([Result(child.id, 0.0)])               # even a poor child pushes out the oldest
    assert sorted(i for i, _ in s.population()) == [1, 2, 3, 4]


def test_non_aging_control_removes_the_worst():
    s = make_strategy("aging", bitstring_variation(16), 0, population_size=4, sample_size=2,
                      aging=False)
    tell_all(s, s.ask(4), by_id(lambda i: [0.9, 0.1, 0.5, 0.3][i]))
    (child,) = s.ask(1)
    s.tell([Result(child.id, 0.4)])
    assert sorted(i for i, _ in s.population()) == [0, 2, 3, 4]


def test_aging_parent_is_the_best_of_its_sample():
    """S = P draws with replacement: the best is the parent unless never drawn ((4/5)^5 = 33%);
    the worst only when all five draws hit it ((1/5)^5)."""
    s = make_strategy("aging", bitstring_variation(16), 3, population_size=5, sample_size=5)
    tell_all(s, s.ask(5), by_id(float))
    parents = [p.parents[0] for p in s.ask(300)]
    assert parents.count(4) > 150 and parents.count(0) <= 3


# -- top-k ---------------------------------------------------------------------------------------
def test_topk_keeps_the_top_k_plus_random_survivors():
    s = make_strategy("topk", bitstring_variation(16, crossover=True), 0, population_size=10,
                      k=3, random_survivors=2)
    gen0 = s.ask(10)
    tell_all(s, gen0, by_id(float))
    survivors = [i for i, _ in s.population()]
    assert survivors[:3] == [9, 8, 7] and len(survivors) == 5
    assert set(survivors[3:]) <= set(range(7))
    gen1 = s.ask(5)
    assert all(set(p.parents) <= set(survivors) for p in gen1)
    assert any(len(p.parents) == 2 for p in s.ask(20)), "crossover is used when available"


def test_topk_pre_breeds_from_the_best_known_while_a_generation_is_open():
    s = make_strategy("topk", bitstring_variation(16), 0, population_size=8, k=2)
    gen0 = s.ask(8)
    tell_all(s, gen0[:3], by_id(lambda i: [0.2, 0.9, 0.5][i]))   # five still in flight
    early = s.ask(4)
    assert all(set(p.parents) <= {1, 2} for p in early)


def test_topk_without_crossover_mutates_only():
    s = make_strategy("topk", bitstring_variation(16), 0, population_size=8, crossover_prob=1.0)
    proposals = evolve(s, noisy_ones(0.0), 40, workers=2)
    assert all(len(p.parents) <= 1 for p in proposals)


# -- NSGA-II (Deb et al. 2002) -------------------------------------------------------------------
def test_nsga2_front_is_the_non_dominated_set_of_everything_told():
    s = make_strategy("nsga2", bitstring_variation(16, crossover=True), 0, population_size=6)
    told = {}

    def evaluate(p):
        told[p.id] = (ones_fraction(p.genome), float(p.genome[:4].count("1")))
        return Result(p.id, told[p.id][0], (told[p.id][1],))

    evolve(s, evaluate, 60, workers=3, order=np.random.default_rng(0))

    def dominated(v):
        return any(w[0] >= v[0] and w[1] <= v[1] and w != v for w in told.values())

    expected = {i for i, v in told.items() if not dominated(v)}
    assert {i for i, _, _ in s.pareto_front()} == expected
    assert len(s.population()) <= 6 + 6


def test_nsga2_refuses_a_change_in_the_number_of_objectives():
    s = make_strategy("nsga2", bitstring_variation(16), 0)
    a, b = s.ask(2)
    s.tell([Result(a.id, 0.5, (1.0,))])
    with pytest.raises(ValueError, match="objectives"):
        s.tell([Result(b.id, 0.5, (1.0, 2.0))])


# -- random search -------------------------------------------------------------------------------
def test_random_search_samples_and_never_breeds():
    s = make_strategy("random", bitstring_variation(16, initial="zeros"), 0, population_size=3)
    proposals = evolve(s, noisy_ones(0.0), 30, workers=2)
    assert all(not p.parents and p.edit is None for p in proposals)
    assert len({p.genome for p in proposals}) > 20
    assert sorted(f for _, f in s.population()) == sorted(
        ones_fraction(p.genome) for p in proposals)[-3:]


# -- toy problem: selection must beat random search -----------------------------------------------
def test_regularized_evolution_beats_random_search_on_the_toy_problem():
    """Real et al. 2019's toy: 32-bit strings, fraction of ones; 400 noise-free evaluations."""
    best = {}
    for name, params in [("aging", {"population_size": 20, "sample_size": 5}),
                         ("random", {})]:
        s = make_strategy(name, bitstring_variation(32), 0, **params)
        proposals = evolve(s, noisy_ones(0.0), 400, workers=2)
        best[name] = max(ones_fraction(p.genome) for p in proposals)
    assert best["aging"] > best["random"]
