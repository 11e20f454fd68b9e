"""DARTS' bilevel optimisation (Liu et al. 2019, §2.3): the architecture parameters alpha minimise
the validation loss of the weights that minimise the training loss.

Each step first moves alpha, then the weights:

* **alpha** by Adam on the validation loss. *First order* takes ``grad_alpha L_val(w, alpha)``
  at the current weights. *Second order* takes it at the one-step-unrolled weights
  ``w' = w - xi * grad_w L_train(w, alpha)`` and subtracts the implicit term with the paper's
  finite-difference Hessian-vector product (eq. 8)::

      grad_alpha L_val(w', alpha)
        - xi * [grad_alpha L_train(w+, alpha) - grad_alpha L_train(w-, alpha)] / (2 eps)

  where ``w+- = w +- eps * grad_w' L_val(w', alpha)`` and ``eps = 0.01 / ||grad_w' L_val||``.
* **the weights** by SGD with momentum on the training loss, the rate annealed by cosine,
  gradients clipped (the paper's 5).

The defaults are the paper's CIFAR-10 search settings (weights: SGD 0.025 -> 0.001, momentum 0.9,
weight decay 3e-4; alpha: Adam 3e-4, betas (0.5, 0.999), weight decay 1e-3), with xi the weight
learning rate as in the paper's code. Passes over other parameter values go through
``torch.func.functional_call``, so the supernet's own parameters are never overwritten.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn
from torch.func import functional_call
from torch.nn import functional as F

Batch = tuple[torch.Tensor, torch.Tensor]


@dataclass(frozen=True)
class DartsSettings:
    """The optimisers of a DARTS search (defaults: the paper's, see the module docstring)."""

    order: int = 1
    weight_lr: float = 0.025
    weight_lr_min: float = 0.001
    momentum: float = 0.9
    weight_decay: float = 3e-4
    alpha_lr: float = 3e-4
    alpha_betas: tuple[float, float] = (0.5, 0.999)
    alpha_decay: float = 1e-3
    grad_clip: float = 5.0
    hvp_radius: float = 0.01       # second order: eps = hvp_radius / ||grad_w' L_val||

    def check(self) -> None:
        if self.order not in (1, 2):
            raise ValueError(f"order: must be 1 (first-order) or 2 (second-order), got "
                             f"{self.order!r}")
        for name in ("weight_lr", "alpha_lr"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name}: must be > 0, got {getattr(self, name)!r}")
        if not 0 <= self.weight_lr_min <= self.weight_lr:
            raise ValueError("weight_lr_min: must be in [0, weight_lr]")


def _loss(model: nn.Module, params: dict[str, torch.Tensor], batch: Batch) -> torch.Tensor:
    x, y = batch
    return F.cross_entropy(functional_call(model, params, (x,)), y)


def alpha_gradient(model: nn.Module, train: Batch, val: Batch, order: int,
                   xi: float, weight_decay: float = 0.0, radius: float = 0.01) -> torch.Tensor:
    """The gradient DARTS steps alpha along (first or second order; module docstring;
    ``radius``: the paper's 0.01 in ``eps = radius / ||v||``). ``model`` has a parameter
    ``alpha`` and its weights; neither is changed."""
    params = dict(model.named_parameters())
    alpha = params.pop("alpha")
    weights = {k: v.detach() for k, v in params.items()}
    if order == 1:
        a = alpha.detach().requires_grad_(True)
        (grad,) = torch.autograd.grad(_loss(model, {**weights, "alpha": a}, val), a)
        return grad
    # w' = w - xi * (grad_w L_train(w, alpha) + weight decay * w): one unrolled step
    names = list(weights)
    w = [weights[n].requires_grad_(True) for n in names]
    grads = torch.autograd.grad(_loss(model, {**dict(zip(names, w)), "alpha": alpha.detach()},
                                      train), w, allow_unused=True)
    unrolled = {n: (v - xi * ((g if g is not None else 0) + weight_decay * v)).detach()
                for n, v, g in zip(names, w, grads)}
    a = alpha.detach().requires_grad_(True)
    w2 = [unrolled[n].requires_grad_(True) for n in names]
    outs = torch.autograd.grad(_loss(model, {**dict(zip(names, w2)), "alpha": a}, val),
                               [a, *w2], allow_unused=True)
    grad_alpha, v = outs[0], [g if g is not None else torch.zeros_like(t)
                              for g, t in zip(outs[1:], w2)]
    return grad_alpha - xi * hessian_vector(model, weights, alpha.detach(), v, train, radius)


def hessian_vector(model: nn.Module, weights: dict[str, torch.Tensor], alpha: torch.Tensor,
                   vector: list[torch.Tensor], batch: Batch,
                   radius: float = 0.01) -> torch.Tensor:
    """``grad^2_{alpha,w} L_train(w, alpha) . vector`` by central differences (eq. 8): the
    weights moved ``radius`` along the vector's direction either way."""
    norm = torch.sqrt(sum((v * v).sum() for v in vector))
    eps = radius / float(norm) if float(norm) > 0 else 0.0
    if eps == 0.0:
        return torch.zeros_like(alpha)
    grads = []
    for sign in (1.0, -1.0):
        moved = {n: w + sign * eps * v for (n, w), v in zip(weights.items(), vector)}
        a = alpha.clone().requires_grad_(True)
        (g,) = torch.autograd.grad(_loss(model, {**moved, "alpha": a}, batch), a)
        grads.append(g)
    return (grads[0] - grads[1]) / (2 * eps)


class BilevelTrainer:
    """Alternating DARTS steps on one supernet over ``total_steps`` steps (for the cosine
    schedule of the weights)."""

    def __init__(self, model: nn.Module, settings: DartsSettings, total_steps: int):
        settings.check()
        self.model, self.settings, self.total = model, settings, max(1, total_steps)
        self.weights = [p for n, p in model.named_parameters() if n != "alpha"]
        self.weight_opt = torch.optim.SGD(self.weights, lr=settings.weight_lr,
                                          momentum=settings.momentum,
                                          weight_decay=settings.weight_decay)
        self.alpha_opt = torch.optim.Adam([model.alpha], lr=settings.alpha_lr,
                                          betas=settings.alpha_betas,
                                          weight_decay=settings.alpha_decay)
        self.step_count = 0

    def weight_lr(self) -> float:
        """Cosine from ``weight_lr`` to ``weight_lr_min`` over the steps (SGDR, as the paper)."""
        s = self.settings
        t = min(self.step_count, self.total) / self.total
        return s.weight_lr_min + 0.5 * (s.weight_lr - s.weight_lr_min) * (1 + math.cos(math.pi * t))

    def step(self, train: Batch, val: Batch) -> tuple[float, float]:
        """One alpha step, then one weight step; (training loss, validation loss)."""
        lr = self.weight_lr()
        self.model.train()
        grad = alpha_gradient(self.model, train, val, self.settings.order, lr,
                              self.settings.weight_decay, self.settings.hvp_radius)
        self.alpha_opt.zero_grad(set_to_none=True)
        self.model.alpha.grad = grad
        self.alpha_opt.step()
        with torch.no_grad():
            val_loss = float(F.cross_entropy(self.model(val[0]), val[1]))
        for group in self.weight_opt.param_groups:
            group["lr"] = lr
        self.weight_opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(self.model(train[0]), train[1])
        loss.backward()
        nn.utils.clip_grad_norm_(self.weights, self.settings.grad_clip)
        self.model.alpha.grad = None
        self.weight_opt.step()
        self.step_count += 1
        return float(loss.detach()), val_loss
