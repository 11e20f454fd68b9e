"""Every command the documentation gives a user runs and exits 0, without a traceback (issue 24).

One test per command, named by where it is written (``README.md:31``, ``docs/export.md:27``,
``runs/configs/digits-table.toml:5[topk]``). It passes when the command exits 0, prints no
traceback, and every run directory it creates has at least one completed evaluation. The rules,
for whoever writes documentation:

* **What is a command.** In README.md and docs/**/*.md: each line of a ```` ```bash ````,
  ```` ```sh ````, ```` ```shell ```` or ```` ```console ```` block that is not a comment (a trailing
  ``\\`` continues it); in a block with ``$ `` prompts (of any language), only the prompted lines,
  the rest being output. Each ```` ```python ```` block is a script of its own, run as
  ``python block.py``. In runs/configs/*.toml comments: a comment line that starts with
  ``evograph ``, a backticked ```evograph ...```, and a ``--set ...`` (backticked, or starting a
  comment line), run as ``evograph run <that config> --set ...``; ``--set k=v (or a, b, ...)``
  means one run per value, "..." every other registered strategy for ``strategy.name``.
  Output shown in a shell block must be commented (``# ...``) or follow ``$ `` prompts.
* **Not run.** ``make ...`` commands (``make test`` runs this test; ``make demo`` is 9 minutes).
  Anything else that cannot run here (a GPU, a Dask cluster, the network, hours) is marked
  where it is written: ``<!-- not-run: reason -->`` on the lines just above a fence skips the
  block; ``<!-- not-run "REGEX": reason -->`` skips only its commands in which the Python regex
  ``REGEX`` is found (a shell command's trailing comment left out: ``"device=cuda"``,
  ``"tabular.py$"``). In a config, a comment line ``# not-run "REGEX": reason``. Each is reported
  as a skip with its reason.
* **Tiny budgets.** Each source (a page, a config) gets a scratch folder holding
  ``runs/configs/`` shrunk by ``doc_commands.SHRINK`` (3 evaluations, 1 epoch or 2 steps,
  100 training samples). Shell commands see every config with the serial executor (unless
  they set ``executor.*`` themselves); Python blocks see each config's own executor, since a
  script's ``__main__`` guard and its plug-ins matter on worker processes. The same values replace ``--set budget.evaluations=50``-like overrides, the budget
  flags ``--epochs/--train/--top/--estimate``, ``"budget.evaluations": 40`` in Python overrides
  and ``steps=``/``epochs=``/``meta_iterations=``/``range(N)`` in Python blocks.
* **Placeholders.** A run directory (``runs/out/NAME-20261124-101500``, ``runs/out/NAME-…``,
  ``RUN_DIR``, ``RUN``) is a copy of one tiny run made once per session (``runs/out/doc-run``),
  its best individual standing in for ``--id N``, ``--of N``/``ID``, ``show RUN N`` and
  ``exports/N-bundle``, one of its parent -> child pairs for ``diff RUN A B``; ``resume RUN --set
  budget.evaluations=N`` extends it to 6. Output paths (``my_model/``, ``deploy/``) are written
  in the scratch folder, and a command naming ``benchmarks/`` runs a copy of that folder. A command that names a file written by an
  earlier command of its page (``g.json``, ``runs/out/hyper``) finds it: the commands of one
  source run in order in one folder, and a command run alone first runs those before it.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import tomli_w
import tomllib

from tests.doc_commands import (
    ROOT,
    RUN_DIR,
    DocCommand,
    RunIds,
    all_commands,
    prepare,
    shrink_config,
)

COMMANDS = all_commands()
TIMEOUT_S = 300
# commands that take over ~20 s even shrunk (pytest -m "not slow" leaves them out): a hypernetwork
# trained at its default 2,000 steps, and the quick search benchmark (20 seeds x 7 searches)
SLOW = re.compile(r"HypernetScoring\(|benchmarks/search\.py --quick")
BIN = Path(sys.executable).parent     # evograph and python of this environment come first


@dataclass
class Outcome:
    text: str               # the command as run
    returncode: int | None  # None: timed out
    output: str
    empty_runs: list[str] = field(default_factory=list)  # runs it made where nothing completed

    @property
    def ok(self) -> bool:
        return (self.returncode == 0 and not self.empty_runs
                and "Traceback (most recent call last)" not in self.output)

    def describe(self) -> str:
        status = "timed out" if self.returncode is None else f"exit {self.returncode}"
        empty = "".join(f"\nno evaluation completed in {run}" for run in self.empty_runs)
        return f"{status}{empty}\n$ {self.text}\n{self.output[-3000:]}"


def run_dirs(folder: Path) -> set[Path]:
    """Run directories under ``folder`` (a command's new ones are checked by ``completed``)."""
    return {db.parent for db in folder.glob("**/run.db")}


def completed(run_dir: Path) -> bool:
    """Whether any evaluation of the run completed: a documented run in which every evaluation
    failed (a script without its guard, a plug-in the workers cannot load) is no success."""
    from evograph.runs.store import RunStore

    with RunStore.open(run_dir, readonly=True) as store:
        return store.counts_by_status().get("completed", 0) > 0


def write_configs(folder: Path, *, serial: bool) -> Path:
    """``folder/runs/configs/`` holding every shipped config with tiny budgets."""
    configs = folder / "runs" / "configs"
    configs.mkdir(parents=True, exist_ok=True)
    for config in sorted((ROOT / "runs" / "configs").glob("*.toml")):
        parsed = tomllib.loads(config.read_text(encoding="utf-8"))
        (configs / config.name).write_text(tomli_w.dumps(shrink_config(parsed, serial=serial)))
    return folder


def execute(command: DocCommand, text: str, cwd: Path) -> Outcome:
    """Run a shell command with bash, or a Python block as a script, in ``cwd``. Its process
    group is killed if it runs past TIMEOUT_S (worker processes included)."""
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
           "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    if command.kind == "python":
        script = cwd / f"doc_block_{command.line}.py"
        script.write_text(text + "\n", encoding="utf-8")
        args = [sys.executable, script.name]
    else:
        args = ["bash", "-c", f"set -o pipefail\n{text}"]   # "+ x" would be read as an option
    with subprocess.Popen(args, cwd=cwd, env=env, stdin=subprocess.DEVNULL, text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          start_new_session=True) as proc:
        try:
            output, _ = proc.communicate(timeout=TIMEOUT_S)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            output, _ = proc.communicate()
            return Outcome(text, None, output)
    return Outcome(text, proc.returncode, output)


@dataclass(frozen=True)
class SessionRun:
    """The one tiny run that stands in for every run directory the documentation names."""

    path: Path
    ids: RunIds


def make_session_run(folder: Path) -> SessionRun:
    """A tiny digits run (4 evaluations, serial), with its best and a parent -> child pair."""
    import evograph

    write_configs(folder, serial=True)
    parsed = tomllib.loads((ROOT / "runs" / "configs" / "digits.toml").read_text())
    config = folder / "runs" / "configs" / "doc-run.toml"
    shrunk = shrink_config(parsed, serial=True)
    shrunk["strategy"].update(population_size=2, sample_size=2)   # children by the 3rd birth
    config.write_text(tomli_w.dumps(shrunk))
    text = f"evograph run {config} --set budget.evaluations=4 --out {RUN_DIR} --no-live"
    made = execute(DocCommand("session", 0, "shell", text), text, folder)
    assert made.ok, f"the session's tiny run failed: {made.describe()}"
    graph = evograph.lineage(folder / RUN_DIR)
    best = int(graph.graph["best"])
    parent, child = next(((p, c) for p, c in graph.edges if c == best), next(iter(graph.edges)))
    return SessionRun(folder / RUN_DIR, RunIds(best, int(parent), int(child)))


@dataclass
class Workspaces:
    """One scratch folder per source; remembers what ran there, so that each command runs
    after the ones written before it in its source, and each runs once. The session run is
    made when a command first names it."""

    base: Path
    serial: dict[Path, bool] = field(default_factory=dict)    # which configs a folder holds
    done: dict[str, Outcome] = field(default_factory=dict)
    run: SessionRun | None = None

    def folder(self, command: DocCommand) -> Path:
        """The source's folder, its configs serial for a shell command (see the docstring)."""
        folder = self.base / command.source.replace("/", "_").replace(".", "_")
        serial = command.kind == "shell"
        if self.serial.get(folder) != serial:
            self.serial[folder] = serial
            write_configs(folder, serial=serial)
        return folder

    def outcome(self, command: DocCommand) -> tuple[Outcome, list[str]]:
        """The command's outcome, and the ids of earlier commands of its source that failed."""
        failed = []
        for earlier in COMMANDS:
            if earlier == command:
                break
            same_source = earlier.source == command.source and not earlier.skip
            if same_source and not self._run(earlier).ok:
                failed.append(earlier.id)
        return self._run(command), failed

    def _run(self, command: DocCommand) -> Outcome:
        if command.id not in self.done:
            cwd = self.folder(command)
            text, names_run = prepare(command, lambda: self._session_run().ids)
            if names_run and not (cwd / RUN_DIR).exists():
                shutil.copytree(self._session_run().path, cwd / RUN_DIR)
            if "benchmarks/" in text and not (cwd / "benchmarks").exists():
                shutil.copytree(ROOT / "benchmarks", cwd / "benchmarks",
                                ignore=shutil.ignore_patterns("__pycache__"))
            before = run_dirs(cwd)
            outcome = execute(command, text, cwd)
            outcome.empty_runs = [str(d.relative_to(cwd)) for d in sorted(run_dirs(cwd) - before)
                                  if not completed(d)]
            self.done[command.id] = outcome
        return self.done[command.id]

    def _session_run(self) -> SessionRun:
        if self.run is None:
            self.run = make_session_run(self.base / "session-run")
        return self.run


@pytest.fixture(scope="session")
def workspaces(tmp_path_factory: pytest.TempPathFactory) -> Workspaces:
    return Workspaces(tmp_path_factory.mktemp("doc-commands"))


def _param(command: DocCommand):
    # one xdist group per source: its commands share a folder and run in order on one worker
    marks = [pytest.mark.xdist_group(f"doc:{command.source}")]
    return pytest.param(command, id=command.id,
                        marks=marks + ([pytest.mark.slow] if SLOW.search(command.text) else []))


@pytest.mark.parametrize("command", [_param(c) for c in COMMANDS])
def test_documented_command_runs(command: DocCommand, workspaces: Workspaces) -> None:
    if command.skip:
        pytest.skip(f"not run: {command.skip}")
    outcome, failed_before = workspaces.outcome(command)
    note = f"\n(earlier commands of this source failed: {', '.join(failed_before)})"
    if not outcome.ok:   # the command, its exit and its output's tail; no pytest traceback
        pytest.fail(f"{command.id}: {outcome.describe()}{note if failed_before else ''}",
                    pytrace=False)


def test_commands_are_found() -> None:
    """The front door's commands are found, and every command has an id of its own."""
    readme = [c for c in COMMANDS if c.source == "README.md"]
    assert any(c.kind == "python" for c in readme)
    assert any(c.text.startswith("evograph run runs/configs/") for c in readme)
    assert len({c.id for c in COMMANDS}) == len(COMMANDS), "two commands share an id"


def test_rules_for_markdown_and_configs(tmp_path: Path) -> None:
    """The extraction rules of this module's docstring, on a page and a config written here."""
    from tests.doc_commands import config_commands, markdown_commands

    (tmp_path / "docs").mkdir()
    page = tmp_path / "docs" / "page.md"
    page.write_text("""# A page
```bash
# a comment
evograph status RUN_DIR   # trailing comment
evograph run runs/configs/digits.toml \\
    --set budget.evaluations=50
make demo
```
<!-- not-run "cuda": needs a GPU -->
```bash
evograph run runs/configs/digits.toml --set executor.device=cuda
evograph status RUN
```
```console
$ evograph best RUN --json
{"id": 3}
```
<!-- not-run: a fragment -->
```python
model(x)
```
""", encoding="utf-8")
    found = {c.id: c for c in markdown_commands(page, tmp_path)}
    assert set(found) == {f"docs/page.md:{n}" for n in (4, 5, 7, 11, 12, 15, 19)}
    assert found["docs/page.md:5"].text.endswith("digits.toml --set budget.evaluations=50")
    assert "make" in found["docs/page.md:7"].skip
    assert found["docs/page.md:11"].skip == "needs a GPU" and not found["docs/page.md:12"].skip
    assert found["docs/page.md:15"].text == "evograph best RUN --json"
    assert found["docs/page.md:19"].kind == "python" and found["docs/page.md:19"].skip
    ids = RunIds(best=7, parent=5, child=7)
    assert prepare(found["docs/page.md:5"], lambda: ids)[0].endswith("evaluations=3")
    assert prepare(found["docs/page.md:4"], lambda: ids) == (
        f"evograph status {RUN_DIR}   # trailing comment", True)

    (tmp_path / "runs" / "configs").mkdir(parents=True)
    config = tmp_path / "runs" / "configs" / "x.toml"
    config.write_text("""# Try --set strategy.name=random (or
# tournament, ...); or `--set executor.name=serial`:
#   evograph run runs/configs/x.toml --out runs/out/a
# not-run "--out": an example
name = "x"
""", encoding="utf-8")
    found = {c.id: c for c in config_commands(config, tmp_path)}
    run = "evograph run runs/configs/x.toml"
    assert found["runs/configs/x.toml:1[tournament]"].text == f"{run} --set strategy.name=tournament"
    assert "runs/configs/x.toml:1[topk]" in found            # "...": every other strategy
    assert found["runs/configs/x.toml:2"].text == f"{run} --set executor.name=serial"
    assert found["runs/configs/x.toml:3"].skip == "an example"
