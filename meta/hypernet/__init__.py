"""Hypernetworks: genomes decoded into generated weights, and one-shot scoring without training.

* **Static hypernetwork** (Ha, Dai & Le 2016) — :mod:`~evograph.meta.hypernet.static`: a genome's
  conv/dense kernels are generated from learned per-slice embeddings by one shared two-layer
  linear generator, trained end to end; ``fitness = "hypernet-static"``.
* **SMASH** (Brock et al. 2018) — :mod:`~evograph.meta.hypernet.smash` (the hypernetwork),
  :mod:`~evograph.meta.hypernet.smash_train` (training, storage, sharing between workers) and
  :mod:`~evograph.meta.hypernet.smash_fitness`: one hypernetwork generates the weights of any genome of a
  space from its graph; ``fitness = "hypernet"`` scores a genome with them and no training, and
  :func:`retrain` trains the winners for real.

Importing this module (``evograph.meta`` does) registers both fitness generators.
"""

from .core import SliceGenerator, Slot, weight_slots
from .smash import SmashConfig, SmashHypernet
from .smash_encoding import encode
from .smash_fitness import HypernetScoring, recalibrate_batchnorm, retrain
from .smash_train import (
                              HypernetError,
                              ensure_trained,
                              load_hypernet,
                              save_hypernet,
                              stored_stats,
                              train_smash,
)
from .static import HyperNetworked, StaticHypernet, StaticHypernetTraining, static_hypernet

__all__ = ["HyperNetworked", "HypernetError", "HypernetScoring", "SliceGenerator", "Slot",
           "SmashConfig", "SmashHypernet", "StaticHypernet", "StaticHypernetTraining", "encode",
           "ensure_trained", "load_hypernet", "recalibrate_batchnorm", "retrain", "save_hypernet",
           "static_hypernet", "stored_stats", "train_smash", "weight_slots"]
