"""The mutation protocol: pure functions ``(genome, rng, space) -> (child, edit)``.

A mutation never changes its input (genomes are immutable values) and draws all randomness from
the explicit ``rng`` (a ``numpy.random.Generator``). When it cannot apply — nothing to remove, no
skip to add — it raises :class:`NotApplicable` and :func:`mutate` draws another one. The ``edit``
says what changed, so weight inheritance and lineage know it.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import EvographError, InvalidGenome
from ..genome.cells import expand
from ..genome.cells.skeleton import skeleton_node, template_id
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
    def from_dict(data: dict[str, Any]) -> Edit:
        return Edit(data["mutation"], dict(data.get("args", {})), bool(data.get("inherit", True)),
                    tuple(data.get("changed", ())))

    def describe(self) -> str:
        args = ", ".join(f"{k}={v}" for k, v in sorted(self.args.items()))
        return f"{self.mutation}({args})" if args else self.mutation


Mutation = Callable[[Genome, np.random.Generator, SearchSpace], tuple[Genome, Edit]]
MUTATIONS: dict[str, Mutation] = {}
FAMILIES: dict[str, tuple[str, ...]] = {}  # mutation name -> space families it applies to


def register_mutation(name: str, families: tuple[str, ...] = ("conv", "mlp")):
    """Decorator: register a mutation under ``name`` for the given space families. The
    registered function completes its edit's ``changed`` with :func:`reshaped_nodes`, so each
    mutation lists what it edits and the knock-on reshapes downstream are found in one place."""
    def wrap(fn: Mutation) -> Mutation:
        @functools.wraps(fn)
        def mutation(genome: Genome, rng: np.random.Generator,
                     space: SearchSpace) -> tuple[Genome, Edit]:
            child, edit = fn(genome, rng, space)
            if not edit.inherit:
                return child, edit
            extra = reshaped_nodes(genome, child) - set(edit.changed)
            if not extra:
                return child, edit
            return child, dataclasses.replace(edit, changed=tuple(sorted(set(edit.changed) | extra)))
        MUTATIONS[name] = mutation
        FAMILIES[name] = families
        return mutation
    return wrap


def reshaped_nodes(parent: Genome, child: Genome) -> set[int]:
    """Nodes of ``child`` that ``parent`` also has but whose merged input shape differs, so their
    tensors are reshaped: a node takes its channels from its first input (the smallest id), so an
    edit upstream — a new first input, a width passed on through an identity — reshapes nodes
    the edit never touched. In a cell genome, every copy of the cell counts: a template node is
    reshaped when any of its copies is (a cell whose output widens reshapes the next cells'
    inputs), or new when a copy the parent's network pruned comes back (an edge that led
    nowhere now leads on). Empty when either genome does not validate (such a child is never
    trained)."""
    try:
        before, after = _input_shapes(parent), _input_shapes(child)
    except InvalidGenome:
        return set()
    return {template for node, (template, shape) in after.items()
            if (before[node][1] != shape if node in before else parent.has_node(template))}


def _input_shapes(genome: Genome) -> dict[int, tuple[int, tuple]]:
    """Network node id -> (the genome node it belongs to, its merged input shape)."""
    skeleton = skeleton_node(genome)
    if skeleton is None:
        return {node: (node, shape) for node, shape in analyze(genome).in_shapes.items()}
    network = expand(genome)
    return {node: (template_id(node, skeleton.id), shape)
            for node, shape in analyze(network).in_shapes.items()}


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
