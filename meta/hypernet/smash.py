"""SMASH: one hypernetwork that generates the weights of *any* genome of a search space.

*SMASH: One-Shot Model Architecture Search through HyperNetworks* (Brock, Lim, Ritchie & Weston,
2018) trains a single hypernetwork ``H`` on randomly sampled architectures: each step samples an
architecture ``c``, generates its weights ``W = H(c)``, and backpropagates the training loss of the
network ``(c, W)`` into ``H``. Afterwards an architecture is *scored without training*: generate
its weights and measure validation accuracy. Their correlation with the accuracy of the same
architectures trained normally is what makes the ranking useful.

Our design (the paper's architecture encoding assumes a fixed memory-bank layout; our genomes are
arbitrary DAGs, so the encoding is a graph):

1. **Graph encoding** (:mod:`~evograph.meta.hypernet.smash_encoding`): one feature row per node (op,
   kernel, stride, flags, widths, resolution, depth, degree) and the adjacency matrix.
2. **Node codes**: an MLP embeds each row; ``rounds`` of message passing add the mean code of
   each node's inputs and of its consumers (residual updates); the mean over all nodes is
   appended, so every code also knows the whole network.
3. **Slices**: every generated weight is cut into ``block x block``-channel slices exactly as in
   the static hypernetwork (:mod:`~evograph.meta.hypernet.core`). Slice ``(a, b)`` of node ``n``
   gets ``z = LayerNorm(MLP([E_depth[depth_n], E_out[a], E_in[b]]) + MLP'([code_n, E_out[a],
   E_in[b]]))``: learned embeddings of the node's depth and the slice's output and input position
   (so channel ``i`` means the same feature across architectures — SMASH's weight sharing by
   slicing), plus a part conditioned on the node code whose last layer starts at zero, so
   training starts as plain weight sharing and learns how the graph should change the weights.
   Ha et al.'s linear generator turns ``z`` into the slice. Kernels take the centred ``kh x kw``
   window of the generated ``K x K`` taps; linear layers the centre tap.
4. **Scale**: every output unit is weight-normalised (Salimans & Kingma 2016) to RMS
   ``1/sqrt(fan_in)`` times a generated gain ``exp(g)``; gains and biases come from
   ``[code_n, E_out[a]]`` by linear heads. This keeps the scale a layer needs with and without
   batch norm from pulling the shared generator in opposite directions (on digits, training
   without it sat longer near uniform predictions).
5. Everything conv/dense/output is generated; batch-norm affines stay at (1, 0) and batch norm
   uses batch statistics when scoring (the generated weights have no running statistics).

Slice positions beyond the embedding tables (a genome wider than the space the hypernetwork was
sized for) reuse the last embedding, so generation never fails on an unexpected width.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from dataclasses import dataclass, field

import torch
from torch import nn

from ...compile.builder import GenomeModule
from ...genome.core import Genome
from ...genome.space import SearchSpace, get_space
from ...genome.validate import GenomeInfo
from .core import SliceGenerator, Slot, assemble, grid, weight_slots
from .smash_encoding import FEATURES, encode

FORMAT, VERSION = "evograph-smash", 1


@dataclass(frozen=True)
class SmashConfig:
    """Everything that defines a SMASH hypernetwork and its training (stored as JSON with it)."""

    space: str = "lse-conv"
    space_overrides: dict = field(default_factory=dict)
    input_shape: tuple[int, ...] = (1, 8, 8)
    num_classes: int = 10
    block: int = 16            # channels per generated slice
    embed: int = 64            # node-code width
    z_dim: int = 64            # slice embedding width
    hidden: int = 64           # the slice generator's hidden width
    rounds: int = 2            # message-passing rounds over the genome graph
    steps: int = 2000          # training steps (one sampled genome each)
    batch: int = 64
    lr: float = 2e-3
    mutations: int = 3         # up to this many mutations applied to each sampled genome
    initial_fraction: float = 0.25   # share of training genomes grown from the initial genome
    seed: int = 0

    def get_space(self) -> SearchSpace:
        overrides = {k: tuple(v) if isinstance(v, list) else v
                     for k, v in self.space_overrides.items()}
        return get_space(self.space, **overrides)

    def to_dict(self) -> dict:
        out = dataclasses.asdict(self)
        out["input_shape"] = list(self.input_shape)
        return out

    @staticmethod
    def from_dict(data: dict) -> SmashConfig:
        known = {f.name for f in dataclasses.fields(SmashConfig)}
        values = {k: v for k, v in data.items() if k in known}
        values["input_shape"] = tuple(values.get("input_shape", (1, 8, 8)))
        return SmashConfig(**values)

    def tables(self) -> tuple[int, tuple[int, int]]:
        """(slice-position table size, generated kernel extent) for this space and input."""
        space = self.get_space()
        flat = math.prod(self.input_shape)
        widest = max(space.channels[1], max(space.unit_choices), self.num_classes,
                     self.input_shape[0], flat if space.family == "mlp" else 1)
        if space.family == "mlp":
            return math.ceil(widest / self.block), (1, 1)
        k = max(space.kernel_sizes)
        one_d = len(self.input_shape) == 2
        return math.ceil(widest / self.block), (1 if one_d else k, k)


def _mlp(sizes: list[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for a, b in itertools.pairwise(sizes):
        layers += [nn.Linear(a, b), nn.ReLU()]
    return nn.Sequential(*layers[:-1])


class SmashHypernet(nn.Module):
    """Genome (graph) -> ``{parameter name: tensor}`` for the GenomeModule compiled from it."""

    def __init__(self, config: SmashConfig):
        super().__init__()
        self.config = config
        e = config.embed
        self.max_blocks, (kh, kw) = config.tables()
        self.embed_nodes = _mlp([FEATURES, e, e])
        self.rounds = nn.ModuleList(_mlp([3 * e, e, e]) for _ in range(config.rounds))
        self.out_position = nn.Embedding(self.max_blocks, e)
        self.in_position = nn.Embedding(self.max_blocks, e)
        self.depth_position = nn.Embedding(config.get_space().max_layers + 2, e)
        self.shared_z = _mlp([3 * e, e, config.z_dim])
        self.code_z = _mlp([4 * e, e, config.z_dim])
        nn.init.zeros_(self.code_z[-1].weight)       # start as plain weight sharing (see doc)
        # unit-variance slice embeddings give unit-variance slices (see SliceGenerator)
        self.norm_z = nn.LayerNorm(config.z_dim, elementwise_affine=False)
        self.generator = SliceGenerator(config.z_dim, config.hidden, config.block, kh, kw)
        self.bias_head = nn.Linear(3 * e, config.block)
        self.gain_head = nn.Linear(3 * e, config.block)
        for head in (self.bias_head, self.gain_head):
            nn.init.normal_(head.weight, std=0.01)
            nn.init.zeros_(head.bias)

    def node_codes(self, features: torch.Tensor, adjacency: torch.Tensor) -> torch.Tensor:
        """(N, FEATURES), (N, N) -> (N, 2 * embed): message passing both ways, plus the mean."""
        h = self.embed_nodes(features)                                  # (N, E)
        fan_in = adjacency.sum(1, keepdim=True).clamp(min=1)
        fan_out = adjacency.sum(0).unsqueeze(1).clamp(min=1)
        for update in self.rounds:
            inputs, consumers = adjacency @ h / fan_in, adjacency.T @ h / fan_out
            h = h + update(torch.cat([h, inputs, consumers], dim=1))
        return torch.cat([h, h.mean(0, keepdim=True).expand_as(h)], dim=1)

    def forward(self, genome: Genome, module: GenomeModule,
                info: GenomeInfo | None = None) -> dict[str, torch.Tensor]:
        device = self.generator.w_in.device
        graph = encode(genome, info)
        codes = self.node_codes(graph.features.to(device), graph.adjacency.to(device))
        depth = graph.depth.to(device).clamp(max=self.depth_position.num_embeddings - 1)
        row = {node_id: k for k, node_id in enumerate(graph.order)}
        slots = weight_slots(module, genome)
        out = self._weights(slots, codes, self.depth_position(depth), row, device)
        out.update(self._biases(slots, codes, row, device))
        return out

    def _positions(self, count: int, device: torch.device) -> torch.Tensor:
        return torch.arange(count, device=device).clamp(max=self.max_blocks - 1)

    def _weights(self, slots: list[Slot], codes: torch.Tensor, depths: torch.Tensor,
                 row: dict[int, int], device: torch.device) -> dict[str, torch.Tensor]:
        grids = [grid(s, self.config.block) for s in slots]
        nodes, outs, ins = [], [], []
        for slot, (rows, cols) in zip(slots, grids):
            nodes.append(torch.full((rows * cols,), row[slot.node_id], device=device))
            outs.append(self._positions(rows, device).repeat_interleave(cols))
            ins.append(self._positions(cols, device).repeat(rows))
        if not slots:
            return {}
        nodes_t, outs_t, ins_t = torch.cat(nodes), torch.cat(outs), torch.cat(ins)
        where = torch.cat([self.out_position(outs_t), self.in_position(ins_t)], dim=1)
        z = self.norm_z(self.shared_z(torch.cat([depths[nodes_t], where], dim=1))
                        + self.code_z(torch.cat([codes[nodes_t], where], dim=1)))  # (slices, z)
        slices = self.generator(z)                                      # (slices, f, f, K, K)
        out, start = {}, 0
        for slot, (rows, cols) in zip(slots, grids):
            weight = assemble(slices[start:start + rows * cols], slot, rows, cols)
            out[slot.weight] = self._normalized(weight, slot, codes[row[slot.node_id]], device)
            start += rows * cols
        return out

    def _normalized(self, weight: torch.Tensor, slot: Slot, code: torch.Tensor,
                    device: torch.device) -> torch.Tensor:
        """Weight normalisation (Salimans & Kingma 2016) of each output unit to RMS
        ``1/sqrt(fan_in)`` times a generated gain ``exp(g)``: the scale of a layer's outputs
        cannot drift apart between genomes with and without batch norm."""
        dims = tuple(range(1, weight.dim()))
        rms = weight.pow(2).mean(dim=dims, keepdim=True).add(1e-8).sqrt()
        gain = self._per_output(self.gain_head, slot, code, device).exp()
        return weight / (rms * math.sqrt(slot.fan_in)) * gain.view(-1, *[1] * len(dims))

    def _per_output(self, head: nn.Linear, slot: Slot, code: torch.Tensor,
                    device: torch.device) -> torch.Tensor:
        """One value per output unit of ``slot`` from ``[code, E_out[a]]`` by ``head``."""
        rows = grid(slot, self.config.block)[0]
        position = self.out_position(self._positions(rows, device))     # (rows, E)
        values = head(torch.cat([code.expand(rows, -1), position], dim=1))  # (rows, f)
        return values.reshape(-1)[:slot.shape[0]]

    def _biases(self, slots: list[Slot], codes: torch.Tensor, row: dict[int, int],
                device: torch.device) -> dict[str, torch.Tensor]:
        return {slot.bias: self._per_output(self.bias_head, slot, codes[row[slot.node_id]], device)
                for slot in slots if slot.bias is not None}
