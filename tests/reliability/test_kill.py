"""Driver kill -9 at random times and at random committed counts, repeated on the same run,
and at every named crash point of the store's write path: every run resumes to the state of an
uninterrupted run with the same seed."""

from __future__ import annotations

import time

import numpy as np
import pytest
from evograph.crashpoints import POINTS
from evograph.runs.driver import run

from tests.reliability.harness import (
    FIGURES,
    FULL,
    check_recovered,
    db_count,
    final_state,
    finished_count,
    kill,
    make_run,
    reference,
    start_driver,
)

KILLS = 60 if FULL else 20


@pytest.mark.slow
def test_repeated_kill_9_resumes_to_the_uninterrupted_state(tmp_path):
    expected = final_state(reference(tmp_path, evaluations=16))
    rng = np.random.default_rng(2026)
    victims = [make_run(tmp_path / f"victim{i}", evaluations=16) for i in range(2)]
    in_flight = {v: 0 for v in victims}
    for k in range(KILLS):
        victim = victims[k % len(victims)]
        driver = start_driver(victim)
        if k % 2:  # by committed count
            wait_for_more_finished(victim, driver, int(rng.integers(1, 4)))
        else:      # at a random time (often during start-up or mid-evaluation)
            time.sleep(float(rng.uniform(0.5, 4.0)))
        kill(driver)
        # counted once the driver is dead: counted before the kill, an evaluation started in
        # between would be repeated without having been counted
        in_flight[victim] += db_count(victim, "status = 'running'")
        FIGURES["driver kill -9 survived"] += 1
    for victim in victims:
        assert run(victim, live=False).finished
        check_recovered(victim, expected)
        repeated = db_count(victim, "attempt > 1")
        assert repeated <= in_flight[victim]
        FIGURES["evaluations repeated after kills"] += repeated


def wait_for_more_finished(victim, driver, more: int) -> None:
    """Until ``more`` evaluations more have been committed (or the driver has ended)."""
    target = finished_count(victim) + more
    deadline = time.monotonic() + 60
    while finished_count(victim) < target and driver.poll() is None:
        assert time.monotonic() < deadline
        time.sleep(0.02)


def crash_and_recover(victim, point: str, hit: int, expected) -> None:
    """SIGKILL the driver at the ``hit``-th time it reaches crash point ``point``, resume, and
    compare with the uninterrupted run's state."""
    driver = start_driver(victim, {"EVOGRAPH_CRASH_AT": f"{point}:{hit}"})
    driver.wait(timeout=120)
    assert driver.returncode == -9, f"{point} was never reached"
    FIGURES["crash points killed"] += 1
    assert run(victim, live=False).finished
    check_recovered(victim, expected)


@pytest.fixture(scope="module")
def expected_small(tmp_path_factory):
    return final_state(reference(tmp_path_factory.mktemp("ref"), evaluations=8))


@pytest.mark.slow
@pytest.mark.parametrize("point", POINTS)
def test_every_crash_point_is_recoverable(tmp_path, point, expected_small):
    crash_and_recover(make_run(tmp_path / "victim", evaluations=8), point, 2, expected_small)


PIPELINED = ("executor.pipeline=1",)


@pytest.mark.slow
def test_pipelined_runs_resume_to_the_uninterrupted_state(tmp_path):
    """With batches asked ahead (``executor.pipeline = 1``) two batches are open at once: kill -9
    at random committed counts and at the checkpoint's crash points still resumes to the state
    of an uninterrupted pipelined run."""
    expected = final_state(reference(tmp_path, evaluations=12, extra=PIPELINED))
    rng = np.random.default_rng(7)
    victim = make_run(tmp_path / "victim", evaluations=12, extra=PIPELINED)
    for _ in range(KILLS // 4):
        driver = start_driver(victim)
        wait_for_more_finished(victim, driver, int(rng.integers(1, 4)))
        kill(driver)
        FIGURES["driver kill -9 survived"] += 1
    assert run(victim, live=False).finished
    check_recovered(victim, expected)
    for point in ("store.add_batch.after_commit", "store.save_proposer_state.before_commit",
                  "store.save_proposer_state.after_commit"):
        crash_and_recover(make_run(tmp_path / point, evaluations=12, extra=PIPELINED), point, 3,
                          expected)
