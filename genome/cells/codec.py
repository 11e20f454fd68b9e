"""Codecs of the cell spaces: what the RL controller (Zoph & Le 2017) and random search over
decisions emit on them.

* ``nb201`` — a NAS-Bench-201 cell as six decisions, one op per edge in the order of the
  architecture string (``edge 0->1``, ``edge 0->2``, ``edge 1->2``, ``edge 0->3``, …), with the
  space's ops as choices. Over the budgets, the costliest conv steps down — 3x3 to 1x1 to a
  skip — from the last edge back.
* ``nasnet`` — NASNet's controller (Zoph et al. 2018, §3): for each block of the normal, then the
  reduction cell, its two inputs (a hidden state before the block) and its two ops. NASNet's
  fifth decision, the combination (add or concatenate), is not searched: blocks add, as in the
  NASNet-A and AmoebaNet cells. Over the budgets, ops step down to identity from the last back.

Every sequence decodes to a valid genome of the space."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..codec import Decision, NotEncodable, SpaceCodec, register_codec
from ..core import Genome
from ..ops import Shape
from . import nasnet
from .nb201 import EDGES, cell_ops, nb201_genome
from .ops import NASNET_OPS, NB201_OPS
from .skeleton import skeleton_node

STEP_DOWN = {"nor_conv_3x3": "nor_conv_1x1", "nor_conv_1x1": "skip_connect"}


@register_codec("nb201")
class NB201Codec(SpaceCodec):
    """Six edge decisions over the space's ops (see the module docstring)."""

    name = "nb201"

    def __init__(self, space: Any, input_shape: Shape, num_classes: int):
        super().__init__(space, input_shape, num_classes)
        self.ops = tuple(op for op in space.ops if op in NB201_OPS)
        self._finish([Decision(f"edge {i}->{j}", self.ops) for i, j in EDGES])

    def _build(self, idx: Sequence[int]) -> Genome:
        space = self.space
        return nb201_genome([self.ops[i] for i in idx], self.input_shape, self.num_classes,
                            space.cell_channels, space.cells, space.stages,
                            dict(space.initial_genes))

    def _shrink(self, idx: list[int]) -> bool:
        for position in reversed(range(len(idx))):
            smaller = STEP_DOWN.get(self.ops[idx[position]])
            while smaller is not None and smaller not in self.ops:
                smaller = STEP_DOWN.get(smaller)
            if smaller is not None:
                idx[position] = self.ops.index(smaller)
                return True
        return False

    def encode(self, genome: Any) -> tuple[int, ...]:
        if not isinstance(genome, Genome) or skeleton_node(genome) is None:
            raise NotEncodable("not an nb201 cell genome")
        ops = cell_ops(genome)
        if set(ops) != set(EDGES) or any(op not in self.ops for op in ops.values()):
            raise NotEncodable("the cell has an op outside this codec's choices")
        return tuple(self.ops.index(ops[e]) for e in EDGES)


@register_codec("nasnet")
class NASNetCodec(SpaceCodec):
    """Per block of each cell: ``input 1``, ``input 2`` (hidden states 0 .. b + 1) and ``op 1``,
    ``op 2`` (the space's ops); see the module docstring."""

    name = "nasnet"

    def __init__(self, space: Any, input_shape: Shape, num_classes: int):
        super().__init__(space, input_shape, num_classes)
        self.ops = tuple(op for op in space.ops if op in NASNET_OPS)
        decisions = []
        for cell in nasnet.CELLS:
            for b in range(space.blocks):
                states = tuple(range(b + 2))
                decisions += [Decision(f"{cell} block {b + 1} input 1", states),
                              Decision(f"{cell} block {b + 1} input 2", states),
                              Decision(f"{cell} block {b + 1} op 1", self.ops),
                              Decision(f"{cell} block {b + 1} op 2", self.ops)]
        self._finish(decisions)

    def _cells(self, idx: Sequence[int]) -> dict[str, tuple[nasnet.Block, ...]]:
        cells, position = {}, 0
        for cell in nasnet.CELLS:
            blocks = []
            for _ in range(self.space.blocks):
                a, b, op_a, op_b = idx[position:position + 4]
                blocks.append(nasnet.Block((a, b), (self.ops[op_a], self.ops[op_b])))
                position += 4
            cells[cell] = tuple(blocks)
        return cells

    def _build(self, idx: Sequence[int]) -> Genome:
        space, cells = self.space, self._cells(idx)
        return nasnet.nasnet_genome(cells["normal"], cells["reduce"], self.input_shape,
                                    self.num_classes, space.cell_channels, space.cells,
                                    space.stages, dict(space.initial_genes))

    def _shrink(self, idx: list[int]) -> bool:
        cheapest = self.ops.index("identity") if "identity" in self.ops else 0
        for position in reversed(range(len(idx))):
            if "op" in self.decisions[position].name and idx[position] != cheapest:
                idx[position] = cheapest
                return True
        return False

    def encode(self, genome: Any) -> tuple[int, ...]:
        node = skeleton_node(genome) if isinstance(genome, Genome) else None
        if node is None or node.get("name") != "nasnet":
            raise NotEncodable("not a nasnet cell genome")
        out: list[int] = []
        for cell in nasnet.CELLS:
            blocks = nasnet.cell_blocks(genome, cell)
            if len(blocks) != self.space.blocks:
                raise NotEncodable(f"the {cell} cell has {len(blocks)} blocks, the codec "
                                   f"{self.space.blocks}")
            for block in blocks:
                if any(op not in self.ops for op in block.ops):
                    raise NotEncodable("a block has an op outside this codec's choices")
                out += [*block.inputs, *(self.ops.index(op) for op in block.ops)]
        return tuple(out)
