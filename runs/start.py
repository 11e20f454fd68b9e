"""What a run starts from beyond its config: given genomes (``evograph run --init``) and, on a
resume, a changed budget (``evograph resume --set budget.evaluations=N``).

Starting genomes are checked against the run's space, input shape and class count before the
run directory exists (one :class:`ConfigError` line naming the file), stored in the run's store
as a ``seeded`` event (so a resume needs no file), and handed to the strategy on every driver
start: its k-th initial individual is the k-th genome (see
:meth:`~evograph.selection.strategy.Strategy.seed_with`); lineage records them as ``seeded``.

A resume may change the budget (``budget.evaluations``, ``budget.minutes``,
``budget.max_failure_fraction``): the new config and its fingerprint replace the stored ones, with
an ``extended`` event. Any other key changes what the run's history means, and is refused
unless ``--force``.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ..errors import ConfigError, EvographError, InvalidGenome, RunStoreError
from ..genome.core import Genome
from ..genome.io import from_dict, load, to_dict
from ..genome.validate import analyze
from .config import RunConfig, apply_overrides, config_from_dict, parse_override, stored_config
from .setup import RunParts, fingerprint, resolve

EXTENDABLE = ("budget.evaluations", "budget.minutes", "budget.max_failure_fraction")
Seed = Genome | str | os.PathLike


# -- starting genomes ----------------------------------------------------------------------------
def check_seeds(parts: RunParts, init: Sequence[Seed]) -> dict[str, Any] | None:
    """Load and check the starting genomes (files or :class:`Genome` objects) against the run;
    the ``seeded`` event's data (their JSON and where each came from), or None without any."""
    if not init:
        return None
    # the run's input shape and class count, as its own initial genomes have them
    reference = parts.variation.initial(np.random.default_rng(0))
    labels, genomes = [], []
    for i, item in enumerate(init):
        label = os.fspath(item) if isinstance(item, (str, os.PathLike)) else f"init[{i}]"
        genome = _load(item, label)
        _check_fits(genome, reference, parts, label)
        labels.append(label)
        genomes.append(genome)
    try:
        parts.proposer.seed_with(genomes)
    except AttributeError:
        raise ConfigError(f"--init: strategy {parts.config.strategy.name!r} cannot start from "
                          "given genomes") from None
    except ConfigError as exc:
        raise ConfigError(f"--init: {exc}") from None
    return {"genomes": [to_dict(g) for g in genomes], "sources": labels}


def _load(item: Seed, label: str) -> Genome:
    if isinstance(item, Genome):
        return item
    if not isinstance(item, (str, os.PathLike)):
        raise ConfigError(f"--init {label}: expected a genome or a genome file, got "
                          f"{type(item).__name__}")
    try:
        return load(item)
    except EvographError as exc:
        raise ConfigError(f"--init {exc}") from None


def _check_fits(genome: Genome, reference: Genome, parts: RunParts, label: str) -> None:
    """One line naming the file for a genome the run cannot train: invalid, outside the space
    (ops, widths, max_layers, max_params, ...), or for other inputs or classes."""
    try:
        analyze(genome, parts.space)
    except InvalidGenome as exc:
        raise ConfigError(f"--init {label}: does not fit space {parts.space.name!r}: "
                          f"{exc}") from None
    for node, key, what in ((genome.input_node, "shape", "input shape"),
                            (genome.output_node, "num_classes", "class count")):
        theirs = node.get(key)
        ours = (reference.input_node if key == "shape" else reference.output_node).get(key)
        if _plain(theirs) != _plain(ours):
            raise ConfigError(f"--init {label}: its {what} is {_plain(theirs)}, the run's "
                              f"({parts.config.dataset.name}) is {_plain(ours)}")


def _plain(value: Any) -> Any:
    return tuple(value) if isinstance(value, (list, tuple)) else value


def stored_seeds(store: Any) -> list[Genome]:
    """The starting genomes a run was created with (none: an empty list)."""
    events = store.events("seeded")
    if not events:
        return []
    return [from_dict(d, where=f"{store.run_dir}: starting genome {k}")
            for k, d in enumerate(events[-1]["data"]["genomes"])]


# -- a resume's changed budget -------------------------------------------------------------------
def extend(store: Any, overrides: Mapping[str, Any] | Sequence[str], force: bool) -> RunParts:
    """Apply a resume's ``--set`` changes to the stored config: budget keys always, others
    only with ``force``; stores the new config and fingerprint and returns its parts."""
    old = stored_config(store.config)
    data, keys = _applied(copy.deepcopy(old), overrides)
    refused = [k for k in keys if k not in EXTENDABLE]
    if refused and not force:
        raise RunStoreError(f"{store.run_dir}: resume --set {refused[0]}: a resume can change "
                            f"only {', '.join(EXTENDABLE)} (--force changes it anyway)")
    config: RunConfig = config_from_dict(data, source="resume --set")
    parts = resolve(config, source="resume --set", complete=False)
    changed = {k: [_get(old, k), _get(data, k)] for k in keys}
    text = ", ".join(f"{k} {a!r} -> {b!r}" for k, (a, b) in changed.items())
    store.replace_config(config.to_dict(), fingerprint(config, parts.space),
                         f"resumed with {text}", {"changed": changed, "forced": bool(refused)})
    return parts


def _applied(data: dict, overrides: Mapping[str, Any] | Sequence[str]) -> tuple[dict, list[str]]:
    """``data`` with the overrides set (``KEY=VALUE`` texts as TOML, or a mapping of
    dotted keys to values) and the dotted keys changed."""
    if isinstance(overrides, Mapping):
        for key, value in overrides.items():
            node = data
            *path, last = str(key).split(".")
            for part in path:
                node = node.setdefault(part, {})
                if not isinstance(node, dict):
                    raise ConfigError(f"resume --set {key}: {part} is not a table")
            node[last] = value
        return data, [str(k) for k in overrides]
    texts = list(overrides)
    return apply_overrides(data, texts), [".".join(parse_override(t)[0]) for t in texts]


def _get(data: dict, key: str) -> Any:
    for part in key.split("."):
        if not isinstance(data, dict):
            return None
        data = data.get(part)
    return data
