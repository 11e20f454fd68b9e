"""The diff between two genomes: nodes added, removed or re-parameterised, edges, genes.

Node ids are stable across mutations (see :mod:`evograph.genome.core`), so nodes are matched by
id: a child made by INSERT-CONVOLUTION shows one added node and the rewired edges, IDENTITY shows
nothing, ALTER-LEARNING-RATE one gene. A node whose op changed under the same id is reported as
removed and added, except in a cell genome, where an op replaced in the same place of the cell
is one line naming the cell and the place (``~ nb201 cell, edge 0->2 (node 6): nor_conv_3x3 ->
skip_connect``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ...genome.cells.skeleton import place_of, skeleton_node
from ...genome.core import Genome, Node
from ...genome.draw import node_caption
from ...genome.io import from_dict


def caption(node: Node) -> str:
    """The drawing caption of a node (its plain label for unusual params)."""
    try:
        return node_caption(node)
    except (KeyError, TypeError):
        return node.label()


@dataclass(frozen=True)
class GenomeDiff:
    """What changed from genome ``a`` to genome ``b`` (all lists sorted by node id / edge)."""

    added: list[dict] = field(default_factory=list)      # {"id", "op", "caption", "params"}
    removed: list[dict] = field(default_factory=list)
    changed: list[dict] = field(default_factory=list)    # {"id", "op", "params": {k: [old, new]}}
    edges_added: list[list[int]] = field(default_factory=list)
    edges_removed: list[list[int]] = field(default_factory=list)
    genes: dict[str, list] = field(default_factory=dict)  # name -> [old, new]
    # cell genomes: an op replaced in the cell {"id", "cell", "place", "from", "to"}
    cell_ops: list[dict] = field(default_factory=list)

    @property
    def is_empty(self) -> bool:
        return not (self.added or self.removed or self.changed or self.edges_added
                    or self.edges_removed or self.genes or self.cell_ops)

    def to_dict(self) -> dict[str, Any]:
        return {"added": self.added, "removed": self.removed, "changed": self.changed,
                "edges_added": self.edges_added, "edges_removed": self.edges_removed,
                "genes": self.genes, "cell_ops": self.cell_ops}

    def lines(self) -> list[str]:
        """One human-readable line per change: ``+`` added, ``-`` removed, ``~`` changed."""
        out = [f"~ {c['place']} (node {c['id']}): {c['from']} -> {c['to']}"
               for c in self.cell_ops]
        out += [f"+ node {n['id']}: {n['caption']}" for n in self.added]
        out += [f"- node {n['id']}: {n['caption']}" for n in self.removed]
        for n in self.changed:
            parts = ", ".join(f"{k} {_show(old)} -> {_show(new)}"
                              for k, (old, new) in n["params"].items())
            out.append(f"~ node {n['id']} ({n['op']}): {parts}")
        out += [f"+ edge {a} -> {b}" for a, b in self.edges_added]
        out += [f"- edge {a} -> {b}" for a, b in self.edges_removed]
        out += [f"~ gene {k}: {_show(old)} -> {_show(new)}" for k, (old, new) in self.genes.items()]
        return out


def _show(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, (list, tuple)):
        return "x".join(map(str, value))
    return str(value)


def _plain(value: Any) -> Any:
    return [_plain(v) for v in value] if isinstance(value, (list, tuple)) else value


def _node_dict(node: Node) -> dict:
    return {"id": node.id, "op": node.op, "caption": caption(node),
            "params": {k: _plain(v) for k, v in node.params}}


def _as_genome(value: Genome | dict) -> Genome:
    return value if isinstance(value, Genome) else from_dict(value)


def _changed_params(a: Node, b: Node) -> dict[str, list]:
    pa, pb = a.p, b.p
    return {k: [_plain(pa.get(k)), _plain(pb.get(k))]
            for k in sorted(set(pa) | set(pb)) if pa.get(k) != pb.get(k)}


def genome_diff(a: Genome | dict, b: Genome | dict) -> GenomeDiff:
    """The changes that turn genome ``a`` into ``b`` (genomes or their JSON dicts)."""
    a, b = _as_genome(a), _as_genome(b)
    ids_a, ids_b = set(a.ids), set(b.ids)
    same_op = {i for i in ids_a & ids_b if a.node(i).op == b.node(i).op}
    cell_ops = _cell_ops_replaced(a, b, ids_a & ids_b - same_op)
    replaced = {c["id"] for c in cell_ops} - same_op
    added = [_node_dict(b.node(i)) for i in sorted(ids_b - same_op - replaced)]
    removed = [_node_dict(a.node(i)) for i in sorted(ids_a - same_op - replaced)]
    changed = []
    for i in sorted(same_op):
        params = _changed_params(a.node(i), b.node(i))
        if params:
            changed.append({"id": i, "op": b.node(i).op, "params": params})
    edges_a, edges_b = set(a.edges), set(b.edges)
    ga, gb = a.gene, b.gene
    genes = {k: [_plain(ga.get(k)), _plain(gb.get(k))]
             for k in sorted(set(ga) | set(gb)) if ga.get(k) != gb.get(k)}
    return GenomeDiff(added, removed, changed, [list(e) for e in sorted(edges_b - edges_a)],
                      [list(e) for e in sorted(edges_a - edges_b)], genes, cell_ops)


def _cell_ops_replaced(a: Genome, b: Genome, ids: set[int]) -> list[dict]:
    """The changes of a cell's ops under the same node id, named by their place in the cell
    (AmoebaNet's mutations, in its words): an op replaced, or (``ids`` aside) an op that reads
    another hidden state."""
    skeleton = skeleton_node(b)
    if skeleton is None or skeleton_node(a) is None:
        return []
    out = []
    for i in sorted(set(a.ids) & set(b.ids)):
        where = place_of(b, i)
        if where is None or where != place_of(a, i):
            continue
        if i in ids:
            out.append({"id": i, "cell": skeleton.get("name"), "place": where,
                        "from": a.node(i).op, "to": b.node(i).op})
        elif _reads(a, i) != _reads(b, i) and None not in (_reads(a, i), _reads(b, i)):
            out.append({"id": i, "cell": skeleton.get("name"), "place": where,
                        "from": f"reads {_reads(a, i)}", "to": f"reads {_reads(b, i)}"})
    return out


def _reads(genome: Genome, node_id: int) -> str | None:
    """The place of the one hidden state a cell op reads (None for another node)."""
    sources = genome.predecessors(node_id)
    if len(sources) != 1 or genome.node(node_id).op in ("cell_input", "skeleton"):
        return None
    return place_of(genome, sources[0])
