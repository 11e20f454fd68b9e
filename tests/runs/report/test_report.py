"""The HTML report: self-contained and offline, correct for finished, failing, unfinished and
multi-objective runs, and interactive in a real headless Chromium."""

from __future__ import annotations

import itertools
import json
import re
import time

import numpy as np
import pytest
from evograph.genome.io import from_dict
from evograph.runs.cli.main import main
from evograph.runs.lineage.graph import diff, first_parent, line_of_descent, lineage
from evograph.runs.report import sections as report_sections
from evograph.runs.report.charts import Axis, pareto_front
from evograph.runs.report.page import build_report, render_report
from evograph.runs.store import RunStore

from ..lineage.lineage_runs import demo_run, real_run
from .cdp import CHROMIUM, Browser

pytestmark = pytest.mark.xdist_group("lineage-run")  # one real run per worker

FINISHED = ("completed", "infeasible", "failed")


@pytest.fixture(scope="module")
def real(tmp_path_factory):
    return real_run(tmp_path_factory.getbasetemp())


def _data(html: str) -> dict:
    block = re.search(r'<script type="application/json" id="evo-data">(.*?)</script>', html, re.DOTALL)
    return json.loads(block.group(1))


def _chart(html: str, cls: str) -> str:
    return re.search(rf'<svg class="chart {cls}".*?</svg>', html, re.DOTALL).group(0)


def test_report_is_one_self_contained_offline_file(real, tmp_path):
    path = build_report(real, tmp_path / "r.html")
    html = path.read_text()
    assert "http://" not in html and "https://" not in html
    assert not re.search(r"<(script|img|iframe)[^>]+src=|<link", html)
    assert "Content-Security-Policy" in html and "default-src 'none'" in html
    g = lineage(real)
    data = _data(html)
    assert sorted(map(int, data["ind"])) == sorted(g) and data["best"] == g.graph["best"]
    chart = _chart(html, "fitness-chart")
    assert chart.count('class="pt') == sum(g.nodes[i]["status"] in FINISHED for i in g)
    for section in ("summary", "fitness", "descent", "best", "mutations", "lineage"):
        assert f'<section id="{section}">' in html
    assert '<section id="pareto">' not in html  # single objective


def test_report_of_a_failing_run_still_in_progress(tmp_path):
    run_dir = demo_run(tmp_path, "live", individuals=60, population=8, bad_fraction=0.25,
                       unfinished=6, seed=1)
    with RunStore.open(run_dir) as writer:  # a driver holds the run meanwhile
        writer.acquire_lock()
        html = render_report(run_dir)
    g = lineage(run_dir)
    statuses = [g.nodes[i]["status"] for i in g]
    assert statuses.count("pending") == 3 and statuses.count("running") == 3
    assert "In progress" in html
    chart = _chart(html, "fitness-chart")
    bad = sum(s in ("infeasible", "failed") for s in statuses)
    assert bad > 0 and chart.count('class="pt bad') == bad
    assert chart.count('class="pt') == sum(s in FINISHED for s in statuses)
    data = _data(html)
    assert any("e" in entry for entry in data["ind"].values())  # failures carry their error


def test_report_of_a_run_with_nothing_completed(tmp_path):
    run_dir = demo_run(tmp_path, "fresh", individuals=5, population=5, unfinished=5)
    html = render_report(run_dir)
    assert "No individual has completed yet." in html and _data(html)["best"] is None


def test_pareto_front_matches_brute_force():
    rng = np.random.default_rng(0)
    fitness, costs = rng.random(300), rng.integers(1, 20, size=(300, 2)).astype(float)
    mask = pareto_front(fitness, costs)
    for i in range(300):
        dominated = any(fitness[j] >= fitness[i] and (costs[j] <= costs[i]).all()
                        and (fitness[j] > fitness[i] or (costs[j] < costs[i]).any())
                        for j in range(300))
        assert mask[i] == (not dominated)


def test_multi_objective_report_draws_the_front(tmp_path):
    run_dir = demo_run(tmp_path, "moo", individuals=60, population=8, objectives=("params",))
    html = render_report(run_dir)
    chart = _chart(html, "pareto-chart")
    g = lineage(run_dir)
    done = [i for i in g if g.nodes[i]["fitness"] is not None]
    assert chart.count('class="pt') == len(done)
    front = [int(i) for i in re.findall(r'class="pt front-pt" data-id="(\d+)"', chart)]
    mask = pareto_front(np.array([g.nodes[i]["fitness"] for i in done]),
                        np.array([[g.nodes[i]["params"]] for i in done], float))
    assert sorted(front) == sorted(i for i, keep in zip(done, mask) if keep)


def test_lineage_view_stays_small_in_big_runs(tmp_path, monkeypatch):
    run_dir = demo_run(tmp_path, "big", individuals=150, population=10)
    monkeypatch.setattr(report_sections, "MAX_VIEW", 12)
    g = lineage(run_dir)
    view, _ = report_sections.lineage_view(g, top=10)
    assert 0 < len(view) <= 12 and g.graph["best"] in view
    html = render_report(run_dir)
    drawn = re.search(r'<section id="lineage">.*?</section>', html, re.DOTALL).group(0)
    assert drawn.count('class="node"') == len(view) and f"Showing {len(view)} of 150" in drawn


def test_axis_ticks_are_round_and_inside():
    ticks = Axis(0.083, 0.117, 0, 100).ticks()
    assert ticks == pytest.approx([0.09, 0.1, 0.11])
    assert Axis(3, 40000, 0, 100, log=True).ticks() == [10.0, 100.0, 1000.0, 10000.0]


def test_cli_report_writes_into_the_run_by_default(real, tmp_path, capsys):
    assert main(["report", str(real), "-o", str(tmp_path / "x.html")]) == 0
    assert (tmp_path / "x.html").read_text().startswith("<!DOCTYPE html>")
    assert main(["report", str(real)]) == 0
    assert (real / "report.html").exists() and "wrote" in capsys.readouterr().out
    assert main(["report", str(tmp_path)]) == 2


# -- in a real browser ---------------------------------------------------------------------------

def _ancestor_to_click(g) -> int:
    """An ancestor of the best whose birth changed the architecture (else any with a parent)."""
    line = line_of_descent(g)
    changed = [i for i in line[1:-1] if diff(g, first_parent(g, i), i).added]
    return (changed or line[1:-1] or line[1:])[0]


def _expected_lines(g, i: int) -> list[str]:
    change = diff(g, first_parent(g, i), i)
    lines = [f"+ node {n['id']}: {n['caption']}" for n in change.added]
    lines += [f"~ node {n['id']} ({n['op']}): " for n in change.changed]
    return lines + [f"~ gene {k}: " for k in change.genes]


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (.ci/system-deps.sh)")
def test_report_in_headless_chromium(real, tmp_path):
    path = build_report(real, tmp_path / "report.html")
    g = lineage(real)
    browser = Browser()
    try:
        started = time.monotonic()
        browser.open(path.resolve().as_uri())
        assert browser.js("document.body.dataset.ready") == "1"
        # charts rendered: a point per finished evaluation, a best-so-far curve
        points = browser.js("document.querySelectorAll('svg.fitness-chart .pt').length")
        assert points == sum(g.nodes[i]["status"] in FINISHED for i in g)
        assert browser.js("document.querySelector('svg.fitness-chart')"
                          ".getBoundingClientRect().width") > 300
        assert browser.js("document.querySelector('.best-line').getTotalLength()") > 0
        # the line of descent lists each mutation
        rows = browser.js("[...document.querySelectorAll('#descent tr[data-id]')]"
                          ".map(r => [+r.dataset.id, r.innerText])")
        line = line_of_descent(g)
        assert [r[0] for r in rows] == line
        for (_, text), (a, b) in zip(rows[1:], itertools.pairwise(line)):
            assert g.edges[a, b]["mutation"] in text
        # the best architecture is drawn, one box per layer
        best = from_dict(g.nodes[g.graph["best"]]["genome"])
        assert browser.js("document.querySelectorAll('#best svg g.node').length") == \
            len(best.nodes)
        # clicking an ancestor in the lineage view shows what changed
        ancestor = _ancestor_to_click(g)
        browser.click(f"#ind_{ancestor}")
        assert browser.js("document.getElementById('details').dataset.shown") == str(ancestor)
        panel = browser.js("document.getElementById('details').innerText")
        assert f"What changed from #{first_parent(g, ancestor)}" in panel
        assert all(line in panel for line in _expected_lines(g, ancestor)), panel
        assert browser.js(f"document.getElementById('ind_{ancestor}').classList"
                          ".contains('sel')")
        # and clicking a point of the chart selects that evaluation
        browser.click('svg.fitness-chart .pt[data-id="0"]')
        assert "An initial individual" in browser.js(
            "document.getElementById('details').innerText")
        shot = tmp_path / "report.png"
        browser.screenshot(str(shot))
        print(f"report screenshot: {shot} ({time.monotonic() - started:.1f} s in the browser)")
        assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 10_000
        assert browser.errors() == []
        assert browser.requests() == [path.resolve().as_uri()]  # nothing but the file itself
    finally:
        browser.close()
