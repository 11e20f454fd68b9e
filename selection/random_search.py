"""Random search: every proposal is a fresh ``variation.sample`` — the baseline every
architecture-search paper compares against (e.g. Real et al. 2019, Fig. 3 and the toy experiment).
"""

from __future__ import annotations

from typing import Any

from . import deap_adapter as deap
from .base import Proposal
from .strategy import Member, Strategy, check_int, register_strategy


@register_strategy("random")
class RandomSearch(Strategy):
    """Params: ``population_size`` (20): how many of the best finite results ``population()``
    keeps (a hall of fame; it never influences the proposals)."""

    def _check_params(self, params: dict[str, Any]) -> dict[str, Any]:
        self._unknown(params, ("population_size",))
        return {"population_size": check_int(self.name, "population_size",
                                             params.get("population_size", 20), 1)}

    def _reset(self) -> None:
        self.hall: list[Member] = []

    def _has_parents(self) -> bool:
        return False

    def _propose(self) -> Proposal:
        """The given starting genomes first (``--init``), then always a random genome of the
        space, never a mutation; no parents."""
        if self.n_initial < len(self.seeds):
            return self._initial()
        return self._emit(self.variation.sample(self.rng), (), None)

    def _admit(self, member: Member, tag: int) -> None:
        self.hall.append(member)
        if len(self.hall) > self.params["population_size"]:
            keep = set(deap.sel_best([(m.id, m.fitness) for m in self.hall],
                                     self.params["population_size"]))
            self.hall = [m for m in self.hall if m.id in keep]

    def population(self) -> list[tuple[int, float]]:
        return [(m.id, m.fitness) for m in self.hall]

    def _extra_state(self) -> dict[str, Any]:
        return {"population": [self.encode_member(m) for m in self.hall]}

    def _load_extra(self, state: dict[str, Any]) -> None:
        self.hall = [self.decode_member(item) for item in state["population"]]
