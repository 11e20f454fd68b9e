"""Meta-training a learned optimizer (Andrychowicz et al. 2016, §2 and §3).

The meta-objective is the sum of optimizee losses along a trajectory,
``L(φ) = E_f [Σ_{t=1..T} f(θ_t)]`` with ``θ_{t+1} = θ_t + m(∇f(θ_t); φ)``, minimised with Adam by
truncated backpropagation through time: a trajectory of ``steps`` (T = 100) optimizee steps is cut
into unrolls of ``unroll`` (20) steps, and φ is updated after each unroll from the gradient of that
unroll's losses; parameters and LSTM state carry over detached. Following the paper (the dashed
edges of its Figure 2), the optimizee gradients ∇f(θ_t) fed to the LSTM are constants: they are
taken with ``create_graph=False`` so no second derivatives of f are ever formed.

Every trajectory's task is drawn from ``(seed, iteration)`` alone, so a run resumed from a
checkpoint (weights, Adam state, iteration, history; safetensors + JSON) continues exactly.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from .lstm import LSTMOptimizer, OptimizerFileError, read_safetensors, write_file
from .tasks import Params, Task, derive_seed

CHECKPOINT_FORMAT = "evograph-learned-optimizer-checkpoint"


@dataclass(frozen=True)
class MetaConfig:
    """Meta-training settings; defaults are the paper's (T = 100, unrolls of 20)."""

    steps: int = 100              # optimizee steps per trajectory (the training horizon)
    unroll: int = 20              # truncated-BPTT length
    meta_lr: float = 0.01         # Adam's learning rate on φ
    meta_iterations: int = 300    # trajectories (one task each)
    meta_clip: float = 1.0        # clip the meta-gradient norm (0: off)
    anneal: bool = True           # cosine-anneal meta_lr to 0 over the meta-iterations
    seed: int = 0

    def __post_init__(self) -> None:
        if self.steps < 1 or self.unroll < 1 or self.meta_iterations < 1:
            raise ValueError("steps/unroll/meta_iterations: must be positive")
        if self.meta_lr <= 0 or self.meta_clip < 0:
            raise ValueError("meta_lr: must be > 0 (and meta_clip >= 0)")

    def lr_at(self, iteration: int) -> float:
        """Adam's learning rate for trajectory ``iteration`` (a pure function: resume-safe)."""
        if not self.anneal:
            return self.meta_lr
        return 0.5 * self.meta_lr * (1 + math.cos(math.pi * iteration / self.meta_iterations))


def flat(tensors: list[torch.Tensor]) -> torch.Tensor:
    """Concatenate tensors into one ``(N,)`` vector: the coordinates the LSTM sees as a batch."""
    return torch.cat([t.reshape(-1) for t in tensors])


def apply_update(params: Params, update: torch.Tensor) -> Params:
    """θ + g for a flat update ``(N,)``, split back into the parameter dict's shapes."""
    out, offset = {}, 0
    for name, value in params.items():
        out[name] = value + update[offset:offset + value.numel()].view_as(value)
        offset += value.numel()
    return out


def optimizee_gradients(losses: torch.Tensor, params: Params) -> torch.Tensor:
    """∇ of every problem's loss as a constant ``(N,)`` vector. ``create_graph=False``: the
    result has no history (the paper's dashed edges); ``retain_graph`` keeps the loss graph for
    the meta-gradient."""
    grads = torch.autograd.grad(losses.sum(), list(params.values()), retain_graph=True,
                                create_graph=False)
    return flat(list(grads)).detach()


def unroll(net: LSTMOptimizer, task: Task, params: Params, state: torch.Tensor, start: int,
           length: int) -> tuple[torch.Tensor, Params, torch.Tensor]:
    """``length`` optimizer steps from step ``start``: returns (Σ mean losses of the new
    iterates, params, state), differentiable in φ. ``params`` must require grad."""
    losses = task.losses(params, start)
    meta_loss = losses.new_zeros(())
    for step in range(start, start + length):
        update, state = net(optimizee_gradients(losses, params), state)
        params = apply_update(params, update)
        losses = task.losses(params, step + 1)      # f(θ_{t+1}) on the next minibatch
        meta_loss = meta_loss + losses.mean()
    return meta_loss, params, state


def detached(params: Params) -> Params:
    return {k: v.detach().requires_grad_(True) for k, v in params.items()}


def train_trajectory(net: LSTMOptimizer, meta_opt: torch.optim.Optimizer, task: Task,
                     config: MetaConfig) -> float:
    """One trajectory of ``config.steps`` steps with a meta-update after every unroll. Returns
    the trajectory's mean optimizee loss (inf if it diverged; the bad unroll is not applied)."""
    params = detached(task.init_params())
    device = next(iter(params.values())).device
    state = net.initial_state(sum(v.numel() for v in params.values()), device)
    total = 0.0
    for start in range(0, config.steps, config.unroll):
        length = min(config.unroll, config.steps - start)
        meta_loss, params, state = unroll(net, task, params, state, start, length)
        if not math.isfinite(float(meta_loss.detach())):
            return math.inf
        meta_opt.zero_grad(set_to_none=True)
        meta_loss.backward()
        if config.meta_clip > 0:
            torch.nn.utils.clip_grad_norm_(net.parameters(), config.meta_clip)
        meta_opt.step()
        total += float(meta_loss.detach())
        params, state = detached(params), state.detach()
    return total / config.steps


def make_meta_optimizer(net: LSTMOptimizer, config: MetaConfig) -> torch.optim.Adam:
    return torch.optim.Adam(net.parameters(), lr=config.meta_lr)


def meta_train(net: LSTMOptimizer, family: Any, config: MetaConfig, *,
               meta_opt: torch.optim.Optimizer | None = None, start: int = 0,
               history: list[float] | None = None, device: torch.device | str = "cpu",
               callback: Callable[[int, list[float]], None] | None = None) -> list[float]:
    """Meta-train ``net`` in place on tasks of ``family`` for iterations ``start`` ..
    ``meta_iterations - 1``; returns the history of trajectory losses. ``callback(i, history)``
    runs after each iteration (progress display, checkpoints)."""
    meta_opt = meta_opt or make_meta_optimizer(net, config)
    history = list(history or [])
    net.train().requires_grad_(True)
    for iteration in range(start, config.meta_iterations):
        for group in meta_opt.param_groups:
            group["lr"] = config.lr_at(iteration)
        task = family.sample(derive_seed(config.seed, iteration), device)
        history.append(train_trajectory(net, meta_opt, task, config))
        if callback is not None:
            callback(iteration, history)
    return history


# -- evaluation: optimizer trajectories without meta-gradients -----------------------------------
def rollout(task: Task, make_optimizer: Callable[[list[torch.Tensor]], torch.optim.Optimizer],
            steps: int) -> torch.Tensor:
    """Optimise a fresh copy of ``task``'s parameters for ``steps`` steps with any
    ``torch.optim`` optimizer (a learned one included); returns ``eval_losses`` before each step
    and after the last: ``(steps + 1, problems)``. Diverged runs keep their non-finite values."""
    params = {k: v.detach().clone().requires_grad_(True) for k, v in task.init_params().items()}
    optimizer = make_optimizer(list(params.values()))
    curve = []
    for step in range(steps):
        with torch.no_grad():
            curve.append(task.eval_losses(params))
        optimizer.zero_grad(set_to_none=True)
        task.losses(params, step).sum().backward()   # sum: each problem gets its own gradient
        optimizer.step()
    with torch.no_grad():
        curve.append(task.eval_losses(params))
    return torch.stack(curve).detach().cpu()


# -- checkpoints (safetensors tensors + JSON metadata; no pickle) --------------------------------
def save_checkpoint(path: str | Path, net: LSTMOptimizer, meta_opt: torch.optim.Optimizer,
                    iteration: int, history: list[float], extra: dict[str, Any]) -> Path:
    """Everything a resume needs after ``iteration`` iterations: φ, Adam's moments and step
    counts, the loss history and ``extra`` (the resolved config, for a resume check)."""
    from safetensors.torch import save
    tensors = {f"net.{k}": v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
    opt_state = meta_opt.state_dict()
    for index, slots in opt_state["state"].items():
        for key, value in slots.items():
            tensors[f"adam.{index}.{key}"] = torch.as_tensor(value).detach().cpu().contiguous()
    meta = {"format": CHECKPOINT_FORMAT, "iteration": str(iteration),
            "history": json.dumps(history), "param_groups": json.dumps(opt_state["param_groups"]),
            "net_config": json.dumps(asdict(net.config)), "extra": json.dumps(extra)}
    return write_file(path, save(tensors, metadata=meta))


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint: ``{"net_state", "adam_state", "iteration", "history", "net_config",
    "extra"}``; ``adam_state`` is ready for ``Adam.load_state_dict``."""
    tensors, meta = read_safetensors(path, "checkpoint")
    if meta.get("format") != CHECKPOINT_FORMAT:
        raise OptimizerFileError(f"{path}: not a learned-optimizer checkpoint")
    try:
        state: dict[int, dict[str, torch.Tensor]] = {}
        for key, value in tensors.items():
            if key.startswith("adam."):
                _, index, slot = key.split(".", 2)
                state.setdefault(int(index), {})[slot] = value
        return {"net_state": {k[4:]: v for k, v in tensors.items() if k.startswith("net.")},
                "adam_state": {"state": state, "param_groups": json.loads(meta["param_groups"])},
                "iteration": int(meta["iteration"]), "history": json.loads(meta["history"]),
                "net_config": json.loads(meta["net_config"]), "extra": json.loads(meta["extra"])}
    except (KeyError, ValueError) as exc:
        raise OptimizerFileError(f"{path}: corrupt checkpoint ({exc})") from None
