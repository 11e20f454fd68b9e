"""Cell genomes and their expansion into plain network genomes.

A *cell genome* is a :class:`~evograph.genome.core.Genome` with one ``skeleton`` node right after
the input. Its params name the macro network (``name``, ``channels``, ``cells`` per stage,
``stages``); the nodes after it are one cell's template: the skeleton node is the cell's input,
template ops sit on the cell's edges, and the output node reads the cell's output. So the compact
genome is still a NetworkX DAG with a content hash, mutations edit one cell, and ``arch_hash``
covers the skeleton's settings (they are node params, not genes).

:func:`expand` turns it into the *network genome*: the stem, every copy of the cell with node ids
``CELL_ID_BASE * (copy + 1) + template id`` (stable across mutations of the template, which is
what weight inheritance matches tensors by), the reduction blocks and the head, all made of
ordinary registered ops. Validation counts parameters and FLOPs on it before any tensor exists,
and the compiler builds it like any other genome. Each skeleton registers its expansion here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import networkx as nx

from ...errors import InvalidGenome
from ..core import Genome, Node

SKELETON_OP = "skeleton"
CELL_ID_BASE = 1000          # copy k of template node t has id CELL_ID_BASE * (k + 1) + t
MAX_TEMPLATE_ID = CELL_ID_BASE - 1
MAX_COPIES = 9_999
EXTRA_ID_BASE = CELL_ID_BASE * (MAX_COPIES + 1)   # ids of the skeleton's own nodes from here


@dataclass(frozen=True)
class Skeleton:
    """A macro network: ``check`` raises InvalidGenome for a template it cannot expand (naming
    the node), ``expand`` builds the network genome of a checked one, ``place`` says where a
    template op node sits in the cell, in the words of its paper (``"edge 0->2"``)."""

    name: str
    check: Callable[[Genome, Node], None]
    expand: Callable[[Genome, Node], Genome]
    place: Callable[[Genome, int], str]


SKELETONS: dict[str, Skeleton] = {}


def register_skeleton(skeleton: Skeleton) -> Skeleton:
    SKELETONS[skeleton.name] = skeleton
    return skeleton


def skeleton_node(genome: Genome) -> Node | None:
    """The genome's ``skeleton`` node (None for a plain network genome)."""
    found = genome.nodes_with_op(SKELETON_OP)
    return found[0] if found else None


def is_cell_genome(genome: Genome) -> bool:
    return skeleton_node(genome) is not None


def place_of(genome: Genome, node_id: int) -> str | None:
    """Where template node ``node_id`` sits in its cell (None outside a valid cell genome)."""
    node = skeleton_node(genome)
    skeleton = SKELETONS.get(node.get("name")) if node is not None else None
    try:
        return skeleton.place(genome, node_id) if skeleton is not None else None
    except (KeyError, ValueError):
        return None


def check_cell_genome(genome: Genome) -> Skeleton:
    """The skeleton of a structurally valid cell genome, after its own checks (one skeleton
    node, fed by the input alone, a known name, template ids below ``CELL_ID_BASE``)."""
    found = genome.nodes_with_op(SKELETON_OP)
    if len(found) != 1:
        raise InvalidGenome(f"a cell genome needs exactly one 'skeleton' node, found {len(found)}")
    node = found[0]
    where = f"node {node.id}"
    if genome.predecessors(node.id) != [genome.input_node.id]:
        raise InvalidGenome("the skeleton node must be fed by the input node alone", where)
    name = node.get("name")
    if name not in SKELETONS:
        raise InvalidGenome(f"unknown skeleton {name!r} (known: {', '.join(sorted(SKELETONS))})",
                            where)
    too_big = [n.id for n in genome.nodes if n.id > MAX_TEMPLATE_ID]
    if too_big:
        raise InvalidGenome(f"template node ids must be below {CELL_ID_BASE}",
                            f"node {too_big[0]}")
    skeleton = SKELETONS[name]
    skeleton.check(genome, node)
    return skeleton


_NETWORK = "_network"  # a cell genome's expansion, kept on the (immutable) instance


def expand(genome: Genome) -> Genome:
    """The network genome of a cell genome (a plain genome is returned as it is). Genomes are
    immutable, so a genome's expansion is made once and kept with it (as its analysis is):
    validation, building, inheritance plans and code generation each ask for it."""
    network = genome.__dict__.get(_NETWORK)
    if network is None:
        node = skeleton_node(genome)
        if node is None:
            return genome
        network = check_cell_genome(genome).expand(genome, node)
        genome.__dict__[_NETWORK] = network
    return network


def template_id(network_id: int, skeleton_id: int) -> int:
    """The template node a network node copies; the skeleton node for the skeleton's own
    nodes (the stem keeps the skeleton node's id; reductions and head are numbered from
    ``EXTRA_ID_BASE``)."""
    if network_id < CELL_ID_BASE:
        return network_id
    if network_id < EXTRA_ID_BASE:
        return network_id % CELL_ID_BASE
    return skeleton_id


def window(k: int, stride: int, one_d: bool) -> dict[str, int]:
    """The params of a k x k window of stride ``stride``; 1 x k along a 1-D signal."""
    return {"kernel_h": 1 if one_d else k, "kernel_w": k, "stride_h": 1 if one_d else stride,
            "stride_w": stride}


def prune_dead(nodes: list[Node], edges: list[tuple[int, int]], sink: int
               ) -> tuple[list[Node], list[tuple[int, int]]]:
    """Drop the nodes that do not lead to ``sink`` (a cell node whose every use is ``none``)."""
    graph = nx.DiGraph(edges)
    graph.add_nodes_from(n.id for n in nodes)
    alive = nx.ancestors(graph, sink) | {sink}
    return ([n for n in nodes if n.id in alive],
            [(a, b) for a, b in edges if a in alive and b in alive])
