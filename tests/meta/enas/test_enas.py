"""ENAS weight sharing (Pham et al. 2018) as ``fitness = "enas"``: supernet keys and width
slicing, persistence across evaluations and processes, determinism given the sequence, idempotent
re-runs, no non-finite updates, and real runs with the RL controller and with evolution."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
import tomllib
import torch
from evograph import meta  # noqa: F401  (registers "enas")
from evograph.compile import FITNESS, build, make_fitness
from evograph.data.datasets import load_dataset
from evograph.genome import Genome, Node
from evograph.genome.codec import codec_for
from evograph.genome.space import get_space
from evograph.genome.validate import analyze
from evograph.meta.enas import supernet as enas
from evograph.runs.config import apply_overrides, config_from_dict
from evograph.runs.driver import create_run, run
from evograph.runs.store import RunStore

ROOT = Path(__file__).resolve().parents[3]
CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def data():
    return load_dataset("digits", seed=0, limit=300)


def mlp(*units: int, activation: str = "relu", **genes) -> Genome:
    nodes = [Node.make(0, "input", shape=(1, 8, 8))]
    nodes += [Node.make(i, "dense", units=u, activation=activation) for i, u in enumerate(units, 1)]
    nodes.append(Node.make(len(units) + 1, "output", num_classes=10))
    return Genome.make(nodes, [(i, i + 1) for i in range(len(units) + 1)],
                       {"learning_rate": 0.01, "optimizer": "adam", **genes})


def conv_genomes(n: int = 4) -> list[Genome]:
    codec = codec_for(get_space("lse-conv"), (1, 8, 8), 10, max_depth=3, channels=(4, 8))
    return [codec.decode([i, i + 1, 2, i, 1, 2, 0, 1, 1, 1, 0, 0, 1, i % 2][:len(codec.sizes)])
            for i in range(n)]


def fitness(path, **params):
    return make_fitness("enas", {"shared_weights": str(path), "steps": 3, **params})


def score(f, genome, data, seed):
    return f.score(build(genome, seed=seed), genome, data, seed=seed, device=CPU)


@pytest.fixture(autouse=True)
def fresh_cache():
    enas._SHARED.clear()  # each test starts as a new worker process would
    yield
    enas._SHARED.clear()


def test_enas_is_registered():
    assert "enas" in FITNESS


def test_positions_and_keys():
    genome = conv_genomes(1)[0]
    where = enas.positions(genome)
    assert where[genome.output_node.id] == "out" and where[0] == "d0"
    keys = enas.node_keys(genome, analyze(genome))
    assert all("out_channels" not in k and "stride" not in k for k in keys.values())
    assert any("kernel_h=" in k for k in keys.values())
    exact = enas.node_keys(genome, analyze(genome), "exact")
    assert all("|in=" in k and "out_channels=" in k for i, k in exact.items()
               if genome.node(i).op == "conv")


def test_widths_are_prefix_slices_of_one_shared_tensor():
    wide, narrow = mlp(32, 16), mlp(8, 16, activation="tanh")
    shared: dict[str, torch.Tensor] = {}
    wide_module = build(wide, seed=1)
    names = enas.tensor_keys(wide_module, enas.node_keys(wide, analyze(wide)))
    shared.update(enas.merged(wide_module, names, shared))
    narrow_module = build(narrow, seed=2)
    narrow_names = enas.tensor_keys(narrow_module, enas.node_keys(narrow, analyze(narrow)))
    assert set(narrow_names.values()) == set(names.values())  # activation and width shared
    assert enas.pull(narrow_module, narrow_names, shared) == len(narrow_names)
    w = wide_module.state_dict()["layers.n2.1.weight"]          # (16, 32)
    assert torch.equal(narrow_module.state_dict()["layers.n2.1.weight"], w[:, :8])
    grown = enas.merged(build(mlp(64, 16), seed=3), names, shared)
    first = grown[names["layers.n1.1.weight"]]                  # (64, 64) grew from (32, 64)
    assert first.shape == (64, 64) and not torch.isnan(first).any()


def test_untrained_regions_are_nan_and_pull_keeps_the_fresh_init():
    shared = {"k": torch.ones(2, 4)}
    module = torch.nn.Linear(2, 4)  # weight (4, 2)
    names = {"weight": "k"}
    grown = enas.merged(module, names, shared)["k"]
    assert grown.shape == (4, 4) and torch.isnan(grown[2:, 2:]).all()
    fresh = torch.nn.Linear(4, 4)
    before = fresh.weight.detach().clone()
    enas.pull(fresh, {"weight": "k"}, {"k": grown})
    assert torch.equal(fresh.weight[2:, 2:], before[2:, 2:])
    assert torch.equal(fresh.weight[:2, :2], module.weight.detach()[:2, :2])


def test_later_evaluations_start_from_the_shared_weights(tmp_path, data):
    f = fitness(tmp_path / "s.safetensors")
    genome = mlp(16)
    first, second = score(f, genome, data, 1), score(f, genome, data, 2)
    assert first.status == second.status == "completed"
    assert first.metrics["shared_tensors"] == 0 and second.metrics["fresh_tensors"] == 0
    assert (tmp_path / "s.safetensors").exists() and (tmp_path / "s.prev.safetensors").exists()


def content(path: Path) -> tuple[dict, dict]:
    """A supernet file's metadata and tensor bytes (safetensors orders metadata arbitrarily)."""
    from safetensors import safe_open
    with safe_open(str(path), framework="pt") as fh:
        names = list(fh.keys())
        return fh.metadata(), {k: fh.get_tensor(k).numpy().tobytes() for k in names}


def run_sequence(path, data, genomes, start=0):
    f = fitness(path)
    return [score(f, g, data, start + i).fitness for i, g in enumerate(genomes)]


def test_deterministic_given_the_sequence_and_across_processes(tmp_path, data):
    genomes = conv_genomes(4)
    a = run_sequence(tmp_path / "a.safetensors", data, genomes)
    b = run_sequence(tmp_path / "b.safetensors", data, genomes[:2])
    enas._SHARED.clear()  # a new worker process: the supernet comes back from the file
    b += run_sequence(tmp_path / "b.safetensors", data, genomes[2:], start=2)
    assert a == b
    assert content(tmp_path / "a.safetensors") == content(tmp_path / "b.safetensors")


def test_a_rerun_of_the_last_update_is_idempotent(tmp_path, data):
    """An evaluation whose update landed but whose result was lost (kill -9) runs again from the
    version before its update, and leaves the same supernet."""
    path = tmp_path / "s.safetensors"
    genomes = conv_genomes(3)
    run_sequence(path, data, genomes[:2])
    after_two = content(path)
    run_sequence(path, data, genomes[2:], start=2)
    after_three = content(path)
    enas._SHARED.clear()
    again = run_sequence(path, data, genomes[2:], start=2)  # same seed: a re-run
    assert content(path) == after_three
    assert content(tmp_path / "s.prev.safetensors") == after_two
    enas._SHARED.clear()
    assert run_sequence(path, data, genomes[2:], start=2) == again


def test_non_finite_training_is_infeasible_and_never_shared(tmp_path, data):
    f = fitness(tmp_path / "s.safetensors", steps=5)
    score(f, mlp(16), data, 0)
    before = content(tmp_path / "s.safetensors")
    diverging = mlp(16, optimizer="sgd", learning_rate=1e30)
    result = score(f, diverging, data, 1)
    assert result.status == "infeasible" and result.fitness is None
    assert content(tmp_path / "s.safetensors") == before


def test_memory_only_and_run_directory_paths(tmp_path, data):
    memory = make_fitness("enas", {"shared_weights": "", "steps": 2})
    assert memory.path() is None
    assert score(memory, mlp(8), data, 0).status == "completed"
    relative = make_fitness("enas", {"shared_weights": "sub/w.safetensors"})
    assert relative.path() is None  # no run directory given: memory, never a stray file
    relative.bind_run(tmp_path)
    assert relative.path() == (tmp_path / "sub/w.safetensors").resolve()


def test_a_foreign_file_is_a_clear_error(tmp_path, data):
    from safetensors.torch import save_file
    save_file({"x": torch.zeros(1)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(ValueError, match="not an evograph ENAS supernet"):
        score(fitness(tmp_path / "other.safetensors"), mlp(8), data, 0)


@pytest.mark.parametrize("params, message", [
    ({"steps": 0}, "steps: must be an integer >= 1"), ({"share": "all"}, "share: must be"),
    ({"optimizer": "lion"}, "optimizer: must be genome or one of"),
    ({"learning_rate": -1}, "learning_rate"), ({"bogus": 1}, "bogus: unknown parameter")])
def test_bad_parameters(params, message):
    with pytest.raises(ValueError, match=message):
        make_fitness("enas", params)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_scores_on_cuda(tmp_path, data):
    f = fitness(tmp_path / "s.safetensors")
    genome = conv_genomes(1)[0]
    module = build(genome, seed=0, device="cuda")
    assert f.score(module, genome, data, seed=0, device=torch.device("cuda")).fitness is not None
    assert score(f, genome, data, 1).metrics["fresh_tensors"] == 0


# -- through the real driver ---------------------------------------------------------------------
def enas_config(tmp_path, name, extra=(), strategy=None):
    """runs/configs/enas-conv.toml made tiny; ``strategy`` replaces its [strategy] table."""
    data = tomllib.loads((ROOT / "runs/configs/enas-conv.toml").read_text())
    data["strategy"] = strategy or data["strategy"]
    overrides = ["budget.evaluations=8", "dataset.limit=300", "fitness.steps=3",
                 "space.max_layers=3",
                 "executor.name=serial", "budget.minutes=0",
                 f"fitness.shared_weights='{tmp_path / name}.safetensors'", *extra]
    return config_from_dict(apply_overrides(data, overrides))


def outcome(run_dir):
    with RunStore.open(run_dir, readonly=True) as store:
        return [(i.genome_hash, e.status, e.fitness)
                for i, e in zip(store.individuals(), store.evaluations())]


AGING = {"name": "aging", "population_size": 4, "sample_size": 2}


@pytest.mark.parametrize("strategy", [None, AGING], ids=["rl", "aging"])
def test_end_to_end_with_the_controller_and_with_evolution(tmp_path, strategy):
    a = create_run(enas_config(tmp_path, "a", strategy=strategy), tmp_path / "a")
    assert run(a, live=False).finished
    result = outcome(a)
    assert len(result) == 8 and all(status == "completed" for _, status, _ in result)
    assert (tmp_path / "a.safetensors").exists()
    b = create_run(enas_config(tmp_path, "b", strategy=strategy), tmp_path / "b")
    run(b, live=False)
    assert outcome(b) == result  # serial runs replay exactly, shared weights included


@pytest.mark.slow
def test_resumed_enas_run_reaches_the_uninterrupted_state(tmp_path):
    reference = create_run(enas_config(tmp_path, "ref"), tmp_path / "ref")
    run(reference, live=False)
    victim = create_run(enas_config(tmp_path, "victim", ["budget.evaluations=4"]),
                        tmp_path / "victim")
    run(victim, live=False)
    with sqlite3.connect(victim / "run.db") as conn:
        config = json.loads(conn.execute("SELECT value FROM meta WHERE key='config'")
                            .fetchone()[0])
        config["budget"]["evaluations"] = 8
        conn.execute("UPDATE meta SET value=? WHERE key='config'", (json.dumps(config),))
    enas._SHARED.clear()  # the resumed driver is a new process
    assert run(victim, force=True, live=False).finished
    assert outcome(victim) == outcome(reference)
    assert content(tmp_path / "victim.safetensors") == content(tmp_path / "ref.safetensors")


@pytest.mark.slow
def test_parallel_workers_share_one_supernet_file(tmp_path):
    """Two spawned workers read and write the same file under its lock: every evaluation
    completes and the file stays a readable supernet."""
    config = enas_config(tmp_path, "par", ["executor.name=local", "executor.workers=2",
                                           "budget.evaluations=6"])
    run_dir = create_run(config, tmp_path / "par")
    assert run(run_dir, live=False).finished
    assert all(status == "completed" for _, status, _ in outcome(run_dir))
    meta_data, tensors = content(tmp_path / "par.safetensors")
    assert meta_data["format"] == enas.FORMAT and tensors


def test_cell_genomes_share_one_op_per_place_of_each_cell_copy(tmp_path, data):
    """ENAS's micro space: two NAS-Bench-201 cells that agree on edge 0->1 (a 3x3 conv) and
    differ elsewhere; the second evaluation takes the shared tensors of every copy of that
    edge, and nothing of the ops the first did not have at the same place."""
    from evograph.genome.cells.nb201 import nb201_genome
    first = nb201_genome(["nor_conv_3x3", "skip_connect", "nor_conv_1x1", "none", "none",
                          "skip_connect"], (1, 8, 8), 10, channels=4, cells=2,
                         genes={"learning_rate": 0.05, "optimizer": "momentum"})
    second = nb201_genome(["nor_conv_3x3", "nor_conv_3x3", "skip_connect", "none", "none",
                           "skip_connect"], (1, 8, 8), 10, channels=4, cells=2,
                          genes={"learning_rate": 0.05, "optimizer": "momentum"})
    f = fitness(tmp_path / "cells.safetensors")
    keys = enas.node_keys(second, analyze(second))
    assert keys[1005] == "n1005|relu_conv_bn|kernel_h=3,kernel_w=3"
    assert score(f, first, data, 1).status == "completed"
    result = score(f, second, data, 2)
    names = enas.tensor_keys(build(second), keys)
    edge_0_1 = {n for n in names if int(n.split(".")[1][1:]) % 1000 == 5}  # 6 copies x 3 tensors+
    new_edge = {n for n in names if int(n.split(".")[1][1:]) % 1000 == 6}  # 0->2: was a skip
    assert edge_0_1 and new_edge
    assert result.metrics["shared_tensors"] == len(names) - len(new_edge)
    assert result.metrics["fresh_tensors"] == len(new_edge)
