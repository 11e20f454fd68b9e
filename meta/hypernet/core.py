"""Shared pieces of the hypernetworks: which tensors of a compiled genome are generated, the
kernel-slice generator of Ha, Dai & Le (2016) and the assembly of slices into full kernels.

*HyperNetworks* (Ha, Dai & Le 2016, §3.1) cut every convolution kernel of ``N_out x N_in`` channels
into ``f x f``-channel slices and generate each slice from its own small embedding ``z`` with one
shared two-layer linear network::

    a_i = W_i z + B_i            (i = 1..f: one hidden vector per input channel of the slice)
    K_i = W_out a_i + B_out      (K_i: f output channels x k x k taps)

Both hypernetworks here use that generator. A kernel of any shape is assembled from a grid of
slices and cut to size: the leading ``c_out`` x ``c_in`` channels and the *centred* ``kh x kw``
window of the generated taps (the convention of weight inheritance, so a 3x3 kernel is the centre of
a 5x5 one). A linear layer is a 1x1 kernel. Generated values are unit-scale; they are multiplied
by ``1/sqrt(fan_in)`` so a layer's outputs keep their scale whatever its width.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from ...compile.builder import GenomeModule
from ...genome.core import Genome


@dataclass(frozen=True)
class Slot:
    """One generated weight of a compiled genome: ``weight`` of ``shape`` (out, in, kh, kw; a
    linear layer has kh = kw = 1 and a 2-D tensor), and optionally its bias."""

    node_id: int
    kind: str                       # "conv" or "linear"
    op: str                         # the genome op the layer belongs to (conv, dense, output)
    weight: str                     # parameter name in the GenomeModule
    shape: tuple[int, int, int, int]
    bias: str | None = None

    @property
    def fan_in(self) -> int:
        return self.shape[1] * self.shape[2] * self.shape[3]


def weight_slots(module: GenomeModule, genome: Genome,
                 ops: tuple[str, ...] = ("conv", "dense", "output"),
                 bias: bool = True) -> list[Slot]:
    """The conv/linear weights of ``module`` (compiled from ``genome``) whose node's op is in
    ``ops``, in plan order.

    Found by walking the submodules (not by hard-coded names), so any layer factory that uses
    ``nn.Conv2d``/``nn.Linear`` is covered. ``bias=False`` leaves biases to ordinary training.
    """
    slots = []
    for step in module.plan:
        node_id = int(step.key[1:])
        op = genome.node(node_id).op
        if op not in ops:
            continue
        for sub_name, sub in module.layers[step.key].named_modules():
            prefix = f"layers.{step.key}.{sub_name}"
            if isinstance(sub, nn.Conv2d):
                kind, shape = "conv", tuple(sub.weight.shape)
            elif isinstance(sub, nn.Linear):
                kind, shape = "linear", (*sub.weight.shape, 1, 1)
            else:
                continue
            bias_name = f"{prefix}.bias" if bias and sub.bias is not None else None
            slots.append(Slot(node_id, kind, op, f"{prefix}.weight", shape, bias_name))
    return slots


def grid(slot: Slot, block: int) -> tuple[int, int]:
    """How many ``block``-channel slices cover the slot's (out, in) channels."""
    return math.ceil(slot.shape[0] / block), math.ceil(slot.shape[1] / block)


class SliceGenerator(nn.Module):
    """Ha et al.'s two-layer linear generator: ``z (B, z_dim) -> slices (B, f, f, kh, kw)``.

    ``kh x kw`` is the largest kernel the generator serves; smaller kernels take the centre.
    Initialised so that unit-variance embeddings give unit-variance slices.
    """

    def __init__(self, z_dim: int, hidden: int, block: int, kh: int, kw: int):
        super().__init__()
        self.block, self.hidden, self.kh, self.kw = block, hidden, kh, kw
        self.w_in = nn.Parameter(torch.randn(z_dim, block * hidden) / math.sqrt(z_dim))
        self.b_in = nn.Parameter(torch.zeros(block * hidden))
        self.w_out = nn.Parameter(torch.randn(hidden, block * kh * kw) / math.sqrt(hidden))
        self.b_out = nn.Parameter(torch.zeros(block * kh * kw))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        f = self.block
        a = (z @ self.w_in + self.b_in).view(-1, f, self.hidden)      # (B, f_in, hidden)
        k = a @ self.w_out + self.b_out                                 # (B, f_in, f_out*kh*kw)
        k = k.view(-1, f, f, self.kh, self.kw)                          # (B, f_in, f_out, kh, kw)
        return k.transpose(1, 2)                                        # (B, f_out, f_in, kh, kw)


def assemble(slices: torch.Tensor, slot: Slot, rows: int, cols: int) -> torch.Tensor:
    """Put a ``rows x cols`` grid of slices ``(rows*cols, f, f, KH, KW)`` (row-major) together
    and cut out the slot's weight, scaled by ``1/sqrt(fan_in)``."""
    _, f, _, big_h, big_w = slices.shape
    full = slices.view(rows, cols, f, f, big_h, big_w).permute(0, 2, 1, 3, 4, 5)
    full = full.reshape(rows * f, cols * f, big_h, big_w)             # (out, in, KH, KW)
    c_out, c_in, kh, kw = slot.shape
    top, left = (big_h - kh) // 2, (big_w - kw) // 2
    weight = full[:c_out, :c_in, top:top + kh, left:left + kw] / math.sqrt(slot.fan_in)
    return weight if slot.kind == "conv" else weight[:, :, 0, 0]


def largest_kernel(slots: list[Slot]) -> tuple[int, int]:
    """The tap extent a generator needs to serve every slot (at least 1 x 1)."""
    return (max((s.shape[2] for s in slots), default=1), max((s.shape[3] for s in slots),
                                                            default=1))


def ordinary_parameters(module: nn.Module, generated: set[str]) -> int:
    """How many of ``module``'s parameters are *not* replaced by generated tensors."""
    return sum(p.numel() for n, p in module.named_parameters() if n not in generated)
