"""Every executor behind one interface: equal results, fault isolation, no leaked processes.

The fault tests use the test-only hook of :mod:`evograph.runs.execute.faults` (EVOGRAPH_FAULT_INJECTION):
evaluations SIGKILL themselves, segfault, allocate past their memory limit, hang past the timeout
or diverge. The dask executor is tested on one LocalCluster per module (started on first use).
"""

import multiprocessing
import os
import queue
import re
import subprocess
import sys
import threading
import time
from collections import Counter

import psutil
import pytest
import torch
from evograph.devices import resolve_device, worker_devices
from evograph.errors import ConfigError
from evograph.runs.config import ExecutorConfig, load_config
from evograph.runs.driver import create_run, run
from evograph.runs.execute import dask_cluster as dask_executor
from evograph.runs.execute import pool_worker
from evograph.runs.execute.batching import plan_units
from evograph.runs.execute.executors import EXECUTORS, make_executor
from evograph.runs.execute.task import TaskResult
from evograph.runs.execute.weights import PendingWrite
from evograph.runs.execute.worker import evaluate_task
from evograph.runs.store import RunStore

from tests.runs.execute.executor_tasks import mixed_tasks, sibling_tasks
from tests.runs.test_run import ROOT, TINY, final_state

TIMEOUT_S = 10.0          # per evaluation; a normal one takes well under a second
FAULTS = {  # kind -> (status, pattern of the error or reason)
    "sigkill": ("failed", r"worker died"),
    "segfault": ("failed", r"worker died"),
    "oom": ("failed", r"^out of memory"),
    "hang": ("failed", r"^timeout after"),
    "nan": ("infeasible", r"non-finite training loss"),
}
IN_PROCESS = ("oom", "nan")   # the serial executor has no process to lose


@pytest.fixture(scope="module", autouse=True)
def fault_injection():
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("EVOGRAPH_FAULT_INJECTION", "1")
        yield


@pytest.fixture(scope="module")
def dask_cluster(fault_injection):
    cluster = dask_executor._local_cluster(2)
    yield cluster.scheduler_address
    cluster.close()


@pytest.fixture(params=sorted(EXECUTORS))
def executor_name(request):
    return request.param


def open_executor(request, name, **options):
    """An executor of every registered kind; dask uses the module's cluster."""
    if name == "dask":
        options["scheduler"] = request.getfixturevalue("dask_cluster")
    options = {"workers": 2, "timeout_s": TIMEOUT_S, "batched": "never", **options}
    return make_executor(ExecutorConfig(name=name, **options))


def children() -> set[int]:
    """Live child processes of this test process (multiprocessing's resource tracker aside)."""
    out = set()
    for child in psutil.Process().children(recursive=True):
        try:
            if child.status() != psutil.STATUS_ZOMBIE and \
                    "resource_tracker" not in " ".join(child.cmdline()):
                out.add(child.pid)
        except psutil.NoSuchProcess:
            pass
    return out


def run_all(executor, tasks):
    results = list(executor.run(tasks, lambda: False))
    assert sorted(r.id for r in results) == sorted(t.id for t in tasks)  # once each
    return {r.id: r for r in results}


@pytest.fixture(scope="module")
def reference():
    """The tasks evaluated one by one in this process: what every executor must reproduce."""
    tasks = mixed_tasks(4)
    return tasks, {t.id: evaluate_task(t) for t in tasks}


@pytest.mark.slow
def test_tasks_submitted_while_a_run_is_iterated_are_run_by_it(request, executor_name,
                                                               reference):
    """The driver's pipelined batches and retries reach a running executor through submit():
    run() goes on until those have reported too."""
    tasks, expected = reference
    executor = open_executor(request, executor_name)
    try:
        with pytest.raises(RuntimeError, match="call run"):
            executor.submit(tasks)
        got, later = {}, tasks[1:]
        for result in executor.run(tasks[:1], lambda: False):
            got[result.id] = result
            if later:
                executor.submit(later)
                later = []
    finally:
        executor.close()
    assert sorted(got) == sorted(t.id for t in tasks)
    assert {i: r.fitness for i, r in got.items()} == {i: r.fitness
                                                         for i, r in expected.items()}


def fault_tasks(kinds):
    """One task per fault kind, a sibling group whose middle member crashes, and a clean one."""
    tasks = mixed_tasks(len(kinds) + 1)
    for task, kind in zip(tasks, kinds):
        tasks[tasks.index(task)] = task.replace(fault=kind)
    group = sibling_tasks(3, start=len(tasks))
    group[1] = group[1].replace(fault="sigkill" if "sigkill" in kinds else "oom")
    return tasks + group


@pytest.mark.slow
def test_fault_isolation(request, executor_name):
    kinds = list(IN_PROCESS if executor_name == "serial" else FAULTS)
    tasks = fault_tasks(kinds)
    if executor_name == "dask":
        request.getfixturevalue("dask_cluster")   # its processes are there before and after
    before = children()
    executor = open_executor(request, executor_name, memory_limit_mb=1500, batched="always")
    try:
        got = run_all(executor, tasks)
    finally:
        executor.close()
    for task in tasks:
        result, kind = got[task.id], task.fault
        if kind is None:
            assert result.status == "completed", (task.id, result.error)
            continue
        status, pattern = FAULTS[kind]
        assert result.status == status, result
        assert re.search(pattern, result.error or result.metrics.get("reason", "")), result
    if executor_name == "dask":   # the module's cluster stays up, its dead workers replaced
        assert len(children()) <= len(before)
    else:
        assert children() <= before, "leaked worker processes"


@pytest.mark.slow
def test_local_executor_reports_a_hang_and_replaces_the_worker():
    [task] = mixed_tasks(1)
    executor = make_executor(ExecutorConfig(workers=1, timeout_s=1.0, batched="never"))
    try:
        [result] = run_all(executor, [task.replace(fault="hang")]).values()
        assert result.status == "failed" and result.error == "timeout after 1 s"
        assert executor.slots == 1 and executor.pool[0].process.is_alive()
    finally:
        executor.close()
    assert not any(w.process.is_alive() for w in executor.pool)


@pytest.mark.slow
def test_local_executor_sends_ahead_and_requeues_what_a_dead_worker_never_started():
    """One worker holds the next unit while it runs one; when it dies, only the unit it was
    running is charged: the one sent ahead goes back to the queue and completes."""
    tasks = mixed_tasks(4)
    [first], *_ = plan_units(tasks, "never", 1, 16)       # the unit dispatched first
    tasks.insert(0, tasks.pop(tasks.index(first)))
    tasks[0] = tasks[0].replace(fault="sigkill")
    executor = make_executor(ExecutorConfig(workers=1, timeout_s=TIMEOUT_S, batched="never"))
    held, dispatch = [], executor._dispatch

    def watch(queue) -> None:          # how many units the worker holds after each dispatch
        dispatch(queue)
        held.append(len(executor.pool[0].units))

    executor._dispatch = watch
    try:
        got = {r.id: r for r in executor.run(tasks, lambda: False)}
    finally:
        executor.close()
    assert max(held) == 2                                  # a unit was sent ahead
    assert got[tasks[0].id].status == "failed"
    assert "worker died" in got[tasks[0].id].error
    assert [got[t.id].status for t in tasks[1:]] == ["completed"] * 3
    assert sorted(got) == sorted(t.id for t in tasks)


def test_a_result_leaves_its_worker_only_with_its_weights_on_disk(tmp_path):
    """Pool workers write weights on a sender thread while the next unit runs; a result the
    supervisor receives must already have its weights file (children inherit from it)."""
    tasks = [t.replace(weights_out=str(tmp_path / f"{t.id}.safetensors"))
             for t in mixed_tasks(6)]
    executor = make_executor(ExecutorConfig(workers=1, timeout_s=TIMEOUT_S, batched="never"))
    try:
        for result in executor.run(tasks, lambda: False):
            assert result.status == "completed"
            assert os.path.getsize(result.weights) > 0  # on disk when it arrives
    finally:
        executor.close()


def test_a_death_is_charged_to_the_unit_running_not_to_one_whose_weights_are_being_written(
        tmp_path):
    """A finished unit whose results are unsent when its worker dies (its weights still being
    written) runs again, uncharged; the unit that was running is the one that failed."""
    tasks = [t.replace(weights_out=str(tmp_path / f"{t.id}.safetensors"))
             for t in mixed_tasks(2)]
    order = [unit[0].id for unit in plan_units(tasks, "never", 1, 16)]
    crashing = next(i for i, t in enumerate(tasks) if t.id == order[1])  # begins as the
    tasks[crashing] = tasks[crashing].replace(fault="sigkill")          # first finishes
    executor = make_executor(ExecutorConfig(workers=1, timeout_s=TIMEOUT_S, batched="never"))
    try:
        got = run_all(executor, tasks)
    finally:
        executor.close()
    assert got[order[0]].status == "completed"
    assert os.path.getsize(got[order[0]].weights) > 0
    assert got[order[1]].status == "failed" and "worker died" in got[order[1]].error


def test_a_sender_writes_once_its_worker_is_quiet_or_has_waited_long_enough(tmp_path,
                                                                           monkeypatch):
    """A pool worker's sender thread writes a unit's weights, then sends its results, while
    the main thread trains the next unit or waits for one (``quiet``: no interpreter lock taken
    from building the next candidate), and after ``QUIET_WAIT_S`` at the latest."""
    monkeypatch.setattr(pool_worker, "QUIET_WAIT_S", 0.5)
    here, there = multiprocessing.Pipe()
    outbox, quiet = queue.SimpleQueue(), threading.Event()
    sender = threading.Thread(target=pool_worker.send_results,
                              args=(there, threading.Lock(), outbox, quiet), daemon=True)
    sender.start()

    def unit(name: str):
        path = str(tmp_path / f"{name}.safetensors")
        result = TaskResult(len(name), "completed", weights=path)
        return PendingWrite(result, torch.nn.Linear(2, 2), path, {}), result

    write, result = unit("busy")
    outbox.put(([write], [result]))
    assert not here.poll(0.2) and not os.path.exists(write.path)  # the worker is busy
    quiet.set()
    assert here.poll(5.0) and here.recv() == [result] and os.path.getsize(write.path) > 0
    quiet.clear()
    write, result = unit("never-quiet")
    sent = time.monotonic()
    outbox.put(([write], [result]))
    assert here.poll(5.0) and here.recv() == [result] and os.path.getsize(write.path) > 0
    assert time.monotonic() - sent >= 0.45  # waited for a quiet moment that never came
    outbox.put(None)
    sender.join(5.0)
    assert not sender.is_alive()


@pytest.mark.parametrize("begun_first", [True, False])
def test_supervisor_knows_which_unit_runs_whatever_order_messages_arrive(begun_first):
    """A worker says "begun" for a unit before running it and sends a unit's results after
    writing its weights, so the next unit's "begun" and the previous unit's results race."""
    from evograph.runs.execute.executors import _Worker
    a, b, c = [{"id": 1}], [{"id": 2}], [{"id": 3}]
    worker = _Worker(process=None, conn=None, device="cpu", name="w")
    worker.units.extend([a, b])
    worker.start_clock(0.0, 10.0)
    assert worker.unit is a and worker.not_running() == [b]  # nothing said yet: the first
    worker.on_begun(1.0, 10.0)
    assert worker.unit is a and worker.deadline == 11.0
    if begun_first:
        worker.on_begun(2.0, 10.0)                       # b begins; a's weights being written
        assert worker.unit is b and worker.not_running() == [a]
        assert worker.on_results(3.0, 10.0) is a
        assert worker.deadline == 12.0                   # b's clock runs from its "begun"
    else:
        assert worker.on_results(2.0, 10.0) is a
        assert worker.unit is b and worker.deadline == 12.0  # as if b began now
        worker.on_begun(2.5, 10.0)
        assert worker.deadline == 12.5
    worker.units.append(c)
    assert worker.unit is b and worker.not_running() == [c]
    assert worker.on_results(4.0, 10.0) is b
    assert worker.unit is c and worker.begun == 0


def test_a_worker_pays_torch_one_time_imports_before_its_first_task():
    """torch.optim's first step imports torch._dynamo (~1.5 s): init_worker does it up front, so
    no candidate's training time carries it."""
    code = ("import sys; from evograph.runs.execute.process import init_worker; "
            "assert 'torch._dynamo' not in sys.modules; init_worker(1, 'cpu'); "
            "assert 'torch._dynamo' in sys.modules; print('warm')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, check=False)
    assert out.stdout.strip() == "warm", out.stderr


def test_a_worker_loads_the_run_dataset_before_its_first_task():
    """executor option ``preload``: the dataset is resident when the worker says it is ready,
    so the first evaluation does not load it inside its own time."""
    task = mixed_tasks(1)[0]
    code = ("import json, sys; from evograph.runs.execute import process as w; "
            "from evograph.runs.execute.task import DataSpec; "
            "w.init_worker(1, 'cpu', preload=DataSpec(**json.loads(sys.argv[1]))); "
            "print(w._dataset.cache_info().currsize)")
    preload = vars(task.data_spec())
    out = subprocess.run([sys.executable, "-c", code, __import__("json").dumps(preload)],
                         capture_output=True, text=True, timeout=120, check=False)
    assert out.stdout.strip() == "1", out.stderr


@pytest.mark.slow
def test_dask_pins_one_unit_per_worker_and_requeues_one_whose_worker_is_gone(request,
                                                                            reference):
    """Units go one per live worker thread, never stacked; a unit pinned to a worker that left
    before running it (here: an address where no worker ever was) goes back to the queue,
    uncharged, and completes on a live worker."""
    tasks, expected = reference
    executor = open_executor(request, "dask")
    free, pinned = executor._free_threads, []

    def free_threads_once_gone():
        workers = free()
        running = Counter(f.worker for f in executor.flight.values())
        assert all(running[w] == 0 for w in workers)  # one unit per (single-thread) worker
        pinned.extend(workers)
        return ["tcp://127.0.0.1:9"] + workers[1:] if len(pinned) == len(workers) else workers

    executor._free_threads = free_threads_once_gone
    give_up = time.monotonic() + 120  # a unit left waiting for the gone worker would hang
    try:
        got = {r.id: r for r in executor.run(tasks, lambda: time.monotonic() > give_up)}
    finally:
        executor.close()
    assert sorted(got) == sorted(t.id for t in tasks), "a unit never came back"
    assert {i: (r.status, r.fitness) for i, r in got.items()} == \
        {i: (r.status, r.fitness) for i, r in expected.items()}


def test_unknown_executor_is_one_clear_error():
    with pytest.raises(ConfigError, match="executor.name: unknown executor 'ray'"):
        make_executor(ExecutorConfig(name="ray"))


@pytest.mark.parametrize("key, value, name", [("scheduler", "tcp://127.0.0.1:1", "local"),
                                              ("per_gpu", 2, "serial")])
def test_an_option_the_executor_does_not_use_is_one_clear_error(key, value, name):
    config = ExecutorConfig(name=name, **{key: value})
    with pytest.raises(ConfigError, match=f"^executor.{key}: the {name} executor does not use"):
        make_executor(config)


def test_dask_scheduler_that_cannot_be_reached_is_one_clear_error():
    with pytest.raises(ConfigError, match="executor.scheduler: cannot use dask scheduler"):
        dask_executor._connect("tcp://127.0.0.1:1", timeout_s=1.0)


def test_worker_devices_cpu_and_gpu_slots():
    assert worker_devices(3, "cpu", 1) == ["cpu"] * 3
    assert len(worker_devices(0, "cpu", 1)) == len(os.sched_getaffinity(0))
    assert resolve_device("", "cuda:1") == "cuda:1"
    assert resolve_device("cuda", "cuda:1") == "cuda:1"
    assert resolve_device("cpu", "cuda:1") == "cpu"
    assert resolve_device("auto", "cpu") == "cpu"
    import torch
    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if not gpus:
        assert worker_devices(2, "auto", 4) == ["cpu", "cpu"]
        with pytest.raises(ConfigError, match="no CUDA device"):
            worker_devices(0, "cuda", 1)
    else:
        slots = worker_devices(0, "cuda", 2)
        assert slots == [f"cuda:{g}" for g in range(gpus) for _ in range(2)]


@pytest.mark.skipif(not __import__("torch").cuda.is_available(), reason="needs CUDA")
def test_local_executor_on_gpu_slots_matches_cpu_status(reference):
    tasks, expected = reference
    executor = make_executor(ExecutorConfig(workers=0, device="cuda", per_gpu=2, timeout_s=120,
                                            batched="never"))
    try:
        assert all(w.device.startswith("cuda:") for w in executor.pool)
        got = run_all(executor, tasks)
    finally:
        executor.close()
    for i, result in got.items():
        assert result.status == expected[i].status == "completed"
        assert result.fitness == pytest.approx(expected[i].fitness, abs=0.05)


# -- whole runs ------------------------------------------------------------------------------------

def tiny(executor, extra=()):
    return load_config(ROOT / "runs/configs/digits.toml",
                       TINY + [f"executor.name={executor}", "executor.batch=2"] + list(extra))


@pytest.mark.slow
def test_same_final_state_on_one_two_workers_and_dask(tmp_path):
    """A small evolution on a dask LocalCluster of its own reaches the state of the serial and
    the 2-worker local runs, with synchronous batches (``executor.pipeline = 0``) and with
    pipelined ones (the default, 1)."""
    before, runs = children(), {}
    pipelined, synchronous = ["executor.pipeline=1"], ["executor.pipeline=0"]
    for name, executor, extra in (("serial", "serial", synchronous),
                                  ("local", "local", ["executor.workers=2"] + synchronous),
                                  ("dask", "dask", ["executor.workers=2"] + synchronous),
                                  ("serial-pipelined", "serial", pipelined),
                                  ("dask-pipelined", "dask", ["executor.workers=2"] + pipelined)):
        runs[name] = create_run(tiny(executor, extra), tmp_path / name)
        assert run(runs[name], live=False).finished
    assert final_state(runs["serial"])[:2] == final_state(runs["local"])[:2]
    assert final_state(runs["serial"])[:2] == final_state(runs["dask"])[:2]
    assert final_state(runs["serial-pipelined"]) == final_state(runs["dask-pipelined"])
    assert children() <= before


@pytest.mark.slow
def test_run_survives_faults_and_retries_only_transient_ones(tmp_path, monkeypatch):
    monkeypatch.setenv("EVOGRAPH_FAULTS", "2=sigkill*1,4=segfault,6=nan,7=hang*1")
    monkeypatch.setenv("EVOGRAPH_FAULT_STATE", str(tmp_path / "faults"))
    config = tiny("local", ["executor.workers=2", "executor.retries=1", "executor.timeout_s=15"])
    before = children()
    run_dir = create_run(config, tmp_path / "run")
    assert run(run_dir, live=False).finished
    with RunStore.open(run_dir, readonly=True) as store:
        rows = {e.id: e for e in store.evaluations()}
    assert (rows[2].status, rows[2].attempt) == ("completed", 2)   # transient: retried once
    assert (rows[4].status, rows[4].attempt) == ("failed", 2)      # retries are bounded
    assert "SIGSEGV" in rows[4].error
    assert (rows[6].status, rows[6].attempt) == ("infeasible", 1)  # NaN is never retried
    assert (rows[7].status, rows[7].attempt) == ("completed", 2)
    assert all(e.status in ("completed", "infeasible", "failed") for e in rows.values())
    assert children() <= before


def test_run_whose_evaluations_mostly_fail_stops_with_a_message(tmp_path, monkeypatch):
    monkeypatch.setenv("EVOGRAPH_FAULTS", "*=oom")
    config = tiny("serial", ["budget.evaluations=30", "executor.retries=0"])
    outcome = run(create_run(config, tmp_path / "run"), live=False)
    assert not outcome.finished
    assert re.search(r"stopped: \d+ of the last \d+ evaluations failed", outcome.reason)
