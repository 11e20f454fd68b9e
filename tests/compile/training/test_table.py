"""The ``table`` fitness generator, its key functions and the ``mlp-table`` space: lookups are
exact for every key of a table written here, genomes outside it are infeasible with a reason,
users plug in their own key functions, and a real run with ``fitness = "table"`` works."""

from __future__ import annotations

import csv
import gzip
import io
import json
import re
from pathlib import Path

import numpy as np
import pytest
from evograph.compile.training.fitness import make_fitness
from evograph.compile.training.table import (
    SHIPPED_TABLE,
    TABLE_KEYS,
    TableFitness,
    TableKeyError,
    load_table,
    mlp_chain_key,
    register_table_key,
)
from evograph.genome.core import Genome
from evograph.genome.space import get_space
from evograph.genome.spaces_tabular import (
    enumerate_mlp_table,
    mlp_chain_genome,
    sample_mlp_table,
    space_size,
)
from evograph.operators.base import mutate

ROOT = Path(__file__).resolve().parents[3]
SMALL = {"max_layers": 2, "unit_choices": (16, 32), "activations": ("relu", "tanh"),
         "optimizers": ("adam", "sgd")}
SHAPE, CLASSES, SEEDS = (1, 8, 8), 10, (0, 1, 2)


def small_space():
    return get_space("mlp-table", **SMALL)


def fake_value(key: str, seed: int) -> float:
    """A distinct, reproducible accuracy per (key, seed)."""
    return round(0.5 + (sum(map(ord, key)) % 97) / 300 + seed / 1000, 6)


def table_rows(space) -> list[dict]:
    rows = []
    for genome in enumerate_mlp_table(space, SHAPE, CLASSES):
        key = mlp_chain_key(genome)
        for seed in SEEDS:
            rows.append({"key": key, "seed": seed, "val_accuracy": fake_value(key, seed),
                         "test_accuracy": fake_value(key, seed) - 0.01, "train_time": 0.5 + seed,
                         "params": len(key) * 10, "flops": len(key) * 9, "optimizer": key[-3:]})
    return rows


def write_table(rows: list[dict], path: Path) -> Path:
    if path.name.removesuffix(".gz").endswith(".json"):
        data = json.dumps(rows).encode()
    else:
        text = io.StringIO()
        writer = csv.DictWriter(text, list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
        data = text.getvalue().encode()
    path.write_bytes(gzip.compress(data) if path.suffix == ".gz" else data)
    return path


@pytest.fixture
def small_table(tmp_path) -> Path:
    return write_table(table_rows(small_space()), tmp_path / "small.csv.gz")


# -- the space -----------------------------------------------------------------------------------
def test_mlp_table_space_enumerates_distinct_valid_genomes():
    space = get_space("mlp-table")
    genomes = list(enumerate_mlp_table(space, SHAPE, CLASSES))
    assert len(genomes) == space_size(space) == 1008
    assert len({mlp_chain_key(g) for g in genomes}) == len(genomes)
    assert all(space.is_valid(g) for g in genomes[::37])


def test_sampler_is_uniform_over_architectures():
    space = small_space()          # 2 one-layer and 4 two-layer width patterns
    rng = np.random.default_rng(0)
    depths = [len(sample_mlp_table(space, rng, SHAPE, CLASSES).nodes) - 2 for _ in range(3000)]
    assert np.mean(np.array(depths) == 2) == pytest.approx(4 / 6, abs=0.03)


def test_mutations_stay_inside_the_table():
    space = get_space("mlp-table")
    keys = {mlp_chain_key(g) for g in enumerate_mlp_table(space, SHAPE, CLASSES)}
    rng = np.random.default_rng(1)
    genome = space.sample(rng, SHAPE, CLASSES)
    for _ in range(300):
        genome, _ = mutate(genome, rng, space)
        assert mlp_chain_key(genome) in keys


# -- key functions (every registered one) --------------------------------------------------------
def _mlp_example():
    space = get_space("mlp-table")
    return mlp_chain_genome((64, 16), "tanh", "rmsprop", space, SHAPE, CLASSES), "64-16|tanh|rmsprop"


def _nb201_example():
    from evograph.genome.cells.nb201 import nb201_genome
    text = "|nor_conv_3x3~0|+|none~0|skip_connect~1|+|avg_pool_3x3~0|nor_conv_1x1~1|none~2|"
    ops = ["nor_conv_3x3", "none", "skip_connect", "avg_pool_3x3", "nor_conv_1x1", "none"]
    return nb201_genome(ops, (3, 32, 32), CLASSES), text


KEY_EXAMPLES = {"mlp-chain": _mlp_example, "nb201": _nb201_example}


@pytest.mark.parametrize("name", sorted(TABLE_KEYS))
def test_every_registered_key_function_maps_its_example(name):
    genome, expected = KEY_EXAMPLES[name]()
    assert TABLE_KEYS[name](genome) == expected
    assert TABLE_KEYS[name](genome.with_genes(learning_rate=0.0123)) == expected


def test_mlp_chain_key_refuses_genomes_outside_the_space():
    space = get_space("mlp-table")
    chain = mlp_chain_genome((32, 32), "relu", "adam", space, SHAPE, CLASSES)
    with pytest.raises(TableKeyError, match="not a chain"):
        mlp_chain_key(chain.with_edges(add=[(0, 2)]))
    mixed = chain.with_node(chain.node(2).replace(activation="tanh"))
    with pytest.raises(TableKeyError, match="mix activations"):
        mlp_chain_key(mixed)
    conv = get_space("lse-conv").sample(np.random.default_rng(0), SHAPE, CLASSES)
    with pytest.raises(TableKeyError):
        mlp_chain_key(conv)


# -- lookups -------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["t.csv", "t.csv.gz", "t.json", "t.json.gz"])
def test_lookup_is_exact_for_every_key(tmp_path, name):
    path = write_table(table_rows(small_space()), tmp_path / name)
    mean = TableFitness(path=str(path))
    per_seed = TableFitness(path=str(path), seed_policy="seed", metric="test_accuracy")
    for genome in enumerate_mlp_table(small_space(), SHAPE, CLASSES):
        key = mlp_chain_key(genome)
        score = mean.lookup(genome, seed=5)
        assert score.status == "completed"
        assert score.fitness == pytest.approx(np.mean([fake_value(key, s) for s in SEEDS]))
        assert score.metrics["val_accuracy"] == score.fitness
        assert score.metrics["params"] == len(key) * 10 and score.metrics["table_key"] == key
        assert score.metrics["train_time"] == pytest.approx(1.5)
        for seed in (0, 4, 2**40 + 2):
            picked = per_seed.lookup(genome, seed=seed)
            assert picked.metrics["table_seed"] == seed % 3
            assert picked.fitness == pytest.approx(fake_value(key, seed % 3) - 0.01)


def test_lookup_key_scores_a_key_as_lookup_scores_its_genome(small_table):
    """A search over keys (brute force) gets what a search over genomes gets, seed for seed."""
    per_seed = TableFitness(path=str(small_table), seed_policy="seed")
    for genome in enumerate_mlp_table(small_space(), SHAPE, CLASSES):
        for seed in (0, 1, 7):
            by_genome, by_key = per_seed.lookup(genome, seed), per_seed.lookup_key(
                mlp_chain_key(genome), seed)
            assert by_key.fitness == by_genome.fitness and by_key.metrics == by_genome.metrics
    missing = per_seed.lookup_key("4096|relu|adam")
    assert missing.status == "infeasible" and "'4096|relu|adam' is not in table" in \
        missing.metrics["reason"]


def test_genome_missing_from_the_table_is_infeasible(small_table):
    fitness = TableFitness(path=str(small_table))
    wide = mlp_chain_genome((128,), "relu", "adam", get_space("mlp-table"), SHAPE, CLASSES)
    score = fitness.lookup(wide)
    assert score.status == "infeasible" and score.fitness is None
    assert "128|relu|adam" in score.metrics["reason"] and "not in table" in score.metrics["reason"]
    conv = get_space("lse-conv").sample(np.random.default_rng(0), SHAPE, CLASSES)
    outside = fitness.score(None, conv, None, seed=0, device="cpu")
    assert outside.status == "infeasible" and "outside the table" in outside.metrics["reason"]


def test_minimised_metric_and_non_finite_rows(tmp_path):
    space = small_space()
    rows = table_rows(space)
    rows[0]["val_accuracy"] = "nan"
    path = write_table(rows, tmp_path / "t.csv")
    genome = next(g for g in enumerate_mlp_table(space, SHAPE, CLASSES)
                  if mlp_chain_key(g) == rows[0]["key"])
    assert TableFitness(path=str(path)).lookup(genome).status == "infeasible"
    other = next(iter(enumerate_mlp_table(space, SHAPE, CLASSES)))
    loss = TableFitness(path=str(path), metric="train_time", maximize=False)
    assert loss.lookup(other).fitness == pytest.approx(-1.5)


def test_user_registered_key_function_plugs_in_an_external_table(tmp_path, monkeypatch):
    monkeypatch.setitem(TABLE_KEYS, "depth-and-optimizer", TABLE_KEYS["mlp-chain"])

    @register_table_key("depth-and-optimizer")
    def depth_key(genome: Genome) -> str:
        return f"{len(genome.nodes) - 2}/{genome.gene['optimizer']}"

    rows = [{"key": f"{d}/{o}", "seed": s, "error": d / 10 + s / 100}
            for d in (1, 2) for o in ("adam", "sgd") for s in (0, 1)]
    path = write_table(rows, tmp_path / "external.json")
    fitness = make_fitness("table", {"path": str(path), "key": "depth-and-optimizer",
                                     "metric": "error", "maximize": False})
    space = get_space("mlp-table")
    genome = mlp_chain_genome((16, 128), "sigmoid", "sgd", space, SHAPE, CLASSES)
    score = fitness.score(None, genome, None, seed=0, device="cpu")
    assert score.metrics["table_key"] == "2/sgd" and score.fitness == pytest.approx(-0.205)


@pytest.mark.parametrize("params, message", [
    ({"key": "nope"}, "key: unknown table key function 'nope'"),
    ({"seed_policy": "median"}, "seed_policy: must be one of mean, seed"),
    ({"metric": "optimizer"}, "metric: 'optimizer' is not a numeric column"),
    ({"path": "/no/such/table.csv"}, "path: table file /no/such/table.csv not found"),
    ({"maximize": "yes"}, "maximize: must be true or false"),
    ({"epochs": 3}, "epochs: unknown parameter"),
])
def test_bad_parameters_name_the_key(small_table, params, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        make_fitness("table", {"path": str(small_table), **params})


def test_a_table_without_key_and_seed_is_refused(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("name,val_accuracy\na,0.5\n")
    with pytest.raises(ValueError, match="no rows with 'key' and 'seed'"):
        load_table(path)


@pytest.mark.skipif(not SHIPPED_TABLE.exists(), reason="the shipped table is not built yet")
def test_shipped_table_covers_the_whole_space_with_three_seeds():
    table = load_table("")
    space = get_space("mlp-table")
    keys = {mlp_chain_key(g) for g in enumerate_mlp_table(space, SHAPE, CLASSES)}
    assert set(table.keys()) == keys
    assert all(len(rows) == 3 for rows in table.rows.values())
    assert {"val_accuracy", "test_accuracy", "train_time", "params", "flops"} <= set(
        table.columns)
    genome = mlp_chain_genome((64,), "relu", "adam", space, SHAPE, CLASSES)
    score = TableFitness().lookup(genome)
    assert 0.5 < score.fitness <= 1.0 and score.metrics["params"] == 64 * 65 + 65 * 10


# -- end to end through the real driver ----------------------------------------------------------
def test_tiny_run_with_table_fitness_matches_a_direct_ask_tell_loop(tmp_path, small_table):
    from evograph.runs.config import load_config
    from evograph.runs.driver import create_run, run
    from evograph.runs.store import RunStore
    from evograph.selection import make_strategy
    from evograph.selection.base import Result, Variation

    overrides = ["budget.evaluations=16", "strategy.population_size=4",
                 "strategy.sample_size=2", "executor.name=serial", "seed=3",
                 f"fitness.path='{small_table}'", "space.max_layers=2",
                 "space.unit_choices=[16, 32]", "space.activations=['relu', 'tanh']",
                 "space.optimizers=['adam', 'sgd']"]
    config = load_config(ROOT / "runs/configs/digits-table.toml", overrides)
    outcome = run(create_run(config, tmp_path / "run"), live=False)
    assert outcome.finished
    with RunStore.open(tmp_path / "run", readonly=True) as store:
        stored = [(i.genome_hash, e.status, e.fitness)
                  for i, e in zip(store.individuals(), store.evaluations())]

    space = small_space()
    strategy = make_strategy("aging", Variation.for_space(space, SHAPE, CLASSES), 3,
                             population_size=4, sample_size=2)
    fitness = TableFitness(path=str(small_table), seed_policy="seed")
    direct = []
    for _ in range(16):
        proposal = strategy.ask(1)[0]
        score = fitness.lookup(proposal.genome, proposal.seed)
        strategy.tell([Result(proposal.id, score.fitness)])
        direct.append((proposal.genome.hash, score.status, score.fitness))
    assert stored == direct
    assert all(status == "completed" for _, status, _ in stored)
    # needs_module = False: the worker built no module, so no weights file was written
    assert not list((tmp_path / "run").rglob("*.safetensors"))


def test_shipped_config_names_a_registered_space_and_generator():
    from evograph.runs.config import load_config
    config = load_config(ROOT / "runs/configs/digits-table.toml")
    assert config.fitness.name == "table" and config.space.name == "mlp-table"
    assert get_space("mlp-table").name == "mlp-table"


def test_the_nb201_key_refuses_other_genomes():
    from evograph.compile.training.table import nb201_key
    space = get_space("mlp-table")
    with pytest.raises(TableKeyError, match="not an nb201 cell genome"):
        nb201_key(mlp_chain_genome((32,), "relu", "adam", space, SHAPE, CLASSES))


def test_a_table_keyed_by_nb201_strings_plugs_into_a_run(tmp_path):
    """A table of the 64 cells over {none, skip_connect}, whose accuracy is the share of skip
    edges (an oracle: the all-skip cell is the one best): a run of fitness = "table" with key
    nb201 over those ops looks every cell up by its string and finds that cell."""
    import itertools

    from evograph.genome.cells.nb201 import arch_string, nb201_genome
    from evograph.runs.config import load_config
    from evograph.runs.driver import create_run, run
    from evograph.runs.store import RunStore
    rows = []
    for ops in itertools.product(("none", "skip_connect"), repeat=6):
        key = arch_string(nb201_genome(list(ops), SHAPE, CLASSES))
        rows.append({"key": key, "seed": 0, "val_accuracy": ops.count("skip_connect") / 6})
    path = tmp_path / "nb201-toy.csv"
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, ["key", "seed", "val_accuracy"])
        writer.writeheader()
        writer.writerows(rows)
    overrides = ["space.name='nb201'", "space.ops=['none', 'skip_connect']", "fitness.key='nb201'",
                 f"fitness.path='{path}'", "budget.evaluations=120", "strategy.population_size=8",
                 "strategy.sample_size=3", "seed=1"]
    config = load_config(ROOT / "runs/configs/digits-table.toml", overrides)
    outcome = run(create_run(config, tmp_path / "run"), live=False)
    assert outcome.finished
    with RunStore.open(tmp_path / "run", readonly=True) as store:
        best = store.best(1)[0]
        assert best.fitness == 1.0
        assert best.metrics["table_key"] == "|skip_connect~0|+|skip_connect~0|skip_connect~1|+" \
            "|skip_connect~0|skip_connect~1|skip_connect~2|"
