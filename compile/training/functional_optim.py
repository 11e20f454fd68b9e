"""Functional optimizers over *stacked* parameters: one update moves K candidates at once.

A batched population (:mod:`evograph.compile.training.batched`) holds each parameter as one tensor of shape
``(K, *shape)`` — row k belongs to candidate k — and each candidate has its own learning rate
and weight decay (ALTER-LEARNING-RATE children differ only there). ``torch.optim`` takes one scalar
learning rate per group, so the updates are re-implemented here as plain tensor code with the
hyper-parameters as ``(K,)`` columns broadcast over each row.

Each update mirrors the arithmetic (order of operations, defaults, bias corrections) of the
single-tensor path of the matching ``torch.optim`` class that :data:`evograph.compile.training.sgd.
OPTIMIZER_FACTORIES` builds, so a batched candidate follows the trajectory it would follow alone up to float
rounding; ``tests/compile/test_batched.py`` checks every entry against ``torch.optim``.
Sources: SGD with momentum (Polyak 1964; PyTorch's formulation), Adam and Adamax (Kingma & Ba
2015), RMSprop (Tieleman & Hinton 2012), Adagrad (Duchi et al. 2011), Adadelta (Zeiler 2012),
NAdam (Dozat 2016).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

State = dict[str, Any]  # per-parameter tensor lists by name, and an update's own caches
# update(params, grads, state, lr, wd, step): in place, under no_grad; lr/wd are (K,) float64
Update = Callable[[list[Tensor], list[Tensor], State, Tensor, Tensor, int], None]

FUNCTIONAL_OPTIMIZERS: dict[str, tuple[tuple[str, ...], Update]] = {}


def register_update(name: str, state_names: tuple[str, ...] = ()):
    """Register an update under the optimizer gene ``name``; ``state_names`` are the per-parameter
    state tensors it keeps (created as zeros shaped like the stacked parameter)."""
    def wrap(fn: Update) -> Update:
        FUNCTIONAL_OPTIMIZERS[name] = (state_names, fn)
        return fn
    return wrap


def init_state(name: str, params: list[Tensor]) -> State:
    """Fresh optimizer state for stacked ``params`` (zeros, like torch's lazy init)."""
    names, _ = FUNCTIONAL_OPTIMIZERS[name]
    return {n: [torch.zeros_like(p) for p in params] for n in names}


@torch.no_grad()
def apply_update(name: str, params: list[Tensor], grads: list[Tensor], state: State,
                 lr: Tensor, wd: Tensor, step: int) -> None:
    """One optimizer step (``step`` counts from 1) on every stacked parameter, in place."""
    FUNCTIONAL_OPTIMIZERS[name][1](params, grads, state, lr, wd, step)


def col(values: Tensor, like: Tensor) -> Tensor:
    """A ``(K,)`` vector as a column broadcastable over ``like`` of shape ``(K, ...)``."""
    return values.to(device=like.device, dtype=like.dtype).view(-1, *[1] * (like.dim() - 1))


def clip_rows_(grads: list[Tensor], max_norm: float) -> None:
    """``clip_grad_norm_`` per candidate: row k of every stacked gradient scaled so that row k's
    total 2-norm over all of them is at most ``max_norm``."""
    norms = torch.stack([g.flatten(1).norm(dim=1) for g in grads], dim=1).norm(dim=1)  # (K,)
    coef = (max_norm / (norms + 1e-6)).clamp(max=1.0)
    for g in grads:
        g.mul_(col(coef, g))


# Updates write in place and keep temporaries to one per parameter: on CPU a population's
# stacked tensors are megabytes, and each extra temporary costs a pass over memory.

_TINY = 1e-30  # added under square roots: sqrt(0) takes a slow path on some CPUs (about 5x);
#                 sqrt(1e-30) = 1e-15 is far below every eps here, so results do not move


def _sqrt(t: Tensor) -> Tensor:
    return t.add(_TINY).sqrt_()


def _decayed(grad: Tensor, param: Tensor, wd: Tensor) -> Tensor:
    # torch: grad.add(param, alpha=weight_decay) (L2 penalty folded into the gradient)
    if not bool(wd.any()):
        return grad
    return torch.addcmul(grad, col(wd, param), param)


def _step_(param: Tensor, rate: Tensor, direction: Tensor) -> None:
    """param -= rate[k] * direction, row by row, in one pass."""
    param.addcmul_(col(-rate, param), direction)


@register_update("sgd")
def _sgd(params, grads, state, lr, wd, step):
    for p, g in zip(params, grads):
        _step_(p, lr, _decayed(g, p, wd))


@register_update("momentum", ("buf",))
def _momentum(params, grads, state, lr, wd, step, momentum: float = 0.9):
    for p, g, buf in zip(params, grads, state["buf"]):
        g = _decayed(g, p, wd)
        if step == 1:
            buf.copy_(g)             # torch: the first buffer is a clone of the gradient
        else:
            buf.mul_(momentum).add_(g)
        _step_(p, lr, buf)


@register_update("adam", ("exp_avg", "exp_avg_sq"))
def _adam(params, grads, state, lr, wd, step, betas=(0.9, 0.999), eps: float = 1e-8):
    """Adam. Contiguous tensors take PyTorch's fused kernel (one pass over memory instead of
    about nine): on CPU once per candidate over its rows, with its own learning rate and weight
    decay (:func:`_fused_adam_by_row`); on a GPU, where each call is a kernel launch, once for
    all rows (:func:`_fused_adam_by_direction`: launches independent of K). Other layouts take
    plain tensor code."""
    b1, b2 = betas
    fused: list[tuple[Tensor, ...]] = []
    for p, g, m, v in zip(params, grads, state["exp_avg"], state["exp_avg_sq"]):
        if all(t.is_contiguous() for t in (p, g, m, v)):
            fused.append((p, g, m, v))
            continue
        g = _decayed(g, p, wd)
        m.lerp_(g, 1 - b1)
        v.mul_(b2).addcmul_(g, g, value=1 - b2)
        scratch = _sqrt(v).div_((1 - b2 ** step) ** 0.5).add_(eps)   # torch's denom
        _step_(p, lr / (1 - b1 ** step), torch.div(m, scratch, out=scratch))
    if not fused:
        return
    columns = tuple(list(column) for column in zip(*fused))
    hyper = {"beta1": b1, "beta2": b2, "eps": eps, "amsgrad": False, "maximize": False}
    if columns[0][0].device.type == "cpu":
        _fused_adam_by_row(state, columns, lr, wd, step, hyper)
    else:
        _fused_adam_by_direction(state, columns, lr, wd, step, hyper)


def _fused_adam_by_row(state: State, columns: tuple[list[Tensor], ...], lr: Tensor, wd: Tensor,
                       step: int, hyper: dict) -> None:
    """One fused call per candidate k over row k of every tensor (contiguous, since the tensors
    are), moved in place by its own learning rate and weight decay. The row views are made once
    and kept in ``state`` (a gradient buffer reused from step to step keeps its views too)."""
    params, grads, exp_avgs, exp_avg_sqs = columns
    rows = _row_views(state, "rows", params + exp_avgs + exp_avg_sqs)
    grad_rows = _row_views(state, "grad_rows", grads)
    n = len(params)
    steps = [torch.tensor(float(step))] * n
    for k, (rate, decay) in enumerate(zip(lr.tolist(), wd.tolist())):
        row = rows[k]
        torch._fused_adam_(row[:n], grad_rows[k], row[n:2 * n], row[2 * n:], [], steps,
                           lr=rate, weight_decay=decay, **hyper)


def _row_views(state: State, key: str, tensors: list[Tensor]) -> list[list[Tensor]]:
    """``[[t[k] for t in tensors] for k]``, cached in ``state`` under ``key`` for as long as the
    tensors are the same memory (a cached view keeps its storage alive, so an equal address
    means the same tensor)."""
    address = tuple((t.data_ptr(), t.shape) for t in tensors)
    cached = state.get(key)
    if cached is None or cached[0] != address:
        cached = (address, [list(row) for row in zip(*(t.unbind(0) for t in tensors))])
        state[key] = cached
    return cached[1]


def _fused_adam_by_direction(state: State, columns: tuple[list[Tensor], ...], lr: Tensor,
                             wd: Tensor, step: int, hyper: dict) -> None:
    """One fused call for all rows: run with learning rate 1 on zeroed direction tensors it
    leaves ``-m_hat / (sqrt(v_hat) + eps)`` there, which then moves each row by its own
    learning rate (a zeroing, the fused call and one update per parameter tensor: the same
    launches whatever the number of candidates)."""
    params, grads, exp_avgs, exp_avg_sqs = columns
    if bool(wd.any()):
        grads = [_decayed(g, p, wd) for g, p in zip(grads, params)]
    shapes = [p.shape for p in params]
    if state.get("direction_shapes") != shapes:    # made for these very tensors
        state["direction"] = [torch.zeros_like(p) for p in params]
        state["direction_shapes"] = shapes
    directions = state["direction"]
    torch._foreach_zero_(directions)
    steps = [torch.tensor(float(step), device=params[0].device)] * len(params)
    torch._fused_adam_(directions, grads, exp_avgs, exp_avg_sqs, [], steps, lr=1.0,
                       weight_decay=0.0, **hyper)
    for p, d in zip(params, directions):
        _step_(p, -lr, d)


@register_update("adamax", ("exp_avg", "exp_inf"))
def _adamax(params, grads, state, lr, wd, step, betas=(0.9, 0.999), eps: float = 1e-8):
    b1, b2 = betas
    clr = lr / (1 - b1 ** step)
    for p, g, m, u in zip(params, grads, state["exp_avg"], state["exp_inf"]):
        g = _decayed(g, p, wd)
        m.lerp_(g, 1 - b1)
        torch.maximum(u.mul_(b2), g.abs().add_(eps), out=u)
        _step_(p, clr, m / u)


@register_update("rmsprop", ("square_avg",))
def _rmsprop(params, grads, state, lr, wd, step, alpha: float = 0.99, eps: float = 1e-8):
    for p, g, sq in zip(params, grads, state["square_avg"]):
        g = _decayed(g, p, wd)
        sq.mul_(alpha).addcmul_(g, g, value=1 - alpha)
        scratch = _sqrt(sq).add_(eps)
        _step_(p, lr, torch.div(g, scratch, out=scratch))


@register_update("adagrad", ("sum",))
def _adagrad(params, grads, state, lr, wd, step, eps: float = 1e-10):
    for p, g, total in zip(params, grads, state["sum"]):
        g = _decayed(g, p, wd)
        total.addcmul_(g, g, value=1)
        scratch = _sqrt(total).add_(eps)
        _step_(p, lr, torch.div(g, scratch, out=scratch))


@register_update("adadelta", ("square_avg", "acc_delta"))
def _adadelta(params, grads, state, lr, wd, step, rho: float = 0.9, eps: float = 1e-6):
    for p, g, sq, acc in zip(params, grads, state["square_avg"], state["acc_delta"]):
        g = _decayed(g, p, wd)
        sq.mul_(rho).addcmul_(g, g, value=1 - rho)
        std = sq.add(eps).sqrt_()
        delta = acc.add(eps).sqrt_().div_(std).mul_(g)
        acc.mul_(rho).addcmul_(delta, delta, value=1 - rho)
        _step_(p, lr, delta)


@register_update("nadam", ("exp_avg", "exp_avg_sq"))
def _nadam(params, grads, state, lr, wd, step, betas=(0.9, 0.999), eps: float = 1e-8,
           momentum_decay: float = 4e-3):
    b1, b2 = betas
    mu = b1 * (1.0 - 0.5 * 0.96 ** (step * momentum_decay))
    mu_next = b1 * (1.0 - 0.5 * 0.96 ** ((step + 1) * momentum_decay))
    # torch keeps the running product of mu as a float32 scalar tensor; so do we
    product = state.setdefault("mu_product", [torch.ones((), dtype=torch.float32)])
    product[0] = product[0] * mu
    mu_product = float(product[0])
    grad_scale = lr * (1.0 - mu) / (1.0 - mu_product)
    avg_scale = (lr * mu_next) / (1.0 - mu_product * mu_next)
    bc2 = 1 - b2 ** step
    for p, g, m, v in zip(params, grads, state["exp_avg"], state["exp_avg_sq"]):
        g = _decayed(g, p, wd)
        m.lerp_(g, 1 - b1)
        v.mul_(b2).addcmul_(g, g, value=1 - b2)
        denom = v.div(bc2).add_(_TINY).sqrt_().add_(eps)
        _step_(p, grad_scale, g / denom)
        _step_(p, avg_scale, torch.div(m, denom, out=denom))
