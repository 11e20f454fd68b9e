"""Crossover: a child takes a random assortment of its parents' genes.

This is the classic neuroevolution recipe (each of layers, neurons, activation and optimizer is
taken from one parent or the other at random). For graph genomes the child keeps the first
parent's topology — node ids are shared by descent, so nodes present in both parents with the
same op are homologous (as in NEAT's innovation numbers, Stanley & Miikkulainen 2002) — and takes
each homologous node's params and each global gene from either parent at random. For chains of
dense layers (the ``mlp`` space) the number of layers also comes from either parent and each layer
position takes its width from either parent that has it. Cell genomes take each op of the cell
from either parent (:func:`~evograph.operators.cells.cell_crossover`).
"""

from __future__ import annotations

import itertools

import numpy as np

from ..genome.core import Genome, Node
from ..genome.space import SearchSpace
from .base import Edit
from .cells import cell_crossover


def _mix_genes(a: Genome, b: Genome, rng: np.random.Generator) -> tuple[dict, list[str]]:
    genes, from_b = {}, []
    for key, value in a.gene.items():
        if key in b.gene and rng.random() < 0.5:
            genes[key] = b.gene[key]
            from_b.append(key)
        else:
            genes[key] = value
    return genes, from_b


def _graph_crossover(a: Genome, b: Genome, rng: np.random.Generator) -> tuple[Genome, list[int]]:
    """a's topology; each node shared with b (same id and op) takes b's params half the time."""
    nodes, from_b = [], []
    for node in a.nodes:
        other = b.node(node.id) if b.has_node(node.id) else None
        if other is not None and other.op == node.op and other != node and rng.random() < 0.5:
            nodes.append(other)
            from_b.append(node.id)
        else:
            nodes.append(node)
    return Genome.make(nodes, a.edges, a.gene), from_b


def _chain(genome: Genome) -> list[Node]:
    return [genome.node(i) for i in genome.topological_order()
            if genome.node(i).op not in ("input", "output")]


def _is_chain(genome: Genome) -> bool:
    return len(genome.edges) == len(genome.nodes) - 1


def _chain_crossover(a: Genome, b: Genome, rng: np.random.Generator) -> tuple[Genome, list[int]]:
    """Layer count from either parent; layer i's params from either parent that has a layer i."""
    la, lb = _chain(a), _chain(b)
    count = len(lb) if rng.random() < 0.5 else len(la)
    layers, from_b = [], []
    for i in range(count):
        use_b = i >= len(la) or (i < len(lb) and rng.random() < 0.5)
        source = lb[i] if use_b else la[i]
        layers.append(source)
        if use_b:
            from_b.append(i)
    ids = _fresh_ids([n.id for n in layers], a, b)
    nodes = [a.input_node] + [Node(i, n.op, n.params) for i, n in zip(ids, layers)]
    nodes.append(a.output_node)
    chain = [a.input_node.id, *ids, a.output_node.id]
    return Genome.make(nodes, list(itertools.pairwise(chain)), a.gene), from_b


def _fresh_ids(ids: list[int], a: Genome, b: Genome) -> list[int]:
    """Keep each layer's id unless already used (or a's input/output id): then a fresh one."""
    used = {a.input_node.id, a.output_node.id}
    fresh = max(a.ids + b.ids) + 1
    out = []
    for node_id in ids:
        if node_id in used:
            node_id, fresh = fresh, fresh + 1
        used.add(node_id)
        out.append(node_id)
    return out


def crossover(a: Genome, b: Genome, rng: np.random.Generator,
              space: SearchSpace) -> tuple[Genome, Edit]:
    """Cross two parents; the child inherits weights from ``a`` where nodes match."""
    if space.family == "cell":
        child, ops_from_b = cell_crossover(a, b, rng, space)
        detail = {"nodes_from_second": ops_from_b}
    elif space.family == "mlp" and _is_chain(a) and _is_chain(b):
        child, layers_from_b = _chain_crossover(a, b, rng)
        detail = {"layers_from_second": layers_from_b}
    else:
        child, nodes_from_b = _graph_crossover(a, b, rng)
        detail = {"nodes_from_second": nodes_from_b}
    genes, genes_from_b = _mix_genes(a, b, rng)
    child = child.with_genes(**genes)
    changed = tuple(n.id for n in child.nodes if not a.has_node(n.id) or a.node(n.id) != n)
    changed += tuple(s for c in changed for s in child.successors(c) if s not in changed)
    return child, Edit("crossover", {**detail, "genes_from_second": genes_from_b},
                       changed=tuple(sorted(set(changed))))
