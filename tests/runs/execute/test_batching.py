"""Units of work: grouping same-architecture tasks, batched group evaluation, group failures."""

import pytest
import torch
from evograph.compile.training.batch_rule import StepTimes, cost_class
from evograph.genome.io import from_dict
from evograph.runs.config import ExecutorConfig
from evograph.runs.execute import process as worker
from evograph.runs.execute.batching import UnitQueue, estimated_cost, group_key, plan_units
from evograph.runs.execute.executors import SerialExecutor
from evograph.runs.execute.worker import evaluate_group, evaluate_task

from tests.runs.execute.executor_tasks import mixed_tasks, sibling_tasks


def ids(units):
    return [[t.id for t in unit] for unit in units]


def test_siblings_share_a_key_and_other_tasks_do_not():
    a, b, c = sibling_tasks(3)
    assert group_key(a) == group_key(b) == group_key(c) is not None
    other = mixed_tasks(2)
    assert group_key(other[0]) != group_key(other[1])
    assert group_key(a.replace(fitness="maml", fitness_params={})) is None
    assert group_key(a.replace(genome={"format": "nonsense"})) is None
    # the driver's hint gives the same key without parsing the genome
    hinted = a.replace(arch_hash=from_dict(a.genome).arch_hash)
    assert group_key(hinted) == group_key(a)
    assert group_key(hinted.replace(arch_hash="f" * 16)) != group_key(a)


def test_plan_units_modes():
    tasks = sibling_tasks(5) + mixed_tasks(2, steps=12)
    tasks[5:] = [tasks[5].replace(id=5), tasks[6].replace(id=6)]

    def grouping(*args, **kwargs):  # the units, whatever order they are handed out in
        return sorted(ids(plan_units(tasks, *args, **kwargs)))

    assert ids(plan_units(tasks, "never", 1)) == [[i] for i in range(7)]
    assert grouping("never", 2) == [[i] for i in range(7)]
    assert grouping("always", 2) == [[0, 1, 2, 3, 4], [5], [6]]
    assert grouping("always", 2, max_group=2) == [[0, 1], [2, 3], [4], [5], [6]]
    # auto: no grouping when every task has a slot of its own
    assert ids(plan_units(tasks, "auto", 8)) == [[i] for i in range(7)]
    # auto: groups are split until every slot has a unit
    assert grouping("auto", 4) == [[0, 1, 2], [3, 4], [5], [6]]
    assert grouping("auto", 2) == [[0, 1, 2, 3, 4], [5], [6]]
    with pytest.raises(ValueError, match="executor.batched"):
        plan_units(tasks, "sometimes")


def test_costliest_units_go_first_when_several_slots_share_a_batch():
    tasks = mixed_tasks(6) + sibling_tasks(3, start=6)
    costs = [estimated_cost([t]) for t in tasks]
    assert len(set(costs)) > 2 and costs != sorted(costs, reverse=True)  # not sorted already
    for mode in ("never", "always"):
        units = plan_units(tasks, mode, 2)
        unit_costs = [estimated_cost(u) for u in units]
        assert unit_costs == sorted(unit_costs, reverse=True)
    # one slot: the order of the batch, which a serial run keeps
    assert ids(plan_units(tasks, "never", 1)) == [[t.id] for t in tasks]


def test_a_cost_hint_from_the_driver_is_used_as_given():
    """The driver passes the FLOPs its strategy's validation already computed; they order the
    units without parsing a genome again (checked with a genome that could not be parsed)."""
    task = mixed_tasks(1)[0]
    assert estimated_cost([task.replace(genome={"format": "nonsense"}, flops=123)]) == 123
    assert estimated_cost([task.replace(genome={"format": "nonsense"})]) == 0
    assert estimated_cost([task]) == estimated_cost([task.replace(flops=estimated_cost([task]))])


def test_a_failed_group_comes_back_as_single_tasks():
    one, two, three = (t.replace(id=i) for i, t in enumerate(mixed_tasks(3), start=1))
    queue = UnitQueue([[one, two], [three]])
    unit = queue.pop()
    assert queue.fail(unit, "worker died") == []
    assert ids(queue.units) == [[1], [2], [3]]
    [result] = queue.fail(queue.pop(), "worker died (signal SIGKILL)", "w0")
    assert result.id == 1 and result.status == "failed"
    assert result.error == "worker died (signal SIGKILL)" and result.worker == "w0"
    assert [r.id for r in queue.drain("gone")] == [2, 3] and not queue


def close(a, b):
    assert a.status == b.status
    if a.status == "completed":
        assert a.fitness == pytest.approx(b.fitness, abs=0.02)
        assert a.metrics["loss_curve"] == pytest.approx(b.metrics["loss_curve"], abs=1e-4)


def test_group_trained_together_equals_one_by_one():
    tasks = sibling_tasks(3)
    together = evaluate_group(tasks, "always")
    assert [r.id for r in together] == [0, 1, 2]
    for result, task in zip(together, tasks):
        assert result.metrics["batched"] == {"size": 3, "speedup": None}
        assert result.metrics["build_time"] > 0 and result.metrics["eval_time"] > 0
        close(result, evaluate_task(task))
    never = evaluate_group(tasks, "never")
    assert all("batched" not in r.metrics for r in never)


def test_auto_decides_from_the_trainings_the_worker_has_run(monkeypatch):
    """``auto``: a cost class not yet seen trains batched; that training's step time and every
    training alone are kept; once both are known the rule compares them, and a group whose K
    alone would not take 1.2x the batched time goes one by one."""
    times = StepTimes()
    monkeypatch.setattr(worker, "STEP_TIMES", times)
    tasks = sibling_tasks(3)
    key = cost_class(from_dict(tasks[0].genome), torch.device("cpu"))
    first = evaluate_group(tasks, "auto")
    assert all(r.metrics["batched"] == {"size": 3, "speedup": None} for r in first)
    assert times.batched_step(key, 3) > 0 and times.alone_step(key) is None
    evaluate_task(tasks[0])
    alone = times.alone_step(key)
    assert alone > 0
    for _ in range(times.window):   # as if batched trainings had been slow
        times.observe_batched(key, 3, 3 * alone)
    slow = evaluate_group(tasks, "auto")
    assert all("batched" not in r.metrics for r in slow)
    assert all(r.status == "completed" for r in slow)
    for _ in range(times.window):   # and now fast
        times.observe_batched(key, 3, alone)
    fast = evaluate_group(tasks, "auto")
    speedup = 3 * times.alone_step(key) / alone
    assert all(r.metrics["batched"] == {"size": 3, "speedup": pytest.approx(speedup)}
               for r in fast)


def test_step_times_count_every_training_that_ran_all_its_steps(monkeypatch):
    """A group with a diverging member still ran the batched loop to its end, so its time is
    kept; a candidate alone whose loss went non-finite stopped early, so its time is not."""
    monkeypatch.setenv("EVOGRAPH_FAULT_INJECTION", "1")
    times = StepTimes()
    monkeypatch.setattr(worker, "STEP_TIMES", times)
    tasks = sibling_tasks(3)
    tasks[2] = tasks[2].replace(fault="nan")
    key = cost_class(from_dict(tasks[0].genome), torch.device("cpu"))
    results = evaluate_group(tasks, "always")
    assert [r.status for r in results] == ["completed", "completed", "infeasible"]
    assert times.batched_count(key) == 1
    assert evaluate_task(tasks[2]).status == "infeasible" and times.alone_step(key) is None
    evaluate_task(tasks[0])
    assert times.alone_step(key) > 0


def test_group_of_different_architectures_falls_back_to_one_by_one():
    tasks = mixed_tasks(2)
    results = evaluate_group(tasks, "always")
    assert [r.status for r in results] == ["completed", "completed"]
    assert all("batched" not in r.metrics for r in results)


def test_a_faulty_member_costs_only_itself(monkeypatch):
    monkeypatch.setenv("EVOGRAPH_FAULT_INJECTION", "1")
    tasks = sibling_tasks(3)
    tasks[1:] = [tasks[1].replace(fault="oom"), tasks[2].replace(fault="nan")]
    results = evaluate_group(tasks, "always")
    assert [r.status for r in results] == ["completed", "failed", "infeasible"]
    assert results[1].error.startswith("out of memory")
    assert results[2].metrics["reason"] == "non-finite training loss"


def test_serial_executor_batches_groups():
    tasks = sibling_tasks(3) + mixed_tasks(1)
    tasks[3] = tasks[3].replace(id=3)
    executor = SerialExecutor(ExecutorConfig(name="serial", batched="always"))
    results = sorted(executor.run(tasks, lambda: False), key=lambda r: r.id)
    assert [r.id for r in results] == [0, 1, 2, 3]
    assert [("batched" in r.metrics) for r in results] == [True, True, True, False]
    assert all(r.status == "completed" for r in results)


def test_tasks_and_results_round_trip_through_their_json_form_and_name_a_bad_field():
    import json

    from evograph.runs.execute.task import Task, TaskFormatError, TaskResult
    task = mixed_tasks(1)[0].replace(flops=12)
    assert Task.from_dict(json.loads(json.dumps(task.to_dict()))) == task
    result = evaluate_task(task)
    assert TaskResult.from_dict(json.loads(json.dumps(result.to_dict()))) == result
    broken = {k: v for k, v in task.to_dict().items() if k != "seed"}
    with pytest.raises(TaskFormatError, match=r"^Task\.seed: missing$"):
        Task.from_dict(broken)
    with pytest.raises(TaskFormatError, match=r"^Task\.seed: must be int \(got str"):
        Task.from_dict({**task.to_dict(), "seed": "7"})
    with pytest.raises(TaskFormatError, match=r"^TaskResult\.colour: unknown field"):
        TaskResult.from_dict({**result.to_dict(), "colour": 1})
