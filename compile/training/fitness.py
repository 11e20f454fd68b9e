"""Fitness generators: how a compiled genome is scored.

SGD training is the default (``sgd``); the meta-learners add others (a learned optimizer, MAML
adaptation, hypernetwork-generated weights). A generator is constructed from the ``[fitness]``
section's parameters (bad ones raise ``ValueError`` naming the key) and scores one module on one
dataset. Everything it returns is plain data, because it crosses process boundaries.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from dataclasses import dataclass, field, is_dataclass
from typing import Any, Protocol, get_type_hints

import torch
from torch import nn

from ...genome.core import Genome
from ...genome.settings import conform


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
    def infeasible(reason: str, **metrics: Any) -> Score:
        return Score("infeasible", None, {"reason": reason, **metrics})

    def checked(self) -> Score:
        """Non-finite fitness never leaves a generator as 'completed'."""
        if self.status == "completed" and (self.fitness is None or not math.isfinite(self.fitness)):
            return Score.infeasible(f"non-finite fitness {self.fitness}", **self.metrics)
        return self


class FitnessGenerator(Protocol):
    """The required part: a ``name`` (set by :func:`register_fitness`) and ``score``.

    Optional declarations, read through the functions below (a generator that declares
    nothing gets their defaults, so a plug-in written against the two lines above still runs):

    * ``needs_module: ClassVar[bool] = True`` — whether the worker must build the genome's
      module, inherit its parent's weights into it and save it after scoring. False (a table
      lookup) skips all three: no module, no weights file.
    * ``batched: ClassVar[bool] = False`` — whether tasks sharing an architecture may be
      trained together by ``score_batched`` (:mod:`evograph.compile.training.batched`); such a
      generator also has ``schedule(genome, data) -> (batch size, steps)`` and reports
      ``train_time`` and ``loss_curve``, whose per-step times feed the batching rule. Read from
      the class's *own* namespace, never inherited: a subclass scores differently (another
      optimizer, generated kernels), so it must declare batching itself.
    * ``takes_run_space: ClassVar[bool] = False`` — whether its ``space`` and
      ``space_overrides`` parameters are completed from the run's [space]
      (:func:`evograph.runs.setup.with_run_space`): a generator sized for the search space.
    * ``bind_run(run_dir)`` — called by the worker with the run directory before scoring, for
      a generator that keeps files there (ENAS's shared weights).
    * ``example(folder) -> dict`` (a classmethod) — the smallest working setup, for the
      fitness-generator contract test: ``{"space": name, "space_overrides": {...},
      "params": {...}}`` (files it needs made under ``folder``); default: the ``mlp`` space
      and default parameters.
    """

    name: str

    def score(self, module: nn.Module, genome: Genome, data: Splits, *, seed: int,
              device: torch.device) -> Score: ...


def _class(generator: Any) -> type:
    return generator if isinstance(generator, type) else type(generator)


def needs_module(generator: Any) -> bool:
    """Whether the worker builds, inherits and saves a module for ``generator`` (a class or an
    instance); default True."""
    return bool(getattr(generator, "needs_module", True))


def trains_reported_weights(generator: Any) -> bool:
    """Whether the weights ``generator`` (a class or an instance) leaves are the ones its figures
    were measured on, trained for that genome alone: ``weights_trained: ClassVar[bool]``, default
    True. False (a table lookup, SMASH, a static hypernetwork, ENAS's shared weights): export
    refuses them or retrains first (:mod:`evograph.runs.export`)."""
    return bool(getattr(generator, "weights_trained", True))


def trains_batched(generator: Any) -> bool:
    """Whether ``generator`` (a class or an instance) declares ``batched`` itself; default
    False (see :class:`FitnessGenerator`)."""
    return bool(vars(_class(generator)).get("batched", False))


def takes_run_space(generator: Any) -> bool:
    """Whether the run's [space] completes ``generator``'s parameters; default False."""
    return bool(getattr(generator, "takes_run_space", False))


def bind_run(generator: Any, run_dir: str) -> None:
    """Tell ``generator`` its run directory, if it has a ``bind_run`` hook and there is one."""
    hook = getattr(generator, "bind_run", None)
    if run_dir and callable(hook):
        hook(run_dir)


DEFAULT_EXAMPLE: dict[str, Any] = {"space": "mlp", "space_overrides": {}, "params": {}}


def example(generator: Any, folder: Any) -> dict[str, Any]:
    """The generator's smallest working setup (see :class:`FitnessGenerator`)."""
    declared = getattr(_class(generator), "example", None)
    return {**DEFAULT_EXAMPLE, **(declared(folder) if callable(declared) else {})}


FITNESS: dict[str, Callable[..., FitnessGenerator]] = {}


def register_fitness(name: str):
    def wrap(cls):
        FITNESS[name] = cls
        cls.name = name
        return cls
    return wrap


def make_fitness(name: str, params: dict[str, Any]) -> FitnessGenerator:
    """Construct a registered generator; ValueError names an unknown generator, an unknown
    parameter (listing the known ones) or a value of the wrong type, before the generator's
    own checks see the values (those check ranges)."""
    if name not in FITNESS:
        raise ValueError(f"name: unknown fitness generator {name!r} "
                         f"(known: {', '.join(sorted(FITNESS))})")
    check_params(name, FITNESS[name], params)
    try:
        return FITNESS[name](**params)
    except TypeError as exc:
        raise ValueError(f"{_unknown_param(exc)}") from None


def generator_params(generator: Callable[..., Any]) -> frozenset[str] | None:
    """The parameter names ``generator``'s constructor takes; None when it takes any keyword
    (``**kwargs``). Config keys a generator does not take are dropped by name against this."""
    parameters = inspect.signature(generator).parameters.values()
    if any(p.kind is p.VAR_KEYWORD for p in parameters):
        return None
    return frozenset(p.name for p in parameters)


def check_params(name: str, generator: Callable[..., Any], params: dict[str, Any]) -> None:
    """Each of ``params`` is a parameter of ``generator``'s constructor, of the type its
    annotation (or else its default) gives; else one ValueError naming the key."""
    signature = inspect.signature(generator)
    named = {p.name: p for p in signature.parameters.values()
             if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    takes_any = any(p.kind is p.VAR_KEYWORD for p in signature.parameters.values())
    hints = _hints(generator)
    for key, value in params.items():
        if key not in named:
            if takes_any:
                continue
            raise ValueError(f"{key}: unknown parameter (known for {name}: {', '.join(named)})")
        default = named[key].default
        fallback = Any if default is inspect.Parameter.empty or default is None else type(default)
        conform(key, value, hints.get(key, fallback))


def _hints(generator: Callable[..., Any]) -> dict[str, Any]:
    """The constructor's resolved annotations (a dataclass's fields'); none if unresolvable."""
    target = generator if is_dataclass(generator) else getattr(generator, "__init__", generator)
    try:
        return get_type_hints(target)
    except (NameError, TypeError):
        return {}


def _unknown_param(exc: TypeError) -> str:
    text = str(exc)
    if "unexpected keyword argument" in text:
        return text.split("unexpected keyword argument")[-1].strip(" '") + ": unknown parameter"
    return text
