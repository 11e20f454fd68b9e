"""The coordinatewise LSTM optimizer of Andrychowicz et al. 2016, *Learning to learn by gradient
descent by gradient descent* (NeurIPS 2016).

An optimizer ``m`` with parameters φ proposes the update of an optimizee's parameters θ from their
gradient: ``θ_{t+1} = θ_t + g_t`` with ``[g_t, h_{t+1}] = m(∇f(θ_t), h_t, φ)``. ``m`` is a small
two-layer LSTM (20 units per layer) applied to every coordinate of θ *separately* with *shared*
weights, so it has the same few thousand parameters whatever the optimizee's size, and it is
invariant to the order of the coordinates. Its input is the paper's gradient preprocessing
(Appendix A: log-magnitude and sign, p = 10), its output a linear read-out scaled by 0.1.

This module holds the network, its save/load (safetensors, the config as JSON metadata, no pickle)
and :class:`LearnedOptimizer`, the network behind the ``torch.optim.Optimizer`` interface, which
registers as ``learned`` in :data:`evograph.compile.training.sgd.OPTIMIZER_FACTORIES` so the optimizer gene can
take it. Meta-training lives in :mod:`.train`, the task families in :mod:`.tasks` and
the ``learned-optimizer`` fitness generator in :mod:`.fitness`.
"""

from __future__ import annotations

import copy
import json
import math
import os
from collections.abc import Iterable
from dataclasses import asdict, dataclass, fields
from functools import lru_cache
from itertools import pairwise
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save
from torch import nn

from ...compile.determinism import seeded_cpu_rng
from ...compile.training.sgd import OPTIMIZER_FACTORIES
from ...errors import EvographError
from ...files import atomic_write_bytes

FORMAT = "evograph-learned-optimizer"
VERSION = "1"
PATH_ENV = "EVOGRAPH_LEARNED_OPTIMIZER"   # the ``learned`` gene's file under fitness ``sgd``


class OptimizerFileError(EvographError):
    """A learned-optimizer file is missing, not safetensors, or not a learned optimizer."""


@dataclass(frozen=True)
class LSTMConfig:
    """The shape of the optimizer network. Defaults are the paper's."""

    hidden: int = 20             # units per LSTM layer
    layers: int = 2
    preprocess: float = 10.0     # p of the log/sign preprocessing; 0 feeds the raw gradient
    output_scale: float = 0.1

    def __post_init__(self) -> None:
        if self.hidden < 1 or self.layers < 1:
            raise ValueError("hidden/layers: must be positive")
        if self.preprocess < 0 or self.output_scale <= 0:
            raise ValueError("preprocess must be >= 0 and output_scale > 0")

    @staticmethod
    def from_dict(data: dict[str, Any]) -> LSTMConfig:
        known = {f.name for f in fields(LSTMConfig)}
        return LSTMConfig(**{k: v for k, v in data.items() if k in known})


def preprocess_gradients(grad: torch.Tensor, p: float = 10.0) -> torch.Tensor:
    """The paper's preprocessing (Appendix A): each coordinate's gradient ``g`` becomes
    ``(log|g| / p, sign g)`` if ``|g| >= e^-p`` else ``(-1, e^p g)``. The log scale lets one
    network see gradients of any magnitude; the second branch keeps tiny gradients distinct.
    ``grad`` of any shape -> ``(numel, 2)``; ``p = 0`` returns the raw gradient twice."""
    g = grad.reshape(-1, 1)
    if p <= 0:
        return torch.cat([g, g], dim=1)
    big = g.abs() >= math.exp(-p)
    log_part = torch.where(big, torch.log(g.abs().clamp_min(1e-38)) / p, -torch.ones_like(g))
    sign_part = torch.where(big, torch.sign(g), math.exp(p) * g)
    return torch.cat([log_part, sign_part], dim=1)


class LSTMOptimizer(nn.Module):
    """``m(∇, h; φ)``: a stack of LSTM cells shared across coordinates (every coordinate is one
    row of the batch) and a linear read-out. ``forward(grad, state) -> (update, state)`` with
    ``grad`` and ``update`` of shape ``(N,)`` and ``state`` of shape ``(layers, 2, N, hidden)``
    (hidden and cell state of every layer for every coordinate)."""

    def __init__(self, config: LSTMConfig = LSTMConfig(), seed: int | None = 0):
        super().__init__()
        self.config = config
        with seeded_cpu_rng(seed):   # seeded init, global RNGs untouched
            sizes = [2] + [config.hidden] * config.layers
            self.cells = nn.ModuleList(nn.LSTMCell(a, b) for a, b in pairwise(sizes))
            self.head = nn.Linear(config.hidden, 1)

    def initial_state(self, n: int, device: torch.device | str | None = None) -> torch.Tensor:
        """Zero hidden and cell states for ``n`` coordinates: ``(layers, 2, n, hidden)``."""
        c = self.config
        return torch.zeros(c.layers, 2, n, c.hidden, device=device,
                           dtype=self.head.weight.dtype)

    def forward(self, grad: torch.Tensor, state: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
        x = preprocess_gradients(grad.to(self.head.weight.dtype), self.config.preprocess)
        new_state = []
        for layer, cell in enumerate(self.cells):
            h, c = cell(x, (state[layer, 0], state[layer, 1]))   # (N, hidden) each
            new_state.append(torch.stack([h, c]))
            x = h
        update = self.head(x).squeeze(1) * self.config.output_scale   # (N,)
        return update, torch.stack(new_state)


def parameter_count(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


# -- save / load (safetensors; the config and any training info as JSON metadata) ---------------
def save_optimizer(net: LSTMOptimizer, path: str | Path, info: dict[str, Any] | None = None
                   ) -> Path:
    """Write ``net`` atomically to ``path``: its tensors, plus its config and ``info`` (JSON)
    in the safetensors header."""
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in net.state_dict().items()}
    meta = {"format": FORMAT, "version": VERSION, "config": json.dumps(asdict(net.config)),
            "info": json.dumps(info or {})}
    return write_file(path, save(tensors, metadata=meta))


def write_file(path: str | Path, payload: bytes) -> Path:
    """:func:`~evograph.files.atomic_write_bytes` into ``path``, creating its folder first."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, payload)
    return path


def read_safetensors(path: str | Path, what: str = "learned optimizer"
                     ) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """(tensors, metadata) of a safetensors file; one clear error if it is not one."""
    path = Path(path)
    if not path.is_file():
        raise OptimizerFileError(f"{path}: {what} file not found")
    try:
        with safe_open(str(path), framework="pt") as handle:
            meta = handle.metadata() or {}
            tensors = {k: handle.get_tensor(k) for k in handle.keys()}  # noqa: SIM118
            return tensors, meta
    except (SafetensorError, OSError, ValueError) as exc:
        raise OptimizerFileError(f"{path}: not a safetensors file ({exc})") from None


def load_optimizer(path: str | Path) -> tuple[LSTMOptimizer, dict[str, Any]]:
    """Read a file written by :func:`save_optimizer`: ``(network, info)``. Never unpickles."""
    tensors, meta = read_safetensors(path)
    if meta.get("format") != FORMAT:
        raise OptimizerFileError(f"{path}: not a learned-optimizer file (format "
                                 f"{meta.get('format')!r}, expected {FORMAT!r})")
    try:
        net = LSTMOptimizer(LSTMConfig.from_dict(json.loads(meta["config"])), seed=None)
        net.load_state_dict(tensors)
        info = json.loads(meta.get("info", "{}"))
    except (KeyError, ValueError, TypeError, RuntimeError) as exc:
        raise OptimizerFileError(f"{path}: corrupt learned-optimizer file ({exc})") from None
    return net.requires_grad_(False).eval(), info


@lru_cache(maxsize=8)
def _cached(path: str, mtime_ns: int) -> LSTMOptimizer:
    return load_optimizer(path)[0]


def cached_optimizer(path: str | Path) -> LSTMOptimizer:
    """:func:`load_optimizer`, read once per process and file version (workers score many
    genomes with the same file)."""
    path = Path(path)
    if not path.is_file():
        raise OptimizerFileError(f"{path}: learned optimizer file not found (make one with "
                                 f"`evograph meta train-optimizer runs/configs/"
                                 f"learned-optimizer.toml -o {path}`)")
    return _cached(str(path.resolve()), path.stat().st_mtime_ns)


# -- the network as a torch.optim.Optimizer ------------------------------------------------------
class LearnedOptimizer(torch.optim.Optimizer):
    """Apply a trained :class:`LSTMOptimizer` to ordinary ``nn.Module`` parameters:
    ``p <- p + m(p.grad + weight_decay * p)``, keeping each coordinate's LSTM state in
    ``self.state[p]["lstm"]``. There is no learning rate: the step size is what was learned."""

    def __init__(self, params: Iterable, net: LSTMOptimizer, weight_decay: float = 0.0):
        super().__init__(params, {"weight_decay": float(weight_decay)})
        self.net = net          # used under no_grad: its requires_grad flags are left alone
        self._nets: dict[torch.device, LSTMOptimizer] = {}

    def _net_on(self, device: torch.device) -> LSTMOptimizer:
        if device not in self._nets:   # one copy per device the parameters live on
            home = self.net.head.weight.device
            self._nets[device] = self.net if device == home else \
                copy.deepcopy(self.net).to(device)
        return self._nets[device]

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                grad = p.grad.add(p, alpha=group["weight_decay"]) if group["weight_decay"] \
                    else p.grad
                net, state = self._net_on(p.device), self.state[p]
                if "lstm" not in state:
                    state["lstm"] = net.initial_state(p.numel(), p.device)
                update, state["lstm"] = net(grad.reshape(-1), state["lstm"])
                p.add_(update.view_as(p).to(p.dtype))
        return loss


def learned_optimizer(params: Iterable, path: str | Path, weight_decay: float = 0.0
                      ) -> LearnedOptimizer:
    """The ``learned`` optimizer gene with the network saved at ``path`` (read once per process
    and file version): what the ``learned-optimizer`` fitness generator trains with."""
    return LearnedOptimizer(params, cached_optimizer(path), weight_decay=weight_decay)


def _learned_factory(params: Iterable, lr: float, wd: float) -> LearnedOptimizer:
    """The gene ``learned`` under a fitness generator that names no file (plain ``sgd``): the
    file comes from ``$EVOGRAPH_LEARNED_OPTIMIZER``, read at each use."""
    path = os.environ.get(PATH_ENV)
    if not path:
        raise OptimizerFileError(
            f"optimizer gene 'learned' needs a trained optimizer: use fitness "
            f"'learned-optimizer' with path = ..., or set ${PATH_ENV}")
    return learned_optimizer(params, path, wd)


OPTIMIZER_FACTORIES["learned"] = _learned_factory
