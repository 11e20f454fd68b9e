"""The common machinery of the evolution strategies: ids, seeds, in-flight bookkeeping, the
infeasible-result guard, ``best()``, JSON state, parameter checks and the registry.

Every strategy is an *asynchronous* proposer (steady-state with several workers, as in Real et
al. 2017 and 2019): ``ask`` may be called again before earlier proposals are told, and results
arrive in any order and any batch size. A strategy owns one ``numpy.random.Generator`` seeded
from the run seed; ids are assigned in birth order from 0 and each proposal's seed is
``derive_seed(run seed, id)``.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from ..errors import ConfigError
from ..operators.base import Edit
from .base import Proposal, Result, Variation, derive_seed

STRATEGIES: dict[str, type[Strategy]] = {}
STATE_FORMAT = 1


def register_strategy(name: str):
    """Decorator: register a strategy class under ``name`` (also set as its ``name``)."""
    def wrap(cls: type[Strategy]) -> type[Strategy]:
        cls.name = name
        STRATEGIES[name] = cls
        return cls
    return wrap


def make_strategy(name: str, variation: Variation, seed: int, **params: Any) -> Strategy:
    """Build a registered strategy; ConfigError for an unknown name or a bad parameter."""
    if name not in STRATEGIES:
        raise ConfigError(f"unknown strategy {name!r} (known: {', '.join(sorted(STRATEGIES))})")
    return STRATEGIES[name](variation, seed, **params)


def finite_or_none(value: Any) -> float | None:
    """``value`` as a float if it is a finite real number (numpy scalars included), else None.
    None, NaN, ±inf, bools and non-numbers all mean "failed or infeasible"."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


@dataclass(frozen=True)
class Member:
    """An evaluated individual with finite fitness (only these ever enter a population)."""

    id: int
    genome: Any
    fitness: float
    objectives: tuple[float, ...] = ()


@dataclass(frozen=True)
class InFlight:
    """A proposal handed out and not yet told; ``tag`` is strategy data (e.g. a generation)."""

    proposal: Proposal
    tag: int = 0


# -- parameter checks ----------------------------------------------------------------------------
def check_int(strategy: str, name: str, value: Any, lo: int, hi: float = math.inf,
              hi_name: str | None = None) -> int:
    """An integer parameter in ``[lo, hi]`` or a ConfigError naming the strategy and bound."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ConfigError(f"strategy {strategy!r}: {name}={value!r} must be an integer")
    if not lo <= value <= hi:
        bound = f"between {lo} and {hi_name or hi}" if hi != math.inf else f"at least {lo}"
        raise ConfigError(f"strategy {strategy!r}: {name}={value} must be {bound}")
    return int(value)


def check_prob(strategy: str, name: str, value: Any) -> float:
    """A probability in [0, 1] or a ConfigError."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) \
            or not 0.0 <= float(value) <= 1.0:
        raise ConfigError(f"strategy {strategy!r}: {name}={value!r} must be a probability "
                          "between 0 and 1")
    return float(value)


def check_bool(strategy: str, name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"strategy {strategy!r}: {name}={value!r} must be true or false")
    return value


# -- variation -----------------------------------------------------------------------------------
def combine_edits(cross: Edit, mut: Edit) -> Edit:
    """One edit for "crossover then mutation": both recorded, weights inherited only if both
    inherit, changed nodes the union."""
    return Edit(f"{cross.mutation}+{mut.mutation}",
                {"crossover": cross.to_dict(), "mutation": mut.to_dict()},
                inherit=cross.inherit and mut.inherit,
                changed=tuple(sorted(set(cross.changed) | set(mut.changed))))


def vary(variation: Variation, rng: np.random.Generator, first: Member,
         second: Callable[[], Member | None], crossover_prob: float
         ) -> tuple[Any, tuple[int, ...], Edit]:
    """A child of ``first``: with probability ``crossover_prob`` (when the variation has a
    crossover and ``second()`` gives a mate) crossover then mutation, else mutation alone."""
    if variation.crossover is not None and crossover_prob > 0 and rng.random() < crossover_prob:
        mate = second()
        if mate is not None:
            child, cross = variation.crossover(first.genome, mate.genome, rng)
            child, mut = variation.mutate(child, rng)
            return child, (first.id, mate.id), combine_edits(cross, mut)
    child, edit = variation.mutate(first.genome, rng)
    return child, (first.id,), edit


class Strategy:
    """Base class: subclasses define ``_breed`` (a proposal from the current population),
    ``_admit`` (a finite result arrives), ``_has_parents``, ``population`` and their own state.

    The initial phase hands out ``variation.initial`` individuals until ``population_size``
    have been proposed; afterwards asks breed from the population, or propose more initial
    individuals while it is still empty (all initial ones in flight, or all failed)."""

    name: ClassVar[str] = "strategy"

    def __init__(self, variation: Variation, seed: int, **params: Any):
        self.variation = variation
        self.seed = check_int(self.name, "seed", seed, 0)
        self.params = self._check_params(params)
        self.rng = np.random.default_rng(self.seed)
        self.next_id = 0
        self.n_initial = 0
        self.n_told = 0
        self.n_failed = 0
        self.in_flight_: dict[int, InFlight] = {}
        self._best: tuple[int, float] | None = None
        self._stored_genomes: Callable[[int], Any] | None = None
        self.seeds: tuple[Any, ...] = ()
        self._reset()

    # -- to override ---------------------------------------------------------------------------
    def _check_params(self, params: dict[str, Any]) -> dict[str, Any]:
        raise NotImplementedError

    def _reset(self) -> None:
        """Create the strategy's own (empty) population structures."""

    def _has_parents(self) -> bool:
        raise NotImplementedError

    def _breed(self) -> Proposal:
        raise NotImplementedError

    def _admit(self, member: Member, tag: int) -> None:
        raise NotImplementedError

    def _on_failed(self, individual_id: int, tag: int) -> None:
        """An infeasible result arrived (it never enters the population)."""

    def _extra_state(self) -> dict[str, Any]:
        return {}

    def _load_extra(self, state: dict[str, Any]) -> None:
        pass

    def population(self) -> list[tuple[int, float]]:
        raise NotImplementedError

    # -- parameters ----------------------------------------------------------------------------
    def _unknown(self, params: dict[str, Any], known: tuple[str, ...]) -> None:
        extra = sorted(set(params) - set(known))
        if extra:
            raise ConfigError(f"strategy {self.name!r}: unknown parameter {extra[0]!r} "
                              f"(known: {', '.join(known)})")

    # -- the proposer protocol -----------------------------------------------------------------
    def ask(self, n: int) -> list[Proposal]:
        """``n`` new proposals; may be called again before earlier ones are told."""
        check_int(self.name, "n", n, 0)
        return [self._propose() for _ in range(n)]

    def _propose(self) -> Proposal:
        if self.n_initial < self.params["population_size"] or not self._has_parents():
            return self._initial()
        return self._breed()

    def _initial(self, tag: int = 0) -> Proposal:
        """The next initial individual: the k-th is ``seeds[k]`` while there are seeds (its
        birth edit ``seeded``, with ``index`` k), then ``variation.initial``."""
        k = self.n_initial
        self.n_initial += 1
        if k < len(self.seeds):
            return self._emit(self.seeds[k], (), Edit("seeded", {"index": k}, inherit=False),
                              tag)
        return self._emit(self.variation.initial(self.rng), (), None, tag)

    def seed_with(self, genomes: Any) -> None:
        """Start from given genomes (``evograph run --init``): the first initial individuals
        are these, in order, then the usual ones. Call before :meth:`load_state_dict` (a
        state counts the seeds it was made with), with the same genomes on every resume. At
        most ``population_size``; a strategy that samples every proposal itself (its own
        ``ask``) cannot take them."""
        genomes = tuple(genomes)
        if genomes and type(self).ask is not Strategy.ask:
            raise ConfigError(f"strategy {self.name!r} samples every proposal itself; it cannot "
                              "start from given genomes (--init)")
        size = self.params["population_size"]
        if len(genomes) > size:
            raise ConfigError(f"strategy {self.name!r}: {len(genomes)} genomes given to start "
                              f"from, more than its population_size={size}")
        self.seeds = genomes

    def _emit(self, genome: Any, parents: tuple[int, ...], edit: Edit | None,
              tag: int = 0) -> Proposal:
        """Give the next id (birth order) and its derived seed; remember it as in flight."""
        pid = self.next_id
        self.next_id += 1
        proposal = Proposal(pid, genome, tuple(parents), edit, derive_seed(self.seed, pid))
        self.in_flight_[pid] = InFlight(proposal, tag)
        return proposal

    def tell(self, results: list[Result]) -> None:
        """Record results, in any order; non-finite ones never reach the population."""
        for result in results:
            flight = self.in_flight_.pop(result.id, None)
            if flight is None:
                raise ValueError(f"strategy {self.name!r}: result for individual {result.id}, "
                                 "which is not in flight")
            self.n_told += 1
            member = self._member(result, flight.proposal.genome)
            if member is None:
                self.n_failed += 1
                self._on_failed(result.id, flight.tag)
                continue
            if self._best is None or member.fitness > self._best[1]:
                self._best = (member.id, member.fitness)
            self._admit(member, flight.tag)

    def _member(self, result: Result, genome: Any) -> Member | None:
        fitness = finite_or_none(result.fitness)
        if fitness is None:
            return None
        return Member(result.id, genome, fitness, ())

    def best(self) -> tuple[int, float] | None:
        """``(id, fitness)`` of the best finite result told so far (first one on ties)."""
        return self._best

    def in_flight(self) -> list[Proposal]:
        """The proposals handed out and not yet told (to re-run them after a resume)."""
        return [flight.proposal for flight in self.in_flight_.values()]

    # -- state ---------------------------------------------------------------------------------
    def keep_genomes_by_id(self, lookup: Callable[[int], Any] | None) -> None:
        """Let saved states leave genomes out, where something else keeps every proposal's
        genome under its id — a run's store does (members are told proposals, so their ids are
        its individuals' ids). Writing the genomes again into every saved state costs a big
        population real time and JSON twice per batch (figures: docs/performance.md); with a
        ``lookup`` (id → genome) states carry ids and loading reads genomes through it.
        ``None`` makes states self-contained again; a state with genomes loads either way."""
        self._stored_genomes = lookup

    def _encode_genome(self, genome: Any) -> dict[str, Any]:
        return {} if self._stored_genomes is not None else {"genome": self.variation.encode(genome)}

    def _decode_genome(self, id: int, data: dict[str, Any]) -> Any:
        if "genome" in data:
            return self.variation.decode(data["genome"])
        if self._stored_genomes is None:
            raise ConfigError(f"strategy {self.name!r}: the state leaves out the genome of "
                              f"individual {id} (its run's store keeps it): load it through "
                              "that run")
        return self._stored_genomes(id)

    def encode_member(self, m: Member) -> dict[str, Any]:
        return {"id": m.id, **self._encode_genome(m.genome), "fitness": m.fitness,
                "objectives": list(m.objectives)}

    def decode_member(self, data: dict[str, Any]) -> Member:
        id = int(data["id"])
        return Member(id, self._decode_genome(id, data), float(data["fitness"]),
                      tuple(float(x) for x in data["objectives"]))

    def _encode_flight(self, flight: InFlight) -> dict[str, Any]:
        p = flight.proposal
        return {"id": p.id, **self._encode_genome(p.genome), "parents": list(p.parents),
                "edit": p.edit.to_dict() if p.edit else None, "seed": p.seed, "tag": flight.tag}

    def _decode_flight(self, data: dict[str, Any]) -> InFlight:
        edit = Edit.from_dict(data["edit"]) if data["edit"] is not None else None
        id = int(data["id"])
        proposal = Proposal(id, self._decode_genome(id, data),
                            tuple(int(x) for x in data["parents"]), edit, int(data["seed"]))
        return InFlight(proposal, int(data["tag"]))

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue identically, JSON-serialisable (genomes through
        ``variation.encode`` or by id, see :meth:`keep_genomes_by_id`; the generator through
        ``bit_generator.state``)."""
        return {"strategy": self.name, "format": STATE_FORMAT, "seed": self.seed,
                "params": dict(self.params), "rng": self.rng.bit_generator.state,
                "next_id": self.next_id, "n_initial": self.n_initial, "n_told": self.n_told,
                "n_failed": self.n_failed, "best": list(self._best) if self._best else None,
                "in_flight": [self._encode_flight(f) for f in self.in_flight_.values()],
                **({"n_seeds": len(self.seeds)} if self.seeds else {}),
                **self._extra_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a :meth:`state_dict` (possibly after a JSON round trip)."""
        if state.get("strategy") != self.name:
            raise ConfigError(f"state of strategy {state.get('strategy')!r} cannot be loaded "
                              f"into strategy {self.name!r}")
        if state.get("format") != STATE_FORMAT:
            raise ConfigError(f"strategy state format {state.get('format')!r} is not supported "
                              f"(expected {STATE_FORMAT})")
        self.seed = check_int(self.name, "seed", state["seed"], 0)
        self.params = self._check_params(dict(state["params"]))
        if int(state.get("n_seeds", 0)) != len(self.seeds):
            raise ConfigError(f"strategy {self.name!r}: the state was made with "
                              f"{state.get('n_seeds', 0)} given starting genome(s), not "
                              f"{len(self.seeds)}: call seed_with with them first")
        self.rng = np.random.default_rng()
        self.rng.bit_generator.state = state["rng"]
        self.next_id, self.n_initial = int(state["next_id"]), int(state["n_initial"])
        self.n_told, self.n_failed = int(state["n_told"]), int(state["n_failed"])
        self._best = (int(state["best"][0]), float(state["best"][1])) if state["best"] else None
        flights = [self._decode_flight(item) for item in state["in_flight"]]
        self.in_flight_ = {f.proposal.id: f for f in flights}
        self._reset()
        self._load_extra(state)
