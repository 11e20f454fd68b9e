"""The sections of the HTML report, each a function from the lineage graph to an HTML string.

Every individual shown anywhere (a chart point, a table row, a box of the lineage view) carries
``data-id`` so the report's script can show its details; all text goes through ``html.escape``.
"""

from __future__ import annotations

import math
from html import escape

import networkx as nx
import numpy as np

from ...errors import EvographError
from ...genome import draw
from ...genome.io import from_dict
from ..lineage.diff import GenomeDiff
from ..lineage.graph import MutationStat, first_parent, line_of_descent, ranked
from ..lineage.writers import inline_svg, to_dot
from .charts import Point, fitness_chart, pareto_chart, pareto_front

MAX_VIEW = 300     # boxes in the interactive lineage view (graphviz stays well under a second)
CHANGE_LINES = 4   # diff lines shown per step of the line of descent


def num(value: float | None, digits: int = 4) -> str:
    if value is None:
        return "—"
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:.{digits}f}"


def signed(value: float | None) -> str:
    if value is None:
        return '<td class="num">—</td>'
    cls = "pos" if value > 0 else "neg" if value < 0 else ""
    return f'<td class="num {cls}">{value:+.4f}</td>'


def section(anchor: str, title: str, body: str, note: str = "") -> str:
    note_html = f'<p class="note">{note}</p>' if note else ""
    return f'<section id="{anchor}"><h2>{escape(title)}</h2>{note_html}{body}</section>'


def edit_args(g: nx.DiGraph, i: int) -> str:
    """``arg=value, ...`` of the edit that made ``i`` (for crossover + mutation, the
    mutation's arguments)."""
    parent = first_parent(g, i)
    if parent is None:
        return ""
    args = g.edges[parent, i]["args"]
    if isinstance(args.get("mutation"), dict):  # a combined edit (selection.strategy)
        args = args["mutation"].get("args", {})
    return ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                     for k, v in sorted(args.items()) if not isinstance(v, dict))


def edit_text(g: nx.DiGraph, i: int) -> str:
    """``mutation(arg=value, ...)`` of the birth of ``i``, or ``(initial)``."""
    mutation = g.nodes[i]["mutation"]
    if first_parent(g, i) is None:
        return "(initial)"
    args = edit_args(g, i)
    return f"{mutation}({args})" if args else str(mutation)


# -- summary -------------------------------------------------------------------------------------

def cards(items: list[tuple[str, str]]) -> str:
    """A grid of small "key / value" boxes."""
    return '<div class="cards">' + "".join(
        f'<div class="card"><div class="k">{escape(k)}</div><div class="v">{escape(v)}</div>'
        "</div>" for k, v in items) + "</div>"


def summary_section(g: nx.DiGraph, counts: dict[str, int], budget: int | None,
                    times: dict[str, float]) -> str:
    """Counts by status, the best, times; a banner while the run is unfinished."""
    best = g.graph.get("best")
    node = g.nodes[best] if best is not None else {}
    unfinished = counts.get("pending", 0) + counts.get("running", 0)
    banner = ""
    if unfinished or (budget and len(g) < budget):
        banner = (f'<div class="banner">In progress (or interrupted): {len(g)} of '
                  f'{budget or "?"} individuals proposed, {counts.get("pending", 0)} pending, '
                  f'{counts.get("running", 0)} running. Build the report again for a fresh '
                  "view.</div>")
    metrics = node.get("metrics", {})
    items = [("individuals", f"{len(g):,}"), ("completed", f"{counts.get('completed', 0):,}"),
             ("infeasible", f"{counts.get('infeasible', 0):,}"),
             ("failed", f"{counts.get('failed', 0):,}"), ("in progress", f"{unfinished:,}"),
             ("best fitness", f"{num(node.get('fitness'))} (#{best})" if node else "—"),
             ("best test accuracy", num(metrics.get("test_accuracy"))),
             ("best params", num(node.get("params"))),
             ("elapsed", duration(times.get("elapsed"))),
             ("compute time", duration(times.get("compute")))]
    return section("summary", "Run summary", banner + cards(items))


def duration(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds):
        return "—"
    if seconds >= 7200:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 60:.1f} min" if seconds >= 120 else f"{seconds:.1f} s"


# -- charts --------------------------------------------------------------------------------------

def time_axis(g: nx.DiGraph) -> tuple[dict[int, float], str]:
    """x of each finished evaluation: time since the run's first birth, in a readable unit
    (birth order when the store has no finishing times)."""
    finished = {i: n["finished_at"] for i, n in g.nodes(data=True)
                if n["status"] in ("completed", "infeasible", "failed")}
    if not finished or any(t is None for t in finished.values()):
        return {i: float(g.nodes[i]["order"]) for i in finished}, "evaluation (birth order)"
    t0 = min(n["created_at"] for _, n in g.nodes(data=True))
    span = max(finished.values()) - t0
    scale, unit = (3600, "h") if span > 7200 else (60, "min") if span > 120 else (1, "s")
    return {i: (t - t0) / scale for i, t in finished.items()}, f"time since start ({unit})"


def fitness_section(g: nx.DiGraph, descent: list[int]) -> str:
    """Every finished evaluation over time, the best so far and the best's line of descent."""
    xs, xlabel = time_axis(g)
    points = [Point(i, x, g.nodes[i]["fitness"], g.nodes[i]["status"]) for i, x in xs.items()]
    legend = ('<div class="legend"><span><i style="background:#2f6fb3"></i>evaluation</span>'
              '<span><i style="background:#2b8a3e"></i>best so far</span>'
              '<span><i style="background:#d9480f"></i>line of descent of the best</span>'
              '<span style="color:#c92a2a">&times; infeasible / failed</span></div>')
    note = (f"{len(points):,} finished evaluations, one point each (click one for its details)."
            " As in Real et al. 2017, Fig. 1.")
    return section("fitness", "Fitness over time", legend + fitness_chart(points, descent, xlabel),
                   note)


def pareto_section(g: nx.DiGraph, objectives: list[str]) -> str:
    """One chart per objective (empty for single-objective runs)."""
    rows = [(i, n["fitness"], [n["metrics"].get(o, n.get(o)) for o in objectives])
            for i, n in g.nodes(data=True) if n["fitness"] is not None]
    rows = [r for r in rows if all(isinstance(c, (int, float)) for c in r[2])]
    if not objectives or not rows:
        return ""
    ids = [r[0] for r in rows]
    mask = pareto_front(np.array([r[1] for r in rows], float), np.array([r[2] for r in rows],
                                                                        float))
    front = {i for i, keep in zip(ids, mask) if keep}
    charts = "".join(pareto_chart(ids, [r[1] for r in rows], [float(r[2][k]) for r in rows],
                                  front, o) for k, o in enumerate(objectives))
    note = (f"{len(front)} non-dominated of {len(rows):,} completed individuals: fitness "
            f"maximised, {', '.join(objectives)} minimised (Deb et al. 2002, NSGA-II).")
    return section("pareto", "Pareto front", charts, escape(note))


# -- tables --------------------------------------------------------------------------------------

def descent_section(g: nx.DiGraph, descent: list[int], diffs: dict[int, GenomeDiff]) -> str:
    """A row per step from an initial individual to the best: edit, changes, fitness."""
    if not descent:
        return section("descent", "Line of descent of the best",
                       "<p>No individual has completed yet.</p>")
    rows = []
    for step, i in enumerate(descent):
        node = g.nodes[i]
        parent = descent[step - 1] if step else None
        delta = g.edges[parent, i]["delta"] if parent is not None else None
        lines = diffs[i].lines() if i in diffs and parent is not None else []
        shown = "<br>".join(escape(x) for x in lines[:CHANGE_LINES])
        if len(lines) > CHANGE_LINES:
            shown += f"<br>… {len(lines) - CHANGE_LINES} more"
        rows.append(f'<tr data-id="{i}"><td class="num">{step}</td><td>#{i}</td>'
                    f"<td>{escape(edit_text(g, i))}</td><td class=\"changes\">{shown}</td>"
                    f'<td class="num">{num(node["fitness"])}</td>{signed(delta)}'
                    f'<td class="num">{num(node["params"])}</td></tr>')
    head = ('<table class="descent"><tr><th class="num">step</th><th>individual</th>'
            '<th>mutation</th><th>what changed</th><th class="num">fitness</th>'
            '<th class="num">Δ</th><th class="num">params</th></tr>')
    note = ("From an initial individual to the best, following the parent whose weights each "
            "child inherited. Click a row for the full diff.")
    return section("descent", "Line of descent of the best", head + "".join(rows) + "</table>",
                   note)


def mutation_section(stats: list[MutationStat]) -> str:
    """How each operator fared (see :func:`~.lineage.mutation_stats`)."""
    rows = []
    for s in stats:
        rate = s.improvement_rate
        bar = (f'<span class="bar" style="width:{60 * rate:.0f}px"></span>{100 * rate:.0f}%'
               if rate is not None else "—")
        rows.append(f"<tr><td>{escape(s.mutation)}</td><td class=\"num\">{s.children:,}</td>"
                    f'<td class="num">{s.evaluated:,}</td><td class="num">{s.improved:,}</td>'
                    f"<td>{bar}</td>{signed(s.mean_delta)}{signed(s.best_delta)}"
                    f'<td class="num">{s.infeasible:,}</td></tr>')
    head = ("<table><tr><th>operator</th><th class=\"num\">children</th><th class=\"num\">"
            'evaluated</th><th class="num">improved</th><th>improvement rate</th><th class='
            '"num">mean Δ</th><th class="num">best Δ</th><th class="num">infeasible / '
            "failed</th></tr>")
    note = ("An improvement is a child strictly fitter than its parent (both evaluated). "
            "Crossover children count under their combined edit.")
    body = head + "".join(rows) + "</table>" if rows else "<p>No mutations yet.</p>"
    return section("mutations", "Mutation operators", body, note)


def final_section(final: dict | None) -> str:
    """The final selection (:func:`evograph.runs.final_pick.final_summary`): each candidate's
    mean ± spread over its retrainings next to its one search score; empty without one."""
    if not final:
        return ""
    pick = final.get("pick")
    if pick is None:
        text = final["reason"] if final["state"] == "skipped" else (
            f"{final['done']} of {final['evaluations']} retrainings done.")
        return section("final", "Final selection", f"<p>{escape(text)}</p>")
    head = ('<table><tr><th class="num">search rank</th><th>individual</th><th class="num">'
            'search fitness</th><th class="num">mean ± sd (val)</th><th class="num">seeds</th>'
            '<th class="num">test mean ± sd</th></tr>')
    rows = "".join(_final_row(c, c["id"] == pick["id"]) for c in pick["scores"])
    note = (f"The {final['candidates']} best distinct architectures of the search, each "
            f"retrained from its genes with the same {final['seeds']} fresh seeds; the pick "
            f"(#{pick['id']}, first row) has the best mean validation fitness. The search's "
            "single best score is the luckiest of many noisy ones (docs/final.md).")
    return section("final", "Final selection", head + rows + "</table>", note)


def _final_row(c: dict, picked: bool) -> str:
    test = "—" if c["test_mean"] is None else f"{num(c['test_mean'])} ± {num(c['test_std'])}"
    mark = " (pick)" if picked else ""
    return (f'<tr data-id="{c["id"]}"><td class="num">{c["rank"] + 1}</td>'
            f'<td>#{c["id"]}{mark}</td><td class="num">{num(c["search_fitness"])}</td>'
            f'<td class="num">{num(c["mean"])} ± {num(c["std"])}</td>'
            f'<td class="num">{c["n"]} of {c["planned"]}</td><td class="num">{test}</td></tr>')


# -- drawings ------------------------------------------------------------------------------------

def best_section(g: nx.DiGraph) -> str:
    """The best genome drawn by graphviz (its layers listed when ``dot`` is missing)."""
    best = g.graph.get("best")
    if best is None:
        return section("best", "Best architecture", "<p>No individual has completed yet.</p>")
    node = g.nodes[best]
    genome = from_dict(node["genome"])
    title = f"#{best}: fitness {node['fitness']:.4f}, {node['params']:,} params"
    try:
        picture = inline_svg(draw.to_dot(genome, title))
    except EvographError as exc:  # no graphviz: list the layers instead
        picture = f"<p class=\"note\">{escape(str(exc))}</p><pre>" + escape(
            "\n".join(n.label() for n in genome.nodes)) + "</pre>"
    genes = ", ".join(f"{k} = {v}" for k, v in genome.gene.items())
    return section("best", "Best architecture", f'<div class="arch" data-id="{best}">'
                   f"{picture}</div>", escape(f"Genes: {genes}. Hash {genome.hash}."))


def lineage_view(g: nx.DiGraph, top: int) -> tuple[set[int], str]:
    """Who the lineage view draws: the ancestry of the best and of as many of the ``top`` next
    best as fit in :data:`MAX_VIEW` boxes (the rest are counted as "+k more")."""
    best = ranked(g, top)
    chosen: set[int] = set()
    used = 0
    for i in best:
        more = chosen | nx.ancestors(g, i) | {i}
        if chosen and len(more) > MAX_VIEW:
            break
        chosen, used = more, used + 1
    if len(chosen) > MAX_VIEW:  # the best's ancestry alone is too long: its newest part
        line = line_of_descent(g)
        chosen = set(line[-MAX_VIEW:])
        return chosen, (f"the last {len(chosen)} steps of the best's line of descent "
                        f"({len(line) - len(chosen)} earlier ancestors left out)")
    if not chosen:
        chosen = set(sorted(g)[-MAX_VIEW:])
        return chosen, f"the {len(chosen)} newest individuals (none has completed yet)"
    return chosen, f"the ancestry of the best {used} individual(s)"


def lineage_section(g: nx.DiGraph, view: set[int], what: str) -> str:
    """The clickable lineage drawing of the individuals in ``view``."""
    sub = g.subgraph(view)
    try:
        picture = inline_svg(to_dot(sub, g), fit=True)
    except EvographError as exc:
        picture = f"<p class=\"note\">{escape(str(exc))}</p>"
    note = (f"Showing {len(view):,} of {len(g):,} individuals: {escape(what)}. Time flows left "
            "to right or top down; a long line of descent wraps into rows, read like text; "
            "edges carry the mutation; orange marks the best's line of descent; "
            '"+k more" counts children not drawn. Click a box for its metrics and diff.')
    return section("lineage", "Lineage", f'<div class="lgraph">{picture}</div>', note)
