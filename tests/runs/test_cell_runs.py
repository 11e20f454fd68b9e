"""Real runs over the cell spaces with every registered strategy (the RL controller through the
spaces' codecs): tiny digits runs on the serial executor, each ending with every evaluation
completed, and lineage diffs that name the cell."""

from __future__ import annotations

from pathlib import Path

import pytest
from evograph.genome.cells.nb201 import arch_string
from evograph.genome.io import from_dict
from evograph.runs.config import load_config
from evograph.runs.driver import create_run, run
from evograph.runs.lineage.diff import genome_diff
from evograph.runs.store import RunStore
from evograph.selection import STRATEGIES

from tests.contracts import entries

ROOT = Path(__file__).resolve().parents[2]
TINY = ["dataset.limit=150", "fitness.epochs=0.5", "budget.evaluations=8", "budget.minutes=0",
        "final.share=0", "executor.name=serial", "executor.batched=never",
        "space.cell_channels=4"]


@pytest.mark.parametrize("config", ["nb201-digits.toml", "nasnet-digits.toml"])
@pytest.mark.parametrize("strategy", entries(STRATEGIES))
def test_every_strategy_runs_over_the_cell_spaces(tmp_path, config, strategy):
    overrides = [*TINY, f"strategy.name={strategy}"]
    if strategy in ("aging", "tournament"):
        overrides += ["strategy.population_size=4", "strategy.sample_size=2"]
    cfg = load_config(ROOT / "runs" / "configs" / config, overrides)
    outcome = run(create_run(cfg, tmp_path / "run"), live=False)
    assert outcome.finished, outcome.reason
    with RunStore.open(tmp_path / "run", readonly=True) as store:
        assert store.counts_by_status()["completed"] == 8
        best = from_dict(store.individual(store.best(1)[0].id).genome)
    if config.startswith("nb201"):
        assert arch_string(best).count("~") == 6


def test_the_lineage_of_an_evolved_cell_names_what_changed(tmp_path):
    """Every child of the run whose cell differs from its parent's has a diff naming the cell,
    the block and the op or input (AmoebaNet's two mutations), and no bare node lines."""
    cfg = load_config(ROOT / "runs/configs/nasnet-digits.toml",
                      [*TINY, "budget.evaluations=14", "strategy.population_size=4",
                       "strategy.sample_size=2"])
    run(create_run(cfg, tmp_path / "run"), live=False)
    with RunStore.open(tmp_path / "run", readonly=True) as store:
        genomes = {i.id: i.genome for i in store.individuals()}
        children = [(i.parents[0], i.id) for i in store.individuals() if len(i.parents) == 1]
    changed = 0
    for parent, child in children:
        diff = genome_diff(genomes[parent], genomes[child])
        if diff.cell_ops or diff.added or diff.removed or diff.changed:
            changed += 1
            assert diff.cell_ops and not (diff.added or diff.removed or diff.changed)
            assert all(" cell, block " in line for line in diff.lines()[:len(diff.cell_ops)])
    assert changed >= 5
