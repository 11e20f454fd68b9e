"""Resolving a config into the live parts of a run: space, dataset, strategy, fitness.

Everything a user can get wrong is checked here, before a run directory is created, and reported
as one :class:`ConfigError` line naming the key and the config file.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from typing import Any

import numpy as np

from .. import meta as _meta  # noqa: F401  (registers meta-learner strategies and fitness)
from ..compile.training.fitness import FITNESS, make_fitness, takes_run_space
from ..data.datasets import Dataset, load_dataset
from ..errors import ConfigError, EvographError, InvalidGenome
from ..genome.space import SearchSpace, get_space
from ..selection import make_strategy
from ..selection.base import Variation
from .config import RunConfig
from .execute.executors import check_options

OBJECTIVE_KEYS = ("params", "flops", "train_time")


@dataclass
class RunParts:
    config: RunConfig
    space: SearchSpace
    data: Dataset
    variation: Variation
    proposer: Any
    objectives: tuple[str, ...]     # metrics minimised as extra objectives (nsga2)


def resolve_space(config: RunConfig, source: str) -> SearchSpace:
    try:
        return get_space(config.space.name, **_tuples(config.space.overrides))
    except InvalidGenome as exc:
        raise ConfigError(f"{source}: space.name: {exc}") from None
    except TypeError as exc:
        raise ConfigError(f"{source}: space: {_param_error(exc)}") from None


def _param_error(exc: TypeError) -> str:
    text = str(exc)
    if "unexpected keyword argument" in text:
        name = text.split("unexpected keyword argument")[-1].strip(" '")
        return f"{name}: unknown key"
    return text


def load_run_dataset(config: RunConfig) -> Dataset:
    d = config.dataset
    return load_dataset(d.name, seed=config.seed, root=d.root or None, download=d.download,
                        val_fraction=d.val_fraction, test_fraction=d.test_fraction,
                        limit=d.limit or None)


def split_objectives(config: RunConfig, source: str) -> tuple[dict[str, Any], tuple[str, ...]]:
    params = dict(config.strategy.params)
    objectives = params.pop("objectives", ["params"] if config.strategy.name == "nsga2" else [])
    if not isinstance(objectives, list) or any(o not in OBJECTIVE_KEYS for o in objectives):
        raise ConfigError(f"{source}: strategy.objectives: must be a list of "
                          f"{', '.join(OBJECTIVE_KEYS)} (got {objectives!r})")
    return params, tuple(objectives)


def with_run_space(config: RunConfig, source: str = "config") -> RunConfig:
    """The config with [fitness] completed by the run's [space] where its generator is sized
    for the search space (it declares ``takes_run_space``: SMASH's hypernetwork), so
    the space is written once: a key [fitness] leaves out is taken from [space]. Keys that
    describe another space are refused — a hypernetwork sized and trained for other genomes
    would rank these ones wrongly; other spellings of the same space are kept."""
    if not takes_run_space(FITNESS.get(config.fitness.name)):
        return config
    params = dict(config.fitness.params)
    params.setdefault("space", config.space.name)
    params.setdefault("space_overrides", dict(config.space.overrides))
    completed = dataclasses.replace(config, fitness=dataclasses.replace(config.fitness,
                                                                         params=params))
    if not isinstance(params["space"], str) or not isinstance(params["space_overrides"], dict):
        return completed  # the generator's own checks name the bad key
    try:
        theirs = get_space(params["space"], **_tuples(params["space_overrides"])).to_dict()
    except (InvalidGenome, TypeError, ValueError):
        return completed  # the generator's own checks name the bad key
    ours = resolve_space(config, source).to_dict()
    differ = [k for k in ours if ours[k] != theirs.get(k)]
    if differ:
        key = "space" if params["space"] != config.space.name else "space_overrides"
        raise ConfigError(f"{source}: fitness.{key}: describes another search space than "
                          f"[space] ({differ[0]}: {theirs.get(differ[0])!r} here, "
                          f"{ours[differ[0]]!r} in [space]); leave it out and [space] is used")
    return completed


def _tuples(overrides: dict[str, Any]) -> dict[str, Any]:
    """TOML lists as the tuples SearchSpace fields hold."""
    return {k: tuple(v) if isinstance(v, list) else v for k, v in overrides.items()}


def resolve(config: RunConfig, source: str = "config", complete: bool = True) -> RunParts:
    """Check and build every part of a run from its config. ``complete``: fill [fitness] from
    [space] (:func:`with_run_space`) — for a new run; a resumed run takes its stored config
    as it is (runs created before that step existed must go on scoring as they began)."""
    if complete:
        config = with_run_space(config, source)
    space = resolve_space(config, source)
    try:
        check_options(config.executor)
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc}") from None
    try:
        fitness = make_fitness(config.fitness.name, config.fitness.params)
    except ValueError as exc:
        raise ConfigError(f"{source}: fitness.{exc}") from None
    data = load_run_dataset(config)
    input_shape, num_classes = genome_shapes(fitness, data)
    variation = Variation.for_space(space, input_shape, num_classes)
    params, objectives = split_objectives(config, source)
    try:
        proposer = make_strategy(config.strategy.name, variation, config.seed, **params)
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc}") from None
    except EvographError:
        raise
    try:
        space.initial_genome(np.random.default_rng(0), input_shape, num_classes)
    except InvalidGenome as exc:
        raise ConfigError(f"{source}: space: the initial genome does not fit ({exc})") from None
    return RunParts(config, space, data, variation, proposer, objectives)


def genome_shapes(fitness: Any, data: Dataset) -> tuple[tuple[int, ...], int]:
    """The genomes' input shape and class count: the fitness generator's own when it brings
    its own tasks (MAML's sinusoids), else the dataset's."""
    task_shapes = getattr(fitness, "task_shapes", None)
    if not callable(task_shapes):
        return tuple(data.input_shape), int(data.num_classes)
    shapes = task_shapes()
    if shapes is None:
        return tuple(data.input_shape), int(data.num_classes)
    return tuple(shapes[0]), int(shapes[1])


def fingerprint(config: RunConfig, space: SearchSpace) -> str:
    """What a resume must find unchanged: the resolved config and the space's data."""
    text = json.dumps({"config": config.to_dict(), "space": space.to_dict()}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]
