"""NSGA-II (Deb, Pratap, Agarwal & Meyarivan 2002) for accuracy against cost: maximise the
fitness while minimising every entry of ``Result.objectives`` (parameters, FLOPs, latency, ...).

Steady-state-friendly (mu + lambda): parents are picked by binary tournaments under the crowded
comparison (front rank, then crowding distance); children come from crossover (when available)
and mutation. Told children gather as offspring; once ``population_size`` of them are in, parents
and offspring are reduced back to ``population_size`` by DEAP's ``selNSGA2``. Until the parent
population is full, every feasible result joins it directly.
"""

from __future__ import annotations

from typing import Any

from . import deap_adapter as deap
from .base import Proposal, Result
from .strategy import (
    Member,
    Strategy,
    check_int,
    check_prob,
    finite_or_none,
    register_strategy,
    vary,
)


@register_strategy("nsga2")
class NSGA2Strategy(Strategy):
    """Params: ``population_size`` P (20, at least 2), ``crossover_prob`` (0.9, as in Deb et al.).
    The number of objectives is fixed by the first feasible result."""

    def _check_params(self, params: dict[str, Any]) -> dict[str, Any]:
        self._unknown(params, ("population_size", "crossover_prob"))
        return {"population_size": check_int(self.name, "population_size",
                                             params.get("population_size", 20), 2),
                "crossover_prob": check_prob(self.name, "crossover_prob",
                                             params.get("crossover_prob", 0.9))}

    def _reset(self) -> None:
        self.n_values: int | None = None        # 1 + len(objectives), from the first result
        self.parents: list[Member] = []
        self.offspring: list[Member] = []
        self.front: list[Member] = []           # non-dominated archive of every feasible result
        self._ranked: dict[int, tuple[int, float]] | None = None

    @staticmethod
    def values(m: Member) -> tuple[float, ...]:
        return (m.fitness, *m.objectives)

    def _member(self, result: Result, genome: Any) -> Member | None:
        """Feasible only if the fitness and every objective are finite."""
        fitness = finite_or_none(result.fitness)
        objectives = [finite_or_none(x) for x in result.objectives]
        if fitness is None or any(x is None for x in objectives):
            return None
        if self.n_values is None:
            self.n_values = 1 + len(objectives)
        elif 1 + len(objectives) != self.n_values:
            raise ValueError(f"strategy 'nsga2': result {result.id} has {len(objectives)} "
                             f"objectives, earlier results had {self.n_values - 1}")
        return Member(result.id, genome, fitness, tuple(objectives))

    def _has_parents(self) -> bool:
        return bool(self.parents)

    def _select_parent(self) -> Member:
        if self._ranked is None:
            self._ranked = deap.rank_and_crowding([(i, self.values(m))
                                                   for i, m in enumerate(self.parents)])
        return self.parents[deap.crowded_tournament(self._ranked, 1, self.rng)[0]]

    def _breed(self) -> Proposal:
        """Crowded binary tournament for each parent; crossover (if any) then mutation."""
        first = self._select_parent()

        def mate() -> Member | None:
            return self._select_parent() if len(self.parents) > 1 else None

        child, parents, edit = vary(self.variation, self.rng, first, mate,
                                    self.params["crossover_prob"])
        return self._emit(child, parents, edit)

    def _admit(self, member: Member, tag: int) -> None:
        self._update_front(member)
        size = self.params["population_size"]
        self.offspring.append(member)
        if len(self.parents) < size or len(self.offspring) >= size:
            union = self.parents + self.offspring
            keep = deap.sel_nsga2([(i, self.values(m)) for i, m in enumerate(union)], size)
            self.parents = [union[i] for i in keep]
            self.offspring = []
            self._ranked = None

    def _update_front(self, member: Member) -> None:
        union = self.front + [member]
        keep = set(deap.first_front([(i, self.values(m)) for i, m in enumerate(union)]))
        self.front = [m for i, m in enumerate(union) if i in keep]

    def pareto_front(self) -> list[tuple[int, float, tuple[float, ...]]]:
        """``(id, fitness, objectives)`` of every non-dominated feasible result told so far."""
        return [(m.id, m.fitness, m.objectives) for m in self.front]

    def population(self) -> list[tuple[int, float]]:
        return [(m.id, m.fitness) for m in self.parents + self.offspring]

    def _extra_state(self) -> dict[str, Any]:
        enc = self.encode_member
        return {"n_values": self.n_values, "parents": [enc(m) for m in self.parents],
                "offspring": [enc(m) for m in self.offspring],
                "front": [enc(m) for m in self.front]}

    def _load_extra(self, state: dict[str, Any]) -> None:
        self.n_values = None if state["n_values"] is None else int(state["n_values"])
        self.parents = [self.decode_member(item) for item in state["parents"]]
        self.offspring = [self.decode_member(item) for item in state["offspring"]]
        self.front = [self.decode_member(item) for item in state["front"]]
