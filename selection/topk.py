"""Generational truncation selection ("keep the top k, breed the rest"), the genetic algorithm
of the classic neuroevolution demos: grade the generation, keep the ``k`` best plus a few random
lower scorers (diversity), and fill the population with children of the survivors — by crossover
then mutation when the variation has a crossover, by mutation otherwise.

It is generational but answers ``ask`` asynchronously: generation 0 is ``population_size``
initial individuals and every later one has ``population_size - k - random_survivors`` children.
A generation closes when all its children are told. Asks made while the current generation is
still open pre-breed the next generation's children from the best individuals known so far.
"""

from __future__ import annotations

from typing import Any

from . import deap_adapter as deap
from .base import Proposal
from .strategy import Member, Strategy, check_int, check_prob, register_strategy, vary


@register_strategy("topk")
class TopKStrategy(Strategy):
    """Params: ``population_size`` P (20), ``k`` (P//4, at least 1), ``random_survivors`` (1),
    ``crossover_prob`` (0.5); ``k + random_survivors`` must be below P."""

    def _check_params(self, params: dict[str, Any]) -> dict[str, Any]:
        self._unknown(params, ("population_size", "k", "random_survivors", "crossover_prob"))
        size = check_int(self.name, "population_size", params.get("population_size", 20), 2)
        k = check_int(self.name, "k", params.get("k", max(1, size // 4)), 1, size - 1,
                      "population_size - 1")
        extra = check_int(self.name, "random_survivors", params.get("random_survivors", 1), 0,
                          size - 1 - k, "population_size - k - 1")
        return {"population_size": size, "k": k, "random_survivors": extra,
                "crossover_prob": check_prob(self.name, "crossover_prob",
                                             params.get("crossover_prob", 0.5))}

    def _reset(self) -> None:
        self.generation = 0
        self.survivors: list[Member] = []
        self.proposed: dict[int, int] = {}        # generation -> children proposed
        self.told: dict[int, list[Member]] = {}   # generation -> finite children told
        self.waiting: dict[int, int] = {}         # generation -> children in flight

    def quota(self, generation: int) -> int:
        """Children per generation: P initial ones, then P minus the survivors."""
        p = self.params
        return p["population_size"] if generation == 0 else \
            p["population_size"] - p["k"] - p["random_survivors"]

    def _has_parents(self) -> bool:
        return bool(self._pool(self.generation))

    def _propose(self) -> Proposal:
        """Fill the lowest generation with open slots; initial individuals while the pool of
        parents is empty (generation 0, or every earlier result failed)."""
        gen = self.generation
        while self.proposed.get(gen, 0) >= self.quota(gen):
            gen += 1
        self.proposed[gen] = self.proposed.get(gen, 0) + 1
        self.waiting[gen] = self.waiting.get(gen, 0) + 1
        pool = self._pool(gen)
        if gen == 0 or not pool:
            return self._initial(tag=gen)
        return self._child(pool, gen)

    def _pool(self, gen: int) -> list[Member]:
        """Parents for generation ``gen``: the survivors when it is the current generation,
        else (pre-breeding) the top k of everything known so far."""
        if gen == self.generation:
            return self.survivors
        known = self.survivors + [m for g in sorted(self.told) for m in self.told[g]]
        keep = set(deap.sel_best([(m.id, m.fitness) for m in known], self.params["k"]))
        return [m for m in known if m.id in keep]

    def _child(self, pool: list[Member], gen: int) -> Proposal:
        first = pool[int(self.rng.integers(len(pool)))]

        def mate() -> Member | None:
            others = [m for m in pool if m.id != first.id]
            return others[int(self.rng.integers(len(others)))] if others else None

        child, parents, edit = vary(self.variation, self.rng, first, mate,
                                    self.params["crossover_prob"])
        return self._emit(child, parents, edit, tag=gen)

    def _admit(self, member: Member, tag: int) -> None:
        self.told.setdefault(tag, []).append(member)
        self._arrived(tag)

    def _on_failed(self, individual_id: int, tag: int) -> None:
        self._arrived(tag)

    def _arrived(self, tag: int) -> None:
        self.waiting[tag] -= 1
        while self.proposed.get(self.generation, 0) >= self.quota(self.generation) \
                and self.waiting.get(self.generation, 0) == 0:
            self._close_generation()

    def _close_generation(self) -> None:
        """Grade survivors + the generation's finite children: keep the top k plus
        ``random_survivors`` drawn uniformly from the rest; move to the next generation."""
        gen = self.generation
        pool = self.survivors + self.told.pop(gen, [])
        ranked = deap.sel_best([(m.id, m.fitness) for m in pool], len(pool))
        keep, rest = ranked[:self.params["k"]], ranked[self.params["k"]:]
        count = min(self.params["random_survivors"], len(rest))
        if count:
            keep += [rest[int(i)] for i in sorted(self.rng.choice(len(rest), count, replace=False))]
        by_id = {m.id: m for m in pool}
        self.survivors = [by_id[i] for i in keep]
        self.proposed.pop(gen, None)
        self.waiting.pop(gen, None)
        self.generation += 1

    def population(self) -> list[tuple[int, float]]:
        """The survivors and the finite children told of the open generations."""
        told = [m for g in sorted(self.told) for m in self.told[g]]
        return [(m.id, m.fitness) for m in self.survivors + told]

    def _extra_state(self) -> dict[str, Any]:
        return {"generation": self.generation,
                "survivors": [self.encode_member(m) for m in self.survivors],
                "proposed": [[g, n] for g, n in sorted(self.proposed.items())],
                "waiting": [[g, n] for g, n in sorted(self.waiting.items())],
                "told": [[g, [self.encode_member(m) for m in ms]]
                         for g, ms in sorted(self.told.items())]}

    def _load_extra(self, state: dict[str, Any]) -> None:
        self.generation = int(state["generation"])
        self.survivors = [self.decode_member(item) for item in state["survivors"]]
        self.proposed = {int(g): int(n) for g, n in state["proposed"]}
        self.waiting = {int(g): int(n) for g, n in state["waiting"]}
        self.told = {int(g): [self.decode_member(item) for item in ms]
                     for g, ms in state["told"]}
