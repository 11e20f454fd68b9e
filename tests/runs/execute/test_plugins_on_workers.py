"""A user's plug-ins run on the local pool's worker processes: a fitness defined inside a
function (of a script, of a test) or in a module of the user's, shipped to 2 workers with dill;
a run of one killed with SIGKILL and resumed to completion; a plug-in that cannot be sent or
loaded stops the run in one line; and a script without the ``__main__`` guard stops in one line
instead of starting a run in every worker."""

from __future__ import annotations

import importlib
import importlib.util
import multiprocessing
import os
import re
import signal
import subprocess
import sys
import textwrap
import time

import psutil
import pytest
from evograph.compile.training.fitness import FITNESS, Score
from evograph.errors import ConfigError
from evograph.runs import api
from evograph.runs.config import ExecutorConfig
from evograph.runs.execute import mainguard
from evograph.runs.execute.executors import make_executor
from evograph.runs.execute.plugins import PluginError, defined_in, user_plugins
from evograph.runs.store import RunStore

from tests.runs.execute.executor_tasks import mixed_tasks

EVALUATIONS = 20
PROGRESS = re.compile(r"^\[ *[0-9.]+s\] |^\s*$")  # the live view's lines, and blank ones
POOL = {"executor.name": "local", "executor.workers": 2, "dataset.limit": 200}


def by_hand(genome: dict) -> float:
    """What the test fitnesses compute, from a genome's stored JSON form."""
    return len(genome["nodes"]) + len(genome["links"]) / 10


def write_script(tmp_path, body: str) -> str:
    path = tmp_path / "search.py"
    path.write_text(textwrap.dedent(body))
    return str(path)


SCRIPT = """
    import os
    import sys
    import time

    from evograph.compile.training.fitness import Score
    from evograph.runs import api


    def make_fitness():
        class NodesAndEdges:  # defined inside a function: only dill can send it to a worker
            name = "nodes-and-edges"
            needs_module = False

            def score(self, module, genome, data, *, seed, device):
                time.sleep(0.4)  # long enough to be killed mid-run
                return Score("completed", len(genome.nodes) + len(genome.edges) / 10,
                             {"pid": os.getpid()})
        return NodesAndEdges


    if __name__ == "__main__":
        api.run(overrides={OVERRIDES}, fitness=make_fitness(), out=sys.argv[1])
"""


def committed(run_dir) -> int:
    try:
        with RunStore.open(run_dir, readonly=True) as store:
            return store.counts_by_status().get("completed", 0)
    except Exception:  # noqa: BLE001 - not created yet, or mid-creation
        return 0


@pytest.mark.slow
def test_a_fitness_defined_in_a_function_runs_on_2_workers_killed_and_resumed(tmp_path):
    overrides = {**POOL, "budget.evaluations": EVALUATIONS}
    script = write_script(tmp_path, SCRIPT.replace("{OVERRIDES}", repr(overrides)))
    run_dir = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    driver = subprocess.Popen([sys.executable, script, str(run_dir)], cwd=tmp_path, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 240
    while committed(run_dir) < 3 and driver.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    assert driver.poll() is None, driver.stderr.read().decode()[-2000:]
    workers = psutil.Process(driver.pid).children(recursive=True)
    driver.send_signal(signal.SIGKILL)
    driver.wait()
    psutil.wait_procs(workers, timeout=30)  # orphaned workers end on their pipe's EOF
    before = committed(run_dir)
    assert 3 <= before < EVALUATIONS

    class NodesAndEdges:  # the same fitness, defined again inside this test function
        name = "nodes-and-edges"
        needs_module = False

        def score(self, module, genome, data, *, seed, device):
            return Score("completed", len(genome.nodes) + len(genome.edges) / 10,
                         {"pid": os.getpid()})

    try:
        outcome = api.resume(run_dir, fitness=NodesAndEdges)
    finally:
        FITNESS.pop("nodes-and-edges", None)
    assert outcome.finished
    with RunStore.open(run_dir, readonly=True) as store:
        evaluations = store.evaluations()
        assert len(evaluations) == EVALUATIONS
        for row in evaluations:
            assert row.status == "completed", row.error
            assert row.fitness == pytest.approx(by_hand(store.genome_dict(row.id)))
    pids = {row.metrics["pid"] for row in evaluations}
    assert not pids & {driver.pid, os.getpid()}  # on the pools, never switched to serial
    assert len(pids) >= 2  # pool processes (which of the 2 took the first few is up to them)


MODULE = """
    import os

    from evograph.compile.training.fitness import Score, register_fitness


    @register_fitness("module-nodes")
    class ModuleNodes:
        needs_module = False

        def score(self, module, genome, data, *, seed, device):
            return Score("completed", len(genome.nodes) + len(genome.edges) / 10,
                         {"pid": os.getpid()})
"""


@pytest.mark.slow
def test_a_fitness_registered_in_a_user_module_runs_on_2_workers(tmp_path, monkeypatch):
    """Registered by the module's decorator and named in the config only: the workers get it
    by reference and import the module themselves (it was ``unknown`` on every worker)."""
    (tmp_path / "user_fitness_module.py").write_text(textwrap.dedent(MODULE))
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.import_module("user_fitness_module")
    try:
        outcome = api.run(overrides={**POOL, "budget.evaluations": 6,
                                     "fitness.name": "module-nodes"}, out=tmp_path / "run")
    finally:
        FITNESS.pop("module-nodes", None)
        sys.modules.pop("user_fitness_module", None)
    assert outcome.finished
    with RunStore.open(outcome.run_dir, readonly=True) as store:
        rows = store.evaluations()
        assert [row.status for row in rows] == ["completed"] * 6, [r.error for r in rows]
        for row in rows:
            assert row.fitness == pytest.approx(by_hand(store.genome_dict(row.id)))
            assert row.metrics["pid"] != os.getpid()  # on a worker


def test_a_plugin_that_cannot_be_sent_stops_the_run_before_it_is_created(tmp_path):
    class Unsendable:
        name = "unsendable"
        needs_module = False
        pending = (i for i in range(3))  # a generator: nothing can serialise it

        def score(self, module, genome, data, *, seed, device):
            return Score("completed", 1.0, {})

    try:
        with pytest.raises(ConfigError) as caught:
            api.run(overrides={**POOL, "budget.evaluations": 2}, fitness=Unsendable,
                    out=tmp_path / "run")
    finally:
        FITNESS.pop("unsendable", None)
    message = str(caught.value)
    assert "\n" not in message and "fitness plug-in 'unsendable'" in message
    assert "Unsendable" in message and "generator" in message
    assert not (tmp_path / "run").exists()


def test_a_plugin_a_worker_cannot_load_stops_the_pool_in_one_line(tmp_path):
    """A module loaded from its file, off sys.path: no worker can import it."""
    path = tmp_path / "ghost_fitness_module.py"
    path.write_text(textwrap.dedent(MODULE).replace("module-nodes", "ghost"))
    spec = importlib.util.spec_from_file_location("ghost_fitness_module", path)
    ghost = importlib.util.module_from_spec(spec)
    sys.modules[ghost.__name__] = ghost
    spec.loader.exec_module(ghost)
    executor = None
    try:
        executor = make_executor(ExecutorConfig(name="local", workers=1))
        with pytest.raises(PluginError) as caught:
            list(executor.run(mixed_tasks(1), should_stop=lambda: False))
    finally:
        if executor is not None:
            executor.close()
        FITNESS.pop("ghost", None)
        sys.modules.pop(ghost.__name__, None)
    message = str(caught.value)
    assert "\n" not in message and "fitness plug-in 'ghost'" in message
    assert "No module named 'ghost_fitness_module'" in message


UNGUARDED = """
    from evograph.compile.training.fitness import Score
    from evograph.runs import api


    class Nodes:
        needs_module = False

        def score(self, module, genome, data, *, seed, device):
            return Score("completed", float(len(genome.nodes)), {})


    api.run(overrides={OVERRIDES}, fitness=Nodes)  # no __main__ guard
    print("the script went on")
"""


@pytest.mark.slow
def test_a_script_without_the_main_guard_stops_in_one_line(tmp_path):
    overrides = {**POOL, "budget.evaluations": 4, "out": str(tmp_path / "runs")}
    script = write_script(tmp_path, UNGUARDED.replace("{OVERRIDES}", repr(overrides)))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, script], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=300, check=False)
    assert done.returncode == 2
    said = [line for line in done.stderr.splitlines() if not PROGRESS.match(line)]
    assert len(said) == 1, done.stderr  # one line: no traceback, not one per worker
    assert said[0].startswith("evograph: error: search.py: ")
    assert 'if __name__ == "__main__":' in said[0]
    assert "the script went on" not in done.stdout
    assert len(list((tmp_path / "runs").iterdir())) <= 1


def test_calling_evograph_from_a_child_process_on_purpose_is_not_refused():
    """The guard recognises only the re-import of a script, not a function run in a child."""
    assert not mainguard.spawned_rerun()
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        assert pool.apply(mainguard.spawned_rerun) is False


def test_evographs_own_plugins_are_never_shipped():
    """Built-in entries, partials of evograph's functions (the IDX datasets) and ops included."""
    shipped = {(kind, name) for kind, name, _ in user_plugins()}
    for entry in [("fitness", "sgd"), ("space", "mlp"), ("dataset", "digits"),
                  ("dataset", "mnist"), ("op", "dense"), ("layer", "dense")]:
        assert entry not in shipped
    assert all(not defined_in(value).startswith("evograph.") for kind, name, value in
               user_plugins() if kind != "space")  # api.run's spaces are wrapped in evograph
