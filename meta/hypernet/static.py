"""The static hypernetwork of Ha, Dai & Le (2016) as a way of decoding a genome into weights.

*HyperNetworks* (§3.1, "static hypernetwork"): instead of storing every convolution kernel, store
one small embedding ``z`` per ``f x f``-channel slice of every kernel and a single shared
two-layer linear generator (:class:`~evograph.meta.hypernet.core.SliceGenerator`) that turns
each embedding into its slice. The embeddings and the generator are trained end to end; the
network's kernels are *generated*, never stored as free parameters. Over a cell space
(``nb201``, ``nasnet``) every convolution of every cell copy is generated the same way.

Here the compiled :class:`~evograph.compile.builder.GenomeModule` is run unchanged through
``torch.func.functional_call`` with the generated kernels in place of its own (DESIGN principle 8:
meta-learners work over parameter dicts). Every conv and dense kernel is generated; biases,
batch-norm affines and the output classifier stay ordinary parameters. Each slice has its own
embedding, so the number of learned values is ``slices * z_dim`` plus the generator instead of
``f * f * kh * kw`` per slice.

``fitness = "hypernet-static"`` trains a genome this way with the optimiser, learning rate and
batch size its genes say — everything else is :class:`~evograph.compile.training.sgd.SGDTraining` — and
reports how many parameters the hypernetwork needs against the plain network.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.func import functional_call

from ...compile.builder import GenomeModule
from ...compile.determinism import seeded_cpu_rng
from ...compile.training.fitness import Score, Splits, register_fitness
from ...compile.training.sgd import SGDTraining
from ...genome.cells import expand
from ...genome.core import Genome
from ...genome.validate import analyze
from .core import (
    SliceGenerator,
    Slot,
    assemble,
    grid,
    largest_kernel,
    ordinary_parameters,
    weight_slots,
)


def hidden_ops(network: Genome) -> tuple[str, ...]:
    """The ops whose kernels are generated: every op of the network but the classifier (the
    output), as Ha et al. generate the hidden layers' kernels (``conv`` and ``dense`` in a
    chain genome; the cell ops' convolutions in a cell network)."""
    return tuple(sorted({node.op for node in network.nodes} - {"input", "output"}))


class StaticHypernet(nn.Module):
    """Learned per-slice embeddings plus one shared generator for the kernels of ``slots``.

    ``z`` has one row per kernel slice of every slot, in slot order, row-major over each slot's
    (out-slice, in-slice) grid. ``forward()`` returns ``{parameter name: generated kernel}``.
    """

    def __init__(self, slots: list[Slot], block: int = 16, z_dim: int = 16, hidden: int = 16):
        super().__init__()
        self.slots = list(slots)
        self.grids = [grid(s, block) for s in self.slots]
        kh, kw = largest_kernel(self.slots)
        self.generator = SliceGenerator(z_dim, hidden, block, kh, kw) if self.slots else None
        rows = sum(r * c for r, c in self.grids)
        self.z = nn.Parameter(torch.randn(rows, z_dim))             # (slices, z_dim)

    def forward(self) -> dict[str, torch.Tensor]:
        if self.generator is None:
            return {}
        slices = self.generator(self.z)                               # (slices, f, f, kh, kw)
        out, start = {}, 0
        for slot, (rows, cols) in zip(self.slots, self.grids):
            out[slot.weight] = assemble(slices[start:start + rows * cols], slot, rows, cols)
            start += rows * cols
        return out


class HyperNetworked(nn.Module):
    """A GenomeModule whose kernels come from a StaticHypernet on every forward pass.

    The module's own kernels are left untouched (and receive no gradient); :meth:`realize` copies
    the generated ones into it, e.g. before its weights are saved or exported.
    """

    def __init__(self, net: GenomeModule, hyper: StaticHypernet):
        super().__init__()
        self.net, self.hyper = net, hyper
        self.generated = frozenset(s.weight for s in hyper.slots)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return functional_call(self.net, self.hyper(), (x,), strict=False)

    def trainable_parameters(self) -> int:
        """Parameters actually learned: the hypernetwork's plus the net's ordinary ones."""
        return (sum(p.numel() for p in self.hyper.parameters())
                + ordinary_parameters(self.net, set(self.generated)))

    @torch.no_grad()
    def realize(self) -> None:
        params = dict(self.net.named_parameters())
        for name, weight in self.hyper().items():
            params[name].copy_(weight)


def static_hypernet(module: GenomeModule, genome: Genome, *, block: int = 16, z_dim: int = 16,
                    hidden: int = 16, seed: int = 0,
                    device: torch.device | str | None = None) -> HyperNetworked:
    """Wrap ``module`` (compiled from ``genome``) with a freshly initialised static hypernetwork
    generating its hidden layers' kernels; initialisation is drawn from ``seed`` only. A cell
    genome's network has every conv of every cell copy, the stem and the reductions generated
    (separable, dilated and 1x7-then-7x1 convs included: one generator serves every kernel
    size, a smaller kernel taking the centre of the largest)."""
    network = expand(genome)
    slots = weight_slots(module, network, hidden_ops(network), bias=False)
    with seeded_cpu_rng(seed):
        hyper = StaticHypernet(slots, block, z_dim, hidden)
    wrapped = HyperNetworked(module, hyper)
    return wrapped.to(device) if device is not None else wrapped


@register_fitness("hypernet-static")
@dataclass
class StaticHypernetTraining(SGDTraining):
    """Train a genome whose kernels are generated by a static hypernetwork (Ha et al. 2016).

    Same parameters and contract as ``sgd`` (fitness: validation accuracy after training) plus
    the generator's sizes: ``block`` (channels per kernel slice), ``z_dim`` (embedding size per
    slice), ``hidden`` (the generator's hidden width). Metrics add ``params_hypernet`` (what is
    learned), ``params_plain`` (the same network with ordinary weights) and their ratio.
    """

    block: int = 16
    z_dim: int = 16
    hidden: int = 16
    weights_trained = False   # no annotation: not a parameter; generated kernels, export retrains

    @classmethod
    def example(cls, folder: Any) -> dict[str, Any]:
        """Tiny generator sizes and a few steps (the contract test)."""
        return {"params": {"steps": 3, "block": 8, "z_dim": 8, "hidden": 8}}

    def __post_init__(self) -> None:
        super().__post_init__()
        for key in ("block", "z_dim", "hidden"):
            if not isinstance(getattr(self, key), int) or not 1 <= getattr(self, key) <= 1024:
                raise ValueError(f"{key}: must be an integer in [1, 1024]")

    def score(self, module: nn.Module, genome: Genome, data: Splits, *, seed: int,
              device: torch.device) -> Score:
        wrapped = static_hypernet(module, genome, block=self.block, z_dim=self.z_dim,
                                  hidden=self.hidden, seed=seed, device=device)
        score = super().score(wrapped, genome, data, seed=seed, device=device)
        wrapped.realize()           # the module now holds the generated kernels (saved, exported)
        plain = analyze(genome).params
        learned = wrapped.trainable_parameters()
        score.metrics.update(params_plain=plain, params_hypernet=learned,
                             params_ratio=learned / max(plain, 1),
                             generated_tensors=len(wrapped.generated))
        return score
