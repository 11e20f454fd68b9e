"""Hypernetworks on digits: SMASH ranking quality and cost, equal-time search, static compression.

Three measurements, all through evograph's real components:

1. **Ranking** (SMASH, Brock et al. 2018): ``--genomes`` random genomes of the lse-conv space
   (all with the space's initial training genes, since a hypernet score cannot see genes) are
   scored by the ``hypernet`` fitness (generated weights, no training) and trained stand-alone by
   the ``sgd`` fitness for ``--epochs``. Kendall tau and Spearman rho (scipy) between the two;
   the median cost of one evaluation each and their ratio; the one-off hypernetwork training time.
2. **Equal wall time**: an evolution run with ``fitness = "hypernet"`` (runs/configs/
   digits-hypernet.toml, ``--hyper-evals`` evaluations) whose ``--top`` best distinct
   architectures are then trained with ``sgd`` (the digits.toml epochs, the space's initial
   genes), against an evolution run with ``fitness = "sgd"`` (digits.toml, same space) given the
   same total wall time (hypernetwork training + search + retraining). Reported: each arm's pick
   (best validation accuracy after real training) and its test accuracy.
3. **Static hypernetwork** (Ha et al. 2016): fixed conv networks trained with ordinary weights
   (``sgd``) and with generated kernels (``hypernet-static``, several embedding sizes), same
   genes and steps: learned parameters vs validation/test accuracy, medians over ``--repeats``.

Usage: ``python benchmarks/hypernet.py [--quick]``; writes benchmarks/results/hypernet.json.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import scipy
import tomllib
import torch
from evograph.compile.builder import build
from evograph.compile.training.sgd import SGDTraining
from evograph.genome.core import Genome, Node
from evograph.genome.io import from_dict
from evograph.meta.hypernet import HypernetScoring, StaticHypernetTraining, retrain, stored_stats
from evograph.runs.cli.hypernet import top_architectures
from evograph.runs.config import apply_overrides, config_from_dict, load_config
from evograph.runs.driver import create_run, run
from evograph.runs.setup import load_run_dataset, resolve_space, with_run_space
from evograph.runs.store import RunStore
from scipy.stats import kendalltau, spearmanr

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "hypernet.json"
CPU = torch.device("cpu")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="a small version (about a minute)")
    p.add_argument("--genomes", type=int, default=50)
    p.add_argument("--epochs", type=float, default=8.0, help="stand-alone training epochs")
    p.add_argument("--hyper-steps", type=int, default=2000, help="SMASH training steps")
    p.add_argument("--hyper-evals", type=int, default=800, help="hypernet-scored evaluations")
    p.add_argument("--top", type=int, default=5, help="architectures retrained after search")
    p.add_argument("--repeats", type=int, default=3, help="seeds of the static comparison")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=RESULTS)
    args = p.parse_args(argv)
    if args.quick:
        args.genomes, args.epochs, args.hyper_steps = 12, 2.0, 150
        args.hyper_evals, args.top, args.repeats = 60, 2, 1
        if args.out == RESULTS:
            args.out = RESULTS.with_name("hypernet-quick.json")
    return args


def hypernet_config(args: argparse.Namespace, path: Path):
    return load_config(ROOT / "runs/configs/digits-hypernet.toml",
                       [f"fitness.path='{path}'", f"fitness.steps={args.hyper_steps}",
                        f"seed={args.seed}"])


# -- 1. ranking ----------------------------------------------------------------------------------

def ranking(args: argparse.Namespace, path: Path) -> dict:
    config = hypernet_config(args, path)
    space, data = resolve_space(config, "bench"), load_run_dataset(config)
    scoring = HypernetScoring(**with_run_space(config).fitness.params)
    _, stem = scoring.prepare(data, CPU)
    genes, rng = dict(space.initial_genes), np.random.default_rng(args.seed + 1)
    trainer, rows = SGDTraining(epochs=args.epochs), []
    for i in range(args.genomes):
        genome = space.sample(rng, data.input_shape, data.num_classes).with_genes(**genes)
        start = time.perf_counter()
        hyper = scoring.score(build(genome, seed=i), genome, data, seed=i, device=CPU)
        score_time = time.perf_counter() - start
        start = time.perf_counter()
        trained = trainer.score(build(genome, seed=i), genome, data, seed=i, device=CPU)
        rows.append({"genome": genome.hash, "params": hyper.metrics["params"],
                     "hypernet_val": hyper.fitness or 0.0, "trained_val": trained.fitness or 0.0,
                     "trained_test": trained.metrics.get("test_accuracy"),
                     "score_time": score_time, "train_time": time.perf_counter() - start})
    h, t = [r["hypernet_val"] for r in rows], [r["trained_val"] for r in rows]
    tau, rho = kendalltau(h, t), spearmanr(h, t)
    score_s = statistics.median(r["score_time"] for r in rows)
    train_s = statistics.median(r["train_time"] for r in rows)
    return {"genomes": args.genomes, "epochs": args.epochs, "kendall_tau": float(tau.statistic),
            "kendall_p": float(tau.pvalue), "spearman_rho": float(rho.statistic),
            "spearman_p": float(rho.pvalue), "median_score_s": score_s,
            "median_train_s": train_s, "cost_ratio": train_s / score_s,
            "cost_ratio_per_epoch": train_s / args.epochs / score_s,
            "hypernet": stored_stats(stem) | {"file": stem.name}, "rows": rows}


# -- 2. equal wall time ----------------------------------------------------------------------------

def _evolve(config, run_dir: Path) -> tuple[float, RunStore]:
    start = time.perf_counter()
    with contextlib.redirect_stderr(io.StringIO()):        # the run's progress lines
        run(create_run(config, run_dir), live=False)
    return time.perf_counter() - start, RunStore.open(run_dir, readonly=True)


def _config(name: str, sets: list[str], drop: tuple[str, ...] = ()):
    """A shipped config with ``--set``-style overrides and some strategy keys removed."""
    data = tomllib.loads((ROOT / "runs/configs" / name).read_text())
    for key in drop:
        data["strategy"].pop(key, None)
    return config_from_dict(apply_overrides(data, sets), name)


def hypernet_arm(args, path: Path, run_dir: Path, strategy: list[str], drop: tuple[str, ...],
                 hyper_train_s: float, sgd_epochs: float) -> dict:
    """Search with hypernet fitness, then retrain the top architectures with sgd."""
    config = _config("digits-hypernet.toml", [
        f"fitness.path='{path}'", f"fitness.steps={args.hyper_steps}", f"seed={args.seed}",
        f"budget.evaluations={args.hyper_evals}", "budget.minutes=0", *strategy], drop)
    search_s, store = _evolve(config, run_dir)
    with store:
        winners = top_architectures(store, args.top)
        eval_s = store.summary()["total_wall_time"]
    space, data = resolve_space(config, "bench"), load_run_dataset(config)
    start = time.perf_counter()
    results = retrain([from_dict(g) for _, _, g in winners], data, epochs=sgd_epochs,
                      seed=args.seed, device=CPU, genes=dict(space.initial_genes))
    retrain_s = time.perf_counter() - start
    pick = max(results, key=lambda r: r["val_accuracy"] or 0.0)
    return {"strategy": config.strategy.name, "evaluations": args.hyper_evals,
            "hypernet_train_s": hyper_train_s, "search_s": search_s, "search_eval_s": eval_s,
            "retrain_s": retrain_s, "total_s": hyper_train_s + search_s + retrain_s,
            "retrained": [{"score": w[1], "val": r["val_accuracy"], "test": r["test_accuracy"]}
                          for w, r in zip(winners, results)],
            "pick_val": pick["val_accuracy"], "pick_test": pick["test_accuracy"]}


def sgd_arm(args, run_dir: Path, space_sets: list[str], seconds: float) -> dict:
    config = _config("digits.toml", space_sets + [
        f"seed={args.seed}", "executor.name=serial", "budget.evaluations=100000",
        f"budget.minutes={seconds / 60:.4f}"])
    total, store = _evolve(config, run_dir)
    with store:
        best = store.best(1)[0]
        return {"strategy": config.strategy.name, "total_s": total,
                "search_eval_s": store.summary()["total_wall_time"],
                "evaluations": len(store.evaluations()), "pick_val": best.fitness,
                "pick_test": best.metrics.get("test_accuracy")}


def equal_time(args: argparse.Namespace, path: Path, work: Path, hyper_train_s: float) -> dict:
    """Hypernet + aging evolution and hypernet + random search (SMASH's own protocol), each
    retraining its top architectures; then sgd evolution given the longer of their times."""
    sgd_epochs = _config("digits.toml", []).fitness.params["epochs"]
    arms = {"hypernet + aging": hypernet_arm(args, path, work / "aging", [], (),
                                             hyper_train_s, sgd_epochs),
            "hypernet + random": hypernet_arm(args, path, work / "random",
                                              ["strategy.name=random"], ("sample_size",),
                                              hyper_train_s, sgd_epochs)}
    overrides = _config("digits-hypernet.toml", []).space.overrides
    space_sets = [f"space.{k}={json.dumps(v)}" for k, v in overrides.items()]
    seconds = max(arm["total_s"] for arm in arms.values())
    arms["sgd + aging"] = sgd_arm(args, work / "sgd", space_sets, seconds)
    return {"sgd_epochs": sgd_epochs, "seconds": seconds, "arms": arms}


# -- 3. static hypernetwork ------------------------------------------------------------------------

def conv_chain(width: int, depth: int) -> Genome:
    conv = {"out_channels": width, "kernel_h": 3, "kernel_w": 3, "stride_h": 1, "stride_w": 1, "bn": True,
                "relu": True}
    nodes = [Node.make(0, "input", shape=(1, 8, 8))]
    nodes += [Node.make(i, "conv", **conv) for i in range(1, depth + 1)]
    nodes.append(Node.make(depth + 1, "output", num_classes=10))
    genes = {"learning_rate": 0.01, "optimizer": "adam", "weight_decay": 0.0, "batch_size": 64}
    return Genome.make(nodes, [(i, i + 1) for i in range(depth + 1)], genes)


def static(args: argparse.Namespace, data) -> list[dict]:
    epochs = 2.0 if args.quick else 8.0
    variants = {"ordinary weights": SGDTraining(epochs=epochs)}
    for z in ((8,) if args.quick else (8, 16)):
        variants[f"static z={z}"] = StaticHypernetTraining(epochs=epochs, z_dim=z, hidden=z)
    rows = []
    for width in ((32,) if args.quick else (32, 64)):
        genome = conv_chain(width, 3)
        for name, fitness in variants.items():
            runs = [fitness.score(build(genome, seed=s), genome, data, seed=s, device=CPU)
                    for s in range(args.repeats)]
            learned = runs[0].metrics.get("params_hypernet", runs[0].metrics["params"])
            rows.append({"network": f"3 x conv{width} 3x3", "variant": name,
                         "params_learned": learned, "params_plain": runs[0].metrics["params"],
                         "val": statistics.median(r.fitness or 0.0 for r in runs),
                         "test": statistics.median(r.metrics["test_accuracy"] for r in runs),
                         "train_s": statistics.median(r.metrics["train_time"] for r in runs)})
    return rows


# -- report --------------------------------------------------------------------------------------

def environment() -> dict:
    return {"machine": {"platform": platform.platform(), "processor": platform.processor(),
                        "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads()},
            "versions": {"python": sys.version.split()[0], "torch": torch.__version__,
                         "numpy": np.__version__, "scipy": scipy.__version__}}


def print_report(result: dict) -> None:
    r, e = result["ranking"], result["equal_time"]
    print(f"\n1. SMASH ranking over {r['genomes']} random lse-conv genomes (digits)")
    print(f"   Kendall tau {r['kendall_tau']:.3f} (p={r['kendall_p']:.1e})   Spearman rho "
          f"{r['spearman_rho']:.3f} (p={r['spearman_p']:.1e})")
    print(f"   per evaluation: hypernet {r['median_score_s'] * 1000:.0f} ms vs training "
          f"{r['epochs']:g} epochs {r['median_train_s'] * 1000:.0f} ms -> "
          f"{r['cost_ratio']:.0f}x cheaper; hypernetwork training once: "
          f"{r['hypernet']['train_time']:.0f} s")
    print(f"\n2. Equal wall time on digits ({e['seconds']:.0f} s; the hypernet arms' times include "
          "training the hypernetwork and retraining their top architectures)")
    print(f"   {'arm':<22}{'evaluations':>12}{'time s':>8}{'pick val':>10}{'pick test':>10}")
    for name, arm in e["arms"].items():
        print(f"   {name:<22}{arm['evaluations']:>12}{arm['total_s']:>8.0f}"
              f"{arm['pick_val']:>10.3f}{arm['pick_test']:>10.3f}")
    print("\n3. Static hypernetwork vs ordinary weights (medians)")
    print(f"   {'network':<18}{'variant':<18}{'learned':>9}{'plain':>9}{'ratio':>7}"
          f"{'val':>7}{'test':>7}")
    for row in result["static"]:
        print(f"   {row['network']:<18}{row['variant']:<18}{row['params_learned']:>9,}"
              f"{row['params_plain']:>9,}{row['params_learned'] / row['params_plain']:>7.2f}"
              f"{row['val']:>7.3f}{row['test']:>7.3f}")


def plot(result: dict, path: Path) -> None:
    """Scatter of hypernet score vs stand-alone trained accuracy (the ranking figure)."""
    import matplotlib
    matplotlib.use("Agg")
    from matplotlib import pyplot as plt
    r = result["ranking"]
    fig, ax = plt.subplots(figsize=(4.8, 4.0), dpi=120)
    ax.scatter([x["hypernet_val"] for x in r["rows"]], [x["trained_val"] for x in r["rows"]], s=14)
    ax.set_xlabel("SMASH score: val accuracy, generated weights")
    ax.set_ylabel(f"val accuracy after {r['epochs']:g} epochs of training")
    ax.set_title(f"{r['genomes']} lse-conv genomes on digits: "
                 f"tau {r['kendall_tau']:.2f}, rho {r['spearman_rho']:.2f}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    torch.set_num_threads(1)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        rank = ranking(args, work / "hypernets")
        timed = equal_time(args, work / "hypernets", work, rank["hypernet"]["train_time"])
        data = load_run_dataset(hypernet_config(args, work / "hypernets"))
        result = {"benchmark": "hypernet", "quick": args.quick, "seed": args.seed,
                  "args": {k: str(v) for k, v in vars(args).items()}, **environment(),
                  "ranking": rank, "equal_time": timed, "static": static(args, data)}
    result["wall_time_s"] = time.perf_counter() - start
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    plot(result, args.out.with_suffix(".png"))
    print_report(result)
    print(f"\nwrote {args.out} ({result['wall_time_s']:.0f} s)")
    return result


if __name__ == "__main__":
    main()
