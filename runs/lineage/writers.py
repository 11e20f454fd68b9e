"""Lineage graphs out of evograph: GraphML, GEXF, node-link JSON and graphviz drawings.

GraphML and GEXF accept only scalar attributes (no None, lists or dicts), so :func:`sanitize`
drops None values and turns lists and dicts (the genome, metrics, edit arguments) into JSON text;
node ids stay integers and :func:`read_lineage` reads them back as such. Node-link JSON keeps the
structures as they are. Drawings go through graphviz ``dot``: time flows left to right (a parent
is always older than its child), the line of descent of the best is highlighted and every edge is
labelled with the mutation that made the child.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import networkx as nx

from ...errors import ExportError
from ...genome.draw import render_dot
from ..store import atomic_write_bytes, atomic_write_text
from .graph import line_of_descent

FORMATS = ("svg", "png", "graphml", "gexf", "json", "dot")
MAX_DRAWN = 3000  # dot takes minutes beyond this; export GraphML/GEXF for Gephi instead
STATUS_COLOURS = {"completed": "#e8f1fb", "infeasible": "#eeeeee", "failed": "#f8d7d7",
                  "pending": "#ffffff", "running": "#fff6d5"}
HIGHLIGHT = "#d9480f"


# -- data formats --------------------------------------------------------------------------------

def _scalar(value: Any) -> Any:
    if isinstance(value, (dict, list, tuple)):
        return json.dumps(value, sort_keys=True)
    return value


def _clean(attrs: dict) -> dict:
    return {k: _scalar(v) for k, v in attrs.items() if v is not None}


def sanitize(g: nx.DiGraph) -> nx.DiGraph:
    """A copy GraphML and GEXF accept: no None, lists and dicts as JSON text, a ``label``."""
    h = nx.DiGraph(**_clean(g.graph))
    for node, attrs in g.nodes(data=True):
        h.add_node(node, label=f"#{node}", **_clean(attrs))
    for a, b, attrs in g.edges(data=True):
        h.add_edge(a, b, **_clean(attrs))
    return h


def to_json(g: nx.DiGraph) -> str:
    """Node-link JSON (``nodes`` and ``links``), structures kept as they are."""
    return json.dumps(nx.node_link_data(g, edges="links"), sort_keys=True, indent=1)


def read_lineage(path: str | Path) -> nx.DiGraph:
    """Read a lineage written by :func:`write_lineage` (GraphML, GEXF or JSON), integer ids."""
    path = Path(path)
    suffix = path.suffix.lower().lstrip(".")
    try:
        if suffix == "graphml":
            g = nx.read_graphml(path, node_type=int)
            g.graph.pop("node_default", None), g.graph.pop("edge_default", None)
            return g
        if suffix == "gexf":
            g = nx.read_gexf(path, node_type=int)
            for _, _, attrs in g.edges(data=True):
                attrs.pop("id", None)  # GEXF's own edge ids
            g.graph.clear()            # GEXF keeps no graph attributes
            return g
        if suffix == "json":
            return nx.node_link_graph(json.loads(path.read_text()), edges="links")
    except (OSError, ValueError, nx.NetworkXError) as exc:
        raise ExportError(f"cannot read lineage file {path}: {exc}") from None
    raise ExportError(f"{path}: unknown lineage format {suffix!r} (graphml, gexf or json)")


# -- drawings ------------------------------------------------------------------------------------

def _quote(text: str) -> str:
    """A DOT string; ``\\n`` in ``text`` stays a DOT line break."""
    return '"' + text.replace('"', "'") + '"'


def _node_line(g: nx.DiGraph, i: int, on_line: set[int], best: int | None,
               hidden: int) -> str:
    node = g.nodes[i]
    fitness = node.get("fitness")
    caption = f"#{i}\\n" + (f"{fitness:.4f}" if fitness is not None else node["status"])
    if hidden:
        caption += f"\\n(+{hidden} more)"
    style = ["rounded", "filled"] + (["dashed"] if node["status"] != "completed" else [])
    tooltip = f"#{i} {node['status']} {node.get('mutation') or 'initial'}"
    attrs = {"id": f"ind_{i}", "label": caption, "style": ",".join(style),
             "fillcolor": STATUS_COLOURS.get(node["status"], "#ffffff"),
             "tooltip": tooltip.replace("\\", "/")}
    if i in on_line:
        attrs.update(color=HIGHLIGHT, penwidth="2.2", fillcolor="#fde7d9")
    if i == best:
        attrs["peripheries"] = "2"
    body = ", ".join(f"{k}={_quote(v)}" for k, v in attrs.items())
    return f"  n{i} [{body}];"


def _edge_line(g: nx.DiGraph, a: int, b: int, on_line: set[int]) -> str:
    edge = g.edges[a, b]
    label = edge.get("mutation") or ""
    attrs = {"label": label, "id": f"edge_{a}_{b}"}
    if edge.get("parent_index", 0) > 0:
        attrs["style"] = "dashed"  # a crossover mate: no weights inherited from it
    if a in on_line and b in on_line and edge.get("parent_index", 0) == 0:
        attrs.update(color=HIGHLIGHT, penwidth="2.2", fontcolor=HIGHLIGHT)
    body = ", ".join(f"{k}={_quote(v)}" for k, v in attrs.items())
    return f"  n{a} -> n{b} [{body}];"


def to_dot(view: nx.DiGraph, full: nx.DiGraph | None = None, title: str | None = None) -> str:
    """DOT text of a lineage (or a part ``view`` of the ``full`` one, whose children outside
    the view are counted as "+k more"). The best's line of descent in ``full`` is highlighted."""
    full = view if full is None else full
    best = full.graph.get("best")
    on_line = set(line_of_descent(full, best)) if best in full else set()
    lines = ["digraph lineage {", '  rankdir=LR; nodesep=0.15; ranksep=0.35; fontname="Helvetica";',
             '  node [shape=box, fontname="Helvetica", fontsize=10, margin="0.06,0.03"];',
             '  edge [fontname="Helvetica", fontsize=8, color="#8a94a6", fontcolor="#555555"];']
    if title:
        lines.append(f"  labelloc=t; label={_quote(title)};")
    for i in sorted(view):
        hidden = sum(1 for c in full.successors(i) if c not in view)
        lines.append(_node_line(full, i, on_line, best, hidden))
    lines += [_edge_line(full, a, b, on_line) for a, b in sorted(view.edges())]
    lines.append("}")
    return "\n".join(lines) + "\n"


def render(dot_text: str, fmt: str = "svg") -> bytes:
    """Render DOT text with graphviz (``dot -T<fmt>``) and return the file's bytes."""
    with tempfile.TemporaryDirectory(prefix="evograph-dot-") as tmp:
        path = render_dot(dot_text, Path(tmp) / f"drawing.{fmt}", fmt)
        return path.read_bytes()


def inline_svg(dot_text: str) -> str:
    """SVG for inlining in HTML: no XML prolog, DOCTYPE or namespace URLs (HTML needs none)."""
    svg = render(dot_text, "svg").decode("utf-8")
    svg = svg[svg.index("<svg"):]
    for junk in (' xmlns="http://www.w3.org/2000/svg"',
                 ' xmlns:xlink="http://www.w3.org/1999/xlink"'):
        svg = svg.replace(junk, "", 1)
    return svg


# -- files ---------------------------------------------------------------------------------------

def write_lineage(g: nx.DiGraph, path: str | Path, fmt: str | None = None,
                  full: nx.DiGraph | None = None) -> Path:
    """Write ``g`` as svg, png, dot, graphml, gexf or json (format from the suffix by default)."""
    path = Path(path)
    fmt = (fmt or path.suffix.lstrip(".") or "svg").lower()
    if fmt not in FORMATS:
        raise ExportError(f"unknown lineage format {fmt!r}; choose one of {', '.join(FORMATS)}")
    if fmt in ("svg", "png") and len(g) > MAX_DRAWN:
        raise ExportError(f"{len(g)} individuals are too many to draw (at most {MAX_DRAWN}); "
                          "draw --best or --of ID, or export graphml/gexf for Gephi")
    try:
        if fmt == "graphml":
            atomic_write_text(path, "\n".join(nx.generate_graphml(sanitize(g))) + "\n")
        elif fmt == "gexf":
            atomic_write_text(path, "\n".join(nx.generate_gexf(sanitize(g))) + "\n")
        elif fmt == "json":
            atomic_write_text(path, to_json(g) + "\n")
        elif fmt == "dot":
            atomic_write_text(path, to_dot(g, full))
        else:
            title = f"lineage of run {g.graph.get('run_id')}"
            atomic_write_bytes(path, render(to_dot(g, full, title), fmt))
    except OSError as exc:
        raise ExportError(f"cannot write {path}: {exc.strerror or exc}") from None
    return path
