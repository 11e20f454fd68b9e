"""When to train a group of same-architecture candidates batched: a measured rule.

Batching (:mod:`evograph.compile.batched`) pays for small networks, whose steps are dominated by
per-operation overhead, and can lose for larger ones, which are compute- or memory-bound either
way; where the line falls depends on the machine. So :class:`BatchRule` measures it: training runs
of 1 and ``1 + probe`` steps, one candidate alone and the K batched, on copies (their difference
separates the per-step time from the set-up), predict both for the group's actual number of
steps. Timings are cached per :func:`cost_class`, so evolution, which keeps producing new
architectures of similar cost, pays for a measurement once per class and process.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from ..genome.core import Genome
from ..genome.validate import analyze
from .batched import train_batched
from .fitness import Splits
from .train import train_steps


def _min_seconds(runs: Sequence[Callable[[], Any]], device: torch.device,
                 repeats: int = 3) -> list[float]:
    """The fastest of ``repeats`` timed calls of each run, interleaved so that load from other
    processes hits all alike; one untimed warm-up call of each first."""
    best = [math.inf] * len(runs)
    for run in runs:
        run()
    for _ in range(repeats):
        for i, run in enumerate(runs):
            start = time.perf_counter()
            run()
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            best[i] = min(best[i], time.perf_counter() - start)
    return best


@dataclass(frozen=True)
class Timing:
    """Seconds of set-up and per step, for one candidate alone and for K batched."""

    k: int
    one_setup: float
    one_step: float
    many_setup: float
    many_step: float

    def speedup(self, steps: int) -> float:
        """(K trainings of ``steps`` steps one by one) / (the K batched)."""
        one = self.one_setup + steps * self.one_step
        many = self.many_setup + steps * self.many_step
        return self.k * one / max(many, 1e-12)


def measure(modules: Sequence[nn.Module], genomes: Sequence[Genome], data: Splits,
            device: torch.device, probe: int = 5) -> Timing:
    """Time training runs of 1 and ``1 + probe`` steps, alone and batched, on copies of
    ``modules`` (the candidates are not touched); their difference separates the per-step time
    from the set-up, which a short probe would otherwise overweight."""
    genes = [g.gene for g in genomes]
    batch = int(genes[0].get("batch_size", 64))
    alone = copy.deepcopy(modules[0])
    copies = [copy.deepcopy(m) for m in modules]
    seeds = range(len(copies))

    def one(steps: int) -> Callable[[], Any]:
        return lambda: train_steps(alone, data, genes[0], steps, batch, 0, device)

    def many(steps: int) -> Callable[[], Any]:
        return lambda: train_batched(copies, genes, data, steps, batch, seeds, device)

    o1, o2, m1, m2 = _min_seconds([one(1), one(1 + probe), many(1), many(1 + probe)], device)
    one_step, many_step = max(o2 - o1, 0.0) / probe, max(m2 - m1, 0.0) / probe
    return Timing(len(modules), max(o1 - one_step, 0.0), one_step, max(m1 - many_step, 0.0),
                  many_step)


def cost_class(genome: Genome, k: int, device: torch.device) -> tuple:
    """Candidates whose batched speed-up behaves alike: same kind of layers, FLOPs per sample
    within a factor of two, same group size, optimizer, batch size and device."""
    kind = "conv" if genome.nodes_with_op("conv") else "dense"
    flops = max(analyze(genome).flops, 1)
    genes = genome.gene
    return (kind, round(math.log2(flops)), k, genes.get("optimizer"), genes.get("batch_size"),
            str(device))


@dataclass
class BatchRule:
    """When to train a group batched: ``never``, ``always``, or ``auto`` — batched when the
    speed-up predicted from a measurement (:func:`measure`) for the group's number of training
    steps is at least ``threshold``. A measurement is cached per :func:`cost_class`, so
    evolution, which keeps producing new architectures of similar cost, pays for it once per
    class and process rather than once per group."""

    mode: str = "auto"
    threshold: float = 1.2
    probe_steps: int = 5
    cache: dict[tuple, Timing] = field(default_factory=dict)

    def decide(self, modules: Sequence[nn.Module], genomes: Sequence[Genome], data: Splits,
               device: torch.device, steps: int = 100) -> tuple[bool, float | None]:
        """(batch them?, predicted speed-up for ``steps`` steps, or None when not measured)."""
        if self.mode != "auto":
            return self.mode == "always", None
        key = cost_class(genomes[0], len(modules), device)
        if key not in self.cache:
            self.cache[key] = measure(modules, genomes, data, device, self.probe_steps)
        speedup = self.cache[key].speedup(steps)
        return speedup >= self.threshold, speedup
