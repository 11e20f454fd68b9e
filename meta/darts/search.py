"""A DARTS search over an ``nb201`` space (Liu et al. 2019, §2): the supernet trained bilevel for
``epochs`` passes over the training split (weights) and the validation split (alpha), one
minibatch of each per step, the derived cell recorded after every epoch.

Each epoch's record holds alpha's softmax per edge, the derived architecture string, the mean
losses and the supernet's validation accuracy, so alpha's trajectory — and DARTS' drift towards
parameter-free ops (Dong & Yang 2020, §5) — can be read off a search.

With ``checkpoint`` set the search is resumable: after every epoch the supernet's tensors, both
optimisers' states, the minibatch generator and the records are written atomically (safetensors
and JSON, no pickle); a search killed at any point resumes from the last finished epoch and ends
bit for bit where an uninterrupted one would.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load as load_tensors
from safetensors.torch import save as save_tensors
from torch.nn import functional as F

from ...compile.training.sgd import evaluate
from ...errors import ConfigError
from ...files import atomic_write_bytes
from ...genome.cells.nb201 import EDGES, arch_string
from ...genome.core import Genome
from ...genome.space import SearchSpace
from .bilevel import BilevelTrainer, DartsSettings
from .supernet import Nb201Supernet

FORMAT = "evograph-darts-checkpoint"


@dataclass
class DartsOutcome:
    """The derived genome, the supernet it came from, and one record per epoch."""

    genome: Genome
    supernet: Nb201Supernet
    records: list[dict[str, Any]] = field(default_factory=list)


def darts_search(space: SearchSpace, data: Any, *, epochs: int, settings: DartsSettings,
                 batch_size: int = 64, seed: int = 0, checkpoint: str | Path | None = None,
                 on_epoch: Callable[[dict[str, Any]], None] | None = None) -> DartsOutcome:
    """Search ``space`` on ``data`` (splits with ``x_train``/``x_val``) for ``epochs`` epochs;
    resume from ``checkpoint`` when it holds an unfinished search of the same settings."""
    if space.family != "cell" or space.name != "nb201":
        raise ConfigError(f"space: DARTS here searches the nb201 cell (got {space.name})")
    if not isinstance(epochs, int) or epochs < 1:
        raise ConfigError(f"epochs: must be a positive integer (got {epochs!r})")
    supernet = Nb201Supernet(space, tuple(data.input_shape), data.num_classes, seed=seed)
    steps_per_epoch = math.ceil(len(data.x_train) / batch_size)
    trainer = BilevelTrainer(supernet, settings, epochs * steps_per_epoch)
    generator = torch.Generator().manual_seed(seed)
    identity = {"seed": seed, "epochs": epochs, "batch_size": batch_size,
                "settings": settings.__dict__, "space": space.fingerprint(),
                "data": [len(data.x_train), len(data.x_val)]}
    identity = json.loads(json.dumps(identity))   # as the checkpoint will hold it
    records = _resume(checkpoint, identity, supernet, trainer, generator)
    for epoch in range(len(records), epochs):
        records.append(_epoch(supernet, trainer, data, batch_size, generator, epoch + 1))
        if checkpoint is not None:
            _save(Path(checkpoint), identity, supernet, trainer, generator, records)
        if on_epoch is not None:
            on_epoch(records[-1])
    return DartsOutcome(supernet.derived_genome(), supernet, records)


def _epoch(supernet: Nb201Supernet, trainer: BilevelTrainer, data: Any, batch: int,
           generator: torch.Generator, epoch: int) -> dict[str, Any]:
    """One pass over the training split, a validation minibatch beside each training one."""
    n_train, n_val = len(data.x_train), len(data.x_val)
    order = torch.randperm(n_train, generator=generator)
    val_order = torch.randperm(n_val, generator=generator)
    train_losses, val_losses = [], []
    for step, start in enumerate(range(0, n_train, batch)):
        idx = order[start:start + batch]
        if len(idx) < 2:            # a batch of one would break batch-norm's statistics
            continue
        v = val_order[(step * batch) % n_val:][:batch]
        if len(v) < 2:
            v = val_order[:batch]
        losses = trainer.step((data.x_train[idx], data.y_train[idx]),
                              (data.x_val[v], data.y_val[v]))
        train_losses.append(losses[0])
        val_losses.append(losses[1])
    accuracy, _ = evaluate(supernet, data.x_val, data.y_val, torch.device("cpu"))
    weights = F.softmax(supernet.alpha.detach(), dim=-1)
    return {"epoch": epoch, "train_loss": sum(train_losses) / len(train_losses),
            "val_loss": sum(val_losses) / len(val_losses), "supernet_val_accuracy": accuracy,
            "arch": arch_string(supernet.derived_genome()),
            "softmax": {f"{i}->{j}": dict(zip(supernet.ops, map(float, weights[k])))
                        for k, (i, j) in enumerate(EDGES)},
            "alpha": supernet.alpha.detach().tolist()}


# -- the checkpoint ------------------------------------------------------------------------------
def _optimizer_tensors(prefix: str, optimizer: torch.optim.Optimizer
                       ) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """An optimizer's state as tensors (by parameter index and key) and JSON scalars."""
    tensors, scalars = {}, {}
    for index, state in optimizer.state_dict()["state"].items():
        for key, value in state.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{prefix}.{index}.{key}"] = value.detach().clone().contiguous()
            else:
                scalars[f"{prefix}.{index}.{key}"] = value
    return tensors, scalars


def _load_optimizer(prefix: str, optimizer: torch.optim.Optimizer, tensors: dict,
                    scalars: dict) -> None:
    state: dict[int, dict[str, Any]] = {}
    for name, value in [*tensors.items(), *scalars.items()]:
        if name.startswith(prefix + "."):
            _, index, key = name.split(".", 2)
            state.setdefault(int(index), {})[key] = value
    saved = optimizer.state_dict()
    saved["state"] = state
    optimizer.load_state_dict(saved)


def _save(path: Path, identity: dict, supernet: Nb201Supernet, trainer: BilevelTrainer,
          generator: torch.Generator, records: list[dict]) -> None:
    tensors = {f"model.{k}": v.detach().clone().contiguous()
               for k, v in supernet.state_dict().items()}
    tensors["generator"] = generator.get_state()
    scalars: dict[str, Any] = {}
    for prefix, optimizer in (("weights", trainer.weight_opt), ("alpha", trainer.alpha_opt)):
        more, numbers = _optimizer_tensors(prefix, optimizer)
        tensors.update(more)
        scalars.update(numbers)
    meta = {"format": FORMAT, "identity": identity, "step": trainer.step_count,
            "optimizer_scalars": scalars, "records": records}
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, save_tensors(tensors, metadata={"meta": json.dumps(meta)}))


def _resume(path: str | Path | None, identity: dict, supernet: Nb201Supernet,
            trainer: BilevelTrainer, generator: torch.Generator) -> list[dict]:
    """The records of the checkpoint's finished epochs, its state loaded; [] without one."""
    if path is None or not Path(path).exists():
        return []
    from safetensors import safe_open
    with safe_open(str(path), framework="pt") as handle:
        meta = json.loads(handle.metadata()["meta"])
    if meta.get("format") != FORMAT or meta.get("identity") != identity:
        raise ConfigError(f"checkpoint: {path} holds another search (other seed, settings, "
                          "space or data); remove it or name another file")
    tensors = load_tensors(Path(path).read_bytes())
    supernet.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    generator.set_state(tensors["generator"])
    for prefix, optimizer in (("weights", trainer.weight_opt), ("alpha", trainer.alpha_opt)):
        _load_optimizer(prefix, optimizer, tensors, meta["optimizer_scalars"])
    trainer.step_count = meta["step"]
    return list(meta["records"])
