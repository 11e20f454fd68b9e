"""Learned optimizer vs tuned hand-designed optimizers: the experiment of Andrychowicz et al. 2016
(*Learning to learn by gradient descent by gradient descent*, §3.1 quadratics and §3.2 MNIST).

In one run, for each of two task families —

* ``quadratic``: random 10-d quadratics ``‖Wθ − y‖²`` (W, y standard normal), batches of 128;
* ``digits-mlp``: one hidden layer of 20 sigmoid units, minibatches of 128, on the 8x8 digits
  (the paper used MNIST; scikit-learn's bundled digits keep this offline) —

it meta-trains the coordinatewise two-layer LSTM optimizer (20 units, log/sign preprocessing with
p = 10, output x 0.1; Adam on the summed losses of 100-step trajectories, truncated BPTT with
unrolls of 20, first-order), tunes the learning rate of SGD, momentum (0.9), RMSprop and Adam on a
grid using the *meta-training* tasks (the lowest mean loss at step 100), then runs every optimizer
for 200 steps (twice the training horizon) on *held-out* tasks (seeds never seen in training) and
reports the mean, median and quartiles of the loss over the held-out problems at every step.

Writes ``benchmarks/results/learned_optimizer.json`` (machine, versions, seeds, settings, tuned
rates, every curve) and ``learned_optimizer.png`` (median loss curves, quartile bands).

    python benchmarks/learned_optimizer.py            # full
    python benchmarks/learned_optimizer.py --quick    # fewer meta-iterations and tasks
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch
from evograph.meta.learned_optimizer.lstm import LearnedOptimizer, LSTMOptimizer
from evograph.meta.learned_optimizer.tasks import derive_seed, make_family
from evograph.meta.learned_optimizer.train import MetaConfig, meta_train, rollout

RESULTS = Path(__file__).resolve().parent / "results" / "learned_optimizer.json"
BASELINES = {
    "sgd": lambda ps, lr: torch.optim.SGD(ps, lr=lr),
    "momentum": lambda ps, lr: torch.optim.SGD(ps, lr=lr, momentum=0.9),
    "rmsprop": lambda ps, lr: torch.optim.RMSprop(ps, lr=lr),
    "adam": lambda ps, lr: torch.optim.Adam(ps, lr=lr),
}
GRID = [1e-4, 3e-4, 1e-3, 3e-3, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0]
HELD_OUT = 1_000_000     # held-out task seeds: derived from (seed + HELD_OUT, i), never trained on
# family -> (family params for training, params for held-out tasks, meta-training settings)
FULL = {"quadratic": ({"batch": 128}, {"batch": 128}, 8,
                      {"meta_iterations": 300, "meta_lr": 0.03}),
        "digits-mlp": ({"networks": 2}, {"networks": 16}, 2,
                       {"meta_iterations": 150, "meta_lr": 0.01})}
QUICK = {"quadratic": ({"batch": 64}, {"batch": 128}, 2,
                       {"meta_iterations": 50, "meta_lr": 0.03}),
         "digits-mlp": ({"networks": 1}, {"networks": 8}, 1,
                        {"meta_iterations": 25, "meta_lr": 0.01})}

def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a ~1 minute smoke version")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=100, help="the meta-training horizon T")
    parser.add_argument("--horizon", type=int, default=200, help="steps of the held-out curves")
    parser.add_argument("--families", nargs="+", default=list(FULL), choices=list(FULL))
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--replot", action="store_true",
                        help="only redraw the PNG from an existing --out JSON")
    args = parser.parse_args(argv)
    if args.steps < 1 or args.horizon < args.steps:
        parser.error("--steps must be positive and --horizon >= --steps")
    return args


def summarize(curve: torch.Tensor) -> dict[str, list[float]]:
    """Per step over problems: mean, median, quartiles (non-finite losses count as inf) and how
    many problems diverged (non-finite, or a million times their starting loss)."""
    c = torch.nan_to_num(curve.double(), nan=math.inf, posinf=math.inf)
    q = torch.quantile(torch.where(torch.isfinite(c), c, torch.finfo(torch.float64).max),
                       torch.tensor([0.25, 0.5, 0.75], dtype=torch.float64), dim=1)
    diverged = (~torch.isfinite(c) | (c > 1e6 * c[0].clamp_min(1e-12))).sum(dim=1)
    return {"mean": c.mean(dim=1).tolist(), "q25": q[0].tolist(), "median": q[1].tolist(),
            "q75": q[2].tolist(), "diverged": diverged.tolist()}


def finite_or_none(value):
    """JSON has no inf/nan: a diverged figure is written as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: finite_or_none(v) for k, v in value.items()}
    if isinstance(value, list):
        return [finite_or_none(v) for v in value]
    return value


def tune(name: str, tasks: list, steps: int) -> tuple[float, dict[str, float]]:
    """The grid learning rate with the lowest mean loss at ``steps`` on the training tasks."""
    scores = {}
    for lr in GRID:
        final = torch.cat([rollout(t, lambda ps, lr=lr: BASELINES[name](ps, lr), steps)[-1]
                           for t in tasks])
        value = float(final.mean())
        scores[str(lr)] = value if math.isfinite(value) else math.inf
    best = min(GRID, key=lambda lr: scores[str(lr)])
    return best, scores


def run_family(family_name: str, setting: tuple, args: argparse.Namespace) -> dict:
    train_params, test_params, n_test, meta = setting
    train_family = make_family(family_name, train_params)
    config = MetaConfig(steps=args.steps, unroll=20, meta_clip=1.0, anneal=True, seed=args.seed,
                        **meta)
    net = LSTMOptimizer(seed=args.seed)
    started = time.perf_counter()
    history = meta_train(net, train_family, config)
    meta_seconds = time.perf_counter() - started
    net.eval()
    # tuning on meta-training tasks (the first two trajectories' tasks)
    train_tasks = [train_family.sample(derive_seed(args.seed, i)) for i in range(2)]
    test_family = make_family(family_name, test_params)
    test_tasks = [test_family.sample(derive_seed(args.seed + HELD_OUT, i)) for i in range(n_test)]
    out = {"meta_training": {"config": config.__dict__, "family_params": train_params,
                             "seconds": meta_seconds, "history": history},
           "held_out": {"family_params": test_params, "tasks": n_test,
                        "problems": sum(t.problems for t in test_tasks)},
           "tuned_lr": {}, "grid": {}, "curves": {}}
    makers = {"learned": lambda ps: LearnedOptimizer(ps, net)}
    for name, make in BASELINES.items():
        lr, scores = tune(name, train_tasks, args.steps)
        out["tuned_lr"][name], out["grid"][name] = lr, scores
        makers[name] = lambda ps, make=make, lr=lr: make(ps, lr)
    for name, make in makers.items():
        curve = torch.cat([rollout(t, make, args.horizon) for t in test_tasks], dim=1)
        out["curves"][name] = summarize(curve)
    return out


def none_to_inf(obj: dict) -> dict:
    """Inverse of :func:`finite_or_none` for the curves (null: diverged)."""
    return {k: [math.inf if x is None else x for x in v]
            if isinstance(v, list) and None in v else v for k, v in obj.items()}


def table(results: dict, steps: int, horizon: int) -> list[dict]:
    rows = []
    for family, res in results.items():
        curves = res["curves"]
        for at in (steps, horizon):
            best = min((n for n in curves if n != "learned"), key=lambda n: curves[n]["mean"][at])
            for name, c in curves.items():
                rows.append({"family": family, "step": at, "optimizer": name,
                             "lr": res["tuned_lr"].get(name), "mean": c["mean"][at],
                             "median": c["median"][at], "diverged": c["diverged"][at],
                             "mean_vs_best_baseline": c["mean"][at] / curves[best]["mean"][at],
                             "best_baseline": best})
    return rows


def print_table(rows: list[dict]) -> None:
    print(f"{'family':<11} {'step':>4} {'optimizer':<9} {'lr':>7} {'mean':>10} {'median':>10} "
          f"{'diverged':>8} {'mean/best hand':>15}")
    for r in rows:
        lr = "-" if r["lr"] is None else f"{r['lr']:g}"
        print(f"{r['family']:<11} {r['step']:>4} {r['optimizer']:<9} {lr:>7} {r['mean']:>10.4g} "
              f"{r['median']:>10.4g} {r['diverged']:>8} {r['mean_vs_best_baseline']:>15.3g}")


def plot(results: dict, steps: int, path: Path) -> None:
    """Mean (top) and median with quartile band (bottom) per family and optimizer."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(2, len(results), figsize=(6 * len(results), 8), squeeze=False)
    for col, (family, res) in enumerate(results.items()):
        for name, c in res["curves"].items():
            x = np.arange(len(c["median"]))
            style = {"linewidth": 2.5, "color": "black"} if name == "learned" else {}
            label = name if name == "learned" else f"{name} (lr {res['tuned_lr'][name]:g})"
            axes[0, col].plot(x, c["mean"], label=label, **style)
            line, = axes[1, col].plot(x, c["median"], label=label, **style)
            axes[1, col].fill_between(x, c["q25"], c["q75"], alpha=0.12, color=line.get_color())
        problems = res["held_out"]["problems"]
        for row, what in enumerate(("mean", "median (band: quartiles)")):
            ax = axes[row, col]
            ax.axvline(steps, color="grey", linestyle="--", linewidth=1)
            ax.set_yscale("log")
            ax.set_title(f"{family}: {what} loss, {problems} held-out problems", fontsize=10)
            ax.set_xlabel("optimizer step (dashed: meta-training horizon)")
            ax.set_ylabel("loss")
            ax.legend(fontsize=8)
        top = max(max(v for v in c["mean"][:5] if math.isfinite(v)) for c in res["curves"].values())
        axes[0, col].set_ylim(top=top * 2)   # diverged baselines would stretch the axis away
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.replot:
        payload = json.loads(args.out.read_text(), object_hook=none_to_inf)
        plot(payload["results"], payload["steps"], args.out.with_suffix(".png"))
        return 0
    torch.set_num_threads(1)
    settings = QUICK if args.quick else FULL
    started = time.perf_counter()
    results = {}
    for family in args.families:
        print(f"{family}: meta-training, tuning baselines, held-out curves ...", file=sys.stderr)
        results[family] = run_family(family, settings[family], args)
    rows = table(results, args.steps, args.horizon)
    print_table(rows)
    payload = {"benchmark": "learned_optimizer", "quick": args.quick, "seed": args.seed,
               "steps": args.steps, "horizon": args.horizon, "grid": GRID,
               "machine": {"platform": platform.platform(), "processor": platform.processor(),
                           "python": platform.python_version(), "torch": torch.__version__,
                           "threads": torch.get_num_threads()},
               "seconds": time.perf_counter() - started, "table": rows, "results": results}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(finite_or_none(payload), indent=1))
    plot(results, args.steps, args.out.with_suffix(".png"))
    print(f"wrote {args.out} and {args.out.with_suffix('.png')}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
