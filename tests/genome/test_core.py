"""The genome value: immutability, canonical order and stable content hashes."""

import dataclasses

import pytest
from evograph.genome import Genome, Node


def _chain(order):
    nodes = [Node.make(0, "input", shape=(1, 8, 8)),
             Node.make(1, "conv", out_channels=4, kernel_h=3, kernel_w=3, stride_h=1,
                       stride_w=1, bn=False, relu=True),
             Node.make(2, "identity"), Node.make(3, "output", num_classes=10)]
    edges = [(0, 1), (1, 2), (0, 2), (2, 3)]
    return Genome.make([nodes[i] for i in order], list(reversed(edges)) if order[0] else edges)


def test_hash_does_not_depend_on_construction_order():
    assert _chain([0, 1, 2, 3]).hash == _chain([3, 1, 0, 2]).hash


def test_predecessors_are_in_ascending_id_order():
    assert _chain([3, 2, 1, 0]).predecessors(2) == [0, 1]


def test_genome_is_immutable():
    genome = _chain([0, 1, 2, 3])
    with pytest.raises(dataclasses.FrozenInstanceError):
        genome.nodes = ()
    params = genome.node(1).p
    params["out_channels"] = 99
    assert genome.node(1).get("out_channels") == 4


def test_functional_updates_return_new_genomes():
    genome = _chain([0, 1, 2, 3])
    child = genome.with_genes(learning_rate=0.5)
    assert child.gene["learning_rate"] == 0.5 and genome.gene["learning_rate"] != 0.5
    assert child.arch_hash == genome.arch_hash and child.hash != genome.hash
    wider = genome.with_node(genome.node(1).replace(out_channels=8))
    assert wider.node(1).get("out_channels") == 8 and wider.arch_hash != genome.arch_hash
    smaller = genome.without_node(2)
    assert not smaller.has_node(2) and all(2 not in e for e in smaller.edges)


def test_topological_order_is_deterministic():
    assert _chain([2, 0, 3, 1]).topological_order() == [0, 1, 2, 3]
