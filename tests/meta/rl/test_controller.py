"""The RL controller (Zoph & Le 2017): REINFORCE really learns, replays from its seed, survives a
JSON round trip mid-run, never learns from non-finite fitness, and runs (and resumes) through the
real driver as ``strategy = "rl"``."""

from __future__ import annotations

import json
import math
import sqlite3
from pathlib import Path

import numpy as np
import pytest
from evograph import meta  # noqa: F401  (registers "rl")
from evograph.errors import ConfigError
from evograph.genome.codec import BitsCodec, Decision, IndexCodec, codec_for
from evograph.genome.io import from_dict
from evograph.genome.space import get_space
from evograph.meta.rl.controller import Controller, codec_variation
from evograph.runs.config import load_config
from evograph.runs.driver import create_run, run
from evograph.runs.store import RunStore
from evograph.selection import STRATEGIES, Result, Variation, make_strategy
from evograph.selection.toy import bitstring_variation, noisy_ones

ROOT = Path(__file__).resolve().parents[3]
TARGET = (2, 0, 1)


def toy(seed: int = 0, **params):
    """An rl strategy over three 3-way decisions."""
    return make_strategy("rl", codec_variation(IndexCodec([3, 3, 3])), seed,
                         **{"learning_rate": 0.05, **params})


def matches(genome) -> float:
    """The synthetic reward: how many decisions hit TARGET (its optimum is TARGET itself)."""
    return sum(a == b for a, b in zip(genome, TARGET)) / len(TARGET)


def rounds(s, n: int, batch: int = 8) -> list[float]:
    means = []
    for _ in range(n):
        proposals = s.ask(batch)
        s.tell([Result(p.id, matches(p.genome)) for p in proposals])
        means.append(float(np.mean([matches(p.genome) for p in proposals])))
    return means


def test_rl_is_registered():
    assert "rl" in STRATEGIES


def test_reinforce_raises_the_optimum_probability_and_the_mean_reward():
    s = toy()
    before = s.probabilities([list(TARGET)])[0]
    first_step = float(s.controller.log_probs([list(TARGET)])[0, 0].exp())
    means = rounds(s, 25)
    after = s.probabilities([list(TARGET)])[0]
    assert before < 0.1 and after > 0.6, (before, after)
    assert float(s.controller.log_probs([list(TARGET)])[0, 0].exp()) > first_step + 0.4
    assert np.mean(means[:2]) < 0.6 and np.mean(means[-5:]) > 0.9, means


def test_anchor_point_attention_learns_a_rewarded_skip():
    decisions = [Decision("a", (0, 1), layer=1), Decision("b", (0, 1), layer=2),
                 Decision("c", (0, 1), layer=3), Decision("skip", (False, True), layer=3,
                                                          skip_from=1)]
    controller = Controller(decisions, seed=0, learning_rate=0.05)
    rng = np.random.default_rng(0)
    p_skip = lambda: float(controller.log_probs([[0, 0, 0, 1]])[0, 3].exp())
    start = p_skip()
    for _ in range(20):
        rows = controller.sample(8, rng)
        controller.update(rows, [float(r[3]) for r in rows])
    assert start < 0.7 and p_skip() > 0.85


def test_same_seed_same_samples_and_another_seed_differs():
    def trace(seed):
        s = toy(seed)
        out = []
        for _ in range(5):
            proposals = s.ask(4)
            s.tell([Result(p.id, matches(p.genome)) for p in proposals])
            out += [(p.id, p.genome, p.seed) for p in proposals]
        return out
    assert trace(3) == trace(3)
    assert trace(3) != trace(4)


@pytest.mark.parametrize("cut", [0, 3, 7])
def test_state_round_trip_mid_run_continues_identically(cut):
    a = toy(1)
    rounds(a, cut, batch=4)
    flight = a.ask(3)                                 # in flight when the state is taken
    b = toy(99)
    b.load_state_dict(json.loads(json.dumps(a.state_dict())))
    assert [p.genome for p in b.in_flight()] == [p.genome for p in flight]
    tails = []
    for s in (a, b):
        s.tell([Result(p.id, matches(p.genome)) for p in flight])
        tail = [(p.id, p.genome) for p in s.ask(6)]
        tails.append((tail, s.probabilities([list(TARGET)]), s.best(), s.population()))
    assert tails[0] == tails[1]
    assert json.dumps(a.state_dict(), sort_keys=True) == json.dumps(b.state_dict(),
                                                                    sort_keys=True)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf"), None])
def test_non_finite_fitness_is_never_a_reward(bad):
    s = toy()
    proposals = s.ask(2)
    weights = s.controller.to_base64()
    s.tell([Result(p.id, bad) for p in proposals])
    assert s.controller.updates == 0 and s.controller.to_base64() == weights
    assert s.best() is None and s.population() == []
    penalised = toy(failed_reward=0.0)
    first = penalised.ask(2)
    penalised.tell([Result(first[0].id, bad), Result(first[1].id, 1.0)])
    assert penalised.controller.updates == 1
    assert penalised.last_stats["mean_reward"] == pytest.approx(0.5)
    assert math.isfinite(penalised.controller.baseline)


def test_batched_tell_is_one_update_on_all_rewards():
    s = toy()
    proposals = s.ask(5)
    s.tell([Result(p.id, matches(p.genome)) for p in proposals])
    assert s.controller.updates == 1
    assert s.last_stats["mean_reward"] == pytest.approx(np.mean([matches(p.genome)
                                                                 for p in proposals]))


def test_batch_size_accumulates_rewards_across_tells_and_survives_a_round_trip():
    s = toy(batch_size=5, lstm_layers=2, reward_power=3.0)
    for _ in range(3):
        proposals = s.ask(2)
        s.tell([Result(p.id, matches(p.genome)) for p in proposals])
    assert s.controller.updates == 1 and len(s.pending) == 0  # 6 rewards: one step at 6
    proposals = s.ask(2)
    s.tell([Result(p.id, matches(p.genome)) for p in proposals])
    assert s.controller.updates == 1 and len(s.pending) == 2
    assert s.pending[0][1] == pytest.approx(matches(proposals[0].genome) ** 3)
    b = toy(0, batch_size=5, lstm_layers=2, reward_power=3.0)
    b.load_state_dict(json.loads(json.dumps(s.state_dict())))
    assert b.pending == s.pending


BAD = [({"learning_rate": 0}, "learning_rate=0 must be a finite number > 0"),
       ({"baseline_decay": 1.5}, "baseline_decay=1.5 must be a finite number >= 0"),
       ({"hidden_size": 0}, "hidden_size=0 must be at least 1"),
       ({"failed_reward": "zero"}, 'must be a finite number or "skip"'),
       ({"entropy_weight": float("nan")}, "entropy_weight=nan"),
       ({"codec": 3}, "codec=3 must be a codec name"),
       ({"codec": {"max_depth": 2}}, "codec 'mlp'"),
       ({"sample_size": 3}, "unknown parameter 'sample_size'")]


@pytest.mark.parametrize("params, message", BAD)
def test_bad_parameters_are_config_errors(params, message):
    variation = Variation.for_space(get_space("mlp"), (64,), 10)
    with pytest.raises(ConfigError) as info:
        make_strategy("rl", variation, 0, **params)
    assert message in str(info.value)


def test_codec_comes_from_the_space_of_a_plain_variation():
    space = get_space("lse-conv")
    s = make_strategy("rl", Variation.for_space(space, (1, 8, 8), 10), 0,
                      codec={"max_depth": 3})
    assert s.codec.to_dict() == codec_for(space, (1, 8, 8), 10, max_depth=3).to_dict()
    assert all(space.is_valid(p.genome) for p in s.ask(6))
    assert isinstance(make_strategy("rl", bitstring_variation(16), 0).codec, BitsCodec)


def test_state_of_other_decisions_is_refused():
    a = make_strategy("rl", Variation.for_space(get_space("mlp"), (64,), 10), 0)
    b = make_strategy("rl", Variation.for_space(get_space("mlp"), (64,), 10), 0,
                      codec={"learning_rates": [0.01]})
    state = a.state_dict()
    state["params"] = b.state_dict()["params"]
    with pytest.raises(ConfigError, match="other decisions"):
        b.load_state_dict(state)


def test_rl_beats_random_search_on_the_toy_bit_strings():
    """Real et al. 2019's toy: RL must do better than random at equal evaluations (12 batches
    of 8, as with 8 workers)."""
    def best(name, seed):
        s, found = make_strategy(name, bitstring_variation(16), seed), 0
        for _ in range(12):
            proposals = s.ask(8)
            s.tell([noisy_ones(0.02)(p) for p in proposals])
            found = max([found] + [p.genome.count("1") for p in proposals])
        return found
    assert np.median([best("rl", i) for i in range(3)]) > \
        np.median([best("random", i) for i in range(3)])


# -- through the real driver ---------------------------------------------------------------------
TINY = ["dataset.limit=300", "fitness.epochs=1", "budget.minutes=0", "executor.name=serial",
        "space.unit_choices=[16,32,64]"]


def tiny_config(evaluations: int, extra=()):
    return load_config(ROOT / "runs/configs/rl-mlp.toml",
                       TINY + [f"budget.evaluations={evaluations}", *extra])


def final_state(run_dir):
    with RunStore.open(run_dir, readonly=True) as store:
        individuals = [(i.id, i.genome_hash, i.mutation, i.seed) for i in store.individuals()]
        evaluations = [(e.id, e.status, e.fitness) for e in store.evaluations()]
        return individuals, evaluations, store.load_proposer_state()[2]


def test_end_to_end_run_with_strategy_rl(tmp_path):
    run_dir = create_run(tiny_config(8, ["executor.batch=4"]), tmp_path / "run")
    assert run(run_dir, live=False).finished
    individuals, evaluations, state = final_state(run_dir)
    assert len(individuals) == 8 and all(m == "rl-sample" for _, _, m, _ in individuals)
    assert {s for _, s, _ in evaluations} <= {"completed", "infeasible"}
    assert state["strategy"] == "rl" and state["updates"] == 2  # two batches of four
    with RunStore.open(run_dir, readonly=True) as store:
        space = get_space("mlp", unit_choices=(16, 32, 64), max_params=300000)
        for ind in store.individuals():
            genome = from_dict(ind.genome)
            assert space.is_valid(genome)
            codec = codec_for(space, (1, 8, 8), 10, **state["params"]["codec"])
            assert codec.decode(ind.args["decisions"]) == genome


def test_resume_continues_like_an_uninterrupted_run(tmp_path):
    reference = create_run(tiny_config(6), tmp_path / "reference")
    run(reference, live=False)
    victim = create_run(tiny_config(3), tmp_path / "victim")
    run(victim, live=False)
    with sqlite3.connect(victim / "run.db") as conn:  # raise the budget of the stopped run
        config = json.loads(conn.execute("SELECT value FROM meta WHERE key='config'")
                            .fetchone()[0])
        config["budget"]["evaluations"] = 6
        conn.execute("UPDATE meta SET value=? WHERE key='config'", (json.dumps(config),))
    assert run(victim, force=True, live=False).finished
    assert final_state(victim) == final_state(reference)
