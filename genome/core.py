"""The genome: an immutable value describing one network and its training genes.

A genome is a directed acyclic graph of layer nodes (``Node``: id, op, params) plus global genes
(learning rate, optimizer, weight decay, batch size, ...). Edges are data flow; a node with several
incoming edges *merges* its inputs (see :mod:`evograph.genome.shapes` for the rule). Node ids are
stable integers: mutations keep the ids of the nodes they do not touch, which is what lets weight
inheritance and lineage name tensors across generations.

The canonical form sorts nodes by id, edges by (source, target) and params/genes by key, so the
content hash never depends on construction or file order. Predecessors of a node are always taken
in ascending id order (never from file order).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import networkx as nx

ParamValue = int | float | bool | str | tuple

DEFAULT_GENES: dict[str, ParamValue] = {
    "learning_rate": 0.05,
    "optimizer": "sgd",
    "weight_decay": 0.0,
    "batch_size": 64,
}


def _freeze(value: Any) -> ParamValue:
    """Turn JSON-like values into hashable, immutable ones (lists become tuples)."""
    if isinstance(value, (list, tuple)):
        return tuple(_freeze(v) for v in value)
    if isinstance(value, dict):
        raise TypeError("nested mappings are not allowed as genome parameters")
    return value


def _thaw(value: ParamValue) -> Any:
    """Inverse of :func:`_freeze` for JSON output (tuples become lists)."""
    if isinstance(value, tuple):
        return [_thaw(v) for v in value]
    return value


def _frozen_items(mapping: Mapping[str, Any]) -> tuple[tuple[str, ParamValue], ...]:
    return tuple(sorted((str(k), _freeze(v)) for k, v in mapping.items()))


@dataclass(frozen=True)
class Node:
    """One layer of a genome: a stable integer id, an op name and its parameters."""

    id: int
    op: str
    params: tuple[tuple[str, ParamValue], ...] = ()

    @staticmethod
    def make(node_id: int, op: str, **params: Any) -> Node:
        return Node(int(node_id), str(op), _frozen_items(params))

    @property
    def p(self) -> dict[str, ParamValue]:
        """The params as a fresh dict (mutating it does not change the node)."""
        return dict(self.params)

    def get(self, name: str, default: Any = None) -> Any:
        return dict(self.params).get(name, default)

    def replace(self, **params: Any) -> Node:
        """A copy of this node with some params changed."""
        merged = {**self.p, **params}
        return Node.make(self.id, self.op, **merged)

    def label(self) -> str:
        """A short human-readable description, e.g. ``conv 3x3/2 c16 bn``."""
        if not self.params:
            return self.op
        inner = ", ".join(f"{k}={_thaw(v)}" for k, v in self.params)
        return f"{self.op}({inner})"


@dataclass(frozen=True)
class Genome:
    """An immutable network genome: nodes, edges and global genes, in canonical order.

    Build one with :meth:`Genome.make` (which canonicalises) or the ``with_*`` helpers, which all
    return new genomes. ``hash`` identifies the whole genome; ``arch_hash`` the architecture alone
    (genes excluded), so two children differing only in learning rate share an ``arch_hash``.
    """

    nodes: tuple[Node, ...]
    edges: tuple[tuple[int, int], ...]
    genes: tuple[tuple[str, ParamValue], ...] = field(default=_frozen_items(DEFAULT_GENES))

    @staticmethod
    def make(nodes: Iterable[Node], edges: Iterable[tuple[int, int]],
             genes: Mapping[str, Any] | None = None) -> Genome:
        nodes = tuple(sorted(nodes, key=lambda n: n.id))
        edges = tuple(sorted({(int(a), int(b)) for a, b in edges}))
        merged = {**DEFAULT_GENES, **(genes or {})}
        return Genome(nodes, edges, _frozen_items(merged))

    # -- lookups -------------------------------------------------------------------------------
    @cached_property
    def _by_id(self) -> dict[int, Node]:
        return {n.id: n for n in self.nodes}

    def node(self, node_id: int) -> Node:
        return self._by_id[node_id]

    def has_node(self, node_id: int) -> bool:
        return node_id in self._by_id

    @property
    def ids(self) -> list[int]:
        return [n.id for n in self.nodes]

    @property
    def gene(self) -> dict[str, ParamValue]:
        """The global genes as a fresh dict."""
        return dict(self.genes)

    def predecessors(self, node_id: int) -> list[int]:
        """Inputs of a node in canonical (ascending id) order."""
        return [a for a, b in self.edges if b == node_id]

    def successors(self, node_id: int) -> list[int]:
        return [b for a, b in self.edges if a == node_id]

    def nodes_with_op(self, *ops: str) -> list[Node]:
        return [n for n in self.nodes if n.op in ops]

    @property
    def input_node(self) -> Node:
        return self.nodes_with_op("input")[0]

    @property
    def output_node(self) -> Node:
        return self.nodes_with_op("output")[0]

    def next_id(self) -> int:
        return max(self.ids, default=-1) + 1

    @cached_property
    def graph(self) -> nx.DiGraph:
        """A NetworkX view for algorithms (a fresh graph built once; do not mutate it)."""
        g = nx.DiGraph()
        for n in self.nodes:
            g.add_node(n.id, op=n.op, **n.p)
        g.add_edges_from(self.edges)
        return g

    def topological_order(self) -> list[int]:
        """Node ids in a deterministic topological order (ties broken by smallest id)."""
        return list(nx.lexicographical_topological_sort(self.graph))

    # -- identity ------------------------------------------------------------------------------
    def canonical_dict(self) -> dict[str, Any]:
        """The canonical, JSON-ready content of the genome (sorted everywhere)."""
        return {
            "nodes": [{"id": n.id, "op": n.op, "params": {k: _thaw(v) for k, v in n.params}}
                      for n in self.nodes],
            "edges": [[a, b] for a, b in self.edges],
            "genes": {k: _thaw(v) for k, v in self.genes},
        }

    @cached_property
    def hash(self) -> str:
        """Content hash of the whole genome (architecture and genes), 16 hex digits."""
        return _digest(self.canonical_dict())

    @cached_property
    def arch_hash(self) -> str:
        """Content hash of the architecture alone (nodes and edges, genes excluded)."""
        content = self.canonical_dict()
        content.pop("genes")
        return _digest(content)

    # -- functional updates --------------------------------------------------------------------
    def with_genes(self, **genes: Any) -> Genome:
        return Genome.make(self.nodes, self.edges, {**self.gene, **genes})

    def with_node(self, node: Node) -> Genome:
        """Add a node, or replace the node with the same id."""
        others = [n for n in self.nodes if n.id != node.id]
        return Genome.make([*others, node], self.edges, self.gene)

    def without_node(self, node_id: int) -> Genome:
        """Remove a node and every edge touching it."""
        nodes = [n for n in self.nodes if n.id != node_id]
        edges = [e for e in self.edges if node_id not in e]
        return Genome.make(nodes, edges, self.gene)

    def with_edges(self, add: Iterable[tuple[int, int]] = (),
                   remove: Iterable[tuple[int, int]] = ()) -> Genome:
        removed = set(remove)
        edges = [e for e in self.edges if e not in removed] + list(add)
        return Genome.make(self.nodes, edges, self.gene)

    def __repr__(self) -> str:
        return f"Genome({self.hash}, nodes={len(self.nodes)}, edges={len(self.edges)})"


def _digest(content: dict[str, Any]) -> str:
    text = json.dumps(content, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]
