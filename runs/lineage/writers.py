"""Lineage graphs out of evograph: GraphML, GEXF, node-link JSON and graphviz drawings.

GraphML and GEXF accept only scalar attributes (no None, lists or dicts), so :func:`sanitize`
drops None values and turns lists and dicts (the genome, metrics, edit arguments) into JSON text;
node ids stay integers and :func:`read_lineage` reads them back as such. Node-link JSON keeps the
structures as they are. Drawings go through graphviz ``dot``: the line of descent of the best is
highlighted and every edge is labelled with the mutation that made the child. Time flows left to
right, or top to bottom, whichever gives the drawing a page's shape (:func:`choose_layout`); a
long line of descent is wrapped into rows read like text, so a drawing is never a thin strip.
"""

from __future__ import annotations

import itertools
import json
import math
import re
import tempfile
from collections import Counter
from dataclasses import dataclass
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

# What dot's drawing takes, in inches (measured on its output: a box with a two-line caption and
# an edge labelled with a typical mutation name): one generation along the flow of time, and one
# individual across it, for rankdir LR and TB.
STEP_LR, SLOT_LR = 2.0, 0.6
STEP_TB, SLOT_TB = 1.2, 1.9
PAGE_ASPECT = 1.5  # the width / height a drawing aims at (a screen, a printed page on its side)
ROW = 6            # at most this many individuals in a wrapped row (about a page's width)
FITS = (10.0, 8.0)  # a left-to-right drawing within this (inches) is kept as it is
MIN_SCALE = 0.6    # an inlined drawing fitted to a page is shrunk to no less than this


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


def _edge_line(g: nx.DiGraph, a: int, b: int, on_line: set[int],
               layout: dict[str, str] | None = None) -> str:
    edge = g.edges[a, b]
    label = edge.get("mutation") or ""
    attrs = {"label": label, "id": f"edge_{a}_{b}", **(layout or {})}
    if edge.get("parent_index", 0) > 0:
        attrs["style"] = "dashed"  # a crossover mate: no weights inherited from it
    if a in on_line and b in on_line and edge.get("parent_index", 0) == 0:
        attrs.update(color=HIGHLIGHT, penwidth="2.2", fontcolor=HIGHLIGHT)
    body = ", ".join(f"{k}={_quote(v)}" for k, v in attrs.items())
    return f"  n{a} -> n{b} [{body}];"


@dataclass(frozen=True)
class Layout:
    """How a lineage is laid out: ``rankdir`` ("LR" or "TB") and, for a wrapped drawing (TB),
    the ``rows``: each row's individuals, drawn side by side and read left to right."""

    rankdir: str
    rows: tuple[tuple[int, ...], ...] = ()


def generations(g: nx.DiGraph) -> dict[int, int]:
    """Each individual's generation within ``g``: 0 without a parent in ``g``, else one more
    than its youngest parent's (the rank graphviz gives it)."""
    level: dict[int, int] = {}
    for i in nx.topological_sort(g):
        level[i] = max((level[p] + 1 for p in g.predecessors(i)), default=0)
    return level


def _spine(g: nx.DiGraph) -> list[int]:
    """The longest line of descent in ``g`` (the best's, where it is one of the longest)."""
    best = g.graph.get("best")
    path = nx.dag_longest_path(g)
    if best in g:
        line = [i for i in line_of_descent(g, best) if i in g]
        if len(line) >= len(path):
            return line
    return path


def _aspect_gap(width: float, height: float) -> float:
    return abs(math.log(width / height / PAGE_ASPECT))


def choose_layout(g: nx.DiGraph) -> Layout:
    """The layout whose (estimated) drawing is closest to a page's shape: time left to right,
    top to bottom, or, for a long line of descent, wrapped into rows of up to :data:`ROW`
    individuals (about the square root of its length, so the rows and their count balance)."""
    if len(g) < 2:
        return Layout("LR")
    level = generations(g)
    depth, breadth = max(level.values()) + 1, max(Counter(level.values()).values())
    lr = (depth * STEP_LR, breadth * SLOT_LR)
    if lr[0] <= FITS[0] and lr[1] <= FITS[1]:
        return Layout("LR")
    options = [(_aspect_gap(*lr), 0, Layout("LR")),
               (_aspect_gap(breadth * SLOT_TB, depth * STEP_TB), 1, Layout("TB"))]
    spine = _spine(g)
    per_row = max(3, min(ROW, round(math.sqrt(len(spine) * STEP_TB / SLOT_TB * PAGE_ASPECT))))
    if len(spine) > per_row:
        rows = tuple(tuple(spine[k:k + per_row]) for k in range(0, len(spine), per_row))
        # the individuals off the line hang below their parents, spread over the rows
        width = (per_row + (len(g) - len(spine)) / len(rows)) * SLOT_TB
        options.append((_aspect_gap(width, (depth / per_row + 1) * STEP_TB), 2,
                        Layout("TB", rows)))
    return min(options, key=lambda o: o[:2])[2]


def _row_lines(g: nx.DiGraph, rows: tuple[tuple[int, ...], ...]) -> list[str]:
    """Each row on one rank; an invisible, heavy edge from each row's first individual to the
    next row's keeps the rows' left ends aligned, so they read like lines of text."""
    lines = ["  { rank=same; " + " ".join(f"n{i};" for i in row) + " }" for row in rows]
    lines += [f"  n{a[0]} -> n{b[0]} [style=invis, weight=20];"
              for a, b in itertools.pairwise(rows) if not g.has_edge(a[0], b[0])]
    return lines


def _wrapped_edge(row_of: dict[int, int], a: int, b: int) -> dict[str, str]:
    """Layout attributes of edge a -> b in a wrapped drawing (none when nothing is wrapped).

    Within a row: none. From one row down to the next: no pull on the rows (weight 0), out of
    the bottom of one box and into the top of the other. Into a row from outside the rows (a
    crossover mate, or a side branch rejoining): no say in the ranking, so it cannot push the row
    down."""
    if a in row_of and b in row_of:
        return {} if row_of[a] == row_of[b] else {"weight": "0", "tailport": "s", "headport": "n"}
    return {"constraint": "false"} if b in row_of else {}


def to_dot(view: nx.DiGraph, full: nx.DiGraph | None = None, title: str | None = None) -> str:
    """DOT text of a lineage (or a part ``view`` of the ``full`` one, whose children outside
    the view are counted as "+k more"). The best's line of descent in ``full`` is highlighted;
    the layout is :func:`choose_layout`'s."""
    full = view if full is None else full
    best = full.graph.get("best")
    on_line = set(line_of_descent(full, best)) if best in full else set()
    layout = choose_layout(view)
    lines = ["digraph lineage {", (f"  rankdir={layout.rankdir}; nodesep=0.15; ranksep=0.35; "
                                   'fontname="Helvetica";'),
             '  node [shape=box, fontname="Helvetica", fontsize=10, margin="0.06,0.03"];',
             '  edge [fontname="Helvetica", fontsize=8, color="#8a94a6", fontcolor="#555555"];']
    if title:
        lines.append(f"  labelloc=t; label={_quote(title)};")
    for i in sorted(view):
        hidden = sum(1 for c in full.successors(i) if c not in view)
        lines.append(_node_line(full, i, on_line, best, hidden))
    row_of = {i: k for k, row in enumerate(layout.rows) for i in row}
    lines += [_edge_line(full, a, b, on_line, _wrapped_edge(row_of, a, b))
              for a, b in sorted(view.edges())]
    lines += _row_lines(view, layout.rows) if layout.rows else []
    lines.append("}")
    return "\n".join(lines) + "\n"


def render(dot_text: str, fmt: str = "svg") -> bytes:
    """Render DOT text with graphviz (``dot -T<fmt>``) and return the file's bytes."""
    with tempfile.TemporaryDirectory(prefix="evograph-dot-") as tmp:
        path = render_dot(dot_text, Path(tmp) / f"drawing.{fmt}", fmt)
        return path.read_bytes()


def inline_svg(dot_text: str, fit: bool = False) -> str:
    """SVG for inlining in HTML: no XML prolog, DOCTYPE or namespace URLs (HTML needs none).

    With ``fit``, the drawing takes its container's width: a smaller one is shown at its own
    size, a bigger one is scaled down to fit, but to no less than :data:`MIN_SCALE` of its size
    (the text stays legible; beyond that the container scrolls)."""
    svg = render(dot_text, "svg").decode("utf-8")
    svg = svg[svg.index("<svg"):]
    for junk in (' xmlns="http://www.w3.org/2000/svg"',
                 ' xmlns:xlink="http://www.w3.org/1999/xlink"'):
        svg = svg.replace(junk, "", 1)
    width = re.match(r'<svg width="([0-9.]+)pt"', svg)
    if fit and width:
        w = float(width[1])
        style = f"width: clamp({w * MIN_SCALE:.0f}pt, 100%, {w:.0f}pt); height: auto"
        svg = svg.replace("<svg ", f'<svg style="{style}" ', 1)
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
