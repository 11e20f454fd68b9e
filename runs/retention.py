"""Which trained weights a run keeps: ``[weights] keep = "policy"`` (the default) or ``"all"``.

Every evaluation writes its trained weights (``RUN_DIR/weights/<id>.safetensors``): tens of
megabytes after minutes on digits, gigabytes at CIFAR sizes. After each tell the policy keeps

* the strategy's population (``population()``: every future parent comes from it),
* the parents of every individual asked but not yet told (a child's parent weights must exist
  when its task starts: a missing file would silently train it from scratch),
* the line of descent of the best (each first parent, whose weights it inherited, back to an
  initial individual), and so the lines of the two above as well: a new best is always in the
  population when it is told, and its line must be whole then,
* the ``top_k`` best by validation fitness (ranked as :meth:`RunStore.best` ranks), and the
  best of each of the ``top_k`` best distinct architectures (the final selection's candidates:
  their evolved weights stay beside the retrained ones),
* the non-dominated set of validation accuracy against parameters (``export --pareto``),

and prunes the rest: the store marks them pruned in one transaction (``evaluations.weights``
NULL, ``pruned_at`` set, a ``pruned`` event with the ids), then deletes the files
(:meth:`~evograph.runs.store_final.StoreFinal.prune_weights`). The final selection's weights are
separate files, never pruned. Whatever leaves the top k, the population or the front never
returns to them, so the policy only ever looks at the weights still kept and at what the last
tell added: a few small queries per tell, whatever the run's size. The figures (disk use with
and without pruning) are in docs/final.md.
"""

from __future__ import annotations

import math
from typing import Any

from .store import RunStore

PRUNE_AT_ONCE = 16  # prune once this many files are prunable: one commit for many files


def population_ids(proposer: Any) -> set[int] | None:
    """The ids the proposer may still breed from; None if it does not say (then nothing is
    pruned: any individual might become a parent)."""
    population = getattr(proposer, "population", None)
    return {member[0] for member in population()} if callable(population) else None


def keep_set(store: RunStore, told: int, population: set[int], top_k: int) -> set[int]:
    """The ids whose weights the policy keeps after batch ``told`` was told: the lines of
    descent of the population, of the parents still needed and of the best (so that the best's
    line is whole whenever a new best appears: it was in the population when told), the top k
    and the front."""
    rows = sorted(store.kept_completed(told), key=_rank)
    ranked = [row[0] for row in rows]
    roots = set(population) | store.parents_of_open(told) | set(ranked[:1])
    return (store.first_parent_lines(roots) | set(ranked[:top_k]) | distinct_top(rows, top_k)
            | pareto_ids(rows))


def distinct_top(ranked: list[tuple], k: int) -> set[int]:
    """The best individual of each of the ``k`` best distinct architectures (the final
    selection's candidates, while ``[final] candidates <= top_k``)."""
    best: dict = {}
    for row in ranked:
        if len(best) == k:
            break
        best.setdefault(row[5], row[0])
    return set(best.values())


def prunable(store: RunStore, told: int, population: set[int], top_k: int) -> list[int]:
    """Told individuals whose weights are kept but not needed by the policy."""
    keep = keep_set(store, told, population, top_k)
    return [i for i in store.weights_kept(told) if i not in keep]


def after_tell(driver: Any, at_least: int = PRUNE_AT_ONCE) -> int:
    """Prune the weights the policy does not keep, once ``at_least`` are prunable (the driver
    calls this after each tell, and once with ``at_least=1`` when the search ends); the number
    pruned. Nothing for ``keep = "all"`` or a proposer without a population."""
    weights = driver.parts.config.weights
    population = population_ids(driver.parts.proposer)
    if weights.keep != "policy" or population is None:
        return 0
    ids = prunable(driver.store, driver.told, population, weights.top_k)
    if len(ids) < at_least:
        return 0
    driver.store.prune_weights(ids, {"told_batch": driver.told})
    return len(ids)


def _rank(row: tuple) -> tuple:
    """:meth:`RunStore.best`'s order: fitness down, a known validation loss first, the loss
    up, the id up."""
    loss = row[2] if isinstance(row[2], (int, float)) and math.isfinite(row[2]) else None
    return (-row[1], loss is None, loss if loss is not None else 0.0, row[0])


def pareto_ids(rows: list[tuple]) -> set[int]:
    """The non-dominated rows of accuracy (higher) against parameters (fewer)."""
    points = sorted((row for row in rows if isinstance(row[3], (int, float))
                     and isinstance(row[4], (int, float))), key=lambda r: (r[4], -r[3], r[0]))
    front, best = set(), -math.inf
    for row in points:
        if row[3] > best:
            front.add(row[0])
            best = row[3]
    return front
