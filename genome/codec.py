"""Genome codecs: a genome written as a fixed-length sequence of categorical decisions.

The controller of *Neural Architecture Search with Reinforcement Learning* (Zoph & Le 2017) emits
an architecture one decision at a time — filter height, filter width, stride, channels, and at each
layer's *anchor point* which earlier layers to skip from. A :class:`Codec` says what those decisions
are (:class:`Decision`: a name and its choices) and turns ANY sequence of choice indices into a
valid genome of its space: indices wrap modulo the number of choices, and a genome over the space's
parameter/FLOP budget is shrunk deterministically (widest layer first, then kernels, then depth)
until it fits, so ``decode`` is a pure, total function. ``encode`` goes back where the genome has
the codec's form, else raises :class:`NotEncodable`.

Built in (the registry :data:`CODECS`, looked up by space name, then by space family):

* ``mlp`` — layers, units per layer, one activation, optimizer, optionally a learning-rate bucket
  (the classic "evolve a network with a genetic algorithm" demo's genes);
* ``conv`` — a bounded-depth form of ``lse-conv``: a depth, then per layer filter height/width,
  stride, channels and one skip decision per earlier layer (anchor-point style).

A user space gets a codec by registering a factory ``(space, input_shape, num_classes, **params)
-> Codec`` under its name with :func:`register_codec`; :class:`IndexCodec` decodes to the indices
themselves (toy problems and tests).
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import ConfigError, InvalidGenome
from .core import Genome
from .io import from_dict, to_dict
from .ops import Shape


@dataclass(frozen=True)
class Decision:
    """One categorical decision. ``layer`` is the hidden layer it shapes (None: a global gene);
    ``skip_from`` marks an anchor-point decision — does layer ``skip_from`` feed ``layer``?
    (choices ``(False, True)``), which the controller scores by attention between anchors."""

    name: str
    choices: tuple[Any, ...]
    layer: int | None = None
    skip_from: int | None = None

    @property
    def size(self) -> int:
        return len(self.choices)


class NotEncodable(InvalidGenome):
    """The genome cannot be written as this codec's decisions (it has another form)."""


class Codec:
    """Base class: ``decisions`` and ``decode``; ``encode`` where the form allows.
    ``serialize``/``deserialize`` turn decoded values into JSON and back (for run state)."""

    name = "codec"
    decisions: tuple[Decision, ...] = ()

    @property
    def sizes(self) -> tuple[int, ...]:
        return tuple(d.size for d in self.decisions)

    def check(self, indices: Sequence[int]) -> tuple[int, ...]:
        """The indices as ints in range (wrapped modulo each decision's size); InvalidGenome
        for a sequence of the wrong length or with non-integers."""
        if len(indices) != len(self.decisions):
            raise InvalidGenome(f"codec {self.name!r} takes {len(self.decisions)} decisions, "
                                f"got {len(indices)}")
        out = []
        for i, (value, d) in enumerate(zip(indices, self.decisions)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
                raise InvalidGenome(f"decision {i} ({d.name}) must be an integer, got {value!r}")
            out.append(int(value) % d.size)
        return tuple(out)

    def random(self, rng: np.random.Generator) -> tuple[int, ...]:
        """Uniformly random indices (what random search over the decisions draws)."""
        return tuple(int(rng.integers(d.size)) for d in self.decisions)

    def decode(self, indices: Sequence[int]) -> Any:
        raise NotImplementedError

    def encode(self, genome: Any) -> tuple[int, ...]:
        raise NotEncodable(f"codec {self.name!r} cannot encode genomes")

    def describe(self, indices: Sequence[int]) -> dict[str, Any]:
        """``{decision name: chosen value}`` (for people and logs)."""
        return {d.name: d.choices[i] for d, i in zip(self.decisions, self.check(indices))}

    def to_dict(self) -> dict[str, Any]:
        """The decision layout, stored with a controller so a resume can check it is unchanged."""
        return {"codec": self.name, "decisions": [
            [d.name, [_jsonable(c) for c in d.choices], d.layer, d.skip_from]
            for d in self.decisions]}

    def serialize(self, value: Any) -> Any:
        return to_dict(value)

    def deserialize(self, data: Any) -> Any:
        return from_dict(data)


def _jsonable(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


class IndexCodec(Codec):
    """Decodes to the (wrapped) indices themselves: a genome-free codec for toy rewards."""

    name = "index"

    def __init__(self, decisions: Sequence[Decision | int]):
        self.decisions = tuple(d if isinstance(d, Decision) else
                               Decision(f"d{i}", tuple(range(int(d))))
                               for i, d in enumerate(decisions))
        if any(d.size < 1 for d in self.decisions):
            raise ConfigError("every decision needs at least one choice")

    def decode(self, indices: Sequence[int]) -> tuple[int, ...]:
        return self.check(indices)

    def encode(self, genome: Any) -> tuple[int, ...]:
        return self.check(tuple(genome))

    def serialize(self, value: Any) -> Any:
        return list(value)

    def deserialize(self, data: Any) -> Any:
        return tuple(int(v) for v in data)


class BitsCodec(IndexCodec):
    """``n`` binary decisions decoded to a ``"0101…"`` string: the toy bit-string genomes of
    Real et al. 2019 (:mod:`evograph.selection.toy`), on which the paper also runs RL."""

    name = "bits"

    def __init__(self, n_bits: int):
        super().__init__([2] * int(n_bits))

    def decode(self, indices: Sequence[int]) -> str:
        return "".join(str(i) for i in self.check(indices))

    def encode(self, genome: Any) -> tuple[int, ...]:
        if not isinstance(genome, str) or set(genome) - {"0", "1"}:
            raise NotEncodable(f"{genome!r} is not a bit string")
        return self.check([int(c) for c in genome])

    def serialize(self, value: Any) -> Any:
        return str(value)

    def deserialize(self, data: Any) -> Any:
        return str(data)


# -- codecs over search spaces -----------------------------------------------------------------
class SpaceCodec(Codec):
    """A codec over a :class:`~evograph.genome.space.SearchSpace`. Subclasses give ``_build``
    (indices -> genome, perhaps over budget), ``_shrinkable`` (decision positions in shrink
    order groups) and ``_depth_index``; ``decode`` adds the budget clamp."""

    def __init__(self, space: Any, input_shape: Shape, num_classes: int):
        self.space, self.input_shape = space, tuple(int(s) for s in input_shape)
        self.num_classes = int(num_classes)

    def _finish(self, decisions: list[Decision]) -> None:
        """Set the decisions and check the smallest genome fits (so decode is total)."""
        self.decisions = tuple(decisions)
        if not self.decisions or any(d.size < 1 for d in self.decisions):
            raise ConfigError(f"codec {self.name!r} for space {self.space.name}: a decision has "
                              "no choices within the space's ranges")
        self.minimal = self._build([0] * len(self.decisions))
        if not self.space.is_valid(self.minimal):
            raise ConfigError(f"codec {self.name!r}: even the smallest genome does not fit "
                              f"space {self.space.name}'s budgets")

    def decode(self, indices: Sequence[int]) -> Genome:
        """A valid genome for any indices: build, then shrink until the space accepts it."""
        idx = list(self.check(indices))
        while True:
            genome = self._build(idx)
            if self.space.is_valid(genome):
                return genome
            if not self._shrink(idx):
                return self.minimal

    def _shrink(self, idx: list[int]) -> bool:
        """One step towards smaller networks: the largest active value of the first group with
        something to shrink (ties: the deepest layer) moves one choice down; then depth.
        Every step lowers the index sum, so decode terminates."""
        depth = self._depth(idx)
        for group in self._shrinkable():
            active = [p for p in group if idx[p] > 0 and (self.decisions[p].layer or 0) <= depth]
            if active:
                pos = max(active, key=lambda p: (self.decisions[p].choices[idx[p]], p))
                idx[pos] -= 1
                return True
        if idx[self._depth_index] > 0:
            idx[self._depth_index] -= 1
            return True
        return False

    def _depth(self, idx: Sequence[int]) -> int:
        return int(self.decisions[self._depth_index].choices[idx[self._depth_index]])

    def _genes(self, idx: Sequence[int]) -> dict[str, Any]:
        genes = dict(self.space.initial_genes)
        for d, i in zip(self.decisions, idx):
            if d.name in ("optimizer", "learning_rate"):
                genes[d.name] = d.choices[i]
        return genes

    def _encode_genes(self, genome: Genome) -> dict[str, int]:
        """Indices of the gene decisions; NotEncodable if a gene is not among the choices or a
        fixed gene differs from the space's initial value."""
        genes, out = genome.gene, {}
        fixed = dict(self.space.initial_genes)
        for d in self.decisions:
            if d.name in ("optimizer", "learning_rate"):
                out[d.name] = _index_of(d, genes.get(d.name))
                fixed.pop(d.name, None)
        for key, value in fixed.items():
            if genes.get(key) != value:
                raise NotEncodable(f"gene {key}={genes.get(key)!r} is fixed to {value!r} by "
                                   f"codec {self.name!r}")
        return out

    def _build(self, idx: Sequence[int]) -> Genome:
        raise NotImplementedError

    def _shrinkable(self) -> list[list[int]]:
        raise NotImplementedError

    _depth_index = 0


def _index_of(decision: Decision, value: Any) -> int:
    for i, choice in enumerate(decision.choices):
        if choice == value or (isinstance(choice, float) and isinstance(value, (int, float))
                               and not isinstance(value, bool)
                               and math.isclose(choice, value, rel_tol=1e-9)):
            return i
    raise NotEncodable(f"{decision.name}={value!r} is not one of {list(decision.choices)}")


def _learning_rates(space: Any, values: Sequence[float] | None) -> tuple[float, ...]:
    """Learning-rate buckets inside the space's range (None: log-spaced 1e-3..1e-1 defaults)."""
    values = (0.001, 0.003, 0.01, 0.03, 0.1) if values is None else values
    lo, hi = space.learning_rate
    return tuple(sorted({float(v) for v in values if lo <= float(v) <= hi}))


def _gene_decisions(space: Any, learning_rates: tuple[float, ...],
                    optimizers: bool) -> list[Decision]:
    out = [Decision("optimizer", tuple(space.optimizers))] if optimizers else []
    if learning_rates:
        out.append(Decision("learning_rate", learning_rates))
    return out


CodecFactory = Callable[..., Codec]
CODECS: dict[str, CodecFactory] = {}


def register_codec(name: str):
    """Decorator: register ``factory(space, input_shape, num_classes, **params) -> Codec``
    under a space name or a space family."""
    def wrap(factory: CodecFactory) -> CodecFactory:
        CODECS[name] = factory
        return factory
    return wrap


def codec_for(space: Any, input_shape: Shape, num_classes: int, name: str | None = None,
              **params: Any) -> Codec:
    """The codec for ``space``: ``name`` if given, else the one registered under the space's
    name, else under its family. ConfigError for an unknown codec or parameter."""
    key = name or (space.name if space.name in CODECS else space.family)
    if key not in CODECS:
        raise ConfigError(f"no codec for search space {space.name!r} (family {space.family!r});"
                          f" known: {', '.join(sorted(CODECS))} — register one with "
                          "evograph.genome.codec.register_codec")
    factory = CODECS[key]
    known = [p for p in inspect.signature(factory).parameters
             if p not in ("self", "space", "input_shape", "num_classes")]
    unknown = sorted(set(params) - set(known))
    if unknown and not any(inspect.signature(factory).parameters[p].kind
                           == inspect.Parameter.VAR_KEYWORD for p in known):
        raise ConfigError(f"codec {key!r}: unknown parameter {unknown[0]!r} (known: "
                          f"{', '.join(known)})")
    try:
        return factory(space, tuple(input_shape), int(num_classes), **params)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"codec {key!r}: {exc}") from None
