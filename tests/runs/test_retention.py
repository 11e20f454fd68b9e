"""Weight retention: real tiny runs on digits (serial executor, sgd), pruned against kept-all,
and everything that reads a run (lineage, report, final selection, export, resume) on a pruned
one, a kill -9 between the pruning's commit and its deletions included."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from evograph.errors import EvographError, RunStoreError
from evograph.runs.config import load_config
from evograph.runs.driver import create_run, run
from evograph.runs.export.api import export_results, pareto_ids
from evograph.runs.final_pick import final_pick
from evograph.runs.lineage.graph import line_of_descent, lineage
from evograph.runs.report.page import render_report
from evograph.runs.retention import after_tell, keep_set, population_ids
from evograph.runs.store import RunStore

ROOT = Path(__file__).resolve().parents[2]
TINY = ["dataset.limit=240", "final.fitness.epochs=0.5", "fitness.epochs=0.5", "strategy.population_size=4",
        "strategy.sample_size=2", "budget.minutes=0", "space.channels=[4,12]",
        "executor.name=serial", "executor.batched=never", "executor.retries=1",
        "executor.batch=2", "executor.pipeline=1",  # a batch asked ahead: open parents
        "budget.evaluations=28", "final.share=0.2", "final.candidates=2", "final.seeds=2",
        "weights.top_k=2"]


def finished_run(path: Path, extra: list[str] = ()) -> Path:
    config = load_config(ROOT / "runs/configs/digits.toml", TINY + list(extra))
    run_dir = create_run(config, path)
    assert run(run_dir, live=False).finished
    return run_dir


def folder_bytes(folder: Path) -> int:
    return sum(f.stat().st_size for f in folder.iterdir())


def search_state(run_dir: Path):
    """What the search did: it must not depend on pruning."""
    with RunStore.open(run_dir, readonly=True) as store:
        return ([(i.id, i.genome_hash, i.parents, i.seed) for i in store.individuals()],
                [(e.id, e.status, e.fitness, json.dumps(e.metrics.get("val_loss")))
                 for e in store.evaluations()],
                store.load_proposer_state()[2],
                [(r.candidate, r.seed_index, r.fitness) for r in store.final_rows()])


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("retention")
    return finished_run(folder / "pruned"), finished_run(folder / "all", ["weights.keep=all"])


def test_pruning_changes_nothing_the_search_does(runs):
    pruned, kept = runs
    assert search_state(pruned) == search_state(kept)


def test_pruned_weights_are_marked_and_gone_kept_ones_are_there(runs):
    pruned, kept = runs
    with RunStore.open(pruned, readonly=True) as store:
        rows = store.evaluations()
        gone = [e.id for e in rows if e.pruned]
        assert gone and store.pruned_count() == len(gone)
        for e in rows:
            assert not (e.pruned and e.weights)
            assert store.weights_file(e.id).exists() == bool(e.weights)
        logged = sorted(i for ev in store.events("pruned") for i in ev["data"]["ids"])
        assert logged == sorted(gone)
        with pytest.raises(RunStoreError, match=f"weights of individual {gone[0]} were pruned"):
            store.read_weights(gone[0])
        for r in store.final_rows():           # the final selection's are never pruned
            assert (pruned / r.weights).is_file()
    with RunStore.open(kept, readonly=True) as store:
        assert store.pruned_count() == 0 and not store.events("pruned")
        assert all(store.weights_file(e.id).exists() for e in store.evaluations()
                   if e.status == "completed")
    assert folder_bytes(pruned / "weights") < folder_bytes(kept / "weights")


def test_the_policy_keeps_the_population_the_top_and_the_best_line(runs):
    pruned, _ = runs
    with RunStore.open(pruned, readonly=True) as store:
        g = lineage(store)
        line = line_of_descent(g)
        best = [e.id for e in store.best(2)]
        state = store.load_proposer_state()[2]
        alive = {member["id"] for member in state["population"]}  # aging evolution's
        assert alive
        for i in set(line) | set(best) | alive:
            assert store.evaluation(i).weights, f"#{i} should have been kept"
        told = store.told_batch()
        assert keep_set(store, told, alive, 2) >= set(line) | set(best) | alive


def test_every_child_found_its_parents_weights(runs):
    """Inheritance happened wherever the edit asked for it: no parent was pruned while a
    child of it was waiting (a missing file would have trained the child from scratch)."""
    pruned, _ = runs
    with RunStore.open(pruned, readonly=True) as store:
        children = [i for i in store.individuals() if i.parents and i.inherit]
        assert children
        for child in children:
            if store.evaluation(child.id).status == "completed":
                assert child.inherited, f"#{child.id} inherited nothing from #{child.parents[0]}"


def test_lineage_report_final_selection_and_export_work_on_a_pruned_run(runs, tmp_path):
    pruned, kept = runs
    html = render_report(pruned)
    assert "Line of descent of the best" in html
    with RunStore.open(pruned, readonly=True) as store:
        pick = final_pick(store)
        assert pick is not None
        best, searched = pick.id, store.best(1)[0].id
        gone = next(e.id for e in store.evaluations() if e.pruned)
    done = export_results(pruned, best=True, format="python", output=tmp_path / "best")
    assert [r.id for r in done] == [best]
    evolved = export_results(pruned, best=True, evolved=True, format="python",
                             output=tmp_path / "evolved")  # the search's best was kept
    assert [r.id for r in evolved] == [searched]
    front = export_results(pruned, pareto=True, format="python", output=tmp_path / "front")
    with RunStore.open(kept, readonly=True) as store:  # the front's weights were all kept
        assert sorted(r.id for r in front) == sorted(pareto_ids(store))
    with pytest.raises(EvographError):
        export_results(pruned, id=gone, format="python", output=tmp_path / "gone")
    cli = subprocess.run([sys.executable, "-m", "evograph.runs.cli.main", "export", str(pruned),
                          "--id", str(gone), "-o", str(tmp_path / "cli")],
                         capture_output=True, text=True, timeout=120, check=False)
    assert cli.returncode == 2 and len(cli.stderr.strip().splitlines()) == 1, cli.stderr
    assert not (tmp_path / "cli").exists()


def test_kill_9_between_the_pruning_and_its_deletions_resumes_cleanly(runs, tmp_path):
    pruned, _ = runs
    victim = create_run(load_config(ROOT / "runs/configs/digits.toml", TINY), tmp_path / "v")
    env = {**os.environ, "EVOGRAPH_CRASH_AT": "store.prune_weights.after_commit:1"}
    driver = subprocess.run([sys.executable, "-m", "evograph.runs.cli.main", "resume",
                             str(victim), "--no-live"], capture_output=True, text=True, env=env,
                            timeout=240, check=False)
    assert driver.returncode == -9, driver.stderr
    with RunStore.open(victim, readonly=True) as store:
        marked = [e.id for e in store.evaluations() if e.pruned]
        assert marked and all(store.weights_file(i).exists() for i in marked)  # not yet deleted
    assert run(victim, live=False).finished
    with RunStore.open(victim, readonly=True) as store:
        assert not any(store.weights_file(e.id).exists() for e in store.evaluations()
                       if e.pruned)
    assert search_state(victim) == search_state(pruned)


def test_a_proposer_that_names_no_population_prunes_nothing():
    """A plug-in proposer without ``population()`` may breed from anyone: keep everything."""
    config = load_config(ROOT / "runs/configs/digits.toml", TINY)
    driver = SimpleNamespace(parts=SimpleNamespace(config=config, proposer=object()),
                             store=None, told=3)
    assert population_ids(object()) is None
    assert after_tell(driver, at_least=1) == 0
