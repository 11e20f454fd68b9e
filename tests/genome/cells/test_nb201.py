"""The NAS-Bench-201 cell as a genome: the benchmark's own parameter and FLOP figures as the
oracle of the symbolic count, the compiled module against it, the architecture string both ways,
and one line for each kind of malformed cell."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from evograph.compile import build, count_parameters
from evograph.compile.codegen import generate
from evograph.errors import InvalidGenome
from evograph.genome import Genome, Node, analyze, get_space
from evograph.genome.cells import expand
from evograph.genome.cells.nb201 import (
    EDGES,
    arch_string,
    cell_ops,
    nb201_genome,
    parse_arch_string,
)

CIFAR = (3, 32, 32)


def test_the_benchmarks_size_range_is_reproduced_symbolically():
    """NAS-Bench-201 on CIFAR-10 (16 channels, 5 cells, 3 stages) spans 0.073-1.53 M parameters
    and 7.78-220.11 MFLOPs: the cells without convolutions and the all-3x3 cell. Ours differ by
    the 96 biases of the two shortcut convs (see the module docstring)."""
    light = analyze(nb201_genome(["skip_connect"] * 6, CIFAR, 10))
    heavy = analyze(nb201_genome(["nor_conv_3x3"] * 6, CIFAR, 10))
    assert light.params == 73_402 and light.params - 96 == pytest.approx(73_306)
    assert heavy.params == 1_531_642
    assert light.flops == 7_783_040          # 7.78 MFLOPs
    assert heavy.flops == 220_119_680        # 220.12 MFLOPs (the benchmark: 220.11)
    # pools and none add nothing to the parameters either
    assert analyze(nb201_genome(["avg_pool_3x3", "none"] * 3, CIFAR, 10)).params == 73_402


@pytest.mark.parametrize("shape", [(1, 8, 8), (1, 40), CIFAR])
def test_compiled_parameters_equal_the_symbolic_count(shape):
    space = get_space("nb201", cell_channels=8, cells=2)
    rng = np.random.default_rng(0)
    for _ in range(6):
        genome = space.sample(rng, shape, 10)
        module = build(genome, seed=1)
        assert count_parameters(module) == analyze(genome).params
        assert module(torch.randn(2, *shape)).shape == (2, 10)
        assert module.genome_hash == genome.hash


def test_node_parameters_sum_to_the_total_and_the_first_copy_gives_shapes():
    genome = nb201_genome(["nor_conv_3x3", "nor_conv_1x1", "none", "skip_connect",
                           "avg_pool_3x3", "nor_conv_3x3"], (1, 8, 8), 10, channels=4, cells=2)
    info = analyze(genome)
    assert sum(info.node_params.values()) == info.params
    assert info.out_shapes[5] == (4, 8, 8)          # edge 0->1, first stage, first copy
    # a 3x3 conv on edge 0->1 in 2 cells of each stage, at 4, 8 and 16 channels
    assert info.node_params[5] == 2 * sum(c * c * 9 + 2 * c for c in (4, 8, 16))
    assert info.out_shapes[7] == ()                 # edge 1->2 is none: not in the network


def test_the_arch_string_round_trips():
    text = ("|nor_conv_3x3~0|+|nor_conv_1x1~0|none~1|+|skip_connect~0|avg_pool_3x3~1|"
            "nor_conv_3x3~2|")
    genome = nb201_genome(parse_arch_string(text), CIFAR, 10)
    assert arch_string(genome) == text
    assert cell_ops(genome)[(1, 2)] == "none" and cell_ops(genome)[(2, 3)] == "nor_conv_3x3"
    rng = np.random.default_rng(3)
    space = get_space("nb201")
    for _ in range(20):
        sampled = space.sample(rng, (1, 8, 8), 10)
        again = nb201_genome(parse_arch_string(arch_string(sampled)), (1, 8, 8), 10,
                             genes=sampled.gene)
        assert again == sampled


@pytest.mark.parametrize("text, message", [
    ("|nor_conv_3x3~0|+|none~0|none~1|", "needs 3 '+'-separated nodes, got 2"),
    ("|nor_conv_3x3~0|+|none~0|+|none~0|none~1|none~2|", "node 2: needs 2 inputs, got 1"),
    ("|conv_3x3~0|+|none~0|none~1|+|none~0|none~1|none~2|", "node 1, input 0: 'conv_3x3~0'"),
    ("|none~1|+|none~0|none~1|+|none~0|none~1|none~2|", "node 1, input 0: 'none~1'"),
    ("nor_conv_3x3~0+|none~0|none~1|+|none~0|none~1|none~2|", "must be enclosed in '|'"),
])
def test_a_malformed_arch_string_is_one_line_naming_the_part(text, message):
    with pytest.raises(ValueError) as error:
        parse_arch_string(text)
    assert message in str(error.value) and "\n" not in str(error.value)


def _edited(edit) -> Genome:
    genome = nb201_genome(["nor_conv_3x3"] * 6, (1, 8, 8), 10)
    nodes = {n.id: n for n in genome.nodes}
    edges = set(genome.edges)
    edit(nodes, edges)
    return Genome.make(nodes.values(), edges, genome.gene)


@pytest.mark.parametrize("edit, message", [
    (lambda n, e: n.update({6: Node.make(6, "sep_conv_3x3")}),
     "node 6: op 'sep_conv_3x3' is not an nb201 edge op"),
    (lambda n, e: n.update({6: Node.make(6, "sep_conv_9x9")}), "node 6: unknown op"),
    (lambda n, e: n.update({6: Node.make(6, "conv", out_channels=4, kernel_h=3, kernel_w=3,
                                         stride_h=1, stride_w=1, bn=True, relu=True)}),
     "node 6: op 'conv' is not an nb201 edge op"),
    (lambda n, e: (e.discard((6, 3)), e.add((6, 2))),
     "node 6: edge 0->1 has two ops"),
    (lambda n, e: (e.discard((2, 7)), e.discard((7, 3)), e.add((3, 7)), e.add((7, 2))),
     "node 7: input cell node 2 is out of range for cell node 1"),
    (lambda n, e: e.add((4, 2)), "cycle"),
    # edge 2->3 cut from its target: it and cell node 2, which only it reads, lead nowhere
    (lambda n, e: e.discard((10, 4)), "node 3: node does not lead to the output (dangling)"),
    (lambda n, e: n.update({1: Node.make(1, "skeleton", name="nasnet-x", channels=16, cells=5,
                                         stages=3)}), "node 1: unknown skeleton 'nasnet-x'"),
])
def test_a_malformed_cell_is_one_line_naming_the_node(edit, message):
    with pytest.raises(InvalidGenome) as error:
        analyze(_edited(edit))
    assert message in str(error.value) and "\n" not in str(error.value)


def test_a_template_op_outside_a_cell_genome_is_refused():
    nodes = [Node.make(0, "input", shape=(1, 8, 8)), Node.make(1, "nor_conv_3x3"),
             Node.make(2, "output", num_classes=10)]
    with pytest.raises(InvalidGenome, match="node 1: op 'nor_conv_3x3' belongs in a cell genome"):
        analyze(Genome.make(nodes, [(0, 1), (1, 2)]))


def test_an_op_outside_the_space_is_named():
    space = get_space("nb201", ops=("none", "skip_connect", "nor_conv_1x1"))
    genome = nb201_genome(["nor_conv_3x3"] * 6, (1, 8, 8), 10)
    with pytest.raises(InvalidGenome, match="node 5: op 'nor_conv_3x3' is not in space nb201"):
        analyze(genome, space)
    assert all(op in space.ops for op in cell_ops(space.sample(np.random.default_rng(0),
                                                               (1, 8, 8), 10)).values())


def test_the_network_is_the_benchmarks_skeleton():
    """Stem, 3 stages of N cells (copies numbered from 1000), 2 residual reductions, head;
    a none edge is left out and a node nothing reaches is a zero."""
    genome = nb201_genome(["none", "none", "none", "skip_connect", "none", "none"],
                          (1, 8, 8), 10, channels=4, cells=2)
    network = expand(genome)
    ops = [network.node(i).op for i in network.topological_order()]
    assert ops.count("relu_conv_bn") == 4 and ops.count("avg_pool") == 2   # 2 reductions
    assert ops[:2] == ["input", "conv"] and ops[-2:] == ["bn_relu", "output"]
    # only edge 0->3 survives in each of the 6 copies; nodes 1, 2 lead nowhere: pruned
    assert sorted(i for i in network.ids if 1000 <= i < 10_000_000) == sorted(
        [1000 * k + t for k in range(1, 7) for t in (8, 4)])


def test_generated_model_py_computes_the_compiled_outputs():
    genome = get_space("nb201", cell_channels=4, cells=1).sample(np.random.default_rng(5),
                                                                 (1, 8, 8), 10)
    module = build(genome, seed=0).eval()
    generated = generate(genome)
    namespace: dict = {}
    exec(generated.source, namespace)  # noqa: S102 (the generated file under test)
    net = namespace["EvolvedNet"]()
    net.load_state_dict(generated.remap(module.state_dict()))
    x = torch.randn(3, 1, 8, 8)
    assert torch.equal(net.eval()(x), module(x))
    assert genome.hash in generated.source


def test_every_edge_is_in_the_string_order():
    assert EDGES == ((0, 1), (0, 2), (1, 2), (0, 3), (1, 3), (2, 3))
