"""An evolution run end to end: the store's contents, resume after kill -9, signals, locks."""

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from evograph.errors import RunStoreError
from evograph.runs.config import load_config
from evograph.runs.driver import create_run, run
from evograph.runs.store import RunStore

ROOT = Path(__file__).resolve().parents[2]
TINY = ["budget.evaluations=10", "final.share=0", "dataset.limit=300", "fitness.epochs=1",
        "strategy.population_size=4", "strategy.sample_size=2", "budget.minutes=0",
        "space.channels=[4,16]",
        "executor.batched=never"]  # exact replay (see the README: batched populations)


def tiny_config(executor="serial", extra=()):
    return load_config(ROOT / "runs/configs/digits.toml",
                       TINY + [f"executor.name={executor}"] + list(extra))


def final_state(run_dir):
    """Everything a resumed run must reproduce exactly."""
    with RunStore.open(run_dir, readonly=True) as store:
        individuals = [(i.id, i.genome_hash, i.parents, i.mutation, i.seed)
                       for i in store.individuals()]
        evaluations = [(e.id, e.status, e.fitness) for e in store.evaluations()]
        state = store.load_proposer_state()
        return individuals, evaluations, json.dumps(state[2], sort_keys=True), state[:2]


def test_tiny_run_records_everything(tmp_path):
    run_dir = create_run(tiny_config("local", ["executor.workers=2"]), tmp_path / "run")
    outcome = run(run_dir, live=False)
    assert outcome.finished
    with RunStore.open(run_dir, readonly=True) as store:
        individuals = store.individuals()
        ids = {i.id for i in individuals}
        assert len(individuals) == 10
        for ind in individuals:
            assert set(ind.parents) <= ids and all(p < ind.id for p in ind.parents)
            if ind.parents:
                assert ind.mutation is not None
        evaluations = store.evaluations()
        assert {e.status for e in evaluations} <= {"completed", "infeasible"}
        completed = [e for e in evaluations if e.status == "completed"]
        assert completed and all(0.0 <= e.fitness <= 1.0 for e in completed)
        assert all(e.metrics["val_accuracy"] == e.fitness for e in completed)
        assert all((run_dir / e.weights).exists() for e in completed)
        best = store.best(1)[0]
        assert best.fitness == max(e.fitness for e in completed)
        assert store.integrity_check() == "ok"
        assert store.config["budget"]["evaluations"] == 10  # the resolved config is stored
        state = store.load_proposer_state()[2]  # genomes by id: the store already keeps them
        assert "genome" not in json.dumps(state) and state["population"]
        assert {m["id"] for m in state["population"]} <= ids


def test_worker_count_does_not_change_the_result(tmp_path):
    """With the batch size and the pipeline fixed (here synchronous: ``auto`` would give the
    serial executor 0 and the pool 1), 1 and 2 workers reach the same state."""
    fixed = ["executor.batch=2", "executor.pipeline=0"]
    a = create_run(tiny_config("serial", fixed), tmp_path / "a")
    b = create_run(tiny_config("local", ["executor.workers=2"] + fixed), tmp_path / "b")
    run(a, live=False)
    run(b, live=False)
    assert final_state(a)[:2] == final_state(b)[:2]


def test_pipelined_batches_replay_on_any_worker_count_and_overlap(tmp_path):
    """executor.pipeline = 1: the next batch is asked while one is still evaluating, and the
    run still ends in the same state with 1 or 2 workers."""
    extra = ["executor.batch=2", "executor.pipeline=1"]
    a = create_run(tiny_config("serial", extra), tmp_path / "a")
    b = create_run(tiny_config("local", extra + ["executor.workers=2"]), tmp_path / "b")
    assert run(a, live=False).finished and run(b, live=False).finished
    assert final_state(a) == final_state(b)
    with RunStore.open(a, readonly=True) as store:
        born = {i.id: i.created_at for i in store.individuals()}
        batch = {i: b for b in range(1, store.last_batch() + 1) for i in store.batch_ids(b)}
        done = {e.id: e.finished_at for e in store.evaluations()}
        assert store.told_batch() == store.last_batch() == 5
    # batch k + 2 was asked before the last of batch k + 1 finished: two batches were open
    for k in range(1, 4):
        asked = min(born[i] for i in born if batch[i] == k + 2)
        assert asked < max(done[i] for i in done if batch[i] == k + 1)


def test_run_trains_same_architecture_siblings_batched_when_configured(tmp_path):
    """executor.batched reaches the executor: the first batch (trivial networks, one
    architecture) is trained as one group, and the run records it."""
    run_dir = create_run(tiny_config("serial", ["executor.batch=4", "executor.batched=always",
                                                "budget.evaluations=4"]), tmp_path / "run")
    assert run(run_dir, live=False).finished
    with RunStore.open(run_dir, readonly=True) as store:
        groups = [e.metrics.get("batched") for e in store.evaluations()]
    assert groups == [{"size": 4, "speedup": None}] * 4


def _start_driver(run_dir, stdout=subprocess.DEVNULL):
    return subprocess.Popen([sys.executable, "-m", "evograph.runs.cli.main", "resume", str(run_dir),
                             "--no-live"], stdout=stdout, stderr=subprocess.PIPE, text=True)


def _completed(run_dir):
    try:
        with sqlite3.connect(f"file:{run_dir}/run.db?mode=ro", uri=True, timeout=5) as conn:
            return conn.execute("SELECT count(*) FROM evaluations WHERE status != 'pending' "
                                "AND status != 'running'").fetchone()[0]
    except sqlite3.OperationalError:
        return 0


@pytest.mark.slow
def test_kill_9_then_resume_reaches_the_uninterrupted_state(tmp_path):
    extra = ["budget.evaluations=14", "executor.workers=2"]
    reference = create_run(tiny_config("local", extra), tmp_path / "reference")
    run(reference, live=False)
    victim = create_run(tiny_config("local", extra), tmp_path / "victim")
    for kill_at in (2, 5, 9):  # by committed count; the last one also by time below
        driver = _start_driver(victim)
        deadline = time.monotonic() + 120
        while _completed(victim) < kill_at and driver.poll() is None:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        driver.send_signal(signal.SIGKILL)
        driver.wait()
    driver = _start_driver(victim)
    time.sleep(4.0)  # in the middle of an evaluation or of a start-up
    driver.send_signal(signal.SIGKILL)
    driver.wait()
    outcome = run(victim, live=False)
    assert outcome.finished
    assert final_state(victim) == final_state(reference)
    with RunStore.open(victim, readonly=True) as store:
        assert store.integrity_check() == "ok"
        assert store.counts_by_status()["running"] == 0
        assert store.events("resumed")


@pytest.mark.slow
def test_sigint_stops_cleanly_and_resume_finishes(tmp_path):
    run_dir = create_run(tiny_config("local", ["budget.evaluations=30", "executor.workers=2"]),
                         tmp_path / "run")
    driver = _start_driver(run_dir, stdout=subprocess.PIPE)
    while _completed(run_dir) < 3:
        time.sleep(0.05)
    driver.send_signal(signal.SIGINT)
    start = time.monotonic()
    out, err = driver.communicate(timeout=30)
    assert time.monotonic() - start < 10
    assert driver.returncode == 130, err
    assert f"continue it with: evograph resume {run_dir}" in out, out
    with RunStore.open(run_dir, readonly=True) as store:
        assert store.counts_by_status()["running"] == 0
    assert run(run_dir, live=False).finished


def test_second_driver_is_refused(tmp_path):
    run_dir = create_run(tiny_config(), tmp_path / "run")
    holder = RunStore.open(run_dir)
    holder.acquire_lock()
    try:
        with pytest.raises(RunStoreError, match="in use by another evograph driver"):
            run(run_dir, live=False)
    finally:
        holder.release_lock()
        holder.close()


def test_resume_with_changed_config_is_refused_unless_forced(tmp_path):
    run_dir = create_run(tiny_config(), tmp_path / "run")
    with sqlite3.connect(run_dir / "run.db") as conn:
        config = json.loads(conn.execute("SELECT value FROM meta WHERE key='config'").fetchone()[0])
        config["space"]["max_params"] = 12345
        conn.execute("UPDATE meta SET value=? WHERE key='config'", (json.dumps(config),))
    with pytest.raises(RunStoreError, match="changed since the run started"):
        run(run_dir, live=False)
    assert run(run_dir, force=True, live=False).finished


def test_status_and_best_cli(tmp_path):
    run_dir = create_run(tiny_config(), tmp_path / "run")
    run(run_dir, live=False)
    env = {**os.environ, "COLUMNS": "120"}
    status = subprocess.run([sys.executable, "-m", "evograph.runs.cli.main", "status", str(run_dir),
                             "--json"], capture_output=True, text=True, env=env, timeout=60, check=False)
    payload = json.loads(status.stdout)
    assert payload["counts"]["completed"] + payload["counts"]["infeasible"] == 10
    best = subprocess.run([sys.executable, "-m", "evograph.runs.cli.main", "best", str(run_dir),
                           "--json"], capture_output=True, text=True, env=env, timeout=60, check=False)
    assert json.loads(best.stdout)[0]["id"] == payload["best"]["id"]
    table = subprocess.run([sys.executable, "-m", "evograph.runs.cli.main", "status", str(run_dir)],
                           capture_output=True, text=True, env=env, timeout=60, check=False)
    assert "completed" in table.stdout and "best" in table.stdout


def test_missing_run_dir_is_one_line(tmp_path):
    result = subprocess.run([sys.executable, "-m", "evograph.runs.cli.main", "status",
                             str(tmp_path / "nope")], capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1


def test_the_driver_hands_executors_the_flops_its_strategy_already_knew(tmp_path, monkeypatch):
    """Tasks carry their genome's FLOPs per sample (from the mutation's validation) so that
    ordering units costliest-first never parses a genome again."""
    from evograph.genome.io import from_dict
    from evograph.genome.validate import analyze
    from evograph.runs.execute import batching
    seen, plan = [], batching.plan_units

    def record(tasks, *args, **kwargs):
        seen.extend(tasks)
        return plan(tasks, *args, **kwargs)

    monkeypatch.setattr(batching, "plan_units", record)
    assert run(create_run(tiny_config(), tmp_path / "run"), live=False).finished
    assert len(seen) == 10 and all(task.flops is not None for task in seen)
    assert all(task.flops == analyze(from_dict(task.genome)).flops for task in seen)
