"""Layer factories: one per op of :mod:`evograph.genome.ops`, plus the merge of several inputs.

A factory gets the node, its merged input shape and its output shape (all validated already) and
returns an ``nn.Module``. Tensor names under a node are stable (``op.0.weight`` ...), which is what
weight inheritance relies on. Shapes in comments are per batch: N samples.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache

import torch
from torch import nn
from torch.nn import functional as F

from ..genome.core import Node
from ..genome.ops import Shape, flat_size, is_spatial

LayerFactory = Callable[[Node, Shape, Shape], nn.Module]
LAYERS: dict[str, LayerFactory] = {}

ACTIVATION_MODULES: dict[str, Callable[[], nn.Module]] = {
    "relu": nn.ReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid, "elu": nn.ELU, "selu": nn.SELU,
    "gelu": nn.GELU, "leaky_relu": lambda: nn.LeakyReLU(0.01), "linear": nn.Identity,
}


def register_layer(op: str):
    def wrap(factory: LayerFactory) -> LayerFactory:
        LAYERS[op] = factory
        return factory
    return wrap


@register_layer("input")
def _input(node: Node, shape_in: Shape, shape_out: Shape) -> nn.Module:
    return nn.Identity()


@register_layer("conv")
def _conv(node: Node, shape_in: Shape, shape_out: Shape) -> nn.Module:
    p = node.p
    layers: list[nn.Module] = [nn.Conv2d(
        shape_in[0], p["out_channels"], (p["kernel_h"], p["kernel_w"]),
        stride=(p["stride_h"], p["stride_w"]), padding=(p["kernel_h"] // 2, p["kernel_w"] // 2),
        bias=not p["bn"])]
    if p["bn"]:
        layers.append(nn.BatchNorm2d(p["out_channels"]))
    if p["relu"]:
        layers.append(nn.ReLU())
    return nn.Sequential(*layers)


@register_layer("identity")
def _identity(node: Node, shape_in: Shape, shape_out: Shape) -> nn.Module:
    return nn.Identity()


@register_layer("dense")
def _dense(node: Node, shape_in: Shape, shape_out: Shape) -> nn.Module:
    # (N, *shape_in) -> (N, units)
    return nn.Sequential(nn.Flatten(), nn.Linear(flat_size(shape_in), node.get("units")),
                         ACTIVATION_MODULES[node.get("activation")]())


class GlobalAvgPool(nn.Module):
    """(N, C, H, W) -> (N, C)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(2, 3))


@register_layer("output")
def _output(node: Node, shape_in: Shape, shape_out: Shape) -> nn.Module:
    head: list[nn.Module] = [GlobalAvgPool()] if is_spatial(shape_in) else []
    return nn.Sequential(*head, nn.Linear(shape_in[0], node.get("num_classes")))


def adaptive_avg_pool(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """``F.adaptive_avg_pool2d(x, size)``, deterministic on CUDA as well.

    Its CUDA backward accumulates with atomic adds (results differ run to run in the last bits;
    torch's deterministic mode has no alternative for it), so where deterministic algorithms are
    on (:mod:`evograph.compile.determinism`) a CUDA input is pooled as two matrix products with
    the pooling matrices instead: the same windows, rows ``floor(i*H/h)`` to ``ceil((i+1)*H/h)``,
    equal to the pooled values up to float rounding."""
    if not (x.is_cuda and torch.are_deterministic_algorithms_enabled()):
        return F.adaptive_avg_pool2d(x, size)
    return pool_by_matrices(x, size)


def pool_by_matrices(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Adaptive average pooling of (N, C, H, W) to (N, C, *size) as two matrix products."""
    rows = _pool_matrix(x.shape[-2], size[0], x.device, x.dtype)      # (h, H)
    cols = _pool_matrix(x.shape[-1], size[1], x.device, x.dtype)      # (w, W)
    return rows @ x @ cols.T                        # (h, H) @ (N, C, H, W) @ (W, w) -> (N, C, h, w)


@lru_cache(maxsize=64)
def _pool_matrix(n_in: int, n_out: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """(n_out, n_in): row i averages the inputs of adaptive pooling's i-th window."""
    i = torch.arange(n_out)
    start = torch.div(i * n_in, n_out, rounding_mode="floor")
    end = torch.div((i + 1) * n_in + n_out - 1, n_out, rounding_mode="floor")
    j = torch.arange(n_in)
    inside = (j >= start[:, None]) & (j < end[:, None])
    return (inside.to(dtype) / (end - start).to(dtype)[:, None]).to(device)


class Merge(nn.Module):
    """Sum several inputs after reconciling them to ``target`` (the rule of genome.validate).

    Spatial inputs larger than the target are average-pooled down to it; channel counts are
    truncated or zero-padded to the first input's. All decisions are made at build time from the
    static shapes, so ``forward`` is straight-line tensor code (exportable).
    """

    def __init__(self, input_shapes: list[Shape], target: Shape):
        super().__init__()
        self.input_shapes = [tuple(s) for s in input_shapes]
        self.target = tuple(target)

    def _reconcile(self, x: torch.Tensor, shape: Shape) -> torch.Tensor:
        if is_spatial(shape) and shape[1:] != self.target[1:]:
            x = adaptive_avg_pool(x, self.target[1:])
        have, want = shape[0], self.target[0]
        if have > want:
            x = x[:, :want]
        elif have < want:
            pad = [0, 0] * (len(shape) - 1) + [0, want - have]  # pads dim 1 (channels)
            x = F.pad(x, pad)
        return x

    def forward(self, *xs: torch.Tensor) -> torch.Tensor:
        out = self._reconcile(xs[0], self.input_shapes[0])
        for x, shape in zip(xs[1:], self.input_shapes[1:]):
            out = out + self._reconcile(x, shape)
        return out


class Concat(nn.Module):
    """Concatenate several inputs on channels (a NASNet cell's output; shapes checked by
    validation): (N, C_i, H, W) -> (N, sum C_i, H, W)."""

    def forward(self, *xs: torch.Tensor) -> torch.Tensor:
        return torch.cat(xs, dim=1)
