"""Exporting a run's final-selection pick: a real tiny run on digits (serial executor, sgd, a
final selection of 2 candidates x 2 seeds) exported with --best ships the pick's genome with
its representative retrained weights file bit for bit and the selection's figures; --id and
--best --evolved ship evolved weights; a bad combination is one line."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from evograph.errors import ExportError
from evograph.runs.cli.main import main
from evograph.runs.config import load_config
from evograph.runs.driver import create_run, run
from evograph.runs.export.api import export, export_results, load_model
from evograph.runs.export.bundle import read_safetensors, verify_export
from evograph.runs.export.pick import representative
from evograph.runs.final_pick import final_pick
from evograph.runs.store import RunStore
from evograph.runs.store_rows import FinalRow

ROOT = Path(__file__).resolve().parents[3]
TINY = ["dataset.limit=240", "fitness.epochs=1", "final.fitness.epochs=1",
        "strategy.population_size=4", "strategy.sample_size=2", "budget.minutes=0",
        "budget.evaluations=10", "space.channels=[4,12]", "executor.name=serial",
        "executor.batched=never", "final.share=0.4", "final.candidates=2", "final.seeds=2"]


@pytest.fixture(scope="module")
def final_run(tmp_path_factory) -> Path:
    config = load_config(ROOT / "runs/configs/digits.toml", TINY)
    run_dir = create_run(config, tmp_path_factory.mktemp("final-export") / "run")
    assert run(run_dir, live=False).finished
    return run_dir


def pick_of(run_dir: Path):
    with RunStore.open(run_dir, readonly=True) as store:
        pick = final_pick(store)
        rows = [r for r in store.final_rows() if r.candidate == pick.id]
        return pick, rows, store.best(1)[0].id


def assert_same_tensors(exported: dict, expected: dict) -> None:
    assert exported.keys() == expected.keys()
    for name, tensor in expected.items():
        assert exported[name].dtype == tensor.dtype and torch.equal(exported[name], tensor), name


def retraining(seed_index: int, fitness: float, weights: bool = True) -> FinalRow:
    return FinalRow(seed_index + 1, 7, 0, seed_index, 100 + seed_index, "completed", 1, fitness,
                    {}, None, f"weights/final-7-{seed_index}.safetensors" if weights else None,
                    0.0, 1.0, 1.0, None)


def test_the_exported_seed_is_the_one_closest_to_the_mean():
    three = (retraining(0, 0.99), retraining(1, 0.93), retraining(2, 0.95))   # mean 0.9567
    assert representative(three, 0.9567).seed_index == 2       # not the best seed (0.99)
    two = (retraining(0, 0.90), retraining(1, 0.94))             # equally close: the first
    assert representative(two, (0.90 + 0.94) / 2).seed_index == 0
    unkept = (retraining(0, 0.95, weights=False), retraining(1, 0.90))
    assert representative(unkept, 0.925).seed_index == 1        # only files that exist
    assert representative((retraining(0, 0.9, weights=False),), 0.9) is None


def test_best_exports_the_pick_with_its_representative_retrained_weights(final_run):
    pick, rows, _ = pick_of(final_run)
    assert pick is not None and (pick.candidates, pick.seeds, pick.n) == (2, 2, 2)
    [result] = export_results(final_run, best=True)
    assert result.id == pick.id and result.path == final_run / "exports" / f"{pick.id}-final-bundle"
    manifest = verify_export(result.path)
    final = manifest["final"]
    nearest = min(abs(r.fitness - pick.mean) for r in rows)   # two seeds: a tie, the first
    chosen = next(r for r in rows if abs(r.fitness - pick.mean) <= nearest + 1e-12)
    assert final["exported_seed_index"] == chosen.seed_index
    assert final["exported_weights"] == chosen.weights == \
        f"weights/final-{pick.id}-{chosen.seed_index}.safetensors"
    assert_same_tensors(read_safetensors(result.path / "model.safetensors"),
                        read_safetensors(final_run / chosen.weights))
    with RunStore.open(final_run, readonly=True) as store:   # not the search's own weights
        evolved = store.read_weights(pick.id)
    assert any(not torch.equal(t, evolved[k]) for k, t in read_safetensors(
        final_run / chosen.weights).items())
    assert manifest["chosen"] == "final-selection pick" and manifest["retrain"] is None
    assert manifest["weights"] == f"final selection retraining (seed {chosen.seed_index + 1} of 2)"
    assert manifest["metrics"] == chosen.metrics and manifest["fitness"] == chosen.fitness
    model = load_model(result.path)     # the exported model is the retrained one
    assert model(torch.zeros(3, 1, 8, 8)).shape == (3, 10)


def test_the_manifest_carries_the_final_selections_figures(final_run):
    pick, rows, _ = pick_of(final_run)
    [result] = export_results(final_run, output=final_run.parent / "default")  # --best default
    figures = result.manifest["figures"]
    selection = figures["final_selection"]
    assert selection["value"] == pytest.approx(pick.mean) and selection["std"] == pick.std
    assert selection["by"] == "final selection (2 seeds, retrained from genes)"
    assert selection["text"] == (f"final selection: {pick.mean:.4f} ± {pick.std:.4f} over 2 "
                                 "seeds of 2 candidates")
    assert selection["values"] == [r.fitness for r in rows]      # per seed, in seed order
    assert selection["of_exported_weights"] is False
    test = figures["final_test_accuracy"]                         # sgd reports test accuracy
    assert test["value"] == pytest.approx(pick.score.test_mean)
    assert test["std"] == pytest.approx(pick.score.test_std)
    assert test["values"] == [r.metrics["test_accuracy"] for r in rows]
    exported = next(s for s in result.manifest["final"]["per_seed"] if s["exported"])
    own = figures["test_accuracy"]                                # the exported seed's own
    assert own["value"] == exported["test_accuracy"] and own["of_exported_weights"] is True
    assert figures["search_val_accuracy"]["of_exported_weights"] is False
    assert result.manifest["search_metrics"]["val_accuracy"] == \
        figures["search_val_accuracy"]["value"]


def test_id_and_evolved_export_the_searchs_own_weights(final_run, tmp_path):
    pick, _, best = pick_of(final_run)
    [mine] = export_results(final_run, id=pick.id, output=tmp_path / "id")
    [evolved] = export_results(final_run, best=True, evolved=True, output=tmp_path / "evolved")
    assert evolved.id == best and evolved.manifest["chosen"] == "search's best by validation"
    with RunStore.open(final_run, readonly=True) as store:
        own, best_own = store.read_weights(pick.id), store.read_weights(best)
    for result, expected in ((mine, own), (evolved, best_own)):
        assert "final" not in result.manifest and result.manifest["weights"] == "run"
        assert "final_selection" not in result.manifest["figures"]
        assert_same_tensors(read_safetensors(result.path / "model.safetensors"), expected)
    with pytest.raises(ExportError, match="evolved goes with best"):
        export(final_run, id=pick.id, evolved=True, output=tmp_path / "x")
    assert not (tmp_path / "x").exists()


def test_train_fine_tunes_the_picks_retrained_weights(final_run, tmp_path):
    pick, _, _ = pick_of(final_run)
    [result] = export_results(final_run, output=tmp_path / "t", train_epochs=1, seed=2)
    manifest = result.manifest
    assert result.id == pick.id and manifest["final"]["pick"] == pick.id
    chosen = next(s for s in manifest["final"]["per_seed"] if s["exported"])
    retrain = manifest["retrain"]
    assert "from the final selection's retrained weights" in retrain["by"]
    assert retrain["test_accuracy_before"] == pytest.approx(chosen["test_accuracy"])
    assert manifest["weights"] == "fine-tuned"
    assert manifest["figures"]["test_accuracy"]["of_exported_weights"] is False
    assert manifest["figures"]["retrained_test_accuracy"]["of_exported_weights"] is True


def test_the_cli_says_which_was_exported(final_run, tmp_path, capsys):
    pick, _, best = pick_of(final_run)
    assert main(["export", str(final_run), "--best", "-o", str(tmp_path / "pick")]) == 0
    text = capsys.readouterr().out
    assert text.startswith(f"the final-selection pick #{pick.id}, val {pick.mean:.4f} ± "
                           f"{pick.std:.4f} over 2 seeds of 2 candidates (")
    assert "closest to the mean" in text and "final selection: " in text
    assert main(["export", str(final_run), "--best", "--evolved", "-o",
                 str(tmp_path / "evolved")]) == 0
    assert capsys.readouterr().out.startswith(
        f"individual {best}, the search's best by validation (evolved weights)")
    assert main(["export", str(final_run), "--id", str(best), "--evolved", "-o",
                 str(tmp_path / "bad")]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("evograph: error:") and "\n" not in error
    assert not (tmp_path / "bad").exists()
