"""Which individuals of a run an export takes (``--best``, ``--id``, ``--pareto``) and the
lineage its manifest records."""

from __future__ import annotations

from typing import Any

from ...errors import ExportError
from ...genome.io import from_dict
from ...genome.validate import analyze
from ...selection.deap_adapter import first_front
from ..store import RunStore


def choose(store: RunStore, best: bool, id: int | None, pareto: bool,
           evolved: bool = False) -> list[int]:
    """The ids to export: ``--best`` (the default: the search's best by validation here; the
    export swaps in a final selection's pick unless ``evolved``), ``--id ID`` or ``--pareto``."""
    if sum([bool(best), id is not None, bool(pareto)]) > 1:
        raise ExportError("choose one of best, id and pareto")
    if evolved and (id is not None or pareto):
        raise ExportError("evolved goes with best (the search's best by validation with its "
                          "evolved weights); id and pareto always export evolved weights")
    if id is not None:
        return [int(id)]
    if pareto:
        return pareto_ids(store)
    top = store.best(1)
    if not top:
        raise ExportError(f"run {store.run_dir} has no completed evaluation to export yet")
    return [top[0].id]


def pareto_ids(store: RunStore) -> list[int]:
    """Ids of the completed individuals no other beats on both validation accuracy (higher)
    and parameter count (lower), fewest parameters first (DEAP's non-dominated sort). Whether
    their weights can be exported (kept, pruned, never written) is export's to say."""
    entries = []
    for row in store.evaluations():
        if row.status == "completed" and row.fitness is not None:
            accuracy = row.metrics.get("val_accuracy", row.fitness)
            params = row.metrics.get("params")
            if params is None:
                params = analyze(from_dict(store.individual(row.id).genome)).params
            entries.append((row.id, (float(accuracy), float(params))))
    if not entries:
        raise ExportError(f"run {store.run_dir} has no completed evaluation to export yet")
    points = dict(entries)
    return sorted(first_front(entries), key=lambda i: (points[i][1], -points[i][0], i))


def lineage(store: RunStore, id: int) -> dict[str, Any]:
    """Parents, every ancestor's id, and each birth on the way (id, parents, mutation)."""
    rows = {row.id: row for row in store.individuals()}
    seen, todo = set(), list(rows[id].parents)
    while todo:
        current = todo.pop()
        if current not in seen and current in rows:
            seen.add(current)
            todo.extend(rows[current].parents)
    births = [{"id": i, "parents": list(rows[i].parents), "mutation": rows[i].mutation}
              for i in sorted(seen | {id})]
    return {"parents": list(rows[id].parents), "ancestors": sorted(seen), "births": births}
