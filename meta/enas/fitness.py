"""The ``enas`` fitness generator: score a genome with the shared weights of :mod:`.enas`.

Each evaluation: pull the supernet's tensors into the built module (the worker's fresh or
inherited weights stay where the supernet has nothing yet), train ``steps`` minibatches with the
genome's optimizer genes (or a fixed ``optimizer``/``learning_rate``), push the tensors back,
score validation accuracy. A non-finite loss is ``infeasible`` and never reaches the supernet.

``shared_weights`` relative paths are taken in the run directory, which the worker passes with
:meth:`ENASFitness.bind_run`; without one the supernet stays in memory (logged once).
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ...compile.training.fitness import Score, Splits, register_fitness
from ...compile.training.sgd import OPTIMIZER_FACTORIES, evaluate, genes_with, train_steps
from ...genome.core import Genome
from ...genome.validate import analyze
from .supernet import node_keys, pull, shared_weights, tensor_keys

log = logging.getLogger("evograph.meta.enas.supernet")


@register_fitness("enas")
@dataclass
class ENASFitness:
    """Params: ``steps`` (20 minibatch steps per evaluation), ``batch_size`` (0: the genome's
    gene), ``shared_weights`` ("shared.safetensors" in the run directory; "": memory only),
    ``share`` ("sliced" | "exact"), ``optimizer`` ("genome" or an optimizer name),
    ``learning_rate`` (0: the genome's gene), ``val_samples`` (0: the whole split),
    ``eval_batch_size``, ``grad_clip`` (5; 0 = off), ``test`` (also report test accuracy)."""

    steps: int = 20
    batch_size: int = 0
    shared_weights: str = "shared.safetensors"
    share: str = "sliced"
    optimizer: str = "genome"
    learning_rate: float = 0.0
    val_samples: int = 0
    eval_batch_size: int = 1024
    grad_clip: float = 5.0
    test: bool = True
    weights_trained = False   # no annotation: not a parameter; shared weights, export retrains

    def __post_init__(self) -> None:
        self.run_dir: Path | None = None
        checks = [("steps", _is_int(self.steps) and self.steps >= 1, "an integer >= 1"),
                  ("batch_size", _is_int(self.batch_size) and self.batch_size >= 0,
                   "an integer >= 0"),
                  ("val_samples", _is_int(self.val_samples) and self.val_samples >= 0,
                   "an integer >= 0"),
                  ("eval_batch_size", _is_int(self.eval_batch_size) and self.eval_batch_size >= 1,
                   "an integer >= 1"),
                  ("shared_weights", isinstance(self.shared_weights, str), "a path string"),
                  ("share", self.share in ("sliced", "exact"), "sliced or exact"),
                  ("optimizer", self.optimizer == "genome" or self.optimizer in OPTIMIZER_FACTORIES,
                   f"genome or one of {', '.join(OPTIMIZER_FACTORIES)}"),
                  ("learning_rate", _is_real(self.learning_rate) and self.learning_rate >= 0,
                   "a number >= 0"),
                  ("grad_clip", _is_real(self.grad_clip) and self.grad_clip >= 0, "a number >= 0"),
                  ("test", isinstance(self.test, bool), "true or false")]
        for key, ok, what in checks:
            if not ok:
                raise ValueError(f"{key}: must be {what} (got {getattr(self, key)!r})")

    @classmethod
    def example(cls, folder: Any) -> dict[str, Any]:
        """A few steps, the supernet file under ``folder`` (the contract test)."""
        return {"space": "lse-conv", "space_overrides": {"channels": [4, 8]},
                "params": {"steps": 3, "shared_weights": "shared.safetensors"}}

    def bind_run(self, run_dir: str | Path) -> None:
        """Take relative ``shared_weights`` paths inside ``run_dir`` (called by the worker)."""
        self.run_dir = Path(run_dir)

    def path(self) -> Path | None:
        """Where the supernet file lives; None keeps it in this process's memory only (also
        for a relative path when no run directory was given: never a stray file)."""
        if not self.shared_weights:
            return None
        path = Path(self.shared_weights).expanduser()
        if not path.is_absolute():
            if self.run_dir is None:
                _warn_once(f"enas: no run directory given for shared_weights={path}; the "
                           "shared weights stay in this process's memory")
                return None
            path = self.run_dir / path
        return path.resolve()

    def score(self, module: nn.Module, genome: Genome, data: Splits, *, seed: int,
              device: torch.device) -> Score:
        """Pull, train briefly, push, score (see the module docstring)."""
        start, info = time.perf_counter(), analyze(genome)
        names = tensor_keys(module, node_keys(genome, info, self.share))
        store, tag = shared_weights(self.path()), str(int(seed))
        with store.locked():
            shared = pull(module, names, store.base_for(tag).tensors)
        genes = genes_with(genome, self.optimizer, self.learning_rate)
        batch = self.batch_size or int(genes.get("batch_size", 64))
        curve = train_steps(module, data, genes, self.steps, batch, seed, device,
                            grad_clip=float(self.grad_clip))
        metrics: dict[str, Any] = {"loss_curve": curve, "params": info.params,
                                   "flops": info.flops, "shared_tensors": shared,
                                   "fresh_tensors": len(names) - shared}
        if (curve and not math.isfinite(curve[-1])) or not _finite(module):
            return Score.infeasible("non-finite training loss", **metrics)
        metrics["supernet_tensors"] = store.push(tag, module, names, self.share)
        metrics["train_time"] = time.perf_counter() - start
        n_val = self.val_samples or len(data.x_val)
        val_acc, val_loss = evaluate(module, data.x_val[:n_val], data.y_val[:n_val], device,
                                     self.eval_batch_size)
        metrics.update(val_accuracy=val_acc, val_loss=val_loss)
        if self.test:
            metrics["test_accuracy"], metrics["test_loss"] = evaluate(
                module, data.x_test, data.y_test, device, self.eval_batch_size)
        if not math.isfinite(val_loss):
            return Score.infeasible("non-finite validation loss", **metrics)
        return Score("completed", val_acc, metrics).checked()


@cache
def _warn_once(message: str) -> None:
    log.warning(message)


def _finite(module: nn.Module) -> bool:
    return all(bool(torch.isfinite(t).all()) for t in module.state_dict().values()
               if t.is_floating_point())


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_real(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
