"""``evograph hypernet train | retrain``: the SMASH workflow around ``fitness = "hypernet"``.

1. ``evograph hypernet train CONFIG`` trains (or finds) the config's SMASH hypernetwork up front,
   so no worker spends its first evaluation training it (optional: the first evaluation of a run
   does it otherwise, once, under a file lock).
2. ``evograph run CONFIG`` ranks thousands of genomes by generated-weight validation accuracy.
3. ``evograph hypernet retrain RUN --top K`` trains the K best distinct architectures for real
   (``sgd`` fitness) and prints their true validation and test accuracy.

The torch-side modules are imported by the handlers, so that building the parser stays quick.
"""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING

from ...errors import ConfigError

if TYPE_CHECKING:
    from ...meta.hypernet.smash_fitness import HypernetScoring
    from ..store import RunStore


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("hypernet", help="SMASH hypernetwork: train it, retrain a run's winners")
    hsub = p.add_subparsers(dest="hypernet_command", required=True, metavar="ACTION")
    t = hsub.add_parser("train", help="train (or find) the hypernetwork of a fitness=hypernet "
                                      "config")
    t.add_argument("config")
    t.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    t.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    t.set_defaults(handler=cmd_train)
    r = hsub.add_parser("retrain", help="train a run's best architectures for real (sgd)")
    r.add_argument("run_dir")
    r.add_argument("--top", type=int, default=5, help="how many distinct architectures")
    r.add_argument("--epochs", type=float, default=10.0)
    r.add_argument("--keep-genes", action="store_true",
                   help="train with each genome's own genes instead of the space's initial genes")
    r.add_argument("--device", default="auto")
    r.add_argument("--json", action="store_true")
    r.set_defaults(handler=cmd_retrain)


def _scoring(config, source: str) -> HypernetScoring:
    from ...meta.hypernet.smash_fitness import HypernetScoring
    from ..setup import with_run_space
    if config.fitness.name != "hypernet":
        raise ConfigError(f"{source}: fitness.name: must be \"hypernet\" for this command "
                          f"(got {config.fitness.name!r})")
    params = with_run_space(config, source).fitness.params
    try:
        return HypernetScoring(**params)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{source}: fitness.{exc}") from None


def cmd_train(args: argparse.Namespace) -> int:
    from ...devices import pick_device
    from ...meta.hypernet.smash_train import stored_stats
    from ..config import load_config
    from ..setup import load_run_dataset
    config = load_config(args.config, args.overrides)
    scoring = _scoring(config, args.config)
    data = load_run_dataset(config)
    _, stem = scoring.prepare(data, pick_device(args.device))
    stats = stored_stats(stem)
    print(f"hypernetwork: {stem}.safetensors ({stats.get('parameters', 0):,} parameters, "
          f"trained in {stats.get('train_time', 0.0):.1f} s, final loss "
          f"{(stats.get('loss_curve') or [float('nan')])[-1]:.3f})")
    return 0


def top_architectures(store: RunStore, top: int) -> list[tuple[int, float, dict]]:
    """(id, hypernet fitness, genome dict) of the ``top`` best distinct architectures."""
    seen, out = set(), []
    for row in store.best(store.count_individuals()):
        ind = store.individual(row.id)
        if ind.arch_hash in seen:
            continue
        seen.add(ind.arch_hash)
        out.append((row.id, row.fitness, ind.genome))
        if len(out) == top:
            break
    return out


def cmd_retrain(args: argparse.Namespace) -> int:
    if args.top < 1 or args.epochs <= 0:
        raise ConfigError("--top and --epochs must be positive")
    from ...devices import pick_device
    from ...genome.io import from_dict
    from ...meta.hypernet.smash_fitness import retrain
    from ..config import config_from_dict
    from ..setup import load_run_dataset, resolve_space
    from ..store import RunStore
    with RunStore.open(args.run_dir, readonly=True) as store:
        config = config_from_dict(store.config, source=f"{args.run_dir}/config")
        winners = top_architectures(store, args.top)
    space = resolve_space(config, f"{args.run_dir}/config")
    data = load_run_dataset(config)
    genes = None if args.keep_genes else dict(space.initial_genes)
    results = retrain([from_dict(g) for _, _, g in winners], data, epochs=args.epochs,
                      seed=config.seed, device=pick_device(args.device), genes=genes)
    rows = [{"id": i, "score": score, "val_accuracy": r["val_accuracy"],
             "test_accuracy": r["test_accuracy"], "train_time": r["train_time"],
             "status": r["status"], "genome_hash": r["genome"].hash}
            for (i, score, _), r in zip(winners, results)]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(f"{'id':>6} {'score':>7} {'val acc':>8} {'test acc':>9} {'time s':>7}")
    for row in rows:
        print(f"{row['id']:>6} {row['score']:>7.3f} {row['val_accuracy'] or 0:>8.3f} "
              f"{row['test_accuracy'] or 0:>9.3f} {row['train_time'] or 0:>7.1f}")
    return 0
