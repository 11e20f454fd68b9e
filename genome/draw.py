"""Drawing genomes with graphviz: DOT text, rendered to SVG/PNG by the ``dot`` program.

The Debian package ``graphviz`` provides ``dot`` (``make`` installs it when missing). Data flows
top to bottom; each box shows the op, its main params and the output shape.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from ..errors import EvographError
from .cells.skeleton import is_cell_genome, place_of
from .core import Genome, Node
from .validate import analyze

NASNET_STRUCTURE = ("cell_input", "block", "cell_output")   # captioned by their place
OP_COLOURS = {"input": "#dfe7f5", "output": "#f5dfdf", "conv": "#e4f2e4", "dense": "#f2efe0",
              "identity": "#eeeeee"}


def node_caption(node: Node) -> str:
    """A compact caption, e.g. ``conv 3x3 /2 c16 bn+relu``."""
    p = node.p
    if node.op == "conv":
        stride = "" if p["stride_h"] == p["stride_w"] == 1 else f" /{p['stride_h']}x{p['stride_w']}"
        extra = " bn" * p["bn"] + " relu" * p["relu"]
        return f"conv {p['kernel_h']}x{p['kernel_w']}{stride} c{p['out_channels']}{extra}"
    if node.op == "dense":
        return f"dense {p['units']} {p['activation']}"
    if node.op == "output":
        return f"output ({p['num_classes']} classes)"
    if node.op == "input":
        return "input " + "x".join(str(d) for d in p["shape"])
    if node.op == "skeleton":
        first = " = cell node 0" if p["name"] == "nb201" else ""
        return (f"{p['name']} stem{first}\\n{p['stages']} stages x {p['cells']} cell(s), "
                f"{p['channels']} channels")
    if node.op == "cell_node":
        return f"cell node {p['index']} (sum)"
    return node.label()


def _quote(text: str) -> str:
    return '"' + text.replace('"', "'") + '"'


def to_dot(genome: Genome, title: str | None = None) -> str:
    info = analyze(genome)
    lines = ["digraph genome {", "  rankdir=TB;", '  fontname="Helvetica";',
             '  node [shape=box, style="rounded,filled", fontname="Helvetica", fontsize=11];']
    if title:
        lines.append(f"  labelloc=t; label={_quote(title)};")
    cell = is_cell_genome(genome)
    if cell:  # the template in a box: it is repeated through the network
        lines.append('  subgraph cluster_cell { label="cell (the same in every copy)"; '
                     'style=dashed;')
    endpoints = ("input", "output")
    for node in sorted(genome.nodes, key=lambda n: n.op in endpoints):
        if cell and node.op in endpoints:
            lines.append("  }")
            cell = False
        shape = "x".join(str(d) for d in info.out_shapes[node.id]) or "none: left out"
        where = place_of(genome, node.id) if node.op in NASNET_STRUCTURE else None
        caption = f"{where or node_caption(node)}\\n[{shape}]"
        colour = OP_COLOURS.get(node.op, "#ffffff")
        lines.append(f"  n{node.id} [label={_quote(caption)}, "
                     f'fillcolor="{colour}"];')
    for a, b in genome.edges:
        lines.append(f"  n{a} -> n{b};")
    lines.append("}")
    return "\n".join(lines) + "\n"


def render_dot(dot_text: str, path: str | Path, fmt: str | None = None) -> Path:
    """Render DOT text to ``path`` (format from the suffix: svg, png, pdf) with graphviz."""
    path = Path(path)
    fmt = fmt or path.suffix.lstrip(".").lower() or "svg"
    exe = shutil.which("dot")
    if exe is None:
        raise EvographError("graphviz 'dot' is not installed (Debian package graphviz; "
                            "`make` installs it when run as root)")
    result = subprocess.run([exe, f"-T{fmt}", "-o", str(path)], input=dot_text.encode(),
                            capture_output=True, timeout=120, check=False)
    if result.returncode != 0:
        raise EvographError(f"graphviz failed to draw {path}: {result.stderr.decode().strip()}")
    return path


def draw(genome: Genome, path: str | Path, title: str | None = None) -> Path:
    return render_dot(to_dot(genome, title), path)
