"""The DARTS supernet over the nb201 cell: a one-hot alpha computes exactly the derived genome's
network with the supernet's weights; the derived cell is always a valid genome of the space;
alpha's gradients, first and second order, agree with finite differences."""

import numpy as np
import pytest
import torch
from evograph.compile.builder import build
from evograph.genome.space import get_space
from evograph.genome.validate import analyze
from evograph.meta.darts.bilevel import BilevelTrainer, DartsSettings, _loss, alpha_gradient
from evograph.meta.darts.supernet import Nb201Supernet, inherited_state

SPACE = get_space("nb201", cell_channels=4, cells=1, stages=2)


def one_hot(net: Nb201Supernet, ops: list[str]) -> None:
    with torch.no_grad():
        net.alpha.fill_(-1e4)               # softmax: exactly 1.0 for the chosen op, 0 elsewhere
        for edge, op in enumerate(ops):
            net.alpha[edge, net.ops.index(op)] = 0.0


@pytest.mark.parametrize("shape", [(1, 8, 8), (1, 40)])
def test_a_one_hot_alpha_is_the_derived_genome_with_the_supernets_weights(shape):
    rng = np.random.default_rng(0)
    net = Nb201Supernet(SPACE, shape, 10, seed=3)
    x = torch.randn(6, *shape)
    for _ in range(6):
        ops = [str(rng.choice(net.ops)) for _ in range(6)]
        one_hot(net, ops)
        genome = net.derived_genome()
        assert net.derived_ops() == ops
        module = build(genome, seed=99)
        module.load_state_dict(inherited_state(net, genome), strict=True)
        for train in (True, False):  # batch statistics and running statistics alike
            net.train(train)
            module.train(train)
            assert torch.equal(net(x), module(x))


def test_every_alpha_decodes_to_a_valid_genome_of_the_space():
    net = Nb201Supernet(SPACE, (1, 8, 8), 10)
    generator = torch.Generator().manual_seed(0)
    for _ in range(50):
        with torch.no_grad():
            net.alpha.copy_(torch.randn(net.alpha.shape, generator=generator) * 3)
        genome = net.derived_genome()
        assert analyze(genome, SPACE).params > 0
        assert [net.ops[i] for i in net.alpha.argmax(-1)] == net.derived_ops()


def double_net_and_batches():
    net = Nb201Supernet(get_space("nb201", cell_channels=2, cells=1, stages=1,
                                  ops=("none", "skip_connect", "nor_conv_3x3", "avg_pool_3x3")),
                        (1, 6, 6), 3, seed=1).double()
    with torch.no_grad():
        net.alpha.copy_(torch.randn(net.alpha.shape, generator=torch.Generator().manual_seed(2),
                                    dtype=torch.float64))
    g = torch.Generator().manual_seed(4)
    train = (torch.randn(8, 1, 6, 6, generator=g, dtype=torch.float64),
             torch.randint(0, 3, (8,), generator=g))
    val = (torch.randn(8, 1, 6, 6, generator=g, dtype=torch.float64),
           torch.randint(0, 3, (8,), generator=g))
    return net, train, val


def central_differences(f, alpha: torch.Tensor, h: float = 1e-5) -> torch.Tensor:
    out = torch.zeros_like(alpha)
    for index in np.ndindex(*alpha.shape):
        plus, minus = alpha.clone(), alpha.clone()
        plus[index] += h
        minus[index] -= h
        out[index] = (f(plus) - f(minus)) / (2 * h)
    return out


def test_first_order_alpha_gradient_is_the_validation_losss_derivative():
    net, train, val = double_net_and_batches()
    weights = {n: p.detach() for n, p in net.named_parameters() if n != "alpha"}
    grad = alpha_gradient(net, train, val, order=1, xi=0.1)
    fd = central_differences(lambda a: float(_loss(net, {**weights, "alpha": a}, val)),
                             net.alpha.detach())
    torch.testing.assert_close(grad, fd, rtol=1e-5, atol=1e-8)


def test_second_order_alpha_gradient_differentiates_through_the_unrolled_step():
    """d/dalpha L_val(w - xi (grad_w L_train(w, alpha) + wd w), alpha): the paper's
    finite-difference Hessian-vector product against finite differences of the whole thing."""
    net, train, val = double_net_and_batches()
    xi, wd = 0.5, 3e-4
    names = [n for n, _ in net.named_parameters() if n != "alpha"]
    weights = {n: p.detach() for n, p in net.named_parameters() if n != "alpha"}

    def unrolled_val_loss(alpha: torch.Tensor) -> float:
        w = {n: weights[n].clone().requires_grad_(True) for n in names}
        grads = torch.autograd.grad(_loss(net, {**w, "alpha": alpha}, train), list(w.values()),
                                    allow_unused=True)
        moved = {n: w[n].detach() - xi * ((g if g is not None else 0) + wd * w[n].detach())
                 for n, g in zip(names, grads)}
        return float(_loss(net, {**moved, "alpha": alpha}, val))

    fd = central_differences(unrolled_val_loss, net.alpha.detach())
    first = alpha_gradient(net, train, val, order=1, xi=xi)
    assert not torch.allclose(fd, first, rtol=1e-3)     # the implicit term matters here
    # the product's central difference converges to the exact derivative as its radius shrinks
    # (the paper's radius 0.01 trades that for speed: this tiny net is far from linear there)
    grad = alpha_gradient(net, train, val, order=2, xi=xi, weight_decay=wd, radius=1e-6)
    torch.testing.assert_close(grad, fd, rtol=1e-4, atol=1e-7)
    coarse = alpha_gradient(net, train, val, order=2, xi=xi, weight_decay=wd)
    assert torch.isfinite(coarse).all() and not torch.equal(coarse, grad)


def test_the_weight_rate_anneals_by_cosine_and_a_step_moves_alpha_and_weights():
    net, train, val = double_net_and_batches()
    trainer = BilevelTrainer(net, DartsSettings(order=2), total_steps=4)
    assert trainer.weight_lr() == pytest.approx(0.025)
    before = {n: p.detach().clone() for n, p in net.named_parameters()}
    for _ in range(4):
        trainer.step(train, val)
    assert trainer.weight_lr() == pytest.approx(0.001)
    after = dict(net.named_parameters())
    assert not torch.equal(before["alpha"], after["alpha"].detach())
    assert any(not torch.equal(before[n], after[n].detach()) for n in before if n != "alpha")
    with pytest.raises(ValueError, match="order: must be 1"):
        DartsSettings(order=3).check()
