"""The executor contract: every registered executor (and ``dask``, on a real LocalCluster) runs
the same small tasks to the same results, value for value on CPU, and survives one killed task.

Parametrized over the registry at collection time, so an executor registered later is tested by
being registered. The killed task uses the test-only fault hooks of
:mod:`evograph.runs.execute.faults` (a task's ``fault``, read once ``EVOGRAPH_FAULT_INJECTION``
is set), as the other executor tests do.
"""

import pytest
from evograph.runs.config import ExecutorConfig
from evograph.runs.execute import dask_cluster
from evograph.runs.execute.executors import EXECUTORS, make_executor
from evograph.runs.execute.worker import evaluate_task

from tests.runs.execute.executor_tasks import mixed_tasks

NAMES = sorted(set(EXECUTORS) | {"dask"})
KILLED = 1      # the task whose evaluation SIGKILLs itself (in-process executors: runs out of
                # memory instead, which is what "killed" can mean without a process to lose)


@pytest.fixture(scope="module")
def faults():
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("EVOGRAPH_FAULT_INJECTION", "1")
        yield patch


@pytest.fixture(scope="module")
def scheduler(faults):
    cluster = dask_cluster._local_cluster(2)
    yield cluster.scheduler_address
    cluster.close()


@pytest.fixture(scope="module")
def expected():
    """The tasks evaluated one by one in this process, no executor involved."""
    tasks = mixed_tasks(4)
    return tasks, {t.id: evaluate_task(t) for t in tasks}


def open_executor(request, name: str):
    options = {"scheduler": request.getfixturevalue("scheduler")} if name == "dask" else {}
    return make_executor(ExecutorConfig(name=name, workers=2, timeout_s=30.0, batched="never",
                                        **options))


def run_all(executor, tasks):
    results = list(executor.run(tasks, lambda: False))
    assert sorted(r.id for r in results) == sorted(t.id for t in tasks)  # once each
    return {r.id: r for r in results}


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_every_executor_runs_the_same_tasks_to_the_same_results(request, faults, expected,
                                                                name):
    tasks, reference = expected
    executor = open_executor(request, name)
    try:
        got = run_all(executor, tasks)
    finally:
        executor.close()
    for i, result in got.items():
        assert result.status == reference[i].status == "completed"
        assert result.fitness == reference[i].fitness
        assert result.metrics.keys() == reference[i].metrics.keys()
        for key in ("loss_curve", "val_accuracy", "val_loss", "test_accuracy", "params",
                    "flops"):
            assert result.metrics[key] == reference[i].metrics[key], key


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_every_executor_survives_one_killed_task(request, faults, expected, name):
    tasks, reference = expected
    executor = open_executor(request, name)
    kind = "oom" if name == "serial" else "sigkill"
    tasks = [t.replace(fault=kind) if t.id == KILLED else t for t in tasks]
    try:
        got = run_all(executor, tasks)
    finally:
        executor.close()
    assert got[KILLED].status == "failed"
    assert ("worker died" if kind == "sigkill" else "out of memory") in got[KILLED].error
    for i, result in got.items():
        if i != KILLED:
            assert (result.status, result.fitness) == (reference[i].status,
                                                       reference[i].fitness)
