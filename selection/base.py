"""The proposer protocol (``init / ask / tell / state_dict / load_state_dict``) and its data.

Evolution strategies, the RL controller and random search are all proposers; a run does not care
which. A proposer works on *individuals* (an id in birth order and a genome) through a
:class:`Variation` — how genomes are sampled, mutated, crossed and (de)serialised — so the same
strategies drive network genomes and, in benchmarks, toy bit strings.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from ..genome.core import Genome
from ..genome.io import from_dict, to_dict
from ..genome.space import SearchSpace
from ..operators.base import Edit, mutate


def derive_seed(run_seed: int, individual_id: int) -> int:
    """The seed of one individual: a function of (run seed, id) only — never of worker identity
    or completion order — so runs replay exactly."""
    return int(np.random.SeedSequence([run_seed, individual_id]).generate_state(1)[0])


def is_finite_fitness(value: float | None) -> bool:
    return value is not None and isinstance(value, (int, float)) and math.isfinite(value)


@dataclass(frozen=True)
class Proposal:
    """A genome to evaluate: its id (birth order), parents' ids, the edit that made it, a seed."""

    id: int
    genome: Any
    parents: tuple[int, ...] = ()
    edit: Edit | None = None
    seed: int = 0


@dataclass(frozen=True)
class Result:
    """The outcome of evaluating a proposal. ``fitness`` None or non-finite means the candidate
    failed or was infeasible: it never enters selection. ``objectives`` are extra objectives to
    *minimise* for multi-objective strategies (e.g. parameters, FLOPs)."""

    id: int
    fitness: float | None
    objectives: tuple[float, ...] = ()


@dataclass
class Variation:
    """How a strategy makes and stores genomes (pure functions with explicit RNGs)."""

    initial: Callable[[np.random.Generator], Any]
    sample: Callable[[np.random.Generator], Any]
    mutate: Callable[[Any, np.random.Generator], tuple[Any, Edit]]
    encode: Callable[[Any], Any]
    decode: Callable[[Any], Any]
    crossover: Callable[[Any, Any, np.random.Generator], tuple[Any, Edit]] | None = None
    key: Callable[[Any], Any] = field(default=lambda g: g)

    @staticmethod
    def for_space(space: SearchSpace, input_shape: tuple[int, ...],
                  num_classes: int) -> Variation:
        from ..operators.crossover import crossover as cross
        return Variation(
            initial=lambda rng: space.initial_genome(rng, input_shape, num_classes),
            sample=lambda rng: space.sample(rng, input_shape, num_classes),
            mutate=lambda genome, rng: mutate(genome, rng, space),
            encode=to_dict, decode=from_dict,
            crossover=lambda a, b, rng: cross(a, b, rng, space),
            key=lambda g: g.hash if isinstance(g, Genome) else g)


class Proposer(Protocol):
    """What a run needs from a strategy. ``state_dict`` must be JSON-serialisable."""

    name: str

    def ask(self, n: int) -> list[Proposal]: ...

    def tell(self, results: list[Result]) -> None: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...
