"""The layers and ``model.py`` emitters of the network ops that cell genomes expand into
(:mod:`evograph.genome.cells.ops`): NAS-Bench-201's ``relu_conv_bn``, ``avg_pool``, ``zero``
and ``bn_relu``; the NASNet/DARTS ``sep_conv``, ``dil_conv``, ``conv_1x7_7x1``,
``factorized_reduce``, ``max_pool`` and ``concat``.
Template ops have neither: a cell genome is built and written out through its expansion
(:func:`evograph.genome.cells.expand`). Shapes in comments are per batch of N samples."""

from __future__ import annotations

import torch
from torch import nn

from ..genome.core import Node
from ..genome.ops import Shape
from .codegen import NodeCode, register_emitter
from .layers import register_layer


def _window(node: Node) -> tuple[tuple[int, int], tuple[int, int], tuple[int, int]]:
    """(kernel, stride, same padding) of a windowed op."""
    p = node.p
    return ((p["kernel_h"], p["kernel_w"]), (p["stride_h"], p["stride_w"]),
            (p["kernel_h"] // 2, p["kernel_w"] // 2))


def _conv_source(c_in: int, c_out: int, kernel, stride, padding, extra: str = "") -> str:
    return (f"nn.Conv2d({c_in}, {c_out}, kernel_size={tuple(kernel)}, stride={tuple(stride)}, "
            f"padding={tuple(padding)}{extra}, bias=False)")


@register_layer("relu_conv_bn")
def _relu_conv_bn(node: Node, shape_in: Shape, shape_out: Shape) -> nn.Module:
    # (N, C_in, H, W) -> ReLU -> conv (no bias) -> BN -> (N, C_out, H', W')
    kernel, stride, padding = _window(node)
    return nn.Sequential(nn.ReLU(), nn.Conv2d(shape_in[0], shape_out[0], kernel, stride,
                                              padding, bias=False),
                         nn.BatchNorm2d(shape_out[0]))


@register_layer("avg_pool")
def _avg_pool(node: Node, shape_in: Shape, shape_out: Shape) -> nn.Module:
    kernel, stride, padding = _window(node)
    return nn.AvgPool2d(kernel, stride, padding if node.get("same") else 0,
                        count_include_pad=False)


class Zero(nn.Module):
    """The ``none`` op when nothing else reaches a cell node: zeros of the input's shape."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.zeros_like(x)


@register_layer("zero")
def _zero(node: Node, shape_in: Shape, shape_out: Shape) -> nn.Module:
    return Zero()


@register_layer("bn_relu")
def _bn_relu(node: Node, shape_in: Shape, shape_out: Shape) -> nn.Module:
    return nn.Sequential(nn.BatchNorm2d(shape_in[0]), nn.ReLU())


@register_emitter("relu_conv_bn")
def _emit_relu_conv_bn(node: Node, shape_in: Shape, shape_out: Shape, h: str) -> NodeCode:
    i = node.id
    kernel, stride, padding = _window(node)
    return NodeCode(
        attrs=[(f"conv{i}", _conv_source(shape_in[0], shape_out[0], kernel, stride, padding)),
               (f"bn{i}", f"nn.BatchNorm2d({shape_out[0]})")],
        expr=f"self.bn{i}(self.conv{i}(F.relu({h})))",
        prefixes={f"layers.n{i}.1": f"conv{i}", f"layers.n{i}.2": f"bn{i}"})


@register_emitter("avg_pool")
def _emit_avg_pool(node: Node, shape_in: Shape, shape_out: Shape, h: str) -> NodeCode:
    kernel, stride, padding = _window(node)
    padding = padding if node.get("same") else (0, 0)
    return NodeCode(expr=f"F.avg_pool2d({h}, {kernel}, {stride}, {padding}, "
                         "count_include_pad=False)")


@register_emitter("zero")
def _emit_zero(node: Node, shape_in: Shape, shape_out: Shape, h: str) -> NodeCode:
    return NodeCode(expr=f"torch.zeros_like({h})")


@register_emitter("bn_relu")
def _emit_bn_relu(node: Node, shape_in: Shape, shape_out: Shape, h: str) -> NodeCode:
    i = node.id
    return NodeCode(attrs=[(f"bn{i}", f"nn.BatchNorm2d({shape_in[0]})")],
                    expr=f"F.relu(self.bn{i}({h}))", prefixes={f"layers.n{i}.0": f"bn{i}"})


# -- NASNet / DARTS ops ----------------------------------------------------------------------------
def _sep_conv_layers(node: Node, c_in: int, c_out: int) -> list[nn.Module]:
    kernel, stride, padding = _window(node)
    return [nn.ReLU(), nn.Conv2d(c_in, c_in, kernel, stride, padding, groups=c_in, bias=False),
            nn.Conv2d(c_in, c_in, 1, bias=False), nn.BatchNorm2d(c_in),
            nn.ReLU(), nn.Conv2d(c_in, c_in, kernel, 1, padding, groups=c_in, bias=False),
            nn.Conv2d(c_in, c_out, 1, bias=False), nn.BatchNorm2d(c_out)]


@register_layer("sep_conv")
def _sep_conv(node: Node, shape_in: Shape, shape_out: Shape) -> nn.Module:
    # DARTS's SepConv: (ReLU, depthwise kxk, pointwise, BN) twice; the stride in the first
    return nn.Sequential(*_sep_conv_layers(node, shape_in[0], shape_out[0]))


def _dilated_padding(node: Node) -> tuple[int, int]:
    return (2 * (node.get("kernel_h") // 2), 2 * (node.get("kernel_w") // 2))


@register_layer("dil_conv")
def _dil_conv(node: Node, shape_in: Shape, shape_out: Shape) -> nn.Module:
    # DARTS's DilConv: ReLU, depthwise kxk of dilation 2, pointwise, BN
    kernel, stride, _ = _window(node)
    c_in = shape_in[0]
    return nn.Sequential(nn.ReLU(), nn.Conv2d(c_in, c_in, kernel, stride, _dilated_padding(node),
                                              dilation=2, groups=c_in, bias=False),
                         nn.Conv2d(c_in, shape_out[0], 1, bias=False),
                         nn.BatchNorm2d(shape_out[0]))


@register_layer("conv_1x7_7x1")
def _conv_1x7_7x1(node: Node, shape_in: Shape, shape_out: Shape) -> nn.Module:
    c_in, c_out, p = shape_in[0], shape_out[0], node.p
    return nn.Sequential(nn.ReLU(),
                         nn.Conv2d(c_in, c_in, (1, 7), (1, p["stride_w"]), (0, 3), bias=False),
                         nn.Conv2d(c_in, c_out, (7, 1), (p["stride_h"], 1), (3, 0), bias=False),
                         nn.BatchNorm2d(c_out))


class FactorizedReduce(nn.Module):
    """DARTS's reduction of a skip path: ReLU, then two strided 1x1 convs, the second on the
    input shifted by one pixel (zero-filled at the far edge), each giving half the channels,
    concatenated, then BN. (N, C_in, H, W) -> (N, C_out, ceil(H / s_h), ceil(W / s_w))."""

    def __init__(self, c_in: int, c_out: int, stride: tuple[int, int]):
        super().__init__()
        self.shift = (0, 1, 0, 1 if stride[0] > 1 else 0)     # F.pad: w right, h bottom
        self.rows = 1 if stride[0] > 1 else 0
        self.conv_1 = nn.Conv2d(c_in, c_out // 2, 1, stride, bias=False)
        self.conv_2 = nn.Conv2d(c_in, c_out - c_out // 2, 1, stride, bias=False)
        self.bn = nn.BatchNorm2d(c_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(x)
        shifted = nn.functional.pad(x, self.shift)[:, :, self.rows:, 1:]
        return self.bn(torch.cat([self.conv_1(x), self.conv_2(shifted)], dim=1))


@register_layer("factorized_reduce")
def _factorized_reduce(node: Node, shape_in: Shape, shape_out: Shape) -> nn.Module:
    return FactorizedReduce(shape_in[0], shape_out[0],
                            (node.get("stride_h"), node.get("stride_w")))


@register_layer("max_pool")
def _max_pool(node: Node, shape_in: Shape, shape_out: Shape) -> nn.Module:
    kernel, stride, padding = _window(node)
    return nn.MaxPool2d(kernel, stride, padding if node.get("same") else 0)


@register_layer("concat")
def _concat(node: Node, shape_in: Shape, shape_out: Shape) -> nn.Module:
    return nn.Identity()   # the builder concatenates the inputs (Concat) before it


@register_emitter("sep_conv")
def _emit_sep_conv(node: Node, shape_in: Shape, shape_out: Shape, h: str) -> NodeCode:
    i, (kernel, stride, padding) = node.id, _window(node)
    c_in, c_out = shape_in[0], shape_out[0]
    return NodeCode(
        attrs=[(f"dw{i}a", _conv_source(c_in, c_in, kernel, stride, padding, f", groups={c_in}")),
               (f"pw{i}a", _conv_source(c_in, c_in, (1, 1), (1, 1), (0, 0))),
               (f"bn{i}a", f"nn.BatchNorm2d({c_in})"),
               (f"dw{i}b", _conv_source(c_in, c_in, kernel, (1, 1), padding, f", groups={c_in}")),
               (f"pw{i}b", _conv_source(c_in, c_out, (1, 1), (1, 1), (0, 0))),
               (f"bn{i}b", f"nn.BatchNorm2d({c_out})")],
        expr=(f"self.bn{i}b(self.pw{i}b(self.dw{i}b(F.relu("
              f"self.bn{i}a(self.pw{i}a(self.dw{i}a(F.relu({h})))))))) "),
        prefixes={f"layers.n{i}.{k}": name for k, name in
                  ((1, f"dw{i}a"), (2, f"pw{i}a"), (3, f"bn{i}a"), (5, f"dw{i}b"),
                   (6, f"pw{i}b"), (7, f"bn{i}b"))})


@register_emitter("dil_conv")
def _emit_dil_conv(node: Node, shape_in: Shape, shape_out: Shape, h: str) -> NodeCode:
    i, (kernel, stride, _) = node.id, _window(node)
    c_in, c_out = shape_in[0], shape_out[0]
    return NodeCode(
        attrs=[(f"dw{i}", _conv_source(c_in, c_in, kernel, stride, _dilated_padding(node),
                                       f", dilation=2, groups={c_in}")),
               (f"pw{i}", _conv_source(c_in, c_out, (1, 1), (1, 1), (0, 0))),
               (f"bn{i}", f"nn.BatchNorm2d({c_out})")],
        expr=f"self.bn{i}(self.pw{i}(self.dw{i}(F.relu({h}))))",
        prefixes={f"layers.n{i}.1": f"dw{i}", f"layers.n{i}.2": f"pw{i}",
                  f"layers.n{i}.3": f"bn{i}"})


@register_emitter("conv_1x7_7x1")
def _emit_conv_1x7_7x1(node: Node, shape_in: Shape, shape_out: Shape, h: str) -> NodeCode:
    i, p = node.id, node.p
    c_in, c_out = shape_in[0], shape_out[0]
    return NodeCode(
        attrs=[(f"conv{i}a", _conv_source(c_in, c_in, (1, 7), (1, p["stride_w"]), (0, 3))),
               (f"conv{i}b", _conv_source(c_in, c_out, (7, 1), (p["stride_h"], 1), (3, 0))),
               (f"bn{i}", f"nn.BatchNorm2d({c_out})")],
        expr=f"self.bn{i}(self.conv{i}b(self.conv{i}a(F.relu({h}))))",
        prefixes={f"layers.n{i}.1": f"conv{i}a", f"layers.n{i}.2": f"conv{i}b",
                  f"layers.n{i}.3": f"bn{i}"})


@register_emitter("factorized_reduce")
def _emit_factorized_reduce(node: Node, shape_in: Shape, shape_out: Shape,
                            h: str) -> NodeCode:
    i, p = node.id, node.p
    c_in, c_out = shape_in[0], shape_out[0]
    stride = (p["stride_h"], p["stride_w"])
    rows = 1 if stride[0] > 1 else 0
    shift = (0, 1, 0, rows)
    relu = f"F.relu({h})"
    return NodeCode(
        attrs=[(f"conv{i}a", _conv_source(c_in, c_out // 2, (1, 1), stride, (0, 0))),
               (f"conv{i}b", _conv_source(c_in, c_out - c_out // 2, (1, 1), stride, (0, 0))),
               (f"bn{i}", f"nn.BatchNorm2d({c_out})")],
        expr=(f"self.bn{i}(torch.cat([self.conv{i}a({relu}), self.conv{i}b(F.pad({relu}, "
              f"{shift})[:, :, {rows}:, 1:])], 1))"),
        prefixes={f"layers.n{i}.conv_1": f"conv{i}a", f"layers.n{i}.conv_2": f"conv{i}b",
                  f"layers.n{i}.bn": f"bn{i}"})


@register_emitter("max_pool")
def _emit_max_pool(node: Node, shape_in: Shape, shape_out: Shape, h: str) -> NodeCode:
    kernel, stride, padding = _window(node)
    padding = padding if node.get("same") else (0, 0)
    return NodeCode(expr=f"F.max_pool2d({h}, {kernel}, {stride}, {padding})")


@register_emitter("concat")
def _emit_concat(node: Node, shape_in: Shape, shape_out: Shape, h: str) -> NodeCode:
    return NodeCode(expr=h)
