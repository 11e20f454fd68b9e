"""Cell genomes compiled: weight inheritance through the expansion's stable names (AmoebaNet's
op mutation and identity), and the layers of the cell networks' ops against plain torch."""

from __future__ import annotations

import numpy as np
import torch
from evograph.compile import build
from evograph.compile.inherit import inherit_weights
from evograph.genome import get_space
from evograph.genome.cells.nb201 import nb201_genome
from evograph.genome.cells.skeleton import template_id
from evograph.operators import MUTATIONS

SPACE = get_space("nb201", cell_channels=4, cells=2)
SHAPE = (1, 8, 8)


def _parent():
    return nb201_genome(["nor_conv_3x3", "nor_conv_1x1", "skip_connect", "avg_pool_3x3",
                         "nor_conv_3x3", "nor_conv_1x1"], SHAPE, 10, channels=4, cells=2,
                        genes=dict(SPACE.initial_genes))


def _node(tensor: str) -> int:
    return int(tensor.split(".")[1][1:])


def test_an_identity_child_computes_its_parents_outputs():
    parent = _parent()
    child, _ = MUTATIONS["identity"](parent, np.random.default_rng(0), SPACE)
    trained = build(parent, seed=3).eval()
    fresh = build(child, seed=4).eval()
    report = inherit_weights(fresh, trained.state_dict())
    assert not report.fresh and not report.partial
    x = torch.randn(5, *SHAPE)
    assert torch.equal(fresh(x), trained(x))


def test_an_op_mutation_renews_only_the_copies_of_its_node():
    """Every copy of the mutated edge (one per cell) is new or cut down; every other tensor of
    the network is the parent's, and the network up to the first copy computes as before."""
    parent = _parent()
    for seed in range(6):
        child, edit = MUTATIONS["cell-op"](parent, np.random.default_rng(seed), SPACE)
        (node,) = edit.changed
        trained, fresh = build(parent, seed=3), build(child, seed=4)
        report = inherit_weights(fresh, trained.state_dict())
        renewed = {_node(t) for t in report.fresh + report.partial}
        assert {template_id(n, 1) for n in renewed} <= {node}
        state = fresh.state_dict()
        for tensor in report.copied:
            assert torch.equal(state[tensor], trained.state_dict()[tensor])
        if edit.args["from"] == "nor_conv_3x3" and edit.args["to"] == "nor_conv_1x1":
            assert report.partial   # the 1x1 kernel keeps the 3x3 kernel's centre
        stem = {k: v for k, v in state.items() if k.startswith("layers.n1.")}
        assert stem and all(torch.equal(v, trained.state_dict()[k]) for k, v in stem.items())


def test_the_cell_ops_layers_are_the_papers_ops():
    """nor_conv is ReLU -> conv -> BN; avg_pool does not count padding; none is zeros."""
    # edges 0->1 conv, 0->3 pool, 1->3 and 2->3 skips; node 2 has no input: a zero
    genome = nb201_genome(["nor_conv_3x3", "none", "none", "avg_pool_3x3", "skip_connect",
                           "skip_connect"], SHAPE, 10, channels=4, cells=1)
    module = build(genome, seed=0)
    conv = module.layers["n1005"]            # edge 0->1 of the first copy
    assert [type(m).__name__ for m in conv] == ["ReLU", "Conv2d", "BatchNorm2d"]
    assert conv[1].bias is None and conv[1].kernel_size == (3, 3)
    x = torch.ones(1, 4, 8, 8)
    assert torch.equal(module.layers["n1008"](x), x)   # corners average 4 ones, not 4 of 9
    assert torch.equal(module.layers["n1003"](x), torch.zeros_like(x))
