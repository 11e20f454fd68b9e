"""Symbolic op definitions: parameter schemas, shape inference, parameter and FLOP counts.

Everything here is arithmetic on Python ints, so a genome can be checked against its budget before
a single tensor exists. The compiler (:mod:`evograph.compile.layers`) has a factory for every op
registered here; a test keeps the two registries equal.

Shapes are per sample and always one of two kinds:

* spatial ``(C, H, W)`` — images; 1-D signals ``(C, L)`` are carried as ``(C, 1, L)``;
* flat ``(F,)`` — feature vectors (MLP layers).

FLOPs are counted as multiply-accumulates of the layer's main product (the usual convention in
the NAS literature); batch-norm, activations and merges are ignored.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ..errors import InvalidGenome
from .core import Node

Shape = tuple[int, ...]

ACTIVATIONS = ("relu", "tanh", "sigmoid", "elu", "selu", "gelu", "leaky_relu", "linear")
HARD_MAX_WIDTH = 1 << 20  # beyond any budget: rejected even without a search space


@dataclass(frozen=True)
class OpSpec:
    """How one op type is checked, shaped and counted."""

    name: str
    params: dict[str, type]                      # required params and their types
    infer: Callable[[Node, Shape], Shape]        # merged input shape -> output shape
    count: Callable[[Node, Shape, Shape], tuple[int, int]]  # -> (params, flops)
    spatial_only: bool = False
    template: bool = False     # only in a cell's template, expanded away (genome.cells)
    concat: bool = False       # several inputs are concatenated on channels, not summed


OPS: dict[str, OpSpec] = {}


def register_op(spec: OpSpec) -> OpSpec:
    OPS[spec.name] = spec
    return spec


def is_spatial(shape: Shape) -> bool:
    return len(shape) == 3


def spatial_shape(shape: Shape) -> Shape:
    """Normalise an input shape: ``(C, L)`` becomes ``(C, 1, L)``; others are unchanged."""
    return (shape[0], 1, shape[1]) if len(shape) == 2 else tuple(shape)


def flat_size(shape: Shape) -> int:
    size = 1
    for dim in shape:
        size *= dim
    return size


def check_params(node: Node) -> None:
    """Check that a node's params have the types and sane values its op requires."""
    spec = OPS.get(node.op)
    where = f"node {node.id}"
    if spec is None:
        raise InvalidGenome(f"unknown op {node.op!r} (known: {', '.join(sorted(OPS))})", where)
    given = node.p
    for name, kind in spec.params.items():
        if name not in given:
            raise InvalidGenome(f"op {node.op!r} needs param {name!r}", where)
        value = given[name]
        if kind is int and (isinstance(value, bool) or not isinstance(value, int)):
            raise InvalidGenome(f"param {name}={value!r} must be an integer", where)
        if kind is bool and not isinstance(value, bool):
            raise InvalidGenome(f"param {name}={value!r} must be true or false", where)
        if kind is str and not isinstance(value, str):
            raise InvalidGenome(f"param {name}={value!r} must be a string", where)
        if kind is int and not 1 <= value <= HARD_MAX_WIDTH:
            raise InvalidGenome(f"param {name}={value} must be between 1 and {HARD_MAX_WIDTH}",
                                where)
    unknown = sorted(set(given) - set(spec.params))
    if unknown:
        raise InvalidGenome(f"op {node.op!r} has unknown param(s) {', '.join(unknown)}", where)


# -- input -------------------------------------------------------------------------------------
def _input_infer(node: Node, _: Shape) -> Shape:
    shape = node.get("shape")
    if not isinstance(shape, tuple) or not 1 <= len(shape) <= 3:
        raise InvalidGenome(f"input shape {shape!r} must be (F,), (C, L) or (C, H, W)",
                            f"node {node.id}")
    if any(isinstance(d, bool) or not isinstance(d, int) or d < 1 or d > HARD_MAX_WIDTH
           for d in shape):
        raise InvalidGenome(f"input shape {shape!r} must hold positive integers",
                            f"node {node.id}")
    return spatial_shape(shape)


register_op(OpSpec("input", {"shape": tuple}, _input_infer, lambda n, i, o: (0, 0)))


# -- conv --------------------------------------------------------------------------------------
def _conv_infer(node: Node, shape: Shape) -> Shape:
    p = node.p
    for k in ("kernel_h", "kernel_w"):
        if p[k] % 2 == 0:
            raise InvalidGenome(f"{k}={p[k]} must be odd (same padding)", f"node {node.id}")
    _, h, w = shape
    out_h = -(-h // p["stride_h"])  # ceil: same padding k//2 with an odd kernel
    out_w = -(-w // p["stride_w"])
    return (p["out_channels"], out_h, out_w)


def _conv_count(node: Node, shape_in: Shape, shape_out: Shape) -> tuple[int, int]:
    p = node.p
    c_in, (c_out, h, w) = shape_in[0], shape_out
    weights = c_out * c_in * p["kernel_h"] * p["kernel_w"]
    extra = 2 * c_out if p["bn"] else c_out  # BN affine (weight, bias) replaces the conv bias
    return weights + extra, weights * h * w


register_op(OpSpec(
    "conv",
    {"out_channels": int, "kernel_h": int, "kernel_w": int, "stride_h": int, "stride_w": int,
     "bn": bool, "relu": bool},
    _conv_infer, _conv_count, spatial_only=True))


# -- identity (Real et al.'s one-to-one node) ---------------------------------------------------
register_op(OpSpec("identity", {}, lambda n, s: s, lambda n, i, o: (0, 0)))


# -- dense ---------------------------------------------------------------------------------------
def _dense_infer(node: Node, _: Shape) -> Shape:
    if node.get("activation") not in ACTIVATIONS:
        raise InvalidGenome(f"activation {node.get('activation')!r} is not one of "
                            f"{', '.join(ACTIVATIONS)}", f"node {node.id}")
    return (node.get("units"),)


def _dense_count(node: Node, shape_in: Shape, shape_out: Shape) -> tuple[int, int]:
    fan_in, units = flat_size(shape_in), shape_out[0]
    return fan_in * units + units, fan_in * units


register_op(OpSpec("dense", {"units": int, "activation": str}, _dense_infer, _dense_count))


# -- output: global average pool (if spatial) then a linear classifier --------------------------
def _output_infer(node: Node, _: Shape) -> Shape:
    return (node.get("num_classes"),)


def _output_count(node: Node, shape_in: Shape, shape_out: Shape) -> tuple[int, int]:
    features, classes = shape_in[0], shape_out[0]  # spatial inputs are pooled to C features
    return features * classes + classes, features * classes


register_op(OpSpec("output", {"num_classes": int}, _output_infer, _output_count))
