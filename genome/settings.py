"""Settings from a config file, typed and range-checked before anything is built: a [space]
table as :class:`~evograph.genome.space.SearchSpace` values (:func:`check_overrides`), and the
one rule that types every TOML value by an annotation (:func:`conform`), which the [strategy] and
[fitness] checks use too. Every mistake is one ``ValueError`` line naming the key."""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable
from types import UnionType
from typing import Any, Union, get_args, get_origin, get_type_hints

from .ops import ACTIVATIONS, OPS
from .space import _FAMILY_INITIAL, SearchSpace

FROM_PYTHON_ONLY = ("name", "initial", "sampler")  # a registry name and callables: not TOML


def conform(key: str, value: Any, hint: Any) -> Any:
    """``value`` (as TOML gives it) as the annotated type ``hint``: an int where a float is
    expected, a list as a tuple (of the tuple's length where it is fixed); anything else is one
    ``ValueError`` naming ``key``, e.g. ``max_layers: must be int, got str '5'``. Shared by the
    checks of [space], [strategy] and [fitness]."""
    origin, args = get_origin(hint), get_args(hint)
    if hint is Any:
        return value
    if origin is tuple:
        fixed = not (len(args) == 2 and args[1] is Ellipsis)
        if not isinstance(value, (list, tuple)) or (fixed and len(value) != len(args)):
            raise _wrong(key, value, hint)
        return tuple(conform(f"{key}[{i}]", item, args[i] if fixed else args[0])
                     for i, item in enumerate(value))
    if origin in (Union, UnionType):
        for option in args:
            try:
                return conform(key, value, option)
            except ValueError:
                pass
        raise _wrong(key, value, hint)
    kind = origin or hint
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if isinstance(kind, type) and kind is not object and (
            not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool)):
        raise _wrong(key, value, hint)
    return value


def _describe(hint: Any) -> str:
    origin, args = get_origin(hint), get_args(hint)
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return f"a list of {_describe(args[0])}"
        return f"a list [{', '.join(_describe(a) for a in args)}]"
    if origin in (Union, UnionType):
        return " or ".join(_describe(a) for a in args)
    if hint is bool:
        return "true or false"
    return "anything" if hint is Any else getattr(origin or hint, "__name__", str(hint))


def _wrong(key: str, value: Any, hint: Any) -> ValueError:
    return ValueError(f"{key}: must be {_describe(hint)}, got {type(value).__name__} {value!r}")


def check_overrides(overrides: dict[str, Any], factory: Callable[..., Any] | None = None
                    ) -> dict[str, Any]:
    """A config's [space] keys as :class:`SearchSpace` values, typed by the dataclass's
    annotations and range-checked; an unknown key, a wrong type or a bad value is one
    ``ValueError`` naming the key. ``factory``: the registered space's factory, whose own named
    parameters are allowed too (typed by their annotations); without it (a config being read,
    before plug-ins are imported) keys that are not fields are left for that later check."""
    hints = get_type_hints(SearchSpace)
    fields = [f.name for f in dataclasses.fields(SearchSpace) if f.name not in FROM_PYTHON_ONLY]
    own = _factory_params(factory) if factory is not None else {}
    out = {}
    for key, value in overrides.items():
        if key in fields:
            out[key] = conform(key, value, hints[key])
            _check_range(key, out[key])
        elif key in own:
            out[key] = conform(key, value, own[key])
        elif factory is None:
            out[key] = value
        else:
            known = ", ".join(fields + [k for k in own if k not in fields])
            raise ValueError(f"{key}: unknown key (known: {known})")
    return out


def _factory_params(factory: Callable[..., Any]) -> dict[str, Any]:
    """The named parameters of a space factory, with their annotations (Any where none)."""
    try:
        hints = get_type_hints(factory)
    except (NameError, TypeError):
        hints = {}
    return {p.name: hints.get(p.name, Any) for p in inspect.signature(factory).parameters.values()
            if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}


_AT_LEAST = {"max_layers": 1, "max_params": 1, "max_flops": 1, "cell_channels": 1, "cells": 1,
             "stages": 1, "blocks": 1}
_POSITIVE_CHOICES = ("kernel_sizes", "strides", "unit_choices", "batch_sizes")
_MAY_BE_EMPTY = ("initial_genes", "mutation_weights")  # empty: none / every mutation alike
_PAIRS = {"channels": (1, True), "learning_rate": (0.0, False), "weight_decay": (0.0, True)}


def _check_range(key: str, value: Any) -> None:
    """The value range of one SearchSpace field set from a config (``ValueError`` naming it)."""
    if key in _AT_LEAST and value < _AT_LEAST[key]:
        raise ValueError(f"{key}: must be at least {_AT_LEAST[key]} (got {value})")
    if key in _PAIRS:
        floor, closed = _PAIRS[key]
        lo, hi = value
        if (lo < floor if closed else lo <= floor) or lo > hi:
            raise ValueError(f"{key}: must be [lo, hi] with {floor} {'<=' if closed else '<'} "
                             f"lo <= hi (got {list(value)})")
    if isinstance(value, tuple) and not value and key not in _MAY_BE_EMPTY:
        raise ValueError(f"{key}: must not be empty")
    if key in _POSITIVE_CHOICES and min(value) < 1:
        raise ValueError(f"{key}: every entry must be at least 1 (got {list(value)})")
    known = _names(key)
    for item in ((value,) if isinstance(value, str) else value) if known else ():
        if item not in known:
            raise ValueError(f"{key}: {item!r} is not one of {', '.join(known)}")
    if key == "mutation_weights" and value and (any(w < 0 for _, w in value)
                                                or not any(w > 0 for _, w in value)):
        raise ValueError(f"{key}: weights must be >= 0, at least one > 0 (got {list(value)})")


def _names(key: str) -> tuple[str, ...]:
    """The names a field may hold, where the genome layer knows them all (optimizers and
    mutations are registered above it: the run's setup checks those)."""
    if key == "ops":
        return tuple(op for op in OPS if op not in ("input", "output"))
    return {"activations": ACTIVATIONS, "family": tuple(_FAMILY_INITIAL)}.get(key, ())
