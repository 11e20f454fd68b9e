"""Mutations and crossover of cell genomes (:mod:`evograph.genome.cells`).

AmoebaNet's *op mutation* (Real et al., *Regularized Evolution for Image Classifier Architecture
Search*, AAAI 2019, §2): one op of the cell is replaced by another op of the space, drawn
uniformly; its node keeps its id, so in every copy of the cell the new op's tensors are matched
by name and inherited where the shapes allow (a 3x3 conv turned 1x1 keeps the kernel's centre),
and everything else in the network is inherited unchanged. Its *hidden-state mutation*
(``cell-input``, NASNet-form cells): one op of a block reads another hidden state of its cell —
a cell input or an earlier block — drawn uniformly; the op keeps its node and its weights. Its
*identity* mutation is the registered ``identity``. Cell crossover takes each NAS-Bench-201 edge
op, or each whole NASNet block, from either parent (ids are shared by the cells' form, so every
op and block has its homologue in the other parent).
"""

from __future__ import annotations

import numpy as np

from ..genome.cells import nasnet
from ..genome.cells.skeleton import skeleton_node
from ..genome.core import Genome, Node
from ..genome.space import CELL_STRUCTURE, SearchSpace
from .base import Edit, NotApplicable, register_mutation

CELL = ("cell",)


def cell_op_nodes(genome: Genome, space: SearchSpace) -> list[int]:
    """The ids of the template's op nodes (neither endpoints nor cell structure)."""
    return [n.id for n in genome.nodes
            if n.op not in ("input", "output") + CELL_STRUCTURE and n.op in space.ops]


@register_mutation("cell-op", CELL)
def cell_op(genome: Genome, rng: np.random.Generator, space: SearchSpace):
    """Replace one op of the cell by another of the space's ops, drawn uniformly."""
    nodes = cell_op_nodes(genome, space)
    if not nodes:
        raise NotApplicable("the cell has no op")
    node = genome.node(nodes[int(rng.integers(len(nodes)))])
    others = [op for op in space.ops if op not in CELL_STRUCTURE and op != node.op]
    if not others:
        raise NotApplicable("the space has one op only")
    op = others[int(rng.integers(len(others)))]
    child = genome.with_node(Node.make(node.id, op))
    return child, Edit("cell-op", {"node": node.id, "from": node.op, "to": op},
                       changed=(node.id,))


@register_mutation("cell-input", CELL)
def cell_input(genome: Genome, rng: np.random.Generator, space: SearchSpace):
    """AmoebaNet's hidden-state mutation: one op of a NASNet-form cell reads another hidden
    state before its block (the cell inputs h0, h1 or an earlier block)."""
    if not _is_nasnet(genome):
        raise NotApplicable("a hidden-state mutation needs NASNet-form cells")
    choices = [(cell, b, slot) for cell in nasnet.CELLS
               for b in range(len(nasnet.cell_blocks(genome, cell))) for slot in (0, 1)]
    cell, b, slot = choices[int(rng.integers(len(choices)))]
    cells = {c: list(nasnet.cell_blocks(genome, c)) for c in nasnet.CELLS}
    block = cells[cell][b]
    others = [s for s in range(b + 2) if s != block.inputs[slot]]
    state = others[int(rng.integers(len(others)))]
    inputs = list(block.inputs)
    inputs[slot] = state
    cells[cell][b] = nasnet.Block((inputs[0], inputs[1]), block.ops)
    child = _rebuilt(genome, cells)
    return child, Edit("cell-input", {"node": nasnet.op_id(cell, b, slot), "cell": cell,
                                      "block": b + 1, "from": nasnet.state_name(block.inputs[slot]),
                                      "to": nasnet.state_name(state)},
                       changed=(nasnet.op_id(cell, b, slot),))


def _is_nasnet(genome: Genome) -> bool:
    node = skeleton_node(genome)
    return node is not None and node.get("name") == "nasnet"


def _rebuilt(genome: Genome, cells: dict[str, list]) -> Genome:
    """``genome`` with its cells' blocks replaced (skeleton, shapes and genes kept)."""
    skeleton = skeleton_node(genome)
    return nasnet.nasnet_genome(tuple(cells["normal"]), tuple(cells["reduce"]),
                                genome.input_node.get("shape"),
                                genome.output_node.get("num_classes"),
                                skeleton.get("channels"), skeleton.get("cells"),
                                skeleton.get("stages"), genome.gene)


def cell_crossover(a: Genome, b: Genome, rng: np.random.Generator,
                   space: SearchSpace) -> tuple[Genome, list[int]]:
    """``a``'s cells with each op (NAS-Bench-201) or block (NASNet) taken from ``b`` half the
    time where ``b`` has its homologue; returns the child and the node ids taken from ``b``."""
    if _is_nasnet(a) and _is_nasnet(b):
        return _block_crossover(a, b, rng)
    child, from_b = a, []
    for node_id in cell_op_nodes(a, space):
        if not b.has_node(node_id) or b.node(node_id) == a.node(node_id):
            continue
        same_place = (a.predecessors(node_id) == b.predecessors(node_id)
                      and a.successors(node_id) == b.successors(node_id))
        if same_place and rng.random() < 0.5:
            child = child.with_node(b.node(node_id))
            from_b.append(node_id)
    return child, from_b


def _block_crossover(a: Genome, b: Genome, rng: np.random.Generator
                     ) -> tuple[Genome, list[int]]:
    """Whole blocks of NASNet cells from ``b`` (inputs and ops), each half the time where
    ``b``'s cell has the block."""
    cells, from_b = {}, []
    for cell in nasnet.CELLS:
        mine, theirs = list(nasnet.cell_blocks(a, cell)), nasnet.cell_blocks(b, cell)
        for index in range(min(len(mine), len(theirs))):
            if theirs[index] != mine[index] and rng.random() < 0.5:
                mine[index] = theirs[index]
                from_b.append(nasnet.block_id(cell, index))
        cells[cell] = mine
    return _rebuilt(a, cells), from_b
