"""``fitness = "hypernet"``: score a genome with SMASH-generated weights and no training.

The first evaluation in a process finds (or trains, once across processes) the hypernetwork for
the run's data and the configured space (:func:`~evograph.meta.hypernet.smash_train.ensure_trained`);
every evaluation then generates the candidate's weights, copies them into the compiled module
(so the weights a run stores are the generated ones) and measures validation accuracy (the
fitness), batch norm using the statistics of the validation batch (or, with ``bn =
"recalibrate"``, statistics re-estimated on a few training batches). A candidate costs a
few forward passes instead of a training run, so thousands can be ranked in minutes; the
winners are then trained for real (:func:`retrain`, ``evograph hypernet retrain RUN``).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import nn
from torch.nn import functional as F

from ...compile.builder import build
from ...compile.training.fitness import Score, Splits, register_fitness
from ...compile.training.sgd import SGDTraining, evaluate
from ...genome.core import Genome
from ...genome.validate import analyze
from .smash import SmashConfig
from .smash_train import ensure_trained

TRAINING_KEYS = ("block", "embed", "z_dim", "hidden", "rounds", "steps", "batch", "lr",
                 "mutations", "initial_fraction", "seed")


def _norms(module: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    return [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


@torch.no_grad()
def recalibrate_batchnorm(module: nn.Module, x: torch.Tensor, batches: int, batch_size: int,
                          seed: int, device: torch.device) -> None:
    """Reset every batch norm (affine to 1/0, statistics to empty) and re-estimate its running
    statistics as the plain average over ``batches`` random training minibatches."""
    norms = _norms(module)
    if not norms or batches < 1:
        return
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_parameters()
        m.momentum = None                           # cumulative average over the batches
    gen = torch.Generator().manual_seed(seed)
    module.train()
    for _ in range(batches):
        idx = torch.randperm(len(x), generator=gen)[:batch_size]
        module(x[idx].to(device))
    for m, momentum in zip(norms, momenta):
        m.momentum = momentum
    module.eval()


@torch.no_grad()
def evaluate_batch_statistics(module: nn.Module, x: torch.Tensor, y: torch.Tensor,
                              device: torch.device, batch_size: int = 1024) -> tuple[float, float]:
    """(accuracy, mean cross-entropy) with every batch norm (affine reset to 1/0) normalising by
    the statistics of the evaluated batch itself — one forward pass, no calibration pass."""
    for m in _norms(module):
        m.reset_parameters()
    module.train()
    correct, loss_sum = 0, 0.0
    for start in range(0, len(x), batch_size):
        xb, yb = x[start:start + batch_size].to(device), y[start:start + batch_size].to(device)
        logits = module(xb)                                             # (B, classes)
        loss_sum += float(F.cross_entropy(logits, yb, reduction="sum"))
        correct += int((logits.argmax(dim=1) == yb).sum())
    module.eval()
    return correct / max(len(x), 1), loss_sum / max(len(x), 1)


@register_fitness("hypernet")
@dataclass
class HypernetScoring:
    """Validation accuracy with SMASH-generated weights (Brock et al. 2018), no training.

    ``path`` is the folder holding trained hypernetworks (``smash-<fingerprint>.*``); ``space``
    and ``space_overrides`` describe the search space the hypernetwork is sized for and trained
    on — in a run, its [space], filled in by the run (:func:`evograph.runs.setup.with_run_space`);
    the other keys are :class:`SmashConfig`'s.

    Batch norm (the generated weights have no running statistics): ``bn = "batch"`` normalises
    by the statistics of the evaluated split itself (one forward pass; the usual one-shot
    evaluation), ``bn = "recalibrate"`` first re-estimates them on ``bn_batches`` x
    ``bn_batch_size`` training samples. ``evaluate_test`` also measures test accuracy (off by
    default: generated weights are for ranking; the winners' test accuracy comes from
    retraining them).
    """

    path: str = "runs/hypernets"
    space: str = "lse-conv"
    space_overrides: dict = field(default_factory=dict)
    bn: str = "batch"
    bn_batches: int = 4
    bn_batch_size: int = 128
    evaluate_test: bool = False
    eval_batch_size: int = 1024
    block: int = 16
    embed: int = 64
    z_dim: int = 64
    hidden: int = 64
    rounds: int = 2
    steps: int = 2000
    batch: int = 64
    lr: float = 2e-3
    mutations: int = 3
    initial_fraction: float = 0.25
    seed: int = 0
    takes_run_space: ClassVar[bool] = True    # space, space_overrides: the run's [space]
    weights_trained: ClassVar[bool] = False   # generated weights: export must retrain

    @classmethod
    def example(cls, folder: Any) -> dict[str, Any]:
        """A tiny hypernetwork, trained for a few steps under ``folder`` (the contract test)."""
        space = {"space": "lse-conv", "space_overrides": {"channels": [4, 16]}}
        return {**space, "params": {**space, "path": str(folder), "steps": 4, "block": 8,
                                    "embed": 16, "z_dim": 16, "hidden": 8, "rounds": 1,
                                    "batch": 16}}

    def __post_init__(self) -> None:
        if not isinstance(self.space_overrides, dict):
            raise ValueError("space_overrides: must be a table")  # noqa: TRY004
        for key in ("block", "embed", "z_dim", "hidden", "steps", "batch", "eval_batch_size",
                    "bn_batch_size"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{key}: must be a positive integer (got {value!r})")
        if self.rounds < 0 or self.mutations < 0 or self.bn_batches < 0:
            raise ValueError("rounds/mutations/bn_batches: must be >= 0")
        if not isinstance(self.evaluate_test, bool):
            raise ValueError("evaluate_test: must be true or false")  # noqa: TRY004
        if self.bn not in ("batch", "recalibrate"):
            raise ValueError(f"bn: must be batch or recalibrate (got {self.bn!r})")
        if not self.lr > 0 or not 0.0 <= self.initial_fraction <= 1.0:
            raise ValueError("lr/initial_fraction: need lr > 0 and 0 <= initial_fraction <= 1")
        try:
            space = self.config((1, 8, 8), 10).get_space()
        except Exception as exc:  # noqa: BLE001 - any bad space name or override
            raise ValueError(f"space: {exc}") from None
        if space.family == "cell":
            raise ValueError(f"space: SMASH's encoding describes conv and mlp genomes node by "
                             f"node, not cell genomes ({space.name}); score cells with sgd or "
                             "enas")

    def config(self, input_shape: tuple[int, ...], num_classes: int) -> SmashConfig:
        """The hypernetwork's config for a dataset of this input shape and class count."""
        return SmashConfig(space=self.space, space_overrides=dict(self.space_overrides),
                           input_shape=tuple(input_shape), num_classes=int(num_classes),
                           **{k: getattr(self, k) for k in TRAINING_KEYS})

    def prepare(self, data: Splits, device: torch.device | str = "cpu"):
        """Find or train the hypernetwork for ``data``; returns ``(hypernetwork, file stem)``."""
        shape = tuple(data.x_train.shape[1:])
        return ensure_trained(self.path, self.config(shape, data.num_classes), data, device)

    def evaluate(self, module: nn.Module, x: torch.Tensor, y: torch.Tensor, data: Splits,
                 seed: int, device: torch.device) -> tuple[float, float]:
        """(accuracy, loss) of ``module`` with generated weights, batch norm as ``bn`` says."""
        if self.bn == "batch":
            return evaluate_batch_statistics(module, x, y, device, self.eval_batch_size)
        recalibrate_batchnorm(module, data.x_train, self.bn_batches, self.bn_batch_size, seed,
                              device)
        return evaluate(module, x, y, device, self.eval_batch_size)

    def score(self, module: nn.Module, genome: Genome, data: Splits, *, seed: int,
              device: torch.device) -> Score:
        hyper, stem = self.prepare(data, device)
        start = time.perf_counter()
        info = analyze(genome)
        with torch.no_grad():
            params = dict(module.named_parameters())
            for name, tensor in hyper(genome, module, info).items():
                params[name].copy_(tensor)
        val_acc, val_loss = self.evaluate(module, data.x_val, data.y_val, data, seed, device)
        metrics: dict[str, Any] = {"val_accuracy": val_acc, "val_loss": val_loss}
        if self.evaluate_test:
            test_acc, test_loss = self.evaluate(module, data.x_test, data.y_test, data, seed,
                                                device)
            metrics.update(test_accuracy=test_acc, test_loss=test_loss)
        elapsed = time.perf_counter() - start
        metrics.update(params=info.params, flops=info.flops, train_time=elapsed,
                       score_time=elapsed, hypernet=stem.name,
                       params_hypernet=sum(p.numel() for p in hyper.parameters()))
        if not math.isfinite(val_loss):
            return Score.infeasible("non-finite validation loss", **metrics)
        return Score("completed", val_acc, metrics).checked()


def retrain(genomes: list[Genome], data: Splits, *, epochs: float = 10.0, seed: int = 0,
            device: torch.device | str = "cpu", genes: dict[str, Any] | None = None,
            ) -> list[dict[str, Any]]:
    """Train each genome for real with the ``sgd`` fitness (the step after a hypernet-scored
    search). ``genes`` replaces the genomes' training genes — recommended, since hypernet
    scores never see them (pass the space's ``initial_genes``); None keeps each genome's own."""
    device = torch.device(device)
    trainer, out = SGDTraining(epochs=epochs), []
    for genome in genomes:
        if genes:
            genome = genome.with_genes(**genes)
        module = build(genome, seed=seed, device=device)
        score = trainer.score(module, genome, data, seed=seed, device=device)
        out.append({"genome": genome, "status": score.status, "fitness": score.fitness,
                    "val_accuracy": score.metrics.get("val_accuracy"),
                    "test_accuracy": score.metrics.get("test_accuracy"),
                    "train_time": score.metrics.get("train_time"), "module": module})
    return out

