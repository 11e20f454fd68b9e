"""Toy genomes and a tiny evaluation loop, so the strategies can be exercised (tests, benchmarks)
without training networks.

The bit-string problem is the toy search space of Real et al. 2019 (regularized evolution,
supplementary "toy search space"): a genome is a string of ``n`` bits, its true fitness the
fraction of ones, its measured fitness that plus Gaussian noise; a mutation flips one random bit.
Genomes are plain ``str`` of ``'0'``/``'1'``: immutable, hashable and JSON as they are.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from ..operators.base import Edit
from .base import Proposal, Result, Variation


def random_bits(rng: np.random.Generator, n_bits: int) -> str:
    """A uniformly random bit string."""
    return "".join("1" if b else "0" for b in rng.integers(0, 2, n_bits))


def flip_one_bit(genome: str, rng: np.random.Generator) -> tuple[str, Edit]:
    """Real et al. 2019's toy mutation: flip one bit chosen uniformly."""
    i = int(rng.integers(len(genome)))
    return genome[:i] + ("0" if genome[i] == "1" else "1") + genome[i + 1:], \
        Edit("flip-bit", {"bit": i})


def one_point_crossover(a: str, b: str, rng: np.random.Generator) -> tuple[str, Edit]:
    """The head of ``a`` and the tail of ``b`` at a uniformly drawn cut."""
    cut = int(rng.integers(1, len(a))) if len(a) > 1 else 0
    return a[:cut] + b[cut:], Edit("one-point-crossover", {"cut": cut})


def ones_fraction(genome: str) -> float:
    """The toy problem's true (noise-free) fitness."""
    return genome.count("1") / len(genome)


def bitstring_variation(n_bits: int = 100, crossover: bool = False,
                        initial: str = "random") -> Variation:
    """A :class:`Variation` over ``n_bits`` bit strings. ``initial`` "random" starts from random
    strings, "zeros" from the all-zero string (a "trivial" start like Real et al. 2017's)."""
    if initial not in ("random", "zeros"):
        raise ValueError(f"initial must be 'random' or 'zeros', not {initial!r}")

    def first(rng: np.random.Generator) -> str:
        return random_bits(rng, n_bits) if initial == "random" else "0" * n_bits

    return Variation(initial=first, sample=lambda rng: random_bits(rng, n_bits),
                     mutate=flip_one_bit, encode=str, decode=str,
                     crossover=one_point_crossover if crossover else None, key=lambda g: g)


def evolve(proposer, evaluate: Callable[[Proposal], Result], evaluations: int,
           workers: int = 1, order: np.random.Generator | None = None) -> list[Proposal]:
    """Simulate ``workers`` asynchronous workers for ``evaluations`` evaluations: keep that many
    proposals in flight, finish one at a time (the oldest, or a random one drawn from ``order``
    to mimic out-of-order completion), tell it and ask for a replacement. Returns every proposal
    in the order handed out."""
    flight = proposer.ask(min(workers, evaluations))
    handed = list(flight)
    done = 0
    while flight:
        index = int(order.integers(len(flight))) if order is not None else 0
        proposal = flight.pop(index)
        proposer.tell([evaluate(proposal)])
        done += 1
        if len(handed) < evaluations:
            new = proposer.ask(1)
            flight += new
            handed += new
    return handed


def noisy_ones(sigma: float) -> Callable[[Proposal], Result]:
    """An evaluator for the toy problem: fraction of ones + N(0, sigma), with the noise drawn
    from the proposal's own seed (so it depends only on (run seed, id), never on order)."""
    def evaluate(proposal: Proposal) -> Result:
        noise = np.random.default_rng(proposal.seed).normal(0.0, sigma) if sigma else 0.0
        return Result(proposal.id, ones_fraction(proposal.genome) + float(noise))
    return evaluate


def best_true(proposals: Sequence[Proposal]) -> float:
    """The best noise-free fitness among ``proposals``."""
    return max(ones_fraction(p.genome) for p in proposals)
