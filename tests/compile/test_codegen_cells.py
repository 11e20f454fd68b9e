"""model.py of cell genomes: each distinct cell is a class built for C channels, the network
stacks its copies, and the file computes what the compiled module computes, bit for bit."""

import re

import numpy as np
import pytest
import torch
from evograph.compile.builder import build
from evograph.compile.codegen import generate
from evograph.compile.codegen_cells import _relative
from evograph.genome.cells.nb201 import nb201_genome
from evograph.genome.space import get_space


def run_generated(genome, shape):
    """(generated output, compiled output, source) on one random batch."""
    module = build(genome, seed=0).eval()
    generated = generate(genome)
    namespace: dict = {}
    exec(generated.source, namespace)  # noqa: S102 (the generated file under test)
    net = namespace["EvolvedNet"]()
    net.load_state_dict(generated.remap(module.state_dict()), strict=True)
    x = torch.randn(3, *shape)
    return net.eval()(x), module(x), generated


def test_an_nb201_network_is_one_cell_class_stacked_per_stage():
    genome = nb201_genome(["nor_conv_3x3", "skip_connect", "none", "nor_conv_3x3",
                           "avg_pool_3x3", "nor_conv_1x1"], (1, 8, 8), 10, 8, 2, 3)
    ours, compiled, generated = run_generated(genome, (1, 8, 8))
    assert torch.equal(ours, compiled)
    source = generated.source
    assert re.findall(r"class (\w+)\(nn.Module\)", source) == ["Cell", "EvolvedNet"]
    assert "self.cells = nn.ModuleList([Cell(8), Cell(8), Cell(16), Cell(16), Cell(32), " \
           "Cell(32)])" in source
    # the cell reads as the paper draws it: edge 0->1 is template node 5, a 3x3 conv on C channels
    assert "self.conv5 = nn.Conv2d(C, C, kernel_size=(3, 3)" in source
    assert "# nb201 cell, edge 0->1: relu_conv_bn -> (N, C, H, W)" in source
    # the second copy's edge 0->1 in the compiled module is cells.1.conv5 in the file
    assert generated.rename("layers.n2005.1.weight") == "cells.1.conv5.weight"


@pytest.mark.parametrize("shape", [(1, 8, 8), (1, 40)])
def test_nasnet_cells_share_a_class_where_their_code_agrees(shape):
    genome = get_space("nasnet", cell_channels=8, cells=3, stages=2).sample(
        np.random.default_rng(1), shape, 10)
    ours, compiled, generated = run_generated(genome, shape)
    assert torch.equal(ours, compiled)
    (cells,) = re.findall(r"self.cells = nn.ModuleList\(\[(.*)\]\)", generated.source)
    used = re.findall(r"(Cell\w*)\(", cells)
    assert len(used) == 7 and len(set(used)) < len(used)  # 3 normal, reduce, 3 normal
    for name in set(used):  # each class takes C and the channels of the inputs it reads
        assert re.search(rf"class {name}\(nn.Module\):\n.*\n.*\n\n    def __init__\(self, C: int",
                         generated.source)


@pytest.mark.parametrize("value, base, divisors, text", [
    (16, 16, True, "C"), (32, 16, True, "2 * C"), (8, 16, True, "C // 2"), (24, 16, True, "24"),
    (48, 16, True, "3 * C"), (4, 16, False, "4"), (8, 16, False, "C // 2"),
])
def test_sizes_are_written_as_exact_expressions_of_the_copys_symbols(value, base, divisors,
                                                                    text):
    assert _relative(value, base, "C", divisors) == text
