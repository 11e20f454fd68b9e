"""The RL controller of Zoph & Le 2017 (*Neural Architecture Search with Reinforcement
Learning*): an LSTM policy over a space's codec, trained by REINFORCE with a moving-average
baseline, proposing genomes as the ``rl`` strategy."""

from . import strategy as _strategy  # noqa: F401  (registers strategy "rl")
from .controller import Controller, resolve_codec

__all__ = ["Controller", "resolve_codec"]
