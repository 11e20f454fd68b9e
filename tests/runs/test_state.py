"""The run's state told honestly: finished by which budget, interrupted (kill -9), aborted, or
running; the wall-clock time summed over driver sessions; a time budget that counts across
resumes; and a resume that extends a finished run's budget (and refuses other changes)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import pytest
from evograph.runs.cli.main import main
from evograph.runs.driver import create_run, run
from evograph.runs.report.page import render_report
from evograph.runs.state import driver_pid, run_state, stop_of
from evograph.runs.store import RunStore

from tests.runs.test_run import ROOT, final_state, tiny_config


def state_of(run_dir):
    with RunStore.open(run_dir, readonly=True) as store:
        return run_state(store), store.count_individuals()


def status_json(run_dir, capsys) -> dict:
    assert main(["status", str(run_dir), "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_a_time_budget_ends_the_run_and_counts_across_resumes(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")  # rich tables: one line per row
    run_dir = create_run(tiny_config("serial", ["budget.evaluations=100000", "final.share=0",
                                                  "budget.minutes=0.01"]), tmp_path / "run")
    outcome = run(run_dir, live=False)
    assert outcome.finished and outcome.state == "finished"
    assert outcome.reason == "time budget of 0.01 min reached"
    state, count = state_of(run_dir)
    assert (state.state, state.by, state.sessions) == ("finished", "time", 1)
    assert state.elapsed_s >= 0.6 and count < 100000
    payload = status_json(run_dir, capsys)
    assert payload["state"] == "finished" and payload["stopped_by"] == "time"
    assert payload["elapsed_s"] == pytest.approx(state.elapsed_s)
    assert payload["compute_s"] >= 0 and "wall_time_s" not in payload

    again = run(run_dir, live=False)  # resumed as it was: the budget is spent, no fresh one
    assert again.finished and again.reason == outcome.reason
    state, same = state_of(run_dir)
    assert same == count and state.sessions == 2

    # extended: more time (the minutes count the run's whole wall time, so add to it)
    minutes = round(state.elapsed_s / 60 + 5, 3)
    more = run(run_dir, live=False, overrides={"budget.minutes": minutes,
                                                "budget.evaluations": count + 3})
    assert more.finished and more.reason == f"evaluation budget of {count + 3} reached"
    state, grown = state_of(run_dir)
    assert grown == count + 3 and state.sessions == 3
    assert main(["status", str(run_dir)]) == 0
    out = capsys.readouterr().out
    assert f"finished: evaluation budget of {count + 3} reached" in out
    assert f"of a {minutes:g} min time budget" in out
    html = render_report(run_dir)  # the report says the same, and no "in progress"
    assert f"finished: evaluation budget of {count + 3} reached" in html
    assert "In progress" not in html


def test_resume_set_extends_a_finished_run_exactly(tmp_path, capsys):
    straight = create_run(tiny_config("serial", ["budget.evaluations=15"]), tmp_path / "a")
    run(straight, live=False)
    extended = create_run(tiny_config("serial"), tmp_path / "b")  # budget.evaluations=10
    assert run(extended, live=False).reason == "evaluation budget of 10 reached"
    assert main(["resume", str(extended), "--no-live", "--set", "budget.evaluations=15"]) == 0
    assert final_state(extended)[:2] == final_state(straight)[:2]  # the same 15 individuals
    with RunStore.open(extended, readonly=True) as store:
        assert store.config["budget"]["evaluations"] == 15
        assert store.events("extended")[0]["data"]["changed"] == {
            "budget.evaluations": [10, 15]}
    assert state_of(extended)[0].line() == "finished: evaluation budget of 15 reached"


def test_resume_set_refuses_other_keys_in_one_line_unless_forced(tmp_path, capsys):
    run_dir = create_run(tiny_config("serial", ["budget.evaluations=2"]), tmp_path / "run")
    run(run_dir, live=False)
    capsys.readouterr()
    assert main(["resume", str(run_dir), "--set", "fitness.epochs=2"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "resume --set fitness.epochs" in err[0] and "--force" in err[0]
    assert main(["resume", str(run_dir), "--set", "budget.evaluations=0"]) == 2
    assert "budget.evaluations" in capsys.readouterr().err  # checked like the config file
    with RunStore.open(run_dir, readonly=True) as store:
        assert store.config["fitness"]["epochs"] == 1 and len(store.events("started")) == 1
    outcome = run(run_dir, live=False, force=True, overrides=["fitness.epochs=2",
                                                              "budget.evaluations=3"])
    assert outcome.finished
    with RunStore.open(run_dir, readonly=True) as store:
        assert store.config["fitness"]["epochs"] == 2 and store.count_individuals() == 3
        assert store.events("extended")[0]["data"]["forced"] is True
    assert run(run_dir, live=False).finished  # the new config is the run's own now


def test_mostly_failing_evaluations_abort_the_run_and_status_says_why(tmp_path, monkeypatch,
                                                                       capsys):
    monkeypatch.setenv("EVOGRAPH_FAULT_INJECTION", "1")
    monkeypatch.setenv("EVOGRAPH_FAULTS", "*=oom")
    run_dir = create_run(tiny_config("serial", ["budget.evaluations=30", "executor.retries=0"]),
                         tmp_path / "run")
    outcome = run(run_dir, live=False)
    assert not outcome.finished and outcome.state == "aborted"
    state, _ = state_of(run_dir)
    assert (state.state, state.by) == ("aborted", "failures")
    assert state.line().startswith("aborted: ") and "evaluations failed" in state.line()
    assert status_json(run_dir, capsys)["state"] == "aborted"


def test_kill_9_leaves_an_interrupted_run_and_a_live_driver_is_running(tmp_path, capsys):
    run_dir = create_run(tiny_config("serial", ["budget.evaluations=100000",
                                                  "final.share=0"]), tmp_path / "run")
    assert state_of(run_dir)[0].state == "new"
    driver = subprocess.Popen([sys.executable, "-m", "evograph.runs.cli.main", "resume",
                               str(run_dir), "--no-live"], cwd=ROOT.parent,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while state_of(run_dir)[1] < 3:
            assert driver.poll() is None and time.monotonic() < deadline
            time.sleep(0.1)
        state, _ = state_of(run_dir)
        assert (state.state, state.pid) == ("running", driver.pid)
        assert status_json(run_dir, capsys)["state"] == "running"
    finally:
        driver.send_signal(signal.SIGKILL)
        driver.wait()
    state, count = state_of(run_dir)
    assert (state.state, state.by, state.pid) == ("interrupted", "killed", None)
    assert "the driver stopped without closing" in state.reason
    assert state.elapsed_s > 0 and driver_pid(run_dir) is None
    payload = status_json(run_dir, capsys)
    assert payload["state"] == "interrupted" and payload["elapsed_s"] == pytest.approx(
        state.elapsed_s)
    assert run(run_dir, live=False, overrides={"budget.evaluations": count + 2}).finished
    state, _ = state_of(run_dir)
    assert state.state == "finished" and state.sessions == 2


@pytest.mark.parametrize("message, expected", [
    ("budget reached", ("finished", "evaluations")),
    ("time budget of 2 min reached", ("finished", "time")),
    ("interrupted by SIGTERM", ("interrupted", "SIGTERM")),
    ("stopped: 12 of the last 20 evaluations failed", ("aborted", "failures")),
    ("disk full", ("aborted", "error"))])
def test_stops_recorded_before_events_carried_their_state_are_read(message, expected):
    stop = stop_of({"message": message, "data": None})
    assert (stop.state, stop.by) == expected and "stopped:" not in stop.reason
