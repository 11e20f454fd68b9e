"""The learned optimizer of Andrychowicz et al. 2016: preprocessing, coordinatewise sharing, the
first-order (no second derivative) truncated BPTT, real meta-learning on quadratics, save/load
without pickle, exact resume, the torch.optim wrapper and the task families."""

import math
import struct

import numpy as np
import pytest
import torch
from evograph.compile.training.sgd import OPTIMIZER_FACTORIES, make_optimizer
from evograph.meta.learned_optimizer.lstm import (
    LearnedOptimizer,
    LSTMConfig,
    LSTMOptimizer,
    OptimizerFileError,
    load_optimizer,
    parameter_count,
    preprocess_gradients,
    save_optimizer,
)
from evograph.meta.learned_optimizer.tasks import OPTIMIZEE_FAMILIES, make_family
from evograph.meta.learned_optimizer.train import (
    MetaConfig,
    apply_update,
    load_checkpoint,
    make_meta_optimizer,
    meta_train,
    optimizee_gradients,
    rollout,
    save_checkpoint,
    unroll,
)


def assert_close(actual, expected, rtol=1e-5, atol=1e-6):
    """torch.testing.assert_close's first call costs seconds of imports; this is enough."""
    assert actual.shape == expected.shape
    assert torch.allclose(actual, expected, rtol=rtol, atol=atol), (actual - expected).abs().max()


# -- preprocessing -------------------------------------------------------------------------------
def test_preprocessing_matches_the_papers_formula():
    p = 10.0
    grads = torch.tensor([1.0, -math.exp(-5), 2.5, -1e-3, 1e-6, -3e-7, 0.0, math.exp(-10)])
    out = preprocess_gradients(grads, p)
    assert out.shape == (8, 2)
    for g, (a, b) in zip(grads.tolist(), out.tolist()):   # oracle: Appendix A, written out
        if abs(g) >= math.exp(-p):
            want = (math.log(abs(g)) / p, math.copysign(1.0, g) if g else 0.0)
        else:
            want = (-1.0, math.exp(p) * g)
        assert a == pytest.approx(want[0], abs=1e-6) and b == pytest.approx(want[1], rel=1e-5)
    assert out[0].tolist() == [0.0, 1.0]                     # log 1 = 0, sign +
    assert out[1].tolist() == pytest.approx([-0.5, -1.0])    # |g| = e^-5: log / p = -0.5


def test_preprocessing_is_continuous_in_the_first_input_at_the_threshold():
    edge = math.exp(-10)
    out = preprocess_gradients(torch.tensor([edge * 1.0001, edge * 0.9999], dtype=torch.float64))
    assert out[0, 0].item() == pytest.approx(-1.0, abs=1e-4) and out[1, 0].item() == -1.0
    assert out[1, 1].item() == pytest.approx(0.9999, rel=1e-6)   # e^p g just below threshold


# -- coordinatewise sharing ----------------------------------------------------------------------
def test_parameter_count_does_not_depend_on_the_optimizee():
    net = LSTMOptimizer()
    expected = 4 * 20 * (2 + 20 + 2) + 4 * 20 * (20 + 20 + 2) + 21   # two LSTM cells + head
    assert parameter_count(net) == expected
    for n in (1, 10, 5000):
        update, state = net(torch.randn(n), net.initial_state(n))
        assert update.shape == (n,) and state.shape == (2, 2, n, 20)
    assert parameter_count(net) == expected


def test_each_coordinate_is_updated_by_the_same_network_independently():
    net = LSTMOptimizer(seed=3)
    grads = torch.randn(50)
    update, _ = net(grads, net.initial_state(50))
    perm = torch.randperm(50, generator=torch.Generator().manual_seed(0))
    permuted, _ = net(grads[perm], net.initial_state(50))
    assert_close(permuted, update[perm])
    alone, _ = net(grads[7:8], net.initial_state(1))
    assert_close(alone, update[7:8])


# -- truncated BPTT without second derivatives ---------------------------------------------------
def _meta_grad(net, task, steps, gradient_fn):
    """Meta-gradient of Σ f(θ_t) over ``steps`` steps, the optimizee gradient from ``gradient_fn``."""
    params = {k: v.requires_grad_(True) for k, v in task.init_params().items()}
    state, meta_loss = net.initial_state(task.problems * 3), 0.0
    for step in range(steps):
        grads = gradient_fn(task.losses(params, step), params)
        update, state = net(grads, state)
        params = apply_update(params, update)
        meta_loss = meta_loss + task.losses(params, step + 1).mean()
    net.zero_grad()
    meta_loss.backward()
    return torch.cat([p.grad.reshape(-1) for p in net.parameters()])


def _detached_gradient(task, params):
    """The reference: ∇f at a detached copy of θ (no path back to φ at all)."""
    theta = params["theta"].detach().requires_grad_(True)
    return torch.autograd.grad(task.losses({"theta": theta}, 0).sum(), theta)[0].reshape(-1)


def test_optimizee_gradients_are_constants():
    task = make_family("quadratic", {"batch": 4, "dims": 3}).sample(0)
    net = LSTMOptimizer()
    params = {"theta": task.init_params()["theta"].requires_grad_(True)}
    update, _ = net(torch.randn(12), net.initial_state(12))
    params = apply_update(params, update)              # θ now depends on φ
    grads = optimizee_gradients(task.losses(params, 0), params)
    assert grads.grad_fn is None and not grads.requires_grad
    assert_close(grads, _detached_gradient(task, params))


def test_meta_gradient_is_first_order():
    """The meta-gradient equals the one computed from gradients of *detached* parameters
    (the paper's dashed edges), and differs from the full second-order one. (Raw gradients
    in: through the log/sign preprocessing the second-order term is small, though not zero.)"""
    task = make_family("quadratic", {"batch": 4, "dims": 3, "init_std": 1.0}).sample(1)
    net = LSTMOptimizer(LSTMConfig(preprocess=0.0), seed=1).double()
    task.w, task.y, task.theta0 = task.w.double(), task.y.double(), task.theta0.double()

    def second_order(losses, params):
        return torch.autograd.grad(losses.sum(), params["theta"], create_graph=True)[0].reshape(-1)

    ours = _meta_grad(net, task, 4, optimizee_gradients)
    assert_close(ours, _meta_grad(net, task, 4, lambda _, p: _detached_gradient(task, p)))
    assert not torch.allclose(ours, _meta_grad(net, task, 4, second_order), rtol=1e-3)
    # and the library's unroll builds exactly the same meta-gradient
    params = {k: v.requires_grad_(True) for k, v in task.init_params().items()}
    meta_loss, _, _ = unroll(net, task, params, net.initial_state(12), 0, 4)
    net.zero_grad()
    meta_loss.backward()
    assert_close(torch.cat([p.grad.reshape(-1) for p in net.parameters()]), ours)


# -- real meta-learning --------------------------------------------------------------------------
def _held_out_loss(net, family, steps):
    tasks = [family.sample(10_000 + i) for i in range(2)]
    curves = [rollout(t, lambda ps: LearnedOptimizer(ps, net), steps) for t in tasks]
    return float(torch.cat([c[1:].mean(0) for c in curves]).mean())   # mean loss over θ_1..θ_T


@pytest.mark.slow
def test_short_meta_training_on_quadratics_lowers_the_meta_loss():
    family = make_family("quadratic", {"batch": 32})
    config = MetaConfig(steps=40, unroll=20, meta_lr=0.01, meta_iterations=25, seed=0)
    net = LSTMOptimizer(seed=0)
    before = _held_out_loss(net, family, config.steps)
    history = meta_train(net, family, config)
    after = _held_out_loss(net, family, config.steps)
    assert len(history) == 25 and all(math.isfinite(h) for h in history)
    assert after < 0.5 * before, (before, after)
    assert np.mean(history[-5:]) < np.mean(history[:5])


# -- save / load / resume ------------------------------------------------------------------------
def test_save_load_round_trip_without_pickle(tmp_path):
    net = LSTMOptimizer(LSTMConfig(hidden=7, output_scale=0.05), seed=5)
    path = save_optimizer(net, tmp_path / "opt.safetensors", {"note": "hi"})
    raw = path.read_bytes()
    header_len = struct.unpack("<Q", raw[:8])[0]
    assert raw[8:9] == b"{" and b"\x80\x02" not in raw[:2]     # a JSON header, not a pickle
    assert b"evograph-learned-optimizer" in raw[8:8 + header_len]
    loaded, info = load_optimizer(path)
    assert loaded.config == net.config and info == {"note": "hi"}
    for (k, a), (_, b) in zip(net.state_dict().items(), loaded.state_dict().items()):
        assert torch.equal(a, b), k
    g = torch.randn(9)
    assert_close(loaded(g, loaded.initial_state(9))[0],
                               net(g, net.initial_state(9))[0])


def test_load_refuses_pickles_and_foreign_files(tmp_path):
    torch.save(LSTMOptimizer().state_dict(), tmp_path / "pickled.pt")
    with pytest.raises(OptimizerFileError, match="not a safetensors file"):
        load_optimizer(tmp_path / "pickled.pt")
    from safetensors.torch import save_file
    save_file({"x": torch.zeros(2)}, tmp_path / "other.safetensors")
    with pytest.raises(OptimizerFileError, match="not a learned-optimizer file"):
        load_optimizer(tmp_path / "other.safetensors")
    with pytest.raises(OptimizerFileError, match="not found"):
        load_optimizer(tmp_path / "missing.safetensors")


def test_resume_from_a_checkpoint_is_exact(tmp_path):
    family = make_family("quadratic", {"batch": 8})
    config = MetaConfig(steps=10, unroll=5, meta_iterations=4, seed=2)
    straight = LSTMOptimizer(seed=0)
    full = meta_train(straight, family, config)

    first = LSTMOptimizer(seed=0)
    opt = make_meta_optimizer(first, config)

    def stop_after_two(iteration, history):   # an interruption after 2 of 4 trajectories
        if iteration == 1:
            save_checkpoint(tmp_path / "c.safetensors", first, opt, 2, history, {"k": 1})
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        meta_train(first, family, config, meta_opt=opt, callback=stop_after_two)
    saved = load_checkpoint(tmp_path / "c.safetensors")
    resumed = LSTMOptimizer(seed=99)
    resumed.load_state_dict(saved["net_state"])
    opt2 = make_meta_optimizer(resumed, config)
    opt2.load_state_dict(saved["adam_state"])
    history = meta_train(resumed, family, config, meta_opt=opt2, start=saved["iteration"],
                         history=saved["history"])
    assert history == full and saved["extra"] == {"k": 1}
    for a, b in zip(straight.parameters(), resumed.parameters()):
        assert torch.equal(a, b)


# -- the torch.optim wrapper and the optimizer gene ----------------------------------------------
def test_learned_optimizer_applies_the_network_per_coordinate():
    net = LSTMOptimizer(seed=4)
    w = torch.nn.Parameter(torch.randn(3, 4))
    b = torch.nn.Parameter(torch.randn(4))
    opt = LearnedOptimizer([w, b], net)
    start_w, start_b = w.detach().clone(), b.detach().clone()
    (w.sum() * 2 + (b ** 2).sum()).backward()
    opt.step()
    with torch.no_grad():
        uw, _ = net(torch.full((12,), 2.0), net.initial_state(12))
        ub, _ = net((2 * start_b).reshape(-1), net.initial_state(4))
    assert_close(w.detach(), start_w + uw.view(3, 4))
    assert_close(b.detach(), start_b + ub)
    assert opt.state[w]["lstm"].shape == (2, 2, 12, 20)


def test_learned_is_an_optimizer_gene_value(tmp_path, monkeypatch):
    assert "learned" in OPTIMIZER_FACTORIES
    path = save_optimizer(LSTMOptimizer(), tmp_path / "o.safetensors")
    monkeypatch.delenv("EVOGRAPH_LEARNED_OPTIMIZER", raising=False)
    genes = {"optimizer": "learned", "learning_rate": 0.01}
    with pytest.raises(OptimizerFileError, match="EVOGRAPH_LEARNED_OPTIMIZER"):
        make_optimizer(genes, [torch.nn.Parameter(torch.zeros(2))])
    monkeypatch.setenv("EVOGRAPH_LEARNED_OPTIMIZER", str(path))
    assert isinstance(make_optimizer(genes, [torch.nn.Parameter(torch.zeros(2))]),
                      LearnedOptimizer)


# -- task families -------------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(OPTIMIZEE_FAMILIES))
def test_every_family_gives_deterministic_finite_tasks(name):
    family = make_family(name, {})
    a, b = family.sample(7), family.sample(7)
    pa, pb = a.init_params(), b.init_params()
    assert pa.keys() == pb.keys() and all(torch.equal(pa[k], pb[k]) for k in pa)
    losses = a.losses(pa, 3)
    assert losses.shape == (a.problems,) and torch.isfinite(losses).all()
    assert_close(losses, b.losses(pb, 3))
    assert a.eval_losses(pa).shape == (a.problems,)
    curve = rollout(a, lambda ps: torch.optim.Adam(ps, lr=0.01), 5)
    assert curve.shape == (6, a.problems) and torch.isfinite(curve).all()


@pytest.mark.parametrize("name", ["quadratic", "digits-mlp"])
def test_batched_problems_are_independent(name):
    params = {"quadratic": {"batch": 3}, "digits-mlp": {"networks": 3}}[name]
    task = make_family(name, params).sample(0)
    theta = {k: v.requires_grad_(True) for k, v in task.init_params().items()}
    task.losses(theta, 0)[0].backward()           # problem 0 only
    for value in theta.values():
        assert value.grad[1:].abs().sum() == 0 and value.grad[0].abs().sum() > 0


def test_unknown_family_or_parameter_is_named():
    with pytest.raises(ValueError, match="unknown task family 'cubic'"):
        make_family("cubic", {})
    with pytest.raises(ValueError, match="dim: unknown parameter"):
        make_family("quadratic", {"dim": 3})


# -- CUDA (where present) ------------------------------------------------------------------------
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("name", sorted(OPTIMIZEE_FAMILIES))
def test_meta_training_and_the_wrapper_run_on_cuda(name):
    device = torch.device("cuda")
    family = make_family(name, {})
    net = LSTMOptimizer(seed=0).to(device)
    history = meta_train(net, family, MetaConfig(steps=6, unroll=3, meta_iterations=2),
                         device=device)
    assert len(history) == 2 and all(math.isfinite(h) for h in history)
    cpu_net = LSTMOptimizer(seed=0)                 # the wrapper copies a CPU net to the device
    curve = rollout(family.sample(1, device), lambda ps: LearnedOptimizer(ps, cpu_net), 3)
    assert curve.shape[0] == 4 and torch.isfinite(curve).all()


def test_the_optimizee_split_is_the_fixed_stratified_one():
    from evograph.meta.learned_optimizer.tasks import digits_train
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split
    bunch = load_digits()
    x_train, _, y_train, _ = train_test_split(bunch.data, bunch.target, test_size=0.2,
                                              random_state=0, stratify=bunch.target)
    x, y = digits_train()
    np.testing.assert_array_equal(x.numpy(), (x_train / 16.0).astype(np.float32))
    np.testing.assert_array_equal(y.numpy(), y_train)
