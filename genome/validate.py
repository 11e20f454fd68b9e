"""Validation before allocation: structure, shapes after merges, and a symbolic budget check.

``analyze(genome, space)`` either returns a :class:`GenomeInfo` (every node's shapes, total
parameters and FLOPs) or raises :class:`~evograph.errors.InvalidGenome` naming the node or edge and
the reason. Nothing here allocates a tensor, so a hostile or over-grown genome is rejected cheaply.

**Merge rule** (after Real et al. 2017, §3): a node with several inputs sums them element-wise
after reconciling each input to the *first* input (the predecessor with the smallest id, normally
the main path):

* spatial size: every input is average-pooled down to the smallest height and width among the
  inputs (strides are powers of two, so this is the coarsest scale);
* channels / features: inputs with more channels than the first are truncated, inputs with fewer
  are zero-padded, so the merged tensor has the first input's channel count.

Spatial and flat inputs cannot be merged; that is an error naming the node.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import networkx as nx

from ..errors import InvalidGenome
from .cells.skeleton import (
    expand,
    is_cell_genome,
    skeleton_node,
    template_id,
)
from .core import Genome
from .ops import OPS, Shape, check_params, is_spatial

if TYPE_CHECKING:  # pragma: no cover
    from .space import SearchSpace


@dataclass(frozen=True)
class GenomeInfo:
    """What validation learned about a genome: shapes, parameter and FLOP counts."""

    order: tuple[int, ...]            # topological order of node ids
    in_shapes: dict[int, Shape]       # merged input shape of each node (input node: its own)
    out_shapes: dict[int, Shape]
    node_params: dict[int, int]
    params: int
    flops: int

    def summary(self) -> str:
        return f"{len(self.order)} nodes, {self.params:,} params, {self.flops:,} FLOPs"


def merged_shape(node_id: int, shapes: list[Shape]) -> Shape:
    """The shape a merge of ``shapes`` takes (see the module docstring for the rule)."""
    first = shapes[0]
    if len({is_spatial(s) for s in shapes}) > 1:
        raise InvalidGenome(f"cannot merge spatial and flat inputs {shapes}", f"node {node_id}")
    if not is_spatial(first):
        return first
    return (first[0], min(s[1] for s in shapes), min(s[2] for s in shapes))


def concatenated_shape(node_id: int, shapes: list[Shape]) -> Shape:
    """The shape of ``shapes`` concatenated on channels (a NASNet cell's output): spatial
    inputs of one height and width."""
    if not all(is_spatial(s) for s in shapes) or len({s[1:] for s in shapes}) > 1:
        raise InvalidGenome(f"cannot concatenate inputs of shapes {shapes} (spatial inputs of "
                            "one size only)", f"node {node_id}")
    return (sum(s[0] for s in shapes), *shapes[0][1:])


def check_structure(genome: Genome) -> list[int]:
    """Check the graph is a DAG with one input, one output and every node on a path between.

    Returns a topological order. Raises InvalidGenome naming the offending node or edge.
    """
    if not genome.nodes:
        raise InvalidGenome("genome has no nodes")
    ids = set(genome.ids)
    if len(ids) != len(genome.nodes):
        raise InvalidGenome("duplicate node ids")
    for a, b in genome.edges:
        if a not in ids or b not in ids:
            raise InvalidGenome("edge refers to a node that does not exist", f"edge {a}->{b}")
        if a == b:
            raise InvalidGenome("self-loop", f"edge {a}->{b}")
    for op in ("input", "output"):
        found = genome.nodes_with_op(op)
        if len(found) != 1:
            raise InvalidGenome(f"genome needs exactly one {op!r} node, found {len(found)}")
    graph = genome.graph
    try:
        cycle = nx.find_cycle(graph)
        raise InvalidGenome("graph has a cycle", f"edge {cycle[0][0]}->{cycle[0][1]}")
    except nx.NetworkXNoCycle:
        pass
    source, sink = genome.input_node.id, genome.output_node.id
    if genome.predecessors(source):
        raise InvalidGenome("the input node cannot have inputs", f"node {source}")
    if genome.successors(sink):
        raise InvalidGenome("the output node cannot feed other nodes", f"node {sink}")
    reachable = nx.descendants(graph, source) | {source}
    useful = nx.ancestors(graph, sink) | {sink}
    for node_id in genome.ids:
        if node_id not in reachable:
            raise InvalidGenome("node is not reachable from the input", f"node {node_id}")
        if node_id not in useful:
            raise InvalidGenome("node does not lead to the output (dangling)", f"node {node_id}")
    return genome.topological_order()


_MEMO = "_analysis"  # a genome's analysis, kept on the (immutable) instance like a cached_property


def analyze(genome: Genome, space: SearchSpace | None = None) -> GenomeInfo:
    """Validate ``genome`` (and, if given, its fit to ``space``); return shapes and counts.
    Genomes are immutable, so the analysis is computed once per genome object (a mutation
    validates its child, and the driver later wants the same child's FLOPs); only the fit to
    ``space`` is checked on every call."""
    info = genome.__dict__.get(_MEMO)
    if info is None:
        info = _analyze(genome)
        genome.__dict__[_MEMO] = info
    if space is not None:
        space.check(genome, info)
    return info


def known_analysis(genome: Genome) -> GenomeInfo | None:
    """The genome's analysis if some :func:`analyze` call already made it, else None (free)."""
    return genome.__dict__.get(_MEMO)


def _analyze(genome: Genome) -> GenomeInfo:
    for node in genome.nodes:
        check_params(node)
    order = check_structure(genome)
    if is_cell_genome(genome):
        return _analyze_cells(genome, order)
    template = [n for n in genome.nodes if OPS[n.op].template]
    if template:
        raise InvalidGenome(f"op {template[0].op!r} belongs in a cell genome (one with a "
                            "'skeleton' node)", f"node {template[0].id}")
    in_shapes: dict[int, Shape] = {}
    out_shapes: dict[int, Shape] = {}
    node_params: dict[int, int] = {}
    flops = 0
    for node_id in order:
        node = genome.node(node_id)
        spec = OPS[node.op]
        preds = genome.predecessors(node_id)
        join = concatenated_shape if spec.concat else merged_shape
        shape_in = join(node_id, [out_shapes[p] for p in preds]) if preds else ()
        if spec.spatial_only and not is_spatial(shape_in):
            raise InvalidGenome(f"op {node.op!r} needs a spatial input, got {shape_in}",
                                f"node {node_id}")
        shape_out = spec.infer(node, shape_in)
        in_shapes[node_id] = shape_in if preds else shape_out
        out_shapes[node_id] = shape_out
        node_params[node_id], node_flops = spec.count(node, in_shapes[node_id], shape_out)
        flops += node_flops
    return GenomeInfo(tuple(order), in_shapes, out_shapes, node_params,
                      sum(node_params.values()), flops)


def _analyze_cells(genome: Genome, order: list[int]) -> GenomeInfo:
    """A cell genome's analysis: its skeleton's checks, then the expanded network's, whose
    totals it reports. Each template node's shapes are its first copy's and its parameters the
    sum over its copies; the nodes of the skeleton alone (stem, reductions, head) count to the
    skeleton node, so the parameters still sum to the total (:func:`template_id`)."""
    network = analyze(expand(genome))   # expand runs the skeleton's checks first
    in_shapes: dict[int, Shape] = {}
    out_shapes: dict[int, Shape] = {}
    node_params = dict.fromkeys(order, 0)
    anchor = skeleton_node(genome).id
    for node_id in network.order:           # topological: a first copy comes first
        template = template_id(node_id, anchor)
        in_shapes.setdefault(template, network.in_shapes[node_id])
        out_shapes.setdefault(template, network.out_shapes[node_id])
        node_params[template] += network.node_params[node_id]
    for node_id in order:  # template nodes the network leaves out (none, pruned): no shape
        in_shapes.setdefault(node_id, ())
        out_shapes.setdefault(node_id, ())
    return GenomeInfo(tuple(order), in_shapes, out_shapes, node_params, network.params,
                      network.flops)


def validate(genome: Genome, space: SearchSpace | None = None) -> GenomeInfo:
    """Alias of :func:`analyze`, for call sites that validate for the side effect."""
    return analyze(genome, space)
