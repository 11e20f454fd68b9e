"""The ``sgd`` fitness generator: train a compiled genome with the optimizer, learning rate,
weight decay and batch size its genes say, then score it on the validation split.

Training is deterministic for a given seed on CPU (shuffling draws from a private generator; one
torch thread per worker process). A non-finite loss stops training at once with status
``infeasible`` (Real et al. 2017 likewise discard diverging individuals).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, ClassVar

import torch
from torch import nn
from torch.nn import functional as F

from ...genome.core import Genome
from ...genome.space import OPTIMIZERS as OPTIMIZER_NAMES
from ...genome.validate import analyze
from .fitness import Score, Splits, register_fitness

# One factory per optimizer gene of the search spaces (genome.space.OPTIMIZERS names them: the one
# list of names); plug-ins add theirs (the learned optimizer adds ``learned``).
_BUILT_IN_FACTORIES: dict[str, Callable[..., torch.optim.Optimizer]] = {
    "sgd": lambda p, lr, wd: torch.optim.SGD(p, lr=lr, weight_decay=wd),
    "momentum": lambda p, lr, wd: torch.optim.SGD(p, lr=lr, momentum=0.9, weight_decay=wd),
    "adam": lambda p, lr, wd: torch.optim.Adam(p, lr=lr, weight_decay=wd),
    "rmsprop": lambda p, lr, wd: torch.optim.RMSprop(p, lr=lr, weight_decay=wd),
    "adagrad": lambda p, lr, wd: torch.optim.Adagrad(p, lr=lr, weight_decay=wd),
    "adadelta": lambda p, lr, wd: torch.optim.Adadelta(p, lr=lr, weight_decay=wd),
    "adamax": lambda p, lr, wd: torch.optim.Adamax(p, lr=lr, weight_decay=wd),
    "nadam": lambda p, lr, wd: torch.optim.NAdam(p, lr=lr, weight_decay=wd),
}
OPTIMIZER_FACTORIES = {name: _BUILT_IN_FACTORIES[name] for name in OPTIMIZER_NAMES}
LR_SCHEDULES = ("constant", "cosine")


def genes_with(genome: Genome, optimizer: str = "genome",
               learning_rate: float = 0.0) -> dict[str, Any]:
    """The genome's genes with ``optimizer`` (unless ``"genome"``) and ``learning_rate`` (when
    > 0) set instead: a fitness generator's fixed recipe (``sgd``'s and ENAS's parameters)."""
    genes = genome.gene
    if optimizer != "genome":
        genes["optimizer"] = optimizer
    if learning_rate > 0:
        genes["learning_rate"] = float(learning_rate)
    return genes


def lr_factor(schedule: str, step: int, steps: int) -> float:
    """The multiplier of the genome's learning rate at (0-based) ``step`` of ``steps``: 1 for
    ``constant``; for ``cosine``, annealing from 1 towards 0 over the training (Loshchilov &
    Hutter, *SGDR*, ICLR 2017, without restarts), the schedule NAS papers retrain their final
    networks with (e.g. DARTS, Liu et al. 2019)."""
    if schedule == "constant" or steps <= 0:
        return 1.0
    return 0.5 * (1.0 + math.cos(math.pi * step / steps))


def make_optimizer(genes: dict[str, Any], params) -> torch.optim.Optimizer:
    name = genes.get("optimizer", "sgd")
    if name not in OPTIMIZER_FACTORIES:
        raise ValueError(f"unknown optimizer gene {name!r}")
    return OPTIMIZER_FACTORIES[name](params, float(genes["learning_rate"]),
                            float(genes.get("weight_decay", 0.0)))


@dataclass(frozen=True)
class Augmentation:
    """A random transformation of training minibatches, in two parts: ``draw(x, gen)`` the
    random parameters for minibatch ``x`` from the training generator (None: nothing in ``x``
    to transform, and nothing drawn), and ``apply(x, params)``. Called as ``augment(x, gen)``.
    The split lets K candidates trained together (:mod:`evograph.compile.training.batched`) each draw
    from its own generator exactly what it would draw alone, then be transformed in one call:
    so ``apply`` must treat samples independently, the parameters' first dimension indexing
    the samples of ``x`` (K minibatches are concatenated along it)."""

    draw: Callable[[torch.Tensor, torch.Generator], torch.Tensor | None]
    apply: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

    def __call__(self, x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        params = self.draw(x, gen)
        return x if params is None else self.apply(x, params)


def _shift_offsets(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor | None:
    """(N, spatial dims) offsets in {0, 1, 2} (a shift of offset - 1); None for flat
    features, which have nothing to translate."""
    if x.dim() < 3:
        return None
    return torch.randint(0, 3, (x.shape[0], x.dim() - 2), generator=gen).to(x.device)


def _shift(x: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
    """Translate each sample by -1, 0 or +1 along each spatial axis (zero fill). Works on
    images (N, C, H, W) and signals (N, C, L).

    One gather from the zero-padded input: sample i's output pixel (r, c) is padded pixel
    (r + dy_i, c + dx_i), i.e. flat index r * (W + 2) + c (a fixed grid) plus dy_i * (W + 2) +
    dx_i (one start per sample): far cheaper than indexing rows and columns separately, which
    took a visible share of a small conv net's training step on CPU (docs/performance.md)."""
    n, c, spatial = x.shape[0], x.shape[1], x.shape[2:]
    if len(spatial) == 1:
        (length,) = spatial
        padded = F.pad(x, [1, 1])                                               # (N, C, L + 2)
        index = offsets[:, :, None] + torch.arange(length, device=x.device)     # (N, 1, L)
        return torch.gather(padded, 2, index.expand(n, c, length))
    h, w = spatial
    padded = F.pad(x, [1, 1, 1, 1]).reshape(n, c, (h + 2) * (w + 2))
    start = (offsets[:, 0] * (w + 2) + offsets[:, 1]).reshape(n, 1, 1)
    index = (_shift_grid(h, w, x.device) + start).expand(n, c, h * w)       # (N, C, H * W)
    return torch.gather(padded, 2, index).reshape(n, c, h, w)


# random translations of up to one pixel per axis (offsets from the training generator)
random_shift = Augmentation(_shift_offsets, _shift)


@lru_cache(maxsize=16)
def _shift_grid(h: int, w: int, device: torch.device) -> torch.Tensor:
    """(1, 1, H * W): flat index of pixel (r, c) in a (H + 2) x (W + 2) padded image."""
    rows = torch.arange(h, device=device)[:, None] * (w + 2)
    return (rows + torch.arange(w, device=device)).reshape(1, 1, h * w)


AUGMENTATIONS: dict[str, Augmentation | None] = {"none": None, "shift": random_shift}


@torch.no_grad()
def evaluate(module: nn.Module, x: torch.Tensor, y: torch.Tensor, device: torch.device,
             batch_size: int = 1024) -> tuple[float, float]:
    """(accuracy, mean cross-entropy) of ``module`` on (x, y), in eval mode."""
    module.eval()
    correct, loss_sum = 0, 0.0
    for start in range(0, len(x), batch_size):
        xb = x[start:start + batch_size].to(device, non_blocking=True)
        yb = y[start:start + batch_size].to(device, non_blocking=True)
        logits = module(xb)                     # (B, classes)
        loss_sum += float(F.cross_entropy(logits, yb, reduction="sum"))
        correct += int((logits.argmax(dim=1) == yb).sum())
    return correct / max(len(x), 1), loss_sum / max(len(x), 1)


@register_fitness("sgd")
@dataclass
class SGDTraining:
    """Train for ``epochs`` passes (or exactly ``steps`` minibatch steps when > 0), then score
    validation accuracy. ``label_smoothing`` and ``grad_clip`` (0: off) are plain knobs;
    ``lr_schedule`` scales the genome's learning rate over the steps (:func:`lr_factor`).
    ``learning_rate`` and ``optimizer`` replace the genome's genes of those names: a fixed
    recipe, as NAS papers retrain their final networks with (a search's children only
    fine-tune inherited weights, so evolution may drive the rate gene too low to train from
    scratch)."""

    epochs: float = 3.0
    steps: int = 0
    eval_batch_size: int = 1024
    label_smoothing: float = 0.0
    grad_clip: float = 0.0
    augment: str = "none"          # "shift": random translations of up to one pixel/step
    lr_schedule: str = "constant"  # "cosine": the learning rate annealed to 0 (lr_factor)
    learning_rate: float = 0.0     # > 0: train at this rate, not the genome's gene
    optimizer: str = "genome"      # an optimizer name: train with it, not the genome's gene
    batched: ClassVar[bool] = True   # score_batched trains a group; not inherited (fitness.py)

    def __post_init__(self) -> None:
        if not (self.epochs > 0 or self.steps > 0):
            raise ValueError("epochs: need epochs > 0 or steps > 0")
        if self.steps < 0 or self.eval_batch_size < 1:
            raise ValueError("steps/eval_batch_size: must be positive")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ValueError("label_smoothing: must be in [0, 1)")
        if isinstance(self.learning_rate, bool) or not self.learning_rate >= 0:
            raise ValueError(f"learning_rate: must be >= 0 (0: the genome's; got "
                             f"{self.learning_rate!r})")
        if self.optimizer != "genome" and self.optimizer not in OPTIMIZER_FACTORIES:
            raise ValueError(f"optimizer: must be genome or one of "
                             f"{', '.join(OPTIMIZER_FACTORIES)} (got {self.optimizer!r})")
        if self.lr_schedule not in LR_SCHEDULES:
            raise ValueError(f"lr_schedule: must be one of {', '.join(LR_SCHEDULES)} "
                             f"(got {self.lr_schedule!r})")
        if self.augment not in AUGMENTATIONS:
            raise ValueError(f"augment: must be one of {', '.join(AUGMENTATIONS)} "
                             f"(got {self.augment!r})")

    @classmethod
    def example(cls, folder: Any) -> dict[str, Any]:
        """A few steps (the contract test)."""
        return {"params": {"steps": 5}}

    def genes_for(self, genome: Genome) -> dict[str, Any]:
        """The genes a training uses: the genome's, with ``learning_rate`` and ``optimizer``
        replaced where this generator sets them."""
        return genes_with(genome, self.optimizer, self.learning_rate)

    def optimizer_for(self, genes: dict[str, Any], params) -> torch.optim.Optimizer:
        """The optimizer of one training: the genome's optimizer gene (:func:`make_optimizer`).
        A generator that carries an optimizer of its own (a learned one) supplies it here."""
        return make_optimizer(genes, params)

    def total_steps(self, n_train: int, batch_size: int) -> int:
        if self.steps > 0:
            return self.steps
        return max(1, math.ceil(self.epochs * math.ceil(n_train / batch_size)))

    def schedule(self, genome: Genome, data: Splits) -> tuple[int, int]:
        """(batch size, steps) of training ``genome`` on ``data``: the batch size from its
        genes, the steps from this generator's ``steps`` or ``epochs``."""
        batch = int(genome.gene.get("batch_size", 64))
        return batch, self.total_steps(len(data.x_train), batch)

    def score(self, module: nn.Module, genome: Genome, data: Splits, *, seed: int,
              device: torch.device) -> Score:
        start = time.perf_counter()
        batch, steps = self.schedule(genome, data)
        curve = train_steps(module, data, self.genes_for(genome), steps, batch, seed, device,
                            self.label_smoothing, self.grad_clip,
                            augment=AUGMENTATIONS[self.augment], make_opt=self.optimizer_for,
                            lr_schedule=self.lr_schedule)
        return self.finish(module, genome, data, curve, time.perf_counter() - start, device)

    def finish(self, module: nn.Module, genome: Genome, data: Splits, curve: list[float],
               train_time: float, device: torch.device) -> Score:
        """The score of a trained module: validation and test accuracy and loss, or infeasible
        when training or validation went non-finite. (Batched training ends here too.)
        ``eval_time``: the seconds the two evaluation passes took."""
        info = analyze(genome)  # made once per genome object: the build's analysis
        metrics: dict[str, Any] = {"loss_curve": curve, "params": info.params,
                                   "flops": info.flops, "train_time": train_time}
        if curve and not math.isfinite(curve[-1]):
            return Score.infeasible("non-finite training loss", **metrics)
        start = time.perf_counter()
        val_acc, val_loss = evaluate(module, data.x_val, data.y_val, device,
                                     self.eval_batch_size)
        test_acc, test_loss = evaluate(module, data.x_test, data.y_test, device,
                                       self.eval_batch_size)
        metrics.update(val_accuracy=val_acc, val_loss=val_loss, test_accuracy=test_acc,
                       test_loss=test_loss, eval_time=time.perf_counter() - start)
        if not math.isfinite(val_loss):
            return Score.infeasible("non-finite validation loss", **metrics)
        return Score("completed", val_acc, metrics).checked()


# on a GPU the loss is read back every this many steps, not every step (see train_steps)
GPU_LOSS_READ_EVERY = 16


def train_steps(module: nn.Module, data: Splits, genes: dict[str, Any], steps: int, batch: int,
                seed: int, device: torch.device, label_smoothing: float = 0.0,
                grad_clip: float = 0.0, points: int = 20,
                augment: Augmentation | None = None,
                loss_read_every: int | None = None,
                make_opt: Callable[[dict[str, Any], Any], torch.optim.Optimizer] = make_optimizer,
                lr_schedule: str = "constant",
                after_step: Callable[[int], None] | None = None) -> list[float]:
    """Run ``steps`` minibatch steps; return the mean loss over ~``points`` equal chunks.
    Stops early (last entry non-finite) on a NaN/inf loss.

    Reading a loss back waits for the device. On CPU that costs nothing, so every loss is read
    as it comes and training stops before stepping on a non-finite one. On a GPU a read each
    step would stall the queue of kernels every step, so losses are read ``loss_read_every``
    steps at a time (default :data:`GPU_LOSS_READ_EVERY` there, 1 on CPU): the curve is the same
    value for value, and so is every weight, unless the loss goes non-finite — then up to that
    many steps ran past it, on weights already ruined, before the curve ends at the first
    non-finite value. ``lr_schedule``: each step's learning rate is the optimizer's own times
    :func:`lr_factor` (a learned optimizer without a learning rate is left as it is).
    ``after_step(step)`` runs after each optimizer step (a learning curve's evaluations: it
    may switch the module to eval mode and must switch it back to train mode)."""
    read_every = loss_read_every or (1 if torch.device(device).type == "cpu"
                                     else GPU_LOSS_READ_EVERY)
    optimizer = make_opt(genes, module.parameters())
    base_rates = [group.get("lr") for group in optimizer.param_groups]
    gen = torch.Generator().manual_seed(seed)
    n = len(data.x_train)
    x_all, y_all = data.x_train.to(device), data.y_train.to(device)
    order, cursor = torch.randperm(n, generator=gen).to(device), 0  # one copy per epoch
    curve = _LossCurve(max(1, steps // points))
    unread: list[torch.Tensor] = []
    module.train()
    for step in range(steps):
        if n - cursor < 2:  # a batch of one would break batch-norm's statistics
            order, cursor = torch.randperm(n, generator=gen).to(device), 0
        idx = order[cursor:cursor + batch]
        cursor += batch
        xb = x_all[idx]
        if augment is not None:
            xb = augment(xb, gen)
        loss = F.cross_entropy(module(xb), y_all[idx], label_smoothing=label_smoothing)
        if read_every > 1:
            unread.append(loss.detach())
        elif not curve.take(float(loss.detach()), last=step == steps - 1):
            return curve.points  # before stepping on a non-finite loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if grad_clip > 0:
            nn.utils.clip_grad_norm_(module.parameters(), grad_clip)
        if lr_schedule != "constant":
            _scale_rates(optimizer, base_rates, lr_factor(lr_schedule, step, steps))
        optimizer.step()
        if after_step is not None:
            after_step(step)
        if unread and (len(unread) == read_every or step == steps - 1):
            values = torch.stack(unread).tolist()  # one wait for the device
            unread = []
            for i, value in enumerate(values):
                if not curve.take(value, last=step == steps - 1 and i == len(values) - 1):
                    return curve.points
    return curve.points


def _scale_rates(optimizer: torch.optim.Optimizer, base_rates: list, factor: float) -> None:
    for group, base in zip(optimizer.param_groups, base_rates):
        if isinstance(base, (int, float)):
            group["lr"] = base * factor


class _LossCurve:
    """Mean losses over chunks of ``chunk`` steps, fed one loss at a time."""

    def __init__(self, chunk: int):
        self.chunk, self.points, self.running, self.count = chunk, [], 0.0, 0

    def take(self, value: float, last: bool) -> bool:
        """Add one step's loss; False (the curve ends with it) if it is not finite."""
        if not math.isfinite(value):
            self.points.append(value)
            return False
        self.running, self.count = self.running + value, self.count + 1
        if self.count == self.chunk or last:
            self.points.append(self.running / self.count)
            self.running, self.count = 0.0, 0
        return True
