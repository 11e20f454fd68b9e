"""Training, storing and sharing the SMASH hypernetwork.

Training (Brock et al. 2018, §3): every step draws one genome of the space — a random sample or
the space's initial genome, then up to ``mutations`` random mutations, so the distribution also
covers what evolution actually produces (lse-conv evolution starts from trivial networks and
grows by mutation) — compiles it, generates its weights and takes one Adam step on the training
loss of a minibatch. Deterministic from ``config.seed``: genomes come from a numpy Generator,
minibatches from a torch Generator, initialisation from a forked torch RNG.

Storage: ``<dir>/smash-<fingerprint>.safetensors`` (the weights) and ``.json`` (format, config,
fingerprint, training statistics); no pickle anywhere. The fingerprint covers the config and the
training data, so two runs that would train the same hypernetwork share the file and different
ones never clash. Parallel workers serialise on ``<stem>.lock`` (``filelock``): the first trains
and writes both files atomically (weights first, the JSON last as the commit mark), the others
wait and load.
"""

from __future__ import annotations

import hashlib
import json
import time
import weakref
from pathlib import Path
from typing import Any

import numpy as np
import torch
from filelock import FileLock
from safetensors import SafetensorError
from safetensors.torch import load_file, save
from torch.func import functional_call
from torch.nn import functional as F

from ...compile.builder import build
from ...compile.determinism import seeded_cpu_rng
from ...compile.training.fitness import Splits
from ...errors import EvographError
from ...files import atomic_write_bytes
from ...genome.core import Genome
from ...genome.space import SearchSpace
from ...genome.validate import analyze
from ...operators.base import VariationFailed, mutate
from .smash import FORMAT, VERSION, SmashConfig, SmashHypernet

_LOADED: dict[str, SmashHypernet] = {}     # per process: stem -> hypernetwork (loaded once)
_DIGESTS: dict[int, str] = {}             # id(x_train) -> data digest, while it lives


class HypernetError(EvographError):
    """A stored hypernetwork is missing, corrupt or of another format."""


def training_genome(space: SearchSpace, rng: np.random.Generator, config: SmashConfig) -> Genome:
    """One genome of SMASH's training distribution (see the module docstring)."""
    shape, classes = config.input_shape, config.num_classes
    if rng.random() < config.initial_fraction:
        genome = space.initial_genome(rng, shape, classes)
    else:
        genome = space.sample(rng, shape, classes)
    for _ in range(int(rng.integers(0, config.mutations + 1))):
        try:
            genome, _ = mutate(genome, rng, space)
        except VariationFailed:
            break
    return genome


def train_smash(config: SmashConfig, data: Splits, device: torch.device | str = "cpu",
                ) -> tuple[SmashHypernet, dict[str, Any]]:
    """Train a SMASH hypernetwork on ``data``'s training split; returns it and statistics."""
    start, device = time.perf_counter(), torch.device(device)
    space = config.get_space()
    rng = np.random.default_rng(config.seed)
    gen = torch.Generator().manual_seed(config.seed)
    with seeded_cpu_rng(config.seed):
        hyper = SmashHypernet(config).to(device)
    optimizer = torch.optim.Adam(hyper.parameters(), lr=config.lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, max(config.steps, 1))
    x_all, y_all = data.x_train.to(device), data.y_train.to(device)
    curve, running = [], []
    hyper.train()
    for step in range(config.steps):
        genome = training_genome(space, rng, config)
        info = analyze(genome)
        module = build(genome, seed=step, device=device, info=info).train()
        idx = torch.randint(len(x_all), (config.batch,), generator=gen).to(device)
        logits = functional_call(module, hyper(genome, module, info), (x_all[idx],),
                                 strict=False)
        loss = F.cross_entropy(logits, y_all[idx])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(hyper.parameters(), 5.0)
        optimizer.step()
        schedule.step()
        running.append(float(loss.detach()))
        if len(running) == max(1, config.steps // 20) or step == config.steps - 1:
            curve.append(sum(running) / len(running))
            running = []
    hyper.eval()
    return hyper, {"train_time": time.perf_counter() - start, "loss_curve": curve,
                   "parameters": sum(p.numel() for p in hyper.parameters())}


def _data_digest(data: Splits) -> str:
    """A hash of the training split (all labels, a strided sample of at most ~1M inputs),
    cached per tensor: a worker scores many candidates on the same dataset object."""
    key = id(data.x_train)
    if key not in _DIGESTS:
        x = data.x_train.detach().to("cpu").reshape(-1)
        digest = hashlib.sha256(x[::max(1, x.numel() // (1 << 20))].contiguous().numpy())
        digest.update(data.y_train.detach().to("cpu").contiguous().numpy().tobytes())
        _DIGESTS[key] = digest.hexdigest()
        weakref.finalize(data.x_train, _DIGESTS.pop, key, None)   # ids are reused after death
    return _DIGESTS[key]


def fingerprint(config: SmashConfig, data: Splits) -> str:
    """A hash of the config and the training data (shapes, classes, :func:`_data_digest`)."""
    content = {"format": FORMAT, "version": VERSION, "config": config.to_dict(),
               "data": [list(data.x_train.shape), data.num_classes, _data_digest(data)]}
    text = json.dumps(content, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def save_hypernet(hyper: SmashHypernet, stem: str | Path, stats: dict[str, Any],
                  fp: str = "") -> None:
    """``stem.safetensors`` + ``stem.json`` (written last: its presence means complete)."""
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in hyper.state_dict().items()}
    atomic_write_bytes(stem.with_suffix(".safetensors"), save(tensors, metadata={"format": FORMAT}))
    meta = {"format": FORMAT, "version": VERSION, "fingerprint": fp,
            "config": hyper.config.to_dict(), "stats": stats}
    atomic_write_bytes(stem.with_suffix(".json"), json.dumps(meta, indent=2).encode())


def load_hypernet(stem: str | Path, device: torch.device | str = "cpu",
                  ) -> tuple[SmashHypernet, dict[str, Any]]:
    """Load a stored hypernetwork (JSON config + safetensors weights; never unpickles)."""
    stem = Path(stem)
    try:
        meta = json.loads(stem.with_suffix(".json").read_text())
        if meta.get("format") != FORMAT or meta.get("version") != VERSION:
            raise HypernetError(f"{stem}.json: not an {FORMAT} v{VERSION} file")
        hyper = SmashHypernet(SmashConfig.from_dict(meta["config"]))
        hyper.load_state_dict(load_file(str(stem.with_suffix(".safetensors"))), strict=True)
    except (OSError, ValueError, KeyError, RuntimeError, TypeError, SafetensorError) as exc:
        raise HypernetError(f"{stem}: cannot load the hypernetwork ({exc})") from None
    return hyper.to(device).eval(), meta


def ensure_trained(directory: str | Path, config: SmashConfig, data: Splits,
                   device: torch.device | str = "cpu") -> tuple[SmashHypernet, Path]:
    """The hypernetwork for (config, data): from this process's cache, from disk, or trained now
    (once across processes, under a file lock). Returns it and its file stem."""
    stem = Path(directory).expanduser() / f"smash-{fingerprint(config, data)}"
    key = f"{stem.resolve()}@{torch.device(device)}"
    if key in _LOADED:
        return _LOADED[key], stem
    if not stem.with_suffix(".json").exists():
        stem.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(str(stem) + ".lock"):
            if not stem.with_suffix(".json").exists():
                hyper, stats = train_smash(config, data, device)
                save_hypernet(hyper, stem, stats, stem.name.split("-", 1)[1])
    hyper, _ = load_hypernet(stem, device)
    _LOADED[key] = hyper
    return hyper, stem


def stored_stats(stem: str | Path) -> dict[str, Any]:
    """The training statistics stored beside a hypernetwork (time, loss curve, parameters)."""
    return json.loads(Path(stem).with_suffix(".json").read_text()).get("stats", {})

