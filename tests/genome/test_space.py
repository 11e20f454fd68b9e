"""Search spaces: every registered space samples valid genomes that compile and train a step."""

import numpy as np
import pytest
import torch
from evograph.compile import build, count_parameters
from evograph.errors import InvalidGenome
from evograph.genome import Genome, Node, SearchSpace, analyze, get_space, register_space
from evograph.genome.space import SPACES
from hypothesis import given

from tests.conftest import SHAPES_BY_FAMILY, random_dags, sample_genomes


def _forward_backward(genome, shape):
    module = build(genome, seed=0)
    x = torch.randn(4, *shape)
    y = module(x)
    assert y.shape == (4, genome.output_node.get("num_classes"))
    y.square().mean().backward()
    assert all(p.grad is not None for p in module.parameters())
    return module


def test_every_space_sample_validates_compiles_and_counts(space):
    for shape, genome in sample_genomes(space, 8):
        info = analyze(genome, space)
        module = _forward_backward(genome, shape)
        assert count_parameters(module) == info.params


def test_initial_genomes_are_valid(space):
    rng = np.random.default_rng(0)
    for shape in SHAPES_BY_FAMILY[space.family]:
        genome = space.initial_genome(rng, shape, 10)
        assert count_parameters(_forward_backward(genome, shape)) == analyze(genome, space).params


def test_random_starting_networks_are_drawn_within_the_budget():
    space = get_space("mlp", unit_choices=(32, 512), max_params=20_000)
    rng = np.random.default_rng(0)
    genomes = [space.initial_genome(rng, (1, 8, 8), 10) for _ in range(30)]
    assert all(analyze(g, space).params <= 20_000 for g in genomes)
    with pytest.raises(InvalidGenome, match="no valid starting genome in 5 draws"):
        get_space("mlp", unit_choices=(512,), max_params=1_000).initial_genome(
            rng, (1, 8, 8), 10, attempts=5)


def test_lse_conv_starts_from_trivial_network():
    genome = get_space("lse-conv").initial_genome(np.random.default_rng(0), (1, 8, 8), 10)
    assert [n.op for n in genome.nodes] == ["input", "output"]


@given(genome=random_dags())
def test_random_dags_validate_compile_and_match_symbolic_count(genome):
    info = analyze(genome)
    module = _forward_backward(genome, genome.input_node.get("shape"))
    assert count_parameters(module) == info.params


def test_same_seed_same_sample(space):
    a = [g.hash for _, g in sample_genomes(space, 3, seed=7)]
    b = [g.hash for _, g in sample_genomes(space, 3, seed=7)]
    assert a == b


def test_user_defined_space_without_editing_evograph():
    def two_wide(space, rng, shape, classes):
        nodes = [Node.make(0, "input", shape=shape),
                 Node.make(1, "dense", units=int(rng.choice(space.unit_choices)),
                           activation="tanh"),
                 Node.make(2, "output", num_classes=classes)]
        return Genome.make(nodes, [(0, 1), (1, 2)], {"optimizer": "adam", "learning_rate": 0.01})

    @register_space("tiny-test-space")
    def tiny(**overrides):
        return SearchSpace(name="tiny-test-space", family="mlp", ops=("dense",),
                           unit_choices=(8, 16), activations=("tanh",), optimizers=("adam",),
                           max_layers=1, initial=two_wide, sampler=two_wide, **overrides)

    try:
        space = get_space("tiny-test-space")
        genome = space.sample(np.random.default_rng(0), (64,), 3)
        assert genome.node(1).get("units") in (8, 16)
        with pytest.raises(InvalidGenome, match="units=512"):
            analyze(genome.with_node(genome.node(1).replace(units=512)), space)
    finally:
        SPACES.pop("tiny-test-space")


def test_unknown_space_is_a_clear_error():
    with pytest.raises(InvalidGenome, match="unknown search space 'nope'"):
        get_space("nope")
