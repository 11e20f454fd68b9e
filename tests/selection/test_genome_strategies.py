"""Every strategy on real network genomes (``lse-conv`` and ``mlp`` spaces, real mutations and
crossover): valid children, trivial starts for Real et al.'s space, replay and JSON round trip."""

from __future__ import annotations

import json

import numpy as np
import pytest
from evograph.genome.space import get_space
from evograph.selection import STRATEGIES, Result, Variation, make_strategy
from evograph.selection.toy import evolve

from .test_strategies import PARAMS

# Strategies of evograph.selection; meta-learner proposers (the RL controller) register
# themselves too and are tested in tests/meta.
EVOLUTION_STRATEGIES = sorted(name for name, cls in STRATEGIES.items()
                              if cls.__module__.startswith("evograph.selection"))


@pytest.fixture(params=["lse-conv", "mlp"])
def space(request):
    return get_space(request.param)


def evaluate(p) -> Result:
    """A deterministic stand-in for training: prefers deeper genomes, seeded noise; the
    number of edges as an objective to minimise."""
    noise = np.random.default_rng(p.seed).normal(0.0, 0.1)
    return Result(p.id, len(p.genome.nodes) + float(noise), (float(len(p.genome.edges)),))


def trace(proposals):
    return [(p.id, p.genome.hash, p.parents, p.seed, p.edit.describe() if p.edit else None)
            for p in proposals]


@pytest.mark.parametrize("name", EVOLUTION_STRATEGIES)
def test_strategies_evolve_valid_genomes_and_replay(space, name):
    variation = Variation.for_space(space, (1, 8, 8), 10)
    a = make_strategy(name, variation, 3, **PARAMS[name])
    proposals = evolve(a, evaluate, 30, workers=3, order=np.random.default_rng(0))
    assert all(space.is_valid(p.genome) for p in proposals)
    if name != "random":
        initial = [p for p in proposals if not p.parents]
        assert len(initial) >= PARAMS[name]["population_size"]
        assert any(p.parents for p in proposals)
        if space.name == "lse-conv":  # Real et al. start from trivial networks
            assert all(len(p.genome.nodes) == 2 for p in initial)
    b = make_strategy(name, variation, 3, **PARAMS[name])
    assert trace(evolve(b, evaluate, 30, workers=3, order=np.random.default_rng(0))) \
        == trace(proposals)


@pytest.mark.parametrize("name", EVOLUTION_STRATEGIES)
def test_genome_state_round_trip_with_proposals_in_flight(space, name):
    variation = Variation.for_space(space, (1, 8, 8), 10)
    a = make_strategy(name, variation, 5, **PARAMS[name])
    flight = a.ask(3)
    for _ in range(15):
        a.tell([evaluate(flight.pop(0))])
        flight += a.ask(1)
    b = make_strategy(name, variation, 0, **PARAMS[name])
    b.load_state_dict(json.loads(json.dumps(a.state_dict())))
    assert trace(b.in_flight()) == trace(a.in_flight())
    outs = []
    for s in (a, b):
        rest, out = list(flight), []
        for _ in range(10):
            s.tell([evaluate(rest.pop(0))])
            out += s.ask(1)
            rest += out[-1:]
        outs.append(trace(out))
    assert outs[0] == outs[1]
