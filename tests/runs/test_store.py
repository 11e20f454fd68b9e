"""The run store: real SQLite files, real safetensors, real processes (no mocks)."""

from __future__ import annotations

import json
import math
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time

import pytest
import torch
from evograph.errors import RunStoreError
from evograph.runs.store import (
    SCHEMA_VERSION,
    STATUSES,
    RunStore,
    atomic_write_bytes,
    atomic_write_text,
)
from safetensors import safe_open

CONFIG = {"seed": 7, "population": 4, "space": "conv"}


def proposal(i: int, parents=(), edit=None) -> dict:
    return {"id": i, "genome": {"nodes": [i], "genes": {"lr": 0.1}}, "genome_hash": f"g{i}",
            "arch_hash": f"a{i}", "seed": 1000 + i, "parents": list(parents), "edit": edit}


@pytest.fixture
def store(tmp_path):
    with RunStore.create(tmp_path / "run", CONFIG, "fp-1", run_id="test-run") as s:
        yield s


def run_python(code: str, *args: str, **kwargs) -> subprocess.Popen:
    """Start ``code`` in a fresh interpreter (another process, as a second driver would be)."""
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code), *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs)


def table_count(run_dir, table: str) -> int:
    with sqlite3.connect(run_dir / "run.db") as conn:
        return conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]


# --- creating and opening -----------------------------------------------------------------------

def test_create_then_open_round_trip(tmp_path):
    run_dir = tmp_path / "deep" / "run"
    with RunStore.create(run_dir, CONFIG, "fp-1", run_id="r1") as s:
        assert (run_dir / "weights").is_dir()
        s.add_batch(0, [proposal(0), proposal(1, parents=[0], edit={
            "mutation": "alter_learning_rate", "args": {"factor": 2.0}, "inherit": True,
            "changed": ["lr"]})], {"rng": [1, 2, 3]})
    with RunStore.open(run_dir) as s:
        assert (s.run_id, s.config, s.fingerprint) == ("r1", CONFIG, "fp-1")
        assert s.run_dir == run_dir
        child = s.individual(1)
        assert child.genome == proposal(1)["genome"]
        assert (child.genome_hash, child.arch_hash, child.seed, child.batch) == ("g1", "a1",
                                                                                1001, 0)
        assert child.parents == (0,) and child.mutation == "alter_learning_rate"
        assert child.args == {"factor": 2.0} and child.inherit and child.changed == ("lr",)
        assert child.inherited is None
        root = s.individual(0)
        assert root.mutation is None and root.parents == () and not root.inherit
        assert [r.id for r in s.individuals()] == [0, 1]
        assert s.load_proposer_state() == (0, "asked", {"rng": [1, 2, 3]})
        assert s.integrity_check() == "ok"
    with sqlite3.connect(run_dir / "run.db") as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_create_refuses_an_existing_run(store):
    with pytest.raises(RunStoreError, match="already holds a run"):
        RunStore.create(store.run_dir, CONFIG, "fp-2")


def test_schema_version_mismatch_is_refused(store):
    store.close()
    with sqlite3.connect(store.run_dir / "run.db") as conn:
        conn.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    message = (f"was written by schema version 99; this evograph reads {SCHEMA_VERSION}")
    for readonly in (False, True):
        with pytest.raises(RunStoreError, match=message):
            RunStore.open(store.run_dir, readonly=readonly)


@pytest.mark.parametrize("kind", ["missing", "empty", "not_sqlite", "foreign_sqlite"])
def test_a_directory_that_is_not_a_run_is_refused(tmp_path, kind):
    run_dir = tmp_path / "elsewhere"
    if kind != "missing":
        run_dir.mkdir()
    if kind == "not_sqlite":
        (run_dir / "run.db").write_text("hello, I am a text file\n" * 100)
    if kind == "foreign_sqlite":
        with sqlite3.connect(run_dir / "run.db") as conn:
            conn.execute("CREATE TABLE t (x)")
    for readonly in (False, True):
        with pytest.raises(RunStoreError, match=str(run_dir)):
            RunStore.open(run_dir, readonly=readonly)
    assert not (run_dir / "run.db").exists() or kind != "missing"


def test_fingerprint_check(store):
    store.check_fingerprint("fp-1")
    with pytest.raises(RunStoreError, match="another configuration"):
        store.check_fingerprint("fp-2")


# --- batches and statuses -----------------------------------------------------------------------

def test_add_batch_is_one_transaction(store):
    store.add_batch(0, [proposal(0), proposal(1)], {"batch": 0})
    counts = {t: table_count(store.run_dir, t) for t in ("individuals", "births", "evaluations")}
    with pytest.raises(RunStoreError, match="UNIQUE"):  # id 0 again, after two good ones
        store.add_batch(1, [proposal(2), proposal(3), proposal(0)], {"batch": 1})
    with pytest.raises(TypeError):  # a genome that is not JSON, after a good one
        store.add_batch(1, [proposal(2), {**proposal(3), "genome": object()}], {"batch": 1})
    assert {t: table_count(store.run_dir, t) for t in counts} == counts
    assert store.batch_ids(1) == [] and store.unfinished() == [0, 1]
    assert store.load_proposer_state() == (0, "asked", {"batch": 0})
    store.add_batch(1, [proposal(2), proposal(3)], {"batch": 1})  # the store is still usable
    assert store.batch_ids(1) == [2, 3]


def test_statuses_attempts_and_counts(store):
    store.add_batch(0, [proposal(i) for i in range(3)], {})
    store.add_batch(1, [proposal(i) for i in range(3, 5)], {})
    assert store.counts_by_status() == {"pending": 5, "running": 0, "completed": 0,
                                        "infeasible": 0, "failed": 0}
    store.mark_running([0, 1, 2], worker="w0")
    first = store.evaluation(0)
    assert (first.status, first.attempt, first.worker) == ("running", 1, "w0")
    assert first.started_at is not None
    store.record_result(0, "failed", None, {}, error="CUDA out of memory")
    store.mark_running([0])  # retry
    assert (store.evaluation(0).attempt, store.evaluation(0).error) == (2, None)
    store.record_result(0, "completed", 0.75, {"accuracy": 0.75}, weights="weights/0.safetensors",
                        inherited={"copied": ["a"], "partial": [], "fresh": ["b"]},
                        wall_time=1.5)
    store.record_result(1, "infeasible", None, {}, error="non-finite loss")
    done = store.evaluation(0)
    assert (done.status, done.fitness, done.metrics, done.weights, done.wall_time) == (
        "completed", 0.75, {"accuracy": 0.75}, "weights/0.safetensors", 1.5)
    assert done.finished_at >= done.started_at
    assert store.individual(0).inherited == {"copied": ["a"], "partial": [], "fresh": ["b"]}
    assert store.evaluation(1).error == "non-finite loss"
    assert store.unfinished() == [2, 3, 4] and store.unfinished(batch=0) == [2]
    store.mark_pending([2])
    assert store.evaluation(2).status == "pending" and store.evaluation(2).attempt == 1
    assert store.counts_by_status() == {"pending": 3, "running": 0, "completed": 1,
                                        "infeasible": 1, "failed": 0}
    assert [e.id for e in store.evaluations()] == [0, 1, 2, 3, 4]
    assert store.count_individuals() == 5
    assert store.recent_statuses(20) == ["completed", "infeasible"]  # finished ones, by id
    assert store.recent_statuses(1) == ["infeasible"]
    summary = store.summary()
    assert (summary["run_id"], summary["best_id"], summary["best_fitness"]) == ("test-run", 0,
                                                                                0.75)
    assert (summary["evaluations_done"], summary["individuals"], summary["last_batch"]) == (2, 5,
                                                                                            1)
    assert summary["total_wall_time"] >= 1.5 and summary["first_time"] <= summary["last_time"]


def test_bad_writes_are_refused_and_leave_nothing(store):
    store.add_batch(0, [proposal(0)], {})
    with pytest.raises(ValueError, match="status"):
        store.record_result(0, "running", 1.0, {})
    with pytest.raises(RunStoreError, match="unknown"):
        store.record_result(99, "completed", 1.0, {})
    with pytest.raises(RunStoreError, match="unknown"):
        store.mark_running([0, 99])
    assert store.evaluation(0).status == "pending"  # the known id was not touched either
    with pytest.raises(RunStoreError, match="no individual 99"):
        store.individual(99)
    with pytest.raises(RunStoreError):
        store.evaluation(99)
    with pytest.raises(ValueError, match="phase"):
        store.save_proposer_state(0, "thinking", {})


def test_best_ignores_null_fitness_and_never_stores_nan(store):
    store.add_batch(0, [proposal(i) for i in range(8)], {})
    store.mark_running(range(8))
    store.record_result(0, "completed", float("nan"), {})
    store.record_result(1, "completed", float("inf"), {"loss": float("-inf")})
    store.record_result(2, "completed", None, {})
    store.record_result(3, "failed", 0.99, {})  # a fitness from a failed run does not count
    store.record_result(4, "completed", 0.5, {})
    store.record_result(5, "completed", 0.9, {})
    store.record_result(6, "completed", 0.5, {})
    store.record_result(7, "infeasible", float("nan"), {})
    assert [(e.id, e.fitness) for e in store.best(10)] == [(5, 0.9), (4, 0.5), (6, 0.5)]
    assert [e.id for e in store.best()] == [5]
    assert store.evaluation(0).metrics == {"raw_fitness": "nan"}
    assert store.evaluation(1).metrics == {"raw_fitness": "inf", "loss": "-inf"}
    assert store.evaluation(3).metrics == {"raw_fitness": 0.99}
    with sqlite3.connect(store.run_dir / "run.db") as conn:
        fitness = [r[0] for r in conn.execute("SELECT fitness FROM evaluations")]
        assert all(f is None or math.isfinite(f) for f in fitness)
        def refuse(constant):
            raise AssertionError(f"{constant} in a JSON column")
        for (text,) in conn.execute("SELECT metrics FROM evaluations"):  # strict JSON text
            json.loads(text, parse_constant=refuse)
        with pytest.raises(sqlite3.IntegrityError):  # the schema itself refuses inf
            conn.execute("UPDATE evaluations SET fitness = 9e999 WHERE id = 4")


def test_proposer_state_keeps_only_the_latest(store):
    assert store.load_proposer_state() is None
    store.save_proposer_state(0, "asked", {"step": 0})
    store.save_proposer_state(0, "told", {"step": 1, "rng": {"state": 2**100}})
    assert store.load_proposer_state() == (0, "told", {"step": 1, "rng": {"state": 2**100}})
    assert table_count(store.run_dir, "proposer_state") == 1


def test_the_told_mark_follows_told_checkpoints_only(store):
    """With pipelined batches a later batch may be asked after an earlier one is told: the
    told mark moves with "told" checkpoints alone; a run from before the mark existed derives
    it from its checkpoint (synchronous batches)."""
    assert (store.told_batch(), store.last_batch()) == (0, 0)
    store.add_batch(1, [proposal(0)], {"step": 1})
    store.add_batch(2, [proposal(1)], {"step": 2})
    assert (store.told_batch(), store.last_batch()) == (0, 2)
    store.save_proposer_state(1, "told", {"step": 3})
    store.add_batch(3, [proposal(2)], {"step": 4})
    assert (store.told_batch(), store.last_batch()) == (1, 3)
    with sqlite3.connect(store.run_dir / "run.db") as conn:  # as an older evograph wrote it
        conn.execute("DELETE FROM meta WHERE key = 'told_batch'")
    assert store.told_batch() == 2  # checkpoint "asked" at batch 3
    store.save_proposer_state(3, "told", {"step": 5})
    assert store.told_batch() == 3


def test_a_checkpoint_and_its_events_are_stored_together_or_not_at_all(store):
    """The driver's "told" checkpoint carries the deaths it caused: a resume does not tell
    again, so a crash between the two would lose them."""
    store.save_proposer_state(0, "told", {"step": 1}, [("died", "2 left", {"ids": [0, 1]})])
    assert store.load_proposer_state() == (0, "told", {"step": 1})
    assert [e["data"] for e in store.events("died")] == [{"ids": [0, 1]}]
    with pytest.raises(TypeError):  # the event cannot be stored: neither is
        store.save_proposer_state(1, "told", {"step": 2}, [("died", "bad", {"ids": {2}})])
    assert store.load_proposer_state() == (0, "told", {"step": 1})
    assert len(store.events("died")) == 1


def test_events(store):
    store.log_event("resume", "resumed after interruption", {"in_flight": [3, 4]})
    store.log_event("warning", "most evaluations fail")
    assert [e["kind"] for e in store.events()] == ["resume", "warning"]
    (event,) = store.events("resume")
    assert event["message"] == "resumed after interruption"
    assert event["data"] == {"in_flight": [3, 4]} and event["time"] > 0
    assert store.events("warning")[0]["data"] is None


# --- files --------------------------------------------------------------------------------------

def test_weights_round_trip(store):
    base = torch.randn(4, 6)
    tensors = {"conv.weight": torch.randn(8, 3, 3, 3), "fc.weight": base.t(),  # non-contiguous
               "tied": base, "bn.running_mean": torch.zeros(5, dtype=torch.float64),
               "steps": torch.tensor(3), "half": torch.randn(2, 2).to(torch.bfloat16)}
    rel = store.write_weights(3, tensors, metadata={"id": "3"})
    assert rel == "weights/3.safetensors" and store.run_dir / rel == store.weights_file(3)
    back = store.read_weights(3)
    assert set(back) == set(tensors)
    for name, t in tensors.items():
        assert back[name].dtype == t.dtype and torch.equal(back[name], t), name
    with safe_open(store.weights_file(3), framework="pt") as f:
        assert json.loads(f.metadata()["evograph"]) == {"id": "3"}
    store.write_weights(3, {"x": torch.ones(2)})  # overwrite in place
    assert list(store.read_weights(3)) == ["x"]
    assert sorted(p.name for p in (store.run_dir / "weights").iterdir()) == ["3.safetensors"]


@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty", "missing"])
def test_damaged_weights_raise_run_store_error(store, damage):
    store.write_weights(1, {"w": torch.randn(32, 32)})
    path = store.weights_file(1)
    data = path.read_bytes()
    if damage == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif damage == "garbage":
        path.write_bytes(b"\x80\x04\x95 not a safetensors file, maybe a pickle" * 10)
    elif damage == "empty":
        path.write_bytes(b"")
    else:
        path.unlink()
    with pytest.raises(RunStoreError, match=str(path)):
        store.read_weights(1)


def test_atomic_write_helpers(tmp_path):
    target = tmp_path / "report.json"
    atomic_write_text(target, '{"a": 1}')
    atomic_write_bytes(target, b'{"a": 2}')
    assert target.read_text() == '{"a": 2}'
    assert [p.name for p in tmp_path.iterdir()] == ["report.json"]
    with pytest.raises(FileNotFoundError):
        atomic_write_text(tmp_path / "no" / "such" / "dir.txt", "x")


# --- processes: the lock, readers, kill -9 ------------------------------------------------------

LOCKER = """
    import sys
    from evograph.errors import RunStoreError
    from evograph.runs.store import RunStore
    with RunStore.open(sys.argv[1]) as s:
        try:
            s.acquire_lock()
        except RunStoreError as e:
            print(e)
            sys.exit(3)
        print("locked")
"""


def test_the_lock_refuses_a_driver_in_another_process(store):
    store.acquire_lock()
    store.acquire_lock()  # idempotent in the holder
    second = run_python(LOCKER, str(store.run_dir))
    out, err = second.communicate(timeout=60)
    assert second.returncode == 3, err
    assert out.strip() == (f"run directory {store.run_dir} is in use by another evograph driver "
                           f"(pid {os.getpid()})")
    store.close()  # releases the lock
    third = run_python(LOCKER, str(store.run_dir))
    out, err = third.communicate(timeout=60)
    assert (third.returncode, out.strip()) == (0, "locked"), err


def test_readonly_store_reads_while_the_writer_holds_the_lock(store):
    store.acquire_lock()
    store.add_batch(0, [proposal(0)], {})
    with RunStore.open(store.run_dir, readonly=True) as reader:
        assert reader.counts_by_status()["pending"] == 1
        store.add_batch(1, [proposal(1)], {})  # the writer is not blocked by the reader
        store.mark_running([1])
        assert reader.unfinished() == [0, 1] and reader.evaluation(1).status == "running"
        with pytest.raises(RunStoreError, match="read-only"):
            reader.log_event("x", "y")
        with pytest.raises(RunStoreError, match="read-only"):
            reader.acquire_lock()
    reader = run_python("""
        import json, sys
        from evograph.runs.store import RunStore
        with RunStore.open(sys.argv[1], readonly=True) as s:
            print(json.dumps(s.counts_by_status()))
    """, str(store.run_dir))
    out, err = reader.communicate(timeout=60)
    assert reader.returncode == 0, err
    assert json.loads(out)["running"] == 1


def test_stale_temp_files_are_removed_by_the_next_driver(store):
    stale = store.run_dir / "weights" / ".7.safetensors.deadbeef.tmp"
    stale.write_bytes(b"half a file")
    store.acquire_lock()
    assert not stale.exists()


WRITER = """
    import sys
    from evograph.runs.store import RunStore, atomic_write_bytes
    with RunStore.open(sys.argv[1]) as s:
        s.acquire_lock()
        for b in range(10**6):
            ids = list(range(4 * b, 4 * b + 4))
            s.add_batch(b, [{"id": i, "genome": {"n": i, "pad": "x" * 500}, "parents": [],
                             "seed": i, "edit": None} for i in ids], {"batch": b})
            s.mark_running(ids, worker="w")
            for i in ids:
                s.record_result(i, "completed", float(i), {"batch": b})
            s.save_proposer_state(b, "told", {"batch": b})
            atomic_write_bytes(s.run_dir / "blob.bin", str(b % 10).encode() * 65536)
            print(b, flush=True)
"""


@pytest.mark.slow
def test_committed_batches_survive_kill_9(store):
    store.close()
    writer = run_python(WRITER, str(store.run_dir))
    try:
        committed = -1
        deadline = time.monotonic() + 60
        while committed < 25 and time.monotonic() < deadline:
            committed = int(writer.stdout.readline())
            if committed == 5:  # a reader in this process, while the writer is busy
                with RunStore.open(store.run_dir, readonly=True) as reader:
                    assert len(reader.individuals()) >= 24
        os.kill(writer.pid, signal.SIGKILL)
        writer.wait(timeout=30)
    finally:
        writer.kill()
        writer.communicate()
    assert writer.returncode == -signal.SIGKILL and committed >= 25
    with RunStore.open(store.run_dir) as s:
        s.acquire_lock()  # the kernel released the dead driver's lock
        assert s.integrity_check() == "ok"
        rows = s.individuals()
        batches = sorted({r.batch for r in rows})
        assert batches == list(range(len(batches))) and len(batches) >= committed + 1
        for b in batches:  # every batch is whole: individuals, births and evaluations
            assert s.batch_ids(b) == list(range(4 * b, 4 * b + 4))
        assert len(s.evaluations()) == len(rows) == table_count(s.run_dir, "births")
        for b in range(committed + 1):  # everything reported committed is there, finished
            assert all(s.evaluation(i).fitness == float(i) for i in s.batch_ids(b))
        state_batch, _, state = s.load_proposer_state()
        assert state == {"batch": state_batch} and state_batch >= committed
        assert state_batch in (batches[-1], batches[-1] - 1)
        blob = (s.run_dir / "blob.bin").read_bytes()
        assert len(blob) == 65536 and len(set(blob)) == 1  # old or new, never torn
        assert all(r.status in STATUSES for r in s.evaluations())
