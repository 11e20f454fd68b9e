"""``evograph meta ...``: commands of the meta-learners.

``evograph meta train-optimizer CONFIG -o opt.safetensors`` meta-trains the learned optimizer of
Andrychowicz et al. 2016 (:mod:`evograph.meta.learned_optimizer.train`) from a strict TOML config (see
``runs/configs/learned-optimizer.toml``), with a progress display, a checkpoint beside the output
(``opt.ckpt.safetensors``) every few iterations and on Ctrl-C, and ``--resume`` to continue one —
exactly, since every trajectory's task depends on (seed, iteration) alone.

Torch and the learned-optimizer modules are imported by the functions that use them, so that
building the ``evograph`` parser stays quick; checking a config imports them too (a task family's
parameters are checked by building the family).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ...errors import ConfigError, RunStoreError
from ..config import apply_overrides, check_type, read_toml, table_section

if TYPE_CHECKING:
    import torch

    from ...meta.learned_optimizer.lstm import LSTMConfig
    from ...meta.learned_optimizer.train import MetaConfig


@dataclass(frozen=True)
class TrainingSection:
    steps: int = 100
    unroll: int = 20
    meta_lr: float = 0.01
    meta_iterations: int = 300
    meta_clip: float = 1.0
    anneal: bool = True
    checkpoint_every: int = 10

    def check(self) -> None:
        if self.checkpoint_every < 1:
            raise ValueError("checkpoint_every: must be positive")


def _default_lstm() -> LSTMConfig:
    from ...meta.learned_optimizer.lstm import LSTMConfig
    return LSTMConfig()


@dataclass(frozen=True)
class TrainOptimizerConfig:
    """The resolved meta-training config: ``seed``, ``device``, ``[task]`` (``family`` and that
    family's parameters), ``[optimizer]`` (the LSTM) and ``[training]``."""

    seed: int = 0
    device: str = "auto"
    family: str = "quadratic"
    family_params: dict = field(default_factory=dict)
    optimizer: LSTMConfig = field(default_factory=_default_lstm)
    training: TrainingSection = field(default_factory=TrainingSection)

    def meta_config(self) -> MetaConfig:
        from ...meta.learned_optimizer.train import MetaConfig
        t = self.training
        return MetaConfig(steps=t.steps, unroll=t.unroll, meta_lr=t.meta_lr,
                          meta_iterations=t.meta_iterations, meta_clip=t.meta_clip,
                          anneal=t.anneal, seed=self.seed)

    def to_dict(self) -> dict[str, Any]:
        return {"seed": self.seed, "device": self.device,
                "task": {"family": self.family, **self.family_params},
                "optimizer": dataclasses.asdict(self.optimizer),
                "training": dataclasses.asdict(self.training)}


def _task(data: Any) -> tuple[str, dict[str, Any]]:
    from ...meta.learned_optimizer.tasks import make_family
    if not isinstance(data, dict):
        raise ValueError("task: must be a table")  # noqa: TRY004 (config contract)
    params = dict(data)
    family = check_type("task.family", params.pop("family", "quadratic"), str)
    try:
        make_family(family, params)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"task.{exc}") from None
    return family, params


def config_from_dict(data: dict[str, Any], source: str) -> TrainOptimizerConfig:
    """Validate parsed TOML; every mistake is one ConfigError naming the key and ``source``."""
    from ...meta.learned_optimizer.lstm import LSTMConfig
    try:
        top: dict[str, Any] = {}
        for key, value in data.items():
            if key == "seed":
                top["seed"] = check_type("seed", value, int)
                if not 0 <= value < 2**32:
                    raise ValueError(f"seed: must be in [0, 2^32) (got {value})")
            elif key == "device":
                top["device"] = check_type("device", value, str)
                if not (value in ("auto", "cpu", "cuda") or value.startswith("cuda:")):
                    raise ValueError(f"device: must be auto, cpu, cuda or cuda:N (got {value!r})")
            elif key == "task":
                top["family"], top["family_params"] = _task(value)
            elif key == "optimizer":
                top["optimizer"] = table_section(LSTMConfig, value, "optimizer")
            elif key == "training":
                top["training"] = table_section(TrainingSection, value, "training")
            else:
                raise ValueError(f"{key}: unknown key (known: seed, device, task, optimizer, "
                                 f"training)")
        config = TrainOptimizerConfig(**top)
        try:
            config.meta_config()
        except ValueError as exc:
            raise ValueError(f"training.{exc}") from None
        return config
    except ValueError as exc:
        raise ConfigError(f"{source}: {exc}") from None


def load_train_config(path: str | Path, overrides: list[str] | None = None
                      ) -> TrainOptimizerConfig:
    path = Path(path)
    return config_from_dict(apply_overrides(read_toml(path), overrides or []), path.name)


def checkpoint_path(out: Path) -> Path:
    """``opt.safetensors`` -> ``opt.ckpt.safetensors`` (beside the output)."""
    return out.with_name(out.name.removesuffix(".safetensors") + ".ckpt.safetensors")


# -- the command ---------------------------------------------------------------------------------
def register(sub: argparse._SubParsersAction) -> None:
    meta = sub.add_parser("meta", help="meta-learners: learned optimizers, ...")
    meta_sub = meta.add_subparsers(dest="meta_command", required=True, metavar="META_COMMAND")
    p = meta_sub.add_parser("train-optimizer", help="meta-train a learned optimizer "
                            "(Andrychowicz et al. 2016) from a TOML config")
    p.add_argument("config")
    p.add_argument("-o", "--out", required=True, help="the optimizer file to write "
                   "(safetensors), e.g. opt.safetensors")
    p.add_argument("--resume", action="store_true",
                   help="continue from the checkpoint beside OUT (OUT minus .safetensors "
                        "plus .ckpt.safetensors)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set training.meta_iterations=50")
    p.add_argument("--no-live", action="store_true", help="log lines instead of a progress bar")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1: the "
                   "LSTM's small kernels run fastest on one)")
    p.set_defaults(handler=cmd_train_optimizer)


class _Stop(Exception):
    """Raised from the per-iteration callback after a checkpoint when Ctrl-C was pressed."""


def _start(config: TrainOptimizerConfig, ckpt: Path, resume: bool, device: torch.device):
    """The network, its Adam, the next iteration and the history: fresh or from ``ckpt``."""
    from ...meta.learned_optimizer.lstm import LSTMOptimizer
    from ...meta.learned_optimizer.train import load_checkpoint, make_meta_optimizer
    net = LSTMOptimizer(config.optimizer, seed=config.seed).to(device)
    meta_opt = make_meta_optimizer(net, config.meta_config())
    if not resume:
        if ckpt.exists():
            raise RunStoreError(f"{ckpt}: a checkpoint exists; pass --resume to continue it "
                                f"or delete it to start over")
        return net, meta_opt, 0, []
    if not ckpt.exists():
        raise RunStoreError(f"{ckpt}: no checkpoint to resume")
    saved = load_checkpoint(ckpt)
    if saved["extra"].get("config") != json.loads(json.dumps(config.to_dict())):
        raise RunStoreError(f"{ckpt}: the checkpoint was made with a different config; "
                            f"resume with the same config and --set values")
    net.load_state_dict(saved["net_state"])
    meta_opt.load_state_dict(saved["adam_state"])
    return net, meta_opt, saved["iteration"], saved["history"]


def _summary(history: list[float]) -> str:
    if not history:
        return "-"
    head, tail = history[:10], history[-10:]
    return (f"mean trajectory loss {sum(head) / len(head):.4g} (first {len(head)}) -> "
            f"{sum(tail) / len(tail):.4g} (last {len(tail)})")


def _progress(live: bool, total: int, start: int):
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )
    progress = Progress(TextColumn("meta-training"), BarColumn(), MofNCompleteColumn(),
                        TextColumn("loss {task.fields[loss]}"), TimeElapsedColumn(),
                        TimeRemainingColumn(), disable=not live, transient=False)
    return progress, progress.add_task("train", total=total, completed=start, loss="-")


class _Session:
    """The per-trajectory callback of one training: progress, checkpoints, Ctrl-C."""

    def __init__(self, net, meta_opt, ckpt: Path, config: TrainOptimizerConfig, live: bool,
                 start: int):
        self.net, self.meta_opt, self.ckpt, self.live = net, meta_opt, ckpt, live
        self.total = config.training.meta_iterations
        self.every = config.training.checkpoint_every
        self.extra = {"config": config.to_dict()}
        self.progress, self.bar = _progress(live, self.total, start)
        self.started, self.stop = time.monotonic(), False

    def __call__(self, iteration: int, history: list[float]) -> None:
        from ...meta.learned_optimizer.train import save_checkpoint
        done = iteration + 1
        self.progress.update(self.bar, completed=done, loss=f"{history[-1]:.4g}")
        if not self.live and (done % max(1, self.total // 20) == 0 or done == self.total):
            print(f"[{time.monotonic() - self.started:6.0f}s] {done}/{self.total} "
                  f"trajectories, loss {history[-1]:.4g}", file=sys.stderr, flush=True)
        if done % self.every == 0 or done == self.total or self.stop:
            save_checkpoint(self.ckpt, self.net, self.meta_opt, done, history, self.extra)
        if self.stop and done < self.total:
            raise _Stop(done)

    def on_sigint(self, signum: int, frame: Any) -> None:
        if self.stop:
            raise KeyboardInterrupt
        self.stop = True
        print("stopping after this trajectory (Ctrl-C again to abort)", file=sys.stderr)


def cmd_train_optimizer(args: argparse.Namespace) -> int:
    import torch

    from ...devices import pick_device
    from ...meta.learned_optimizer.lstm import save_optimizer
    from ...meta.learned_optimizer.tasks import make_family
    from ...meta.learned_optimizer.train import meta_train
    config = load_train_config(args.config, args.overrides)
    if args.threads < 1:
        raise ConfigError(f"--threads: must be positive (got {args.threads})")
    torch.set_num_threads(args.threads)
    out, device = Path(args.out), pick_device(config.device)
    ckpt, meta_config = checkpoint_path(out), config.meta_config()
    net, meta_opt, start, history = _start(config, ckpt, args.resume, device)
    family = make_family(config.family, config.family_params)
    session = _Session(net, meta_opt, ckpt, config, sys.stderr.isatty() and not args.no_live,
                       start)
    previous = signal.signal(signal.SIGINT, session.on_sigint)
    print(f"meta-training on {config.family} tasks: {meta_config.meta_iterations} trajectories "
          f"of {meta_config.steps} steps (unrolls of {meta_config.unroll}) on {device}"
          + (f", resuming after {start}" if start else ""), file=sys.stderr)
    try:
        with session.progress:
            history = meta_train(net, family, meta_config, meta_opt=meta_opt, start=start,
                                 history=history, device=device, callback=session)
    except _Stop as stopped:
        print(f"stopped after {stopped.args[0]} trajectories; continue with: evograph meta "
              f"train-optimizer {args.config} -o {out} --resume", file=sys.stderr)
        return 130
    finally:
        signal.signal(signal.SIGINT, previous)
    save_optimizer(net, out, {"config": config.to_dict(), "history": history,
                              "meta_iterations": meta_config.meta_iterations})
    ckpt.unlink(missing_ok=True)
    print(f"{_summary(history)}\nlearned optimizer written to {out}\n"
          f"use it: fitness = \"learned-optimizer\" with path = \"{out}\" "
          f"(see runs/configs/digits-learned-optimizer.toml)")
    return 0
