"""Run directories shared by the lineage and report tests, each made once per test process.

``real_run``: a tiny real evolution (digits, aging evolution, SGD training, serial executor).
``demo_run``: a synthetic store from :mod:`evograph.runs.report.demo` (real genomes and mutation
operators, made-up fitness), for shapes a tiny real run rarely has: failures, unfinished
evaluations, many generations, every operator, a multi-objective config.
"""

from __future__ import annotations

import functools
from pathlib import Path

from evograph.runs.config import load_config
from evograph.runs.driver import create_run, run
from evograph.runs.report.demo import DemoSpec, make_demo_run

ROOT = Path(__file__).resolve().parents[3]
TINY = ["budget.evaluations=16", "final.share=0", "dataset.limit=300", "fitness.epochs=1",
        "strategy.population_size=4", "strategy.sample_size=2", "budget.minutes=0",
        "space.channels=[4,16]", "executor.name=serial",
        "space.strides=[1,2,4]"]  # pinned: with this seed the best then has a line of ancestors


@functools.cache
def real_run(base: Path) -> Path:
    """A finished 16-evaluation run in ``base/real`` (a few seconds)."""
    config = load_config(ROOT / "runs/configs/digits.toml", TINY)
    run_dir = create_run(config, base / "real")
    outcome = run(run_dir, live=False)
    assert outcome.finished, outcome.reason
    return run_dir


@functools.cache
def demo_run(base: Path, name: str, **spec) -> Path:
    """A synthetic run ``base/name`` made from ``DemoSpec(**spec)``."""
    return make_demo_run(base / name, DemoSpec(**spec))
