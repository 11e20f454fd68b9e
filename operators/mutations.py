"""The mutations of *Large-Scale Evolution of Image Classifiers* (Real et al. 2017, §3 and
Table 1 of its supplement), plus the ``mlp`` space's mutations of the classic GA demo.

Each is a pure function ``(genome, rng, space) -> (child, edit)``; it raises
:class:`NotApplicable` when the genome offers nothing to act on. Validation of the child against
the space happens in :func:`evograph.operators.base.mutate`, which resamples on failure.
"""

from __future__ import annotations

import numpy as np

from ..genome.core import Genome, Node
from ..genome.space import SearchSpace
from ..genome.validate import analyze
from .base import Edit, NotApplicable, register_mutation

CONV = ("conv",)
ANY = ("conv", "mlp", "cell")     # the gene and identity mutations apply to every family
MLP = ("mlp",)


def _pick(rng: np.random.Generator, items: list):
    if not items:
        raise NotApplicable("nothing to act on")
    return items[int(rng.integers(len(items)))]


def _is_one_d(genome: Genome) -> bool:
    return len(genome.input_node.get("shape")) == 2


def _spatial_edges(genome: Genome) -> list[tuple[int, int]]:
    """Edges whose source emits a spatial map (where a conv or identity may be inserted)."""
    shapes = analyze(genome).out_shapes
    return [(a, b) for a, b in genome.edges if len(shapes[a]) == 3]


# -- genes -----------------------------------------------------------------------------------------
@register_mutation("alter-learning-rate", ANY)
def alter_learning_rate(genome: Genome, rng: np.random.Generator, space: SearchSpace):
    """Multiply the learning rate by 2**u, u ~ U(-1, 1) (half to twice), clipped to the space."""
    lo, hi = space.learning_rate
    old = float(genome.gene["learning_rate"])
    new = float(np.clip(old * 2.0 ** rng.uniform(-1.0, 1.0), lo, hi))
    if new == old:
        raise NotApplicable("learning rate pinned at the space's bound")
    return genome.with_genes(learning_rate=new), Edit("alter-learning-rate",
                                                      {"from": old, "to": new})


@register_mutation("identity", ANY)
def identity(genome: Genome, rng: np.random.Generator, space: SearchSpace):
    """Keep the genome as it is: the child just trains longer (inherits every weight)."""
    return genome, Edit("identity")


@register_mutation("reset-weights", ANY)
def reset_weights(genome: Genome, rng: np.random.Generator, space: SearchSpace):
    """Same genome, but the child starts from fresh weights (inherits nothing)."""
    return genome, Edit("reset-weights", inherit=False)


# -- convolutions ------------------------------------------------------------------------------------
def _insert_between(genome: Genome, edge: tuple[int, int], node: Node) -> Genome:
    a, b = edge
    return genome.with_node(node).with_edges(add=[(a, node.id), (node.id, b)], remove=[edge])


@register_mutation("insert-convolution", CONV)
def insert_convolution(genome: Genome, rng: np.random.Generator, space: SearchSpace):
    """Insert a 3x3 convolution on a random edge of the backbone: stride 1 or 2 at random,
    as many channels as its input, batch-norm + ReLU at random."""
    edge = _pick(rng, _spatial_edges(genome))
    channels = analyze(genome).out_shapes[edge[0]][0]
    lo, hi = space.channels
    channels = int(np.clip(channels, lo, hi))
    one_d = _is_one_d(genome)
    stride = int(rng.choice([s for s in (1, 2) if s in space.strides]))
    bn_relu = bool(rng.random() < 0.5)
    node = Node.make(genome.next_id(), "conv", out_channels=channels, kernel_h=1 if one_d else 3,
                     kernel_w=3, stride_h=1 if one_d else stride, stride_w=stride, bn=bn_relu,
                     relu=bn_relu)
    child = _insert_between(genome, edge, node)
    return child, Edit("insert-convolution", {"after": edge[0], "before": edge[1],
                                              "node": node.id, "stride": stride,
                                              "bn_relu": bn_relu}, changed=(node.id,))


def _bypass(genome: Genome, node_id: int) -> Genome:
    """Remove a node, connecting each of its inputs to each of its outputs."""
    preds, succs = genome.predecessors(node_id), genome.successors(node_id)
    return genome.without_node(node_id).with_edges(add=[(p, s) for p in preds for s in succs])


@register_mutation("remove-convolution", CONV)
def remove_convolution(genome: Genome, rng: np.random.Generator, space: SearchSpace):
    """Remove a random convolution; its inputs feed its outputs directly."""
    node = _pick(rng, genome.nodes_with_op("conv"))
    succs = tuple(genome.successors(node.id))
    return _bypass(genome, node.id), Edit("remove-convolution", {"node": node.id},
                                          changed=succs)


@register_mutation("alter-stride", CONV)
def alter_stride(genome: Genome, rng: np.random.Generator, space: SearchSpace):
    """Set a random convolution's stride to another power of two (width only for 1-D)."""
    node = _pick(rng, genome.nodes_with_op("conv"))
    choices = [s for s in space.strides if s != node.get("stride_w") and s & (s - 1) == 0]
    stride = int(_pick(rng, choices))
    changes = {"stride_w": stride} if _is_one_d(genome) else {"stride_h": stride,
                                                               "stride_w": stride}
    return genome.with_node(node.replace(**changes)), Edit(
        "alter-stride", {"node": node.id, "from": node.get("stride_w"), "to": stride})


@register_mutation("alter-number-of-channels", CONV)
def alter_number_of_channels(genome: Genome, rng: np.random.Generator, space: SearchSpace):
    """Scale a random convolution's channels by 2**u, u ~ U(-1, 1), within the space."""
    node = _pick(rng, genome.nodes_with_op("conv"))
    old = node.get("out_channels")
    lo, hi = space.channels
    new = int(np.clip(round(old * 2.0 ** rng.uniform(-1.0, 1.0)), lo, hi))
    if new == old:  # small counts round back to themselves: step by one instead
        new = int(np.clip(old + (1 if rng.random() < 0.5 else -1), lo, hi))
    if new == old:
        raise NotApplicable("channel count pinned by the space's range")
    changed = (node.id, *genome.successors(node.id))
    return genome.with_node(node.replace(out_channels=new)), Edit(
        "alter-number-of-channels", {"node": node.id, "from": old, "to": new}, changed=changed)


@register_mutation("filter-size", CONV)
def filter_size(genome: Genome, rng: np.random.Generator, space: SearchSpace):
    """Change a random convolution's filter height or width (at random) to another odd size."""
    node = _pick(rng, genome.nodes_with_op("conv"))
    axis = "kernel_w" if _is_one_d(genome) or rng.random() < 0.5 else "kernel_h"
    choices = [k for k in space.kernel_sizes if k % 2 == 1 and k != node.get(axis)]
    size = int(_pick(rng, choices))
    return genome.with_node(node.replace(**{axis: size})), Edit(
        "filter-size", {"node": node.id, "axis": axis, "from": node.get(axis), "to": size},
        changed=(node.id,))


@register_mutation("insert-one-to-one", CONV)
def insert_one_to_one(genome: Genome, rng: np.random.Generator, space: SearchSpace):
    """Insert an identity (one-to-one) node on a random edge, a place for later skips."""
    if "identity" not in space.ops:
        raise NotApplicable("space has no identity op")
    edge = _pick(rng, _spatial_edges(genome))
    node = Node.make(genome.next_id(), "identity")
    return _insert_between(genome, edge, node), Edit(
        "insert-one-to-one", {"after": edge[0], "before": edge[1], "node": node.id},
        changed=(node.id,))


@register_mutation("add-skip", CONV)
def add_skip(genome: Genome, rng: np.random.Generator, space: SearchSpace):
    """Add an identity connection from a random earlier node to a random later one."""
    order = genome.topological_order()
    shapes = analyze(genome).out_shapes
    existing = set(genome.edges)
    candidates = [(a, b) for i, a in enumerate(order) for b in order[i + 2:]
                  if (a, b) not in existing and len(shapes[a]) == 3]
    a, b = _pick(rng, candidates)
    return genome.with_edges(add=[(a, b)]), Edit("add-skip", {"source": a, "target": b},
                                                  changed=(b,))


@register_mutation("remove-skip", CONV)
def remove_skip(genome: Genome, rng: np.random.Generator, space: SearchSpace):
    """Remove a random redundant connection (its target keeps another input and its source
    another output, so every node stays on a path from input to output)."""
    candidates = [(a, b) for a, b in genome.edges
                  if len(genome.predecessors(b)) > 1 and len(genome.successors(a)) > 1]
    a, b = _pick(rng, candidates)
    return genome.with_edges(remove=[(a, b)]), Edit("remove-skip", {"source": a, "target": b},
                                                     changed=(b,))


# -- the mlp space (the classic GA demo: layers, neurons, activation, optimizer) ------------------
def _dense_chain(genome: Genome) -> list[Node]:
    return [genome.node(i) for i in genome.topological_order() if genome.node(i).op == "dense"]


@register_mutation("mlp-layers", MLP)
def mlp_layers(genome: Genome, rng: np.random.Generator, space: SearchSpace):
    """Add a dense layer at a random position of the chain, or remove a random one."""
    layers = _dense_chain(genome)
    can_add = len(layers) < space.max_layers
    if layers and (not can_add or rng.random() < 0.5) and len(layers) > 1:
        node = _pick(rng, layers)
        return _bypass(genome, node.id), Edit("mlp-layers", {"removed": node.id},
                                              changed=tuple(genome.successors(node.id)))
    if not can_add:
        raise NotApplicable("already at max_layers")
    edge = _pick(rng, list(genome.edges))
    activation = layers[0].get("activation") if layers else str(rng.choice(space.activations))
    node = Node.make(genome.next_id(), "dense", units=int(rng.choice(space.unit_choices)),
                     activation=activation)
    return _insert_between(genome, edge, node), Edit(
        "mlp-layers", {"added": node.id, "after": edge[0]}, changed=(node.id, edge[1]))


@register_mutation("mlp-neurons", MLP)
def mlp_neurons(genome: Genome, rng: np.random.Generator, space: SearchSpace):
    """Give a random dense layer another width from the space's choices."""
    node = _pick(rng, _dense_chain(genome))
    units = int(_pick(rng, [u for u in space.unit_choices if u != node.get("units")]))
    changed = (node.id, *genome.successors(node.id))
    return genome.with_node(node.replace(units=units)), Edit(
        "mlp-neurons", {"node": node.id, "from": node.get("units"), "to": units},
        changed=changed)


@register_mutation("mlp-activation", MLP)
def mlp_activation(genome: Genome, rng: np.random.Generator, space: SearchSpace):
    """Switch the network's activation (all dense layers, as in the classic demo)."""
    layers = _dense_chain(genome)
    current = layers[0].get("activation") if layers else None
    new = str(_pick(rng, [a for a in space.activations if a != current]))
    child = genome
    for node in layers:
        child = child.with_node(node.replace(activation=new))
    return child, Edit("mlp-activation", {"from": current, "to": new})


@register_mutation("mlp-optimizer", MLP)
def mlp_optimizer(genome: Genome, rng: np.random.Generator, space: SearchSpace):
    """Switch the optimizer gene to another of the space's optimizers."""
    current = genome.gene["optimizer"]
    new = str(_pick(rng, [o for o in space.optimizers if o != current]))
    return genome.with_genes(optimizer=new), Edit("mlp-optimizer", {"from": current, "to": new})
