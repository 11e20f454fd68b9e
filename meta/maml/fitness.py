"""The ``maml`` fitness generator: score a genome by how well it *learns fast* — its loss or
accuracy on held-out tasks after MAML meta-training and a few adaptation steps (Finn et al. 2017).
A run with ``fitness = "maml"`` thus evolves architectures for few-shot adaptation.

The task family brings its own data (sinusoids, digits or Omniglot N-way tasks), so the run's
dataset splits are ignored. Fitness, maximised: ``-MSE`` for regression, accuracy for
classification, on ``eval_tasks`` tasks drawn from ``eval_seed`` (the same tasks for every genome,
so genomes are compared on common ground) from the meta-test classes, after ``eval_steps`` SGD
steps of size ``inner_lr`` on each task's K-shot support set. ``test_*`` metrics repeat the
measurement on a second, independent set of tasks.

Shapes: the family fixes the input shape and the number of outputs (1 for sinusoids, ``n_way``
for classification). A genome with more outputs is used as is and its first ``n`` outputs are read
(a run's 10-class digits genomes do 5-way tasks). A genome whose input shape differs or that has
too few outputs is *retargeted*: its input and output nodes take the family's shapes, it is
compiled afresh from the evaluation's seed, and tensors with the same name and shape are copied
from the given module before meta-training and back after it (``metrics['retargeted']``). This
lets a sinusoid run start from any dataset until runs take shapes from the fitness generator
(:meth:`MAMLFitness.task_shapes`).

The genome's training genes (optimizer, learning rate, batch size) are not used: MAML's inner
step size, meta-batch and Adam meta-learning rate are the generator's parameters.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import torch
from torch import nn

from ...compile.builder import build
from ...compile.training.fitness import Score, Splits, register_fitness
from ...data.tasks import make_tasks, stream_generator
from ...errors import InvalidGenome
from ...genome.core import Genome
from ...genome.validate import analyze
from .learner import evaluate_module, meta_train

INT_PARAMS = ("n_way", "k_shot", "k_query", "inner_steps", "eval_steps", "meta_batch",
              "meta_steps", "eval_tasks", "image_size", "train_characters")


@lru_cache(maxsize=8)
def _cached_tasks(family: str, n_way: int, k_shot: int, k_query: int, root: str,
                  image_size: int, train_characters: int, download: bool):
    return make_tasks(family, n_way=n_way, k_shot=k_shot, k_query=k_query, root=root,
                      image_size=image_size, train_characters=train_characters,
                      download=download)


@register_fitness("maml")
@dataclass
class MAMLFitness:
    """Parameters (``[fitness]`` keys); defaults are the paper's sinusoid setup (10-shot, one
    inner step of 0.01, 25 tasks per meta-batch, Adam at 0.001, evaluated after 10 steps)."""

    family: str = "sinusoid"          # sinusoid | digits | omniglot
    n_way: int = 5
    k_shot: int = 10
    k_query: int = 10                 # query examples per task (per class for classification)
    inner_steps: int = 1
    inner_lr: float = 0.01
    eval_steps: int = 10
    meta_batch: int = 25
    meta_steps: int = 1000
    meta_lr: float = 0.001
    first_order: bool = False
    eval_tasks: int = 100
    eval_seed: int = 0
    root: str = ""                    # omniglot: the folder holding omniglot-py
    download: bool = False
    image_size: int = 28
    train_characters: int = 1200

    def __post_init__(self) -> None:
        for key in INT_PARAMS + ("eval_seed",):
            low, value = (0 if key in ("eval_steps", "eval_seed") else 1), getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"{key}: must be an integer >= {low} (got {value!r})")
        for key in ("inner_lr", "meta_lr"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not (
                    math.isfinite(value) and value > 0):
                raise ValueError(f"{key}: must be a positive number (got {value!r})")
        if not isinstance(self.first_order, bool) or not isinstance(self.download, bool):
            # ValueError: make_fitness reports it as a bad [fitness] key
            raise ValueError("first_order/download: must be true or false")  # noqa: TRY004
        self.tasks = _cached_tasks(self.family, self.n_way, self.k_shot, self.k_query,
                                   str(self.root), self.image_size, self.train_characters,
                                   self.download)

    @classmethod
    def example(cls, folder: Any) -> dict[str, Any]:
        """A few meta-steps on a few sinusoid tasks (the contract test)."""
        return {"params": {"meta_steps": 5, "meta_batch": 4, "eval_tasks": 8, "eval_steps": 2}}

    def task_shapes(self) -> tuple[tuple[int, ...], int]:
        """(input shape, number of outputs) of the genomes this fitness wants."""
        return tuple(self.tasks.input_shape), int(self.tasks.num_outputs)

    def score(self, module: nn.Module, genome: Genome, data: Splits, *, seed: int,
              device: torch.device) -> Score:
        start = time.perf_counter()
        try:
            work, target = self._working_module(module, genome, seed, device)
        except InvalidGenome as exc:
            return Score.infeasible(f"genome does not fit the {self.family} tasks' shapes "
                                    f"{self.task_shapes()}: {exc}")
        n_out = self.tasks.num_outputs
        curve = meta_train(work, self.tasks, stream_generator(seed, 0), steps=self.meta_steps,
                           meta_batch=self.meta_batch, inner_lr=self.inner_lr,
                           inner_steps=self.inner_steps, first_order=self.first_order,
                           meta_lr=self.meta_lr, n_out=n_out, device=device)
        info = analyze(target)
        metrics: dict[str, Any] = {"loss_curve": curve, "params": info.params,
                                   "flops": info.flops, "family": self.family,
                                   "retargeted": work is not module,
                                   "train_time": time.perf_counter() - start}
        if work is not module:
            _copy_matching(work, module)
        if curve and not math.isfinite(curve[-1]):
            return Score.infeasible("non-finite meta-training loss", **metrics)
        for prefix, stream in (("val", 1), ("test", 2)):
            metrics.update(self._evaluate(work, prefix, stream, n_out, device))
        if not math.isfinite(metrics.get("val_loss", metrics.get("val_mse"))):
            return Score.infeasible("non-finite loss after adaptation", **metrics)
        if self.tasks.kind == "classification":
            return Score("completed", metrics["val_accuracy"], metrics).checked()
        return Score("completed", -metrics["val_mse"], metrics).checked()

    def _evaluate(self, work: nn.Module, prefix: str, stream: int, n_out: int,
                  device: torch.device) -> dict[str, Any]:
        """Metrics on ``eval_tasks`` meta-test tasks: final and per-step loss / accuracy."""
        batch = self.tasks.sample(stream_generator(self.eval_seed, stream), self.eval_tasks,
                                  "test").to(device)
        curves = evaluate_module(work, self.tasks, batch, self.inner_lr, self.eval_steps, n_out)
        loss = curves["loss"].mean(0).tolist()                  # (eval_steps + 1,)
        name = "mse" if self.tasks.kind == "regression" else "loss"
        out: dict[str, Any] = {f"{prefix}_{name}": loss[-1], f"{prefix}_{name}_by_step": loss}
        if "accuracy" in curves:
            acc = curves["accuracy"].mean(0).tolist()
            out.update({f"{prefix}_accuracy": acc[-1], f"{prefix}_accuracy_by_step": acc})
        return out

    def _working_module(self, module: nn.Module, genome: Genome, seed: int,
                        device: torch.device) -> tuple[nn.Module, Genome]:
        """(``module``, ``genome``) when their shapes suit the tasks, else a retargeted
        rebuild and its genome."""
        shape, n_out = self.task_shapes()
        have_shape = tuple(genome.input_node.get("shape"))
        have_out = int(genome.output_node.get("num_classes"))
        if have_shape == shape and have_out >= n_out:
            return module, genome
        target = retarget(genome, shape, max(have_out, n_out))
        work = build(target, seed=seed, device=device)
        _copy_matching(module, work)
        return work, target


def retarget(genome: Genome, input_shape: tuple[int, ...], num_outputs: int) -> Genome:
    """``genome`` with its input node's shape and output node's class count replaced."""
    genome = genome.with_node(genome.input_node.replace(shape=tuple(input_shape)))
    return genome.with_node(genome.output_node.replace(num_classes=int(num_outputs)))


@torch.no_grad()
def _copy_matching(source: nn.Module, target: nn.Module) -> None:
    """Copy every tensor of ``source`` into the ``target`` tensor of the same name and shape."""
    theirs = source.state_dict()
    for name, tensor in target.state_dict().items():
        if name in theirs and theirs[name].shape == tensor.shape:
            tensor.copy_(theirs[name])
