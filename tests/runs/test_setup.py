"""A failed start leaves nothing behind: a new run reaches its device and its Dask scheduler
before its directory is created (runs.setup.preflight), and a refused start can simply be run
again."""

import socket
import subprocess
import sys

import pytest
from distributed import LocalCluster
from evograph.devices import cuda_devices
from evograph.errors import ConfigError
from evograph.runs.config import ExecutorConfig, load_config
from evograph.runs.driver import create_run
from evograph.runs.setup import preflight, reach_scheduler
from evograph.runs.store import RunStore

UNREACHABLE = "tcp://127.0.0.1:1"  # port 1: nothing listens there


def missing_cuda() -> str:
    """A CUDA device this machine does not have: ``cuda`` without CUDA, else one past the last."""
    count = cuda_devices()
    return f"cuda:{count}" if count else "cuda"


def tiny_config(tmp_path):
    path = tmp_path / "tiny.toml"
    path.write_text(f"out = '{tmp_path / 'out'}'\n[dataset]\nlimit = 200\n"
                    "[budget]\nevaluations = 3\n[executor]\nname = 'serial'\n")
    return path


def run_cli(tmp_path, *sets):
    command = [sys.executable, "-m", "evograph.runs.cli.main", "run", str(tiny_config(tmp_path)),
               "--out", str(tmp_path / "run"), "--no-live"]
    for value in sets:
        command += ["--set", value]
    return subprocess.run(command, check=False, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("sets, message", [
    ((f"executor.device={missing_cuda()}",), "executor.device: "),
    (("executor.name=dask", f"executor.scheduler={UNREACHABLE}"),
     f"executor.scheduler: cannot reach dask scheduler '{UNREACHABLE}' ("),
])
def test_cli_refuses_a_start_it_cannot_make_creating_nothing(tmp_path, sets, message):
    result = run_cli(tmp_path, *sets)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"evograph: error: tiny.toml: {message}")
    assert not (tmp_path / "run").exists() and not (tmp_path / "out").exists()


def test_a_refused_start_can_be_made_again_once_fixed(tmp_path):
    """Before: the directory was made first, and the retry said "already holds a run"."""
    path, out = tiny_config(tmp_path), tmp_path / "run"
    with pytest.raises(ConfigError, match="tiny.toml: executor.device"):
        create_run(load_config(path, [f"executor.device={missing_cuda()}"]), out, "tiny.toml")
    assert not out.exists()
    assert create_run(load_config(path, ["executor.device=cpu"]), out, "tiny.toml") == out
    with RunStore.open(out, readonly=True) as store:
        assert store.config["executor"]["device"] == "cpu"


def test_preflight_passes_the_devices_this_machine_has():
    preflight(ExecutorConfig(name="serial", device="cpu"), "x.toml")
    preflight(ExecutorConfig(name="local", workers=2, device="auto"), "x.toml")
    with pytest.raises(ConfigError, match=r"^x\.toml: executor\.device: "):
        preflight(ExecutorConfig(name="local", workers=2, device=missing_cuda()), "x.toml")


def test_a_running_dask_scheduler_is_reached():
    with LocalCluster(n_workers=0, processes=False, protocol="tcp", host="127.0.0.1",
                      dashboard_address=None) as cluster:
        preflight(ExecutorConfig(name="dask", scheduler=cluster.scheduler_address,
                                 batched="never"), "x.toml")
        # a remote scheduler's workers have their own devices: not this machine's to check
        preflight(ExecutorConfig(name="dask", scheduler=cluster.scheduler_address,
                                 device=missing_cuda(), batched="never"), "x.toml")


def test_scheduler_addresses_are_checked_in_one_line():
    with socket.socket() as listener:  # a port that accepts connections, without dask
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        reach_scheduler(f"127.0.0.1:{listener.getsockname()[1]}")
    for address, message in ((UNREACHABLE, "cannot reach dask scheduler"),
                             ("tcp://", "is not a scheduler address"),
                             ("tcp://host:99999", "is not a scheduler address")):
        with pytest.raises(ConfigError) as error:
            reach_scheduler(address)
        assert str(error.value).startswith(f"executor.scheduler: {address!r}") \
            or str(error.value).startswith(f"executor.scheduler: cannot reach dask scheduler "
                                           f"{address!r} (")
        assert message in str(error.value) and "\n" not in str(error.value)
