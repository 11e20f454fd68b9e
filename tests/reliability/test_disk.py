"""Disk full: a write failing with ENOSPC (injected) or past a real file-size limit gives one
clear error, leaves no partial file under a final name, and the run resumes once space is back
to the state of an uninterrupted run. Corrupted weights and databases are detected, never
silently loaded."""

from __future__ import annotations

import errno
import os
import sqlite3
import subprocess
import sys

import pytest
from evograph.errors import RunStoreError
from evograph.runs import store as store_module
from evograph.runs.driver import run
from evograph.runs.store import RunStore

from tests.reliability.harness import FIGURES, check_recovered, final_state, make_run, reference


@pytest.fixture(scope="module")
def expected(tmp_path_factory):
    return final_state(reference(tmp_path_factory.mktemp("ref"), evaluations=8))


def _no_partial_files(run_dir):
    names = [p.name for p in (run_dir / "weights").iterdir()]
    assert not [n for n in names if n.startswith(".")], names  # temp files are removed
    for path in (run_dir / "weights").glob("*.safetensors"):
        RunStore.open(run_dir, readonly=True).read_weights(int(path.stem))  # all complete


def test_injected_enospc_stops_clearly_and_resumes(tmp_path, monkeypatch, expected):
    victim = make_run(tmp_path / "victim", evaluations=8)
    calls = {"n": 0}
    real_fsync = os.fsync

    def failing_fsync(fd):
        calls["n"] += 1
        if calls["n"] > 6:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_fsync(fd)

    monkeypatch.setattr(store_module.os, "fsync", failing_fsync)
    with pytest.raises(RunStoreError) as error:
        run(victim, live=False)
    message = str(error.value)
    assert "disk full" in message and "evograph resume" in message and "\n" not in message
    monkeypatch.setattr(store_module.os, "fsync", real_fsync)
    _no_partial_files(victim)
    FIGURES["disk-full stops (injected)"] += 1
    assert run(victim, live=False).finished
    check_recovered(victim, expected)


@pytest.fixture
def tiny_disk(tmp_path):
    """A real 4 MiB tmpfs (root only; skipped elsewhere)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)],
                          capture_output=True, check=False)
    if done.returncode != 0:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], capture_output=True, check=False)


@pytest.mark.slow
def test_real_full_disk_stops_clearly_and_resumes(tiny_disk, expected):
    victim = make_run(tiny_disk / "victim", evaluations=8)
    filler = tiny_disk / "filler"
    free = os.statvfs(tiny_disk).f_bavail * os.statvfs(tiny_disk).f_frsize
    filler.write_bytes(b"\0" * max(0, free - 48 * 1024))  # leave 48 KiB: full mid-run
    driver = subprocess.run([sys.executable, "-m", "evograph.runs.cli.main", "resume", str(victim),
                             "--no-live"], capture_output=True, text=True, timeout=300, check=False)
    assert driver.returncode == 2, driver.stderr[-2000:]
    last = driver.stderr.strip().splitlines()[-1]
    assert "disk full" in last and "evograph resume" in last, last
    _no_partial_files(victim)
    FIGURES["disk-full stops (real tmpfs)"] += 1
    filler.unlink()  # space is back
    assert run(victim, live=False).finished
    check_recovered(victim, expected)


def test_corrupt_weights_are_detected_never_loaded(tmp_path):
    victim = make_run(tmp_path / "victim", evaluations=4)
    run(victim, live=False)
    with RunStore.open(victim, readonly=True) as store:
        best = store.best(1)[0].id
        path = store.weights_file(best)
        data = bytearray(path.read_bytes())
        for damage in ("truncate", "flip-header"):
            broken = data[: len(data) // 2] if damage == "truncate" else \
                bytes([data[0] ^ 0xFF]) + data[1:]
            path.write_bytes(bytes(broken))
            with pytest.raises(RunStoreError):
                store.read_weights(best)
            FIGURES["corruptions detected"] += 1


def test_corrupt_database_page_is_detected(tmp_path):
    victim = make_run(tmp_path / "victim", evaluations=4)
    run(victim, live=False)
    db = victim / "run.db"
    with sqlite3.connect(db) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    raw = bytearray(db.read_bytes())
    page = 4096
    for offset in range(2 * page + 100, min(len(raw), 4 * page), 7):
        raw[offset] ^= 0x5A
    db.write_bytes(bytes(raw))
    try:
        with RunStore.open(victim, readonly=True) as store:
            assert store.integrity_check() != "ok"
    except (RunStoreError, sqlite3.DatabaseError):
        pass  # refused on open: detected as well
    FIGURES["corruptions detected"] += 1
