"""Batched populations: train several candidates that share an architecture in one process.

Children born by IDENTITY or ALTER-LEARNING-RATE (Real et al. 2017, *Large-Scale Evolution of
Image Classifiers*) keep their parent's architecture, and in the ``mlp`` space siblings often
coincide; small networks leave a core or a GPU mostly idle. So K such candidates are trained as
one: their parameters and buffers are stacked into tensors of shape ``(K, ...)``
(``torch.func.stack_module_state``), the forward pass and loss run under ``torch.func.vmap`` over
``torch.func.functional_call`` of one skeleton module, and a single backward pass of the summed
loss yields every candidate's own gradient (the candidates share no parameter, so the gradient of
the sum with respect to row k is candidate k's gradient). The optimizers are the functional ones
of :mod:`evograph.compile.training.functional_optim`, with a learning rate and weight decay per row.

BatchNorm in train mode updates running statistics in place; under ``vmap`` the stacked buffers
are cloned inside the mapped function and returned as an auxiliary output, so each candidate's
statistics evolve exactly as they would alone.

Each candidate keeps its own seed (its minibatch order comes from its own generator, drawn exactly
as :func:`~evograph.compile.training.sgd.train_steps` draws it), its own initial or inherited weights and
its own genes; the group must share architecture, optimizer type and batch size
(:func:`batch_problem`). A candidate whose loss turns non-finite stops there, as it would alone;
the others go on. Training K candidates batched equals training each alone up to float rounding.

Whether batching pays is measured, not assumed: see :mod:`evograph.compile.training.batch_rule`.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torch.func import functional_call, stack_module_state, vmap
from torch.nn import functional as F

from ...genome.core import Genome
from .dense_stack import DenseStack, dense_chain
from .fitness import Score, Splits
from .functional_optim import FUNCTIONAL_OPTIMIZERS, apply_update, clip_rows_, init_state
from .sgd import AUGMENTATIONS, Augmentation, SGDTraining, lr_factor


def batch_problem(genomes: Sequence[Genome],
                  genes: Sequence[dict[str, Any]] | None = None) -> str | None:
    """Why ``genomes`` cannot be trained as one batch, or None when they can. ``genes``: what
    each trains with, where the fitness replaces some of the genomes' own
    (:meth:`SGDTraining.genes_for`)."""
    if len(genomes) < 2:
        return "fewer than two candidates"
    genes = [g.gene for g in genomes] if genes is None else list(genes)
    optimizer = genes[0].get("optimizer", "sgd")
    if optimizer not in FUNCTIONAL_OPTIMIZERS:
        return f"optimizer {optimizer!r} has no functional (batched) form"
    for genome, its in zip(genomes[1:], genes[1:]):
        if genome.arch_hash != genomes[0].arch_hash:
            return "architectures differ"
        if its.get("optimizer", "sgd") != optimizer:
            return "optimizers differ"
        if its.get("batch_size", 64) != genes[0].get("batch_size", 64):
            return "batch sizes differ"
    return None


class _Orders:
    """Minibatch indices for K candidates, each from its own generator, drawn exactly as
    ``train_steps`` draws them (all share n and the batch size, so they share the cursor)."""

    def __init__(self, n: int, batch: int, seeds: Sequence[int]):
        self.n, self.batch = n, batch
        self.gens = [torch.Generator().manual_seed(int(s)) for s in seeds]
        self._shuffle()

    def _shuffle(self) -> None:
        self.orders = torch.stack([torch.randperm(self.n, generator=g) for g in self.gens])
        self.cursor = 0                                                  # orders: (K, n)

    def next(self, device: torch.device) -> Tensor:
        if self.n - self.cursor < 2:  # as train_steps: never a batch of one (batch-norm)
            self._shuffle()
        idx = self.orders[:, self.cursor:self.cursor + self.batch]
        self.cursor += self.batch
        return idx.to(device)                                            # (K, b)


def _batched_loss(skeleton: nn.Module, label_smoothing: float) -> Callable:
    """vmap of (params, buffers, x, y) -> (loss, updated buffers) for one candidate."""
    def one(params: dict, buffers: dict, x: Tensor, y: Tensor):
        buffers = {k: v.clone() for k, v in buffers.items()}  # BN updates these in place
        logits = functional_call(skeleton, (params, buffers), (x,))     # (b, classes)
        return F.cross_entropy(logits, y, label_smoothing=label_smoothing), buffers
    return vmap(one)


def _rows(mask: Tensor, like: Tensor) -> Tensor:
    """A ``(K,)`` boolean mask broadcastable over ``like`` of shape ``(K, ...)``."""
    return mask.view(-1, *[1] * (like.dim() - 1))


def _keep_stopped(old: dict[str, Tensor], new: dict[str, Tensor], alive: list[bool],
                  device: torch.device) -> dict[str, Tensor]:
    """The updated buffers, except that candidates stopped before this step keep theirs."""
    if all(alive):
        return new
    mask = torch.tensor(alive, device=device)
    return {n: torch.where(_rows(mask, b), new[n], b) for n, b in old.items()}


class _Curves:
    """Per-candidate loss curves averaged over the same chunks as ``train_steps``."""

    def __init__(self, k: int, steps: int, points: int):
        self.chunk, self.steps = max(1, steps // points), steps
        self.curves: list[list[float]] = [[] for _ in range(k)]
        self.running, self.count = [0.0] * k, 0

    def add(self, step: int, values: list[float], alive: list[bool]) -> None:
        self.count += 1
        flush = self.count == self.chunk or step == self.steps - 1
        for k, value in enumerate(values):
            if alive[k]:
                self.running[k] += value
                if flush:
                    self.curves[k].append(self.running[k] / self.count)
                    self.running[k] = 0.0
        if flush:
            self.count = 0


class _Population:
    """K candidates as one: stacked parameters ``(K, ...)``, buffers, optimizer state, genes."""

    def __init__(self, modules: Sequence[nn.Module], genes: Sequence[dict[str, Any]],
                 device: torch.device, label_smoothing: float):
        self.optimizer = genes[0].get("optimizer", "sgd")
        skeleton = copy.deepcopy(modules[0]).to("meta").train()
        self.params, self.buffers = stack_module_state(list(modules))   # {name: (K, ...)}
        self.plist = list(self.params.values())
        self.lr = torch.tensor([float(g["learning_rate"]) for g in genes], dtype=torch.float64)
        self.wd = torch.tensor([float(g.get("weight_decay", 0.0)) for g in genes],
                               dtype=torch.float64)
        self.state: dict | None = None         # created at the first step (see _match_layout)
        self.loss_fn = _batched_loss(skeleton, label_smoothing)
        self.device = device
        self.alive = [True] * len(modules)

    def step(self, x: Tensor, y: Tensor, step: int, grad_clip: float,
             rate: float = 1.0) -> list[float]:
        """One training step of every live candidate on its own minibatch (x: (K, b, ...)), at
        ``rate`` times each one's learning rate; returns the K losses. A candidate whose loss is non-finite stops before updating, as
        ``train_steps`` does, and stays frozen from then on."""
        losses, new_buffers = self.loss_fn(self.params, self.buffers, x, y)     # (K,)
        values = losses.detach().tolist()
        self.buffers = _keep_stopped(self.buffers, new_buffers, self.alive, self.device)
        self.alive = [a and math.isfinite(v) for a, v in zip(self.alive, values)]
        if not any(self.alive):
            return values
        mask = torch.tensor(self.alive, device=self.device)
        grads = list(torch.autograd.grad(torch.where(mask, losses, 0.0).sum(), self.plist))
        if not all(self.alive):
            grads = [torch.where(_rows(mask, g), g, 0.0) for g in grads]
        if grad_clip > 0:
            clip_rows_(grads, grad_clip)
        if self.state is None:
            self._match_layout(grads)
        rates = self.lr * mask.cpu() * rate
        apply_update(self.optimizer, self.plist, grads, self.state, rates, self.wd, step)
        return values


    @torch.no_grad()
    def _match_layout(self, grads: list[Tensor]) -> None:
        """Give each stacked parameter (and so its optimizer state) its gradient's memory layout:
        under vmap a linear layer's weight gradient comes back transposed, and elementwise
        optimizer arithmetic across mismatched layouts is several times slower."""
        for i, (name, param) in enumerate(list(self.params.items())):
            if param.stride() != grads[i].stride():
                self.params[name] = torch.empty_like(grads[i]).copy_(param).requires_grad_(True)
        self.plist = list(self.params.values())
        self.state = init_state(self.optimizer, self.plist)

    def write_back(self, modules: Sequence[nn.Module]) -> None:
        _write_back(modules, self.params, self.buffers)


def train_batched(modules: Sequence[nn.Module], genes: Sequence[dict[str, Any]], data: Splits,
                  steps: int, batch: int, seeds: Sequence[int], device: torch.device,
                  label_smoothing: float = 0.0, grad_clip: float = 0.0,
                  points: int = 20, direct: bool = True,
                  augment: Augmentation | None = None,
                  lr_schedule: str = "constant") -> list[list[float]]:
    """``train_steps`` for K modules of one architecture at once; the trained weights are written
    back into ``modules``. Returns each candidate's loss curve (ending non-finite if it
    diverged). Chains of dense layers take the direct path of
    :mod:`evograph.compile.training.dense_stack` unless ``direct`` is False; other networks, ``vmap``.
    ``augment`` and ``lr_schedule`` as in ``train_steps``: each candidate draws from its own
    generator."""
    layers = dense_chain(modules[0]) if direct else None
    population: DenseStack | _Population = (
        DenseStack(modules, layers, genes, device, label_smoothing) if layers
        else _Population(modules, genes, device, label_smoothing))
    orders = _Orders(len(data.x_train), batch, seeds)
    x_all, y_all = data.x_train.to(device), data.y_train.to(device)
    curves = _Curves(len(modules), steps, points)
    for step in range(steps):
        idx = orders.next(device)                                          # (K, b)
        was_alive = population.alive
        rows = idx.reshape(-1)       # index_select: several times faster than x_all[idx]
        x = x_all.index_select(0, rows).view(*idx.shape, *x_all.shape[1:])    # (K, b, ...)
        if augment is not None:
            x = _augment_rows(x, orders.gens, augment)
        values = population.step(x, y_all.index_select(0, rows).view(idx.shape), step + 1,
                                 grad_clip, lr_factor(lr_schedule, step, steps))
        for i, value in enumerate(values):
            if was_alive[i] and not population.alive[i]:
                curves.curves[i].append(value)                             # its last entry
        if not any(population.alive):
            break
        curves.add(step, values, population.alive)
    population.write_back(modules)
    return curves.curves


def _augment_rows(x: Tensor, gens: Sequence[torch.Generator], augment: Augmentation) -> Tensor:
    """Row k of ``x`` (K, b, ...) augmented with parameters drawn from generator k, as candidate
    k's ``train_steps`` would draw them, and all rows transformed in one call."""
    draws = [augment.draw(x[k], gen) for k, gen in enumerate(gens)]
    if draws[0] is None:
        return x
    return augment.apply(x.flatten(0, 1), torch.cat(draws)).view(x.shape)


@torch.no_grad()
def _write_back(modules: Sequence[nn.Module], params: dict[str, Tensor],
                buffers: dict[str, Tensor]) -> None:
    for k, module in enumerate(modules):
        for name, tensor in module.named_parameters():
            tensor.copy_(params[name][k])
        for name, tensor in module.named_buffers():
            tensor.copy_(buffers[name][k])


def score_batched(fitness: SGDTraining, modules: Sequence[nn.Module],
                  genomes: Sequence[Genome], data: Splits, seeds: Sequence[int],
                  device: torch.device) -> list[Score]:
    """``SGDTraining.score`` for K candidates trained together; ``train_time`` is each one's
    share of the batched training time."""
    genes = [fitness.genes_for(g) for g in genomes]
    batch, steps = fitness.schedule(genomes[0], data)
    start = time.perf_counter()
    curves = train_batched(modules, genes, data, steps, batch, seeds, device,
                           fitness.label_smoothing, fitness.grad_clip,
                           augment=AUGMENTATIONS[fitness.augment],
                           lr_schedule=fitness.lr_schedule)
    share = (time.perf_counter() - start) / len(modules)
    return [fitness.finish(m, g, data, c, share, device)
            for m, g, c in zip(modules, genomes, curves)]

