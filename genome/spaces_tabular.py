"""Bounded, enumerable search spaces for tabular benchmarks.

A *tabular benchmark* (Ying et al. 2019, NAS-Bench-101) trains every architecture of a small space
once, ahead of time, so a search strategy can then be run in seconds by looking results up. The
``mlp-table`` space is the one evograph's own table (``benchmarks/data/digits-mlp.csv.gz``, built
by ``benchmarks/tabular.py``) covers: the classic demo's ``mlp`` space with everything bounded —

* 1 to 3 dense layers, each of a width from ``MLP_TABLE_WIDTHS``;
* one activation for the whole network (as the demo's mutations keep it);
* an optimizer from ``MLP_TABLE_LEARNING_RATES``, each with its own *fixed* learning rate (the
  learning-rate gene is not searched; a table key ignores it), batch size 64, no weight decay.

That is 4 + 16 + 64 width patterns x 3 activations x 4 optimizers = 1,008 architectures.

Its sampler draws *uniformly over architectures* (a depth with probability proportional to how
many architectures have it), so random search over this space is the uniform baseline of the
tabular-benchmark literature rather than one biased towards shallow networks.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

import numpy as np

from .core import Genome, Node
from .ops import Shape
from .space import SearchSpace, register_space

MLP_TABLE_WIDTHS = (16, 32, 64, 128)
MLP_TABLE_ACTIVATIONS = ("relu", "tanh", "sigmoid")
MLP_TABLE_LEARNING_RATES = {"sgd": 0.1, "adam": 0.003, "rmsprop": 0.001, "adagrad": 0.05}
MLP_TABLE_MAX_LAYERS = 3
MLP_TABLE_BATCH_SIZE = 64
MLP_TABLE_MUTATIONS = (("mlp-layers", 1.0), ("mlp-neurons", 1.0), ("mlp-activation", 1.0),
                       ("mlp-optimizer", 1.0))


def table_learning_rate(optimizer: str, space: SearchSpace) -> float:
    """The fixed learning rate of ``optimizer`` (the space's initial one for an unknown name)."""
    default = dict(space.initial_genes).get("learning_rate", 0.001)
    return float(MLP_TABLE_LEARNING_RATES.get(optimizer, default))


def mlp_chain_genome(widths: tuple[int, ...], activation: str, optimizer: str,
                     space: SearchSpace, input_shape: Shape, num_classes: int) -> Genome:
    """The chain ``input -> dense(w1) -> ... -> output`` with the optimizer's fixed genes."""
    nodes = [Node.make(0, "input", shape=tuple(input_shape))]
    nodes += [Node.make(i, "dense", units=int(w), activation=activation)
              for i, w in enumerate(widths, start=1)]
    nodes.append(Node.make(len(widths) + 1, "output", num_classes=num_classes))
    genes: dict[str, Any] = {**dict(space.initial_genes), "optimizer": optimizer,
                             "learning_rate": table_learning_rate(optimizer, space)}
    return Genome.make(nodes, [(i, i + 1) for i in range(len(widths) + 1)], genes)


def width_patterns(space: SearchSpace) -> list[tuple[int, ...]]:
    """Every width tuple of 1..max_layers layers, shallow first, in lexicographic order."""
    return [w for depth in range(1, space.max_layers + 1)
            for w in itertools.product(sorted(space.unit_choices), repeat=depth)]


def enumerate_mlp_table(space: SearchSpace, input_shape: Shape,
                        num_classes: int) -> Iterator[Genome]:
    """Every architecture of an ``mlp-table``-like space, in a fixed order (brute force)."""
    for widths in width_patterns(space):
        for activation in space.activations:
            for optimizer in space.optimizers:
                yield mlp_chain_genome(widths, activation, optimizer, space, input_shape,
                                       num_classes)


def space_size(space: SearchSpace) -> int:
    """How many architectures :func:`enumerate_mlp_table` yields."""
    patterns = sum(len(space.unit_choices) ** d for d in range(1, space.max_layers + 1))
    return patterns * len(space.activations) * len(space.optimizers)


def sample_mlp_table(space: SearchSpace, rng: np.random.Generator, input_shape: Shape,
                     num_classes: int) -> Genome:
    """A genome drawn uniformly over the space's architectures (depth weighted by its count)."""
    counts = np.array([len(space.unit_choices) ** d for d in range(1, space.max_layers + 1)],
                      dtype=float)
    depth = 1 + int(rng.choice(len(counts), p=counts / counts.sum()))
    widths = tuple(int(rng.choice(space.unit_choices)) for _ in range(depth))
    activation = str(rng.choice(space.activations))
    optimizer = str(rng.choice(space.optimizers))
    return mlp_chain_genome(widths, activation, optimizer, space, input_shape, num_classes)


@register_space("mlp-table")
def mlp_table_space(**overrides: Any) -> SearchSpace:
    """The bounded ``mlp`` space of evograph's digits table (see the module docstring)."""
    rates = tuple(MLP_TABLE_LEARNING_RATES.values())
    base = SearchSpace(
        name="mlp-table", family="mlp", ops=("dense",), max_layers=MLP_TABLE_MAX_LAYERS,
        unit_choices=MLP_TABLE_WIDTHS, activations=MLP_TABLE_ACTIVATIONS,
        optimizers=tuple(MLP_TABLE_LEARNING_RATES), learning_rate=(min(rates), max(rates)),
        weight_decay=(0.0, 0.0), batch_sizes=(MLP_TABLE_BATCH_SIZE,),
        initial_genes=(("learning_rate", MLP_TABLE_LEARNING_RATES["adam"]),
                       ("optimizer", "adam"), ("weight_decay", 0.0),
                       ("batch_size", MLP_TABLE_BATCH_SIZE)),
        mutation_weights=MLP_TABLE_MUTATIONS, initial=sample_mlp_table, sampler=sample_mlp_table)
    return base.replace(**overrides)
