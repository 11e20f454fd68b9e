"""MAML vs first-order MAML vs the paper's baselines, in one run (Finn et al. 2017, sections 5.1
and 5.2), on evograph's functional MAML (:mod:`evograph.meta.maml.learner`) and compiled genomes.

* Sinusoid regression (K = 5 and 10): a 1-40-40-1 ReLU network meta-trained with one inner step
  of 0.01, 25 tasks per meta-batch and Adam at 0.001 (the paper's setup, for fewer meta-steps);
  the paper's baseline is the same network *pretrained on all tasks* (plain regression on points
  of random sinusoids), fine-tuned at test time with a step size tuned on validation tasks. We
  report the query MSE (100 points per task) after 1 and 10 steps on the K support points,
  mean and 95% interval over test tasks, and a figure like the paper's Figure 2.
* Digits 5-way 1-shot and 5-shot (classes 0-4 meta-train, 5-9 meta-test): a 3-layer CNN
  (BatchNorm on batch statistics, as the paper) meta-trained with one inner step of 0.4 and
  evaluated after 3 steps; baselines are 1-nearest-neighbour in pixel space and the same CNN
  pretrained on the meta-train classes and fine-tuned on each support set (step size and step
  count tuned on validation tasks).

Usage::

    python benchmarks/maml.py [--quick] [--seed 0]

Writes ``benchmarks/results/maml.json`` (machine, versions, settings, every figure),
``maml_figure2.json`` (the plotted curves) and ``maml_figure2.png``.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch
from evograph.compile.builder import build
from evograph.data.tasks import SinusoidTasks, digits_tasks, stream_generator
from evograph.genome.core import Genome, Node
from evograph.meta.maml.learner import (
    batch_statistics,
    evaluate_module,
    functional_model,
    meta_train,
    parameters_of,
)
from torch.nn import functional as F

RESULTS = Path(__file__).resolve().parent / "results"
LR_GRID = (0.001, 0.003, 0.01, 0.03, 0.1, 0.3)
CLS_LR_GRID = (0.01, 0.03, 0.1, 0.3, 1.0)


def settings(quick: bool) -> dict:
    if quick:
        return {"sin_steps": 300, "cls_steps": 40, "pretrain_steps": 300, "test_tasks": 200,
                "val_tasks": 50, "meta_batch_cls": 8}
    return {"sin_steps": 5000, "cls_steps": 600, "pretrain_steps": 3000, "test_tasks": 1000,
            "val_tasks": 200, "meta_batch_cls": 16}


def mlp_genome() -> Genome:
    nodes = [Node.make(0, "input", shape=(1,)), Node.make(1, "dense", units=40, activation="relu"),
             Node.make(2, "dense", units=40, activation="relu"),
             Node.make(3, "output", num_classes=1)]
    return Genome.make(nodes, [(0, 1), (1, 2), (2, 3)])


def cnn_genome(n_way: int = 5) -> Genome:
    conv = {"kernel_h": 3, "kernel_w": 3, "bn": True, "relu": True, "out_channels": 32}
    nodes = [Node.make(0, "input", shape=(1, 8, 8)),
             Node.make(1, "conv", stride_h=1, stride_w=1, **conv),
             Node.make(2, "conv", stride_h=2, stride_w=2, **conv),
             Node.make(3, "conv", stride_h=2, stride_w=2, **conv),
             Node.make(4, "output", num_classes=n_way)]
    return Genome.make(nodes, [(0, 1), (1, 2), (2, 3), (3, 4)])


def summary(values: torch.Tensor) -> dict:
    """Mean and 95% normal interval half-width over tasks."""
    v = values.double()
    return {"mean": float(v.mean()), "ci95": float(1.96 * v.std() / len(v) ** 0.5)}


def pretrain(module, tasks, gen, steps: int, loss_of) -> float:
    """Plain training on all tasks (the paper's 'pretrained' baseline); returns the last loss."""
    optimizer = torch.optim.Adam(module.parameters(), lr=1e-3)
    with batch_statistics(module):
        for _ in range(steps):
            loss = loss_of(module, tasks, gen)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    return float(loss.detach())


def sinusoid_regression_loss(module, tasks, gen) -> torch.Tensor:
    batch = tasks.sample(gen, 25)
    x = torch.cat([batch.x_support, batch.x_query], 1).reshape(-1, 1)
    y = torch.cat([batch.y_support, batch.y_query], 1).reshape(-1, 1)
    return F.mse_loss(module(x), y)


def tune_lr(module, tasks, val_batch, grid, steps: int, metric: str) -> tuple[float, int]:
    """(step size, steps) from ``grid`` x 0..steps, best on validation tasks."""
    best = None
    for lr in grid:
        curve = evaluate_module(module, tasks, val_batch, lr, steps)[metric].mean(0)
        for s, value in enumerate(curve.tolist()):
            score = -value if metric == "loss" else value
            if best is None or score > best[0]:
                best = (score, lr, s)
    return best[1], best[2]


def sinusoid_section(cfg: dict, seed: int) -> tuple[dict, dict]:
    """Every sinusoid figure, and the curves for Figure 2."""
    out, models = {}, {}
    base = build(mlp_genome(), seed=seed)
    start = time.perf_counter()
    pretrained = build(mlp_genome(), seed=seed)
    pretrain(pretrained, SinusoidTasks(10, 10), stream_generator(seed, 10), cfg["sin_steps"],
             sinusoid_regression_loss)
    out["pretrain_time_s"] = time.perf_counter() - start
    for k in (5, 10):
        tasks = SinusoidTasks(k_shot=k, k_query=k)
        test = SinusoidTasks(k_shot=k, k_query=100).sample(stream_generator(seed, 100 + k),
                                                           cfg["test_tasks"])
        val = SinusoidTasks(k_shot=k, k_query=100).sample(stream_generator(seed, 200 + k),
                                                          cfg["val_tasks"])
        row = {}
        for name, first_order in (("maml", False), ("fomaml", True)):
            module = build(mlp_genome(), seed=seed)
            module.load_state_dict(base.state_dict())
            start = time.perf_counter()
            meta_train(module, tasks, stream_generator(seed, k), steps=cfg["sin_steps"],
                       meta_batch=25, inner_lr=0.01, inner_steps=1, first_order=first_order,
                       meta_lr=1e-3)
            row[name] = _curve_figures(module, tasks, test, 0.01,
                                       time.perf_counter() - start)
            models[(name, k)] = module
        lr, _ = tune_lr(pretrained, tasks, val, LR_GRID, 10, "loss")
        row["pretrained"] = _curve_figures(pretrained, tasks, test, lr, out["pretrain_time_s"])
        row["pretrained"]["tuned_lr"] = lr
        row["maml_over_pretrained_1_step"] = (row["maml"]["mse_1_step"]["mean"]
                                              / row["pretrained"]["mse_1_step"]["mean"])
        out[f"K={k}"] = row
        models[("pretrained", k)] = (pretrained, lr)
    return out, figure2_curves(models, seed)


def _curve_figures(module, tasks, test, lr: float, train_time: float) -> dict:
    curve = evaluate_module(module, tasks, test, lr, 10)["loss"]          # (T, 11)
    return {"mse_0_steps": summary(curve[:, 0]), "mse_1_step": summary(curve[:, 1]),
            "mse_10_steps": summary(curve[:, 10]), "inner_lr": lr,
            "mse_by_step": curve.mean(0).tolist(), "train_time_s": train_time}


def figure2_curves(models: dict, seed: int) -> dict:
    """Predictions before and after 1 and 10 steps on one test sinusoid per K (Figure 2)."""
    grid = torch.linspace(-5, 5, 200).view(1, 200, 1)
    panels = {}
    for k in (5, 10):
        batch = SinusoidTasks(k_shot=k, k_query=1).sample(stream_generator(seed, 300 + k), 1)
        amp, phase = batch.info["amplitude"], batch.info["phase"]
        truth = SinusoidTasks.function(grid, amp.view(1, 1, 1), phase.view(1, 1, 1))
        for name in ("maml", "pretrained"):
            entry = models[(name, k)]
            module, lr = entry if isinstance(entry, tuple) else (entry, 0.01)
            panels[f"{name}, K={k}"] = _predictions(module, batch, grid, truth, lr)
    return {"x": grid.view(-1).tolist(), "panels": panels}


def _predictions(module, batch, grid, truth, lr: float) -> dict:
    from evograph.meta.maml.learner import adapt
    apply, params = functional_model(module), parameters_of(module)
    xs, ys = batch.x_support[0], batch.y_support[0]
    out = {"support_x": xs.view(-1).tolist(), "support_y": ys.view(-1).tolist(),
           "truth": truth.view(-1).tolist(), "inner_lr": lr}
    with torch.no_grad():
        for steps in (0, 1, 10):
            adapted = adapt(apply, F.mse_loss, params, xs, ys, lr, steps)
            out[f"after_{steps}"] = apply(adapted, grid[0]).view(-1).tolist()
    return out


def plot_figure2(curves: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(2, 2, figsize=(10, 7), sharex=True, sharey=True)
    for ax, (title, p) in zip(axes.T.flatten(), curves["panels"].items()):
        ax.plot(curves["x"], p["truth"], color="red", label="ground truth")
        ax.plot(curves["x"], p["after_0"], ":", color="lightgreen", label="pre-update")
        ax.plot(curves["x"], p["after_1"], "--", color="seagreen", label="1 grad step")
        ax.plot(curves["x"], p["after_10"], "--", color="darkgreen", label="10 grad steps")
        ax.scatter(p["support_x"], p["support_y"], marker="^", color="purple", zorder=3,
                   label="used for grad")
        ax.set_title(title)
    axes[0, 0].legend(loc="lower left", fontsize=8)
    fig.suptitle("Few-shot adaptation on sinusoids (cf. Finn et al. 2017, Figure 2)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def nearest_neighbour(batch) -> torch.Tensor:
    """Per-task accuracy of 1-NN in pixel space: (T,)."""
    xs = batch.x_support.flatten(2)                                         # (T, S, 64)
    xq = batch.x_query.flatten(2)                                           # (T, Q, 64)
    nearest = torch.cdist(xq, xs).argmin(-1)                                # (T, Q)
    pred = torch.gather(batch.y_support, 1, nearest)
    return (pred == batch.y_query).float().mean(1)


def digits_classification_loss(module, tasks, gen) -> torch.Tensor:
    pool = tasks.train_pool                                                 # (5, M, 1, 8, 8)
    labels = torch.randint(0, len(pool), (64,), generator=gen)
    items = torch.randint(0, pool.shape[1], (64,), generator=gen)
    return F.cross_entropy(module(pool[labels, items]), labels)


def digits_section(cfg: dict, seed: int) -> dict:
    out = {}
    pretrained = build(cnn_genome(), seed=seed)
    start = time.perf_counter()
    pretrain(pretrained, digits_tasks(5, 1, 15), stream_generator(seed, 20),
             cfg["pretrain_steps"], digits_classification_loss)
    pretrain_time = time.perf_counter() - start
    for k in (1, 5):
        tasks = digits_tasks(n_way=5, k_shot=k, k_query=15)
        test = tasks.sample(stream_generator(seed, 400 + k), cfg["test_tasks"], "test")
        val = tasks.sample(stream_generator(seed, 500 + k), cfg["val_tasks"], "test")
        row = {"nearest_neighbour": summary(nearest_neighbour(test))}
        for name, first_order in (("maml", False), ("fomaml", True)):
            module = build(cnn_genome(), seed=seed)
            start = time.perf_counter()
            meta_train(module, tasks, stream_generator(seed, 30 + k), steps=cfg["cls_steps"],
                       meta_batch=cfg["meta_batch_cls"], inner_lr=0.4, inner_steps=1,
                       first_order=first_order, meta_lr=1e-3)
            acc = evaluate_module(module, tasks, test, 0.4, 3)["accuracy"]
            row[name] = {**summary(acc[:, 3]), "by_step": acc.mean(0).tolist(),
                         "train_time_s": time.perf_counter() - start}
        lr, steps = tune_lr(pretrained, tasks, val, CLS_LR_GRID, 10, "accuracy")
        acc = evaluate_module(pretrained, tasks, test, lr, 10)["accuracy"]
        row["fine_tuned"] = {**summary(acc[:, steps]), "tuned_lr": lr, "tuned_steps": steps,
                             "train_time_s": pretrain_time}
        out[f"5-way {k}-shot"] = row
    return out


def environment(args, cfg: dict) -> dict:
    return {"machine": platform.machine(), "processor": platform.processor(),
            "python": platform.python_version(), "torch": torch.__version__,
            "numpy": np.__version__, "threads": torch.get_num_threads(),
            "quick": args.quick, "seed": args.seed, "settings": cfg}


def print_tables(sin: dict, cls: dict) -> None:
    print("\nSinusoid regression: query MSE (mean ± 95% CI over test tasks)")
    print(f"{'K':>3} {'method':<11} {'0 steps':>14} {'1 step':>14} {'10 steps':>14}")
    for k in (5, 10):
        for name in ("maml", "fomaml", "pretrained"):
            r = sin[f"K={k}"][name]
            cells = [f"{r[c]['mean']:.3f}±{r[c]['ci95']:.3f}"
                     for c in ("mse_0_steps", "mse_1_step", "mse_10_steps")]
            print(f"{k:>3} {name:<11} " + " ".join(f"{c:>14}" for c in cells))
        print(f"    MAML / pretrained after 1 step: {sin[f'K={k}']['maml_over_pretrained_1_step']:.3f}")
    print("\nDigits 5-way (meta-test classes 5-9): query accuracy")
    for task, row in cls.items():
        print(f"  {task}: " + ", ".join(f"{m} {r['mean']:.3f}±{r['ci95']:.3f}"
                                         for m, r in row.items()))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="about a minute")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    cfg = settings(args.quick)
    start = time.perf_counter()
    sin, curves = sinusoid_section(cfg, args.seed)
    cls = digits_section(cfg, args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    name = "maml_quick" if args.quick else "maml"
    report = {**environment(args, cfg), "sinusoid": sin, "digits": cls,
              "wall_time_s": time.perf_counter() - start}
    (args.out / f"{name}.json").write_text(json.dumps(report, indent=1))
    (args.out / f"{name}_figure2.json").write_text(json.dumps(curves))
    plot_figure2(curves, args.out / f"{name}_figure2.png")
    print_tables(sin, cls)
    print(f"\nwrote {args.out / name}.json, _figure2.json, _figure2.png "
          f"({report['wall_time_s']:.0f} s)")


if __name__ == "__main__":
    main()
