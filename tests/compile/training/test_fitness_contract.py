"""The fitness-generator contract: every registered generator (the meta-learners' included)
scores a tiny genome of a space it supports, with tiny data, to a :class:`Score` that
``checked()`` leaves as it is, within seconds.

Parametrized over ``FITNESS`` at collection time, so a generator registered later is tested by
being registered. Each generator declares its smallest working setup
(:func:`evograph.compile.training.fitness.example`), files included (the ``learned-optimizer``
generator writes an untrained optimizer file under the folder it is given).
"""

import time

import numpy as np
import pytest
import torch
from evograph import meta as _meta  # noqa: F401  (registers the meta-learners' generators)
from evograph.compile.builder import build
from evograph.compile.training.fitness import (
    FITNESS,
    Score,
    bind_run,
    example,
    make_fitness,
    needs_module,
)
from evograph.data.datasets import load_dataset
from evograph.genome.space import get_space
from evograph.runs.setup import _tuples, genome_shapes

SECONDS = 30.0      # per generator, set-up included (a SMASH hypernetwork trains a few steps)




@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits", seed=0, limit=200)


@pytest.mark.parametrize("name", sorted(FITNESS))
def test_every_generator_scores_a_tiny_genome_of_a_space_it_supports(name, digits, tmp_path):
    start = time.perf_counter()
    setup = example(FITNESS[name], tmp_path)
    params = setup["params"]
    generator = make_fitness(name, params)
    bind_run(generator, str(tmp_path))
    space = get_space(setup["space"], **_tuples(setup["space_overrides"]))
    input_shape, classes = genome_shapes(generator, digits)
    genome = space.initial_genome(np.random.default_rng(0), input_shape, classes)
    module = build(genome, seed=0) if needs_module(generator) else None
    score = generator.score(module, genome, digits, seed=0, device=torch.device("cpu"))
    assert isinstance(score, Score) and score.status in ("completed", "infeasible")
    assert score.checked() == score
    assert score.status == "completed", score.metrics.get("reason")
    assert time.perf_counter() - start < SECONDS
