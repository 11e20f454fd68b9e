"""Honest exports: a run whose fitness does not train the weights it reports (a table lookup
here, a real run of runs/configs/digits-table.toml) is refused in one line, or trained from
scratch with ``--train``; the manifest says which fitness produced each figure, the figures of
the exported weights are what they measure, and pruned weights are said to be pruned."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from evograph.compile.training.fitness import FITNESS, trains_reported_weights
from evograph.compile.training.sgd import evaluate
from evograph.errors import ExportError
from evograph.runs.cli.main import main
from evograph.runs.config import load_config
from evograph.runs.driver import create_run, run
from evograph.runs.export.api import export, export_results, load_model
from evograph.runs.export.training import run_dataset
from evograph.runs.store import RunStore

from .test_export import CHILD, MERGED, make_run

ROOT = Path(__file__).resolve().parents[3]
NOT_TRAINING = {"table", "hypernet", "hypernet-static", "enas"}


@pytest.fixture(scope="module")
def table_run(tmp_path_factory):
    """A real run scored by table lookup: its best has figures but no weights at all."""
    config = load_config(ROOT / "runs/configs/digits-table.toml", ["budget.evaluations=12"])
    run_dir = create_run(config, tmp_path_factory.mktemp("table") / "run")
    assert run(run_dir, live=False).finished
    return run_dir


def test_generators_that_do_not_train_their_weights_say_so():
    assert {name for name in FITNESS if not trains_reported_weights(FITNESS[name])} \
        >= NOT_TRAINING
    assert trains_reported_weights(FITNESS["sgd"]) and trains_reported_weights(object())


def test_a_table_run_without_train_is_refused_in_one_line(table_run, tmp_path, capsys):
    with pytest.raises(ExportError, match="does not train the weights it reports") as info:
        export(table_run, output=tmp_path / "x")
    assert "--train" in str(info.value) and "\n" not in str(info.value)
    assert main(["export", str(table_run), "--best", "--format", "onnx", "-o",
                 str(tmp_path / "m.onnx")]) == 2
    error = capsys.readouterr().err
    assert error.startswith("evograph: error:") and error.count("\n") == 1
    assert "'table' fitness" in error and f"evograph export {table_run}" in error
    assert list(tmp_path.iterdir()) == [] and not (table_run / "exports").exists()


def test_a_table_run_with_train_exports_trained_weights_and_says_whose_figures(table_run,
                                                                             tmp_path):
    [result] = export_results(table_run, output=tmp_path / "t", train_epochs=2, seed=1)
    manifest, figures = result.manifest, result.manifest["figures"]
    assert manifest["run_fitness"] == {"name": "table", "trains_reported_weights": False}
    assert figures["val_accuracy"]["by"] == "table"
    assert figures["val_accuracy"]["of_exported_weights"] is False
    retrained = figures["retrained_test_accuracy"]
    assert retrained["of_exported_weights"] is True and "export --train (sgd, 2 epochs" in \
        retrained["by"]
    assert manifest["weights"] == "retrained from scratch" and manifest["retrain"]["data"] \
        == "train"
    with RunStore.open(table_run, readonly=True) as store:  # the figure is these weights'
        data = run_dataset(store)
    measured = evaluate(load_model(result.path), data.x_test, data.y_test,
                        torch.device("cpu"))[0]
    assert measured == retrained["value"] and measured > 0.5


def test_the_cli_names_whose_each_figure_is(table_run, tmp_path, capsys):
    assert main(["export", str(table_run), "--train", "1", "-o", str(tmp_path / "c")]) == 0
    out = capsys.readouterr().out
    assert "val_accuracy" in out and "by table (not of the exported weights)" in out
    assert "retrained_test_accuracy" in out and "not their accuracy" in out


def test_figures_of_a_training_run_belong_to_its_weights(tmp_path):
    run_dir = make_run(tmp_path / "run")
    [result] = export_results(run_dir, id=CHILD, output=tmp_path / "e")
    figures = result.manifest["figures"]
    assert figures["val_accuracy"] == {"value": 0.6, "by": "sgd", "of_exported_weights": True}
    [tuned] = export_results(run_dir, id=CHILD, output=tmp_path / "f", train_epochs=1)
    assert tuned.manifest["figures"]["val_accuracy"]["of_exported_weights"] is False
    assert tuned.manifest["figures"]["retrained_test_accuracy"]["of_exported_weights"]


def test_pruned_weights_are_said_to_be_pruned_and_can_be_retrained(tmp_path, capsys):
    run_dir = make_run(tmp_path / "run")
    with RunStore.open(run_dir) as store:
        store.prune_weights([MERGED])
    assert main(["export", str(run_dir), "--id", str(MERGED), "-o", str(tmp_path / "p")]) == 2
    error = capsys.readouterr().err
    assert "pruned" in error and error.count("\n") == 1
    [path] = export(run_dir, id=MERGED, output=tmp_path / "q", train_epochs=1,
                    from_scratch=True)
    assert load_model(path).training is False
