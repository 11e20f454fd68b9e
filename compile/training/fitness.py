"""Fitness generators: how a compiled genome is scored.

SGD training is the default (``sgd``); the meta-learners add others (a learned optimizer, MAML
adaptation, hypernetwork-generated weights). A generator is constructed from the ``[fitness]``
section's parameters (bad ones raise ``ValueError`` naming the key) and scores one module on one
dataset. Everything it returns is plain data, because it crosses process boundaries.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol

import torch
from torch import nn

from ...genome.core import Genome


class Splits(Protocol):
    """What a fitness generator needs of a dataset (``evograph.data.datasets.Dataset`` fits)."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    num_classes: int


@dataclass
class Score:
    """``status`` is completed or infeasible; ``fitness`` is what selection maximises (finite
    when completed); ``metrics`` holds everything else (accuracies, loss curve, timings)."""

    status: str
    fitness: float | None
    metrics: dict[str, Any] = field(default_factory=dict)

    @staticmethod
    def infeasible(reason: str, **metrics: Any) -> "Score":
        return Score("infeasible", None, {"reason": reason, **metrics})

    def checked(self) -> "Score":
        """Non-finite fitness never leaves a generator as 'completed'."""
        if self.status == "completed" and (self.fitness is None or not math.isfinite(self.fitness)):
            return Score.infeasible(f"non-finite fitness {self.fitness}", **self.metrics)
        return self


class FitnessGenerator(Protocol):
    name: str

    def score(self, module: nn.Module, genome: Genome, data: Splits, *, seed: int,
              device: torch.device) -> Score: ...


FITNESS: dict[str, Callable[..., FitnessGenerator]] = {}


def register_fitness(name: str):
    def wrap(cls):
        FITNESS[name] = cls
        cls.name = name
        return cls
    return wrap


def make_fitness(name: str, params: dict[str, Any]) -> FitnessGenerator:
    """Construct a registered generator; ValueError names an unknown generator or param."""
    if name not in FITNESS:
        raise ValueError(f"name: unknown fitness generator {name!r} "
                         f"(known: {', '.join(sorted(FITNESS))})")
    try:
        return FITNESS[name](**params)
    except TypeError as exc:
        raise ValueError(f"{_unknown_param(exc)}") from None


def _unknown_param(exc: TypeError) -> str:
    text = str(exc)
    if "unexpected keyword argument" in text:
        return text.split("unexpected keyword argument")[-1].strip(" '") + ": unknown parameter"
    return text
