"""The ``evograph`` command answers at once: building its parser, ``--version`` and a config
mistake import no torch (each command's handler imports what it needs). How long they take is
measured by ``benchmarks/cli_startup.py``, not asserted here."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import evograph
from evograph.runs.cli import lineage as cli_lineage
from evograph.runs.lineage import writers

HEAVY = ("torch", "evograph.runs.driver", "evograph.runs.setup", "evograph.runs.export.api",
         "evograph.compile", "evograph.meta")


def python(code: str, cwd=None) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter (nothing imported yet) and capture what it says."""
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, timeout=120, cwd=cwd, check=False)


def loaded_heavy(code: str, cwd=None) -> list[str]:
    """Which of :data:`HEAVY` are imported after running ``code`` in a fresh interpreter."""
    probe = (textwrap.dedent(code) + "\nimport json, sys\n"
             f"print(json.dumps(sorted(m for m in {list(HEAVY)!r} if m in sys.modules)))\n")
    result = python(probe, cwd)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_building_the_parser_imports_no_torch():
    assert loaded_heavy("""
        import evograph.runs.cli.main as m
        listed = m.make_parser().format_help().split()
        for command in ('run', 'resume', 'status', 'lineage', 'report', 'export', 'genome',
                        'meta', 'hypernet'):
            assert command in listed, command
    """) == []


def test_version_prints_the_package_version():
    result = subprocess.run([sys.executable, "-m", "evograph.runs.cli.main", "--version"],
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"evograph {evograph.__version__}"


def test_a_config_mistake_is_one_line_without_torch(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('name = "x"\n[budget]\nevaluations = "5"\n')
    code = """
        from evograph.runs.cli.main import main
        assert main(["run", "missing.toml"]) == 2
        assert main(["run", "bad.toml"]) == 2
    """
    assert loaded_heavy(code, cwd=tmp_path) == []
    result = python(code, cwd=tmp_path)
    missing, wrong = result.stderr.strip().splitlines()  # one line each, no traceback
    assert missing.startswith("evograph: error: missing.toml: ") and "not found" in missing
    assert wrong.startswith("evograph: error: bad.toml: budget.evaluations: ")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.toml"]  # no run directory made


def test_the_cli_lists_the_lineage_formats_the_writer_writes():
    assert cli_lineage.FORMATS == writers.FORMATS
