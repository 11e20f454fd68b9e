"""Every registered strategy, through the proposer protocol: replay from a seed, JSON state round
trips mid-run (with proposals in flight), asynchronous asks, untouched global RNGs, clear errors.

The genomes are 32-bit strings (:mod:`evograph.selection.toy`) so the real strategy code runs fast;
``test_genome_strategies.py`` repeats the essentials on real network genomes.
"""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
from evograph.errors import ConfigError
from evograph.selection import STRATEGIES, Result, derive_seed, make_strategy
from evograph.selection.toy import bitstring_variation, evolve, ones_fraction

# Strategies of evograph.selection; meta-learner proposers (the RL controller) register
# themselves too and are tested in tests/meta.
EVOLUTION_STRATEGIES = sorted(name for name, cls in STRATEGIES.items()
                              if cls.__module__.startswith("evograph.selection"))

# Small populations so every phase (initial, breeding, generations closing) happens in 60 evals.
PARAMS = {"tournament": {"population_size": 8}, "aging": {"population_size": 8, "sample_size": 3},
          "topk": {"population_size": 8, "k": 2}, "nsga2": {"population_size": 8},
          "random": {"population_size": 8}}
N_BITS = 32


def variation(crossover: bool = True, initial: str = "random"):
    return bitstring_variation(N_BITS, crossover=crossover, initial=initial)


def strategy(name: str, seed: int = 7, crossover: bool = True, initial: str = "random"):
    return make_strategy(name, variation(crossover, initial), seed, **PARAMS[name])


def evaluate(proposal) -> Result:
    """Deterministic fake fitness: ones + noise from the proposal's seed; one extra objective
    (ones in the first quarter, to minimise) for nsga2."""
    noise = np.random.default_rng(proposal.seed).normal(0.0, 0.05)
    return Result(proposal.id, ones_fraction(proposal.genome) + float(noise),
                  (float(proposal.genome[:8].count("1")),))


def trace(proposals) -> list[tuple]:
    """What must replay identically: genome keys, parents, seeds, edits."""
    return [(p.id, p.genome, p.parents, p.seed, p.edit.describe() if p.edit else None)
            for p in proposals]


def run(s, evaluations: int = 60, workers: int = 3, order_seed: int = 1):
    return evolve(s, evaluate, evaluations, workers, np.random.default_rng(order_seed))


@pytest.fixture(params=EVOLUTION_STRATEGIES)
def name(request):
    return request.param


def test_registry_has_every_strategy():
    assert set(STRATEGIES) >= {"tournament", "aging", "topk", "nsga2", "random"}
    assert set(PARAMS) == set(EVOLUTION_STRATEGIES), "give every registered strategy test parameters"


def test_same_seed_same_proposals(name):
    a, b = run(strategy(name)), run(strategy(name))
    assert trace(a) == trace(b)
    assert trace(run(strategy(name, seed=8))) != trace(a)


def test_ids_are_birth_order_and_seeds_derived(name):
    proposals = run(strategy(name, seed=11))
    assert [p.id for p in proposals] == list(range(len(proposals)))
    assert all(p.seed == derive_seed(11, p.id) for p in proposals)
    earlier = set()
    for p in proposals:
        assert set(p.parents) <= earlier, "a parent is always born before its child"
        earlier.add(p.id)


def test_strategies_breed_after_the_initial_phase(name):
    proposals = run(strategy(name))
    bred = [p for p in proposals if p.parents]
    assert (not bred) if name == "random" else len(bred) > 20


@pytest.mark.parametrize("cut", [0, 5, 23, 41])
def test_state_round_trip_mid_run_continues_identically(name, cut):
    """Stop after ``cut`` tells with proposals in flight, JSON the state, load it into a fresh
    strategy built with another seed, and continue both: the proposals must agree."""
    order = np.random.default_rng(3)
    a = strategy(name)
    flight = a.ask(4)
    for _ in range(cut):
        a.tell([evaluate(flight.pop(int(order.integers(len(flight)))))])
        flight += a.ask(1)
    b = strategy(name, seed=999)
    b.load_state_dict(json.loads(json.dumps(a.state_dict())))
    assert trace(b.in_flight()) == trace(a.in_flight()) == trace(sorted(flight, key=lambda p: p.id))
    assert b.best() == a.best() and b.population() == a.population()
    tails = []
    for s in (a, b):
        rest, order_s, out = list(flight), np.random.default_rng(4), []
        for _ in range(25):
            s.tell([evaluate(rest.pop(int(order_s.integers(len(rest)))))])
            new = s.ask(1)
            rest += new
            out += new
        tails.append((trace(out), s.best(), s.population()))
    assert tails[0] == tails[1]
    assert json.dumps(a.state_dict(), sort_keys=True) == json.dumps(b.state_dict(), sort_keys=True)


@pytest.mark.parametrize("cut", [5, 41])
def test_state_with_genomes_kept_by_id_round_trips(name, cut):
    """With a lookup (what a run's store gives), states carry ids only, load through the lookup
    and continue exactly like states that carry the genomes; without it loading names the
    individual whose genome is missing."""
    order = np.random.default_rng(3)
    archive = {}  # id -> genome, what the store would hold

    def asked(proposals):
        archive.update({p.id: p.genome for p in proposals})
        return proposals

    full, by_id = strategy(name), strategy(name)
    by_id.keep_genomes_by_id(archive.__getitem__)
    flight = asked(full.ask(4))
    assert trace(by_id.ask(4)) == trace(flight)
    for _ in range(cut):
        result = evaluate(flight.pop(int(order.integers(len(flight)))))
        full.tell([result])
        by_id.tell([result])
        new = asked(full.ask(1))
        assert trace(by_id.ask(1)) == trace(new)
        flight += new
    state = json.loads(json.dumps(by_id.state_dict()))
    assert "genome" not in json.dumps(state) and "genome" in json.dumps(full.state_dict())
    assert len(json.dumps(state)) < len(json.dumps(full.state_dict()))
    with pytest.raises(ConfigError, match=r"leaves out the genome of individual \d+"):
        strategy(name, seed=999).load_state_dict(state)
    loaded = strategy(name, seed=999)
    loaded.keep_genomes_by_id(archive.__getitem__)
    loaded.load_state_dict(state)
    assert trace(loaded.in_flight()) == trace(full.in_flight())
    assert loaded.population() == full.population() and loaded.best() == full.best()
    loaded.keep_genomes_by_id(None)  # self-contained again: the same state as the full one
    assert json.dumps(loaded.state_dict(), sort_keys=True) == \
        json.dumps(full.state_dict(), sort_keys=True)
    full_with_lookup = strategy(name, seed=999)
    full_with_lookup.keep_genomes_by_id({}.__getitem__)  # a state with genomes needs no lookup
    full_with_lookup.load_state_dict(json.loads(json.dumps(full.state_dict())))
    assert trace(full_with_lookup.in_flight()) == trace(full.in_flight())


def test_load_state_of_another_strategy_is_refused(name):
    other = "aging" if name != "aging" else "tournament"
    with pytest.raises(ConfigError, match="cannot be loaded"):
        strategy(name).load_state_dict(strategy(other).state_dict())


def test_async_asks_before_any_tell_hand_out_initial_individuals(name):
    """Asking for more than a population before anything is told: all initial (or sampled)."""
    s = strategy(name, initial="zeros")
    first = s.ask(12)
    assert all(not p.parents for p in first)
    if name != "random":  # random search always samples
        assert all(p.genome == "0" * N_BITS for p in first)
    s.tell([evaluate(first[5])])
    more = s.ask(10)
    if name != "random":  # the only finite result is the parent of everything bred now
        assert all(p.parents == (5,) for p in more)
    assert s.best() == (5, evaluate(first[5]).fitness)


def test_results_in_any_order_and_batch_size(name):
    s = strategy(name)
    batch = s.ask(20)
    s.tell([evaluate(p) for p in reversed(batch[10:])])
    s.tell([evaluate(batch[3])])
    s.tell([evaluate(p) for p in batch[:3] + batch[4:10]])
    assert s.in_flight() == []
    assert all(np.isfinite(f) for _, f in s.population())
    assert len(s.ask(5)) == 5


def test_unknown_result_id_is_refused(name):
    s = strategy(name)
    s.ask(2)
    with pytest.raises(ValueError, match="not in flight"):
        s.tell([Result(17, 0.5)])


def test_global_random_states_are_untouched(name):
    random.seed(1234)
    np.random.seed(4321)
    py_state, np_state = random.getstate(), np.random.get_state()
    run(strategy(name))
    assert random.getstate() == py_state
    after = np.random.get_state()
    assert after[0] == np_state[0] and np.array_equal(after[1], np_state[1]) \
        and after[2:] == np_state[2:]


def test_global_random_seed_does_not_change_proposals(name):
    random.seed(1)
    a = trace(run(strategy(name)))
    random.seed(2)
    np.random.seed(2)
    assert trace(run(strategy(name))) == a


def test_all_failures_keep_proposing_initial_individuals(name):
    s = strategy(name, initial="zeros")
    for _ in range(30):
        (p,) = s.ask(1)
        assert not p.parents
        s.tell([Result(p.id, float("nan"))])
    assert s.best() is None and s.population() == []


def test_state_is_json(name):
    s = strategy(name)
    run(s, 30)
    s.ask(3)
    state = s.state_dict()
    assert json.loads(json.dumps(state)) == state
    assert state["strategy"] == name == s.name


# -- configuration errors ------------------------------------------------------------------------
BAD = [
    ("nope", {}, "unknown strategy 'nope'"),
    ("aging", {"sample_size": 0},
     "strategy 'aging': sample_size=0 must be between 1 and population_size"),
    ("aging", {"population_size": 4, "sample_size": 5}, "sample_size=5 must be between 1"),
    ("aging", {"aging": "yes"}, "aging='yes' must be true or false"),
    ("aging", {"sample": 3}, "unknown parameter 'sample'"),
    ("tournament", {"population_size": 0}, "population_size=0 must be at least 1"),
    ("tournament", {"population_size": 2.5}, "must be an integer"),
    ("tournament", {"population_size": True}, "must be an integer"),
    ("topk", {"population_size": 8, "k": 8}, "k=8 must be between 1 and population_size - 1"),
    ("topk", {"population_size": 8, "k": 4, "random_survivors": 4}, "random_survivors=4"),
    ("topk", {"crossover_prob": 1.5}, "crossover_prob=1.5 must be a probability"),
    ("nsga2", {"population_size": 1}, "population_size=1 must be at least 2"),
    ("random", {"k": 3}, "unknown parameter 'k'"),
]


@pytest.mark.parametrize("strategy_name, params, message", BAD)
def test_bad_parameters_are_config_errors(strategy_name, params, message):
    with pytest.raises(ConfigError) as info:
        make_strategy(strategy_name, variation(), 0, **params)
    assert message in str(info.value)


@pytest.mark.parametrize("seed", [-1, 1.5, "7"])
def test_bad_seed_is_a_config_error(name, seed):
    with pytest.raises(ConfigError, match="seed"):
        make_strategy(name, variation(), seed, **PARAMS[name])


def test_negative_ask_is_refused(name):
    with pytest.raises(ConfigError):
        strategy(name).ask(-1)
