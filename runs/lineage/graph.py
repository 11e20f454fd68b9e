"""The lineage of a run: who descended from whom, by which edit, and how fitness moved.

:func:`lineage` reads a run store (read-only, so it works while a driver is still writing) and
returns a ``networkx.DiGraph`` with a node per individual and an edge per parent -> child birth.
Parents always have smaller ids than their children (ids are birth order), so the graph is a DAG
in which time flows one way. The queries below work on that graph: ancestry, the line of descent
of the best (following the first parent, the one whose weights the child inherits), descendants,
mutation statistics in the spirit of Real et al. 2017 (*Large-Scale Evolution of Image
Classifiers*: which operators pay off) and the diff between two genomes.

Node attributes: ``genome_hash``, ``arch_hash``, ``seed``, ``batch``, ``order`` (birth rank),
``created_at``, ``status``, ``attempt``, ``fitness`` (None unless completed and finite),
``params``, ``flops``, ``wall_time``, ``started_at``, ``finished_at``, ``error``, ``mutation``
(the edit that made it), ``metrics`` (scalars only), ``genome`` (its JSON dict), ``alive`` (still
in the proposer's latest population; None if the strategy keeps none) and ``age_at_death`` (births
it lived through; see :func:`_ages`). Edge attributes: ``mutation``, ``args``, ``inherit``,
``changed``, ``inherited`` (the weight-copy report), ``parent_index`` (0 = the weights donor),
``delta`` (child fitness minus this parent's, when both are finite).
"""

from __future__ import annotations

import bisect
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import networkx as nx

from ...errors import RunStoreError
from ...genome.io import from_dict
from ...genome.validate import analyze
from ..store import EvaluationRow, IndividualRow, RunStore
from .diff import GenomeDiff, genome_diff

__all__ = ["GenomeDiff", "MutationStat", "ancestry", "best_id", "descendants", "diff",
           "first_parent", "genome_diff", "line_of_descent", "lineage", "mutation_stats",
           "objectives_of", "open_store", "ranked"]

POPULATION_KEYS = ("population", "parents", "offspring", "members")  # where strategies keep them


@contextmanager
def open_store(source: str | os.PathLike | RunStore) -> Iterator[RunStore]:
    """The store itself, or the run directory opened read-only (and closed afterwards)."""
    if isinstance(source, RunStore):
        yield source
        return
    with RunStore.open(source, readonly=True) as store:
        yield store


def lineage(source: str | os.PathLike | RunStore) -> nx.DiGraph:
    """The lineage of a run (a run directory or an open :class:`RunStore`) as a DiGraph."""
    with open_store(source) as store:
        individuals = store.individuals()
        evaluations = {e.id: e for e in store.evaluations()}
        state = store.load_proposer_state()
        deaths = store.events("died")
        g = nx.DiGraph(run_id=store.run_id, run_dir=str(store.run_dir),
                       strategy=store.config.get("strategy", {}).get("name"),
                       objectives=objectives_of(store.config))
    for rank, ind in enumerate(individuals):
        g.add_node(ind.id, **_node_attrs(ind, evaluations.get(ind.id), rank))
    for ind in individuals:
        for k, parent in enumerate(ind.parents):
            if parent not in g:
                raise RunStoreError(f"run {g.graph['run_dir']}: individual {ind.id} names parent "
                                    f"{parent}, which the store does not hold")
            g.add_edge(parent, ind.id, **_edge_attrs(ind, k, g.nodes[parent], g.nodes[ind.id]))
    _ages(g, _alive_ids(state[2]) if state else None, deaths)
    g.graph["best"] = best_id(g)
    return g


def objectives_of(config: dict) -> list[str]:
    """The metrics a run minimised besides fitness (NSGA-II defaults to ``params``)."""
    strategy = config.get("strategy", {})
    params = strategy.get("params", strategy)
    default = ["params"] if strategy.get("name") == "nsga2" else []
    objectives = params.get("objectives", default)
    return [str(o) for o in objectives] if isinstance(objectives, list) else default


def _scalars(metrics: dict) -> dict:
    """The scalar metrics (loss curves and other lists stay in the store)."""
    return {k: v for k, v in metrics.items()
            if isinstance(v, (int, float, str, bool)) or v is None}


def _size(genome: dict, metrics: dict, status: str) -> tuple[int | None, int | None]:
    """Params and FLOPs: from the evaluation's metrics; for one not evaluated yet, from shape
    inference (failed and infeasible ones keep what they recorded: inference costs ms each)."""
    if status not in ("pending", "running") or "params" in metrics:
        return metrics.get("params"), metrics.get("flops")
    try:
        info = analyze(from_dict(genome))
    except Exception:  # noqa: BLE001 - an infeasible genome simply has no size
        return None, None
    return info.params, info.flops


def _node_attrs(ind: IndividualRow, ev: EvaluationRow | None, rank: int) -> dict:
    metrics = ev.metrics if ev else {}
    status = ev.status if ev else "pending"
    params, flops = _size(ind.genome, metrics, status)
    return {"genome_hash": ind.genome_hash, "arch_hash": ind.arch_hash, "seed": ind.seed,
            "batch": ind.batch, "order": rank, "created_at": ind.created_at,
            "status": status, "attempt": ev.attempt if ev else 0,
            "fitness": ev.fitness if ev else None, "params": params, "flops": flops,
            "wall_time": ev.wall_time if ev else None,
            "started_at": ev.started_at if ev else None,
            "finished_at": ev.finished_at if ev else None, "error": ev.error if ev else None,
            "mutation": ind.mutation, "metrics": _scalars(metrics), "genome": ind.genome}


def _edge_attrs(ind: IndividualRow, index: int, parent: dict, child: dict) -> dict:
    both = parent["fitness"] is not None and child["fitness"] is not None
    return {"mutation": ind.mutation, "args": ind.args, "inherit": ind.inherit,
            "changed": list(ind.changed), "inherited": ind.inherited, "parent_index": index,
            "delta": child["fitness"] - parent["fitness"] if both else None}


def _alive_ids(state: dict) -> set[int] | None:
    """Ids in the proposer's latest population (None for strategies that keep none)."""
    found: set[int] | None = None
    for key in POPULATION_KEYS:
        members = state.get(key)
        if isinstance(members, list) and all(isinstance(m, dict) and "id" in m for m in members):
            found = (found or set()) | {int(m["id"]) for m in members}
    return found


def _ages(g: nx.DiGraph, alive: set[int] | None, deaths: list[dict]) -> None:
    """Set ``alive`` and ``age_at_death`` (births between an individual's own and its death,
    Real et al. 2019's notion of age). Exact where the store logs ``died`` events
    (data ``{"ids": [...], "born": n}``); otherwise a dead individual's age is counted up to its
    last child, a lower bound (``g.graph["age_source"]`` says which). Individuals that never
    entered a population (infeasible, failed) die at age 0."""
    ids = sorted(g)
    births = sorted(g.nodes[i]["created_at"] for i in ids)
    died: dict[int, int] = {}
    for event in deaths:
        data = event.get("data") or {}
        born = data["born"] if "born" in data else bisect.bisect_right(births, event["time"])
        died.update((int(i), int(born)) for i in data.get("ids", ()))
    g.graph["age_source"] = "events" if deaths else "last-child"
    order = {i: k for k, i in enumerate(ids)}
    for i in ids:
        node = g.nodes[i]
        node["alive"] = None if alive is None else i in alive
        if node["status"] in ("pending", "running"):  # not evaluated: not born into it yet
            node["alive"] = node["age_at_death"] = None
        elif node["status"] in ("infeasible", "failed"):
            node["age_at_death"] = 0
        elif i in died:
            node["age_at_death"] = max(0, died[i] - order[i] - 1)
        elif node["alive"] is False and not deaths:
            last = max(g.successors(i), default=i)
            node["age_at_death"] = order[last] - order[i]
        else:
            node["age_at_death"] = None


# -- queries ----------------------------------------------------------------------------------

def _check(g: nx.DiGraph, individual: int) -> int:
    if individual not in g:
        raise RunStoreError(f"run {g.graph.get('run_dir', '')} has no individual {individual}")
    return individual


def ranked(g: nx.DiGraph, n: int | None = None) -> list[int]:
    """Completed individuals, best first: highest finite fitness, ties to the lower validation
    loss, then the older one (the rule of :meth:`RunStore.best`)."""
    scored = []
    for i, node in g.nodes(data=True):
        if node["fitness"] is not None:
            loss = node["metrics"].get("val_loss")
            loss = loss if isinstance(loss, (int, float)) else None
            scored.append((-node["fitness"], loss is None, loss or 0.0, i))
    return [key[3] for key in sorted(scored)[:n]]


def best_id(g: nx.DiGraph) -> int | None:
    """The best completed individual (see :func:`ranked`), None when nothing completed."""
    top = ranked(g, 1)
    return top[0] if top else None


def ancestry(g: nx.DiGraph, individual: int) -> nx.DiGraph:
    """The subgraph of ``individual`` and every ancestor (through all parents), attributes kept."""
    keep = nx.ancestors(g, _check(g, individual)) | {individual}
    return g.subgraph(keep).copy()


def descendants(g: nx.DiGraph, individual: int) -> list[int]:
    """Every descendant of ``individual``, in birth order."""
    return sorted(nx.descendants(g, _check(g, individual)))


def first_parent(g: nx.DiGraph, individual: int) -> int | None:
    """The weights donor of ``individual`` (its parent of index 0), or None for an initial one."""
    for parent, edge in g.pred[individual].items():
        if edge["parent_index"] == 0:
            return parent
    return None


def line_of_descent(g: nx.DiGraph, individual: int | None = None) -> list[int]:
    """Ids from an initial individual down to ``individual`` (default: the best), following
    first parents. Empty when the run has no best yet."""
    current = best_id(g) if individual is None else _check(g, individual)
    line: list[int] = []
    while current is not None:
        line.append(current)
        current = first_parent(g, current)
    return line[::-1]


@dataclass(frozen=True)
class MutationStat:
    """How one operator fared: children made, evaluated against a finite parent, improved."""

    mutation: str
    children: int
    evaluated: int        # child and first parent both have a finite fitness
    improved: int         # ... and the child is strictly better
    infeasible: int       # child infeasible or failed
    mean_delta: float | None
    best_delta: float | None

    @property
    def improvement_rate(self) -> float | None:
        return self.improved / self.evaluated if self.evaluated else None


def mutation_stats(g: nx.DiGraph) -> list[MutationStat]:
    """Per operator (crossover edits count under their combined name), most used first."""
    buckets: dict[str, list] = {}
    for child, node in g.nodes(data=True):
        parent = first_parent(g, child)
        if parent is None:
            continue
        bucket = buckets.setdefault(node["mutation"] or "(unknown)", [0, [], 0])
        bucket[0] += 1
        bucket[2] += node["status"] in ("infeasible", "failed")
        delta = g.edges[parent, child]["delta"]
        if delta is not None:
            bucket[1].append(delta)
    stats = [MutationStat(name, n, len(d), sum(x > 0 for x in d), bad,
                          sum(d) / len(d) if d else None, max(d) if d else None)
             for name, (n, d, bad) in buckets.items()]
    return sorted(stats, key=lambda s: (-s.children, s.mutation))


def diff(g: nx.DiGraph, a: int, b: int) -> GenomeDiff:
    """What changed from individual ``a``'s genome to ``b``'s."""
    return genome_diff(g.nodes[_check(g, a)]["genome"], g.nodes[_check(g, b)]["genome"])
