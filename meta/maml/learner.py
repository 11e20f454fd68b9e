"""MAML and first-order MAML (Finn et al. 2017, *Model-Agnostic Meta-Learning for Fast Adaptation
of Deep Networks*) for any compiled genome, written over parameter dicts with ``torch.func``.

For one task with support set (xs, ys) and query set (xq, yq), the inner loop takes ``steps``
plain SGD steps from the meta-parameters θ::

    θ_0 = θ,   θ_{i+1} = θ_i - α ∇ L(θ_i; xs, ys)

and the task's meta-loss is ``L(θ_steps; xq, yq)``. MAML differentiates it with respect to θ
*through* the inner loop — ``torch.func.grad`` of a function that itself calls ``grad`` — which
brings in the Hessian terms ``(I - α ∇²L(θ_i))``. First-order MAML (the paper's section 5.2
approximation) drops them: its meta-gradient is the query gradient at the adapted parameters,
``∇ L(θ_steps; xq, yq)``. Tasks are batched with ``vmap`` (per-task gradients, then their mean),
and the meta-optimizer is Adam over the module's own parameters, as in the paper.

Nothing persists between meta-steps but the parameters and Adam's state: every graph is built
inside a ``torch.func`` transform and released when it returns, so memory stays flat over long
meta-training (older MAML libraries leaked by keeping ``create_graph`` graphs alive).

Batch normalisation: the paper uses batch statistics in the inner and outer loop and at test time
(the *transductive* setting: a query set is normalised by its own statistics).
:func:`batch_statistics` switches every BatchNorm of a module to that mode; :func:`meta_train`
and :func:`evaluate_module` apply it for their duration (``track_running_stats=False`` in training mode: no running buffer
is read or written, which also keeps ``vmap`` free of in-place buffer updates). The running
statistics stored with the module keep whatever values they had; a meta-learned module is meant
to be adapted and run in training mode.

The ``maml`` fitness generator that scores genomes with this lives in
:mod:`evograph.meta.maml.fitness` (registered by the package's ``__init__``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
from torch import nn
from torch.func import functional_call, grad, grad_and_value, vmap
from torch.nn import functional as F

from ...data.tasks import Gen, TaskBatch, torch_generator

Params = dict[str, torch.Tensor]
Apply = Callable[[Params, torch.Tensor], torch.Tensor]     # (params, x (S, *in)) -> (S, out)
Loss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

LOSSES: dict[str, Loss] = {"regression": F.mse_loss, "classification": F.cross_entropy}


def functional_model(module: nn.Module, n_out: int | None = None) -> Apply:
    """``module`` as a pure function of a parameter dict (buffers come from the module). With
    ``n_out``, only the first ``n_out`` outputs are read (a 10-class head doing 5-way tasks)."""
    def apply(params: Params, x: torch.Tensor) -> torch.Tensor:
        out = functional_call(module, params, (x,))
        return out if n_out is None else out[..., :n_out]
    return apply


def parameters_of(module: nn.Module) -> Params:
    """The module's trainable parameters as a dict of detached tensors (sharing storage)."""
    return {name: p.detach() for name, p in module.named_parameters() if p.requires_grad}


@contextmanager
def batch_statistics(module: nn.Module) -> Iterator[nn.Module]:
    """Run ``module`` in training mode with every BatchNorm using batch statistics only (the
    paper's transductive setting); restores the modes on exit."""
    norms = [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    tracked = [m.track_running_stats for m in norms]
    was_training = module.training
    try:
        for m in norms:
            m.track_running_stats = False
        module.train()
        yield module
    finally:
        for m, flag in zip(norms, tracked):
            m.track_running_stats = flag
        module.train(was_training)


def adapt(apply: Apply, loss: Loss, params: Params, x: torch.Tensor, y: torch.Tensor,
          lr: float, steps: int) -> Params:
    """The inner loop on one task: ``steps`` SGD steps of size ``lr`` on (x, y). Differentiable
    with respect to ``params`` when called inside a ``torch.func.grad`` (MAML)."""
    support_grad = grad(lambda p: loss(apply(p, x), y))
    for _ in range(steps):
        g = support_grad(params)
        params = {k: p - lr * g[k] for k, p in params.items()}
    return params


def meta_gradient(apply: Apply, loss: Loss, params: Params, batch: TaskBatch, lr: float,
                  steps: int, first_order: bool = False) -> tuple[torch.Tensor, Params]:
    """(mean query loss after adaptation, its gradient with respect to ``params``) over the
    tasks of ``batch``; ``first_order`` drops the second-order terms (FOMAML)."""
    def one_task(p: Params, xs, ys, xq, yq) -> tuple[Params, torch.Tensor]:
        def query(q: Params) -> torch.Tensor:
            return loss(apply(q, xq), yq)
        if first_order:  # gradient at the adapted point, as if it did not depend on p
            return grad_and_value(query)(adapt(apply, loss, p, xs, ys, lr, steps))
        return grad_and_value(lambda q: query(adapt(apply, loss, q, xs, ys, lr, steps)))(p)

    grads, losses = vmap(one_task, in_dims=(None, 0, 0, 0, 0))(params, *batch.tensors)
    return losses.mean(), {k: g.mean(0) for k, g in grads.items()}   # (T, *shape) -> shape


def meta_train(module: nn.Module, tasks, gen: Gen, *, steps: int, meta_batch: int,
               inner_lr: float, inner_steps: int, first_order: bool = False,
               meta_lr: float = 1e-3, n_out: int | None = None,
               device: str | torch.device = "cpu", points: int = 20) -> list[float]:
    """Meta-train ``module``'s parameters in place with Adam for ``steps`` meta-steps of
    ``meta_batch`` tasks from ``tasks.sample(gen, ...)`` (BatchNorm on batch statistics).
    Returns the mean meta-loss over ~``points`` equal chunks; stops at a non-finite loss (the
    last entry is then non-finite)."""
    g = torch_generator(gen)
    apply, loss = functional_model(module, n_out), LOSSES[tasks.kind]
    named = {k: p for k, p in module.named_parameters() if p.requires_grad}
    optimizer = torch.optim.Adam(named.values(), lr=meta_lr)
    chunk, curve, running, count = max(1, steps // points), [], 0.0, 0
    with batch_statistics(module):
        for step in range(steps):
            batch = tasks.sample(g, meta_batch, "train").to(device)
            value, grads = meta_gradient(apply, loss, parameters_of(module), batch, inner_lr,
                                         inner_steps, first_order)
            value = float(value)
            if not math.isfinite(value):
                return curve + [value]
            for name, p in named.items():
                p.grad = grads[name]
            optimizer.step()
            running, count = running + value, count + 1
            if count == chunk or step == steps - 1:
                curve.append(running / count)
                running, count = 0.0, 0
    return curve


@torch.no_grad()
def adaptation_curve(apply: Apply, kind: str, params: Params, batch: TaskBatch, lr: float,
                     steps: int, chunk: int = 50) -> dict[str, torch.Tensor]:
    """Query loss (and accuracy for classification) of every task of ``batch`` before and after
    each of ``steps`` inner steps: tensors ``(T, steps + 1)``, column i after i steps."""
    loss = LOSSES[kind]

    def one_task(p: Params, xs, ys, xq, yq) -> tuple[torch.Tensor, torch.Tensor]:
        losses, accs = [], []
        for i in range(steps + 1):
            out = apply(p, xq)
            losses.append(loss(out, yq))
            accs.append((out.argmax(-1) == yq).float().mean() if kind == "classification"
                        else torch.zeros(()))
            if i < steps:
                p = adapt(apply, loss, p, xs, ys, lr, 1)
        return torch.stack(losses), torch.stack(accs)

    parts = [vmap(one_task, in_dims=(None, 0, 0, 0, 0))(params, *(t[s:s + chunk]
                                                                   for t in batch.tensors))
             for s in range(0, len(batch), chunk)]
    out = {"loss": torch.cat([p[0] for p in parts])}
    if kind == "classification":
        out["accuracy"] = torch.cat([p[1] for p in parts])
    return out


def evaluate_module(module: nn.Module, tasks, batch: TaskBatch, lr: float, steps: int,
                    n_out: int | None = None) -> dict[str, torch.Tensor]:
    """:func:`adaptation_curve` of a module, with BatchNorm on batch statistics."""
    with batch_statistics(module):
        return adaptation_curve(functional_model(module, n_out), tasks.kind,
                                parameters_of(module), batch, lr, steps)
