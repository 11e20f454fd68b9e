"""Weight inheritance: copy a parent's tensors into a freshly built child (Real et al. 2017:
"children inherit the parent's weights whenever possible").

Tensors are matched by name (``layers.n<id>.…``: node ids are stable across mutations).

* Same name and shape: copied unchanged. This covers every node the mutation did not touch, so a
  child made by IDENTITY or ALTER-LEARNING-RATE computes exactly its parent's outputs.
* Same name, same rank, different shape (ALTER-NUMBER-OF-CHANNELS, FILTER-SIZE, MLP widths,
  a layer whose input channels changed): the overlapping block is copied — the leading output
  and input channels / features, and for convolution kernels the *centred* window (a 3x3 kernel
  grown to 5x5 keeps its 3x3 centre, the border starts from fresh initialisation; shrunk, it keeps
  the centre). Everything outside the block keeps its fresh initialisation.
* No parent tensor of that name (a new node), or ``edit.inherit`` False (RESET-WEIGHTS): fresh.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn


@dataclass
class InheritReport:
    """Which child tensors were copied whole, copied in part, or left freshly initialised."""

    copied: list[str] = field(default_factory=list)
    partial: list[str] = field(default_factory=list)
    fresh: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, list[str]]:
        return {"copied": self.copied, "partial": self.partial, "fresh": self.fresh}


def _overlap(child_shape: torch.Size, parent_shape: torch.Size, is_kernel: bool):
    """Slices selecting the overlapping block in child and parent (kernels centred)."""
    child_idx, parent_idx = [], []
    for dim, (c, p) in enumerate(zip(child_shape, parent_shape)):
        n = min(c, p)
        if is_kernel and dim >= 2:  # spatial kernel dims: centre the window
            child_idx.append(slice((c - n) // 2, (c - n) // 2 + n))
            parent_idx.append(slice((p - n) // 2, (p - n) // 2 + n))
        else:
            child_idx.append(slice(0, n))
            parent_idx.append(slice(0, n))
    return tuple(child_idx), tuple(parent_idx)


@torch.no_grad()
def inherit_weights(child: nn.Module, parent_state: dict[str, torch.Tensor],
                    inherit: bool = True) -> InheritReport:
    """Copy what can be copied from ``parent_state`` into ``child`` (in place); report it."""
    report = InheritReport()
    for name, tensor in child.state_dict(keep_vars=True).items():
        source = parent_state.get(name) if inherit else None
        if source is None or source.dim() != tensor.dim():
            report.fresh.append(name)
            continue
        source = source.to(device=tensor.device, dtype=tensor.dtype)
        if source.shape == tensor.shape:
            tensor.data.copy_(source)
            report.copied.append(name)
            continue
        child_idx, parent_idx = _overlap(tensor.shape, source.shape, tensor.dim() == 4)
        tensor.data[child_idx].copy_(source[parent_idx])
        report.partial.append(name)
    return report
