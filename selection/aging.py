"""Regularized (aging) evolution of *Regularized Evolution for Image Classifier Architecture
Search* (Real et al. 2019, Algorithm 1): sample ``S`` individuals uniformly from the population,
the best of the sample is the parent of a mutated child; when the child's result is in it joins
the population and the OLDEST individual is removed. With ``aging=False`` the WORST is removed
instead — the paper's non-aging control (plain tournament selection).
"""

from __future__ import annotations

from typing import Any

from . import deap_adapter as deap
from .base import Proposal
from .strategy import Member, Strategy, check_bool, check_int, register_strategy


@register_strategy("aging")
class AgingStrategy(Strategy):
    """Real et al. 2019. Params: ``population_size`` P (20), ``sample_size`` S (5, 1 <= S <= P),
    ``aging`` (True). Age is birth order: the oldest is the smallest id in the population."""

    def _check_params(self, params: dict[str, Any]) -> dict[str, Any]:
        self._unknown(params, ("population_size", "sample_size", "aging"))
        size = check_int(self.name, "population_size", params.get("population_size", 20), 1)
        sample = check_int(self.name, "sample_size", params.get("sample_size", 5), 1, size,
                           "population_size")
        return {"population_size": size, "sample_size": sample,
                "aging": check_bool(self.name, "aging", params.get("aging", True))}

    def _reset(self) -> None:
        self.pop: list[Member] = []

    def _has_parents(self) -> bool:
        return bool(self.pop)

    def _breed(self) -> Proposal:
        """Tournament of S drawn uniformly with replacement (``deap.tools.selTournament``, as
        the paper's sampling), then mutate a copy of the winner."""
        entries = [(i, m.fitness) for i, m in enumerate(self.pop)]
        index = deap.sel_tournament(entries, 1, self.params["sample_size"], self.rng)[0]
        parent = self.pop[index]
        child, edit = self.variation.mutate(parent.genome, self.rng)
        return self._emit(child, (parent.id,), edit)

    def _admit(self, member: Member, tag: int) -> None:
        """Add the child; while the population is over P remove the oldest (or the worst)."""
        self.pop.append(member)
        while len(self.pop) > self.params["population_size"]:
            if self.params["aging"]:
                victim = min(m.id for m in self.pop)
            else:
                victim = deap.sel_worst([(m.id, m.fitness) for m in self.pop], 1)[0]
            self.pop = [m for m in self.pop if m.id != victim]

    def population(self) -> list[tuple[int, float]]:
        return [(m.id, m.fitness) for m in self.pop]

    def _extra_state(self) -> dict[str, Any]:
        return {"population": [self.encode_member(m) for m in self.pop]}

    def _load_extra(self, state: dict[str, Any]) -> None:
        self.pop = [self.decode_member(item) for item in state["population"]]
