"""The plain PyTorch side of ``benchmarks/peers.py``: the network a peer's user builds from a
trial's genes, the training loop every peer's objective runs, and the one shared retraining of
every system's pick (evograph's included) on the test split.

The loop is the ``sgd`` fitness's recipe written out as a user would: shuffled passes, the genes'
optimizer, learning rate, weight decay and batch size, random one-pixel shifts of each minibatch
(``augment = "shift"``: the same draws from the same generator as evograph's augmentation).
"""

from __future__ import annotations

import numpy as np
import torch
from evograph.compile.determinism import seeded_cpu_rng
from evograph.compile.training.sgd import OPTIMIZER_FACTORIES
from evograph.data.datasets import Dataset
from torch import nn
from torch.nn import functional as F


# -- the model ---------------------------------------------------------------------------------
class Block(nn.Module):
    """A convolution, optionally with BN + ReLU; ``skip`` adds the block's input, average-pooled
    to the output's size and zero-padded or cut to its channels (evograph's merge rule)."""

    def __init__(self, c_in: int, layer: dict):
        super().__init__()
        (kh, kw), c = layer["kernel"], layer["channels"]
        conv = nn.Conv2d(c_in, c, (kh, kw), stride=tuple(layer["stride"]),
                         padding=(kh // 2, kw // 2), bias=not layer["bn_relu"])
        self.body = nn.Sequential(conv, nn.BatchNorm2d(c), nn.ReLU()) if layer["bn_relu"] else conv
        self.skip = bool(layer["skip"])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.body(x)
        if not self.skip:
            return y
        s = x if x.shape[-2:] == y.shape[-2:] else F.adaptive_avg_pool2d(x, y.shape[-2:])
        c = y.shape[1]
        s = s[:, :c] if s.shape[1] >= c else F.pad(s, (0, 0, 0, 0, 0, c - s.shape[1]))
        return y + s


def make_net(arch: dict, in_channels: int = 1, classes: int = 10) -> nn.Module:
    """Convolution blocks, global average pooling, a linear classifier."""
    blocks, c = [], in_channels
    for layer in arch["layers"]:
        blocks.append(Block(c, layer))
        c = layer["channels"]
    return nn.Sequential(*blocks, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c, classes))


# -- the loop ----------------------------------------------------------------------------------
def shift(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Translate each image by -1, 0 or +1 pixels per axis, zero fill (``augment = "shift"``)."""
    n, _, h, w = x.shape
    offsets = torch.randint(0, 3, (n, 2), generator=gen)
    rows = (offsets[:, :1] + torch.arange(h))[:, :, None]                  # (N, H, 1)
    cols = (offsets[:, 1:] + torch.arange(w))[:, None, :]                  # (N, 1, W)
    padded = F.pad(x, (1, 1, 1, 1))
    return padded[torch.arange(n)[:, None, None], :, rows, cols].permute(0, 3, 1, 2)


def train(model: nn.Module, genes: dict, data: Dataset, epochs: int, seed: int) -> bool:
    """``epochs`` shuffled passes with the genes' optimizer, learning rate, weight decay and
    batch size; False (stopped before the step) when the loss goes non-finite."""
    gen = torch.Generator().manual_seed(seed)
    # the genes' optimizer built as the `sgd` fitness builds it: the same gene, the same optimizer
    opt = OPTIMIZER_FACTORIES[genes["optimizer"]](model.parameters(), float(genes["learning_rate"]),
                                                float(genes["weight_decay"]))
    model.train()
    for _ in range(epochs):
        for idx in torch.randperm(len(data.x_train), generator=gen).split(genes["batch_size"]):
            if len(idx) < 2:  # a batch of one breaks batch norm
                continue
            loss = F.cross_entropy(model(shift(data.x_train[idx], gen)), data.y_train[idx])
            if not torch.isfinite(loss):
                return False
            opt.zero_grad()
            loss.backward()
            opt.step()
    return True


@torch.no_grad()
def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    model.eval()
    return float((model(x).argmax(1) == y).float().mean())


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# -- the shared retraining -------------------------------------------------------------------------
def pick_model(record: dict):
    """(seed -> fresh module, genes) of a system's pick: evograph's genome through evograph's
    builder, a peer's architecture through :func:`make_net`."""
    if "genome" in record["pick"]:
        from evograph.compile.builder import build
        from evograph.genome.io import from_dict
        genome = from_dict(record["pick"]["genome"])
        return (lambda seed: build(genome, seed=seed, device="cpu")), dict(genome.gene)

    def make(seed: int) -> nn.Module:
        with seeded_cpu_rng(seed):  # seeded, torch's global generator untouched
            return make_net(record["pick"]["arch"])
    return make, record["pick"]["arch"]


def retrain(record: dict, data: Dataset, seeds: int, epochs: int) -> dict:
    """Test accuracy of the pick trained from scratch with seeds 0..seeds-1: mean, std, values."""
    make, genes = pick_model(record)
    values = []
    for seed in range(seeds):
        model = make(seed)
        train(model, genes, data, epochs, seed)
        values.append(accuracy(model, data.x_test, data.y_test))
    return {"mean": float(np.mean(values)), "std": float(np.std(values)), "values": values,
            "params": n_params(make(0)), "seeds": seeds, "epochs": epochs}
