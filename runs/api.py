"""The Python API of a run, for scripts and notebooks: ``evograph.run(...)`` and
``evograph.runs.api.resume(...)``.

It drives the same machinery as ``evograph run`` — the same store, lineage, report and export —
and accepts objects a user defined in their own code: a :class:`SearchSpace` (registered under its
name for the run), a fitness generator class and a strategy class (each registered under its
``name``). They run wherever the config says, on the ``local`` pool's worker processes too:
the pool sends the user's plug-ins to its workers as they start
(:mod:`evograph.runs.execute.plugins`), whether they were defined in ``__main__``, a notebook, a
function or a module of the user's. One that cannot be sent stops the run before it starts, in
one line; the executor is never switched behind the user's back.

A script must call these under ``if __name__ == "__main__":``: the workers import it again, and
a call at its top level would start a run in each. That is recognised and stopped in one line
(:mod:`evograph.runs.execute.mainguard`), the script exiting with status 2.
"""

from __future__ import annotations

import dataclasses
import logging
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..compile.training.fitness import FITNESS, generator_params, register_fitness
from ..genome.core import Genome
from ..genome.space import SPACES, SearchSpace
from ..selection.strategy import STRATEGIES, register_strategy
from .config import RunConfig, apply_overrides, config_from_dict, load_config
from .driver import RunOutcome, create_run
from .driver import run as drive
from .execute import plugins
from .execute.mainguard import UnguardedScriptError, refuse_spawned_rerun

log = logging.getLogger("evograph.config")  # its notices go to stderr (runs.setup)


def _config(config: str | Path | RunConfig | dict | None,
            overrides: list[str] | dict[str, Any]) -> RunConfig:
    texts = overrides if isinstance(overrides, list) else [
        f"{key}={_toml(value)}" for key, value in dict(overrides).items()]
    if isinstance(config, RunConfig):
        return config_from_dict(apply_overrides(config.to_dict(), texts), "config")
    if isinstance(config, dict):
        return config_from_dict(apply_overrides(dict(config), texts), "config")
    if config is None:
        return config_from_dict(apply_overrides({}, texts), "config")
    return load_config(config, texts)


def _toml(value: Any) -> str:
    import json
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return json.dumps(value)


def _own_name(cls: type) -> str:
    """The name a user's class registers under: its own ``name`` attribute (not one inherited
    from a built-in it extends, which it would replace), else its class name in lower case."""
    name = vars(cls).get("name")
    return name if isinstance(name, str) and name else cls.__name__.lower()


def register_plugins(space: SearchSpace | None = None, fitness: type | None = None,
                     strategy: type | None = None) -> dict[str, str]:
    """Register a user's search space, fitness generator class and strategy class for a run
    (the space and fitness marked as the user's plug-ins, so worker processes get them too);
    the config keys that name them, e.g. ``{"fitness.name": "mine"}``."""
    names: dict[str, str] = {}
    if space is not None:
        SPACES[space.name] = _FixedSpace(space)
        plugins.mark("space", space.name)
        names["space.name"] = space.name
    if fitness is not None:
        name = _own_name(fitness)
        if FITNESS.get(name) is not fitness:
            register_fitness(name)(fitness)
        plugins.mark("fitness", name)
        names["fitness.name"] = name
    if strategy is not None:  # only the driver uses a strategy: it stays in this process
        name = _own_name(strategy)
        if STRATEGIES.get(name) is not strategy:
            register_strategy(name)(strategy)
        names["strategy.name"] = name
    return names


def _fitness_params_taken(config: RunConfig, fitness: type) -> RunConfig:
    """The config with the [fitness] parameters the user's class does not take dropped, with a
    one-line notice: a shipped config's ``epochs = 4`` was written for ``sgd``, not for the
    fitness a script plugs in (the stored config holds only what the class takes)."""
    named = generator_params(fitness)
    if named is None:
        return config
    params = config.fitness.params
    dropped = sorted(k for k in params if k not in named)
    if not dropped:
        return config
    log.warning("evograph: note: fitness %r does not take %s (set for %s in the config): "
                "dropped", config.fitness.name, ", ".join(dropped), "another generator")
    kept = {k: v for k, v in params.items() if k in named}
    return dataclasses.replace(config, fitness=dataclasses.replace(config.fitness, params=kept))


class _FixedSpace:
    """The registry's factory for a :class:`SearchSpace` object: the object itself, or a copy
    with the overrides a config gives."""

    def __init__(self, space: SearchSpace):
        self.space = space

    def __call__(self, **overrides: Any) -> SearchSpace:
        return self.space.replace(**overrides) if overrides else self.space


def run(config: str | Path | RunConfig | dict | None = None, *,
        overrides: list[str] | dict[str, Any] = (), out: str | Path | None = None,
        space: SearchSpace | None = None, fitness: type | None = None,
        strategy: type | None = None, init: Sequence[Genome | str | Path] = (),
        live: bool = False) -> RunOutcome:
    """Create a run from ``config`` (a TOML path, a dict, a RunConfig or None for the defaults)
    and drive it to the end of its budget. ``space``/``fitness``/``strategy`` plug in
    user-defined parts; ``init`` (genomes, or genome JSON files) are the run's first
    individuals."""
    refuse_spawned_rerun()
    overrides = list(overrides) if not isinstance(overrides, dict) else overrides
    extra = register_plugins(space, fitness, strategy)
    if isinstance(overrides, dict):
        overrides = {**overrides, **extra}
    else:
        overrides = overrides + [f"{k}={_toml(v)}" for k, v in extra.items()]
    resolved = _config(config, overrides)
    if fitness is not None:
        resolved = _fitness_params_taken(resolved, fitness)
    if resolved.executor.name != "serial":
        plugins.pack()  # one that cannot go to a worker stops the run before it is created
    run_dir = create_run(resolved, out, source=str(config) if config else "config",
                         init=list(init))
    return _drive(run_dir, live=live)


def resume(run_dir: str | Path, *, space: SearchSpace | None = None,
           fitness: type | None = None, strategy: type | None = None,
           overrides: Mapping[str, Any] | Sequence[str] | None = None, force: bool = False,
           live: bool = False) -> RunOutcome:
    """Continue a stopped, crashed or finished run. A run made with the user's own ``space``,
    ``fitness`` or ``strategy`` needs them again (registered as :func:`run` does);
    ``overrides`` (``{"budget.evaluations": 200}``) extend its budget, other keys need
    ``force``."""
    refuse_spawned_rerun()
    register_plugins(space, fitness, strategy)
    return _drive(run_dir, force=force, live=live, overrides=overrides)


def _drive(run_dir: str | Path, **options: Any) -> RunOutcome:
    """Drive the run; a script without the ``__main__`` guard ends here in one line, exit 2."""
    try:
        return drive(run_dir, **options)
    except UnguardedScriptError as exc:
        print(f"evograph: error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
