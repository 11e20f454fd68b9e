"""Variation operators: the Large-Scale Evolution mutation set, the mlp and cell mutations,
crossover."""

from . import cells as _cells  # noqa: F401  (the cell mutations)
from . import mutations as _mutations  # noqa: F401  (fills the registry)
from .base import MUTATIONS, Edit, NotApplicable, VariationFailed, mutate, mutation_table
from .crossover import crossover

__all__ = [
    "MUTATIONS",
    "Edit",
    "NotApplicable",
    "VariationFailed",
    "crossover",
    "mutate",
    "mutation_table",
]
