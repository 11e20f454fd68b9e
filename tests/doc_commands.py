"""Find every command the documentation tells a user to type, and make it cheap to run.

Three sources, each read the way a user reads it (conventions: tests/test_documented_commands.py):
the fenced blocks of README.md and docs/**/*.md, and the comments of runs/configs/*.toml.
Nothing here runs a command; the test module does, in a scratch folder.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHELL_LANGS = {"bash", "sh", "shell", "console"}
FENCE = re.compile(r"^(\s*)(`{3,}|~{3,})\s*([\w+-]*)")
NOT_RUN_MD = re.compile(r'^\s*<!--\s*not-run(?:\s+"([^"]+)")?\s*:\s*(.*?)\s*-->\s*$')
NOT_RUN_TOML = re.compile(r'^\s*#\s*not-run(?:\s+"([^"]+)")?\s*:\s*(.*?)\s*$')
MAKE = re.compile(r"(^|[;&|]\s*)make\b")
MAKE_REASON = "a make target: make test runs this test, make demo is a 9-minute run"

# Budget-like values, by their `table.key`. Applied to the scratch copy of every config (where the
# key is there; FORCED ones in every run config), to `--set table.key=N` on command lines, and to
# `"table.key": N` in Python overrides. Tiny, but valid for every fitness and strategy.
SHRINK: dict[str, int | float] = {
    "budget.evaluations": 3, "budget.minutes": 1.0, "dataset.limit": 100,
    "fitness.epochs": 1, "fitness.steps": 2, "fitness.meta_steps": 2, "fitness.meta_batch": 2,
    "fitness.eval_tasks": 4, "fitness.eval_steps": 1,
    "training.steps": 4, "training.unroll": 2, "training.meta_iterations": 2,
    "training.checkpoint_every": 1, "task.networks": 1,
    "final.candidates": 1, "final.seeds": 1, "final.fitness.epochs": 1,
}
FORCED = ("budget.evaluations", "budget.minutes", "dataset.limit")

# Budget-like arguments of CLI flags and Python calls in documented commands.
FLAG_SHRINK = [(re.compile(rf"(--{flag}[ =])\d+(\.\d+)?"), rf"\g<1>{value}")
               for flag, value in (("epochs", 1), ("train", 1), ("top", 2), ("estimate", 2))]
PY_SHRINK = [
    (re.compile(r"\b(steps|eval_steps|meta_steps|meta_iterations|meta_batch)=\d+"), r"\1=2"),
    (re.compile(r"\bepochs=\d+(\.\d+)?"), "epochs=1"),
    (re.compile(r"\brange\(\d+\)"), "range(2)"),
]
RESUME_EVALUATIONS = 6         # `resume --set budget.evaluations=N` extends the 4-birth run
RUN_DIR = "runs/out/doc-run"    # the session's tiny run, copied into the command's folder
RUN_PLACEHOLDERS = re.compile(r"runs/out/[\w.-]+?-(?:\d{8}-\d{6}|…)|\bRUN_DIR\b|\bRUN\b")


@dataclass(frozen=True)
class DocCommand:
    """One command (or one Python block) as documented, with where it is written."""

    source: str        # path relative to the checkout, e.g. "docs/running.md"
    line: int          # 1-based line of the command, or of a Python block's opening fence
    kind: str          # "shell" or "python"
    text: str          # as written (a shell command's continuation lines joined)
    skip: str = ""     # why it is not run; "" runs it
    tag: str = ""      # tells apart several commands implied by one line

    @property
    def id(self) -> str:
        return f"{self.source}:{self.line}" + (f"[{self.tag}]" if self.tag else "")


@dataclass(frozen=True)
class RunIds:
    """Real individuals of the session run, for the ids a documented command names."""

    best: int
    parent: int
    child: int


def all_commands(root: Path = ROOT) -> list[DocCommand]:
    """Every documented command, page by page in reading order, then every config's comments."""
    pages = [root / "README.md", *sorted(p for p in (root / "docs").rglob("*.md")
                                         if "_hooks" not in p.parts)]
    found = [c for page in pages for c in markdown_commands(page, root)]
    configs = sorted((root / "runs" / "configs").glob("*.toml"))
    found += [c for config in configs for c in config_commands(config, root)]
    return _unique(found)


def _unique(commands: list[DocCommand]) -> list[DocCommand]:
    """Several commands on one line get the tags 2, 3, ... after the first."""
    seen: dict[str, int] = {}
    out = []
    for c in commands:
        seen[c.id] = seen.get(c.id, 0) + 1
        if seen[c.id] > 1:
            c = replace(c, tag=f"{c.tag}{seen[c.id]}")
        out.append(c)
    return out


def markdown_commands(page: Path, root: Path = ROOT) -> list[DocCommand]:
    """Shell commands and Python blocks of one Markdown page (see the test module's rules)."""
    source = page.relative_to(root).as_posix()
    lines = page.read_text(encoding="utf-8").splitlines()
    found, i = [], 0
    while i < len(lines):
        match = FENCE.match(lines[i])
        if not match:
            i += 1
            continue
        indent, fence, lang = match.groups()
        end = i + 1
        while end < len(lines) and not lines[end].strip().startswith(fence):
            end += 1
        body = [line[len(indent):] if line.startswith(indent) else line.strip()
                for line in lines[i + 1:end]]
        markers = _markers_above(lines, i)
        if lang == "python":
            found.append(_marked(DocCommand(source, i + 1, "python", "\n".join(body)), markers))
        else:
            found += [_marked(DocCommand(source, i + 2 + offset, "shell", text), markers)
                      for offset, text in shell_lines(body, lang in SHELL_LANGS)]
        i = end + 1
    return found


def shell_lines(body: list[str], shell_block: bool) -> list[tuple[int, str]]:
    """(offset in the block, command) pairs. With ``$ `` prompts, only prompted lines are
    commands (the rest is output); without, every line of a shell block that is not a comment."""
    prompted = any(line.startswith("$ ") for line in body)
    if not prompted and not shell_block:
        return []
    commands, offset, parts = [], 0, []
    for n, line in enumerate(body):
        if parts:
            parts.append(line.strip())
        elif prompted and line.startswith("$ "):
            offset, parts = n, [line[2:].strip()]
        elif not prompted and line.strip() and not line.lstrip().startswith("#"):
            offset, parts = n, [line.strip()]
        if parts and not parts[-1].endswith("\\"):
            commands.append((offset, " ".join(p.rstrip("\\").strip() for p in parts)))
            parts = []
    return commands


def _markers_above(lines: list[str], fence: int) -> list[tuple[str | None, str]]:
    """The ``<!-- not-run ... -->`` comments (and blank lines) directly above a fence."""
    markers, i = [], fence - 1
    while i >= 0 and (not lines[i].strip() or NOT_RUN_MD.match(lines[i])):
        if match := NOT_RUN_MD.match(lines[i]):
            markers.append((match.group(1), match.group(2)))
        i -= 1
    return markers


def _marked(command: DocCommand, markers: list[tuple[str | None, str]]) -> DocCommand:
    """The command with its skip reason: a make target, or a marker naming it (or its block)."""
    if command.kind == "shell" and MAKE.search(command.text):
        return replace(command, skip=MAKE_REASON)
    for pattern, reason in markers:
        if pattern is None or re.search(pattern, _without_comment(command)):
            return replace(command, skip=reason or "marked not-run")
    return command


def _without_comment(command: DocCommand) -> str:
    """A shell command without its trailing ``# ...`` comment (a Python block as it is)."""
    return command.text if command.kind == "python" else re.sub(r"\s+#.*$", "", command.text)


def config_commands(config: Path, root: Path = ROOT) -> list[DocCommand]:
    """Commands a config's comments suggest: whole ``evograph ...`` lines, backticked
    ``evograph ...`` or ``--set ...`` (the latter run on this config), lines of ``--set ...``,
    and ``--set k=v (or a, b, ...)``, which implies one run per value ("..." = every other
    registered strategy, for strategy.name)."""
    source = config.relative_to(root).as_posix()
    lines = config.read_text(encoding="utf-8").splitlines()
    run = f"evograph run {source}"
    markers = [(m.group(1), m.group(2)) for m in map(NOT_RUN_TOML.match, lines) if m]
    found: dict[tuple[int, str], DocCommand] = {}
    for paragraph in _comment_paragraphs(lines):
        for line, text in paragraph:
            if text.startswith(("evograph ", "--set ")):
                command = text if text.startswith("evograph ") else f"{run} {text}"
                found[(line, command)] = DocCommand(source, line, "shell", command)
        joined, starts = _join(paragraph)
        for match in re.finditer(r"`((?:evograph|--set) [^`]+)`", joined):
            text = match.group(1)
            command = text if text.startswith("evograph ") else f"{run} {text}"
            line = _line_at(starts, match.start())
            found.setdefault((line, command), DocCommand(source, line, "shell", command))
        for match in re.finditer(r"(?<!`)--set ([\w.]+)=([\w-]+) \(or ([^)]*)\)", joined):
            line = _line_at(starts, match.start())
            for value in _alternatives(match.group(1), match.group(2), match.group(3)):
                command = f"{run} --set {match.group(1)}={value}"
                found[(line, command)] = DocCommand(source, line, "shell", command, tag=value)
    return [_marked(c, markers) for c in found.values()]


def _comment_paragraphs(lines: list[str]) -> list[list[tuple[int, str]]]:
    """Runs of whole-line comments, as (1-based line, text after '#') pairs."""
    paragraphs, current = [], []
    for n, line in enumerate(lines, start=1):
        if line.lstrip().startswith("#"):
            current.append((n, line.lstrip()[1:].strip()))
        elif current:
            paragraphs.append(current)
            current = []
    return paragraphs + ([current] if current else [])


def _join(paragraph: list[tuple[int, str]]) -> tuple[str, list[tuple[int, int]]]:
    """A paragraph as one string, and (offset, line) where each of its lines starts."""
    text, starts = "", []
    for line, part in paragraph:
        starts.append((len(text), line))
        text += part + " "
    return text, starts


def _line_at(starts: list[tuple[int, int]], offset: int) -> int:
    return max((s for s in starts if s[0] <= offset), default=starts[0])[1]


def _alternatives(key: str, first: str, rest: str) -> list[str]:
    """The values of ``--set key=first (or rest)``: each comma-separated item's leading name,
    up to the first item that goes on in prose; "..." stands for every other strategy."""
    values, etc = [first], False
    for item in rest.split(","):
        match = re.match(r"\s*([\w-]+|\.\.\.)(.*)", item)
        if not match:
            break
        etc |= match.group(1) == "..."
        values += [match.group(1)] if match.group(1) != "..." else []
        if match.group(2).strip():
            break
    if etc and key == "strategy.name":
        import evograph.meta  # noqa: F401  (registers rl, enas)
        from evograph.selection import STRATEGIES
        values += sorted(set(STRATEGIES) - set(values))
    return values


def shrink_config(config: dict, *, serial: bool) -> dict:
    """A copy of a parsed config with tiny budgets (SHRINK); with ``serial``, the serial
    executor (worker start-up would be most of a tiny run's time)."""
    config = copy.deepcopy(config)
    is_run = "budget" in config
    for dotted, value in SHRINK.items():
        *tables, key = dotted.split(".")
        forced = is_run and dotted in FORCED
        section = config
        for table in tables:
            section = section.setdefault(table, {}) if forced else section.get(table)
            if not isinstance(section, dict):
                break
        if isinstance(section, dict) and (key in section or forced):
            section[key] = value
    executor = config.get("executor")
    if executor is not None and serial:
        executor["name"] = "serial"
        executor.pop("workers", None)
    return config


def prepare(command: DocCommand, run_ids: Callable[[], RunIds]) -> tuple[str, bool]:
    """The command as the test runs it, and whether it names the session run: budgets shrunk
    and placeholders (a run directory, individual ids) replaced by real ones. ``run_ids`` is
    called only for a command that names a run."""
    text = command.text
    resume = text.startswith("evograph resume ")
    for dotted, value in SHRINK.items():
        key = re.escape(dotted)
        value = RESUME_EVALUATIONS if resume and dotted == "budget.evaluations" else value
        text = re.sub(rf"(--set\s+'?{key}=)[\d.]+", rf"\g<1>{value}", text)
        text = re.sub(rf"""(["']{key}["']\s*:\s*)[\d.]+""", rf"\g<1>{value}", text)
    for pattern, replacement in (PY_SHRINK if command.kind == "python" else FLAG_SHRINK):
        text = pattern.sub(replacement, text)
    if not RUN_PLACEHOLDERS.search(text):
        return text, False
    ids = run_ids()
    text = RUN_PLACEHOLDERS.sub(RUN_DIR, text)
    text = re.sub(r"(--id|--of)(\s+)(\d+|ID)\b", rf"\g<1>\g<2>{ids.best}", text)
    text = re.sub(rf"(\bdiff\s+{re.escape(RUN_DIR)})\s+\d+\s+\d+",
                  rf"\g<1> {ids.parent} {ids.child}", text)
    text = re.sub(rf"(\bshow\s+{re.escape(RUN_DIR)})\s+\d+", rf"\g<1> {ids.best}", text)
    text = re.sub(r"exports/\d+-bundle", f"exports/{ids.best}-bundle", text)
    return text, True
