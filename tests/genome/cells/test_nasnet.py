"""The NASNet space as cell genomes: a hand count as the oracle of the symbolic count, the
compiled module against it, the skeleton's reductions, AmoebaNet's hidden-state mutation and
block crossover, the controller's codec, and one line per malformed cell."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from evograph.compile import build, count_parameters
from evograph.compile.codegen import generate
from evograph.compile.inherit import inherit_weights
from evograph.errors import InvalidGenome
from evograph.genome import Genome, Node, analyze, get_space
from evograph.genome.cells import expand
from evograph.genome.cells.nasnet import Block, cell_blocks, nasnet_genome, op_id
from evograph.genome.cells.skeleton import template_id
from evograph.genome.codec import codec_for
from evograph.operators import MUTATIONS, crossover

SPACE = get_space("nasnet", cell_channels=4, cells=1, stages=2, blocks=3)
NORMAL = (Block((0, 1), ("sep_conv_3x3", "identity")), Block((2, 1), ("max_pool_3x3", "dil_conv_3x3")),
          Block((0, 3), ("conv_7x1_1x7", "avg_pool_3x3")))
REDUCE = (Block((0, 1), ("sep_conv_5x5", "identity")), Block((2, 0), ("avg_pool_3x3", "sep_conv_3x3")),
          Block((1, 2), ("max_pool_3x3", "dil_conv_3x3")))


def test_a_hand_counted_cell():
    """One normal cell of one block (sep_conv_3x3 on h0 + identity on h1) at 4 channels on
    8x8: stem 36 + 8; two 1x1 preprocessings 2 x (16 + 8); the separable conv twice (9 + 16 +
    8); the classifier 4 x 10 + 10."""
    genome = nasnet_genome((Block((0, 1), ("sep_conv_3x3", "identity")),),
                           (Block((0, 1), ("identity", "identity")),), (1, 8, 8), 10,
                           channels=4, cells=1, stages=1)
    info = analyze(genome)
    assert info.params == 44 + 2 * 24 + 2 * (36 + 16 + 8) + 50 == 262
    assert info.flops == (36 + 2 * 16 + 2 * (36 + 16)) * 64 + 40
    assert count_parameters(build(genome)) == 262


@pytest.mark.parametrize("shape", [(1, 8, 8), (1, 40), (3, 32, 32)])
def test_compiled_parameters_equal_the_symbolic_count_and_model_py_computes_alike(shape):
    rng = np.random.default_rng(0)
    for _ in range(4):
        genome = SPACE.sample(rng, shape, 10)
        module = build(genome, seed=1).eval()
        assert count_parameters(module) == analyze(genome).params
        generated = generate(genome)
        namespace: dict = {}
        exec(generated.source, namespace)  # noqa: S102 (the generated file under test)
        net = namespace["EvolvedNet"]()
        net.load_state_dict(generated.remap(module.state_dict()))
        x = torch.randn(2, *shape)
        assert torch.equal(net.eval()(x), module(x))


def test_the_skeleton_reduces_between_stages():
    """normal (8x8, 4 ch) -> reduce (4x4, 8 ch: ops on the inputs at stride 2, identity as a
    factorized reduction) -> normal, whose h0 (still 8x8) is factorized down to 4x4."""
    genome = nasnet_genome(NORMAL, REDUCE, (1, 8, 8), 10, channels=4, cells=1, stages=2)
    network = expand(genome)
    info = analyze(network)
    reduce_copy, normal_copy = 2000, 3000
    assert info.out_shapes[reduce_copy + op_id("reduce", 0, 0)] == (8, 4, 4)
    assert network.node(reduce_copy + op_id("reduce", 0, 1)).op == "factorized_reduce"
    assert network.node(normal_copy + 10).op == "factorized_reduce"      # h0 of the last cell
    assert network.node(normal_copy + 11).op == "relu_conv_bn"
    # the normal cell's output: its unused block outputs (blocks 1 and 2 are read: block 3)
    assert info.in_shapes[1000 + 99] == (4, 8, 8)
    assert info.out_shapes[normal_copy + 99] == (8, 4, 4)
    # the reduction cell's: blocks 2 and 3 unused (block 1 is read by both), concatenated
    assert info.out_shapes[reduce_copy + 199] == (2 * 8, 4, 4)


def test_the_hidden_state_mutation_rewires_one_op_and_keeps_its_weights():
    genome = nasnet_genome(NORMAL, REDUCE, (1, 8, 8), 10, channels=4, cells=1, stages=2,
                           genes=dict(SPACE.initial_genes))
    for seed in range(8):
        child, edit = MUTATIONS["cell-input"](genome, np.random.default_rng(seed), SPACE)
        node = edit.args["node"]
        cell = edit.args["cell"]
        before, after = cell_blocks(genome, cell), cell_blocks(child, cell)
        changed = [(b, s) for b in range(3) for s in (0, 1)
                   if before[b].inputs[s] != after[b].inputs[s]]
        assert [op_id(cell, b, s) for b, s in changed] == [node]
        assert all(x.ops == y.ops for x, y in zip(before, after))
        analyze(child, SPACE)
        report = inherit_weights(build(child, seed=2), build(genome, seed=1).state_dict())
        renewed = {template_id(int(t.split(".")[1][1:]), 1) for t in report.fresh}
        assert renewed <= {node}   # only a stride change (identity <-> factorized) renews


def test_crossover_takes_whole_blocks():
    a = nasnet_genome(NORMAL, REDUCE, (1, 8, 8), 10, channels=4, cells=1, stages=2)
    b = SPACE.sample(np.random.default_rng(4), (1, 8, 8), 10)
    for seed in range(4):
        child, _ = crossover(a, b, np.random.default_rng(seed), SPACE)
        for cell in ("normal", "reduce"):
            for mine, x, y in zip(cell_blocks(child, cell), cell_blocks(a, cell),
                                  cell_blocks(b, cell)):
                assert mine in (x, y)
        analyze(child, SPACE)


def test_the_controllers_decisions_round_trip():
    codec = codec_for(SPACE, (1, 8, 8), 10)
    assert len(codec.decisions) == 2 * 3 * 4
    assert [d.size for d in codec.decisions[:8]] == [2, 2, 8, 8, 3, 3, 8, 8]
    rng = np.random.default_rng(0)
    for _ in range(10):
        indices = codec.random(rng)
        genome = codec.decode(indices)
        analyze(genome, SPACE)
        assert codec.encode(genome) == codec.check(indices)


def _edited(edit) -> Genome:
    genome = nasnet_genome(NORMAL, REDUCE, (1, 8, 8), 10, channels=4, cells=1, stages=2)
    nodes = {n.id: n for n in genome.nodes}
    edges = set(genome.edges)
    edit(nodes, edges)
    return Genome.make(nodes.values(), edges, genome.gene)


@pytest.mark.parametrize("edit, message", [
    (lambda n, e: n.update({50: Node.make(50, "nor_conv_3x3")}),
     "node 50: op 'nor_conv_3x3' is not a nasnet op"),
    # block 1 (b = 0) reads block 1's own output
    (lambda n, e: (e.discard((10, 50)), e.add((20, 50))), "cycle"),
    # block 2 (b = 1) op 1 reads block 3 (state 4): out of range, no cycle through it
    (lambda n, e: (e.discard((20, 52)), e.add((22, 52))), "cycle"),
    # the output joining block 2, which block 3 reads
    (lambda n, e: e.add((21, 99)), "edge 21->99: not in the nasnet cell form"),
    (lambda n, e: n.update({21: Node.make(21, "block", cell="reduce", index=2)}),
     "node 21: a reduce cell's block in the normal cell's place"),
    (lambda n, e: e.discard((22, 99)), "node does not lead to the output (dangling)"),
])
def test_a_malformed_cell_is_one_line_naming_the_node(edit, message):
    with pytest.raises(InvalidGenome) as error:
        analyze(_edited(edit))
    assert message in str(error.value) and "\n" not in str(error.value)


def test_an_input_index_out_of_range_is_named():
    """Block 1 reading hidden state 3 (block 2): built through the constructor, whose ids make
    it no cycle in the graph, and named by the check."""
    bad = (Block((0, 3), ("identity", "identity")), Block((0, 1), ("identity", "identity")))
    genome = nasnet_genome(bad, REDUCE[:2], (1, 8, 8), 10, channels=4, cells=1, stages=2)
    with pytest.raises(InvalidGenome, match="node 51: block 1 of the normal cell reads hidden "
                                            "state 3, out of range"):
        analyze(genome)
