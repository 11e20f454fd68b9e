"""Shared pieces of the registry contract tests (``tests/*/test_*_contract.py``, issue 22).

evograph's registries are plain dicts filled by decorators when a package is imported; the
contract tests parametrize over them *at collection time*, so a plug-in registered later is
tested by being registered. Importing this module first imports every package that registers
plug-ins, so each contract sees the whole live registry whichever test file is collected first.
"""

from __future__ import annotations

from collections.abc import Iterable

import evograph.compile  # fitness generators and the mlp-table space
import evograph.data.datasets  # the dataset loaders
import evograph.meta  # meta-learner proposers: strategy "rl"
import evograph.operators  # noqa: F401  (imported for its registrations, as all four)
from evograph.genome.space import SearchSpace

from tests.conftest import SHAPES_BY_FAMILY


def entries(registry: Iterable[str]) -> list[str]:
    """The registry's names in a stable order (parametrize ids)."""
    return sorted(registry)


def shapes_for(space: SearchSpace) -> list[tuple[int, ...]]:
    """The input shapes a space's family is exercised on (``tests/conftest.py``). A space of a
    new family fails here by name rather than going untested."""
    assert space.family in SHAPES_BY_FAMILY, (
        f"space {space.name!r}: family {space.family!r} has no input shapes in "
        "tests/conftest.py SHAPES_BY_FAMILY; add the shapes it works on")
    return [tuple(s) for s in SHAPES_BY_FAMILY[space.family]]
