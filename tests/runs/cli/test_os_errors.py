"""An OSError escaping a command (a read-only or missing folder, a full disk) is one line naming
the path, exit 2, no traceback and nothing half-written (runs/cli/main.py)."""

from __future__ import annotations

import errno
import os
import subprocess
import sys

import pytest
from evograph.runs.cli.main import os_error_line

from ..lineage.lineage_runs import demo_run, real_run

pytestmark = pytest.mark.xdist_group("lineage-run")  # real_run made once per worker
AS_ROOT = os.geteuid() == 0  # root writes into a chmod 0o500 folder anyway


@pytest.fixture
def unwritable(tmp_path):
    """A folder nobody can write into: chmod 0o500, or (as root, whom chmod does not stop) a
    plain file standing where the folder should be."""
    if AS_ROOT:
        blocker = tmp_path / "out"
        blocker.write_text("a file, not a folder\n")
        yield blocker, os.strerror(errno.ENOTDIR)
        return
    folder = tmp_path / "out"
    folder.mkdir()
    folder.chmod(0o500)
    yield folder, os.strerror(errno.EACCES)
    folder.chmod(0o700)


def evograph(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "evograph.runs.cli.main", *args],
                          capture_output=True, text=True, timeout=300, check=False)


def assert_one_line(result: subprocess.CompletedProcess, path, reason: str) -> None:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [f"evograph: error: {path}: {reason}"]


def test_report_into_an_unwritable_folder_is_one_line(tmp_path, unwritable):
    run = demo_run(tmp_path, "demo", individuals=30)
    folder, reason = unwritable
    result = evograph("report", str(run), "-o", str(folder / "report.html"))
    assert_one_line(result, folder / "report.html", reason)
    assert not (run / "report.html").exists()
    if folder.is_dir():
        assert os.listdir(folder) == []  # no temporary file left behind


def test_report_into_a_missing_folder_is_one_line(tmp_path):
    run = demo_run(tmp_path, "demo", individuals=30)
    out = tmp_path / "no" / "such" / "report.html"
    assert_one_line(evograph("report", str(run), "-o", str(out)), out,
                    os.strerror(errno.ENOENT))
    assert not (tmp_path / "no").exists()


def test_export_into_an_unwritable_folder_is_one_line(tmp_path_factory, unwritable):
    run = real_run(tmp_path_factory.getbasetemp())
    folder, _ = unwritable
    result = evograph("export", str(run), "--best", "-o", str(folder / "model"))
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("evograph: error: "), result.stderr
    assert str(folder) in lines[0] and "Traceback" not in result.stderr
    if folder.is_dir():
        assert os.listdir(folder) == []


def test_os_error_line_names_the_user_path_not_the_temporary_file(tmp_path):
    with pytest.raises(OSError) as caught:
        open(tmp_path / "missing" / ".report.html.0a1b2c3d.tmp", "xb")  # noqa: SIM115 (fails)
    assert os_error_line(caught.value) == (f"{tmp_path / 'missing' / 'report.html'}: "
                                           f"{os.strerror(errno.ENOENT)}")
    with pytest.raises(OSError) as caught:
        os.rename(tmp_path / "a", tmp_path / "b")
    assert os_error_line(caught.value) == (f"{tmp_path / 'a'} -> {tmp_path / 'b'}: "
                                           f"{os.strerror(errno.ENOENT)}")
    assert os_error_line(OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))) == \
        os.strerror(errno.ENOSPC)
