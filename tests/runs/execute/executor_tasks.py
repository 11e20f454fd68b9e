"""Evaluation tasks, as the driver builds them, for executor and batching tests."""

from __future__ import annotations

import numpy as np
from evograph.genome.io import to_dict
from evograph.genome.space import get_space
from evograph.runs.execute.task import Task

DATASET = {"name": "digits", "root": "", "download": False, "val_fraction": 0.15,
           "test_fraction": 0.2, "limit": 200}


def task(i: int, genome, steps: int = 12, **extra) -> Task:
    return Task(id=i, genome=to_dict(genome), seed=100 + i, dataset=DATASET, data_seed=0,
                fitness="sgd", fitness_params={"steps": steps}, **extra)


def mixed_tasks(n: int = 4, steps: int = 12) -> list[Task]:
    """Small genomes of both spaces: mlp (even ids) and lse-conv (odd ids)."""
    rng = np.random.default_rng(7)
    mlp = get_space("mlp", unit_choices=(16, 32))
    conv = get_space("lse-conv", channels=(2, 6))
    genomes = [(mlp if i % 2 == 0 else conv).sample(rng, (1, 8, 8), 10) for i in range(n)]
    return [task(i, g.with_genes(learning_rate=0.01, optimizer="momentum"), steps)
            for i, g in enumerate(genomes)]


def sibling_tasks(n: int = 3, steps: int = 12, start: int = 0) -> list[Task]:
    """ALTER-LEARNING-RATE siblings: one mlp architecture, different learning rates."""
    genome = get_space("mlp", unit_choices=(16, 32)).sample(np.random.default_rng(3),
                                                             (1, 8, 8), 10)
    genome = genome.with_genes(optimizer="adam", learning_rate=1e-3)
    return [task(start + i, genome.with_genes(learning_rate=1e-3 * (1 + i)), steps)
            for i in range(n)]
