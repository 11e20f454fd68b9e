"""Steady-state tournament selection of *Large-Scale Evolution of Image Classifiers* (Real et al.
2017): each step picks two individuals at random from the population; the worse is killed (removed)
and the better is copied and mutated. The child joins the population when its result is told.
"""

from __future__ import annotations

from typing import Any

from . import deap_adapter as deap
from .base import Proposal
from .strategy import Member, Strategy, check_int, register_strategy


@register_strategy("tournament")
class TournamentStrategy(Strategy):
    """Real et al. 2017. Params: ``population_size`` (default 20).

    With several workers the kills happen at ask time, so the population may shrink below
    ``population_size`` while children are in flight; a population of one is mutated without a
    kill. Late initial individuals that would overshoot ``population_size`` drop the worst."""

    def _check_params(self, params: dict[str, Any]) -> dict[str, Any]:
        self._unknown(params, ("population_size",))
        return {"population_size": check_int(self.name, "population_size",
                                             params.get("population_size", 20), 1)}

    def _reset(self) -> None:
        self.pop: list[Member] = []

    def _has_parents(self) -> bool:
        return bool(self.pop)

    def _breed(self) -> Proposal:
        """Pick a random pair; kill the worse, mutate a copy of the better (ties: first drawn)."""
        if len(self.pop) == 1:
            parent = self.pop[0]
        else:
            i, j = (int(x) for x in self.rng.choice(len(self.pop), size=2, replace=False))
            a, b = self.pop[i], self.pop[j]
            winner = deap.sel_best([(a.id, a.fitness), (b.id, b.fitness)], 1)[0]
            parent, loser = (a, b) if winner == a.id else (b, a)
            self.pop.remove(loser)
        child, edit = self.variation.mutate(parent.genome, self.rng)
        return self._emit(child, (parent.id,), edit)

    def _admit(self, member: Member, tag: int) -> None:
        self.pop.append(member)
        if len(self.pop) > self.params["population_size"]:
            worst = deap.sel_worst([(m.id, m.fitness) for m in self.pop], 1)[0]
            self.pop = [m for m in self.pop if m.id != worst]

    def population(self) -> list[tuple[int, float]]:
        return [(m.id, m.fitness) for m in self.pop]

    def _extra_state(self) -> dict[str, Any]:
        return {"population": [self.encode_member(m) for m in self.pop]}

    def _load_extra(self, state: dict[str, Any]) -> None:
        self.pop = [self.decode_member(item) for item in state["population"]]
