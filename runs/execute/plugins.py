"""A user's plug-ins on the worker processes: the fitness generators, search spaces, datasets,
ops and layers a user registered in their own code, sent to every worker before its first task.

A spawned worker starts from a fresh interpreter: it imports evograph (so it knows the built-in
plug-ins), but not the user's script, notebook or module, so a fitness generator defined there
was ``unknown`` on every worker. The pool therefore ships the user's entries of the registries a
worker reads (:data:`REGISTRIES`), by name: each is serialised once, at pool start, with ``dill``
(the serialiser of the ``multiprocess`` package, which pickles classes and functions defined in
``__main__``, in a notebook or inside a function by value, with the globals they use; those of
an importable module by reference, so the worker imports that module), and each worker registers
them before its first task. Tasks stay plain data (:mod:`evograph.runs.execute.task`): only the
registered objects travel, and only to our own child processes - nothing here is ever stored or
read back from disk.

An entry is the user's when it was defined outside evograph, or when the Python API registered
it for a run (:func:`mark`; ``evograph.run(space=...)`` wraps the space in a factory of its own).
Strategies are not shipped: only the driver asks and tells them.

Something that cannot be serialised stops the run before it starts, in one
:class:`PluginError` line naming the object and why (:func:`pack`); something that a worker
cannot load (a module it cannot import) stops it as the pool starts (:func:`install`).
"""

from __future__ import annotations

import functools
from typing import Any

from ...compile.layers import LAYERS
from ...compile.training.fitness import FITNESS
from ...data.datasets import DATASETS
from ...errors import ConfigError
from ...genome.ops import OPS, OpSpec
from ...genome.space import SPACES

# the registries a worker reads while it evaluates, by the kind of plug-in they hold
REGISTRIES: dict[str, dict[str, Any]] = {"fitness": FITNESS, "space": SPACES,
                                         "dataset": DATASETS, "op": OPS, "layer": LAYERS}
# (kind, name, dill bytes): what a pool passes to its workers (plain data)
Payload = tuple[tuple[str, str, bytes], ...]

_MARKED: set[tuple[str, str]] = set()            # registered for a run by the Python API
_PACKED: dict[tuple[str, str], tuple[Any, bytes]] = {}  # (kind, name) -> (object, its bytes)


class PluginError(ConfigError):
    """A user's plug-in that cannot go to, or cannot be loaded by, a worker process."""


def mark(kind: str, name: str) -> None:
    """Count the ``kind`` entry ``name`` as the user's, wherever its object was defined (the
    Python API's wrappers live in evograph, the objects they hold do not)."""
    if kind not in REGISTRIES:
        raise ValueError(f"unknown plug-in kind {kind!r} (known: {', '.join(REGISTRIES)})")
    _MARKED.add((kind, name))


def defined_in(value: Any) -> str:
    """The module ``value`` was defined in (an op's: its shape function's; a partial's: its
    function's)."""
    target = value.infer if isinstance(value, OpSpec) else value
    while isinstance(target, functools.partial):
        target = target.func
    return getattr(target, "__module__", None) or type(target).__module__


def _is_users(kind: str, name: str, value: Any) -> bool:
    module = defined_in(value)
    return (kind, name) in _MARKED or not (module == "evograph" or module.startswith("evograph."))


def user_plugins() -> list[tuple[str, str, Any]]:
    """Every registered entry that is the user's, as (kind, name, object)."""
    return [(kind, name, value) for kind, registry in REGISTRIES.items()
            for name, value in list(registry.items()) if _is_users(kind, name, value)]


def describe(value: Any) -> str:
    """``Name from module`` for a message."""
    label = getattr(value, "__qualname__", None) or type(value).__qualname__
    return f"{label} from {defined_in(value)}"


def pack() -> Payload:
    """The user's plug-ins serialised for the workers (each object once per process); an
    object that cannot be serialised is one :class:`PluginError` naming it and why."""
    import dill  # the multiprocess package's serialiser; only needed when a pool starts

    payload = []
    for kind, name, value in user_plugins():
        packed = _PACKED.get((kind, name))
        if packed is None or packed[0] is not value:
            try:
                packed = _PACKED[(kind, name)] = (value, dill.dumps(value, recurse=True))
            except Exception as exc:  # noqa: BLE001 - dill raises many kinds; all say the same
                raise PluginError(
                    f"{kind} plug-in {name!r} ({describe(value)}) cannot be sent to worker "
                    f"processes: {type(exc).__name__}: {_first_line(exc)}; define it at the "
                    "top level of a module or script, or set executor.name = \"serial\"") from None
        payload.append((kind, name, packed[1]))
    return tuple(payload)


def install(payload: Payload) -> None:
    """Register ``payload``'s plug-ins in this (worker) process; one that cannot be loaded
    here is one :class:`PluginError` naming it and why."""
    if not payload:
        return
    import dill

    for kind, name, blob in payload:
        try:
            REGISTRIES[kind][name] = dill.loads(blob)
        except Exception as exc:  # noqa: BLE001 - an import error, a missing file, ...
            raise PluginError(
                f"{kind} plug-in {name!r} cannot be loaded in a worker process: "
                f"{type(exc).__name__}: {_first_line(exc)} (a module must be importable "
                "from the worker's sys.path, which is the driver's)") from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else "no detail"
