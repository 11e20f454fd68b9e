"""Learned optimizers (Andrychowicz et al. 2016, *Learning to learn by gradient descent by
gradient descent*): the coordinatewise LSTM optimizer, its meta-training on optimizee task
families, the ``learned`` optimizer gene and the ``learned-optimizer`` fitness generator."""

from . import fitness as _fitness  # noqa: F401  (registers fitness "learned-optimizer")
from . import lstm as _lstm  # noqa: F401  (registers the optimizer gene "learned")
