"""When to train a group of same-architecture candidates batched: a rule learnt from the very
trainings a worker runs.

Batching (:mod:`evograph.compile.training.batched`) pays for small networks, whose steps are dominated by
per-operation overhead, and can lose for larger ones, which are compute- or memory-bound either
way; where the line falls depends on the machine and the network. So :class:`BatchRule` asks the
clock, but never spends time on a probe: every training a worker runs, alone or batched, is
timed anyway, and :class:`StepTimes` keeps its seconds per step by *cost class*
(:func:`cost_class`: the kind of network, its FLOPs per sample within a factor of two, the
optimizer, batch size and device; batched ones also by group size K). A group is trained
batched when the seconds per step of K candidates alone, over those of the K batched, is at
least ``threshold``; until both have been seen for its class (batched three times) it is trained
batched, and what that training takes is then known; a class refused 16 times in a row is
trained batched once more, so that a verdict follows the machine. Evolution keeps producing new
architectures of similar cost, so a class, once seen, goes on deciding for them.

(An earlier rule timed probe trainings of 1 and 6 steps, alone and batched, on copies of each
new class's candidates. In the throughput benchmark's 160-evaluation runs those probes took 17%
of the workers' time — more than batching saved: a class there is met only a few times.)
"""

from __future__ import annotations

import bisect
import statistics
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from ...genome.cells import is_cell_genome
from ...genome.core import Genome
from ...genome.validate import analyze

CostClass = tuple


def cost_class(genome: Genome, device: torch.device | str) -> CostClass:
    """Candidates whose step times behave alike: the kind of network (conv; cells; a plain chain
    of dense layers, which batches by the direct path; other dense graphs, by ``vmap``), FLOPs per
    sample within a factor of two, optimizer, batch size and device."""
    genes = genome.gene
    flops = max(analyze(genome).flops, 1)
    return (_kind(genome), flops.bit_length(), genes.get("optimizer"), genes.get("batch_size"),
            str(device))


def _kind(genome: Genome) -> str:
    if is_cell_genome(genome):
        return "cell"            # a conv network, stacked from cells (genome.cells)
    if genome.nodes_with_op("conv"):
        return "conv"
    hidden = [n for n in genome.nodes if n.op not in ("input", "output")]
    chain = all(n.op == "dense" for n in hidden) and len(genome.edges) == len(hidden) + 1 \
        and all(len(genome.successors(n.id)) <= 1 for n in genome.nodes)
    return "dense-chain" if chain else "dense"


@dataclass
class StepTimes:
    """Seconds per training step seen in this process, by cost class: of one candidate trained
    alone, and of K trained batched (per K). Each figure is the median of the last ``window``
    trainings, so that one slow outlier (another process's burst, a first training's one-off
    set-up) moves nothing once three are in. Also how many times in a row the rule has said no
    to batching each class (see :class:`BatchRule`)."""

    window: int = 5
    alone: dict[CostClass, deque[float]] = field(default_factory=dict)
    batched: dict[CostClass, dict[int, deque[float]]] = field(default_factory=dict)
    refusals: dict[CostClass, int] = field(default_factory=dict)

    def batched_count(self, key: CostClass) -> int:
        """Batched trainings of this class remembered (every K)."""
        return sum(len(seen) for seen in self.batched.get(key, {}).values())

    def observe_alone(self, key: CostClass, seconds_per_step: float) -> None:
        self.alone.setdefault(key, deque(maxlen=self.window)).append(seconds_per_step)

    def observe_batched(self, key: CostClass, k: int, seconds_per_step: float) -> None:
        by_k = self.batched.setdefault(key, {})
        by_k.setdefault(k, deque(maxlen=self.window)).append(seconds_per_step)

    def alone_step(self, key: CostClass) -> float | None:
        seen = self.alone.get(key)
        return statistics.median(seen) if seen else None

    def batched_step(self, key: CostClass, k: int) -> float | None:
        """For K batched: as seen; else interpolated linearly between the nearest group sizes
        seen on either side; else scaled in proportion to K from the nearest one seen (which
        overestimates a larger group's time, whose fixed costs are shared — the rule's periodic
        recheck trains it batched now and then — and underestimates a smaller one's, which is
        then trained batched and measured)."""
        by_k = self.batched.get(key)
        if not by_k:
            return None
        if k in by_k:
            return statistics.median(by_k[k])
        sizes = sorted(by_k)
        i = bisect.bisect(sizes, k)
        if 0 < i < len(sizes):
            (k0, k1) = sizes[i - 1], sizes[i]
            t0, t1 = statistics.median(by_k[k0]), statistics.median(by_k[k1])
            return t0 + (t1 - t0) * (k - k0) / (k1 - k0)
        nearest = sizes[i - 1] if i else sizes[0]
        return statistics.median(by_k[nearest]) * k / nearest


@dataclass
class BatchRule:
    """When to train a group batched: ``never``, ``always``, or ``auto`` — batched when the
    speed-up predicted from the step times seen (:class:`StepTimes`) is at least ``threshold``;
    also while its class has not been seen alone, or batched fewer than ``min_batched`` times
    (the first batched training carries one-off costs — ``vmap``'s set-up, a GPU's kernel
    loading — that a median of three leaves out); and once after every ``recheck_every``
    refusals in a row, so that a "no" is measured again rather than kept for good."""

    mode: str = "auto"
    threshold: float = 1.2
    min_batched: int = 3
    recheck_every: int = 16
    times: StepTimes = field(default_factory=StepTimes)

    def decide(self, genomes: Sequence[Genome],
               device: torch.device | str) -> tuple[bool, float | None]:
        """(batch them?, the predicted speed-up, or None when not predicted)."""
        if self.mode != "auto":
            return self.mode == "always", None
        key, k = cost_class(genomes[0], device), len(genomes)
        alone, together = self.times.alone_step(key), self.times.batched_step(key, k)
        if alone is None or together is None or self.times.batched_count(key) < self.min_batched:
            return True, None
        speedup = k * alone / max(together, 1e-12)
        if speedup >= self.threshold:
            self.times.refusals.pop(key, None)
            return True, speedup
        refused = self.times.refusals.get(key, 0) + 1
        self.times.refusals[key] = 0 if refused >= self.recheck_every else refused
        return refused >= self.recheck_every, speedup
