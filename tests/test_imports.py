"""Imports flow one way (DESIGN.md): genome <- operators <- selection, genome <- compile <- meta,
runs may import everything, nothing imports runs."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ALLOWED = {
    "genome": set(),
    "operators": {"genome"},
    "selection": {"genome", "operators"},
    "compile": {"genome"},
    "meta": {"genome", "compile", "operators", "selection"},
    "runs": {"genome", "operators", "selection", "compile", "meta"},
}


def _evograph_imports(path: Path, package: str):
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level >= 2 and node.module:
                yield node.module.split(".")[0]
            elif node.level == 0 and node.module and node.module.startswith("evograph."):
                yield node.module.split(".")[1]
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("evograph."):
                    yield alias.name.split(".")[1]


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_imports_flow_one_way(package):
    for path in (ROOT / package).rglob("*.py"):
        for target in _evograph_imports(path, package):
            if target in ALLOWED and target != package:
                assert target in ALLOWED[package], f"{path.relative_to(ROOT)} imports {target}"


@pytest.mark.parametrize("bare", ["compile", "operators"])
def test_no_bare_imports_of_shadowed_names(bare):
    for path in ROOT.rglob("*.py"):
        if ".venv" in path.parts:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                assert all(a.name.split(".")[0] != bare for a in node.names), path
