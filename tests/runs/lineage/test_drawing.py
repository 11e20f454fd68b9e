"""Lineage drawings keep a page's shape: a long line of descent is wrapped into rows (read like
text) instead of a thin strip, and the report's lineage panel takes the page's width."""

from __future__ import annotations

import shutil
import struct

import networkx as nx
import pytest
from evograph.runs.cli.main import main
from evograph.runs.lineage.graph import ancestry, best_id, line_of_descent, lineage
from evograph.runs.lineage.writers import ROW, choose_layout, generations, render, to_dot
from evograph.runs.report.page import build_report

from ..report.cdp import CHROMIUM, Browser
from .lineage_runs import demo_run

needs_dot = pytest.mark.skipif(shutil.which("dot") is None, reason="graphviz is not installed")


@pytest.fixture(scope="module")
def long_run(tmp_path_factory):
    """A synthetic run with a population of 2: the best descends from a line of ~80."""
    return demo_run(tmp_path_factory.getbasetemp(), "long-line", individuals=120, population=2,
                    sample=2, batch=1)


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])  # the IHDR chunk: width, height


def chain(n: int) -> nx.DiGraph:
    """A line of descent of ``n`` individuals, as :func:`lineage` describes one."""
    g = nx.DiGraph(run_id="chain", best=n - 1)
    for i in range(n):
        g.add_node(i, status="completed", fitness=i / n, mutation="identity" if i else None)
        if i:
            g.add_edge(i - 1, i, mutation="insert-convolution", parent_index=0)
    return g


def test_a_short_line_stays_left_to_right_and_a_long_one_wraps_in_order():
    assert choose_layout(chain(4)) == choose_layout(chain(1)) == choose_layout(nx.DiGraph())
    assert choose_layout(chain(4)).rankdir == "LR" and not choose_layout(chain(4)).rows
    layout = choose_layout(chain(60))
    assert layout.rankdir == "TB" and len(layout.rows) > 1
    assert [i for row in layout.rows for i in row] == list(range(60))  # read like text
    assert all(len(row) <= ROW for row in layout.rows)
    dot = to_dot(chain(60))
    assert dot.count("rank=same") == len(layout.rows)
    assert all(f"id=\"edge_{i}_{i + 1}\"" in dot for i in range(59))  # every birth drawn once


def test_a_wide_shallow_lineage_is_not_wrapped():
    g = nx.DiGraph(run_id="wide")
    for i in range(40):  # forty initial individuals, each with one child
        g.add_node(i, status="completed", fitness=0.5, mutation=None)
        g.add_node(100 + i, status="completed", fitness=0.6, mutation="identity")
        g.add_edge(i, 100 + i, mutation="identity", parent_index=0)
    assert generations(g)[100] == 1 and not choose_layout(g).rows


@needs_dot
def test_the_ancestry_of_a_long_line_is_drawn_in_a_page_shape(long_run, tmp_path, capsys):
    g = lineage(long_run)
    best = best_id(g)
    line = line_of_descent(g, best)
    assert len(line) >= 40 and len(ancestry(g, best)) == len(line)  # a long, plain line
    out = tmp_path / "anc.png"
    assert main(["lineage", str(long_run), "--of", str(best), "-o", str(out)]) == 0
    assert f"({len(line)} individuals" in capsys.readouterr().out
    width, height = png_size(out.read_bytes())
    assert width / height < 4 and height / width < 4, (width, height)  # was 4047 x 101


@needs_dot
def test_a_line_with_crossover_mates_and_side_branches_still_draws():
    g = chain(50)
    for k, (parent, child) in enumerate([(3, 20), (10, 30), (25, 45)]):  # crossover mates
        mate = 100 + k
        g.add_node(mate, status="completed", fitness=0.3, mutation="identity")
        g.add_edge(parent, mate, mutation="identity", parent_index=0)
        g.add_edge(mate, child, mutation="crossover", parent_index=1)
    for k, parent in enumerate([5, 15, 40]):  # children that are not ancestors of the best
        g.add_node(200 + k, status="failed", fitness=None, mutation="identity")
        g.add_edge(parent, 200 + k, mutation="identity", parent_index=0)
    assert choose_layout(g).rows
    svg = render(to_dot(g), "svg").decode()
    assert all(f'id="ind_{i}"' in svg for i in g)
    width, height = png_size(render(to_dot(g), "png"))
    assert width / height < 4 and height / width < 4, (width, height)


@needs_dot
@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed")
def test_the_report_lineage_panel_takes_the_page_width(long_run, tmp_path):
    path = build_report(long_run, tmp_path / "report.html")
    browser = Browser(width=1400, height=1000)
    try:
        browser.open(path.resolve().as_uri())
        assert browser.js("document.body.dataset.ready") == "1"
        box = browser.js("""(() => {
            const panel = document.querySelector('#lineage .lgraph');
            const svg = panel.querySelector('svg').getBoundingClientRect();
            return {panel: panel.clientWidth, height: panel.clientHeight,
                    svg: svg.width, svgHeight: svg.height,
                    scrolls: panel.scrollWidth > panel.clientWidth,
                    page: document.querySelector('main').clientWidth};
        })()""")
        assert box["panel"] > 0.9 * box["page"]          # the main column's width
        assert box["svg"] >= 0.95 * box["panel"]          # the drawing fills it ...
        assert not box["scrolls"]                         # ... without a sideways scroll bar
        assert box["svgHeight"] > box["svg"] / 4          # and is no strip
        best = best_id(lineage(long_run))
        browser.click(f"#ind_{best}")                     # still clickable once scaled
        assert browser.js("document.getElementById('details').dataset.shown") == str(best)
        assert browser.errors() == []
    finally:
        browser.close()
