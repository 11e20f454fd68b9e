"""The cell-space table builder (benchmarks/tabular_cells.py): a row is one real training of an
nb201 cell with its validation accuracy after every epoch; a built table plugs into the
``table`` fitness at any epoch's fidelity. No timing is asserted."""

import importlib
from pathlib import Path

import pytest
from evograph.compile.training.table import TableFitness
from evograph.genome.cells.nb201 import parse_arch_string

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def cells(monkeypatch, tmp_path):
    """The script as a module (its pool workers import it by name); its summary goes to
    tmp_path, not over the shipped one."""
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    module = importlib.import_module("tabular_cells")
    monkeypatch.setattr(module, "SUMMARY", tmp_path / "tabular_cells.json")
    return module


def test_a_row_is_one_training_with_its_learning_curve(cells):
    ops = ("nor_conv_3x3", "skip_connect", "none", "nor_conv_3x3", "none", "skip_connect")
    row = cells.train_row(ops, seed=1, epochs=2)
    assert tuple(row) == cells.columns(2)
    assert tuple(parse_arch_string(row["key"])) == ops
    assert 0.0 <= row["val_accuracy_epoch_1"] <= 1.0
    # the last epoch's validation is the final one: the same module, evaluated after the last step
    assert row["val_accuracy_epoch_2"] == row["val_accuracy"]
    assert row["params"] > 0 and row["flops"] > 0 and row["train_time"] > 0
    again = cells.train_row(ops, seed=1, epochs=2)  # one seed, one training: the same figures
    assert {**again, "train_time": 0} == {**row, "train_time": 0}


def test_a_built_table_is_looked_up_at_every_epoch(cells, tmp_path):
    out = tmp_path / "cells.csv.gz"
    report = cells.main(["--quick", "--epochs", "2", "--processes", "2", "--out", str(out)])
    summary = report["summary"]
    assert summary["cells"] == 9 and summary["rows"] == 18
    assert len(summary["spearman_epoch_vs_final_val"]) == 2
    assert summary["spearman_epoch_vs_final_val"][-1] == pytest.approx(1.0)
    assert (tmp_path / "cells.json").exists() and (tmp_path / "tabular_cells-quick.json").exists()
    assert not cells.base.partial_path(out).exists()
    first = TableFitness(path=str(out), key="nb201", metric="val_accuracy_epoch_1")
    final = TableFitness(path=str(out), key="nb201")
    for ops in cells.all_cells(quick=True):
        genome = cells.cell_genome(ops)
        early, late = first.lookup(genome), final.lookup(genome)
        assert early.status == late.status == "completed"
        assert early.metrics["val_accuracy_epoch_2"] == late.fitness
