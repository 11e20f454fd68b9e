"""The Python API: a user-defined space and fitness generator drive a run with the same store."""

from dataclasses import dataclass

import evograph
import numpy as np
from evograph.compile.training.fitness import FITNESS, Score
from evograph.genome import Genome, Node, SearchSpace
from evograph.genome.space import SPACES
from evograph.runs.api import resume
from evograph.runs.store import RunStore
from evograph.selection.random_search import RandomSearch
from evograph.selection.strategy import STRATEGIES


def small_nets(space, rng, shape, classes):
    width = int(rng.choice(space.unit_choices))
    nodes = [Node.make(0, "input", shape=shape), Node.make(1, "dense", units=width,
                                                           activation="relu"),
             Node.make(2, "output", num_classes=classes)]
    return Genome.make(nodes, [(0, 1), (1, 2)], {"optimizer": "adam", "learning_rate": 0.01})


@dataclass
class WidthIsFitness:
    """A user fitness: prefers wider first layers (no training), to check plumbing."""

    scale: float = 1.0

    def score(self, module, genome, data, *, seed, device):
        units = genome.nodes_with_op("dense")[0].get("units")
        return Score("completed", self.scale * units / 64, {"units": units})


def test_user_space_and_fitness_drive_a_run(tmp_path):
    space = SearchSpace(name="user-mlp", family="mlp", ops=("dense",), unit_choices=(8, 16, 32, 64),
                        activations=("relu",), optimizers=("adam",), max_layers=3,
                        initial=small_nets, sampler=small_nets)
    try:
        outcome = evograph.run(overrides={"budget.evaluations": 12, "dataset.limit": 200,
                                          "strategy.population_size": 4,
                                          "strategy.sample_size": 2,
                                          "executor.name": "serial", "fitness.scale": 2.0},
                               space=space, fitness=WidthIsFitness, out=tmp_path / "run")
        assert outcome.finished
        with RunStore.open(outcome.run_dir, readonly=True) as store:
            best = store.best(1)[0]
            assert best.fitness == 2.0 * best.metrics["units"] / 64
            assert store.config["space"]["name"] == "user-mlp"
            assert len(store.individuals()) == 12
    finally:
        SPACES.pop("user-mlp", None)
        FITNESS.pop("widthisfitness", None)
    assert np.isfinite(best.fitness)


def user_space() -> SearchSpace:
    return SearchSpace(name="user-mlp", family="mlp", ops=("dense",),
                       unit_choices=(8, 16, 32, 64), activations=("relu",), optimizers=("adam",),
                       max_layers=3, initial=small_nets, sampler=small_nets)


SERIAL = {"dataset.limit": 200, "strategy.population_size": 4, "strategy.sample_size": 2,
          "executor.name": "serial"}


def test_resume_takes_the_user_parts_again_and_extends_the_budget(tmp_path):
    """A new session (the registries forgotten) resumes a finished run given its parts again,
    with a larger evaluation budget."""
    try:
        first = evograph.run(overrides={**SERIAL, "budget.evaluations": 6}, space=user_space(),
                             fitness=WidthIsFitness, out=tmp_path / "run")
        SPACES.pop("user-mlp")
        FITNESS.pop("widthisfitness")
        outcome = resume(first.run_dir, space=user_space(), fitness=WidthIsFitness,
                         overrides={"budget.evaluations": 10})
        with RunStore.open(outcome.run_dir, readonly=True) as store:
            rows = store.evaluations()
    finally:
        SPACES.pop("user-mlp", None)
        FITNESS.pop("widthisfitness", None)
    assert first.finished and outcome.finished
    assert len(rows) == 10 and all(row.status == "completed" for row in rows)
    assert all(row.fitness == row.metrics["units"] / 64 for row in rows)


def test_init_genomes_start_the_run_and_a_user_strategy_drives_it(tmp_path):
    seed = small_nets(user_space(), np.random.default_rng(5), (1, 8, 8), 10)

    class PlainRandom(RandomSearch):
        name = "plain-random"  # its own name: RandomSearch's "random" stays registered

    try:
        outcome = evograph.run(overrides={"dataset.limit": 200, "executor.name": "serial",
                                          "budget.evaluations": 4,
                                          "strategy.population_size": 4},
                               space=user_space(), fitness=WidthIsFitness,
                               strategy=PlainRandom, init=[seed], out=tmp_path / "run")
        with RunStore.open(outcome.run_dir, readonly=True) as store:
            first, config = store.individual(0), store.config
    finally:
        SPACES.pop("user-mlp", None)
        FITNESS.pop("widthisfitness", None)
        STRATEGIES.pop("plain-random", None)
    assert outcome.finished and STRATEGIES["random"] is RandomSearch
    assert config["strategy"]["name"] == "plain-random"
    assert first.genome_hash == seed.hash
