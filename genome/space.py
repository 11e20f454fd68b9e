"""Search spaces as data: allowed ops and ranges, size budgets, initial and random genomes.

Two chain-shaped spaces are defined here (the cell spaces ``nb201`` and ``nasnet`` are in
:mod:`evograph.genome.cells`, ``mlp-table`` in :mod:`evograph.genome.spaces_tabular`):

* ``lse-conv`` — the space of *Large-Scale Evolution of Image Classifiers* (Real et al. 2017):
  convolutions (filter height/width, power-of-two strides, channels, optional BN+ReLU), identity
  (one-to-one) nodes and skip edges. Evolution starts from trivial networks with no hidden layers
  (input -> global pool -> linear). Works on images ``(C, H, W)`` and 1-D signals ``(C, L)``.
* ``mlp`` — the space of the classic "evolve a neural network with a genetic algorithm" demo:
  number of layers, neurons per layer, activation and optimizer.

A user defines a new space by constructing :class:`SearchSpace` (optionally with their own
``initial``/``sampler`` callables) and, if they want it by name in configs, registering a factory
with :func:`register_space`. No evograph file needs editing.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import InvalidGenome
from .core import Genome, Node
from .ops import ACTIVATIONS, Shape, spatial_shape
from .validate import GenomeInfo, analyze

OPTIMIZERS = ("sgd", "momentum", "adam", "rmsprop", "adagrad", "adadelta", "adamax", "nadam")
# a cell genome's nodes besides its ops (genome.cells)
CELL_STRUCTURE = ("skeleton", "cell_node", "cell_input", "block", "cell_output")
GenomeFactory = Callable[["SearchSpace", np.random.Generator, Shape, int], Genome]


@dataclass(frozen=True)
class SearchSpace:
    """What genomes may contain and how big they may grow. Plain data; see the module doc."""

    name: str
    family: str                                   # "conv" or "mlp": samplers and mutations
    ops: tuple[str, ...]
    channels: tuple[int, int] = (1, 256)
    kernel_sizes: tuple[int, ...] = (1, 3, 5, 7)
    strides: tuple[int, ...] = (1, 2, 4)
    unit_choices: tuple[int, ...] = (64, 128, 256, 512, 768, 1024)
    activations: tuple[str, ...] = ACTIVATIONS
    optimizers: tuple[str, ...] = OPTIMIZERS
    learning_rate: tuple[float, float] = (1e-4, 1.0)
    weight_decay: tuple[float, float] = (0.0, 1e-2)
    batch_sizes: tuple[int, ...] = (16, 32, 64, 128, 256)
    max_layers: int = 24                          # hidden nodes (all but input and output;
                                                  # not of cell genomes: blocks bounds a cell)
    max_params: int = 2_000_000
    max_flops: int = 500_000_000
    cell_channels: int = 16                       # cell spaces: the first stage's channels,
    cells: int = 5                                # cells per stage,
    stages: int = 3                               # stages (channels double at each reduction),
    blocks: int = 5                               # blocks per cell (nasnet)
    initial_genes: tuple[tuple[str, Any], ...] = ()
    mutation_weights: tuple[tuple[str, float], ...] = ()
    initial: GenomeFactory | None = field(default=None, compare=False)
    sampler: GenomeFactory | None = field(default=None, compare=False)

    # -- checks --------------------------------------------------------------------------------
    def check(self, genome: Genome, info: GenomeInfo) -> None:
        """Raise InvalidGenome if ``genome`` (already structurally valid) leaves this space."""
        hidden = len(genome.nodes) - 2
        if hidden > self.max_layers and self.family != "cell":  # a cell's size: its blocks
            raise InvalidGenome(f"{hidden} hidden nodes exceed the space's max_layers="
                                f"{self.max_layers}")
        for node in genome.nodes:
            self._check_node(node)
        self._check_genes(genome.gene)
        if info.params > self.max_params:
            raise InvalidGenome(f"{info.params:,} parameters exceed the budget of "
                                f"{self.max_params:,} (space {self.name})")
        if info.flops > self.max_flops:
            raise InvalidGenome(f"{info.flops:,} FLOPs exceed the budget of "
                                f"{self.max_flops:,} (space {self.name})")

    def _check_node(self, node: Node) -> None:
        where, p = f"node {node.id}", node.p
        structural = ("input", "output") + (CELL_STRUCTURE if self.family == "cell" else ())
        if node.op not in self.ops + structural:
            raise InvalidGenome(f"op {node.op!r} is not in space {self.name}", where)
        if node.op == "conv":
            lo, hi = self.channels
            if not lo <= p["out_channels"] <= hi:
                raise InvalidGenome(f"out_channels={p['out_channels']} outside [{lo}, {hi}]", where)
            for k in ("kernel_h", "kernel_w"):
                if p[k] not in self.kernel_sizes:
                    raise InvalidGenome(f"{k}={p[k]} not in {self.kernel_sizes}", where)
            for k in ("stride_h", "stride_w"):
                if p[k] not in self.strides:
                    raise InvalidGenome(f"{k}={p[k]} not in {self.strides}", where)
        if node.op == "dense":
            lo, hi = min(self.unit_choices), max(self.unit_choices)
            if not lo <= p["units"] <= hi:
                raise InvalidGenome(f"units={p['units']} outside [{lo}, {hi}]", where)
            if p["activation"] not in self.activations:
                raise InvalidGenome(f"activation {p['activation']!r} not in space", where)

    def _check_genes(self, genes: dict[str, Any]) -> None:
        lr, (lo, hi) = genes.get("learning_rate"), self.learning_rate
        if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not lo <= lr <= hi:
            raise InvalidGenome(f"learning_rate={lr!r} outside [{lo}, {hi}]", "genes")
        if genes.get("optimizer") not in self.optimizers:
            raise InvalidGenome(f"optimizer {genes.get('optimizer')!r} not in "
                                f"{', '.join(self.optimizers)}", "genes")
        wd, (lo, hi) = genes.get("weight_decay"), self.weight_decay
        if isinstance(wd, bool) or not isinstance(wd, (int, float)) or not lo <= wd <= hi:
            raise InvalidGenome(f"weight_decay={wd!r} outside [{lo}, {hi}]", "genes")
        if genes.get("batch_size") not in self.batch_sizes:
            raise InvalidGenome(f"batch_size={genes.get('batch_size')!r} not in "
                                f"{self.batch_sizes}", "genes")

    def is_valid(self, genome: Genome) -> bool:
        try:
            analyze(genome, self)
            return True
        except InvalidGenome:
            return False

    # -- genomes -------------------------------------------------------------------------------
    def initial_genome(self, rng: np.random.Generator, input_shape: Shape,
                       num_classes: int, attempts: int = 50) -> Genome:
        """A starting genome, validated against this space; a random starting network (the
        ``mlp`` family's) is drawn again until it fits the budgets."""
        factory = self.initial or _FAMILY_INITIAL[self.family]
        for _ in range(attempts):
            genome = factory(self, rng, tuple(input_shape), num_classes)
            try:
                return self._validated(genome)
            except InvalidGenome as exc:
                last = exc
        raise InvalidGenome(f"space {self.name}: no valid starting genome in {attempts} draws "
                            f"(last: {last})")

    def sample(self, rng: np.random.Generator, input_shape: Shape, num_classes: int,
               attempts: int = 50) -> Genome:
        """A random genome of the space, resampled until it fits the budgets."""
        factory = self.sampler or _FAMILY_SAMPLER[self.family]
        for _ in range(attempts):
            genome = factory(self, rng, tuple(input_shape), num_classes)
            if self.is_valid(genome):
                return genome
        raise InvalidGenome(f"space {self.name} produced no valid genome in {attempts} samples")

    def _validated(self, genome: Genome) -> Genome:
        analyze(genome, self)
        return genome

    def to_dict(self) -> dict[str, Any]:
        """The space's data (callables named, not serialised), for storing with a run."""
        out = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            out[f.name] = getattr(value, "__qualname__", None) if callable(value) else value
        return json.loads(json.dumps(out))

    def fingerprint(self) -> str:
        text = json.dumps(self.to_dict(), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def replace(self, **changes: Any) -> SearchSpace:
        return dataclasses.replace(self, **changes)


# -- genome builders -----------------------------------------------------------------------------
def _genes(space: SearchSpace, **extra: Any) -> dict[str, Any]:
    return {**dict(space.initial_genes), **extra}


def trivial_genome(space: SearchSpace, rng: np.random.Generator, input_shape: Shape,
                   num_classes: int) -> Genome:
    """Real et al.'s start: no hidden layers, just input -> global pool -> linear classifier."""
    nodes = [Node.make(0, "input", shape=input_shape), Node.make(1, "output",
                                                                 num_classes=num_classes)]
    return Genome.make(nodes, [(0, 1)], _genes(space))


def random_conv_node(space: SearchSpace, rng: np.random.Generator, node_id: int,
                     one_d: bool) -> Node:
    """A random convolution within the space's ranges (height 1 for 1-D signals)."""
    lo, hi = space.channels
    channels = int(rng.integers(max(lo, 4), min(hi, 64) + 1))
    odd = [k for k in space.kernel_sizes if k % 2 == 1]
    small_strides = [s for s in space.strides if s <= 2]
    stride = int(rng.choice(small_strides)) if rng.random() < 0.3 else min(space.strides)
    kernel = int(rng.choice(odd))
    bn_relu = bool(rng.random() < 0.7)
    return Node.make(node_id, "conv", out_channels=channels, kernel_h=1 if one_d else kernel,
                     kernel_w=kernel, stride_h=1 if one_d else stride, stride_w=stride,
                     bn=bn_relu, relu=bn_relu)


def random_conv_genome(space: SearchSpace, rng: np.random.Generator, input_shape: Shape,
                       num_classes: int) -> Genome:
    """A random chain of convolutions (and identities) with random forward skip edges."""
    one_d = spatial_shape(input_shape)[1] == 1
    depth = int(rng.integers(1, min(space.max_layers, 6) + 1))
    nodes = [Node.make(0, "input", shape=input_shape)]
    for i in range(1, depth + 1):
        if "identity" in space.ops and rng.random() < 0.15:
            nodes.append(Node.make(i, "identity"))
        else:
            nodes.append(random_conv_node(space, rng, i, one_d))
    nodes.append(Node.make(depth + 1, "output", num_classes=num_classes))
    edges = [(i, i + 1) for i in range(depth + 1)]
    edges += [(a, b) for a in range(depth) for b in range(a + 2, depth + 2)
              if rng.random() < 0.15]
    return Genome.make(nodes, edges, _genes(space, **_random_genes(space, rng)))


def random_mlp_genome(space: SearchSpace, rng: np.random.Generator, input_shape: Shape,
                      num_classes: int) -> Genome:
    """The classic demo's random network: 1..4 layers of one width choice each, one activation."""
    layers = int(rng.integers(1, min(space.max_layers, 4) + 1))
    activation = str(rng.choice(space.activations))
    nodes = [Node.make(0, "input", shape=input_shape)]
    for i in range(1, layers + 1):
        nodes.append(Node.make(i, "dense", units=int(rng.choice(space.unit_choices)),
                               activation=activation))
    nodes.append(Node.make(layers + 1, "output", num_classes=num_classes))
    edges = [(i, i + 1) for i in range(layers + 1)]
    return Genome.make(nodes, edges, _genes(space, **_random_genes(space, rng)))


def _random_genes(space: SearchSpace, rng: np.random.Generator) -> dict[str, Any]:
    lo, hi = space.learning_rate
    return {"learning_rate": float(np.exp(rng.uniform(np.log(lo), np.log(hi)))),
            "optimizer": str(rng.choice(space.optimizers)),
            "batch_size": int(rng.choice(space.batch_sizes))}


_FAMILY_INITIAL: dict[str, GenomeFactory] = {"conv": trivial_genome, "mlp": random_mlp_genome}
_FAMILY_SAMPLER: dict[str, GenomeFactory] = {"conv": random_conv_genome,
                                             "mlp": random_mlp_genome}

# -- registry ------------------------------------------------------------------------------------
SPACES: dict[str, Callable[..., SearchSpace]] = {}


def register_space(name: str):
    """Decorator: register a factory ``(**overrides) -> SearchSpace`` under ``name``."""
    def wrap(factory: Callable[..., SearchSpace]) -> Callable[..., SearchSpace]:
        SPACES[name] = factory
        return factory
    return wrap


def get_space(name: str, **overrides: Any) -> SearchSpace:
    if name not in SPACES:
        raise InvalidGenome(f"unknown search space {name!r} (known: {', '.join(sorted(SPACES))})")
    return SPACES[name](**overrides)


LSE_MUTATION_WEIGHTS = (
    ("alter-learning-rate", 1.0), ("identity", 1.0), ("reset-weights", 0.5),
    ("insert-convolution", 2.0), ("remove-convolution", 1.0), ("alter-stride", 1.0),
    ("alter-number-of-channels", 1.0), ("filter-size", 1.0), ("insert-one-to-one", 0.5),
    ("add-skip", 1.0), ("remove-skip", 1.0),
)
MLP_MUTATION_WEIGHTS = (
    ("mlp-layers", 1.0), ("mlp-neurons", 1.0), ("mlp-activation", 1.0), ("mlp-optimizer", 1.0),
    ("alter-learning-rate", 0.5),
)


@register_space("lse-conv")
def lse_conv_space(**overrides: Any) -> SearchSpace:
    """Real et al. 2017's space; starts from trivial networks; SGD with momentum as in the paper."""
    base = SearchSpace(
        name="lse-conv", family="conv", ops=("conv", "identity"),
        initial_genes=(("learning_rate", 0.1), ("optimizer", "momentum"),
                       ("weight_decay", 0.0001), ("batch_size", 64)),
        mutation_weights=LSE_MUTATION_WEIGHTS)
    return dataclasses.replace(base, **overrides)


@register_space("mlp")
def mlp_space(**overrides: Any) -> SearchSpace:
    """The classic neuroevolution demo's space: layers, neurons, activation, optimizer."""
    base = SearchSpace(
        name="mlp", family="mlp", ops=("dense",), max_layers=4,
        activations=("relu", "elu", "tanh", "sigmoid"),
        optimizers=("rmsprop", "adam", "sgd", "adagrad", "adadelta", "adamax", "nadam"),
        learning_rate=(1e-4, 0.1),
        initial_genes=(("learning_rate", 0.001), ("optimizer", "adam"),
                       ("weight_decay", 0.0), ("batch_size", 64)),
        mutation_weights=MLP_MUTATION_WEIGHTS)
    return dataclasses.replace(base, **overrides)
