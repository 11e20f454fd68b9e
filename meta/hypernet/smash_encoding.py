"""The encoding of a genome's graph that the one-shot hypernetwork (SMASH) reads.

SMASH (Brock et al. 2018, §3.1) feeds its hypernetwork a tensor that describes the architecture
— which layers exist, their widths and how they connect — and reads the weights of every layer
out of the hypernetwork's output. Our genomes are arbitrary DAGs, so the description is per node:

* the op (one-hot over input, conv, identity, dense, output);
* its parameters: kernel height/width, strides, batch-norm and ReLU flags, the activation;
* its widths: input and output channels/features (log scale);
* where it sits: how far the spatial resolution has been reduced, its depth (longest path from
  the input), its position in topological order, in- and out-degree and whether it merges;

plus the adjacency matrix (row ``i`` marks the inputs of node ``i``), over which the hypernetwork
passes messages in both directions, so each node's code also describes its neighbourhood.
Everything is plain arithmetic on the validated :class:`~evograph.genome.validate.GenomeInfo`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from ...genome.core import Genome
from ...genome.ops import ACTIVATIONS, is_spatial
from ...genome.validate import GenomeInfo, analyze

NODE_OPS = ("input", "conv", "identity", "dense", "output")
FEATURES = len(NODE_OPS) + 6 + len(ACTIVATIONS) + 2 + 3 + 5   # see node_features


def _log_width(width: int) -> float:
    return math.log2(width + 1) / 10.0


def _depths(genome: Genome, order: tuple[int, ...]) -> dict[int, int]:
    """Longest path (in edges) from the input to every node."""
    depth: dict[int, int] = {}
    for node_id in order:
        preds = genome.predecessors(node_id)
        depth[node_id] = 1 + max(depth[p] for p in preds) if preds else 0
    return depth


def _node_row(genome: Genome, info: GenomeInfo, node_id: int, base: tuple[int, int],
              depth: int, max_depth: int, position: float) -> list[float]:
    node, p = genome.node(node_id), genome.node(node_id).p
    row = [float(node.op == op) for op in NODE_OPS]
    if node.op == "conv":
        row += [(p["kernel_h"] - 1) / 6, (p["kernel_w"] - 1) / 6, math.log2(p["stride_h"]) / 2,
                math.log2(p["stride_w"]) / 2, float(p["bn"]), float(p["relu"])]
    else:
        row += [0.0] * 6
    row += [float(node.get("activation") == a) for a in ACTIVATIONS]
    shape_in, shape_out = info.in_shapes[node_id], info.out_shapes[node_id]
    row += [_log_width(shape_in[0]), _log_width(shape_out[0])]
    if is_spatial(shape_in):   # resolution lost so far (log2 of the reduction)
        row += [math.log2(base[0] / shape_in[1]) / 4, math.log2(base[1] / shape_in[2]) / 4, 1.0]
    else:
        row += [0.0, 0.0, 0.0]
    n_in, n_out = len(genome.predecessors(node_id)), len(genome.successors(node_id))
    row += [depth / max(max_depth, 1), position, n_in / 4, n_out / 4, float(n_in > 1)]
    return row


@dataclass(frozen=True)
class GraphEncoding:
    """A genome as the hypernetwork reads it, nodes in topological order."""

    features: torch.Tensor          # (N, FEATURES)
    adjacency: torch.Tensor         # (N, N); [i, j] = 1 when node j feeds node i
    order: tuple[int, ...]          # node ids
    depth: torch.Tensor             # (N,) longest path from the input, in edges (int64)


def encode(genome: Genome, info: GenomeInfo | None = None) -> GraphEncoding:
    """Encode ``genome`` (validated on the way when ``info`` is not given)."""
    info = info or analyze(genome)
    order = info.order
    input_shape = info.out_shapes[order[0]]
    base = (input_shape[1], input_shape[2]) if is_spatial(input_shape) else (1, 1)
    depth = _depths(genome, order)
    max_depth = max(depth.values())
    rows = [_node_row(genome, info, node_id, base, depth[node_id], max_depth,
                      k / max(len(order) - 1, 1)) for k, node_id in enumerate(order)]
    index = {node_id: k for k, node_id in enumerate(order)}
    adjacency = np.zeros((len(order), len(order)), dtype=np.float32)
    for a, b in genome.edges:
        adjacency[index[b], index[a]] = 1.0
    return GraphEncoding(torch.tensor(rows, dtype=torch.float32), torch.from_numpy(adjacency),
                         tuple(order), torch.tensor([depth[n] for n in order]))
