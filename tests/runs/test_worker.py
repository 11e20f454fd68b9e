"""The evaluation a worker runs: weight inheritance through the weights files."""

from __future__ import annotations

from evograph.runs import worker
from evograph.runs.worker import evaluate_task

from tests.runs.executor_tasks import mixed_tasks


def test_a_child_inherits_the_same_weights_whether_the_parent_file_is_read_or_mapped(
        tmp_path, monkeypatch):
    """Small parent files are read whole, big ones mapped: the child trains from the same
    weights either way, and inherits all of them (IDENTITY child: same genome)."""
    parent = {**mixed_tasks(1)[0], "weights_out": str(tmp_path / "parent.safetensors")}
    assert evaluate_task(parent)["status"] == "completed"
    child = {**parent, "id": 1, "seed": 7, "parent_weights": parent["weights_out"],
             "weights_out": None}
    read = evaluate_task(child)
    monkeypatch.setattr(worker, "SMALL_WEIGHTS_BYTES", 0)  # every file counts as big
    mapped = evaluate_task(child)
    assert read["status"] == mapped["status"] == "completed"
    assert read["inherited"] == mapped["inherited"]
    assert read["inherited"]["copied"] and not read["inherited"]["fresh"]
    assert read["fitness"] == mapped["fitness"]
    assert read["metrics"]["loss_curve"] == mapped["metrics"]["loss_curve"]
    fresh = evaluate_task({**child, "parent_weights": None})
    assert fresh["metrics"]["loss_curve"] != read["metrics"]["loss_curve"]  # it did inherit


def test_a_weights_write_that_fails_leaves_a_failed_result_naming_no_weights(tmp_path):
    """Written in the evaluation (serial, Dask) or later by a pool worker's sender thread, a
    write that fails (here: its folder is missing) makes the result failed, without a file."""
    task = {**mixed_tasks(1)[0], "weights_out": str(tmp_path / "missing" / "w.safetensors")}
    inline = evaluate_task(task)
    deferred: list = []
    later = evaluate_task(task, deferred)
    assert later["status"] == "completed" and len(deferred) == 1  # not written yet
    deferred[0].run()
    for result in (inline, later):
        assert result["status"] == "failed" and "FileNotFoundError" in result["error"]
        assert result["weights"] is None
