"""The built-in space codecs: ``mlp`` and ``conv`` (a bounded-depth form of ``lse-conv``).

``mlp`` — ``layers``, ``layer<i>.units`` for every possible layer (those past ``layers`` are
ignored), one ``activation``, ``optimizer`` and a ``learning_rate`` bucket: the genes of the
classic "evolve a network with a genetic algorithm" demo.

``conv`` — Zoph & Le (2017)'s decisions: a ``depth`` (1..``max_depth``), then for each layer
``i`` filter height (2-D inputs only), filter width, stride, channels, and — at the layer's
anchor point — one skip decision per earlier hidden layer ``j <= i - 2`` (the chain input
``i - 1`` is always there). Every conv has batch-norm and ReLU, as in the paper. Node ids: input
0, output ``d + 1``, and hidden layer ``k`` gets id ``d + 1 - k`` — ids descend with depth, so each
layer's chain input has the smallest id among its inputs and is the *main path* of the merge rule
(:mod:`evograph.genome.validate`): skip inputs are pooled, padded or truncated and summed into
it, never the other way round.

Both are registered (by family) when :mod:`evograph.genome.codec` is imported.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

import networkx as nx

from .codec import (
    Decision,
    NotEncodable,
    SpaceCodec,
    _gene_decisions,
    _index_of,
    _learning_rates,
    register_codec,
)
from .core import Genome, Node
from .ops import Shape, spatial_shape


@register_codec("mlp")
class MLPCodec(SpaceCodec):
    """The ``mlp`` space as decisions: ``layers``, ``layer<i>.units`` for every possible layer
    (those past ``layers`` are ignored), one ``activation``, ``optimizer`` and, unless
    ``learning_rates`` is empty, a ``learning_rate`` bucket. Genomes are chains with ids
    0 (input), 1..L (dense), L+1 (output)."""

    name = "mlp"

    def __init__(self, space: Any, input_shape: Shape, num_classes: int,
                 max_layers: int | None = None, learning_rates: Sequence[float] | None = None,
                 optimizers: bool = True):
        super().__init__(space, input_shape, num_classes)
        self.max_layers = min(int(max_layers or space.max_layers), space.max_layers)
        units = tuple(sorted(space.unit_choices))
        decisions = [Decision("layers", tuple(range(1, max(self.max_layers, 1) + 1)))]
        decisions += [Decision(f"layer{i}.units", units, layer=i)
                      for i in range(1, self.max_layers + 1)]
        decisions.append(Decision("activation", tuple(space.activations)))
        decisions += _gene_decisions(space, _learning_rates(space, learning_rates), optimizers)
        self._finish(decisions)

    def _shrinkable(self) -> list[list[int]]:
        return [[p for p, d in enumerate(self.decisions) if d.name.endswith(".units")]]

    def _build(self, idx: Sequence[int]) -> Genome:
        depth = self._depth(idx)
        chosen = {d.name: d.choices[i] for d, i in zip(self.decisions, idx)}
        nodes = [Node.make(0, "input", shape=self.input_shape)]
        nodes += [Node.make(i, "dense", units=int(chosen[f"layer{i}.units"]),
                            activation=chosen["activation"]) for i in range(1, depth + 1)]
        nodes.append(Node.make(depth + 1, "output", num_classes=self.num_classes))
        edges = [(i, i + 1) for i in range(depth + 1)]
        return Genome.make(nodes, edges, self._genes(idx))

    def encode(self, genome: Genome) -> tuple[int, ...]:
        """Decisions for a chain of dense layers with one activation (layers past its depth
        take choice 0). NotEncodable for any other form."""
        chain = _chain(genome, "dense")
        if not 1 <= len(chain) <= self.max_layers:
            raise NotEncodable(f"{len(chain)} dense layers, codec {self.name!r} takes 1.."
                               f"{self.max_layers}")
        if len({n.get("activation") for n in chain}) != 1:
            raise NotEncodable("the dense layers have different activations")
        values = {"layers": len(chain), "activation": chain[0].get("activation")}
        values.update({f"layer{i}.units": n.get("units") for i, n in enumerate(chain, 1)})
        genes = self._encode_genes(genome)
        return tuple(genes[d.name] if d.name in genes else
                     _index_of(d, values[d.name]) if d.name in values else 0
                     for d in self.decisions)


def _chain(genome: Genome, op: str) -> list[Node]:
    """The hidden nodes of a plain chain input -> ... -> output, all of ``op``."""
    order = genome.topological_order()
    if len(genome.edges) != len(order) - 1 or any(
            (a, b) not in genome.edges for a, b in itertools.pairwise(order)):
        raise NotEncodable("the genome is not a plain chain")
    hidden = [genome.node(i) for i in order[1:-1]]
    if any(n.op != op for n in hidden):
        raise NotEncodable(f"a hidden node is not {op!r}")
    return hidden


DEFAULT_CHANNELS = (8, 16, 24, 32, 48, 64)


@register_codec("conv")
class ConvCodec(SpaceCodec):
    """Params: ``max_depth`` (6, at most the space's ``max_layers``), ``channels``, ``kernels``,
    ``strides`` (choices, kept inside the space's ranges), ``skips`` (True), ``learning_rates``
    (none: the space's initial genes) and ``optimizers`` (False)."""

    name = "conv"

    def __init__(self, space: Any, input_shape: Shape, num_classes: int,
                 max_depth: int = 6, channels: Sequence[int] | None = None,
                 kernels: Sequence[int] | None = None, strides: Sequence[int] | None = None,
                 skips: bool = True, learning_rates: Sequence[float] = (),
                 optimizers: bool = False):
        super().__init__(space, input_shape, num_classes)
        self.one_d = spatial_shape(self.input_shape)[1] == 1
        self.skips = bool(skips)
        self.max_depth = max(1, min(int(max_depth), space.max_layers))
        lo, hi = space.channels
        self.channels = tuple(sorted({int(c) for c in channels or DEFAULT_CHANNELS
                                      if lo <= c <= hi})) or tuple(sorted({lo, hi}))
        self.kernels = tuple(sorted(k for k in kernels or space.kernel_sizes
                                    if k % 2 == 1 and k in space.kernel_sizes))
        self.strides = tuple(sorted(s for s in strides or space.strides if s in space.strides))
        decisions = [Decision("depth", tuple(range(1, self.max_depth + 1)))]
        for i in range(1, self.max_depth + 1):
            decisions += self._layer_decisions(i, skips)
        decisions += _gene_decisions(space, _learning_rates(space, learning_rates), optimizers)
        self._finish(decisions)

    def _layer_decisions(self, i: int, skips: bool) -> list[Decision]:
        """Filter height, width, stride, channels, then the anchor point's skip decisions."""
        out = [] if self.one_d else [Decision(f"layer{i}.kernel_h", self.kernels, layer=i)]
        out += [Decision(f"layer{i}.kernel_w", self.kernels, layer=i),
                Decision(f"layer{i}.stride", self.strides, layer=i),
                Decision(f"layer{i}.channels", self.channels, layer=i)]
        if skips:
            out += [Decision(f"layer{i}.skip{j}", (False, True), layer=i, skip_from=j)
                    for j in range(1, i - 1)]
        return out

    def _shrinkable(self) -> list[list[int]]:
        """Channels first, then filter sizes (depth last, in the base class)."""
        def where(*suffixes: str) -> list[int]:
            return [p for p, d in enumerate(self.decisions) if d.name.endswith(suffixes)]
        return [where(".channels"), where(".kernel_h", ".kernel_w")]

    @staticmethod
    def _ids(depth: int) -> list[int]:
        """Node id of each position 0..depth+1 (see the module docstring)."""
        return [0] + [depth + 1 - k for k in range(1, depth + 1)] + [depth + 1]

    def _build(self, idx: Sequence[int]) -> Genome:
        depth = self._depth(idx)
        chosen = {d.name: d.choices[i] for d, i in zip(self.decisions, idx)}
        ids = self._ids(depth)
        nodes = [Node.make(0, "input", shape=self.input_shape),
                 Node.make(ids[-1], "output", num_classes=self.num_classes)]
        edges = [(ids[k - 1], ids[k]) for k in range(1, depth + 2)]
        for k in range(1, depth + 1):
            kw, stride = chosen[f"layer{k}.kernel_w"], chosen[f"layer{k}.stride"]
            kh = 1 if self.one_d else chosen[f"layer{k}.kernel_h"]
            nodes.append(Node.make(ids[k], "conv", out_channels=chosen[f"layer{k}.channels"],
                                   kernel_h=kh, kernel_w=kw, stride_h=1 if self.one_d else stride,
                                   stride_w=stride, bn=True, relu=True))
            edges += [(ids[j], ids[k]) for j in range(1, k - 1) if chosen.get(f"layer{k}.skip{j}")]
        return Genome.make(nodes, edges, self._genes(idx))

    def encode(self, genome: Genome) -> tuple[int, ...]:
        """Decisions for a genome of this form (up to node ids): a chain of BN+ReLU convs with
        square strides, plus skips between hidden layers whose merges follow the chain."""
        path = nx.dag_longest_path(genome.graph)
        if len(path) != len(genome.nodes) or not 2 <= len(path) - 1 <= self.max_depth + 1:
            raise NotEncodable(f"not a chain of 1..{self.max_depth} hidden layers plus skips")
        pos = {node_id: k for k, node_id in enumerate(path)}
        values: dict[str, Any] = {"depth": len(path) - 2}
        for k, node_id in enumerate(path[1:-1], 1):
            values.update(self._layer_values(genome, genome.node(node_id), k, pos))
        genes = self._encode_genes(genome)
        return tuple(genes[d.name] if d.name in genes else
                     _index_of(d, values[d.name]) if d.name in values else 0
                     for d in self.decisions)

    def _layer_values(self, genome: Genome, node: Node, k: int,
                      pos: dict[int, int]) -> dict[str, Any]:
        p = node.p
        if node.op != "conv" or not (p["bn"] and p["relu"]):
            raise NotEncodable(f"node {node.id} is not a conv with batch-norm and ReLU")
        if (p["kernel_h"], p["stride_h"]) != ((1, 1) if self.one_d else (p["kernel_h"],
                                                                         p["stride_w"])):
            raise NotEncodable(f"node {node.id}: stride or filter height outside the codec")
        preds = genome.predecessors(node.id)
        chain = [q for q in preds if pos[q] == k - 1]
        if not chain or chain[0] != preds[0] or any(pos[q] < 1 for q in preds if q not in chain):
            raise NotEncodable(f"node {node.id}: its inputs are not a chain input plus skips "
                               "from earlier hidden layers merged into it")
        out = {f"layer{k}.kernel_w": p["kernel_w"], f"layer{k}.stride": p["stride_w"],
               f"layer{k}.channels": p["out_channels"]}
        if not self.one_d:
            out[f"layer{k}.kernel_h"] = p["kernel_h"]
        skips = {pos[q] for q in preds} - {k - 1}
        if skips - (set(range(1, k - 1)) if self.skips else set()):
            raise NotEncodable(f"node {node.id}: a skip the codec cannot express")
        out.update({f"layer{k}.skip{j}": j in skips for j in range(1, k - 1)})
        return out
