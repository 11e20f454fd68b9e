"""The ``learned-optimizer`` fitness generator: train each genome for K steps with a saved
learned optimizer (Andrychowicz et al. 2016) instead of a hand-designed one, then score validation
accuracy — the same :class:`~evograph.compile.training.fitness.Score` and metrics as the ``sgd`` generator,
whose training loop it reuses (minibatches from a private generator, NaN stops, loss curve).

``[fitness]`` parameters: ``path`` (required: a file from ``evograph meta train-optimizer``),
``steps`` (K, default 100: the horizon the optimizer was meta-trained for) and ``use_gene``
(default false). With ``use_gene = true`` every genome trains with its own optimizer gene, where
``learned`` means the optimizer at ``path`` — so evolution can choose between it and the
hand-designed ones (put ``"learned"`` in the space's ``optimizers``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ...compile.training.fitness import Score, Splits, register_fitness
from ...compile.training.sgd import SGDTraining
from ...errors import EvographError
from ...genome.core import Genome
from .lstm import LSTMOptimizer, cached_optimizer, learned_optimizer, save_optimizer


@register_fitness("learned-optimizer")
@dataclass
class LearnedOptimizerTraining(SGDTraining):
    """:class:`SGDTraining` with the optimizer gene replaced by ``learned`` (the network saved at
    ``path``), for exactly ``steps`` minibatch steps."""

    steps: int = 100
    path: str = ""
    use_gene: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        if not isinstance(self.path, str) or not self.path:
            raise ValueError("path: required — a learned optimizer file (make one with "
                             "`evograph meta train-optimizer runs/configs/learned-optimizer.toml"
                             " -o opt.safetensors`)")
        if not isinstance(self.use_gene, bool):
            raise ValueError("use_gene: must be true or false")  # noqa: TRY004 (config contract)
        try:
            cached_optimizer(self.path)    # missing or invalid file: fail before any training
        except EvographError as exc:
            raise ValueError(f"path: {exc}") from None

    @classmethod
    def example(cls, folder: Any) -> dict[str, Any]:
        """A few steps with an untrained optimizer written under ``folder`` (the contract test:
        the file format and the wiring, not the optimizer's quality)."""
        path = save_optimizer(LSTMOptimizer(seed=0), Path(folder) / "untrained.safetensors")
        return {"params": {"steps": 5, "path": str(path)}}

    def optimizer_for(self, genes: dict[str, Any], params) -> torch.optim.Optimizer:
        """The gene ``learned`` is the network at ``path`` (passed here, never set process-wide,
        so two generators with two files never mix); other genes as in :class:`SGDTraining`."""
        if genes.get("optimizer") == "learned":
            return learned_optimizer(params, self.path, float(genes.get("weight_decay", 0.0)))
        return super().optimizer_for(genes, params)

    def score(self, module: nn.Module, genome: Genome, data: Splits, *, seed: int,
              device: torch.device) -> Score:
        trained = genome if self.use_gene else genome.with_genes(optimizer="learned")
        result = super().score(module, trained, data, seed=seed, device=device)
        result.metrics.update(optimizer=trained.gene["optimizer"], learned_optimizer=self.path)
        return result
