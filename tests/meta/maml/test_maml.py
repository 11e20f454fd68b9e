"""MAML over parameter dicts: gradients against an explicit second-order computation, the
first-order approximation, flat memory over long meta-training, BatchNorm, and the ``maml``
fitness generator through the real run driver."""

from __future__ import annotations

import gc
import math
from pathlib import Path

import pytest
import torch
from evograph.compile.builder import build
from evograph.compile.training.fitness import FITNESS, make_fitness
from evograph.data.tasks import SinusoidTasks, TaskBatch, digits_tasks
from evograph.errors import ConfigError
from evograph.genome.core import Genome, Node
from evograph.meta.maml.fitness import MAMLFitness, retarget
from evograph.meta.maml.learner import (
    adapt,
    adaptation_curve,
    batch_statistics,
    functional_model,
    meta_gradient,
    meta_train,
    parameters_of,
)
from torch.nn import functional as F

ROOT = Path(__file__).resolve().parents[3]
CPU = torch.device("cpu")
LR = 0.3


def mlp_genome(shape=(2,), hidden=(3,), out=1, activation="tanh") -> Genome:
    nodes = [Node.make(0, "input", shape=shape)]
    nodes += [Node.make(i + 1, "dense", units=u, activation=activation)
              for i, u in enumerate(hidden)]
    nodes.append(Node.make(len(hidden) + 1, "output", num_classes=out))
    return Genome.make(nodes, [(i, i + 1) for i in range(len(hidden) + 1)])


def conv_genome(out=5, bn=True) -> Genome:
    conv = {"kernel_h": 3, "kernel_w": 3, "stride_h": 1, "stride_w": 1, "bn": bn,
            "relu": True}
    nodes = [Node.make(0, "input", shape=(1, 8, 8)), Node.make(1, "conv", out_channels=4, **conv),
             Node.make(2, "conv", out_channels=4, **conv), Node.make(3, "output", num_classes=out)]
    return Genome.make(nodes, [(0, 1), (1, 2), (2, 3), (1, 3)])


@pytest.fixture
def tiny():
    """A 2-3-1 tanh MLP in float64, a regression batch of 3 tasks, and a hand-written forward
    pass over the same parameter names (independent of functional_call)."""
    module = build(mlp_genome(), seed=0).double()
    g = torch.Generator().manual_seed(0)
    batch = TaskBatch(*(torch.randn(3, n, d, generator=g, dtype=torch.float64)
                        for n, d in ((4, 2), (4, 1), (5, 2), (5, 1))))

    def forward(p, x):                                   # x (S, 2) -> (S, 1)
        h = torch.tanh(x @ p["layers.n1.1.weight"].T + p["layers.n1.1.bias"])
        return h @ p["layers.n2.0.weight"].T + p["layers.n2.0.bias"]
    return module, batch, forward


def explicit_maml_gradient(forward, params, batch, steps, first_order=False):
    """The textbook computation: per task, unroll the inner SGD steps with create_graph=True,
    then backpropagate the mean query loss. For first-order the inner gradients are computed
    without a graph, i.e. as constants: θ' = θ - a·const, so d(query)/dθ = g_q(θ')."""
    leaves = {k: v.detach().clone().requires_grad_() for k, v in params.items()}
    total = 0.0
    for t in range(len(batch)):
        p = dict(leaves)
        for _ in range(steps):
            loss = F.mse_loss(forward(p, batch.x_support[t]), batch.y_support[t])
            grads = torch.autograd.grad(loss, list(p.values()), create_graph=not first_order)
            p = {k: v - LR * g for (k, v), g in zip(p.items(), grads)}
        total = total + F.mse_loss(forward(p, batch.x_query[t]), batch.y_query[t])
    return dict(zip(leaves, torch.autograd.grad(total / len(batch), list(leaves.values()))))


# ------------------------------------------------------------------ gradients


@pytest.mark.parametrize("steps", [1, 2])
@pytest.mark.parametrize("first_order", [False, True])
def test_meta_gradient_equals_explicit_unrolled_computation(tiny, steps, first_order):
    module, batch, forward = tiny
    params = parameters_of(module)
    loss, grads = meta_gradient(functional_model(module), F.mse_loss, params, batch, LR, steps,
                                first_order)
    expected = explicit_maml_gradient(forward, params, batch, steps, first_order)
    assert grads.keys() == expected.keys()
    for name in grads:
        torch.testing.assert_close(grads[name], expected[name], rtol=1e-10, atol=1e-12)
    adapted = [adapt(forward, F.mse_loss, params, batch.x_support[t], batch.y_support[t], LR,
                     steps) for t in range(3)]
    query = sum(F.mse_loss(forward(a, batch.x_query[t]), batch.y_query[t])
                for t, a in enumerate(adapted)) / 3
    torch.testing.assert_close(loss, query)


def test_first_order_differs_only_by_the_dropped_hessian_term(tiny):
    """One inner step: MAML = (I - a H_s(θ)) g_q(θ'), FOMAML = g_q(θ'); so their difference is
    exactly -a H_s(θ) g_q(θ'), a Hessian-vector product computed here with plain autograd."""
    module, batch, forward = tiny
    params = parameters_of(module)
    apply = functional_model(module)
    _, full = meta_gradient(apply, F.mse_loss, params, batch, LR, 1, first_order=False)
    _, first = meta_gradient(apply, F.mse_loss, params, batch, LR, 1, first_order=True)
    hvp = {k: torch.zeros_like(v) for k, v in params.items()}
    for t in range(len(batch)):
        theta = {k: v.clone().requires_grad_() for k, v in params.items()}
        support = F.mse_loss(forward(theta, batch.x_support[t]), batch.y_support[t])
        g_s = torch.autograd.grad(support, list(theta.values()), create_graph=True)
        adapted = {k: (v - LR * g).detach().requires_grad_()
                   for (k, v), g in zip(theta.items(), g_s)}
        query = F.mse_loss(forward(adapted, batch.x_query[t]), batch.y_query[t])
        g_q = torch.autograd.grad(query, list(adapted.values()))
        dot = sum((a * b).sum() for a, b in zip(g_s, g_q))
        for k, h in zip(theta, torch.autograd.grad(dot, list(theta.values()))):
            hvp[k] += h / len(batch)
    for name in params:
        torch.testing.assert_close(full[name] - first[name], -LR * hvp[name], rtol=1e-9,
                                   atol=1e-12)
    assert any(float(hvp[k].abs().max()) > 1e-3 for k in hvp)   # the term is not trivially 0


# ------------------------------------------------------------------ memory


def live_tensors() -> int:
    gc.collect()
    return sum(1 for obj in gc.get_objects() if issubclass(type(obj), torch.Tensor))


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/statm").exists(), reason="needs /proc")
def test_memory_stays_flat_over_a_long_meta_training_loop():
    """Second-order MAML for 220 meta-steps: the number of live tensors is the same after 20,
    120 and 220 steps, and resident memory does not grow (older MAML libraries kept every
    step's create_graph graph alive)."""
    module = build(mlp_genome((1,), (8, 8), activation="relu"), seed=0)
    tasks, g = SinusoidTasks(k_shot=5, k_query=5), torch.Generator().manual_seed(0)
    apply, params = functional_model(module), dict(module.named_parameters())
    optimizer = torch.optim.Adam(params.values(), lr=1e-3)
    counts, rss = [], []
    for step in range(220):
        batch = tasks.sample(g, 4)
        _, grads = meta_gradient(apply, F.mse_loss, parameters_of(module), batch, 0.01, 1)
        for k, p in params.items():
            p.grad = grads[k]
        optimizer.step()
        if step in (19, 119, 219):
            counts.append(live_tensors())
            rss.append(rss_bytes())
    assert counts[0] == counts[1] == counts[2]
    assert rss[2] - rss[0] < 8 * 2**20


# ------------------------------------------------------------------ batch norm and training


def test_batch_norm_uses_batch_statistics_and_leaves_running_buffers_alone():
    module = build(conv_genome(), seed=0)
    module.eval()
    before = {k: v.clone() for k, v in module.named_buffers()}
    tasks = digits_tasks(n_way=5, k_shot=1, k_query=2)
    with batch_statistics(module):
        assert module.training
        curve = meta_train(module, tasks, torch.Generator().manual_seed(0), steps=3,
                           meta_batch=2, inner_lr=0.1, inner_steps=1)
    assert len(curve) == 3 and all(math.isfinite(v) for v in curve)
    assert not module.training
    assert all(m.track_running_stats for m in module.modules()
               if isinstance(m, torch.nn.BatchNorm2d))
    for name, value in module.named_buffers():
        assert torch.equal(value, before[name]), name
    # transductive: a query set is normalised by its own statistics, so scaling it changes
    # nothing downstream of the first BatchNorm
    batch = tasks.sample(torch.Generator().manual_seed(1), 2, "test")
    scaled = TaskBatch(batch.x_support, batch.y_support, batch.x_query * 3, batch.y_query)
    with batch_statistics(module):
        apply = functional_model(module)
        a = adaptation_curve(apply, "classification", parameters_of(module), batch, 0.1, 0)
        b = adaptation_curve(apply, "classification", parameters_of(module), scaled, 0.1, 0)
    torch.testing.assert_close(a["loss"], b["loss"], rtol=1e-4, atol=1e-5)


def test_meta_training_reduces_the_adapted_loss_and_is_deterministic():
    tasks = SinusoidTasks(k_shot=10, k_query=10)
    held_out = tasks.sample(torch.Generator().manual_seed(99), 50)
    results = []
    for _ in range(2):
        module = build(mlp_genome((1,), (40, 40), activation="relu"), seed=0)
        apply = functional_model(module)
        before = adaptation_curve(apply, "regression", parameters_of(module), held_out, 0.01, 5)
        meta_train(module, tasks, torch.Generator().manual_seed(0), steps=100, meta_batch=5,
                   inner_lr=0.01, inner_steps=1, meta_lr=0.01)
        after = adaptation_curve(apply, "regression", parameters_of(module), held_out, 0.01, 5)
        results.append(after["loss"])
    assert float(after["loss"][:, -1].mean()) < 0.75 * float(before["loss"][:, -1].mean())
    assert float(after["loss"][:, 5].mean()) < float(after["loss"][:, 0].mean())  # adapts
    assert torch.equal(results[0], results[1])


def test_non_finite_meta_loss_stops_training():
    module = build(mlp_genome((1,), (8,)), seed=0)
    curve = meta_train(module, SinusoidTasks(), torch.Generator().manual_seed(0), steps=50,
                       meta_batch=2, inner_lr=1e6, inner_steps=3)
    assert len(curve) < 50 and not math.isfinite(curve[-1])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_meta_training_on_cuda_matches_shapes():
    module = build(conv_genome(), seed=0, device="cuda")
    fitness = make_fitness("maml", {"family": "digits", "k_shot": 1, "k_query": 2,
                                    "meta_steps": 3, "meta_batch": 2, "eval_tasks": 4,
                                    "eval_steps": 1, "inner_lr": 0.1})
    score = fitness.score(module, conv_genome(), None, seed=0, device=torch.device("cuda"))
    assert score.status == "completed"


# ------------------------------------------------------------------ the fitness generator


def small(**params):
    base = {"meta_steps": 5, "meta_batch": 4, "eval_tasks": 8, "eval_steps": 2}
    return make_fitness("maml", {**base, **params})


def test_maml_is_registered_and_checks_its_parameters():
    assert FITNESS["maml"] is MAMLFitness
    for bad, match in (({"k_shot": 0}, "k_shot: must be an integer >= 1"),
                       ({"inner_lr": -1.0}, "inner_lr: must be a positive number"),
                       ({"first_order": "yes"}, "first_order"),
                       ({"family": "mnist"}, "family: unknown task family"),
                       ({"n_way": 7, "family": "digits"}, "n_way: 7 exceeds"),
                       ({"lr": 0.1}, "lr: unknown parameter")):
        with pytest.raises(ValueError, match=match):
            make_fitness("maml", bad)


@pytest.mark.parametrize("family", ["sinusoid", "digits"])
def test_fitness_scores_a_genome_on_held_out_tasks(family):
    genome = mlp_genome((1,), (20,), 1) if family == "sinusoid" else conv_genome(out=10)
    fitness = small(family=family, k_shot=2, k_query=3, inner_lr=0.1)
    score = fitness.score(build(genome, seed=0), genome, None, seed=3, device=CPU)
    assert score.status == "completed" and math.isfinite(score.fitness)
    m = score.metrics
    if family == "sinusoid":
        assert score.fitness == -m["val_mse"] and len(m["val_mse_by_step"]) == 3
        assert "test_mse" in m and "val_accuracy" not in m
    else:
        assert score.fitness == m["val_accuracy"] and 0 <= score.fitness <= 1
        assert len(m["test_accuracy_by_step"]) == 3
    assert m["retargeted"] is False and len(m["loss_curve"]) == 5
    again = fitness.score(build(genome, seed=0), genome, None, seed=3, device=CPU)
    assert again.fitness == score.fitness


def test_fitness_writes_the_meta_learned_weights_into_the_module():
    genome = mlp_genome((1,), (20,), 1)
    module = build(genome, seed=0)
    before = {k: v.clone() for k, v in module.state_dict().items()}
    small().score(module, genome, None, seed=0, device=CPU)
    assert all(not torch.equal(before[k], v) for k, v in module.state_dict().items())


def test_genome_of_another_input_shape_is_retargeted_and_keeps_matching_tensors():
    genome = mlp_genome((1, 8, 8), (20, 20), 10, "relu")    # a digits-run genome
    module = build(genome, seed=0)
    before = {k: v.clone() for k, v in module.state_dict().items()}
    score = small().score(module, genome, None, seed=0, device=CPU)
    assert score.status == "completed" and score.metrics["retargeted"] is True
    after = module.state_dict()
    assert torch.equal(after["layers.n1.1.weight"], before["layers.n1.1.weight"])  # 64 inputs
    assert not torch.equal(after["layers.n2.1.weight"], before["layers.n2.1.weight"])
    assert score.metrics["params"] == 1 * 20 + 20 + 20 * 20 + 20 + 20 * 10 + 10
    target = retarget(genome, (1,), 1)
    assert target.input_node.get("shape") == (1,)
    assert target.output_node.get("num_classes") == 1
    conv = conv_genome()                                   # convolutions need images
    assert small().score(build(conv), conv, None, seed=0, device=CPU).status == "infeasible"
    assert small().task_shapes() == ((1,), 1)


# ------------------------------------------------------------------ end to end


def test_tiny_maml_run_through_the_real_driver(tmp_path):
    from evograph.runs.config import load_config
    from evograph.runs.driver import create_run, run
    from evograph.runs.store import RunStore
    cfg = load_config(ROOT / "runs/configs/maml-sinusoid.toml", [
        "budget.evaluations=4", "strategy.population_size=2", "strategy.sample_size=1",
        "fitness.meta_steps=10", "fitness.eval_tasks=10", "budget.minutes=0",
        "executor.name=serial"])
    run_dir = create_run(cfg, tmp_path / "run")
    assert run(run_dir, live=False).finished
    with RunStore.open(run_dir, readonly=True) as store:
        evaluations = store.evaluations()
        assert len(evaluations) == 4 and {e.status for e in evaluations} == {"completed"}
        for e in evaluations:
            assert e.fitness == -e.metrics["val_mse"] < 0
            assert e.metrics["family"] == "sinusoid"
            assert (run_dir / e.weights).exists()
        assert store.best(1)[0].fitness == max(e.fitness for e in evaluations)


@pytest.mark.parametrize("name", ["maml-sinusoid", "maml-digits"])
def test_ready_configs_resolve(name):
    from evograph.runs.config import load_config
    from evograph.runs.setup import resolve
    parts = resolve(load_config(ROOT / f"runs/configs/{name}.toml"))
    assert parts.config.fitness.name == "maml"
    with pytest.raises(ConfigError, match="fitness.k_shot"):
        resolve(load_config(ROOT / f"runs/configs/{name}.toml", ["fitness.k_shot=0"]))
