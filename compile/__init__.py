"""Compilation of genomes into PyTorch modules, weight inheritance and candidate training."""

from . import table as _table  # noqa: F401  (registers the table fitness and mlp-table space)
from . import train as _train  # noqa: F401  (registers the sgd fitness generator)
from .builder import GenomeModule, build, count_parameters
from .fitness import FITNESS, FitnessGenerator, Score, make_fitness, register_fitness

__all__ = ["FITNESS", "FitnessGenerator", "GenomeModule", "Score", "build", "count_parameters",
           "make_fitness", "register_fitness"]
