"""Hypernetworks: the static one of Ha et al. (2016) and the one-shot SMASH one (Brock et al.
2018) — generated shapes for every genome a space can sample, gradients, storage without pickle,
sharing between workers, and both fitness generators through the real driver and CLI."""

from __future__ import annotations

import argparse
import json
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from evograph.compile.builder import build
from evograph.compile.training.fitness import FITNESS, make_fitness
from evograph.compile.training.sgd import evaluate
from evograph.data.datasets import load_dataset
from evograph.errors import ConfigError
from evograph.genome.core import Genome, Node
from evograph.genome.space import get_space
from evograph.genome.validate import analyze
from evograph.meta.hypernet import (
    HypernetError,
    SmashConfig,
    SmashHypernet,
    StaticHypernetTraining,
    ensure_trained,
    load_hypernet,
    recalibrate_batchnorm,
    retrain,
    save_hypernet,
    smash_train,
    static_hypernet,
    train_smash,
    weight_slots,
)
from evograph.meta.hypernet.smash_encoding import FEATURES, encode
from evograph.meta.hypernet.smash_fitness import evaluate_batch_statistics
from evograph.meta.hypernet.smash_train import training_genome
from evograph.runs.cli.hypernet import register
from evograph.runs.config import load_config
from evograph.runs.driver import create_run, run
from evograph.runs.setup import resolve, with_run_space
from evograph.runs.store import RunStore
from hypothesis import given
from hypothesis import strategies as st
from torch.func import functional_call
from torch.nn import functional as F

ROOT = Path(__file__).resolve().parents[3]
SPACES = ("lse-conv", "mlp")
SHAPES = ((1, 8, 8), (1, 40))
CPU = torch.device("cpu")
TINY = {"block": 8, "embed": 16, "z_dim": 16, "hidden": 8, "rounds": 1, "steps": 4, "batch": 16}


def tiny_config(space: str, shape, **extra) -> SmashConfig:
    return SmashConfig(space=space, input_shape=tuple(shape), num_classes=10,
                       **{**TINY, **extra})


_HYPERS: dict = {}


def tiny_hyper(space: str, shape) -> SmashHypernet:
    """An untrained hypernetwork per (space, shape), built once (construction is the cost)."""
    key = (space, tuple(shape))
    if key not in _HYPERS:
        torch.manual_seed(0)
        _HYPERS[key] = SmashHypernet(tiny_config(space, shape))
    return _HYPERS[key]


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits", seed=0, limit=200)


def expected_tensors(module, genome) -> dict[str, tuple]:
    """Every conv/linear weight and bias of the compiled module (what SMASH must generate)."""
    names = {s.weight for s in weight_slots(module, genome)}
    names |= {s.bias for s in weight_slots(module, genome) if s.bias}
    params = dict(module.named_parameters())
    return {n: tuple(params[n].shape) for n in names}


def sampled(space_name: str, shape, seed: int) -> Genome:
    """A genome of the space: a plain sample or SMASH's training mix (samples + mutations)."""
    space, rng = get_space(space_name), np.random.default_rng(seed)
    if seed % 2:
        return space.sample(rng, shape, 10)
    return training_genome(space, rng, tiny_config(space_name, shape, mutations=4))


# -- shapes --------------------------------------------------------------------------------------

@pytest.mark.parametrize("space_name", SPACES)
@pytest.mark.parametrize("shape", SHAPES)
@given(seed=st.integers(0, 2**32 - 1))
def test_smash_generates_exactly_the_tensors_every_sampled_genome_needs(space_name, shape, seed):
    genome = sampled(space_name, shape, seed)
    module = build(genome, seed=0)
    generated = tiny_hyper(space_name, shape)(genome, module)
    want = expected_tensors(module, genome)
    assert {k: tuple(v.shape) for k, v in generated.items()} == want
    others = {n for n, _ in module.named_parameters()} - set(want)
    assert all(".weight" in n or ".bias" in n for n in others)   # only batch-norm affines left
    assert all(torch.isfinite(v).all() for v in generated.values())
    with torch.no_grad():
        out = functional_call(module.eval(), generated, (torch.rand(3, *shape),), strict=False)
    assert out.shape == (3, 10)


@pytest.mark.parametrize("space_name", SPACES)
@pytest.mark.parametrize("shape", SHAPES)
@given(seed=st.integers(0, 2**32 - 1))
def test_static_hypernet_generates_every_hidden_kernel_with_its_shape(space_name, shape, seed):
    genome = sampled(space_name, shape, seed)
    module = build(genome, seed=0)
    wrapped = static_hypernet(module, genome, block=8, z_dim=4, hidden=4, seed=seed % 1000)
    params = dict(module.named_parameters())
    generated = wrapped.hyper()
    hidden = [n for n in genome.nodes if n.op in ("conv", "dense")]
    assert len(generated) == len(hidden)
    assert all(v.shape == params[k].shape for k, v in generated.items())
    assert wrapped(torch.rand(2, *shape)).shape == (2, 10)


@pytest.mark.parametrize("space_name", ["nb201", "nasnet"])
@pytest.mark.parametrize("shape", SHAPES)
def test_static_hypernet_generates_every_conv_of_a_cell_network(space_name, shape, digits):
    """Over a cell space every conv of every cell copy, the stem and the reductions (depthwise,
    pointwise, 1x7 and 7x1 kernels alike) is generated with its shape; the classifier is not;
    and a few steps of the fitness train through the generated kernels."""
    space = get_space(space_name, cell_channels=4, cells=1,
                      **({"stages": 2} if space_name == "nasnet" else {}))
    genome = space.sample(np.random.default_rng(3), shape, 10)
    module = build(genome, seed=0)
    wrapped = static_hypernet(module, genome, block=4, z_dim=4, hidden=4, seed=1)
    generated = wrapped.hyper()
    convs = {f"{n}.weight" for n, m in module.named_modules() if isinstance(m, torch.nn.Conv2d)}
    params = dict(module.named_parameters())
    assert set(generated) == convs and convs
    assert all(v.shape == params[k].shape for k, v in generated.items())
    assert wrapped(torch.rand(2, *shape)).shape == (2, 10)
    if shape == (1, 8, 8):
        score = StaticHypernetTraining(steps=3, block=4, z_dim=4, hidden=4).score(
            build(genome, seed=1), genome, digits, seed=1, device=CPU)
        assert score.status == "completed"
        assert score.metrics["generated_tensors"] == len(convs)


def test_kernels_are_centred_windows_of_the_generated_taps():
    """A 3x3 kernel is the centre of the same slot's 7x7 taps (the inheritance convention)."""
    nodes = [Node.make(0, "input", shape=(1, 8, 8)),
             Node.make(1, "conv", out_channels=4, kernel_h=3, kernel_w=3, stride_h=1,
                       stride_w=1, bn=True, relu=True),
             Node.make(2, "conv", out_channels=4, kernel_h=7, kernel_w=7, stride_h=1,
                       stride_w=1, bn=True, relu=True),
             Node.make(3, "output", num_classes=10)]
    genome = Genome.make(nodes, [(0, 1), (1, 2), (2, 3)])
    wrapped = static_hypernet(build(genome), genome, block=4, z_dim=3, hidden=3)
    with torch.no_grad():
        wrapped.hyper.z[1] = wrapped.hyper.z[0]          # same embedding for both slots
        out = wrapped.hyper()
    small, big = out["layers.n1.0.weight"], out["layers.n2.0.weight"]
    # both are scaled by 1/sqrt(fan_in) (1*3*3 and 4*7*7): undo it before comparing
    torch.testing.assert_close(small * 3, big[:, :1, 2:5, 2:5] * 14)


# -- encoding ------------------------------------------------------------------------------------

def test_encoding_marks_edges_and_depth():
    genome = sampled("lse-conv", (1, 8, 8), 3)
    graph = encode(genome)
    assert graph.features.shape == (len(genome.nodes), FEATURES)
    index = {n: k for k, n in enumerate(graph.order)}
    assert graph.adjacency.sum() == len(genome.edges)
    for a, b in genome.edges:
        assert graph.adjacency[index[b], index[a]] == 1
        assert graph.depth[index[b]] > graph.depth[index[a]]


# -- gradients -----------------------------------------------------------------------------------

def _skip_genome(width: int = 12) -> Genome:
    conv = {"kernel_h": 3, "kernel_w": 3, "stride_h": 1, "stride_w": 1}
    nodes = [Node.make(0, "input", shape=(1, 8, 8)),
             Node.make(1, "conv", out_channels=width, bn=True, relu=True, **conv),
             Node.make(2, "conv", out_channels=width + 8, bn=False, relu=False, **conv),
             Node.make(3, "output", num_classes=10)]
    return Genome.make(nodes, [(0, 1), (1, 2), (2, 3), (0, 2)])


def test_gradients_reach_the_smash_hypernetwork(digits):
    genome = _skip_genome()
    module = build(genome).train()
    hyper = tiny_hyper("lse-conv", (1, 8, 8))
    hyper.zero_grad()
    generated = hyper(genome, module)
    logits = functional_call(module, generated, (digits.x_train[:32],), strict=False)
    F.cross_entropy(logits, digits.y_train[:32]).backward()
    core = [hyper.generator.w_in, hyper.generator.w_out, hyper.shared_z[0].weight,
            hyper.code_z[-1].weight, hyper.bias_head.weight, hyper.gain_head.weight,
            hyper.out_position.weight, hyper.in_position.weight]
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in core)
    params = dict(module.named_parameters())
    assert all(params[name].grad is None for name in generated)   # the net's own stay unused


def test_gradients_reach_the_static_hypernetwork(digits):
    genome = _skip_genome()
    wrapped = static_hypernet(build(genome).train(), genome, block=8, z_dim=4, hidden=4)
    F.cross_entropy(wrapped(digits.x_train[:32]), digits.y_train[:32]).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in wrapped.hyper.parameters())
    params = dict(wrapped.net.named_parameters())
    assert all(params[name].grad is None for name in wrapped.generated)
    wrapped.realize()
    torch.testing.assert_close(params["layers.n1.0.weight"], wrapped.hyper()["layers.n1.0.weight"])


# -- training, storage, sharing ------------------------------------------------------------------

def test_training_is_deterministic_from_the_seed(digits):
    config = tiny_config("lse-conv", (1, 8, 8), steps=3)
    a, stats = train_smash(config, digits)
    b, _ = train_smash(config, digits)
    assert len(stats["loss_curve"]) >= 1 and stats["parameters"] > 0
    for (name, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items()):
        assert torch.equal(x, y), name


def test_save_and_load_without_pickle(tmp_path, digits):
    config = tiny_config("mlp", (1, 8, 8), steps=2)
    hyper, stats = train_smash(config, digits)
    save_hypernet(hyper, tmp_path / "h", stats, "abc")
    weights = (tmp_path / "h.safetensors").read_bytes()
    assert weights[:1] != b"\x80"                                    # not a pickle stream
    meta = json.loads((tmp_path / "h.json").read_text())
    assert meta["format"] == "evograph-smash" and meta["config"]["space"] == "mlp"
    loaded, _ = load_hypernet(tmp_path / "h")
    genome = sampled("mlp", (1, 8, 8), 5)
    module = build(genome)
    with torch.no_grad():
        want, got = hyper.eval()(genome, module), loaded(genome, module)
    assert want.keys() == got.keys() and all(torch.equal(want[k], got[k]) for k in want)
    (tmp_path / "h.safetensors").write_bytes(weights[:40])          # truncated
    with pytest.raises(HypernetError, match="cannot load"):
        load_hypernet(tmp_path / "h")


def test_parallel_callers_train_the_hypernetwork_once(tmp_path, digits, monkeypatch):
    calls = []
    real = smash_train.train_smash

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(smash_train, "train_smash", counting)
    config = tiny_config("lse-conv", (1, 8, 8), steps=3, seed=7)
    stems = []
    threads = [threading.Thread(target=lambda: stems.append(
        ensure_trained(tmp_path, config, digits)[1])) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1 and len(set(stems)) == 1
    files = sorted(p.name for p in tmp_path.iterdir() if not p.name.endswith(".lock"))
    assert files == [f"{stems[0].name}.json", f"{stems[0].name}.safetensors"]


def test_recalibration_recomputes_batchnorm_statistics(digits):
    genome = _skip_genome()
    module = build(genome)
    x = digits.x_train[:64]
    recalibrate_batchnorm(module, x, batches=1, batch_size=10_000, seed=0,
                          device=torch.device("cpu"))
    conv = module.layers["n1"][0]
    want = conv(x).mean(dim=(0, 2, 3))
    torch.testing.assert_close(module.layers["n1"][1].running_mean, want.detach())
    assert not module.training


def test_batch_statistics_equal_recalibrating_on_the_evaluated_batch(digits):
    genome = _skip_genome()
    module = build(genome, seed=3)
    with_batch = evaluate_batch_statistics(module, digits.x_val, digits.y_val, CPU)
    recalibrate_batchnorm(module, digits.x_val, batches=1, batch_size=10_000, seed=0, device=CPU)
    recalibrated = evaluate(module, digits.x_val, digits.y_val, CPU)
    assert with_batch[0] == recalibrated[0]
    assert with_batch[1] == pytest.approx(recalibrated[1], rel=1e-4)


# -- fitness generators --------------------------------------------------------------------------

def test_both_generators_are_registered_and_check_their_params():
    assert {"hypernet", "hypernet-static"} <= set(FITNESS)
    with pytest.raises(ValueError, match="nonsense: unknown parameter"):
        make_fitness("hypernet", {"nonsense": 1})
    with pytest.raises(ValueError, match="block"):
        make_fitness("hypernet", {"block": 0})
    with pytest.raises(ValueError, match="space"):
        make_fitness("hypernet", {"space": "no-such-space"})
    with pytest.raises(ValueError, match="z_dim"):
        make_fitness("hypernet-static", {"z_dim": -1})


def test_static_fitness_reports_parameters_against_the_plain_network(digits):
    genome = _skip_genome(32)
    fitness = StaticHypernetTraining(steps=5, block=8, z_dim=4, hidden=4)
    module = build(genome, seed=1)
    score = fitness.score(module, genome, digits, seed=1, device=torch.device("cpu"))
    assert score.status == "completed" and 0.0 <= score.fitness <= 1.0
    m = score.metrics
    assert m["params_plain"] == analyze(genome).params == m["params"]
    assert 0 < m["params_hypernet"] < m["params_plain"] and m["val_accuracy"] == score.fitness
    assert {"test_accuracy", "train_time", "loss_curve"} <= set(m)


def test_retrain_trains_winners_with_the_given_genes(digits):
    genomes = [sampled("lse-conv", (1, 8, 8), 1)]
    genes = dict(get_space("lse-conv").initial_genes)
    [result] = retrain(genomes, digits, epochs=0.5, genes=genes)
    assert result["status"] == "completed" and result["genome"].gene["optimizer"] == "momentum"
    assert 0.0 <= result["val_accuracy"] <= 1.0


RUN = ["budget.evaluations=8", "final.share=0", "dataset.limit=200", "strategy.population_size=4",
       "strategy.sample_size=2", "budget.minutes=0", "space.channels=[4,16]",
       "executor.name=serial", "executor.batch=1"]


def _hypernet_overrides(path: Path) -> list[str]:
    return ["fitness.name=hypernet", f"fitness.path='{path}'", "fitness.steps=6",
            "fitness.block=8", "fitness.embed=16", "fitness.z_dim=16", "fitness.hidden=8"]


def test_hypernet_fitness_in_a_real_run_then_retrain_through_the_cli(tmp_path, capsys):
    config = load_config(ROOT / "runs/configs/digits-hypernet.toml",
                         RUN + _hypernet_overrides(tmp_path / "hyper"))
    outcome = run(create_run(config, tmp_path / "run"), live=False)
    assert outcome.finished
    with RunStore.open(tmp_path / "run", readonly=True) as store:
        done = [e for e in store.evaluations() if e.status == "completed"]
        assert len(done) == 8
        assert all(e.fitness == e.metrics["val_accuracy"] and e.metrics["hypernet"]
                   for e in done)
        assert all((tmp_path / "run" / e.weights).exists() for e in done)
        stored = store.config["fitness"]  # completed by [space], as it ran
        assert stored["space"] == "lse-conv" and stored["space_overrides"]["channels"] == [4, 16]
    assert len(list((tmp_path / "hyper").glob("smash-*.safetensors"))) == 1
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    args = parser.parse_args(["hypernet", "retrain", str(tmp_path / "run"), "--top", "2",
                              "--epochs", "0.5", "--json", "--device", "cpu"])
    assert args.handler(args) == 0
    rows = json.loads(capsys.readouterr().out)
    assert len(rows) == 2 and all(r["status"] == "completed" for r in rows)


def test_static_fitness_in_a_real_run(tmp_path):
    config = load_config(ROOT / "runs/configs/digits.toml",
                         RUN + ["fitness.name=hypernet-static", "fitness.steps=3",
                                "fitness.block=8", "fitness.z_dim=4", "fitness.hidden=4",
                                "budget.evaluations=4"])
    outcome = run(create_run(config, tmp_path / "run"), live=False)
    assert outcome.finished
    with RunStore.open(tmp_path / "run", readonly=True) as store:
        done = [e for e in store.evaluations() if e.status == "completed"]
        assert done and all("params_hypernet" in e.metrics for e in done)


def test_shipped_hypernet_config_loads_and_takes_the_run_space():
    config = with_run_space(load_config(ROOT / "runs/configs/digits-hypernet.toml"))
    assert config.fitness.name == "hypernet"
    scoring = make_fitness(config.fitness.name, config.fitness.params)
    assert scoring.space == config.space.name
    assert scoring.space_overrides == config.space.overrides == {
        "max_params": 200000, "max_layers": 12, "channels": [4, 64]}


@pytest.mark.parametrize("override, key, field", [
    ("fitness.space='mlp'", "space", "name"),
    ("fitness.space_overrides.channels=[4,32]", "space_overrides", "channels"),
    ("fitness.space_overrides={channels=[4,16]}", "space_overrides", "max_layers")])
def test_a_hypernet_sized_for_another_space_is_refused(tmp_path, override, key, field):
    config = load_config(ROOT / "runs/configs/digits-hypernet.toml", RUN + [override])
    with pytest.raises(ConfigError, match=rf"^x.toml: fitness.{key}: describes another search "
                                          rf"space than \[space\] \({field}: .* here, .* in "
                                          r"\[space\]\); "
                                          r"leave it out and \[space\] is used$"):
        create_run(config, tmp_path / "run", source="x.toml")
    assert not (tmp_path / "run").exists()


def test_a_hypernet_space_spelled_otherwise_is_kept():
    """Overrides that name the run's values, defaults included, describe the same space."""
    default = list(get_space("lse-conv").kernel_sizes)
    same = ("fitness.space_overrides={max_params=200000, max_layers=12, channels=[4,16], "
            f"kernel_sizes={default}}}")
    config = load_config(ROOT / "runs/configs/digits-hypernet.toml", [*RUN, same])
    completed = with_run_space(config).fitness.params
    assert completed["space_overrides"]["kernel_sizes"] == default
    assert completed["space"] == "lse-conv"


def test_resuming_takes_the_stored_fitness_as_it_is(tmp_path):
    """A run created before [fitness] was filled from [space] goes on scoring as it began: its
    stored hypernetwork space is not completed, nor refused, on resume."""
    config = load_config(ROOT / "runs/configs/digits-hypernet.toml",
                         RUN + _hypernet_overrides(tmp_path / "hyper")
                         + ["budget.evaluations=2", "fitness.space_overrides={channels=[4,32]}"])
    with pytest.raises(ConfigError):
        resolve(config)
    parts = resolve(config, complete=False)
    assert parts.config.fitness.params["space_overrides"] == {"channels": [4, 32]}


def test_smash_refuses_a_cell_space_in_one_line():
    with pytest.raises(ValueError, match="space: SMASH's encoding describes conv and mlp "
                                         r"genomes node by node, not cell genomes \(nb201\)"):
        make_fitness("hypernet", {"space": "nb201"})
