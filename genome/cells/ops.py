"""The ops of cell spaces, in two kinds (shapes and counts as in :mod:`evograph.genome.ops`).

* **Template ops** appear only in a cell genome's template and are expanded away
  (:mod:`.skeleton`): the ``skeleton`` node; NAS-Bench-201's cell nodes (``cell_node``: the sum
  of its inputs) and edge choices (Dong & Yang 2020): ``none``, ``skip_connect``,
  ``nor_conv_1x1``, ``nor_conv_3x3``, ``avg_pool_3x3``; NASNet's ``cell_input``, ``block`` and
  ``cell_output`` and its ops (:data:`NASNET_OPS`, of which ``identity`` is also a network op).
  They count nothing themselves.
* **Network ops** are what an expansion is made of, beside ``conv``, ``identity`` and ``output``:
  ``relu_conv_bn`` (the pre-activation ReLU -> conv -> batch norm of NAS-Bench-201, DARTS and
  NASNet), ``avg_pool`` and ``max_pool`` (padding not counted in the average; windows named as
  ``conv``'s), DARTS's ``sep_conv``, ``dil_conv``, ``conv_1x7_7x1`` and ``factorized_reduce``,
  ``concat`` (joins its inputs on channels: a NASNet cell's output), ``zero`` (the ``none`` choice when
  nothing else reaches a cell node) and ``bn_relu`` (the NAS-Bench-201 head before its classifier).

The compiler has a layer for every network op (:mod:`evograph.compile.cells`).
"""

from __future__ import annotations

from ...errors import InvalidGenome
from ..core import Node
from ..ops import OpSpec, Shape, register_op

NB201_OPS = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")


def _same(node: Node, shape: Shape) -> Shape:
    return shape


def _nothing(node: Node, shape_in: Shape, shape_out: Shape) -> tuple[int, int]:
    return 0, 0


register_op(OpSpec("skeleton", {"name": str, "channels": int, "cells": int, "stages": int},
                   _same, _nothing, template=True))
register_op(OpSpec("cell_node", {"index": int}, _same, _nothing, template=True))
for _name in NB201_OPS:
    register_op(OpSpec(_name, {}, _same, _nothing, template=True))


_WINDOW = {"kernel_h": int, "kernel_w": int, "stride_h": int, "stride_w": int}


def _strided(size: int, stride: int) -> int:
    return -(-size // stride)


def _relu_conv_bn_infer(node: Node, shape: Shape) -> Shape:
    p = node.p
    for key in ("kernel_h", "kernel_w"):
        if p[key] % 2 == 0:
            raise InvalidGenome(f"{key}={p[key]} must be odd (same padding)", f"node {node.id}")
    _, h, w = shape
    return (p["out_channels"], _strided(h, p["stride_h"]), _strided(w, p["stride_w"]))


def _relu_conv_bn_count(node: Node, shape_in: Shape, shape_out: Shape) -> tuple[int, int]:
    c_out, h, w = shape_out
    weights = c_out * shape_in[0] * node.get("kernel_h") * node.get("kernel_w")
    return weights + 2 * c_out, weights * h * w   # BN's affine weight and bias


# conv without bias; a 1-D signal (C, 1, L) takes kernel_h = stride_h = 1
register_op(OpSpec("relu_conv_bn", {"out_channels": int, **_WINDOW},
                   _relu_conv_bn_infer, _relu_conv_bn_count, spatial_only=True))


def _pool_infer(node: Node, shape: Shape) -> Shape:
    p = node.p
    c, h, w = shape
    out = []
    for size, k, stride in ((h, p["kernel_h"], p["stride_h"]), (w, p["kernel_w"], p["stride_w"])):
        pad = k // 2 if p["same"] else 0
        out.append((size + 2 * pad - k) // stride + 1)
    if min(out) < 1:
        raise InvalidGenome(f"a {p['kernel_h']}x{p['kernel_w']} pool does not fit a {h}x{w} "
                            "map", f"node {node.id}")
    return (c, *out)


# ``same``: padded by kernel // 2 (odd kernels keep the size at stride 1), else unpadded
register_op(OpSpec("avg_pool", {**_WINDOW, "same": bool}, _pool_infer, _nothing,
                   spatial_only=True))
register_op(OpSpec("zero", {}, _same, _nothing))
register_op(OpSpec("bn_relu", {}, _same, lambda n, i, o: (2 * i[0], 0), spatial_only=True))


# -- NASNet / AmoebaNet / DARTS ops (Zoph et al. 2018; Real et al. 2019; Liu et al. 2019) --------
NASNET_OPS = ("sep_conv_3x3", "sep_conv_5x5", "sep_conv_7x7", "dil_conv_3x3", "conv_7x1_1x7",
              "avg_pool_3x3", "max_pool_3x3", "identity")
for _name in NASNET_OPS:
    if _name not in ("avg_pool_3x3", "identity"):   # shared with nb201 / a network op
        register_op(OpSpec(_name, {}, _same, _nothing, template=True))
register_op(OpSpec("cell_input", {"cell": str, "which": str}, _same, _nothing, template=True))
register_op(OpSpec("block", {"cell": str, "index": int}, _same, _nothing, template=True))
register_op(OpSpec("cell_output", {"cell": str}, _same, _nothing, template=True))


def _windowed_infer(node: Node, shape: Shape) -> Shape:
    """Same padding, ceil division by the stride (kernel_h/kernel_w default to 1)."""
    p = node.p
    for key in ("kernel_h", "kernel_w"):
        if p.get(key, 1) % 2 == 0:
            raise InvalidGenome(f"{key}={p[key]} must be odd (same padding)", f"node {node.id}")
    _, h, w = shape
    return (p.get("out_channels", shape[0]), _strided(h, p["stride_h"]),
            _strided(w, p["stride_w"]))


def _sep_conv_count(node: Node, shape_in: Shape, shape_out: Shape) -> tuple[int, int]:
    """DARTS's SepConv: twice (ReLU, depthwise kxk, pointwise 1x1, BN); the first depthwise
    conv carries the stride, the second pointwise conv the output channels."""
    c_in, (c_out, h, w) = shape_in[0], shape_out
    k = node.get("kernel_h") * node.get("kernel_w")
    first = c_in * k + c_in * c_in + 2 * c_in
    second = c_in * k + c_in * c_out + 2 * c_out
    return first + second, (c_in * k + c_in * c_in + c_in * k + c_in * c_out) * h * w


def _dil_conv_count(node: Node, shape_in: Shape, shape_out: Shape) -> tuple[int, int]:
    """DARTS's DilConv: ReLU, depthwise kxk of dilation 2, pointwise 1x1, BN."""
    c_in, (c_out, h, w) = shape_in[0], shape_out
    k = node.get("kernel_h") * node.get("kernel_w")
    return c_in * k + c_in * c_out + 2 * c_out, (c_in * k + c_in * c_out) * h * w


def _conv_1x7_7x1_count(node: Node, shape_in: Shape, shape_out: Shape) -> tuple[int, int]:
    """ReLU, a 1x7 then a 7x1 conv (no bias), BN."""
    c_in, (c_out, h, w) = shape_in[0], shape_out
    first = c_in * c_in * 7
    _, h_in, _ = shape_in
    mid_w = w   # the 1x7 conv carries the width's stride, the 7x1 the height's
    return first + c_in * c_out * 7 + 2 * c_out, first * h_in * mid_w + c_in * c_out * 7 * h * w


def _factorized_reduce_count(node: Node, shape_in: Shape, shape_out: Shape) -> tuple[int, int]:
    """DARTS's FactorizedReduce: ReLU, two strided 1x1 convs on inputs offset by one pixel,
    each giving half the channels, concatenated, BN."""
    c_in, (c_out, h, w) = shape_in[0], shape_out
    weights = c_in * c_out            # c_out // 2 + (c_out - c_out // 2) output channels
    return weights + 2 * c_out, weights * h * w


_STRIDE = {"stride_h": int, "stride_w": int}
register_op(OpSpec("sep_conv", {"out_channels": int, **_WINDOW}, _windowed_infer,
                   _sep_conv_count, spatial_only=True))
register_op(OpSpec("dil_conv", {"out_channels": int, **_WINDOW}, _windowed_infer,
                   _dil_conv_count, spatial_only=True))
register_op(OpSpec("conv_1x7_7x1", {"out_channels": int, **_STRIDE}, _windowed_infer,
                   _conv_1x7_7x1_count, spatial_only=True))
register_op(OpSpec("factorized_reduce", {"out_channels": int, **_STRIDE}, _windowed_infer,
                   _factorized_reduce_count, spatial_only=True))
register_op(OpSpec("max_pool", {**_WINDOW, "same": bool}, _pool_infer, _nothing,
                   spatial_only=True))
register_op(OpSpec("concat", {}, _same, _nothing, concat=True))
