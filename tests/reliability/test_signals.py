"""SIGINT and SIGTERM at random points: a clean exit within the grace period, resumable to the
same final state; a second signal exits within 2 s. And the one-driver rule: a second driver is
refused within 1 s and can take over at once after the first is killed; readers never disturb."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from evograph.errors import RunStoreError
from evograph.runs.driver import run
from evograph.runs.store import RunStore

from tests.reliability.harness import (
    FIGURES,
    FULL,
    check_recovered,
    final_state,
    finished_count,
    kill,
    make_run,
    reference,
    start_driver,
)

GRACE_S = 30.0  # a serial executor finishes the evaluation in progress


def started_count(run_dir) -> int:
    with RunStore.open(run_dir, readonly=True) as store:
        return len(store.events("started"))
ROUNDS = 8 if FULL else 3


@pytest.mark.slow
def test_signals_at_random_points_exit_cleanly_and_resume(tmp_path):
    # enough work (~0.1 s an evaluation, ~9 s a run per 3 rounds) that every round's signal,
    # sent within 1 s of the driver's start, lands before the end
    work = {"evaluations": 30 * ROUNDS, "extra": ("fitness.epochs=8",)}
    expected = final_state(reference(tmp_path, **work))
    victim = make_run(tmp_path / "victim", **work)
    rng = np.random.default_rng(7)
    delivered = 0
    for k in range(ROUNDS * 2):
        sig = (signal.SIGINT, signal.SIGTERM)[k % 2]
        before = started_count(victim)
        driver = start_driver(victim)
        while started_count(victim) == before and driver.poll() is None:
            time.sleep(0.02)  # signals before the driver exists are the interpreter's business
        time.sleep(float(rng.uniform(0.0, 1.0)))
        if driver.poll() is not None:
            break  # finished before the signal
        sent = time.monotonic()
        driver.send_signal(sig)
        driver.wait(timeout=GRACE_S + 5)
        assert time.monotonic() - sent < GRACE_S
        assert driver.returncode in (0, 130, 128 + sig), driver.stderr.read()
        driver.stderr.close()
        FIGURES[f"{signal.Signals(sig).name} clean exits"] += 1
        delivered += 1
    assert delivered >= ROUNDS, "too few signals landed during the run to test anything"
    assert run(victim, live=False).finished
    check_recovered(victim, expected)


OVERLOADED = pytest.mark.skipif(os.getloadavg()[0] > 3 * (os.cpu_count() or 1),
                                reason="machine overloaded: timing assertions meaningless")


@OVERLOADED
@pytest.mark.slow
def test_second_signal_exits_within_two_seconds(tmp_path):
    victim = make_run(tmp_path / "victim", evaluations=40, extra=("fitness.epochs=3",))
    driver = start_driver(victim)
    while finished_count(victim) < 1:
        time.sleep(0.05)
    driver.send_signal(signal.SIGINT)
    time.sleep(0.05)
    sent = time.monotonic()
    driver.send_signal(signal.SIGINT)
    driver.wait(timeout=10)
    assert time.monotonic() - sent < 2.0
    driver.stderr.close()
    assert run(victim, live=False).finished


@OVERLOADED
@pytest.mark.slow
def test_second_driver_refused_fast_and_takes_over_after_kill(tmp_path):
    # a budget no machine finishes while the test runs (a GPU machine did 500 in the meantime)
    victim = make_run(tmp_path / "victim", evaluations=100_000, extra=("fitness.epochs=2",))
    first = start_driver(victim)
    while finished_count(victim) < 1:
        time.sleep(0.05)
    second = subprocess.run([sys.executable, "-m", "evograph.runs.cli.main", "resume", str(victim),
                             "--no-live"], capture_output=True, text=True, timeout=60, check=False)
    assert second.returncode == 2 and "in use by another evograph driver" in second.stderr
    refused_at = time.monotonic()
    with RunStore.open(victim) as store, pytest.raises(RunStoreError, match="in use"):
        store.acquire_lock()
    assert time.monotonic() - refused_at < 1.0
    for _ in range(5):  # concurrent readers do not disturb the driver
        status = subprocess.run([sys.executable, "-m", "evograph.runs.cli.main", "status",
                                 str(victim), "--json"], capture_output=True, text=True,
                                timeout=60, check=False)
        assert status.returncode == 0
    assert first.poll() is None, "the first driver should still be running"
    kill(first)
    taken_at = time.monotonic()
    with RunStore.open(victim) as store:  # takes over at once
        store.acquire_lock()
        store.release_lock()
    assert time.monotonic() - taken_at < 1.0
    FIGURES["second drivers refused"] += 1
