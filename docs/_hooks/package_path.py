"""MkDocs hook: let mkdocstrings (griffe) find the ``evograph`` package by static analysis.

The repository root *is* the package (``setup.cfg`` maps ``evograph = .``), so the folder that
holds it may have any name and griffe, which finds a package by its folder name, cannot see it.
Before the build this hook makes ``build/griffe/evograph/``: links to the package's own modules
and subpackages (not ``tests``, ``.venv`` or ``build``), and ``mkdocs.yml`` points the handler's
``paths`` at ``build/griffe``. Nothing is imported, so the build needs no torch and runs no code.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from mkdocs.plugins import event_priority

SKIP = {"tests", "build", "docs", "benchmarks"}  # folders at the root that are not the package


@event_priority(100)  # before mkdocstrings reads its paths (they must exist by then)
def on_config(config):
    """Rebuild the link tree from scratch each build, so a removed module disappears too."""
    root = Path(config.config_file_path).resolve().parent
    tree = root / "build" / "griffe" / "evograph"
    if tree.is_symlink() or tree.is_file():
        tree.unlink()
    shutil.rmtree(tree, ignore_errors=True)
    tree.mkdir(parents=True)
    for entry in sorted(root.iterdir()):
        is_module = entry.suffix == ".py" and entry.is_file()
        is_package = entry.is_dir() and (entry / "__init__.py").exists() and entry.name not in SKIP
        if is_module or is_package:
            os.symlink(os.path.relpath(entry, tree), tree / entry.name)
    return config
