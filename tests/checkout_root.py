"""A pytest plugin (``-p tests.checkout_root`` in pyproject.toml): collect the checkout's root as
a plain folder.

The checkout's root is the ``evograph`` package itself (its ``__init__.py`` is the package's), so
pytest would collect it as a package and import that ``__init__.py`` under the *folder's* name —
which fails when the folder name is not a Python identifier (``evograph-main``, as a GitHub zip
unpacks): every test then errors with "attempted relative import with no known parent package".
Nothing at the root is a test, so nothing is lost by not importing it there; the tests import
the installed ``evograph``."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def pytest_collect_directory(path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    if Path(path).resolve() == ROOT:
        return pytest.Dir.from_parent(parent, path=Path(path))
    return None
