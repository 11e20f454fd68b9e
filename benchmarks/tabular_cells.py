"""Build evograph's tabular benchmark of a cell space: every cell of a reduced NAS-Bench-201
space, trained on MNIST-1D with several seeds, with the validation accuracy after every epoch
(after Dong & Yang 2020, NAS-Bench-201, whose tables record per-epoch accuracy too).

The space: the NAS-Bench-201 cell (4 nodes, 6 edges) with each edge one of ``none``,
``skip_connect`` or ``nor_conv_3x3`` — 3^6 = 729 cells — in the benchmark's skeleton cut to
CPU size (16 channels, 1 cell per stage, 3 stages, 1-D convolutions). Each (cell, seed) is
trained as a run's ``sgd`` fitness would train it (``evograph.compile.build`` + ``train_steps``):
SGD with momentum 0.9 at 0.1, weight decay 5e-4, batch 128, annealed by cosine over
``--epochs`` epochs (the benchmark's recipe, shorter), on the MNIST-1D splits of run seed 0
(train 3250 / val 750 / test 1000). The row holds validation accuracy and loss, test accuracy
and loss, training time (with the per-epoch validations), parameters, FLOPs, and
``val_accuracy_epoch_1`` ... ``val_accuracy_epoch_<E>``: a multi-fidelity method can look a
cell up at epoch e with ``[fitness] metric = "val_accuracy_epoch_<e>"``.

Keys are NAS-Bench-201 architecture strings (table key ``nb201``), so the table plugs into
``[fitness] name = "table"`` (``runs/configs/nb201-mnist1d-table.toml``) and into
``benchmarks/search.py --table benchmarks/data/mnist1d-nb201-mini.csv.gz`` with no code (it
reads the space, key and shape from the table's definition, ``mnist1d-nb201-mini.json``). The build is
resumable like ``tabular.py``'s (rows appended to ``<out>.partial.csv`` as they finish).
Usage::

    python benchmarks/tabular_cells.py                # the shipped table (729 cells x 2 seeds)
    python benchmarks/tabular_cells.py --quick        # 9 cells x 2 seeds, 3 epochs
    python benchmarks/tabular_cells.py --estimate 40  # how long would the full build take?
"""

from __future__ import annotations

import argparse
import csv
import gzip
import io
import itertools
import math
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import tabular as base
from evograph.genome.cells.nb201 import EDGES, arch_string, nb201_genome
from evograph.genome.space import get_space

HERE = Path(__file__).resolve().parent
TABLE = HERE / "data" / "mnist1d-nb201-mini.csv.gz"
QUICK_TABLE = HERE / "results" / "tabular_cells-quick.csv.gz"
SUMMARY = HERE / "results" / "tabular_cells.json"
OPS = ("none", "skip_connect", "nor_conv_3x3")
SKELETON = {"channels": 16, "cells": 1, "stages": 3}
GENES = {"learning_rate": 0.1, "optimizer": "momentum", "weight_decay": 0.0005,
         "batch_size": 128}
DATASET = {"name": "mnist1d", "seed": 0, "val_fraction": 0.15, "test_fraction": 0.2}
SHAPE, CLASSES = (1, 40), 10
METRICS = ("val_accuracy", "val_loss", "test_accuracy", "test_loss", "train_time", "params",
           "flops")


def columns(epochs: int) -> tuple[str, ...]:
    """The table's columns: key, seed, the final metrics and one validation accuracy per epoch."""
    return ("key", "seed", *METRICS, *(f"val_accuracy_epoch_{e}" for e in range(1, epochs + 1)))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=2, help="training seeds 0..seeds-1")
    parser.add_argument("--epochs", type=int, default=None, help="8 (quick: 3)")
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--out", type=Path, default=None, help=f"table file (default {TABLE})")
    parser.add_argument("--quick", action="store_true", help="9 cells, 3 epochs, in seconds")
    parser.add_argument("--estimate", type=int, default=0, metavar="N",
                        help="train N random rows and extrapolate the full build time")
    parser.add_argument("--plot-only", action="store_true",
                        help="draw the figures of the built table (--out) without training")
    args = parser.parse_args(argv)
    args.epochs = args.epochs if args.epochs is not None else (3 if args.quick else 8)
    if args.seeds < 1 or args.epochs < 1 or args.processes < 1 or args.estimate < 0:
        parser.error("--seeds, --epochs and --processes must be positive")
    args.out = args.out or (QUICK_TABLE if args.quick else TABLE)
    return args


def all_cells(quick: bool) -> list[tuple[str, ...]]:
    """Every cell of the space (edge ops in ``EDGES`` order); quick: 9 of them, the last two
    edges varied."""
    if quick:
        return [("nor_conv_3x3", "skip_connect", "none", "nor_conv_3x3", a, b)
                for a, b in itertools.product(OPS, OPS)]
    return list(itertools.product(OPS, repeat=len(EDGES)))


def cell_genome(ops: tuple[str, ...]):
    return nb201_genome(list(ops), SHAPE, CLASSES, SKELETON["channels"], SKELETON["cells"],
                        SKELETON["stages"], dict(GENES))


def _dataset():
    return base.splits(**DATASET)


# -- one row -------------------------------------------------------------------------------------
def train_row(ops: tuple[str, ...], seed: int, epochs: int) -> dict:
    """Train one cell with one seed, validating after every epoch; one row."""
    import torch
    from evograph.compile.builder import build
    from evograph.compile.training.sgd import SGDTraining, evaluate, train_steps
    cpu, data, genome = torch.device("cpu"), _dataset(), cell_genome(ops)
    module = build(genome, seed=seed, device=cpu)
    training = SGDTraining(epochs=epochs, lr_schedule="cosine")
    batch, steps = training.schedule(genome, data)
    per_epoch = math.ceil(len(data.x_train) / batch)
    curve: list[float] = []

    def validate(step: int) -> None:  # after the last step of each epoch
        if (step + 1) % per_epoch == 0:
            curve.append(evaluate(module, data.x_val, data.y_val, cpu)[0])
            module.train()

    start = time.perf_counter()
    losses = train_steps(module, data, training.genes_for(genome), steps, batch, seed, cpu,
                         lr_schedule="cosine", after_step=validate)
    metrics = training.finish(module, genome, data, losses, time.perf_counter() - start,
                              cpu).metrics
    curve += [float("nan")] * (epochs - len(curve))  # a diverged training stops early
    row = {"key": arch_string(genome), "seed": seed}
    for name in METRICS:
        value = metrics.get(name, float("nan"))
        row[name] = value if name in ("params", "flops") else round(float(value), 6)
    row.update({f"val_accuracy_epoch_{e}": round(v, 6) for e, v in enumerate(curve, start=1)})
    return row


def train_many(jobs: list[tuple[tuple[str, ...], int]], epochs: float) -> list[dict]:
    return [train_row(ops, seed, int(epochs)) for ops, seed in jobs]


# -- the build -----------------------------------------------------------------------------------
def build_table(args: argparse.Namespace) -> tuple[list[dict], float]:
    """Train every missing row (resuming from the partial file); return all rows, wall time."""
    cols, partial = columns(args.epochs), base.partial_path(args.out)
    have = base.read_partial(partial, cols)
    done = {(r["key"], int(r["seed"])) for r in have}
    jobs = [(ops, s) for ops in all_cells(args.quick) for s in range(args.seeds)
            if (arch_string(cell_genome(ops)), s) not in done]
    print(f"{len(all_cells(args.quick))} cells x {args.seeds} seeds, {args.epochs} epochs: "
          f"{len(have)} rows done, {len(jobs)} to train on {args.processes} processes")
    start = time.perf_counter()
    base.append_rows(partial, cols, bool(have), jobs, args, train_many)
    return base.read_partial(partial, cols), time.perf_counter() - start


def estimate(args: argparse.Namespace) -> dict:
    """Train ``args.estimate`` random rows; extrapolate the full build's time."""
    jobs = [(ops, s) for ops in all_cells(args.quick) for s in range(args.seeds)]
    pick = np.random.default_rng(0).choice(len(jobs), min(args.estimate, len(jobs)), False)
    rows: list[dict] = []
    start = time.perf_counter()
    base.run_jobs([jobs[int(i)] for i in pick], args, rows.extend, train_many)
    wall = time.perf_counter() - start
    total = wall / len(pick) * len(jobs)
    print(f"{len(pick)} rows in {wall:.1f} s on {args.processes} processes: the full "
          f"{len(jobs)} rows would take ~{total / 60:.1f} min")
    return {"sampled_rows": len(pick), "wall_seconds": wall, "estimated_minutes": total / 60}


# -- figures -------------------------------------------------------------------------------------
def per_cell(rows: list[dict], epochs: int) -> dict[str, dict]:
    """Per key: mean val, its seed spread, mean test, params and the mean learning curve."""
    groups: dict[str, list[dict]] = {}
    for r in rows:
        groups.setdefault(r["key"], []).append(r)
    out = {}
    for key, rs in groups.items():
        val = np.array([float(r["val_accuracy"]) for r in rs])
        out[key] = {"val": float(val.mean()), "val_std": float(val.std()),
                    "test": float(np.mean([float(r["test_accuracy"]) for r in rs])),
                    "params": int(rs[0]["params"]), "convs": key.count("nor_conv_3x3"),
                    "curve": [float(np.mean([float(r[f"val_accuracy_epoch_{e}"]) for r in rs]))
                              for e in range(1, epochs + 1)]}
    return out


def summarise(rows: list[dict], epochs: int) -> dict:
    """Spread, the best cells, seed noise, val/test agreement, and how well each epoch's
    validation accuracy ranks the cells as the last epoch does (what multi-fidelity relies on)."""
    from scipy.stats import spearmanr
    cells = per_cell(rows, epochs)
    keys = sorted(cells, key=lambda k: (-cells[k]["val"], k))
    vals, tests = [cells[k]["val"] for k in keys], [cells[k]["test"] for k in keys]
    rank_by_epoch = [float(spearmanr([cells[k]["curve"][e] for k in keys], vals).statistic)
                     for e in range(epochs)]
    return {"cells": len(cells), "rows": len(rows), "epochs": epochs,
            "mean_val_accuracy": base._quantiles(vals),
            "mean_test_accuracy": base._quantiles(tests),
            "best_val_key": keys[0], "best_val": vals[0], "best_val_test": cells[keys[0]]["test"],
            "best_test": max(tests),
            "top10": [{"key": k, **{f: cells[k][f] for f in ("val", "val_std", "test", "params")}}
                      for k in keys[:10]],
            "seed_std_val_median": float(np.median([c["val_std"] for c in cells.values()])),
            "spearman_val_test": float(spearmanr(vals, tests).statistic),
            "spearman_epoch_vs_final_val": rank_by_epoch,
            "by_convs": {str(n): base._quantiles([c["val"] for c in cells.values()
                                                  if c["convs"] == n])
                         for n in sorted({c["convs"] for c in cells.values()})},
            "train_time_s": base._quantiles([float(r["train_time"]) for r in rows]),
            "cpu_seconds": float(sum(float(r["train_time"]) for r in rows))}


def definition(args: argparse.Namespace, summary: dict, wall: float) -> dict:
    """What the table covers and how it was made (written beside the table)."""
    data = _dataset()
    space = get_space("nb201", ops=OPS, cell_channels=SKELETON["channels"],
                      cells=SKELETON["cells"], stages=SKELETON["stages"])
    return {"table": args.out.name, "space_name": "nb201",
            "config": "runs/configs/nb201-mnist1d-table.toml",
            "space_overrides": {"ops": list(OPS), "cell_channels": SKELETON["channels"],
                                "cells": SKELETON["cells"], "stages": SKELETON["stages"]},
            "space": space.to_dict(), "key_function": "nb201",
            "key_format": "NAS-Bench-201 architecture string |op~0|+|op~0|op~1|+|op~0|op~1|op~2|",
            "cells": summary["cells"], "rows": summary["rows"],
            "seeds": list(range(args.seeds)),
            "training": {"fitness": "sgd", "epochs": args.epochs, "lr_schedule": "cosine",
                         **GENES, "init_and_shuffle_seed": "the row's seed",
                         "per_epoch": "val_accuracy_epoch_<e>: after epoch e of the cosine run"},
            "dataset": {**DATASET, "train": len(data.y_train), "val": len(data.y_val),
                        "test": len(data.y_test), "input_shape": list(data.input_shape),
                        "classes": CLASSES},
            "columns": list(columns(args.epochs)),
            "build": {"processes": args.processes, "wall_seconds_last_session": wall,
                      **base.environment()}}


def plot(rows: list[dict], epochs: int, path: Path) -> None:
    """Three panels: the spread of mean validation accuracy (cells above chance), the mean
    learning curve by number of convolutions, and how well epoch e ranks the cells."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    cells = per_cell(rows, epochs)
    summary = summarise(rows, epochs)
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.5))
    learned = [c["val"] for c in cells.values() if c["val"] > 0.5]
    axes[0].hist(learned, bins=40, color="#4c72b0")
    axes[0].set(title=f"mean val accuracy of {len(learned)} cells above chance "
                      f"({len(cells) - len(learned)} at chance)", xlabel="val accuracy")
    for convs in sorted({c["convs"] for c in cells.values()}):
        curves = np.array([c["curve"] for c in cells.values()
                           if c["convs"] == convs and c["val"] > 0.5])
        if len(curves):
            axes[1].plot(range(1, epochs + 1), np.median(curves, axis=0), label=f"{convs} convs")
    axes[1].set(title="median learning curve by 3x3 convs in the cell", xlabel="epoch",
                ylabel="val accuracy", ylim=(0.8, 1.0))
    axes[1].legend(fontsize=8)
    axes[2].plot(range(1, epochs + 1), summary["spearman_epoch_vs_final_val"], marker="o")
    axes[2].set(title="Spearman: epoch e's val vs the last epoch's", xlabel="epoch",
                ylim=(-0.1, 1.05))
    for ax in axes:
        ax.grid(alpha=0.3)
    fig.suptitle("evograph's cell table: NAS-Bench-201 cells over none/skip/3x3 conv on "
                 "MNIST-1D, 2 seeds")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def print_summary(s: dict) -> None:
    q = s["mean_val_accuracy"]
    print(f"{s['cells']} cells, {s['rows']} rows, {s['epochs']} epochs")
    print(f"mean val accuracy: min {q['min']:.4f}  q1 {q['q1']:.4f}  median {q['median']:.4f}  "
          f"q3 {q['q3']:.4f}  max {q['max']:.4f}")
    print(f"best by val: {s['best_val_key']}  val {s['best_val']:.4f}  test "
          f"{s['best_val_test']:.4f};  best test anywhere {s['best_test']:.4f}")
    print(f"seed noise (median std of val) {s['seed_std_val_median']:.4f};  Spearman(val, test) "
          f"{s['spearman_val_test']:.3f};  Spearman(epoch e val, final val): "
          + " ".join(f"{r:.2f}" for r in s["spearman_epoch_vs_final_val"]))
    print(f"{s['cpu_seconds'] / 60:.1f} CPU-minutes of training in all")


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    if args.estimate:
        return estimate(args)
    figure = SUMMARY.with_name("tabular_cells-quick.png" if args.quick else "tabular_cells.png")
    if args.plot_only:
        rows = list(csv.DictReader(io.StringIO(gzip.decompress(args.out.read_bytes()).decode())))
        plot(rows, args.epochs, figure)
        print(f"wrote {figure}")
        return {"figure": str(figure)}
    rows, wall = build_table(args)
    base.write_table(rows, args.out, columns(args.epochs))
    summary = summarise(rows, args.epochs)
    base._atomic_json(args.out.with_name(args.out.name.split(".")[0] + ".json"),
                      definition(args, summary, wall))
    base.partial_path(args.out).unlink(missing_ok=True)
    print_summary(summary)
    plot(rows, args.epochs, figure)
    print(f"wrote {args.out} ({args.out.stat().st_size / 1024:.0f} KiB) in {wall:.0f} s, "
          f"and {figure.name}")
    report = {"benchmark": "tabular_cells", "paper": "Dong & Yang 2020 (NAS-Bench-201) protocol",
              "quick": args.quick, "table": str(args.out.relative_to(HERE.parent))
              if args.out.is_relative_to(HERE.parent) else str(args.out),
              "config": {"seeds": args.seeds, "epochs": args.epochs,
                         "processes": args.processes}, **base.environment(),
              "wall_seconds": wall, "summary": summary}
    base._atomic_json(SUMMARY.with_name("tabular_cells-quick.json") if args.quick else SUMMARY,
                      report)
    return report


if __name__ == "__main__":
    main()
