"""Shared machinery of the reliability suite: tiny runs, a driver subprocess, final states,
the structural checks every recovered run must pass, and the figures printed at the end."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
from collections import Counter
from pathlib import Path

import networkx as nx
from evograph.runs.config import load_config
from evograph.runs.driver import create_run, run
from evograph.runs.store import RunStore

ROOT = Path(__file__).resolve().parents[2]
FULL = os.environ.get("EVOGRAPH_RELIABILITY") == "full"
FIGURES: Counter = Counter()   # printed by conftest at the end of the session

TINY = ["dataset.limit=240", "final.share=0", "fitness.epochs=0.5", "strategy.population_size=4",
        "strategy.sample_size=2", "budget.minutes=0", "space.channels=[4,12]",
        "executor.retries=1",
        "executor.batched=never"]  # exact replay (see the README: batched populations)


def make_run(path: Path, evaluations: int = 12, executor: str = "serial",
             extra: tuple[str, ...] = ()) -> Path:
    config = load_config(ROOT / "runs/configs/digits.toml",
                         TINY + [f"budget.evaluations={evaluations}", f"executor.name={executor}",
                                 "executor.batch=2", "executor.pipeline=0"] + list(extra))
    return create_run(config, path)


def reference(tmp_path: Path, name: str = "reference", **kwargs) -> Path:
    run_dir = make_run(tmp_path / name, **kwargs)
    assert run(run_dir, live=False).finished
    return run_dir


def start_driver(run_dir: Path, env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "evograph.runs.cli.main", "resume", str(run_dir),
                             "--no-live"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True, env={**os.environ, **(env or {})})


def db_count(run_dir: Path, where: str) -> int:
    try:
        with sqlite3.connect(f"file:{run_dir}/run.db?mode=ro", uri=True, timeout=5) as conn:
            return conn.execute(f"SELECT count(*) FROM evaluations WHERE {where}").fetchone()[0]
    except sqlite3.OperationalError:
        return 0


def finished_count(run_dir: Path) -> int:
    return db_count(run_dir, "status IN ('completed', 'infeasible', 'failed')")


def kill(driver: subprocess.Popen, sig: int = signal.SIGKILL) -> None:
    driver.send_signal(sig)
    driver.wait(timeout=60)
    if driver.stderr:
        driver.stderr.close()


def final_state(run_dir: Path):
    """Everything a resumed run must reproduce exactly."""
    with RunStore.open(run_dir, readonly=True) as store:
        individuals = [(i.id, i.genome_hash, i.parents, i.mutation, i.seed)
                       for i in store.individuals()]
        evaluations = [(e.id, e.status, e.fitness) for e in store.evaluations()]
        state = store.load_proposer_state()
        return individuals, evaluations, json.dumps(state[2], sort_keys=True), state[:2]


def check_recovered(run_dir: Path, expected) -> None:
    """The structural checks of a recovered run, then equality with the reference."""
    with RunStore.open(run_dir, readonly=True) as store:
        assert store.integrity_check() == "ok"
        counts = store.counts_by_status()
        assert counts["running"] == 0 and counts["pending"] == 0
        individuals = store.individuals()
        graph = nx.DiGraph()
        graph.add_nodes_from(i.id for i in individuals)
        for ind in individuals:
            for parent in ind.parents:
                assert parent in graph, f"parent {parent} of {ind.id} missing"
                graph.add_edge(parent, ind.id)
        assert nx.is_directed_acyclic_graph(graph)
    actual = final_state(run_dir)
    FIGURES["recovered runs compared"] += 1
    FIGURES["final-state mismatches"] += actual != expected  # printed even when 0
    assert actual == expected
    FIGURES["rows lost"] += len(expected[0]) - len(actual[0])
