"""Shared fixtures and hypothesis strategies: genomes from every registered space, random DAGs."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from evograph.genome import Genome, Node
from evograph.genome.space import SPACES, get_space
from hypothesis import settings
from hypothesis import strategies as st

torch.set_num_threads(1)
os.environ.setdefault("OMP_NUM_THREADS", "1")
settings.register_profile("evograph", deadline=None, max_examples=30, derandomize=True)
settings.load_profile("evograph")

# Input shapes each family is exercised on: digits, MNIST-1D, CIFAR-10 (and flat features).
SHAPES_BY_FAMILY = {"conv": [(1, 8, 8), (1, 40), (3, 32, 32)], "mlp": [(1, 8, 8), (64,)],
                    "cell": [(1, 8, 8), (1, 40)]}  # 32x32 cells: tests/genome/cells


@pytest.fixture(params=sorted(SPACES))
def space(request):
    return get_space(request.param)


@st.composite
def random_dags(draw, max_hidden: int = 6) -> Genome:
    """A random valid conv/identity DAG: a chain (so every node is connected) plus random
    forward skip edges, with random channels, kernels and strides."""
    hidden = draw(st.integers(0, max_hidden))
    shape = draw(st.sampled_from([(1, 8, 8), (2, 9, 7), (1, 40)]))
    one_d = len(shape) == 2
    nodes = [Node.make(0, "input", shape=shape)]
    for i in range(1, hidden + 1):
        if draw(st.booleans()) and i % 3 == 0:
            nodes.append(Node.make(i, "identity"))
            continue
        k = draw(st.sampled_from([1, 3, 5]))
        s = draw(st.sampled_from([1, 1, 2]))
        bn = draw(st.booleans())
        nodes.append(Node.make(i, "conv", out_channels=draw(st.integers(1, 12)),
                               kernel_h=1 if one_d else k, kernel_w=k,
                               stride_h=1 if one_d else s, stride_w=s, bn=bn,
                               relu=draw(st.booleans())))
    nodes.append(Node.make(hidden + 1, "output", num_classes=draw(st.integers(2, 5))))
    edges = [(i, i + 1) for i in range(hidden + 1)]
    pairs = [(a, b) for a in range(hidden + 1) for b in range(a + 2, hidden + 2)]
    if pairs:
        edges += draw(st.lists(st.sampled_from(pairs), max_size=4))
    return Genome.make(nodes, edges)


def sample_genomes(space, count: int, seed: int = 0):
    """``count`` random genomes of ``space`` on each input shape its family supports."""
    rng = np.random.default_rng(seed)
    for shape in SHAPES_BY_FAMILY[space.family]:
        for _ in range(count):
            yield shape, space.sample(rng, shape, 10)
