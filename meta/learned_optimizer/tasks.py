"""Task families for learned optimizers (Andrychowicz et al. 2016, §3): what an optimizer is
meta-trained and tested on.

A *family* is a frozen dataclass of settings, registered by name in :data:`OPTIMIZEE_FAMILIES`;
``family.sample(seed, device)`` draws one *task* — fixed problems with fixed starting parameters,
a pure function of the seed. Tasks are functional over parameter dicts:

* ``task.init_params()`` — fresh starting tensors (a new dict each call);
* ``task.losses(params, step)`` — the loss of each of the task's ``problems`` independent
  problems at ``step`` (a minibatch drawn from ``(seed, step)`` alone), shape ``(problems,)``.
  The gradient of its *sum* is each problem's own gradient; its *mean* is the meta-objective term;
* ``task.eval_losses(params)`` — the same without minibatch noise (full data), for curves.

Families: ``quadratic`` (batches of random 10-d quadratics ``‖Wθ − y‖²``, the paper's §3.1),
``digits-mlp`` (one hidden layer of 20 sigmoid units, the paper's MNIST network, here on
scikit-learn's bundled 8x8 digits) and ``genome`` (networks sampled from a search space, compiled
with :func:`evograph.compile.build` and trained through ``torch.func.functional_call``).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Protocol

import numpy as np
import torch
from torch.nn import functional as F

from ...compile.builder import build
from ...data.digits import digits
from ...errors import InvalidGenome
from ...genome.space import get_space

Params = dict[str, torch.Tensor]


class Task(Protocol):
    problems: int

    def init_params(self) -> Params: ...

    def losses(self, params: Params, step: int) -> torch.Tensor: ...

    def eval_losses(self, params: Params) -> torch.Tensor: ...


OPTIMIZEE_FAMILIES: dict[str, Callable[..., Any]] = {}


def register_family(name: str):
    def wrap(cls):
        OPTIMIZEE_FAMILIES[name] = cls
        cls.name = name
        return cls
    return wrap


def make_family(name: str, params: dict[str, Any] | None = None):
    """Construct a registered family; ValueError names an unknown family or parameter."""
    if name not in OPTIMIZEE_FAMILIES:
        raise ValueError(f"family: unknown task family {name!r} "
                         f"(known: {', '.join(sorted(OPTIMIZEE_FAMILIES))})")
    known = {f.name for f in dataclasses.fields(OPTIMIZEE_FAMILIES[name])}
    for key in params or {}:
        if key not in known:
            raise ValueError(f"{key}: unknown parameter of family {name!r} "
                             f"(known: {', '.join(sorted(known))})")
    return OPTIMIZEE_FAMILIES[name](**(params or {}))


def derive_seed(*keys: int) -> int:
    """A 32-bit seed that is a function of ``keys`` only (e.g. (task seed, step))."""
    return int(np.random.SeedSequence([int(k) for k in keys]).generate_state(1)[0])


def _generator(*keys: int) -> torch.Generator:
    return torch.Generator().manual_seed(derive_seed(*keys))


# -- quadratics ----------------------------------------------------------------------------------
@dataclass
class QuadraticTask:
    """``batch`` functions ``f_b(θ) = ‖W_b θ − y_b‖²``: W ``(B, d, d)``, y ``(B, d)``."""

    w: torch.Tensor
    y: torch.Tensor
    theta0: torch.Tensor

    @property
    def problems(self) -> int:
        return self.y.shape[0]

    def init_params(self) -> Params:
        return {"theta": self.theta0.clone()}

    def losses(self, params: Params, step: int = 0) -> torch.Tensor:
        residual = torch.einsum("bij,bj->bi", self.w, params["theta"]) - self.y   # (B, d)
        return residual.pow(2).sum(dim=1)                                         # (B,)

    def eval_losses(self, params: Params) -> torch.Tensor:
        return self.losses(params)


@register_family("quadratic")
@dataclass(frozen=True)
class QuadraticFamily:
    """The paper's §3.1: W and y with i.i.d. standard normal entries, θ₀ ~ N(0, init_std²)."""

    batch: int = 128
    dims: int = 10
    init_std: float = 0.01

    def __post_init__(self) -> None:
        if self.batch < 1 or self.dims < 1 or self.init_std < 0:
            raise ValueError("batch/dims: must be positive, init_std >= 0")

    def sample(self, seed: int, device: torch.device | str = "cpu") -> QuadraticTask:
        gen = _generator(seed)
        b, d = self.batch, self.dims
        w = torch.randn(b, d, d, generator=gen)
        y = torch.randn(b, d, generator=gen)
        theta0 = torch.randn(b, d, generator=gen) * self.init_std
        return QuadraticTask(w.to(device), y.to(device), theta0.to(device))


# -- digits ----------------------------------------------------------------------------------
@lru_cache(maxsize=1)
def digits_train() -> tuple[torch.Tensor, torch.Tensor]:
    """The training 80 % of scikit-learn's bundled digits (a fixed stratified split): inputs
    ``(N, 64)`` scaled to [0, 1], labels ``(N,)``. The split is this family's own (not a run's
    :func:`~evograph.data.datasets.load_dataset` split), fixed so optimizees stay comparable."""
    from sklearn.model_selection import train_test_split
    images, labels = digits()
    x_train, _, y_train, _ = train_test_split(images.reshape(len(images), -1), labels,
                                              test_size=0.2, random_state=0, stratify=labels)
    return (torch.tensor(x_train / 16.0, dtype=torch.float32),
            torch.tensor(y_train, dtype=torch.int64))


def _uniform(gen: torch.Generator, shape: tuple[int, ...], fan_in: int) -> torch.Tensor:
    """PyTorch's default Linear init: U(−1/√fan_in, 1/√fan_in)."""
    bound = 1.0 / math.sqrt(fan_in)
    return (torch.rand(shape, generator=gen) * 2 - 1) * bound


ACTIVATIONS = {"sigmoid": torch.sigmoid, "relu": torch.relu, "tanh": torch.tanh,
               "elu": F.elu}


@dataclass
class MLPTask:
    """``networks`` independent MLPs (batched: weights ``(P, in, out)``) on one dataset, each
    with its own initialisation and its own minibatches."""

    x: torch.Tensor             # (N, 64)
    y: torch.Tensor             # (N,)
    start: Params
    activation: str
    batch_size: int
    seed: int

    @property
    def problems(self) -> int:
        return self.start["w1"].shape[0]

    def init_params(self) -> Params:
        return {k: v.clone() for k, v in self.start.items()}

    def _losses(self, params: Params, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        # x: (P, n, 64) -> hidden (P, n, H) -> logits (P, n, classes)
        h = ACTIVATIONS[self.activation](x @ params["w1"] + params["b1"][:, None])
        logits = h @ params["w2"] + params["b2"][:, None]
        ce = F.cross_entropy(logits.flatten(0, 1), y.flatten(), reduction="none")
        return ce.view(y.shape).mean(dim=1)                                  # (P,)

    def losses(self, params: Params, step: int) -> torch.Tensor:
        n, p = len(self.y), self.problems
        idx = torch.randint(n, (p, self.batch_size), generator=_generator(self.seed, step))
        idx = idx.to(self.x.device)
        return self._losses(params, self.x[idx], self.y[idx])

    def eval_losses(self, params: Params) -> torch.Tensor:
        p = self.problems
        return self._losses(params, self.x.expand(p, -1, -1), self.y.expand(p, -1))


@register_family("digits-mlp")
@dataclass(frozen=True)
class DigitsMLPFamily:
    """The paper's MNIST network (one hidden layer of 20 sigmoid units, minibatches of 128) on
    the 8x8 digits; ``networks`` independent networks per task."""

    hidden: int = 20
    activation: str = "sigmoid"
    batch_size: int = 128
    networks: int = 1

    def __post_init__(self) -> None:
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"activation: must be one of {', '.join(ACTIVATIONS)}")
        if min(self.hidden, self.batch_size, self.networks) < 1:
            raise ValueError("hidden/batch_size/networks: must be positive")

    def sample(self, seed: int, device: torch.device | str = "cpu") -> MLPTask:
        x, y = digits_train()
        gen, p, h = _generator(seed), self.networks, self.hidden
        start = {"w1": _uniform(gen, (p, x.shape[1], h), x.shape[1]),
                 "b1": _uniform(gen, (p, h), x.shape[1]),
                 "w2": _uniform(gen, (p, h, 10), h), "b2": _uniform(gen, (p, 10), h)}
        return MLPTask(x.to(device), y.to(device), {k: v.to(device) for k, v in start.items()},
                       self.activation, self.batch_size, seed)


# -- genomes -------------------------------------------------------------------------------------
@dataclass
class GenomeTask:
    """One compiled genome, trained functionally: ``functional_call(module, params, x)``."""

    module: torch.nn.Module
    x: torch.Tensor             # (N, 1, 8, 8)
    y: torch.Tensor
    batch_size: int
    seed: int
    problems: int = 1
    start: Params = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.start = {k: v.detach().clone() for k, v in self.module.named_parameters()}

    def init_params(self) -> Params:
        return {k: v.clone() for k, v in self.start.items()}

    def _loss(self, params: Params, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        logits = torch.func.functional_call(self.module, params, (x,))
        return F.cross_entropy(logits, y).reshape(1)

    def losses(self, params: Params, step: int) -> torch.Tensor:
        idx = torch.randint(len(self.y), (self.batch_size,), generator=_generator(self.seed, step))
        idx = idx.to(self.x.device)
        return self._loss(params, self.x[idx], self.y[idx])

    def eval_losses(self, params: Params) -> torch.Tensor:
        return self._loss(params, self.x, self.y)


@register_family("genome")
@dataclass(frozen=True)
class GenomeFamily:
    """Networks sampled from a search space (default: the ``mlp`` space kept small, since every
    coordinate carries LSTM state through the unroll) on the 8x8 digits."""

    space: str = "mlp"
    overrides: dict = field(default_factory=lambda: {
        "unit_choices": [16, 32, 64], "max_layers": 2, "max_params": 10_000})
    batch_size: int = 128

    def __post_init__(self) -> None:
        self.search_space()   # unknown space or override: fail at construction
        if self.batch_size < 1:
            raise ValueError("batch_size: must be positive")

    def search_space(self):
        overrides = {k: tuple(v) if isinstance(v, list) else v for k, v in self.overrides.items()}
        try:
            return get_space(self.space, **overrides)
        except TypeError as exc:
            raise ValueError(f"overrides: {exc}") from None
        except InvalidGenome as exc:   # an unknown space name
            raise ValueError(f"space: {exc}") from None

    def sample(self, seed: int, device: torch.device | str = "cpu") -> GenomeTask:
        x, y = digits_train()
        genome = self.search_space().sample(np.random.default_rng(seed), (1, 8, 8), 10)
        module = build(genome, seed=derive_seed(seed, 1), device=device).train()
        return GenomeTask(module, x.view(-1, 1, 8, 8).to(device), y.to(device), self.batch_size,
                          seed)
