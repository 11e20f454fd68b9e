"""Contract of every registered mutation (``evograph.operators.MUTATIONS``), on genomes of every
registered space whose family it applies to, on every input shape of that family.

A mutation is a pure function ``(genome, rng, space) -> (child, edit)`` (Real et al. 2017's
mutations, ``operators/base.py``): it raises ``NotApplicable`` or returns a child and an
``Edit``; it never changes its input; it draws only from the explicit ``rng`` (same seed, same
child; the global RNGs untouched); the child is a valid genome of the space *up to its size
budgets* — budgets are :func:`~evograph.operators.mutate`'s to enforce, by resampling, and that
is checked per space below; the edit survives the JSON a run store keeps, and its inheritance
plan (``changed``, ``inherit``) names only nodes of the child and — as ``Edit`` documents — every
node whose tensors are new or reshaped.

Parametrized over the live registries at collection time. ``tests/operators/test_mutations.py``
checks what each named mutation changes and keeps; this file is the per-entry sweep.
"""

from __future__ import annotations

import functools
import json
import random
import re

import numpy as np
import pytest
import torch
from evograph.compile import GenomeModule
from evograph.errors import InvalidGenome
from evograph.genome import Genome, Node, analyze, get_space
from evograph.genome.cells import expand
from evograph.genome.cells.skeleton import skeleton_node, template_id
from evograph.genome.io import from_dict, to_dict
from evograph.genome.space import SPACES
from evograph.operators import MUTATIONS, Edit, NotApplicable, VariationFailed, mutate
from evograph.operators.base import FAMILIES

from tests.contracts import entries, shapes_for

SEEDS = (0, 1)


def applicable_spaces(name: str) -> list[str]:
    """The spaces that use mutation ``name``: of a family it applies to, and naming it in their
    mutation table when they have one (as :func:`~evograph.operators.mutation_table` reads
    it: nb201's cells have no hidden-state choice, so its table leaves ``cell-input`` out)."""
    return [s for s in entries(SPACES) if get_space(s).family in FAMILIES[name]
            and (not get_space(s).mutation_weights or name in dict(get_space(s).mutation_weights))]


PAIRS = [(m, s) for m in entries(MUTATIONS) for s in applicable_spaces(m)]
IDS = [f"{m}@{s}" for m, s in PAIRS]



def merge_chain(space, shape: tuple[int, ...]) -> Genome | None:
    """For spaces with convolutions and identities: conv -> identity -> conv -> identity ->
    conv -> output, with a skip from the first identity into the output (a merge whose first
    input is that identity). Random genomes seldom have identities feeding convolutions."""
    if not {"conv", "identity"} <= set(space.ops):
        return None
    one_d, kernel = len(shape) == 2, min(k for k in space.kernel_sizes if k % 2)
    lo, hi = space.channels

    def conv(i, channels):
        return Node.make(i, "conv", out_channels=int(np.clip(channels, lo, hi)),
                         kernel_h=1 if one_d else kernel, kernel_w=kernel,
                         stride_h=min(space.strides), stride_w=min(space.strides),
                         bn=True, relu=True)

    nodes = [Node.make(0, "input", shape=shape), conv(1, 8), Node.make(2, "identity"),
             conv(3, 16), Node.make(4, "identity"), conv(5, 12),
             Node.make(6, "output", num_classes=10)]
    edges = [(i, i + 1) for i in range(6)] + [(2, 6)]
    genome = Genome.make(nodes, edges, dict(space.initial_genes))
    return genome if space.is_valid(genome) else None


@functools.cache
def parents(space_name: str, shape: tuple[int, ...]) -> tuple[Genome, ...]:
    """Starting genomes, random samples, genomes grown from them by random mutation and, where
    the space has them, a chain of convolutions, identities and a merge."""
    space = get_space(space_name)
    rng = np.random.default_rng(0)
    pool = [space.initial_genome(rng, shape, 10) for _ in range(2)]
    pool += [space.sample(rng, shape, 10) for _ in range(6)]
    for _ in range(16):
        pool.append(mutate(pool[int(rng.integers(len(pool)))], rng, space)[0])
    chain = merge_chain(space, shape)
    return tuple(pool) + ((chain,) if chain is not None else ())


def without_budgets(space):
    """The space with its size budgets lifted (ops, ranges and genes still checked)."""
    return space.replace(max_layers=10**6, max_params=10**15, max_flops=10**18)


def snapshot(genome: Genome):
    """Everything a mutation could alter in place: the value and its cached graph view."""
    return (genome.hash, json.dumps(to_dict(genome), sort_keys=True),
            sorted(genome.graph.nodes(data=True), key=str), sorted(genome.graph.edges))


def apply(name, genome, seed, space):
    """``(child, edit)``, or None when the mutation is not applicable."""
    try:
        return MUTATIONS[name](genome, np.random.default_rng(seed), space)
    except NotApplicable:
        return None


def global_rng_states():
    state = np.random.get_state()
    return random.getstate(), state[0], state[1].tobytes(), state[2:]


def outcomes(name, space_name):
    """Every (space, parent, seed, outcome) of the mutation over the pools, with the contract
    on purity, determinism and the edit checked on the way."""
    space = get_space(space_name)
    for shape in shapes_for(space):
        for parent in parents(space_name, shape):
            for seed in SEEDS:
                before, rngs = snapshot(parent), global_rng_states()
                first = apply(name, parent, seed, space)
                assert snapshot(parent) == before, f"{name} changed its input genome"
                assert global_rng_states() == rngs, f"{name} drew from a global RNG"
                assert apply(name, parent, seed, space) == first, f"{name}: same seed, other child"
                yield space, parent, seed, first


@pytest.mark.parametrize("mutation_name", entries(MUTATIONS))
def test_every_mutation_applies_to_a_registered_space(mutation_name):
    assert applicable_spaces(mutation_name), (
        f"mutation {mutation_name!r} applies to families {FAMILIES[mutation_name]} and no "
        "registered space is of one, so nothing exercises it")


@pytest.mark.parametrize("name, space_name", PAIRS, ids=IDS)
def test_mutation_is_pure_deterministic_and_gives_a_valid_child(name, space_name):
    applied = 0
    for space, parent, _, outcome in outcomes(name, space_name):
        if outcome is None:
            continue
        child, edit = outcome
        assert isinstance(child, Genome) and isinstance(edit, Edit) and edit.mutation == name
        analyze(child, without_budgets(space))
        assert from_dict(to_dict(child)) == child
        assert Edit.from_dict(json.loads(json.dumps(edit.to_dict()))) == edit
        missing = [i for i in edit.changed if not child.has_node(i)]
        assert not missing, f"{edit.describe()} names nodes {missing} the child does not have"
        assert child.input_node == parent.input_node and child.output_node == parent.output_node
        applied += 1
    assert applied, f"{name} never applied to a genome of {space_name}"


def _tensor_shapes(genome: Genome) -> dict[str, tuple[int, ...]]:
    """Name -> shape of every tensor the compiled genome holds (built on the meta device:
    shapes without allocating or initialising weights; a cell genome as its network)."""
    network = expand(genome)
    with torch.device("meta"):
        module = GenomeModule(network, analyze(network))
    return {k: tuple(v.shape) for k, v in module.state_dict().items()}


def _node_of(tensor_name: str, genome: Genome) -> int:
    """``layers.n<id>.…`` -> id (the builder names every tensor after its node); in a cell
    genome's network, the template node the tensor's node copies."""
    node = int(re.match(r"\w+\.n(\d+)\.", tensor_name).group(1))
    skeleton = skeleton_node(genome)
    return node if skeleton is None else template_id(node, skeleton.id)


def _plan_cases():
    for pair, ident in zip(PAIRS, IDS):
        yield pytest.param(*pair, id=ident)


@pytest.mark.parametrize("name, space_name", list(_plan_cases()))
def test_inheritance_plan_lists_every_new_or_reshaped_tensor(name, space_name):
    """``Edit``: ``changed`` lists the nodes whose tensors are new or reshaped; every other
    node of the child that exists in the parent takes the parent's tensors unchanged."""
    for space, parent, _, outcome in outcomes(name, space_name):
        if outcome is None or not outcome[1].inherit:
            continue
        child, edit = outcome
        if not space.is_valid(child):
            continue   # never trained: mutate() rejects it, so nothing inherits into it
        old, new = _tensor_shapes(parent), _tensor_shapes(child)
        for tensor, shape in new.items():
            node = _node_of(tensor, child)
            if node in edit.changed:
                continue
            assert old.get(tensor) == shape, (
                f"{edit.describe()} on {parent.hash}: {tensor} is {old.get(tensor)} in the "
                f"parent and {shape} in the child, but node {node} is not in "
                f"changed={edit.changed}")


@pytest.mark.parametrize("space_name", entries(SPACES))
def test_mutate_keeps_children_inside_the_space_budgets(space_name):
    """What the registered mutations leave to it: a child of ``mutate`` fits the space,
    budgets included, or VariationFailed says none was found."""
    space = get_space(space_name)
    for shape in shapes_for(space):
        for i, parent in enumerate(parents(space_name, shape)):
            try:
                child, _ = mutate(parent, np.random.default_rng(i), space)
            except VariationFailed:
                continue
            try:
                analyze(child, space)
            except InvalidGenome as error:
                pytest.fail(f"mutate() handed out a child outside space {space_name}: {error}")
