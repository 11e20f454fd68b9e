"""The compiler: ``build(genome) -> nn.Module`` from the op registry and a topological plan.

The module holds one submodule per node (``layers.n<id>``) and a precomputed plan: for each node
in topological order, the positions of its inputs in the list of computed values. ``forward`` runs
that plan with plain tensor code — no NetworkX and no string templates — so the same module runs
on CPU or CUDA and exports with ``torch.export``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..genome.cells import expand
from ..genome.core import Genome
from ..genome.ops import OPS, spatial_shape
from ..genome.validate import GenomeInfo, analyze
from .determinism import seeded_cpu_rng
from .layers import LAYERS, Concat, Merge


@dataclass(frozen=True)
class PlanStep:
    key: str                    # submodule name, "n<id>"
    inputs: tuple[int, ...]     # positions in the list of computed values
    merged: bool                # several inputs: sum (or concatenate) them through merges[key]


class GenomeModule(nn.Module):
    """A network compiled from a genome. ``input_shape`` is the genome's per-sample shape."""

    def __init__(self, genome: Genome, info: GenomeInfo):
        super().__init__()
        self.genome_hash = genome.hash
        self.input_shape = tuple(genome.input_node.get("shape"))
        self.work_shape = spatial_shape(self.input_shape)   # (C, L) is run as (C, 1, L)
        self.layers = nn.ModuleDict()
        self.merges = nn.ModuleDict()
        position = {genome.input_node.id: 0}
        plan = []
        for node_id in info.order[1:]:
            node = genome.node(node_id)
            preds = genome.predecessors(node_id)
            key = f"n{node_id}"
            self.layers[key] = LAYERS[node.op](node, info.in_shapes[node_id],
                                               info.out_shapes[node_id])
            if len(preds) > 1:
                self.merges[key] = (Concat() if OPS[node.op].concat else
                                    Merge([info.out_shapes[p] for p in preds],
                                          info.in_shapes[node_id]))
            plan.append(PlanStep(key, tuple(position[p] for p in preds), len(preds) > 1))
            position[node_id] = len(position)
        self.plan = tuple(plan)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # (N, *input_shape) -> (N, *work_shape) -> ... -> (N, num_classes)
        values = [x.reshape(x.shape[0], *self.work_shape)]
        for step in self.plan:
            if step.merged:
                h = self.merges[step.key](*[values[i] for i in step.inputs])
            else:
                h = values[step.inputs[0]]
            values.append(self.layers[step.key](h))
        return values[-1]


def build(genome: Genome, *, seed: int | None = 0, device: str | torch.device | None = None,
          info: GenomeInfo | None = None) -> GenomeModule:
    """Validate and compile ``genome``; initialise its weights from ``seed`` without touching
    the global torch RNG, then move it to ``device`` (CPU when None). A cell genome compiles
    to the module of its expanded network (tensors named by the network's node ids)."""
    info = info or analyze(genome)
    network = expand(genome)       # a cell genome is built as its network (genome.cells)
    if network is not genome:
        info = analyze(network)
    with seeded_cpu_rng(seed):
        module = GenomeModule(network, info)
    module.genome_hash = genome.hash
    return module.to(device) if device is not None else module


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
