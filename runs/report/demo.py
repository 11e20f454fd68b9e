"""A synthetic run store, for trying and benchmarking lineage views without training anything.

:func:`make_demo_run` plays regularized (aging) evolution (Real et al. 2019) over real genomes of
the ``lse-conv`` space with the real mutation operators, but scores each genome with a cheap
made-up fitness (it rises with capacity and saturates, plus noise). It writes a genuine
:class:`RunStore` — births, edits, evaluations (some infeasible or failed if asked), ``died``
events and a proposer checkpoint — so reports and exports see exactly what a real run leaves.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ...genome.core import Genome
from ...genome.io import to_dict
from ...genome.space import get_space
from ...genome.validate import analyze
from ...operators.base import mutate
from ..store import RunStore


@dataclass
class DemoSpec:
    """What the synthetic run looks like."""

    individuals: int = 200
    seed: int = 0
    population: int = 20
    sample: int = 5
    batch: int = 10
    bad_fraction: float = 0.0           # share of evaluations that end infeasible or failed
    unfinished: int = 0                 # leave the newest ones pending/running (a live run)
    objectives: list[str] = field(default_factory=list)
    input_shape: tuple[int, ...] = (1, 8, 8)


def _config(spec: DemoSpec) -> dict:
    strategy = {"name": "aging", "population_size": spec.population,
                "sample_size": spec.sample}
    if spec.objectives:
        strategy["objectives"] = list(spec.objectives)
    return {"name": "demo", "seed": spec.seed, "strategy": strategy,
            "budget": {"evaluations": spec.individuals},
            "space": {"name": "lse-conv"}, "dataset": {"name": "synthetic"},
            "fitness": {"name": "synthetic"}, "executor": {"name": "none"}}


def _fitness(genome: Genome, rng: np.random.Generator) -> tuple[float, int, int]:
    info = analyze(genome)
    depth = len(genome.nodes)
    score = 0.1 + 0.8 * (1 - math.exp(-info.params / 3000)) + 0.01 * depth
    return float(min(1.0, max(0.0, score + rng.normal(0, 0.02)))), info.params, info.flops


class _Sim:
    """Aging evolution over an in-memory population, writing every step to the store."""

    def __init__(self, store: RunStore, spec: DemoSpec):
        self.store, self.spec = store, spec
        self.rng = np.random.default_rng(spec.seed)
        self.space = get_space("lse-conv")
        self.pop: list[tuple[int, float, Genome]] = []
        self.next_id = 0

    def propose(self) -> dict:
        genome, parents, edit = None, [], None
        if self.next_id < self.spec.population or not self.pop:
            genome = self.space.initial_genome(self.rng, self.spec.input_shape, 10)
        else:
            picks = self.rng.integers(len(self.pop), size=self.spec.sample)
            parent = max((self.pop[int(k)] for k in picks), key=lambda m: (m[1], -m[0]))
            genome, edit = mutate(parent[2], self.rng, self.space)
            parents = [parent[0]]
        row = {"id": self.next_id, "genome": to_dict(genome), "genome_hash": genome.hash,
               "arch_hash": genome.arch_hash, "seed": self.next_id, "parents": parents,
               "edit": edit.to_dict() if edit else None, "_genome": genome}
        self.next_id += 1
        return row

    def evaluate(self, row: dict) -> None:
        genome = row.pop("_genome")
        fitness, params, flops = _fitness(genome, self.rng)
        metrics = {"val_accuracy": fitness, "params": params, "flops": flops,
                   "train_time": 1.0 + params / 5000}
        bad = self.rng.random() < self.spec.bad_fraction
        if bad and self.rng.random() < 0.5:
            self.store.record_result(row["id"], "infeasible", float("nan"), metrics,
                                     error="non-finite loss", wall_time=0.5)
            return
        if bad:
            self.store.record_result(row["id"], "failed", None, {}, wall_time=0.1,
                                     error="RuntimeError: synthetic crash")
            return
        self.store.record_result(row["id"], "completed", fitness, metrics,
                                 wall_time=metrics["train_time"])
        self.pop.append((row["id"], fitness, genome))

    def age(self) -> None:
        dead = []
        while len(self.pop) > self.spec.population:
            dead.append(self.pop.pop(0)[0])
        if dead:
            self.store.log_event("died", f"{len(dead)} left the population",
                                 {"ids": dead, "born": self.next_id})


def make_demo_run(run_dir: str | os.PathLike, spec: DemoSpec | None = None) -> Path:
    """Write a synthetic run into ``run_dir`` (which must not hold one) and return its path."""
    spec = spec or DemoSpec()
    with RunStore.create(run_dir, _config(spec), fingerprint="demo") as store:
        sim = _Sim(store, spec)
        batch = 0
        while sim.next_id < spec.individuals:
            batch += 1
            size = min(spec.batch, spec.individuals - sim.next_id)
            rows = [sim.propose() for _ in range(size)]
            store.add_batch(batch, rows, {"population": [{"id": m[0]} for m in sim.pop]})
            todo = [r for r in rows if r["id"] < spec.individuals - spec.unfinished]
            store.mark_running([r["id"] for r in todo], worker="demo")
            for row in todo:
                sim.evaluate(row)
            sim.age()
            store.save_proposer_state(batch, "told",
                                      {"population": [{"id": m[0]} for m in sim.pop]})
        running = store.unfinished()[: spec.unfinished // 2]
        store.mark_running(running, worker="demo")
    return Path(run_dir)
