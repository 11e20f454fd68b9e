"""Genome -> a readable, standalone PyTorch ``model.py`` that needs torch alone (no evograph).

The compiler (:mod:`evograph.compile.builder`) runs a genome through a generic plan; that is right
for evolution but opaque to someone who takes the final model away. This module writes the same
network out as code a person would write by hand: one ordinary ``nn.Module`` class whose layers are
attributes named after their genome nodes (``conv3``, ``bn3``, ``fc4``, ``head7``) and whose
``forward`` is straight-line tensor code with a shape comment on every line. Merges are written out
explicitly with the rule of :mod:`evograph.genome.validate` (average-pool to the smallest spatial
size, truncate or zero-pad channels to the first input's), in exactly the order
:class:`~evograph.compile.layers.Merge` applies them, so the generated model computes bit-identical
outputs to the compiled one on the same device.

Tensor names differ from the compiled module's (``layers.n3.0.weight`` becomes ``conv3.weight``);
:attr:`GeneratedModel.key_map` maps one onto the other 1:1 and :meth:`GeneratedModel.remap`
renames a compiled state dict so it loads into the generated class with ``strict=True``.
Like the layer factories, the emitters form a registry with one entry per op of
:mod:`evograph.genome.ops` (a test keeps the two equal).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from ..genome.cells import expand
from ..genome.core import Genome, Node
from ..genome.ops import OPS, Shape, flat_size, is_spatial
from ..genome.validate import GenomeInfo, analyze

# activation gene -> the functional call nn.<Module> makes (identical numerics)
ACTIVATION_CALLS: dict[str, str] = {
    "relu": "F.relu({})", "tanh": "torch.tanh({})", "sigmoid": "torch.sigmoid({})",
    "elu": "F.elu({})", "selu": "F.selu({})", "gelu": "F.gelu({})",
    "leaky_relu": "F.leaky_relu({}, 0.01)", "linear": "{}",
}


@dataclass
class NodeCode:
    """What one node contributes: layer attributes, one forward line, and tensor renames.

    ``attrs`` are ``(attribute name, constructor source)``; ``prefixes`` maps a submodule path of
    the compiled module (``layers.n3.0``) to the attribute holding the same tensors (``conv3``)."""

    attrs: list[tuple[str, str]] = field(default_factory=list)
    expr: str = ""
    prefixes: dict[str, str] = field(default_factory=dict)


Emitter = Callable[[Node, Shape, Shape, str], NodeCode]
EMITTERS: dict[str, Emitter] = {}


def register_emitter(op: str):
    """Decorator: the code emitter of ``op`` (``(node, in_shape, out_shape, h) -> NodeCode``)."""
    def wrap(fn: Emitter) -> Emitter:
        EMITTERS[op] = fn
        return fn
    return wrap


def shape_text(shape: Shape) -> str:
    """``(16, 8, 8)`` -> ``(N, 16, 8, 8)``: a per-sample shape with the batch dimension."""
    return "(" + ", ".join(["N", *map(str, shape)]) + ")"


@register_emitter("input")
def _input(node: Node, shape_in: Shape, shape_out: Shape, h: str) -> NodeCode:
    return NodeCode(expr=f"x.reshape(x.shape[0], {', '.join(map(str, shape_out))})")


@register_emitter("identity")
def _identity(node: Node, shape_in: Shape, shape_out: Shape, h: str) -> NodeCode:
    return NodeCode(expr=h)


@register_emitter("conv")
def _conv(node: Node, shape_in: Shape, shape_out: Shape, h: str) -> NodeCode:
    """Conv2d with same padding; BatchNorm2d (which replaces the conv bias) and ReLU if set."""
    p, i = node.p, node.id
    code = NodeCode(prefixes={f"layers.n{i}.0": f"conv{i}"})
    code.attrs.append((f"conv{i}", (
        f"nn.Conv2d({shape_in[0]}, {p['out_channels']}, kernel_size=({p['kernel_h']}, "
        f"{p['kernel_w']}), stride=({p['stride_h']}, {p['stride_w']}), padding=("
        f"{p['kernel_h'] // 2}, {p['kernel_w'] // 2}), bias={not p['bn']})")))
    expr = f"self.conv{i}({h})"
    if p["bn"]:
        code.attrs.append((f"bn{i}", f"nn.BatchNorm2d({p['out_channels']})"))
        code.prefixes[f"layers.n{i}.1"] = f"bn{i}"
        expr = f"self.bn{i}({expr})"
    code.expr = f"F.relu({expr})" if p["relu"] else expr
    return code


@register_emitter("dense")
def _dense(node: Node, shape_in: Shape, shape_out: Shape, h: str) -> NodeCode:
    """Flatten (when the input is spatial), Linear, then the node's activation."""
    i = node.id
    flat = h if len(shape_in) == 1 else f"torch.flatten({h}, 1)"
    return NodeCode(attrs=[(f"fc{i}", f"nn.Linear({flat_size(shape_in)}, {shape_out[0]})")],
                    expr=ACTIVATION_CALLS[node.get("activation")].format(f"self.fc{i}({flat})"),
                    prefixes={f"layers.n{i}.1": f"fc{i}"})


@register_emitter("output")
def _output(node: Node, shape_in: Shape, shape_out: Shape, h: str) -> NodeCode:
    """Global average pooling of a spatial input, then the linear classifier."""
    i = node.id
    pooled = f"{h}.mean(dim=(2, 3))" if is_spatial(shape_in) else h  # global average pool
    index = 1 if is_spatial(shape_in) else 0                          # after GlobalAvgPool
    return NodeCode(attrs=[(f"head{i}", f"nn.Linear({shape_in[0]}, {shape_out[0]})")],
                    expr=f"self.head{i}({pooled})", prefixes={f"layers.n{i}.{index}": f"head{i}"})


def reconcile_expr(var: str, shape: Shape, target: Shape) -> str:
    """Source bringing ``var`` of ``shape`` to ``target`` (pool, then truncate or zero-pad
    channels): the steps of ``Merge._reconcile``, in its order."""
    expr = var
    if is_spatial(shape) and shape[1:] != target[1:]:
        expr = f"F.adaptive_avg_pool2d({expr}, ({target[1]}, {target[2]}))"
    have, want = shape[0], target[0]
    if have > want:
        expr = f"{expr}[:, :{want}]"
    elif have < want:
        pad = [0, 0] * (len(shape) - 1) + [0, want - have]  # the last pair pads dim 1
        expr = f"F.pad({expr}, ({', '.join(map(str, pad))}))"
    return expr


def reconcile_note(var: str, shape: Shape, target: Shape) -> str:
    """Words for what :func:`reconcile_expr` does to ``var`` ('' when it passes unchanged)."""
    steps = []
    if is_spatial(shape) and shape[1:] != target[1:]:
        steps.append(f"pooled {shape[1]}x{shape[2]} -> {target[1]}x{target[2]}")
    unit = "channels" if is_spatial(shape) else "features"
    if shape[0] > target[0]:
        steps.append(f"truncated {shape[0]} -> {target[0]} {unit}")
    elif shape[0] < target[0]:
        steps.append(f"zero-padded {shape[0]} -> {target[0]} {unit}")
    return f"{var} {' and '.join(steps)}" if steps else ""


def merge_lines(node_id: int, inputs: list[tuple[str, Shape]], target: Shape) -> list[str]:
    """A comment saying how the inputs are reconciled (to the first) and the summing line."""
    notes = [n for n in (reconcile_note(v, s, target) for v, s in inputs) if n]
    names = " + ".join(v for v, _ in inputs)
    comment = f"# node {node_id} sums {names}" + (f": {'; '.join(notes)}" if notes else "")
    terms = " + ".join(reconcile_expr(v, s, target) for v, s in inputs)
    return [comment, f"m{node_id} = {terms}  # {shape_text(target)}"]


@dataclass(frozen=True)
class GeneratedModel:
    """The generated source, its class name and the compiled -> generated tensor-name map."""

    source: str
    class_name: str
    prefixes: Mapping[str, str]

    def rename(self, key: str) -> str:
        """The generated model's name for a compiled module's tensor name."""
        prefix, _, leaf = key.rpartition(".")
        if prefix not in self.prefixes:
            raise KeyError(f"tensor {key!r} has no counterpart in the generated model")
        return f"{self.prefixes[prefix]}.{leaf}"

    def key_map(self, keys) -> dict[str, str]:
        return {k: self.rename(k) for k in keys}

    def remap(self, state: Mapping) -> dict:
        """A compiled state dict renamed for the generated class (same tensors, new keys)."""
        return {self.rename(k): v for k, v in state.items()}


def node_lines(node: Node, preds: list[tuple[str, Shape]], shape_in: Shape, shape_out: Shape,
               label: int, place: str = "") -> tuple[list[str], NodeCode]:
    """One node's forward lines (its inputs merged or concatenated first) and its code, the
    node's value named ``x{label}``; ``preds`` are its inputs' (variable, shape) pairs."""
    lines = []
    if len(preds) > 1 and OPS[node.op].concat:
        lines.append(f"m{label} = torch.cat([{', '.join(v for v, _ in preds)}], 1)"
                     f"  # {shape_text(shape_in)}")
        h = f"m{label}"
    elif len(preds) > 1:
        lines += merge_lines(label, preds, shape_in)
        h = f"m{label}"
    else:
        h = preds[0][0] if preds else "x"
    code = EMITTERS[node.op](node, shape_in, shape_out, h)
    where = f"{place}: " if place else ""
    lines.append(f"x{label} = {code.expr}  # {where}{node.op} -> {shape_text(shape_out)}")
    return lines, code


def forward_lines(genome: Genome, info: GenomeInfo) -> tuple[list[str], NodeCode]:
    """The body of ``forward`` and the collected layer attributes and renames of all nodes."""
    lines, every = [], NodeCode()
    for node_id in info.order:
        preds = [(f"x{p}", info.out_shapes[p]) for p in genome.predecessors(node_id)]
        more, code = node_lines(genome.node(node_id), preds, info.in_shapes[node_id],
                                info.out_shapes[node_id], node_id)
        lines += more
        every.attrs += code.attrs
        every.prefixes.update(code.prefixes)
    lines.append(f"return x{genome.output_node.id}")
    return lines, every


# A writer of cell genomes' model.py (compile/codegen_cells.py registers one): the cell genome,
# the class name and the note -> the module, or None to write the network flat.
CELL_WRITERS: list[Callable[[Genome, str, str], GeneratedModel | None]] = []


def generate(genome: Genome, class_name: str = "EvolvedNet", info: GenomeInfo | None = None,
             note: str = "") -> GeneratedModel:
    """Write ``genome`` as a standalone PyTorch module file (see the module docstring); a cell
    genome with its cells as classes of their own where a registered writer can."""
    if not class_name.isidentifier():
        raise ValueError(f"class name {class_name!r} is not a Python identifier")
    if expand(genome) is not genome:
        for writer in CELL_WRITERS:
            written = writer(genome, class_name, note)
            if written is not None:
                return written
    return generate_flat(genome, class_name, info, note)


def generate_flat(genome: Genome, class_name: str = "EvolvedNet",
                  info: GenomeInfo | None = None, note: str = "", classes: str = "",
                  extra: tuple[list[tuple[str, str]], list[str], dict[str, str]] | None = None
                  ) -> GeneratedModel:
    """The module with every node of ``genome``'s network in one class; ``extra`` replaces the
    network's attributes, forward lines and renames (a cell writer's), ``classes`` is source
    written before the network's class."""
    info = info or analyze(genome)
    network = expand(genome)       # a cell genome is written out as its network
    if network is not genome:
        info = analyze(network)
    if extra is None:
        lines, code = forward_lines(network, info)
        extra = (code.attrs, lines, dict(code.prefixes))
    attrs, lines, prefixes = extra
    input_shape = tuple(genome.input_node.get("shape"))
    source = TEMPLATE.format(
        hash=genome.hash, summary=info.summary(), note=f"\n{note}\n" if note else "",
        input_shape=input_shape, num_classes=genome.output_node.get("num_classes"),
        genes=dict(genome.genes), cls=class_name, classes=classes,
        attrs="\n".join(f"        self.{name} = {ctor}" for name, ctor in attrs)
        or "        pass",
        in_shape=shape_text(input_shape),
        body="\n".join(f"        {line}" for line in lines))
    return GeneratedModel(source, class_name, prefixes)


TEMPLATE = '''"""A network found by evograph neuroevolution (genome {hash}).

{summary}.

Standalone: needs only torch (and safetensors to read the weights). Load and use it like any model:

    from model import load
    net = load("model.safetensors")        # eval mode; call net.train() to keep training
    logits = net(torch.randn(4, *INPUT_SHAPE))
{note}"""

import torch
from torch import nn
from torch.nn import functional as F

INPUT_SHAPE = {input_shape}   # per sample; 1-D signals (C, L) run as (C, 1, L)
NUM_CLASSES = {num_classes}
# the training genes evolution chose (optimizer, learning rate, weight decay, batch size)
GENES = {genes!r}
{classes}

class {cls}(nn.Module):
    """{summary}."""

    def __init__(self):
        super().__init__()
{attrs}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x: {in_shape} -> logits (N, NUM_CLASSES)
{body}


def load(weights: str = "model.safetensors", device: str = "cpu") -> {cls}:
    """Build the network and load its weights (safetensors: no pickle), in eval mode."""
    from safetensors.torch import load_file

    net = {cls}()
    net.load_state_dict(load_file(weights, device="cpu"), strict=True)
    return net.to(device).eval()


if __name__ == "__main__":
    net = load()
    print(net(torch.zeros(2, *INPUT_SHAPE)).shape)
'''
