"""The HTML report of a run: one self-contained file that works offline.

Everything is inline — style, script, data (a JSON block) and pictures (SVG written here or by
graphviz) — and a Content-Security-Policy forbids the page any request at all, so it opens from
disk, an e-mail attachment or an air-gapped machine alike. It shows the run summary, the fitness
of every evaluation over time with the best-so-far curve (Real et al. 2017, Fig. 1), Pareto fronts
for multi-objective runs, the line of descent of the best with each mutation and what it changed,
the best architecture, mutation-operator statistics, and a lineage view in which clicking an
individual shows its metrics and its diff against its parent.

Large runs stay usable: every evaluation is a point of the chart, but the lineage view draws only
the ancestry of the best few (at most :data:`~.report_sections.MAX_VIEW` boxes) and genome diffs
are embedded for those (or for everyone in runs of up to :data:`DIFF_ALL` individuals).
"""

from __future__ import annotations

import json
import os
from html import escape
from pathlib import Path

import networkx as nx

from ..final_pick import final_summary
from ..lineage.diff import GenomeDiff, genome_diff
from ..lineage.graph import first_parent, line_of_descent, lineage, mutation_stats, open_store
from ..state import RunState, run_state
from ..store import RunStore, atomic_write_text
from .assets import CSS, JS
from .sections import (
    best_section,
    descent_section,
    duration,
    edit_args,
    final_section,
    fitness_section,
    lineage_section,
    lineage_view,
    mutation_section,
    pareto_section,
    summary_section,
)

DIFF_ALL = 1500          # embed every individual's diff up to this many individuals
CHILDREN_LISTED = 30     # children named in the details panel (the rest counted)
CSP = ("default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; "
       "img-src data:")
EXTRA_METRICS = (("val_accuracy", "val accuracy"), ("test_accuracy", "test accuracy"),
                 ("val_loss", "val loss"), ("train_time", "train time (s)"))


def _round(value: object) -> object:
    return float(f"{value:.6g}") if isinstance(value, float) else value


def _extras(node: dict, exact_age: bool) -> list[list]:
    rows = [[label, _round(node["metrics"].get(key))] for key, label in EXTRA_METRICS]
    dead = "age at death" if exact_age or node["status"] != "completed" else \
        "age at death (at least)"  # counted up to its last child: the store logs no deaths
    rows += [["wall time (s)", _round(node["wall_time"])], ["attempts", node["attempt"]],
             ["alive", None if node["alive"] is None else str(node["alive"]).lower()],
             [dead, node["age_at_death"]]]
    return [r for r in rows if r[1] is not None]


def _weights(g: nx.DiGraph, i: int) -> str | None:
    parent = first_parent(g, i)
    if parent is None:
        return None
    edge = g.edges[parent, i]
    if not edge["inherit"]:
        return f"fresh start (no weights inherited from #{parent})"
    report = edge["inherited"]
    if not report:
        return None
    return (f"from #{parent}: {len(report.get('copied', []))} tensors copied, "
            f"{len(report.get('partial', []))} partly, {len(report.get('fresh', []))} fresh")


def _entry(g: nx.DiGraph, i: int, diff: GenomeDiff | None) -> dict:
    """What the details panel shows about one individual (short keys: 10,000 of these)."""
    n = g.nodes[i]
    pred = g.pred[i]
    parents = sorted(pred, key=lambda p: pred[p]["parent_index"])
    entry = {"s": n["status"], "f": _round(n["fitness"]), "m": n["mutation"],
             "a": edit_args(g, i),
             "p": parents, "n": n["params"], "fl": n["flops"], "b": n["batch"],
             "x": _extras(n, g.graph["age_source"] == "events")}
    children = sorted(g.succ[i])
    if children:
        entry["c"] = children[:CHILDREN_LISTED]
        entry["cm"] = max(0, len(children) - CHILDREN_LISTED)
    if n["error"]:
        entry["e"] = n["error"]
    weights = _weights(g, i)
    if weights:
        entry["w"] = weights
    if diff is not None:
        entry["d"] = diff.to_dict()
    return entry


def diffs_for(g: nx.DiGraph, ids: set[int]) -> dict[int, GenomeDiff]:
    """Each individual's genome diff against its first parent (initial ones have none)."""
    out = {}
    for i in sorted(ids):
        parent = first_parent(g, i)
        if parent is not None:
            out[i] = genome_diff(g.nodes[parent]["genome"], g.nodes[i]["genome"])
    return out


def _times(g: nx.DiGraph) -> dict[str, float]:
    created = [n["created_at"] for _, n in g.nodes(data=True)]
    finished = [n["finished_at"] for _, n in g.nodes(data=True) if n["finished_at"]]
    walls = [n["wall_time"] for _, n in g.nodes(data=True) if n["wall_time"]]
    times = {"compute": float(sum(walls))}
    if created and finished:
        times["elapsed"] = max(finished) - min(created)
    return times


def _state_line(state: RunState, seeded: list[dict]) -> str:
    """The run's state (:mod:`..state`), its wall-clock time and the genomes it started from."""
    text = (f"{state.line()} · elapsed {duration(state.elapsed_s)} in {state.sessions} driver "
            f"session(s)")
    if seeded:
        sources = seeded[-1]["data"].get("sources", [])
        text += f" · seeded with {len(sources)} given genome(s): {', '.join(sources)}"
    return f'<p class="sub state state-{escape(state.state)}">{escape(text)}</p>'


def _header(g: nx.DiGraph, config: dict, state_line: str = "") -> str:
    parts = [f"strategy {config.get('strategy', {}).get('name', '?')}",
             f"space {config.get('space', {}).get('name', '?')}",
             f"dataset {config.get('dataset', {}).get('name', '?')}",
             f"fitness {config.get('fitness', {}).get('name', '?')}",
             f"seed {config.get('seed', '?')}"]
    return (f"<header><h1>evograph run {escape(str(g.graph['run_id']))}</h1>"
            f"<p class=\"sub\">{escape(' · '.join(parts))} · {escape(g.graph['run_dir'])}</p>"
            f"{state_line}</header>")


NAV = (("summary", "Summary"), ("final", "Final selection"), ("fitness", "Fitness"), ("pareto", "Pareto front"),
       ("descent", "Line of descent"), ("best", "Best architecture"),
       ("mutations", "Mutations"), ("lineage", "Lineage"))


def render_report(source: str | os.PathLike | RunStore, top: int = 10) -> str:
    """The report of a run (a run directory or an open store) as one HTML string."""
    with open_store(source) as store:
        g = lineage(store)
        config = store.config
        state = run_state(store)
        state_line = _state_line(state, store.events("seeded"))
        final = final_summary(store)
    descent = line_of_descent(g)
    view, what = lineage_view(g, top)
    featured = set(g) if len(g) <= DIFF_ALL else view | set(descent)
    diffs = diffs_for(g, featured)
    counts: dict[str, int] = {}
    for _, status in g.nodes(data="status"):
        counts[status] = counts.get(status, 0) + 1
    # the "in progress" banner only while the run can go on by itself or by a resume
    budget = config.get("budget", {}).get("evaluations") \
        if state.state in ("running", "interrupted", "new") else None
    body = [summary_section(g, counts, budget, {**_times(g), "elapsed": state.elapsed_s}),
            final_section(final), fitness_section(g, descent), pareto_section(g, g.graph["objectives"]),
            descent_section(g, descent, diffs), best_section(g),
            mutation_section(mutation_stats(g)), lineage_section(g, view, what)]
    nav = "".join(f'<a href="#{a}">{t}</a>' for a, t in NAV
                  if (a != "pareto" or body[3]) and (a != "final" or body[1]))
    data = {"run_dir": g.graph["run_dir"], "best": g.graph["best"],
            "ind": {str(i): _entry(g, i, diffs.get(i)) for i in sorted(g)}}
    # "<" escaped: nothing in the data can close the script element or open a comment
    payload = json.dumps(data, separators=(",", ":"), allow_nan=False).replace("<", "\\u003c")
    title = escape(f"evograph report: {g.graph['run_id']}")
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{title}</title><style>{CSS}</style></head><body>"
            f"{_header(g, config, state_line)}<nav>{nav}</nav><div class=\"layout\"><main>"
            + "".join(body) + "</main><aside id=\"details\"><p class=\"note\">Click an "
            "individual (a point, a row, a box) to see its metrics and what changed from its "
            'parent.</p></aside></div><div id="tip"></div>'
            f'<script type="application/json" id="evo-data">{payload}</script>'
            f"<script>{JS}</script></body></html>\n")


def build_report(source: str | os.PathLike | RunStore, out: str | os.PathLike | None = None,
                 top: int = 10) -> Path:
    """Write the report (default ``RUN_DIR/report.html``) atomically and return its path."""
    html = render_report(source, top)
    if out is None:
        run_dir = source.run_dir if isinstance(source, RunStore) else Path(source)
        out = Path(run_dir) / "report.html"
    out = Path(out)
    atomic_write_text(out, html)
    return out
