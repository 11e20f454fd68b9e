"""Genome diffs of cell genomes: an op mutation is named by the cell and the edge it changed."""

from __future__ import annotations

import numpy as np
from evograph.genome import get_space
from evograph.genome.cells.nb201 import nb201_genome
from evograph.operators import MUTATIONS
from evograph.runs.lineage.diff import genome_diff

EDGE_OF_NODE = {5: "0->1", 6: "0->2", 7: "1->2", 8: "0->3", 9: "1->3", 10: "2->3"}


def test_a_cell_op_mutation_is_named_by_the_cell_and_its_edge():
    space = get_space("nb201")
    parent = nb201_genome(["nor_conv_3x3"] * 6, (1, 8, 8), 10, genes=dict(space.initial_genes))
    for seed in range(4):
        child, edit = MUTATIONS["cell-op"](parent, np.random.default_rng(seed), space)
        diff = genome_diff(parent, child)
        (node,) = edit.changed
        line = (f"~ nb201 cell, edge {EDGE_OF_NODE[node]} (node {node}): "
                f"nor_conv_3x3 -> {edit.args['to']}")
        assert diff.lines() == [line]
        assert not diff.added and not diff.removed
        assert diff.to_dict()["cell_ops"][0] == {"id": node, "cell": "nb201",
                                                 "place": f"nb201 cell, edge {EDGE_OF_NODE[node]}",
                                                 "from": "nor_conv_3x3", "to": edit.args["to"]}


def test_plain_genomes_keep_the_node_by_node_diff():
    space = get_space("lse-conv")
    parent = space.sample(np.random.default_rng(0), (1, 8, 8), 10)
    diff = genome_diff(parent, parent.with_genes(learning_rate=0.5))
    assert diff.cell_ops == [] and list(diff.genes) == ["learning_rate"]
