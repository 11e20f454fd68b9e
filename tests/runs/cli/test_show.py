"""``evograph show DIR ID`` gives an individual's whole record, ``status --failed`` the reasons
evaluations failed, and ``best`` on a run with nothing completed says so and exits non-zero."""

from __future__ import annotations

import json

import pytest
from evograph.runs.cli.main import main
from evograph.runs.driver import create_run, run
from evograph.runs.store import RunStore

from tests.runs.test_run import tiny_config


@pytest.fixture
def wide(monkeypatch):
    monkeypatch.setenv("COLUMNS", "250")  # rich tables: one line per row


@pytest.fixture(scope="module")
def failing_run(tmp_path_factory):
    """A real run in which evaluation 1 fails (out of memory, injected) and the rest train."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("EVOGRAPH_FAULT_INJECTION", "1")
        patch.setenv("EVOGRAPH_FAULTS", "1=oom")
        run_dir = create_run(tiny_config("serial", ["budget.evaluations=4",
                                                      "executor.retries=0"]),
                             tmp_path_factory.mktemp("show") / "run")
        run(run_dir, live=False)
    return run_dir


def show(run_dir, id, capsys, *extra) -> str:
    assert main(["show", str(run_dir), str(id), *extra]) == 0
    return capsys.readouterr().out


def test_show_gives_a_completed_individuals_full_record(failing_run, capsys, wide):
    with RunStore.open(failing_run, readonly=True) as store:
        row, ind = store.evaluation(2), store.individual(2)
    record = json.loads(show(failing_run, 2, capsys, "--json"))
    assert record["status"] == "completed" and record["attempts"] == 1
    assert record["metrics"] == row.metrics and record["fitness"] == row.fitness
    assert record["seed"] == ind.seed and record["parents"] == list(ind.parents)
    assert record["genome"]["params"] == row.metrics["params"]
    assert record["weights"] == str(failing_run / row.weights) and record["error"] is None
    text = show(failing_run, 2, capsys)
    assert "completed after 1 attempt(s)" in text and f"hash {ind.genome_hash}" in text
    for key in row.metrics:
        assert key in text
    assert str(failing_run / row.weights) in text


def test_show_and_status_failed_tell_why_an_evaluation_failed(failing_run, capsys, wide):
    with RunStore.open(failing_run, readonly=True) as store:
        error = store.evaluation(1).error
    assert error and "MemoryError" in error
    record = json.loads(show(failing_run, 1, capsys, "--json"))
    assert (record["status"], record["error"], record["weights"]) == ("failed", error, "none")
    assert error in show(failing_run, 1, capsys)  # the error in full
    assert main(["status", str(failing_run), "--failed", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == [
        {"id": 1, "status": "failed", "attempts": 1, "reason": error.strip().splitlines()[0]}]
    assert main(["status", str(failing_run), "--failed"]) == 0
    assert error.strip().splitlines()[0][:40] in capsys.readouterr().out
    assert main(["status", str(failing_run)]) == 0
    assert f"evograph status {failing_run} --failed" in capsys.readouterr().out


def test_show_of_an_unknown_individual_is_one_line(failing_run, capsys):
    assert main(["show", str(failing_run), "99"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"evograph: error: run {failing_run} has no individual 99"]


def test_best_on_a_run_with_nothing_completed_says_so_and_exits_non_zero(tmp_path, capsys):
    run_dir = create_run(tiny_config("serial"), tmp_path / "run")
    for args in (["best", str(run_dir)], ["best", str(run_dir), "--json"]):
        assert main(args) == 1
        out, err = capsys.readouterr()
        assert out == "" and err.strip().splitlines() == [
            (f"evograph: {run_dir} has no completed evaluation yet (nothing proposed); see: "
             f"evograph status {run_dir}")]
    assert main(["status", str(run_dir), "--failed"]) == 0
    assert "no failed or infeasible evaluations" in capsys.readouterr().out
