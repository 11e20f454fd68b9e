"""``model.py`` of a cell genome: each distinct cell written once, as a ``Cell`` class built for
``C`` channels, and the network's class stacking its copies, as the NASNet, ENAS, DARTS and
NAS-Bench-201 code bases write their networks (rather than every copy's layers written out flat).

A cell genome expands to a network in which copy k of template node t has id
``CELL_ID_BASE * (k + 1) + t`` (:mod:`evograph.genome.cells.skeleton`). Each copy is written with
symbolic shapes: its smallest channel count is ``C``, other channel counts ``2 * C`` or
``C // 2`` (exact multiples and divisors only), and its input's spatial size ``H`` x ``W``.
Copies that then read the same are one class, constructed with each copy's own ``C``; copies
whose code differs (the first cell after a reduction reads a larger earlier state) get classes
of their own. The skeleton's own nodes (stem, reductions, head) stay in the network's class.
The layer attributes keep the template's node ids (``conv5`` is edge node 5 of the genome), so
the weights map one to one: ``layers.n2005.1`` of the compiled module is ``cells.1.conv5``.

When a copy cannot be written this way (its code would need a concrete spatial size, or it has
no single output), :func:`write_cells` declines and the network is written flat.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from ..genome.cells.skeleton import CELL_ID_BASE, EXTRA_ID_BASE, expand, place_of
from ..genome.core import Genome, Node
from ..genome.ops import Shape
from ..genome.validate import GenomeInfo, analyze
from .codegen import CELL_WRITERS, GeneratedModel, generate_flat, node_lines, shape_text

SPATIAL_IN_CODE = re.compile(r"\b[HW]\b")   # a spatial symbol outside a comment: not writable


class Sym(int):
    """A shape entry that writes itself as an expression of the copy's symbols (``C``,
    ``2 * C``, ``H // 2``) in generated code and comments; arithmetic on it stays symbolic."""

    def __new__(cls, value: int, names: Symbols, kind: str) -> Sym:  # noqa: PYI034 (3.10)
        obj = super().__new__(cls, value)
        obj.names, obj.kind = names, kind
        return obj

    def __str__(self) -> str:
        return self.names.text(int(self), self.kind)

    __repr__ = __str__

    def __format__(self, spec: str) -> str:
        return str(self) if not spec else format(int(self), spec)

    def _same(self, value: int) -> Sym:
        return Sym(value, self.names, self.kind)

    def __add__(self, other: int) -> Sym:
        return self._same(int(self) + int(other))

    def __radd__(self, other: int) -> Sym:
        return self._same(int(other) + int(self))

    def __sub__(self, other: int) -> Sym:
        return self._same(int(self) - int(other))

    def __mul__(self, other: int) -> Sym:
        return self._same(int(self) * int(other))

    def __rmul__(self, other: int) -> Sym:
        return self._same(int(other) * int(self))

    def __floordiv__(self, other: int) -> Sym:
        return self._same(int(self) // int(other))


@dataclass(frozen=True)
class Symbols:
    """The bases of one copy: channels ``C``, height ``H``, width ``W``, and the channels of
    each input ``s<i>`` where they are not ``C`` (``C_s<i>``, as NASNet's and DARTS' cells take
    the channels of their two earlier states)."""

    channels: int
    height: int
    width: int
    inputs: tuple[int, ...] = ()

    @property
    def arguments(self) -> list[tuple[str, int]]:
        """The constructor's parameters and this copy's values: C, then C_s<i>."""
        return [("C", self.channels)] + [(f"C_s{i}", c) for i, c in enumerate(self.inputs)
                                         if c != self.channels]

    def text(self, value: int, kind: str) -> str:
        if kind == "C":
            for name, channels in self.arguments:
                if value == channels:
                    return name
            return _relative(value, self.channels, "C", divisors=True)
        base = self.height if kind == "H" else self.width
        return str(value) if base == 1 else _relative(value, base, kind, divisors=False)

    def shape(self, shape: Shape) -> tuple:
        if len(shape) != 3:
            raise _NotWritable("a cell with flat features")
        return (Sym(shape[0], self, "C"), Sym(shape[1], self, "H"), Sym(shape[2], self, "W"))


def _relative(value: int, base: int, name: str, divisors: bool) -> str:
    """``value`` as an exact expression of ``name`` (= base): name, k * name or name // k."""
    if value == base:
        return name
    if value % base == 0 and (divisors or value == 2 * base):
        return f"{value // base} * {name}"
    if base % value == 0 and (divisors or base == 2 * value):
        return f"{name} // {base // value}"
    return str(value)


class _NotWritable(Exception):
    """This copy cannot be written as a class of symbolic shapes."""


@dataclass
class CopyCode:
    """One copy of a cell, written symbolically: its class body and what maps it to the net."""

    index: int                    # position in the network's ModuleList ``cells``
    slots: list[int]              # network ids of the copy's inputs, as s0, s1, ...
    output: int                   # network id of the copy's output
    arguments: list[tuple[str, int]]   # the constructor's (parameter, value): C, C_s0, ...
    init: list[str]               # __init__'s attribute lines, symbolic
    lines: list[str]              # forward's lines, symbolic
    prefixes: dict[str, str] = field(default_factory=dict)   # compiled -> within the cell

    @property
    def body(self) -> str:
        """What makes two copies one class: the same inputs, attributes and forward lines."""
        return "\n".join([str(len(self.slots)), *(n for n, _ in self.arguments), *self.init,
                          *self.lines])


def copies_of(network: Genome, info: GenomeInfo) -> dict[int, list[int]]:
    """Copy number -> its node ids in topological order."""
    out: dict[int, list[int]] = {}
    for node_id in info.order:
        if CELL_ID_BASE <= node_id < EXTRA_ID_BASE:
            out.setdefault(node_id // CELL_ID_BASE, []).append(node_id)
    return out


def write_copy(genome: Genome, network: Genome, info: GenomeInfo, ids: list[int],
               index: int) -> CopyCode:
    """Copy ``ids`` as a symbolic class body; _NotWritable when it cannot be."""
    members = set(ids)
    slots = list(dict.fromkeys(p for n in ids for p in network.predecessors(n)
                               if p not in members))
    outputs = [n for n in ids if any(s not in members for s in network.successors(n))]
    if len(outputs) != 1 or not slots:
        raise _NotWritable("a copy without one input and one output")
    first = info.out_shapes[slots[0]]
    channels = min(shape[0] for n in [*ids, *slots] for shape in (info.out_shapes[n],))
    if len(first) != 3:
        raise _NotWritable("a cell with flat features")
    names = Symbols(channels, first[1], first[2], tuple(info.out_shapes[p][0] for p in slots))
    var = {p: f"s{i}" for i, p in enumerate(slots)}
    var.update({n: f"x{n % CELL_ID_BASE}" for n in ids})
    attrs, lines, prefixes = [], [], {}
    for node_id in ids:
        t, node = node_id % CELL_ID_BASE, network.node(node_id)
        preds = [(var[p], names.shape(info.out_shapes[p])) for p in network.predecessors(node_id)]
        more, code = node_lines(Node.make(t, node.op, **node.p), preds,
                                names.shape(info.in_shapes[node_id]),
                                names.shape(info.out_shapes[node_id]), t,
                                place_of(genome, t) or "")
        attrs += code.attrs
        lines += more
        for compiled, local in code.prefixes.items():
            prefixes[f"layers.n{node_id}" + compiled[len(f"layers.n{t}"):]] = local
    lines.append(f"return x{outputs[0] % CELL_ID_BASE}")
    init = [f"self.{name} = {ctor}" for name, ctor in attrs]
    code = [line.split("  # ")[0] for line in [*init, *lines] if not line.startswith("#")]
    if any(SPATIAL_IN_CODE.search(line) for line in code):
        raise _NotWritable("code that needs a concrete spatial size")
    return CopyCode(index, slots, outputs[0], names.arguments, init, lines, prefixes)


def class_source(name: str, code: CopyCode, uses: list[int], shape_in: str) -> str:
    """The source of one cell class (``uses``: the copies it is, by position in ``cells``)."""
    args = ", ".join(f"s{i}: torch.Tensor" for i in range(len(code.slots)))
    body_init = "\n".join(f"        {line}" for line in code.init) or "        pass"
    body = "\n".join(f"        {line}" for line in code.lines)
    cells = (f"cells {', '.join(map(str, uses))} are" if len(uses) > 1 else
             f"cell {uses[0]} is")
    params = ", ".join(f"{n}: int" for n, _ in code.arguments)
    inputs = "".join(f"; input s{n[3:]} has {n} channels" for n, _ in code.arguments[1:])
    return (f'\n\nclass {name}(nn.Module):\n'
            f'    """The evolved cell for C channels{inputs}. The network\'s {cells} '
            f'this\n    class. Attribute numbers are the genome\'s template node ids."""\n\n'
            f'    def __init__(self, {params}):\n        super().__init__()\n{body_init}\n\n'
            f'    def forward(self, {args}) -> torch.Tensor:\n'
            f'        # s0: {shape_in}\n{body}\n')


def write_cells(genome: Genome, class_name: str, note: str) -> GeneratedModel | None:
    """The cell genome's module with its cells as classes, or None to write it flat."""
    network = expand(genome)
    info = analyze(network)
    copies = copies_of(network, info)
    try:
        codes = [write_copy(genome, network, info, ids, i)
                 for i, ids in enumerate(copies.values())]
    except _NotWritable:
        return None
    kinds = list(dict.fromkeys(c.body for c in codes))
    names = ["Cell"] if len(kinds) == 1 else [f"Cell{chr(65 + i)}" if i < 26 else f"Cell{i}"
                                              for i in range(len(kinds))]
    class_of = {body: name for body, name in zip(kinds, names)}
    classes = "".join(class_source(
        class_of[body], next(c for c in codes if c.body == body),
        [c.index for c in codes if c.body == body], "(N, C, H, W)") for body in kinds)
    by_output = {c.output: c for c in codes}
    inside = {n for ids in copies.values() for n in ids}
    attrs = [("cells", "nn.ModuleList([" + ", ".join(
        f"{class_of[c.body]}({', '.join(str(v) for _, v in c.arguments)})" for c in codes)
        + "])")]
    lines, prefixes = [], {}
    for code in codes:
        prefixes.update({k: f"cells.{code.index}.{v}" for k, v in code.prefixes.items()})
    for node_id in info.order:
        if node_id in by_output:
            c = by_output[node_id]
            lines.append(f"x{node_id} = self.cells[{c.index}](" + ", ".join(
                f"x{s}" for s in c.slots) + f")  # {class_of[c.body]} -> "
                f"{shape_text(info.out_shapes[node_id])}")
        elif node_id not in inside:
            preds = [(f"x{p}", info.out_shapes[p]) for p in network.predecessors(node_id)]
            more, code = node_lines(network.node(node_id), preds, info.in_shapes[node_id],
                                    info.out_shapes[node_id], node_id)
            lines += more
            attrs += code.attrs
            prefixes.update(code.prefixes)
    lines.append(f"return x{network.output_node.id}")
    return generate_flat(genome, class_name, note=note, classes=classes,
                         extra=(attrs, lines, prefixes))


CELL_WRITERS.append(write_cells)
