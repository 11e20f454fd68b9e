"""The lineage of a run: graph invariants on a real run, queries, genome diffs, exports, CLI."""

from __future__ import annotations

import html
import itertools
import json
import shutil

import evograph
import networkx as nx
import numpy as np
import pytest
from evograph.errors import RunStoreError
from evograph.genome.io import from_dict
from evograph.genome.space import get_space
from evograph.operators.mutations import alter_learning_rate, identity, insert_convolution
from evograph.runs.cli.main import main
from evograph.runs.lineage.graph import (
    ancestry,
    best_id,
    descendants,
    diff,
    first_parent,
    genome_diff,
    line_of_descent,
    lineage,
    mutation_stats,
)
from evograph.runs.lineage.writers import read_lineage, sanitize, write_lineage
from evograph.runs.store import RunStore

from .lineage_runs import demo_run, real_run

pytestmark = pytest.mark.xdist_group("lineage-run")  # one real run per worker

needs_dot = pytest.mark.skipif(shutil.which("dot") is None, reason="graphviz is not installed")


@pytest.fixture(scope="module")
def real(tmp_path_factory):
    return real_run(tmp_path_factory.getbasetemp())


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    return demo_run(tmp_path_factory.getbasetemp(), "demo", individuals=150, population=12,
                    bad_fraction=0.1, seed=3)


def test_real_run_lineage_is_a_dag_of_recorded_births(real):
    g = lineage(real)
    with RunStore.open(real, readonly=True) as store:
        individuals = store.individuals()
        evaluations = {e.id: e for e in store.evaluations()}
        best = store.best(1)[0].id
    assert nx.is_directed_acyclic_graph(g)
    assert sorted(g) == [i.id for i in individuals]
    for ind in individuals:
        node = g.nodes[ind.id]
        assert node["genome_hash"] == ind.genome_hash == from_dict(ind.genome).hash
        assert node["fitness"] == evaluations[ind.id].fitness
        assert node["status"] == "completed" and node["params"] > 0 and node["flops"] >= 0
        assert sorted(g.predecessors(ind.id)) == sorted(ind.parents)
        for k, parent in enumerate(ind.parents):
            edge = g.edges[parent, ind.id]
            assert parent < ind.id  # time flows one way
            assert edge["mutation"] == ind.mutation and edge["mutation"]
            assert edge["parent_index"] == k and edge["args"] == ind.args
            assert edge["inherited"] == ind.inherited
    assert g.graph["best"] == best_id(g) == best


def test_line_of_descent_runs_from_an_initial_individual_to_the_best(real):
    g = lineage(real)
    line = line_of_descent(g)
    assert line[-1] == g.graph["best"] and first_parent(g, line[0]) is None
    for a, b in itertools.pairwise(line):
        assert g.edges[a, b]["parent_index"] == 0
        assert g.edges[a, b]["delta"] == pytest.approx(g.nodes[b]["fitness"]
                                                       - g.nodes[a]["fitness"])
    family = ancestry(g, line[-1])
    assert set(line) <= set(family) and set(family) == nx.ancestors(g, line[-1]) | {line[-1]}
    assert family.nodes[line[-1]] == g.nodes[line[-1]]
    assert line[-1] in descendants(g, line[0])


def test_ancestry_and_descendants_mirror_each_other(demo):
    g = lineage(demo)
    rng = np.random.default_rng(0)
    for a, b in rng.integers(len(g), size=(200, 2)):
        assert (int(a) in ancestry(g, int(b))) == (int(b) in descendants(g, int(a)) or a == b)


def test_mutation_stats_count_every_birth_once(demo):
    g = lineage(demo)
    stats = mutation_stats(g)
    children = [i for i in g if first_parent(g, i) is not None]
    assert sum(s.children for s in stats) == len(children)
    for s in stats:
        mine = [i for i in children if g.nodes[i]["mutation"] == s.mutation]
        deltas = [g.edges[first_parent(g, i), i]["delta"] for i in mine]
        deltas = [d for d in deltas if d is not None]
        assert s.evaluated == len(deltas) and s.improved == sum(d > 0 for d in deltas)
        assert s.infeasible == sum(g.nodes[i]["status"] in ("infeasible", "failed")
                                   for i in mine)
        if deltas:
            assert s.mean_delta == pytest.approx(np.mean(deltas))


def test_identity_diff_is_empty_and_insert_convolution_shows_one_node(real):
    g = lineage(real)
    genome = from_dict(g.nodes[g.graph["best"]]["genome"])
    space, rng = get_space("lse-conv"), np.random.default_rng(0)
    child, _ = identity(genome, rng, space)
    assert genome_diff(genome, child).is_empty and genome_diff(genome, child).lines() == []
    child, edit = insert_convolution(genome, rng, space)
    change = genome_diff(genome, child)
    assert [n["id"] for n in change.added] == [edit.args["node"]]
    assert not change.removed and not change.changed and not change.genes
    assert change.edges_removed == [[edit.args["after"], edit.args["before"]]]
    assert change.lines()[0].startswith(f"+ node {edit.args['node']}: conv")
    child, edit = alter_learning_rate(genome, rng, space)
    old, new = genome.gene["learning_rate"], child.gene["learning_rate"]
    assert genome_diff(genome, child).lines() == [f"~ gene learning_rate: {old:.6g} -> {new:.6g}"]


def test_diffs_along_recorded_births_match_their_operator(demo):
    g = lineage(demo)
    seen = set()
    for parent, child, mutation in g.edges(data="mutation"):
        change = diff(g, parent, child)
        if mutation in ("identity", "reset-weights"):
            assert change.is_empty
        elif mutation == "insert-convolution":
            assert len(change.added) == 1 and change.added[0]["op"] == "conv"
        elif mutation == "alter-learning-rate":
            assert list(change.genes) == ["learning_rate"] and not change.added
        seen.add(mutation)
    assert {"identity", "insert-convolution", "alter-learning-rate"} <= seen


def test_ages_and_population_from_the_store(demo):
    g = lineage(demo)
    assert g.graph["age_source"] == "events"
    alive = [i for i in g if g.nodes[i]["alive"]]
    assert len(alive) == 12  # the population size
    with RunStore.open(demo, readonly=True) as store:
        deaths = store.events("died")
    for event in deaths:
        for i in event["data"]["ids"]:
            assert g.nodes[i]["age_at_death"] == event["data"]["born"] - i - 1
    assert all(g.nodes[i]["age_at_death"] == 0 for i in g
               if g.nodes[i]["status"] in ("infeasible", "failed"))


@pytest.mark.parametrize("fmt", ["graphml", "gexf", "json"])
def test_exports_read_back_equal(real, tmp_path, fmt):
    g = lineage(real)
    path = write_lineage(g, tmp_path / f"lineage.{fmt}")
    back = read_lineage(path)
    expected = g if fmt == "json" else sanitize(g)
    assert sorted(back) == sorted(g) and all(isinstance(i, int) for i in back)
    assert dict(back.nodes(data=True)) == dict(expected.nodes(data=True))
    assert {(a, b): d for a, b, d in back.edges(data=True)} == \
        {(a, b): d for a, b, d in expected.edges(data=True)}
    if fmt != "gexf":  # GEXF keeps no graph attributes
        assert back.graph == expected.graph
    genome = json.loads(back.nodes[g.graph["best"]]["genome"]) if fmt != "json" else \
        back.nodes[g.graph["best"]]["genome"]
    assert from_dict(genome).hash == g.nodes[g.graph["best"]]["genome_hash"]


@needs_dot
def test_drawings_label_mutations_and_highlight_the_best(real, tmp_path):
    g = lineage(real)
    svg = html.unescape(write_lineage(g, tmp_path / "lineage.svg").read_text())
    line = line_of_descent(g)
    assert all(f'id="ind_{i}"' in svg for i in g)
    for a, b in itertools.pairwise(line):
        assert f'id="edge_{a}_{b}"' in svg and g.edges[a, b]["mutation"] in svg
    assert "#d9480f" in svg  # the highlight colour of the best's line of descent
    png = write_lineage(ancestry(g, line[-1]), tmp_path / "best.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"


def test_unknown_individual_is_one_clear_error(real):
    g = lineage(real)
    with pytest.raises(RunStoreError, match="has no individual 9999"):
        ancestry(g, 9999)


def test_lineage_is_reachable_from_the_package():
    assert evograph.lineage is lineage


@needs_dot
def test_cli_lineage_diff_and_errors(real, tmp_path, capsys):
    g = lineage(real)
    best = g.graph["best"]
    out = tmp_path / "best.graphml"
    assert main(["lineage", str(real), "--best", "-o", str(out)]) == 0
    assert sorted(read_lineage(out)) == sorted(ancestry(g, best))
    assert main(["lineage", str(real), "--of", str(best), "--format", "svg",
                 "-o", str(tmp_path / "x.svg")]) == 0
    assert (tmp_path / "x.svg").read_text().count('class="node"') == len(ancestry(g, best))
    capsys.readouterr()
    parent = first_parent(g, best)
    assert main(["diff", str(real), str(parent), str(best)]) == 0
    text = capsys.readouterr().out
    assert f"#{best} was made from #{parent} by {g.nodes[best]['mutation']}" in text
    assert all(line in text for line in diff(g, parent, best).lines())
    assert main(["diff", str(real), str(best), str(best), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["added"] == []
    assert main(["lineage", str(real), "--of", "9999"]) == 2
    assert main(["lineage", str(tmp_path), "--best"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and all(line.startswith("evograph: error: ") for line in err)
