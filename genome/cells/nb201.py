"""The NAS-Bench-201 cell (Dong & Yang, *NAS-Bench-201: Extending the Scope of Reproducible
Neural Architecture Search*, ICLR 2020) as a cell genome, its architecture string, and the
``nb201`` space.

The cell is a DAG of 4 nodes; each of its 6 edges ``i -> j`` (``i < j``) carries one op of
:data:`~.ops.NB201_OPS`, and node ``j`` sums its incoming edges. As a genome (template ids)::

    0 input -> 1 skeleton (= cell node 0) -> edge ops 5..10 -> cell nodes 2, 3, 4 (= 1, 2, 3)
    -> 11 output

with the edges in the order of the architecture string
``|op~0|+|op~0|op~1|+|op~0|op~1|op~2|`` (node 1's input from 0; node 2's from 0, 1; node 3's
from 0, 1, 2). The macro skeleton is the benchmark's: a 3x3 conv stem with batch norm, ``stages``
stages of ``cells`` cells with ``channels`` doubling per stage, a residual block of stride 2
between stages (ReLU-conv3x3/2-BN, ReLU-conv3x3-BN, and a 2x2 average pool + 1x1 conv
shortcut), then BN-ReLU, global pooling and a linear classifier. The benchmark's own is 16
channels, 5 cells, 3 stages. Differences: the shortcut's 1x1 conv has a bias here (the
benchmark's has none), and a 1-D signal runs with 1-high kernels.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from ...errors import InvalidGenome
from ..core import Genome, Node
from ..ops import Shape, spatial_shape
from ..space import SearchSpace, register_space
from .ops import NB201_OPS
from .skeleton import (
    CELL_ID_BASE,
    EXTRA_ID_BASE,
    Skeleton,
    prune_dead,
    register_skeleton,
    window,
)

EDGES = ((0, 1), (0, 2), (1, 2), (0, 3), (1, 3), (2, 3))    # (i, j), in the string's order
CELL_NODE_IDS = {0: 1, 1: 2, 2: 3, 3: 4}                   # cell node -> template id
EDGE_IDS = {edge: 5 + k for k, edge in enumerate(EDGES)}   # edge -> template id
OUTPUT_ID = 11
MAX_CELLS = 100
REDUCTION_BASE, HEAD_ID = EXTRA_ID_BASE, EXTRA_ID_BASE + 1_000_000


def nb201_genome(ops: dict[tuple[int, int], str] | list[str], input_shape: Shape,
                 num_classes: int, channels: int = 16, cells: int = 5, stages: int = 3,
                 genes: dict[str, Any] | None = None) -> Genome:
    """The cell genome of one NAS-Bench-201 cell (``ops`` per edge, or a list in
    :data:`EDGES` order) in its skeleton."""
    if not isinstance(ops, dict):
        ops = dict(zip(EDGES, ops))
    nodes = [Node.make(0, "input", shape=tuple(input_shape)),
             Node.make(1, "skeleton", name="nb201", channels=channels, cells=cells,
                       stages=stages),
             *[Node.make(CELL_NODE_IDS[j], "cell_node", index=j) for j in (1, 2, 3)],
             *[Node.make(EDGE_IDS[e], ops[e]) for e in EDGES],
             Node.make(OUTPUT_ID, "output", num_classes=num_classes)]
    edges = [(0, 1), (CELL_NODE_IDS[3], OUTPUT_ID)]
    for (i, j), node_id in EDGE_IDS.items():
        edges += [(CELL_NODE_IDS[i], node_id), (node_id, CELL_NODE_IDS[j])]
    return Genome.make(nodes, edges, genes)


# -- the architecture string -----------------------------------------------------------------------
def cell_node_indices(genome: Genome) -> dict[int, int]:
    """Template id -> cell node index (the skeleton node is cell node 0)."""
    return {n.id: (0 if n.op == "skeleton" else n.get("index"))
            for n in genome.nodes if n.op in ("skeleton", "cell_node")}


def cell_ops(genome: Genome) -> dict[tuple[int, int], str]:
    """Each edge's op, read from a checked nb201 genome by the cell nodes around each op node."""
    index = cell_node_indices(genome)
    ops = {}
    for node in genome.nodes:
        if node.op in NB201_OPS:
            (source,), (target,) = genome.predecessors(node.id), genome.successors(node.id)
            ops[(index[source], index[target])] = node.op
    return ops


def arch_string(genome: Genome) -> str:
    """The standard NAS-Bench-201 string, e.g. ``|nor_conv_3x3~0|+|none~0|skip_connect~1|+|…|``."""
    ops = cell_ops(genome)
    return "+".join("|" + "|".join(f"{ops[(i, j)]}~{i}" for i in range(j)) + "|"
                    for j in (1, 2, 3))


def parse_arch_string(text: str) -> list[str]:
    """The six ops of an architecture string, in :data:`EDGES` order; a malformed string is one
    ``ValueError`` naming the part that is wrong."""
    parts = text.strip().split("+")
    if len(parts) != 3:
        raise ValueError(f"arch string {text!r}: needs 3 '+'-separated nodes, got {len(parts)}")
    ops: list[str] = []
    for j, part in enumerate(parts, start=1):
        if not (part.startswith("|") and part.endswith("|")):
            raise ValueError(f"arch string node {j} {part!r}: must be enclosed in '|'")
        entries = part[1:-1].split("|")
        if len(entries) != j:
            raise ValueError(f"arch string node {j}: needs {j} inputs, got {len(entries)}")
        for i, entry in enumerate(entries):
            op, _, source = entry.partition("~")
            if op not in NB201_OPS or source != str(i):
                raise ValueError(f"arch string node {j}, input {i}: {entry!r} is not "
                                 f"'<op>~{i}' with op one of {', '.join(NB201_OPS)}")
            ops.append(op)
    order = [(i, j) for j in (1, 2, 3) for i in range(j)]
    by_edge = dict(zip(order, ops))
    return [by_edge[e] for e in EDGES]


# -- checks and expansion --------------------------------------------------------------------------
def check(genome: Genome, skeleton: Node) -> None:
    """One line naming the node for what a NAS-Bench-201 cell cannot be."""
    where = f"node {skeleton.id}"
    if not 1 <= skeleton.get("cells") <= MAX_CELLS:
        raise InvalidGenome(f"cells={skeleton.get('cells')} must be in [1, {MAX_CELLS}]", where)
    if skeleton.get("stages") > 8:
        raise InvalidGenome(f"stages={skeleton.get('stages')} must be at most 8", where)
    cell_nodes = {n.get("index"): n for n in genome.nodes if n.op == "cell_node"}
    if sorted(cell_nodes) != [1, 2, 3] or len(genome.nodes_with_op("cell_node")) != 3:
        raise InvalidGenome("an nb201 cell needs cell nodes with index 1, 2 and 3, once each")
    index = {skeleton.id: 0, **{n.id: i for i, n in cell_nodes.items()}}
    seen: set[tuple[int, int]] = set()
    for node in genome.nodes:
        if node.op in ("input", "output", "skeleton", "cell_node"):
            continue
        if node.op not in NB201_OPS:
            raise InvalidGenome(f"op {node.op!r} is not an nb201 edge op (one of "
                                f"{', '.join(NB201_OPS)})", f"node {node.id}")
        _check_edge(genome, node, index, seen)
    if len(seen) != len(EDGES):
        missing = [f"{i}->{j}" for i, j in EDGES if (i, j) not in seen]
        raise InvalidGenome(f"an nb201 cell needs an op on every edge; missing {missing}")
    for node in cell_nodes.values():
        if any(genome.node(p).op not in NB201_OPS for p in genome.predecessors(node.id)):
            raise InvalidGenome("a cell node takes edge ops only", f"node {node.id}")
    if genome.predecessors(genome.output_node.id) != [cell_nodes[3].id]:
        raise InvalidGenome("the output must read cell node 3 alone",
                            f"node {genome.output_node.id}")


def _check_edge(genome: Genome, node: Node, index: dict[int, int],
                seen: set[tuple[int, int]]) -> None:
    where = f"node {node.id}"
    sources, targets = genome.predecessors(node.id), genome.successors(node.id)
    if len(sources) != 1 or len(targets) != 1:
        raise InvalidGenome("an edge op needs exactly one input and one output cell node", where)
    if sources[0] not in index or targets[0] not in index:
        raise InvalidGenome("an edge op must join two cell nodes", where)
    edge = (index[sources[0]], index[targets[0]])
    if edge[0] >= edge[1]:
        raise InvalidGenome(f"input cell node {edge[0]} is out of range for cell node "
                            f"{edge[1]} (inputs come from earlier nodes)", where)
    if edge in seen:
        raise InvalidGenome(f"edge {edge[0]}->{edge[1]} has two ops", where)
    seen.add(edge)


def edge_node(node_id: int, op: str, channels: int, one_d: bool) -> Node:
    """The network node of an edge's op (not ``none``, which has no node): what an edge
    compiles to, in a genome's expansion and in the DARTS supernet's mixed ops."""
    if op == "skip_connect":
        return Node.make(node_id, "identity")
    if op == "avg_pool_3x3":
        return Node.make(node_id, "avg_pool", same=True, **window(3, 1, one_d))
    kernel = 1 if op == "nor_conv_1x1" else 3
    return Node.make(node_id, "relu_conv_bn", out_channels=channels,
                     **window(kernel, 1, one_d))


def expand(genome: Genome, skeleton: Node) -> Genome:
    """The network genome (see the module docstring); ``none`` edges are left out, a cell node
    that nothing reaches is a ``zero``, and nodes leading nowhere are pruned."""
    p = skeleton.p
    one_d = spatial_shape(genome.input_node.get("shape"))[1] == 1
    ops = cell_ops(genome)
    nodes = [genome.input_node,
             Node.make(skeleton.id, "conv", out_channels=p["channels"], bn=True, relu=False,
                       **window(3, 1, one_d))]
    edges = [(genome.input_node.id, skeleton.id)]
    previous, copy = skeleton.id, 0
    for stage in range(p["stages"]):
        channels = p["channels"] * 2 ** stage
        if stage:
            previous = _reduction(nodes, edges, previous, stage, channels, one_d)
        for _ in range(p["cells"]):
            copy += 1
            previous = _cell(nodes, edges, ops, previous, CELL_ID_BASE * copy, channels, one_d)
    nodes += [Node.make(HEAD_ID, "bn_relu"), genome.output_node]
    edges += [(previous, HEAD_ID), (HEAD_ID, genome.output_node.id)]
    nodes, edges = prune_dead(nodes, edges, genome.output_node.id)
    return Genome.make(nodes, edges, genome.gene)


def _cell(nodes: list[Node], edges: list, ops: dict, cell_input: int, base: int,
          channels: int, one_d: bool) -> int:
    """Append one copy of the cell; returns the id of its output (cell node 3)."""
    ids = {0: cell_input, **{j: base + CELL_NODE_IDS[j] for j in (1, 2, 3)}}
    for j in (1, 2, 3):
        inputs = []
        for i in range(j):
            if ops[(i, j)] == "none":
                continue
            node_id = base + EDGE_IDS[(i, j)]
            nodes.append(edge_node(node_id, ops[(i, j)], channels, one_d))
            edges.append((ids[i], node_id))
            inputs.append(node_id)
        nodes.append(Node.make(ids[j], "identity" if inputs else "zero"))
        edges += [(i, ids[j]) for i in inputs] or [(cell_input, ids[j])]
    return ids[3]


def _reduction(nodes: list[Node], edges: list, previous: int, stage: int, channels: int,
               one_d: bool) -> int:
    """The residual block of stride 2 between stages; returns the id of its sum."""
    a, b, pool, short, out = (REDUCTION_BASE + 10 * stage + r for r in range(5))
    nodes += [Node.make(a, "relu_conv_bn", out_channels=channels, **window(3, 2, one_d)),
              Node.make(b, "relu_conv_bn", out_channels=channels, **window(3, 1, one_d)),
              Node.make(pool, "avg_pool", same=False, **window(2, 2, one_d)),
              Node.make(short, "conv", out_channels=channels, bn=False, relu=False,
                        **window(1, 1, one_d)),
              Node.make(out, "identity")]
    edges += [(previous, a), (a, b), (previous, pool), (pool, short), (b, out), (short, out)]
    return out


def place(genome: Genome, node_id: int) -> str:
    """``"nb201 cell, edge i->j"`` of an edge op node, ``"nb201 cell, node j"`` of a cell
    node."""
    node = genome.node(node_id)
    if node.op == "cell_node":
        return f"nb201 cell, node {node.get('index')}"
    index = cell_node_indices(genome)
    (source,), (target,) = genome.predecessors(node_id), genome.successors(node_id)
    return f"nb201 cell, edge {index[source]}->{index[target]}"


register_skeleton(Skeleton("nb201", check, expand, place))


# -- the space -------------------------------------------------------------------------------------
def random_nb201(space: SearchSpace, rng: np.random.Generator, input_shape: Shape,
                 num_classes: int) -> Genome:
    """A cell drawn uniformly from the space's ops on every edge (the benchmark's random
    search), with the space's initial genes."""
    ops = [str(rng.choice([op for op in space.ops if op in NB201_OPS])) for _ in EDGES]
    return nb201_genome(ops, input_shape, num_classes, space.cell_channels, space.cells,
                        space.stages, dict(space.initial_genes))


NB201_MUTATION_WEIGHTS = (("cell-op", 1.0), ("identity", 0.05))


@register_space("nb201")
def nb201_space(**overrides: Any) -> SearchSpace:
    """The NAS-Bench-201 space (15,625 cells); ``ops`` may take a subset for CPU. Training genes
    after the benchmark's recipe (SGD with Nesterov-free momentum 0.9, lr 0.1, weight decay
    5e-4), batch size 64 for small datasets."""
    base = SearchSpace(
        name="nb201", family="cell", ops=NB201_OPS,
        initial_genes=(("learning_rate", 0.1), ("optimizer", "momentum"),
                       ("weight_decay", 0.0005), ("batch_size", 64)),
        weight_decay=(0.0, 1e-2), mutation_weights=NB201_MUTATION_WEIGHTS,
        initial=random_nb201, sampler=random_nb201)
    return dataclasses.replace(base, **overrides)
