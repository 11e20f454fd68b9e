"""The mutation protocol: pure functions ``(genome, rng, space) -> (child, edit)``.

A mutation never changes its input (genomes are immutable values) and draws all randomness from
the explicit ``rng`` (a ``numpy.random.Generator``). When it cannot apply — nothing to remove, no
skip to add — it raises :class:`NotApplicable` and :func:`mutate` draws another one. The ``edit``
says what changed, so weight inheritance and lineage know it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from ..errors import EvographError, InvalidGenome
from ..genome.core import Genome
from ..genome.space import SearchSpace
from ..genome.validate import analyze


class NotApplicable(Exception):
    """The mutation cannot apply to this genome (e.g. REMOVE-SKIP on a genome with no skip)."""


@dataclass(frozen=True)
class Edit:
    """What a variation did: the operator, its arguments and what the child inherits.

    ``inherit`` False means the child starts from fresh weights (RESET-WEIGHTS). ``changed``
    lists the nodes whose tensors are new or reshaped; every other node of the child that exists
    in the parent takes the parent's tensors unchanged (see :mod:`evograph.operators.inherit`).
    """

    mutation: str
    args: dict[str, Any] = field(default_factory=dict)
    inherit: bool = True
    changed: tuple[int, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {"mutation": self.mutation, "args": self.args, "inherit": self.inherit,
                "changed": list(self.changed)}

    @staticmethod
    def from_dict(data: dict[str, Any]) -> "Edit":
        return Edit(data["mutation"], dict(data.get("args", {})), bool(data.get("inherit", True)),
                    tuple(data.get("changed", ())))

    def describe(self) -> str:
        args = ", ".join(f"{k}={v}" for k, v in sorted(self.args.items()))
        return f"{self.mutation}({args})" if args else self.mutation


Mutation = Callable[[Genome, np.random.Generator, SearchSpace], tuple[Genome, Edit]]
MUTATIONS: dict[str, Mutation] = {}
FAMILIES: dict[str, tuple[str, ...]] = {}  # mutation name -> space families it applies to


def register_mutation(name: str, families: tuple[str, ...] = ("conv", "mlp")):
    """Decorator: register a mutation under ``name`` for the given space families."""
    def wrap(fn: Mutation) -> Mutation:
        MUTATIONS[name] = fn
        FAMILIES[name] = families
        return fn
    return wrap


class VariationFailed(EvographError):
    """No valid child was produced within the allowed number of attempts."""


def mutation_table(space: SearchSpace) -> tuple[list[str], np.ndarray]:
    """Names and normalised probabilities of the mutations a space uses."""
    weights = dict(space.mutation_weights) or {name: 1.0 for name, fams in FAMILIES.items()
                                               if space.family in fams}
    unknown = sorted(set(weights) - set(MUTATIONS))
    if unknown:
        raise InvalidGenome(f"space {space.name} names unknown mutations: {', '.join(unknown)}")
    names = sorted(name for name, w in weights.items() if w > 0)
    probs = np.array([weights[name] for name in names], dtype=float)
    return names, probs / probs.sum()


def mutate(genome: Genome, rng: np.random.Generator, space: SearchSpace,
           attempts: int = 20) -> tuple[Genome, Edit]:
    """Apply one mutation drawn from the space's weighted table; resample (a bounded number of
    times) when it is not applicable or the child fails validation."""
    names, probs = mutation_table(space)
    for _ in range(attempts):
        name = names[int(rng.choice(len(names), p=probs))]
        try:
            child, edit = MUTATIONS[name](genome, rng, space)
            analyze(child, space)
            return child, edit
        except (NotApplicable, InvalidGenome):
            continue
    raise VariationFailed(f"no valid mutation of genome {genome.hash} in {attempts} attempts")
