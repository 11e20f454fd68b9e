"""Seeding a run (``evograph run --init``): given genomes are checked against the run before
its directory exists, stored in its store, proposed first, recorded in lineage as seeded, and
kept across resumes."""

from __future__ import annotations

import json

import numpy as np
import pytest
from evograph.errors import ConfigError
from evograph.genome.io import save, to_json
from evograph.genome.space import get_space
from evograph.genome.validate import analyze
from evograph.runs.cli.main import main
from evograph.runs.config import config_from_dict
from evograph.runs.driver import create_run, run
from evograph.runs.lineage.graph import lineage
from evograph.runs.report.page import render_report
from evograph.runs.store import RunStore
from evograph.selection.strategy import make_strategy
from evograph.selection.toy import bitstring_variation

from tests.runs.test_run import ROOT, TINY, final_state, tiny_config

SPACE = get_space("lse-conv", channels=(4, 16), strides=(1, 2), max_layers=12)


def genome_files(tmp_path, n, shape=(1, 8, 8), classes=10, seed=1):
    """``n`` random genomes of the tiny runs' space, written as evograph genome JSON."""
    rng = np.random.default_rng(seed)
    paths, genomes = [], []
    for k in range(n):
        genome = SPACE.sample(rng, shape, classes)
        path = tmp_path / f"g{k + 1}.json"
        save(genome, path)
        paths.append(path)
        genomes.append(genome)
    return paths, genomes


def test_run_init_proposes_the_given_genomes_first_and_records_them_as_seeded(tmp_path, capsys,
                                                                              monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    paths, genomes = genome_files(tmp_path, 2)
    run_dir = tmp_path / "run"
    sets = [arg for text in TINY + ["executor.name=serial", "budget.evaluations=6"]
            for arg in ("--set", text)]
    assert main(["run", str(ROOT / "runs/configs/digits.toml"), *sets, "--out", str(run_dir),
                 "--no-live", "--init", *map(str, paths)]) == 0
    with RunStore.open(run_dir, readonly=True) as store:
        individuals = store.individuals()
        assert [i.genome_hash for i in individuals[:2]] == [g.hash for g in genomes]
        assert [(i.mutation, i.args, i.parents) for i in individuals[:2]] == [
            ("seeded", {"index": 0}, ()), ("seeded", {"index": 1}, ())]
        assert all(i.mutation != "seeded" for i in individuals[2:])
        seeded = store.events("seeded")[0]["data"]  # in the store, not only a file path
        assert seeded["sources"] == [str(p) for p in paths]
        assert seeded["genomes"][1] == json.loads(to_json(genomes[1]))
    capsys.readouterr()
    assert main(["show", str(run_dir), "1"]) == 0
    assert f"seeded: given genome {paths[1]}" in capsys.readouterr().out
    assert main(["show", str(run_dir), "1", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["seeded_from"] == str(paths[1])
    g = lineage(run_dir)
    assert g.nodes[0]["mutation"] == g.nodes[1]["mutation"] == "seeded"
    html = render_report(run_dir)
    assert "seeded with 2 given genome(s)" in html and '"m":"seeded"' in html


def test_a_seeded_run_resumes_with_its_seeds_to_the_state_of_an_uninterrupted_one(tmp_path):
    paths, genomes = genome_files(tmp_path, 3, seed=2)
    straight = create_run(tiny_config("serial", ["budget.evaluations=8"]), tmp_path / "a",
                          init=paths)
    run(straight, live=False)
    # in steps: 1 evaluation, then on to 8 (the seeds come from the store, not the files)
    stepped = create_run(tiny_config("serial", ["budget.evaluations=1"]), tmp_path / "b",
                         init=genomes)
    run(stepped, live=False)
    for path in paths:
        path.unlink()
    assert run(stepped, live=False, overrides={"budget.evaluations": 8}).finished
    assert final_state(stepped)[:2] == final_state(straight)[:2]
    with RunStore.open(stepped, readonly=True) as store:
        seeded = [i.genome_hash for i in store.individuals() if i.mutation == "seeded"]
        assert seeded == [g.hash for g in genomes]
        assert store.events("seeded")[0]["data"]["sources"] == ["init[0]", "init[1]", "init[2]"]


def with_strategy(name: str, extra=(), **params):
    """The tiny config with another strategy (and only its own parameters)."""
    data = tiny_config("serial", list(extra)).to_dict()
    data["strategy"] = {"name": name, **params}
    return config_from_dict(data)


@pytest.mark.parametrize("strategy", ["random", "tournament", "topk", "nsga2"])
def test_every_strategy_starts_from_the_seeds(tmp_path, strategy):
    paths, genomes = genome_files(tmp_path, 2, seed=3)
    config = with_strategy(strategy, ["budget.evaluations=3"], population_size=4)
    run(create_run(config, tmp_path / "run", init=paths), live=False)
    with RunStore.open(tmp_path / "run", readonly=True) as store:
        first = store.individuals()[:2]
    assert [(i.genome_hash, i.mutation) for i in first] == [(g.hash, "seeded") for g in genomes]


def test_genomes_that_do_not_fit_the_run_are_one_line_naming_the_file(tmp_path):
    (tmp_path / "rgb").mkdir()
    wrong_shape, _ = genome_files(tmp_path / "rgb", 1, shape=(3, 32, 32))
    with pytest.raises(ConfigError, match=r"--init .*g1\.json: its input shape is "
                                          r"\(3, 32, 32\), the run's \(digits\) is \(1, 8, 8\)"):
        create_run(tiny_config("serial"), tmp_path / "run", init=wrong_shape)
    (tmp_path / "five").mkdir()
    paths, genomes = genome_files(tmp_path / "five", 5, seed=4)
    big = max(genomes, key=lambda g: analyze(g).params)
    with pytest.raises(ConfigError, match=r"--init init\[0\]: does not fit space 'lse-conv': "
                                          r".*parameters exceed the budget"):
        create_run(tiny_config("serial", [f"space.max_params={analyze(big).params - 1}"]),
                   tmp_path / "run", init=[big])
    with pytest.raises(ConfigError, match="5 genomes given to start from, more than its "
                                          "population_size=4"):
        create_run(tiny_config("serial"), tmp_path / "run", init=paths)
    not_json = tmp_path / "notes.json"
    not_json.write_text("hello")
    with pytest.raises(ConfigError, match=r"--init .*notes\.json: not valid JSON"):
        create_run(tiny_config("serial"), tmp_path / "run", init=[not_json])
    assert not (tmp_path / "run").exists()  # nothing created


def test_the_rl_controller_cannot_be_seeded_and_says_so(tmp_path):
    paths, _ = genome_files(tmp_path, 1)
    with pytest.raises(ConfigError, match="strategy 'rl' samples every proposal itself"):
        create_run(with_strategy("rl"), tmp_path / "run", init=paths)


def test_a_state_made_with_seeds_needs_them_to_load():
    variation = bitstring_variation(8)
    seeded = make_strategy("aging", variation, 0, population_size=4, sample_size=2)
    seeds = [variation.initial(np.random.default_rng(k)) for k in (1, 2)]
    seeded.seed_with(seeds)
    asked = seeded.ask(3)
    assert [p.edit.mutation if p.edit else None for p in asked] == ["seeded", "seeded", None]
    state = json.loads(json.dumps(seeded.state_dict()))
    bare = make_strategy("aging", variation, 0, population_size=4, sample_size=2)
    with pytest.raises(ConfigError, match="made with 2 given starting genome"):
        bare.load_state_dict(state)
    again = make_strategy("aging", variation, 0, population_size=4, sample_size=2)
    again.seed_with(seeds)
    again.load_state_dict(state)
    assert [p.genome for p in again.ask(2)] == [p.genome for p in seeded.ask(2)]
