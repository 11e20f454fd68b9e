"""Resolving a config into the live parts of a run: space, dataset, strategy, fitness.

Everything a user can get wrong is checked here, before a run directory is created, and reported
as one :class:`ConfigError` line naming the key and the config file.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import numpy as np

from .. import meta as _meta  # noqa: F401  (registers meta-learner strategies and fitness)
from ..compile.training.fitness import FITNESS, generator_params, make_fitness, takes_run_space
from ..compile.training.sgd import OPTIMIZER_FACTORIES
from ..data.datasets import Dataset, load_dataset
from ..devices import worker_devices
from ..errors import ConfigError, EvographError, InvalidGenome
from ..genome.settings import check_overrides
from ..genome.space import SPACES, SearchSpace, get_space
from ..operators.base import MUTATIONS
from ..selection import make_strategy, take_params
from ..selection.base import Variation
from .config import ExecutorConfig, RunConfig
from .execute.executors import check_options
from .final import check_final

log = logging.getLogger("evograph.config")

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
    """The run's search space: [space] keys typed and range-checked (genome.settings), its
    optimizer and mutation names registered ones."""
    name = config.space.name
    try:
        overrides = check_overrides(config.space.overrides, SPACES.get(name))
        space = get_space(name, **overrides)
    except InvalidGenome as exc:
        raise ConfigError(f"{source}: space.name: {exc}") from None
    except ValueError as exc:
        raise ConfigError(f"{source}: space.{exc}") from None
    except TypeError as exc:
        raise ConfigError(f"{source}: space: {_param_error(exc)}") from None
    for key, what, names, known in (
            ("optimizers", "optimizer", space.optimizers, OPTIMIZER_FACTORIES),
            ("mutation_weights", "mutation", [m for m, _ in space.mutation_weights], MUTATIONS)):
        for item in names:
            if item not in known:
                raise ConfigError(f"{source}: space.{key}: no {what} is registered as {item!r} "
                                  f"(known: {', '.join(known)})")
    return space


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


def strategy_settings(config: RunConfig, source: str
                    ) -> tuple[RunConfig, dict[str, Any], tuple[str, ...]]:
    """The [strategy] parameters the chosen strategy takes, and its objectives. Parameters only
    other strategies take (a table written for ``aging`` run with ``--set
    strategy.name=tournament``) are dropped with a one-line notice, and the config returned
    (the one stored with the run) no longer holds them; a key no strategy takes is an error."""
    params, objectives = split_objectives(config, source)
    try:
        taken, dropped = take_params(config.strategy.name, params, shared=("objectives",))
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc}") from None
    if dropped:
        listed = ", ".join(f"{k} = {json.dumps(v)}" for k, v in dropped.items())
        log.warning(f"evograph: note: {source}: strategy {config.strategy.name!r} does not "
                    f"take {listed} (set for another strategy): dropped")
        kept = {k: v for k, v in config.strategy.params.items() if k not in dropped}
        config = dataclasses.replace(config, strategy=dataclasses.replace(config.strategy,
                                                                          params=kept))
    return config, taken, objectives


def final_settings(config: RunConfig, source: str) -> RunConfig:
    """[final] fitness keys the run's generator does not take but another does (``epochs``
    after ``--set fitness.name=table``) dropped with a one-line notice, as a switched strategy's
    are; the rest checked (:func:`~evograph.runs.final.check_final`). The config returned is
    stored."""
    generator = FITNESS.get(config.fitness.name)
    overrides = config.final.fitness
    if generator is None or not overrides:
        return config
    named = generator_params(generator)
    if named is not None:
        others = {p for g in FITNESS.values() for p in generator_params(g) or ()}
        # taken by another generator: dropped; taken by none (a typo): check_final says so
        dropped = {k: v for k, v in overrides.items() if k not in named and k in others}
        if dropped:
            listed = ", ".join(f"{k} = {json.dumps(v)}" for k, v in dropped.items())
            log.warning(f"evograph: note: {source}: fitness {config.fitness.name!r} does not "
                        f"take final.fitness {listed}: dropped")
            kept = {k: v for k, v in overrides.items() if k not in dropped}
            config = dataclasses.replace(config, final=dataclasses.replace(config.final,
                                                                           fitness=kept))
    check_final(config, source)
    return config


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
    """Check and build every part of a run from its config. ``complete``: a new run — fill
    [fitness] from [space] (:func:`with_run_space`) and reach its device and Dask scheduler
    (:func:`preflight`), so that a run directory is made only for a run
    that can start; a resumed run takes its stored config as it is (runs created before that
    step existed must go on scoring as they began) and its executor reports what it cannot
    reach."""
    if complete:
        config = with_run_space(config, source)
    space = resolve_space(config, source)
    try:
        check_options(config.executor)
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc}") from None
    config, params, objectives = strategy_settings(config, source)
    try:
        fitness = make_fitness(config.fitness.name, config.fitness.params)
    except ValueError as exc:
        raise ConfigError(f"{source}: fitness.{exc}") from None
    config = final_settings(config, source)
    if complete:
        preflight(config.executor, source)
    data = load_run_dataset(config)
    input_shape, num_classes = genome_shapes(fitness, data)
    variation = Variation.for_space(space, input_shape, num_classes)
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


def preflight(executor: ExecutorConfig, source: str) -> None:
    """What a new run must reach before its directory is made: the devices its workers would
    get (``cuda`` on a machine without one fails here) or, for a Dask scheduler given by
    address, the scheduler itself (whose workers' devices are theirs to check). One
    ConfigError line otherwise, and nothing is left behind."""
    try:
        if executor.name == "dask" and executor.scheduler:
            reach_scheduler(executor.scheduler)
        elif executor.name == "serial":
            worker_devices(1, executor.device, 1)
        else:
            worker_devices(executor.workers, executor.device, executor.per_gpu)
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc}") from None


DASK_PORT = 8786


def reach_scheduler(address: str, timeout_s: float = 5.0) -> None:
    """A TCP connection to the scheduler at ``[tcp://|tls://]host[:port]`` (port 8786 unless
    given), opened and closed: the executor connects for real (and waits for workers) when the
    run starts. Other transports (``inproc://``, ``ucx://``) are left to Dask."""
    scheme, _, rest = address.rpartition("://")
    if scheme not in ("", "tcp", "tls"):
        return
    try:
        parts = urlsplit(f"tcp://{rest}")
        host, port = parts.hostname, parts.port or DASK_PORT
    except ValueError:
        host = port = None
    if not host:
        raise ConfigError(f"executor.scheduler: {address!r} is not a scheduler address "
                          "(tcp://HOST:PORT)")
    try:
        socket.create_connection((host, port), timeout=timeout_s).close()
    except OSError as exc:
        reason = exc.strerror or str(exc) or type(exc).__name__
        raise ConfigError(f"executor.scheduler: cannot reach dask scheduler {address!r} "
                          f"({reason})") from None


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


def fingerprint(config: RunConfig, space: SearchSpace,
                sections: Iterable[str] | None = None) -> str:
    """What a resume must find unchanged: the resolved config and the space's data.
    ``sections``: only these top-level keys of the config (those a stored run has, so a section
    added to evograph later does not make its older runs look changed)."""
    data = config.to_dict()
    if sections is not None:
        keep = set(sections)
        data = {k: v for k, v in data.items() if k in keep}
    text = json.dumps({"config": data, "space": space.to_dict()}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]
