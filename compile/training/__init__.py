"""Training and scoring compiled genomes: the fitness-generator protocol and registry, SGD
training, batched training of a population, functional optimizers and the table lookup."""

from . import sgd as _sgd  # noqa: F401  (registers the sgd fitness generator)
from . import table as _table  # noqa: F401  (registers the table fitness and mlp-table space)
from .fitness import FITNESS, FitnessGenerator, Score, make_fitness, register_fitness

__all__ = ["FITNESS", "FitnessGenerator", "Score", "make_fitness", "register_fitness"]
