"""The NASNet search space (Zoph et al., *Learning Transferable Architectures for Scalable Image
Recognition*, CVPR 2018), as AmoebaNet (Real et al., AAAI 2019) evolves it: a normal and a
reduction cell, each of ``B`` blocks; the ``nasnet`` space.

A block takes two hidden states of its cell — the two cell inputs ``h0`` (the output of the cell
two back) and ``h1`` (the previous cell's), or an earlier block's output — applies one op of
:data:`~.ops.NASNET_OPS` to each and adds the results. The hidden states that no block of the
cell uses are concatenated into the cell's output. As a genome, each cell is (template ids; the
reduction cell's are the normal cell's + 100)::

    cell_input h0, h1 (ids 10, 11) -> op nodes (50 + 2b + slot) -> block b (20 + b)
    -> cell_output (109) -> output

all under one ``skeleton`` node (the stem) fed by the input. A cell input that no block uses is
joined to the cell's output node so the graph stays connected; the network leaves it out (as the
paper's cells, whose output concatenates unused *block* outputs only).

The skeleton, after DARTS (Liu et al. 2019) whose op implementations it uses: a 3x3 conv stem
with batch norm at ``channels``; ``stages`` stages of ``cells`` normal cells, a reduction cell
between stages doubling the channels; in each cell the inputs are first brought to the cell's
channels (ReLU-conv1x1-BN, or a factorized reduction for ``h0`` after a reduction); in the
reduction cell the ops on the cell inputs have stride 2; a global pool and a linear classifier
end it. A 1-D signal runs with 1-high kernels.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from ...errors import InvalidGenome
from ..core import Genome, Node
from ..ops import Shape, spatial_shape
from ..space import SearchSpace, register_space
from .ops import NASNET_OPS
from .skeleton import CELL_ID_BASE, Skeleton, prune_dead, register_skeleton, window

CELLS = ("normal", "reduce")
CELL_BASE = {"normal": 0, "reduce": 100}
MAX_BLOCKS = 20
OUTPUT_ID = 999


@dataclasses.dataclass(frozen=True)
class Block:
    """A block: the hidden states it reads (0, 1: the cell inputs; 2 + b: block b) and the op
    applied to each."""

    inputs: tuple[int, int]
    ops: tuple[str, str]


def input_id(cell: str, which: int) -> int:
    return CELL_BASE[cell] + 10 + which


def block_id(cell: str, b: int) -> int:
    return CELL_BASE[cell] + 20 + b


def op_id(cell: str, b: int, slot: int) -> int:
    return CELL_BASE[cell] + 50 + 2 * b + slot


def output_id(cell: str) -> int:
    return CELL_BASE[cell] + 99


def state_id(cell: str, state: int) -> int:
    """The template node of hidden state ``state`` of ``cell``."""
    return input_id(cell, state) if state < 2 else block_id(cell, state - 2)


def unused_states(blocks: tuple[Block, ...]) -> list[int]:
    """The hidden states no block reads (cell inputs included), in order."""
    used = {i for block in blocks for i in block.inputs}
    return [s for s in range(len(blocks) + 2) if s not in used]


def nasnet_genome(normal: tuple[Block, ...], reduce: tuple[Block, ...], input_shape: Shape,
                  num_classes: int, channels: int = 16, cells: int = 2, stages: int = 3,
                  genes: dict[str, Any] | None = None) -> Genome:
    """The cell genome of a normal and a reduction cell in the NASNet skeleton."""
    nodes = [Node.make(0, "input", shape=tuple(input_shape)),
             Node.make(1, "skeleton", name="nasnet", channels=channels, cells=cells,
                       stages=stages),
             Node.make(OUTPUT_ID, "output", num_classes=num_classes)]
    edges: list[tuple[int, int]] = [(0, 1)]
    for cell, blocks in (("normal", normal), ("reduce", reduce)):
        nodes += [Node.make(input_id(cell, w), "cell_input", cell=cell, which=("h0", "h1")[w])
                  for w in (0, 1)]
        nodes.append(Node.make(output_id(cell), "cell_output", cell=cell))
        edges += [(1, input_id(cell, 0)), (1, input_id(cell, 1)), (output_id(cell), OUTPUT_ID)]
        for b, block in enumerate(blocks):
            nodes.append(Node.make(block_id(cell, b), "block", cell=cell, index=b + 1))
            for slot in (0, 1):
                nodes.append(Node.make(op_id(cell, b, slot), block.ops[slot]))
                edges += [(state_id(cell, block.inputs[slot]), op_id(cell, b, slot)),
                          (op_id(cell, b, slot), block_id(cell, b))]
        edges += [(state_id(cell, s), output_id(cell)) for s in unused_states(blocks)]
    return Genome.make(nodes, edges, genes)


def cell_blocks(genome: Genome, cell: str) -> tuple[Block, ...]:
    """The blocks of ``cell``, read from a genome built by :func:`nasnet_genome` (or one
    edited in its form)."""
    state_of = {input_id(cell, w): w for w in (0, 1)}
    count = len([n for n in genome.nodes if n.op == "block" and n.get("cell") == cell])
    state_of.update({block_id(cell, b): b + 2 for b in range(count)})
    blocks = []
    for b in range(count):
        inputs, ops = [], []
        for slot in (0, 1):
            node = op_id(cell, b, slot)
            (source,) = genome.predecessors(node)
            inputs.append(state_of[source])
            ops.append(genome.node(node).op)
        blocks.append(Block((inputs[0], inputs[1]), (ops[0], ops[1])))
    return tuple(blocks)


# -- checks --------------------------------------------------------------------------------------
def cell_of(node_id: int) -> str:
    """The cell whose template ids ``node_id`` is in."""
    return "reduce" if node_id >= CELL_BASE["reduce"] else "normal"


def check(genome: Genome, skeleton: Node) -> None:
    """One line naming the node for what a NASNet cell genome cannot be."""
    where = f"node {skeleton.id}"
    if not 1 <= skeleton.get("cells") <= 50 or not 1 <= skeleton.get("stages") <= 6:
        raise InvalidGenome("cells must be in [1, 50] and stages in [1, 6]", where)
    for node in genome.nodes:
        if node.op in ("input", "output", "skeleton"):
            continue
        if node.id == OUTPUT_ID or node.id > OUTPUT_ID:
            raise InvalidGenome(f"template id {node.id} is outside the cells", f"node {node.id}")
        if node.get("cell") is not None and node.get("cell") != cell_of(node.id):
            raise InvalidGenome(f"a {node.get('cell')} cell's {node.op} in the "
                                f"{cell_of(node.id)} cell's place", f"node {node.id}")
        if node.op not in ("cell_input", "block", "cell_output") and node.op not in NASNET_OPS:
            raise InvalidGenome(f"op {node.op!r} is not a nasnet op (one of "
                                f"{', '.join(NASNET_OPS)})", f"node {node.id}")
    for cell in CELLS:
        _check_cell(genome, cell)
    expected = nasnet_genome(cell_blocks(genome, "normal"), cell_blocks(genome, "reduce"),
                             genome.input_node.get("shape"),
                             genome.output_node.get("num_classes"), skeleton.get("channels"),
                             skeleton.get("cells"), skeleton.get("stages"), genome.gene)
    if expected != genome:
        differ = sorted(set(genome.nodes) ^ set(expected.nodes), key=lambda n: n.id)
        edges = sorted(set(genome.edges) ^ set(expected.edges))
        what = f"node {differ[0].id}" if differ else f"edge {edges[0][0]}->{edges[0][1]}"
        raise InvalidGenome("not in the nasnet cell form (the cell output joins exactly the "
                            "unused hidden states; ids as nasnet_genome numbers them)", what)


def _check_cell(genome: Genome, cell: str) -> None:
    count = len([n for n in genome.nodes if n.op == "block" and n.get("cell") == cell])
    if not 1 <= count <= MAX_BLOCKS:
        raise InvalidGenome(f"the {cell} cell needs 1 to {MAX_BLOCKS} blocks, has {count}")
    for node_id in [input_id(cell, 0), input_id(cell, 1), output_id(cell),
                    *[block_id(cell, b) for b in range(count)]]:
        if not genome.has_node(node_id):
            raise InvalidGenome(f"the {cell} cell lacks its node {node_id}")
    states = {state_id(cell, s): s for s in range(count + 2)}
    for b in range(count):
        for slot in (0, 1):
            node_id = op_id(cell, b, slot)
            if not genome.has_node(node_id):
                raise InvalidGenome(f"block {b + 1} of the {cell} cell lacks op {slot + 1}",
                                    f"node {block_id(cell, b)}")
            sources = genome.predecessors(node_id)
            if len(sources) != 1 or sources[0] not in states:
                raise InvalidGenome(f"an op reads one hidden state of its cell, this reads "
                                    f"{sources}", f"node {node_id}")
            if states[sources[0]] >= b + 2:
                raise InvalidGenome(
                    f"block {b + 1} of the {cell} cell reads hidden state "
                    f"{states[sources[0]]}, out of range (0 to {b + 1}: the cell inputs and "
                    "earlier blocks)", f"node {node_id}")


def place(genome: Genome, node_id: int) -> str:
    """Where a template node sits: ``"normal cell, block 2, op 1"``, ``"reduce cell, input
    h0"``, ``"normal cell, block 3"``, ``"normal cell, output"``."""
    node, cell = genome.node(node_id), cell_of(node_id)
    if node.op == "cell_input":
        return f"{cell} cell, input {node.get('which')}"
    if node.op == "block":
        return f"{cell} cell, block {node.get('index')}"
    if node.op == "cell_output":
        return f"{cell} cell, output"
    b, slot = divmod(node_id - CELL_BASE[cell] - 50, 2)
    return f"{cell} cell, block {b + 1}, op {slot + 1}"


def state_name(state: int) -> str:
    return ("h0", "h1")[state] if state < 2 else f"block {state - 1}"


# -- expansion -------------------------------------------------------------------------------------
def expand(genome: Genome, skeleton: Node) -> Genome:
    """The network genome (see the module docstring): stem, then per stage ``cells`` copies of
    the normal cell and, between stages, one of the reduction cell, then the classifier."""
    p = skeleton.p
    one_d = spatial_shape(genome.input_node.get("shape"))[1] == 1
    blocks = {cell: cell_blocks(genome, cell) for cell in CELLS}
    nodes = [genome.input_node,
             Node.make(skeleton.id, "conv", out_channels=p["channels"], bn=True, relu=False,
                       **window(3, 1, one_d))]
    edges = [(genome.input_node.id, skeleton.id)]
    schedule: list[tuple[str, int]] = []
    for stage in range(p["stages"]):
        schedule += [("normal", p["channels"] * 2 ** stage)] * p["cells"]
        if stage < p["stages"] - 1:
            schedule.append(("reduce", p["channels"] * 2 ** (stage + 1)))
    # the two latest hidden states: (node id, channels, reductions so far)
    older = newer = (skeleton.id, p["channels"], 0)
    for copy, (cell, channels) in enumerate(schedule, start=1):
        out = _cell_copy(nodes, edges, blocks[cell], cell, CELL_ID_BASE * copy, older, newer,
                         channels, one_d)
        older, newer = newer, (out[0], out[1], newer[2] + (cell == "reduce"))
    nodes.append(genome.output_node)
    edges.append((newer[0], genome.output_node.id))
    nodes, edges = prune_dead(nodes, edges, genome.output_node.id)
    return Genome.make(nodes, edges, genome.gene)


def _cell_copy(nodes: list[Node], edges: list, blocks: tuple[Block, ...], cell: str, base: int,
               older: tuple, newer: tuple, channels: int, one_d: bool) -> tuple[int, int]:
    """Append one copy of ``cell``; returns its output's id and channels."""
    states = {0: base + input_id(cell, 0), 1: base + input_id(cell, 1)}
    if older[2] != newer[2]:   # h0 is a reduction behind h1: halve it on the way in
        nodes.append(Node.make(states[0], "factorized_reduce", out_channels=channels,
                               stride_h=1 if one_d else 2, stride_w=2))
    else:
        nodes.append(Node.make(states[0], "relu_conv_bn", out_channels=channels,
                               **window(1, 1, one_d)))
    nodes.append(Node.make(states[1], "relu_conv_bn", out_channels=channels,
                           **window(1, 1, one_d)))
    edges += [(older[0], states[0]), (newer[0], states[1])]
    for b, block in enumerate(blocks):
        node_id = base + block_id(cell, b)
        for slot in (0, 1):
            source = block.inputs[slot]
            stride = 2 if cell == "reduce" and source < 2 else 1
            op = base + op_id(cell, b, slot)
            nodes.append(_op_node(op, block.ops[slot], channels, stride, one_d))
            edges += [(states[source], op), (op, node_id)]
        nodes.append(Node.make(node_id, "identity"))       # the block adds its two ops
        states[b + 2] = node_id
    unused = [s for s in unused_states(blocks) if s >= 2]
    out = base + output_id(cell)
    nodes.append(Node.make(out, "concat"))
    edges += [(states[s], out) for s in unused]
    return out, channels * len(unused)


def _op_node(node_id: int, op: str, channels: int, stride: int, one_d: bool) -> Node:
    """The network op of a NASNet op at ``stride`` (DARTS's implementations)."""
    if op.startswith("sep_conv_"):
        return Node.make(node_id, "sep_conv", out_channels=channels,
                         **window(int(op[-1]), stride, one_d))
    if op == "dil_conv_3x3":
        return Node.make(node_id, "dil_conv", out_channels=channels, **window(3, stride, one_d))
    if op == "conv_7x1_1x7":
        return Node.make(node_id, "conv_1x7_7x1", out_channels=channels,
                         stride_h=1 if one_d else stride, stride_w=stride)
    if op in ("avg_pool_3x3", "max_pool_3x3"):
        return Node.make(node_id, op[:8], same=True, **window(3, stride, one_d))
    if stride == 1:
        return Node.make(node_id, "identity")
    return Node.make(node_id, "factorized_reduce", out_channels=channels,
                     stride_h=1 if one_d else 2, stride_w=2)


register_skeleton(Skeleton("nasnet", check, expand, place))


# -- the space -------------------------------------------------------------------------------------
def random_cell(ops: tuple[str, ...], blocks: int, rng: np.random.Generator
                ) -> tuple[Block, ...]:
    """A cell drawn uniformly: each block's two inputs among the states before it, two ops."""
    out = []
    for b in range(blocks):
        inputs = (int(rng.integers(b + 2)), int(rng.integers(b + 2)))
        out.append(Block(inputs, (str(rng.choice(ops)), str(rng.choice(ops)))))
    return tuple(out)


def random_nasnet(space: SearchSpace, rng: np.random.Generator, input_shape: Shape,
                  num_classes: int) -> Genome:
    """Random normal and reduction cells of ``space.blocks`` blocks (AmoebaNet's initial
    population is random), with the space's initial genes."""
    ops = tuple(op for op in space.ops if op in NASNET_OPS)
    return nasnet_genome(random_cell(ops, space.blocks, rng), random_cell(ops, space.blocks, rng),
                         input_shape, num_classes, space.cell_channels, space.cells,
                         space.stages, dict(space.initial_genes))


NASNET_MUTATION_WEIGHTS = (("cell-op", 1.0), ("cell-input", 1.0), ("identity", 0.05))


@register_space("nasnet")
def nasnet_space(**overrides: Any) -> SearchSpace:
    """The NASNet/AmoebaNet space: 5 blocks a cell, the paper's 8 ops (``ops`` may take a
    subset, for CPU), 2 normal cells a stage at 16 channels (small, for CPU). AmoebaNet's
    mutations: op, hidden state, identity."""
    base = SearchSpace(
        name="nasnet", family="cell", ops=NASNET_OPS, cell_channels=16, cells=2, stages=3,
        initial_genes=(("learning_rate", 0.05), ("optimizer", "momentum"),
                       ("weight_decay", 0.0003), ("batch_size", 64)),
        mutation_weights=NASNET_MUTATION_WEIGHTS, max_params=5_000_000,
        initial=random_nasnet, sampler=random_nasnet)
    return dataclasses.replace(base, **overrides)
