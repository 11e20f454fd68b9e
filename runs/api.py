"""The Python API of a run, for scripts and notebooks: ``evograph.run(...)``.

It drives the same machinery as ``evograph run`` — the same store, lineage, report and export —
and accepts objects a user defined in their own code: a :class:`SearchSpace` (registered under its
name for the run) and a fitness generator class (registered under its ``name``). Objects defined
in ``__main__`` (a notebook) cannot be imported by spawned worker processes, so such runs use the
in-process ``serial`` executor automatically.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..compile.training.fitness import FITNESS, register_fitness
from ..genome.space import SPACES, SearchSpace
from .config import RunConfig, apply_overrides, config_from_dict, load_config
from .driver import RunOutcome, create_run
from .driver import run as drive


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


def _defined_in_main(obj: Any) -> bool:
    return obj is not None and getattr(obj, "__module__", "") == "__main__"


def run(config: str | Path | RunConfig | dict | None = None, *,
        overrides: list[str] | dict[str, Any] = (), out: str | Path | None = None,
        space: SearchSpace | None = None, fitness: type | None = None,
        live: bool = False) -> RunOutcome:
    """Create a run from ``config`` (a TOML path, a dict, a RunConfig or None for the defaults)
    and drive it to the end of its budget. ``space``/``fitness`` plug in user-defined parts."""
    overrides = list(overrides) if not isinstance(overrides, dict) else overrides
    extra: dict[str, Any] = {}
    if space is not None:
        SPACES[space.name] = lambda **o: space.replace(**o) if o else space
        extra["space.name"] = space.name
    if fitness is not None:
        name = getattr(fitness, "name", None) or fitness.__name__.lower()
        if FITNESS.get(name) is not fitness:
            register_fitness(name)(fitness)
        extra["fitness.name"] = name
    if _defined_in_main(fitness):
        extra["executor.name"] = "serial"
    if isinstance(overrides, dict):
        overrides = {**overrides, **extra}
    else:
        overrides = overrides + [f"{k}={_toml(v)}" for k, v in extra.items()]
    resolved = _config(config, overrides)
    run_dir = create_run(resolved, out, source=str(config) if config else "config")
    return drive(run_dir, live=live)


def resume(run_dir: str | Path, *, force: bool = False, live: bool = False) -> RunOutcome:
    """Continue a stopped or crashed run."""
    return drive(run_dir, force=force, live=live)
