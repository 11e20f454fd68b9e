"""MAML (Finn, Abbeel & Levine 2017, *Model-Agnostic Meta-Learning for Fast Adaptation of Deep
Networks*), functional over parameter dicts; fitness ``maml`` scores a genome by how well it
adapts to few-shot tasks."""

from . import fitness as _fitness  # noqa: F401  (registers fitness "maml")
