"""Final selection: real tiny runs on digits (serial executor, sgd), a real kill -9 in a
subprocess, and the store's schema migration on a real version-1 database."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from evograph.errors import ConfigError
from evograph.runs.config import load_config
from evograph.runs.driver import create_run, run
from evograph.runs.final import (
    final_seeds,
    first_fits,
    reserved_evaluations,
    search_config,
)
from evograph.runs.final_feed import FinalFeed, makespan, search_estimate
from evograph.runs.final_pick import final_pick, final_summary
from evograph.runs.report.sections import final_section
from evograph.runs.report.text import best_payload, status_payload
from evograph.runs.store import RunStore
from evograph.runs.store_rows import EvaluationRow

ROOT = Path(__file__).resolve().parents[2]
TINY = ["dataset.limit=240", "final.fitness.epochs=0.5", "fitness.epochs=0.5", "strategy.population_size=4",
        "strategy.sample_size=2", "budget.minutes=0", "space.channels=[4,12]",
        "executor.name=serial", "executor.batched=never", "executor.retries=1"]
FINAL = ["budget.evaluations=20", "final.share=0.5", "final.candidates=2", "final.seeds=2"]


def tiny(extra: list[str] = ()):
    return load_config(ROOT / "runs/configs/digits.toml", TINY + FINAL + list(extra))


def finished_run(path: Path, extra: list[str] = ()) -> Path:
    run_dir = create_run(tiny(extra), path)
    outcome = run(run_dir, live=False)
    assert outcome.finished, outcome.reason
    return run_dir


def final_rows(run_dir: Path) -> list[tuple]:
    with RunStore.open(run_dir, readonly=True) as store:
        return [(r.candidate, r.rank, r.seed_index, r.seed, r.status, r.fitness)
                for r in store.final_rows()]


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    return finished_run(tmp_path_factory.mktemp("final") / "reference")


# -- the budget it takes ------------------------------------------------------------------------

def test_the_share_is_whole_candidates_and_off_when_none_fits():
    config = tiny()
    assert reserved_evaluations(config) == 4           # 2 candidates x 2 seeds of 10 kept
    assert search_config(config).budget.evaluations == 16
    few = tiny(["budget.evaluations=3"])                 # a share of 1: not one candidate
    assert reserved_evaluations(few) == 0 and search_config(few) == few
    off = tiny(["final.share=0"])
    assert reserved_evaluations(off) == 0 and search_config(off).budget.evaluations == 20
    timed = tiny(["budget.minutes=10"])
    assert search_config(timed).budget.minutes == pytest.approx(5.0)


@pytest.mark.parametrize("setting, message", [
    ("final.share=1.5", "final.share: must be in [0.0, 0.9]"),
    ("final.seeds=0", "final.seeds: must be in [1, 100]"),
    ("final.k=3", "final.k: unknown key (known: candidates, fitness, seeds, share)"),
    ("weights.keep=some", "weights.keep: must be policy or all"),
])
def test_bad_settings_are_one_line_naming_the_key(setting, message):
    with pytest.raises(ConfigError) as error:
        tiny([setting])
    assert str(error.value).startswith(f"digits.toml: {message}")


def test_seeds_are_the_runs_own_and_shared_by_every_candidate():
    assert final_seeds(0, 3) == final_seeds(0, 3)
    assert len(set(final_seeds(0, 3))) == 3
    assert final_seeds(1, 3) != final_seeds(0, 3)
    assert final_seeds(0, 2) == final_seeds(0, 3)[:2]


def _row(id: int, wall_time: float | None, train_time: float | None = None) -> EvaluationRow:
    metrics = {} if train_time is None else {"train_time": train_time}
    return EvaluationRow(id, "completed", 1, 0.9, metrics, None, None, 0.0, 1.0, wall_time, None)


def test_the_work_in_flight_is_list_scheduled_on_the_workers():
    assert makespan([], 3, 10.0, 2) == 20.0           # two at once, then the third
    assert makespan([5.0], 3, 10.0, 2) == 20.0        # 0 -> 10 -> 20 and 5 -> 15
    assert makespan([5.0, 8.0], 1, 10.0, 2) == 15.0   # starts when the first worker frees
    assert makespan([7.0], 0, 10.0, 2) == 7.0
    assert makespan([], 3, 10.0, 1) == 30.0


def test_the_first_estimate_scales_the_training_time_only():
    assert search_estimate(_row(1, 10.0, train_time=8.0), 25.0) == pytest.approx(202.0)
    assert search_estimate(_row(1, 10.0), 25.0) == pytest.approx(250.0)   # not recorded
    assert search_estimate(_row(1, None), 25.0) == 0.0
    best = _row(1, 10.0, train_time=8.0)
    assert first_fits(best, seeds=3, slots=2, seconds=float("inf"), scale=25.0)
    assert first_fits(best, seeds=3, slots=2, seconds=404.0, scale=25.0)       # 2 x 202 s
    assert not first_fits(best, seeds=3, slots=2, seconds=403.0, scale=25.0)
    assert not first_fits(best, seeds=3, slots=1, seconds=605.0, scale=25.0)   # 3 x 202 s


def replanned(reference: Path, tmp_path: Path) -> tuple[Path, list[int]]:
    """A copy of the reference run with its final selection planned again, nothing started."""
    import shutil
    run_dir = tmp_path / "replanned"
    shutil.copytree(reference, run_dir)
    with RunStore.open(run_dir) as store:
        rows = store.final_rows()
    with sqlite3.connect(run_dir / "run.db") as db:
        db.execute("DELETE FROM final_evaluations")
    plan = [{"candidate": r.candidate, "rank": r.rank, "seed_index": r.seed_index,
             "seed": r.seed} for r in rows]
    with RunStore.open(run_dir) as store:
        store.add_final_plan(plan, {"candidates": 2, "ids": [], "seeds": 2})
        return run_dir, [r.id for r in store.final_rows()]


def test_without_a_time_budget_every_planned_retraining_is_handed_out(reference, tmp_path):
    run_dir, ids = replanned(reference, tmp_path)
    with RunStore.open(run_dir) as store:
        feed = FinalFeed(store, ids, 2, lambda: float("inf"), 1.0)
        assert [feed.next() for _ in ids] == [[i] for i in ids] and feed.next() == []


def test_candidates_that_would_not_finish_are_dropped_whole_saying_so(reference, tmp_path):
    run_dir, ids = replanned(reference, tmp_path)
    with RunStore.open(run_dir) as store:
        rows = store.final_rows()
        first, second = rows[0].candidate, rows[2].candidate
        search = {c: store.evaluation(c).wall_time for c in (first, second)}
        left = [float("inf")]
        feed = FinalFeed(store, ids, 1, lambda: left[0], 1.0)
        assert feed.next() == [ids[0]]
        store.mark_final_running([ids[0]])
        # the first retraining took 10 times its search evaluation: that ratio sizes the rest
        store.record_final(ids[0], "completed", 0.9, {}, wall_time=10 * search[first])
        assert feed.estimate(second) == pytest.approx(10 * search[second])
        left[0] = 0.0
        assert feed.next() == [ids[1]]          # an admitted candidate's seeds all run
        store.mark_final_running([ids[1]])
        store.record_final(ids[1], "completed", 0.8, {}, wall_time=10 * search[first])
        left[0] = 2 * 10 * search[second] - 1e-6   # its two seeds on one worker: just over
        assert feed.next() == [] and feed.next() == []
        assert [r.id for r in store.final_rows()] == ids[:2]
        trimmed = store.events("final trimmed")[-1]
        assert trimmed["data"]["candidates"] == [second]
        assert trimmed["message"].startswith("final selection trimmed: 1 candidate(s) would not")
        assert final_pick(store).id == first and final_pick(store).candidates == 1


# -- a run with a final selection -----------------------------------------------------------------

def test_the_top_distinct_architectures_are_retrained_and_the_best_mean_picked(reference):
    with RunStore.open(reference, readonly=True) as store:
        assert store.count_individuals() == 16             # the search stopped at its share
        rows = store.final_rows()
        assert [(r.rank, r.seed_index) for r in rows] == [(0, 0), (0, 1), (1, 0), (1, 1)]
        assert all(r.status == "completed" and r.attempt == 1 for r in rows)
        assert [r.seed for r in rows[:2]] == [r.seed for r in rows[2:]] == final_seeds(0, 2)
        candidates = [r.candidate for r in rows[::2]]
        arch = [store.individual(i).arch_hash for i in candidates]
        assert len(set(arch)) == 2
        assert candidates[0] == store.best(1)[0].id
        for r in rows:  # retrained from the genes: its own weights file, never inherited
            assert (reference / r.weights).is_file()
            assert r.weights == f"weights/final-{r.candidate}-{r.seed_index}.safetensors"
        pick = final_pick(store)
        means = {c: sum(r.fitness for r in rows if r.candidate == c) / 2 for c in candidates}
        assert pick.id == max(candidates, key=lambda c: (means[c], -candidates.index(c)))
        assert pick.mean == pytest.approx(means[pick.id])
        assert (pick.candidates, pick.seeds, pick.score.n) == (2, 2, 2)
        assert len(pick.weights) == 2 and pick.score.test_mean is not None
        status = status_payload(store)
        assert status["final"]["pick"]["id"] == pick.id
        assert "final selection of 2 x 2" in status["reason"]
        assert best_payload(store, 1)
        assert f"#{pick.id} (pick)" in final_section(final_summary(store))


def test_a_resumed_finished_run_keeps_its_pick_and_says_so(reference, tmp_path):
    before = final_rows(reference)
    outcome = run(reference, live=False)
    assert outcome.finished and outcome.reason.endswith("; final selection of 2 x 2")
    assert final_rows(reference) == before


def test_the_retraining_takes_the_final_fitness_parameters(reference, tmp_path):
    longer = finished_run(tmp_path / "longer", ["final.fitness.steps=3"])
    with RunStore.open(longer, readonly=True) as store, \
            RunStore.open(reference, readonly=True) as ref:
        assert [r.candidate for r in store.final_rows()] == [r.candidate for r in ref.final_rows()]
        assert {len(r.metrics["loss_curve"]) for r in store.final_rows()} == {3}  # 3 steps each
        assert all(len(r.metrics["loss_curve"]) < 3 for r in ref.final_rows())
    with pytest.raises(ConfigError, match="final.fitness.epoch: unknown parameter"):
        run(create_run(tiny(["final.fitness.epoch=30"]), tmp_path / "typo"), live=False)


def test_no_final_selection_when_it_is_off(tmp_path):
    run_dir = finished_run(tmp_path / "off", ["final.share=0"])
    with RunStore.open(run_dir, readonly=True) as store:
        assert store.count_individuals() == 20
        assert store.final_rows() == [] and final_pick(store) is None
        assert final_summary(store) is None


def test_a_time_budget_keeps_its_share_for_the_final_selection(tmp_path):
    run_dir = finished_run(tmp_path / "timed", ["budget.minutes=0.25", "budget.evaluations=10000",
                                                "final.share=0.4"])
    with RunStore.open(run_dir, readonly=True) as store:
        stopped = store.events("stopped")[-1]["message"]
        assert stopped.startswith("time budget of 0.15 min reached; final selection of")
        assert final_pick(store) is not None
        planned = store.events("final planned")[-1]
        assert planned["time"] - store.events("started")[0]["time"] < 0.25 * 60


def start_driver(run_dir: Path, crash_at: str) -> subprocess.Popen:
    env = {**os.environ, "EVOGRAPH_CRASH_AT": crash_at}
    return subprocess.Popen([sys.executable, "-m", "evograph.runs.cli.main", "resume",
                             str(run_dir), "--no-live"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, env=env)


@pytest.mark.parametrize("crash_at", [
    "store.add_final_plan.after_commit",          # right after the plan
    "store.mark_final_running.after_commit:1",    # every one in flight, none done
    "store.record_final.after_commit:2",          # between two final evaluations
    "store.record_final.before_commit:3",         # while one is being committed
])
def test_kill_9_during_final_selection_loses_nothing(reference, tmp_path, crash_at):
    victim = create_run(tiny(), tmp_path / "victim")
    driver = start_driver(victim, crash_at)
    _, err = driver.communicate(timeout=240)
    assert driver.returncode == -9, err
    with RunStore.open(victim, readonly=True) as store:
        rows = store.final_rows()
        assert rows  # killed during the final selection, not before
        done = {r.id for r in rows if r.status == "completed"}
        in_flight = {r.id for r in rows if r.status == "running"}
    outcome = run(victim, live=False)
    assert outcome.finished and "final selection of 2 x 2" in outcome.reason
    assert final_rows(victim) == final_rows(reference)
    with RunStore.open(victim, readonly=True) as store, \
            RunStore.open(reference, readonly=True) as ref:
        assert final_pick(store) == final_pick(ref)
        again = {r.id for r in store.final_rows() if r.attempt > 1}
        assert again == in_flight and not again & done  # only what was in flight ran again
        if in_flight:
            assert any(e["data"].get("final_ids") == sorted(in_flight)
                       for e in store.events("resumed"))


# -- old runs -------------------------------------------------------------------------------------

def as_version_1(run_dir: Path) -> None:
    """Turn a run into what schema version 1 wrote (no final table, no pruning mark)."""
    with sqlite3.connect(run_dir / "run.db") as conn:
        conn.execute("DROP TABLE final_evaluations")
        conn.execute("ALTER TABLE evaluations DROP COLUMN pruned_at")
        conn.execute("UPDATE meta SET value = '1' WHERE key = 'schema_version'")


def test_a_version_1_run_is_read_as_it_is_and_migrated_when_resumed(tmp_path):
    run_dir = finished_run(tmp_path / "old", ["final.share=0", "weights.keep=all"])
    as_version_1(run_dir)
    with RunStore.open(run_dir, readonly=True) as store:
        assert store.schema_version == 1
        assert store.final_rows() == [] and final_summary(store) is None
        assert not any(e.pruned for e in store.evaluations())
        assert store.best(1) and store.read_weights(store.best(1)[0].id)
    with RunStore.open(run_dir) as store:   # a writer migrates it, in one transaction
        assert store.schema_version == 2
        assert store.final_rows() == [] and store.pruned_count() == 0
    assert run(run_dir, live=False).finished
