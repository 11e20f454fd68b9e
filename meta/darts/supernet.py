"""The DARTS supernet over the NAS-Bench-201 cell (Liu et al. 2019, *DARTS: Differentiable
Architecture Search*, §2.1-2.2; the NAS-Bench-201 cell of Dong & Yang 2020).

Every edge of the cell is a *mixed op*: the softmax-weighted sum of every op of the space,
``o(x) = sum_k softmax(alpha_e)_k * op_k(x)``, with ``none`` contributing zero (it still takes
its share of the softmax, as in the paper). The architecture parameters ``alpha`` (one row of
logits per edge, shared by every copy of the cell, as DARTS shares them) are a parameter of their
own, apart from the weights, so the bilevel optimisation (:mod:`.bilevel`) trains them on the
validation split and the weights on the training split.

The supernet *is* the compiled module of the space's skeleton (:func:`evograph.compile.build`
of the cell genome with every edge a 3x3 conv), with each edge node's layer replaced by a
:class:`MixedOp` whose candidate layers are the very layers a genome with that op compiles to
(``relu_conv_bn``, ``identity``, ``avg_pool``). So the stem, reductions and head keep the names a
derived genome's module has, and each candidate of edge node ``n`` is what node ``n`` of a
derived genome holds when it chose that op: :func:`inherited_state` hands a derived genome the
supernet's weights by name.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from ...compile.builder import GenomeModule, build
from ...compile.determinism import seeded_cpu_rng
from ...compile.layers import LAYERS
from ...errors import ConfigError
from ...genome.cells.nb201 import EDGE_IDS, EDGES, cell_ops, edge_node, nb201_genome
from ...genome.cells.ops import NB201_OPS
from ...genome.cells.skeleton import CELL_ID_BASE, EXTRA_ID_BASE, expand
from ...genome.core import Genome
from ...genome.ops import spatial_shape
from ...genome.space import SearchSpace
from ...genome.validate import analyze

NONE = "none"
EDGE_OF_TEMPLATE = {node: k for k, node in enumerate(EDGE_IDS.values())}  # template id -> edge


class MixedOp(nn.Module):
    """One edge of one cell copy: the candidates' outputs summed with the edge's softmax
    weights (``weights``, set by the supernet before each forward); ``none`` adds nothing."""

    def __init__(self, edge: int, ops: tuple[str, ...], candidates: dict[str, nn.Module]):
        super().__init__()
        self.edge, self.ops = edge, ops
        self.candidates = nn.ModuleDict(candidates)       # every op of the space but none
        self.weights: torch.Tensor | None = None           # (len(ops),) for this forward

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x: (N, C, H, W) -> (N, C, H, W): sum_k w_k * op_k(x)
        out = torch.zeros_like(x)
        for k, op in enumerate(self.ops):
            if op != NONE:
                out = out + self.weights[k] * self.candidates[op](x)
        return out


class Nb201Supernet(nn.Module):
    """The supernet of an ``nb201`` space (its ops, channels, cells and stages) for inputs of
    ``input_shape`` and ``num_classes`` classes; ``alpha``: (6 edges, ops) logits, zero at the
    start (a uniform mixture, as in the paper)."""

    def __init__(self, space: SearchSpace, input_shape: tuple[int, ...], num_classes: int,
                 seed: int = 0):
        super().__init__()
        self.ops = tuple(op for op in space.ops if op in NB201_OPS)
        if len(self.ops) < 2:
            raise ConfigError(f"space {space.name}: DARTS needs at least 2 ops per edge "
                              f"(ops: {', '.join(self.ops) or 'none'})")
        self.space = space
        self.template = nb201_genome(["nor_conv_3x3"] * len(EDGES), input_shape, num_classes,
                                     space.cell_channels, space.cells, space.stages,
                                     dict(space.initial_genes))
        self.net: GenomeModule = build(self.template, seed=seed)
        network, one_d = expand(self.template), spatial_shape(input_shape)[1] == 1
        info = analyze(network)
        self.mixed: list[MixedOp] = []
        for node_id in info.order:
            edge = edge_of(node_id)
            if edge is None:
                continue
            channels = info.out_shapes[node_id][0]
            candidates = {}
            for k, op in enumerate(self.ops):
                if op == NONE:
                    continue
                node = edge_node(node_id, op, channels, one_d)
                with seeded_cpu_rng(seed * 1_000_003 + node_id * 31 + k):  # private stream
                    candidates[op] = LAYERS[node.op](node, info.in_shapes[node_id],
                                                     info.out_shapes[node_id])
            mixed = MixedOp(edge, self.ops, candidates)
            self.net.layers[f"n{node_id}"] = mixed
            self.mixed.append(mixed)
        self.alpha = nn.Parameter(torch.zeros(len(EDGES), len(self.ops)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x: (N, *input_shape) -> logits (N, classes); every edge mixes by softmax(alpha[edge])
        weights = F.softmax(self.alpha, dim=-1)            # (6, ops)
        for mixed in self.mixed:
            mixed.weights = weights[mixed.edge]
        return self.net(x)

    def weight_parameters(self) -> list[nn.Parameter]:
        """The network's weights (trained on the training split)."""
        return list(self.net.parameters())

    def derived_ops(self) -> list[str]:
        """NAS-Bench-201's discretisation: the strongest op of each edge, ``none`` included
        (Dong & Yang 2020, §4)."""
        return [self.ops[int(i)] for i in self.alpha.detach().argmax(dim=-1)]

    def derived_genome(self) -> Genome:
        """The genome of the derived cell: a real genome of the space, validated."""
        genome = nb201_genome(self.derived_ops(), tuple(self.template.input_node.get("shape")),
                              self.template.output_node.get("num_classes"),
                              self.space.cell_channels, self.space.cells, self.space.stages,
                              dict(self.space.initial_genes))
        analyze(genome, self.space)       # InvalidGenome, naming the node, if it is not
        return genome


def edge_of(node_id: int) -> int | None:
    """The edge (index into ``EDGES``) a network node of an nb201 cell copy sits on, or None."""
    if not CELL_ID_BASE <= node_id < EXTRA_ID_BASE:
        return None
    return EDGE_OF_TEMPLATE.get(node_id % CELL_ID_BASE)


def inherited_state(supernet: Nb201Supernet, genome: Genome) -> dict[str, torch.Tensor]:
    """The state of ``genome``'s module (built as :func:`evograph.compile.build` builds it)
    taken from the supernet: each edge node's tensors from the candidate of the op it chose,
    every other tensor by its name. Parameter-free ops take nothing."""
    source, chosen = supernet.net.state_dict(), cell_ops(genome)
    state = {}
    for name in build(genome, seed=0).state_dict():
        layer, _, rest = name.partition(".")[2].partition(".")   # layers.n<id>.<rest>
        node_id = int(layer[1:]) if name.startswith("layers.n") else None
        if node_id is not None and edge_of(node_id) is not None:
            op = chosen[EDGES[edge_of(node_id)]]
            state[name] = source[f"layers.{layer}.candidates.{op}.{rest}"].clone()
        else:
            state[name] = source[name].clone()
    return state
