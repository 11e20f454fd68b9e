"""Contract of every registered strategy (``evograph.selection.STRATEGIES``, meta-learner
proposers such as the RL controller included), through the proposer protocol on real genomes.

On a small ``mlp`` space with a cheap deterministic fitness (total width plus noise drawn from
the proposal's own seed; every fourth individual fails — None, NaN or inf, as a crashed or
infeasible evaluation reports), with three proposals in flight and results told out of order:
proposals are valid genomes of the space in birth order with derived seeds; only feasible
individuals become parents, ``best()`` and ``population()``; asking is a function of the seed; and
the state round-trips mid-run — ``state_dict()`` through JSON into a fresh strategy built with
another seed, after which both hand out the same proposals, value for value, given the same
results, and end in the same state.

Parametrized over the live registry at collection time: a strategy registered later is tested by
being registered (with ``population_size=6`` when it takes one, else its defaults).
``tests/selection/test_strategies.py`` and ``test_genome_strategies.py`` go deeper into the
evolution strategies on toy bit strings and on genomes; ``tests/meta/rl`` into the controller.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from evograph.errors import ConfigError
from evograph.genome import get_space
from evograph.selection import STRATEGIES, Result, Variation, derive_seed, make_strategy
from evograph.selection.toy import evolve

from tests.contracts import entries

NAMES = entries(STRATEGIES)
SPACE = get_space("mlp", unit_choices=(8, 16, 32), max_layers=2)
SHAPE, CLASSES = (1, 8, 8), 10
FAILED = (None, float("nan"), float("inf"))


def make(name: str, seed: int):
    """The strategy on SPACE with a small population when it takes one (so breeding starts
    within a few results), else with its defaults."""
    variation = Variation.for_space(SPACE, SHAPE, CLASSES)
    try:
        return make_strategy(name, variation, seed, population_size=6)
    except ConfigError:
        return make_strategy(name, variation, seed)


def evaluate(p) -> Result:
    """Deterministic stand-in for training: total width + noise from the proposal's seed;
    every fourth id fails. One objective to minimise (edges) for multi-objective strategies."""
    objectives = (float(len(p.genome.edges)),)
    if p.id % 4 == 3:
        return Result(p.id, FAILED[(p.id // 4) % len(FAILED)], objectives)
    width = sum(n.get("units", 0) for n in p.genome.nodes)
    noise = float(np.random.default_rng(p.seed).normal(0.0, 0.01))
    return Result(p.id, width / 100 + noise, objectives)


def feasible(result: Result) -> bool:
    return result.fitness is not None and math.isfinite(result.fitness)


def trace(proposals) -> list[tuple]:
    """What must replay value for value: ids, genomes, parents, seeds, edits."""
    return [(p.id, p.genome.hash, p.parents, p.seed, p.edit.to_dict() if p.edit else None)
            for p in proposals]


def steps(strategy, flight, count: int, order: np.random.Generator) -> list:
    """``count`` times: tell the result of an in-flight proposal drawn by ``order`` (results
    arrive out of order), ask one replacement. Returns the new proposals."""
    asked = []
    for _ in range(count):
        strategy.tell([evaluate(flight.pop(int(order.integers(len(flight)))))])
        new = strategy.ask(1)
        flight += new
        asked += new
    return asked


def run(name: str, seed: int = 3, evaluations: int = 30):
    strategy = make(name, seed)
    results = {}

    def recording(p):
        results[p.id] = evaluate(p)
        return results[p.id]

    proposals = evolve(strategy, recording, evaluations, workers=3,
                       order=np.random.default_rng(seed))
    return strategy, proposals, results


@pytest.mark.parametrize("name", NAMES)
def test_proposals_are_valid_genomes_in_birth_order(name):
    strategy, proposals, _ = run(name, seed=11)
    assert [p.id for p in proposals] == list(range(len(proposals)))
    for p in proposals:
        assert SPACE.is_valid(p.genome), f"{name} proposed {p.genome.hash}, outside the space"
        assert tuple(p.genome.input_node.get("shape")) == SHAPE
        assert p.genome.output_node.get("num_classes") == CLASSES
        assert p.seed == derive_seed(11, p.id)
    assert strategy.in_flight() == []


@pytest.mark.parametrize("name", NAMES)
def test_failed_and_infeasible_results_never_reach_selection(name):
    strategy, proposals, results = run(name)
    ok = {i for i, r in results.items() if feasible(r)}
    assert len(ok) < len(results), "the run told no failed result"
    for p in proposals:
        assert set(p.parents) <= ok, f"{p.id} was bred from a failed individual"
        assert all(parent < p.id for parent in p.parents)
    best = strategy.best()
    assert best is not None and best[0] in ok
    assert best[1] == max(results[i].fitness for i in ok)
    population = strategy.population()
    assert population and all(i in ok and math.isfinite(f) for i, f in population)


@pytest.mark.parametrize("name", NAMES)
def test_asking_is_a_function_of_the_seed(name):
    a, first, _ = run(name)
    b, again, _ = run(name)
    assert trace(again) == trace(first)
    assert b.best() == a.best() and b.population() == a.population()


@pytest.mark.parametrize("cut", [2, 9, 20])
@pytest.mark.parametrize("name", NAMES)
def test_state_round_trips_mid_run(name, cut):
    """Stop after ``cut`` results (three proposals in flight), JSON the state, load it into a
    fresh strategy built with another seed; given the same results both continue alike."""
    a = make(name, seed=5)
    flight = a.ask(3)
    steps(a, flight, cut, np.random.default_rng(1))
    state = a.state_dict()
    assert json.loads(json.dumps(state)) == state
    b = make(name, seed=999)
    b.load_state_dict(json.loads(json.dumps(state)))
    assert trace(b.in_flight()) == trace(a.in_flight()) == trace(sorted(flight, key=lambda p: p.id))
    assert b.best() == a.best() and b.population() == a.population()
    tails = [trace(steps(s, list(flight), 12, np.random.default_rng(2))) for s in (a, b)]
    assert tails[0] == tails[1]
    assert b.best() == a.best() and b.population() == a.population()
    assert json.dumps(b.state_dict(), sort_keys=True) == json.dumps(a.state_dict(), sort_keys=True)
