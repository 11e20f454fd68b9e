"""Imports flow one way (docs/design.md): the foundation (errors, files, crashpoints, devices,
data) <- genome <- operators <- selection, genome <- compile <- meta, runs may import everything,
nothing imports runs; and no module imports itself back through others (no import circles, not
even inside a folder)."""

import ast
from pathlib import Path

import networkx as nx
import pytest

ROOT = Path(__file__).resolve().parents[1]
FOUNDATION = {"errors", "files", "crashpoints", "devices", "data"}
LAYERS = {
    **{name: set() for name in FOUNDATION},
    "genome": set(),
    "operators": {"genome"},
    "selection": {"genome", "operators"},
    "compile": {"genome"},
    "meta": {"genome", "compile", "operators", "selection"},
    "runs": {"genome", "operators", "selection", "compile", "meta"},
}
PACKAGE_DIRS = [name for name in LAYERS if (ROOT / name).is_dir()]


def package_files():
    """Every module of the package, as (dotted name below ``evograph``, path)."""
    for path in sorted(ROOT.glob("*.py")):
        yield path.stem, path
    for top in PACKAGE_DIRS:
        for path in sorted((ROOT / top).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            yield ".".join(parts), path


def runtime_nodes(tree: ast.AST):
    """Every node of ``tree`` but those under ``if TYPE_CHECKING:`` (imports for annotations
    only, which never run)."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING":
            continue
        yield node
        yield from runtime_nodes(node)


def imported_modules(name: str, path: Path):
    """The evograph modules ``path`` imports, as dotted names below ``evograph`` (relative imports
    resolved against the module's own package)."""
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    if path.name == "__init__.py":
        package = package[:-1]  # ``name`` of a package's __init__ ends in "__init__"
    for node in runtime_nodes(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)]
                target = base + (node.module.split(".") if node.module else [])
            elif node.module and node.module.split(".")[0] == "evograph":
                target = node.module.split(".")[1:]
            else:
                continue
            targets = [target + [a.name] for a in node.names]
            yield from (".".join(t) for t in targets)
            yield ".".join(target)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("evograph."):
                    yield alias.name.split(".", 1)[1]


def module_graph() -> nx.DiGraph:
    modules = dict(package_files())
    names = {n.removesuffix(".__init__") for n in modules}
    graph = nx.DiGraph()
    for name, path in modules.items():
        src = name.removesuffix(".__init__")
        graph.add_node(src)
        for target in imported_modules(name, path):
            if target in names and target != src:
                graph.add_edge(src, target)
    return graph


@pytest.mark.parametrize("package", sorted(LAYERS))
def test_imports_flow_one_way(package):
    graph = module_graph()
    for src, dst in graph.edges:
        top_src, top_dst = src.split(".")[0], dst.split(".")[0]
        if top_src == package and top_dst != package and top_dst in LAYERS:
            allowed = LAYERS[package] | FOUNDATION
            assert top_dst in allowed, f"{src} imports {dst}"


def test_no_import_circles():
    """A package registers its plug-ins from its own __init__, so no module needs another that
    needs it back. An __init__ that hands on names of its own modules is not a circle."""
    graph = module_graph()
    inits = {n for n in graph if (ROOT / n.replace(".", "/") / "__init__.py").exists()}
    plain = graph.subgraph(n for n in graph if n not in inits)
    cycles = list(nx.simple_cycles(plain))
    assert not cycles, f"import circles: {cycles}"


def test_the_graph_sees_the_subpackages():
    """The layering test reads what it should: relative imports resolve inside subpackages."""
    graph = module_graph()
    assert graph.has_edge("runs.execute.worker", "compile.builder")
    assert graph.has_edge("meta.rl.strategy", "meta.rl.controller")
    assert "runs.cli.main" in graph


@pytest.mark.parametrize("bare", ["compile", "operators"])
def test_no_bare_imports_of_shadowed_names(bare):
    for path in ROOT.rglob("*.py"):
        if ".venv" in path.parts:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                assert all(a.name.split(".")[0] != bare for a in node.names), path
