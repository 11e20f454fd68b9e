"""Compilation of genomes into PyTorch modules (builder, layers, weight inheritance, code
generation, determinism); :mod:`.training` beside it trains and scores them."""

from . import cells as _cells  # noqa: F401  (registers the cell networks' layers and emitters)
from . import codegen_cells as _codegen_cells  # noqa: F401  (model.py with Cell classes)
from .builder import GenomeModule, build, count_parameters
from .training import FITNESS, FitnessGenerator, Score, make_fitness, register_fitness

__all__ = ["FITNESS", "FitnessGenerator", "GenomeModule", "Score", "build", "count_parameters",
           "make_fitness", "register_fitness"]
