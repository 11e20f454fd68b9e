"""Aging vs non-aging evolution vs random search on the toy problem of Real et al. 2019.

The supplementary "toy search space" experiment of *Regularized Evolution for Image Classifier
Architecture Search*: a genome is a string of 100 bits, its true fitness the fraction of ones and
its measured fitness that plus Gaussian noise (sigma 0.1 by default); a mutation flips one random
bit; P = 100, S = 10. Three searches get the same number of evaluations:

* ``aging``      — regularized evolution (remove the oldest),
* ``non-aging``  — the same algorithm removing the worst (the paper's control),
* ``random``     — random search.

The figure is the best TRUE (noise-free) fitness among all evaluated genomes; we also report the
true fitness of the genome the search itself would return (the best *measured*), where noise
hurts a non-aging population the most. Medians and quartiles over ``--seeds`` seeds.

Everything runs through evograph's real strategies (``make_strategy``) over a bit-string
:class:`~evograph.selection.base.Variation`. Usage::

    python benchmarks/toy_bitstring.py [--seeds 50] [--evaluations 2000] [--processes 2]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from evograph.selection import make_strategy
from evograph.selection.toy import bitstring_variation, evolve, noisy_ones, ones_fraction

RESULTS = Path(__file__).resolve().parent / "results" / "toy_bitstring.json"
VARIANTS = {"aging": ("aging", {"aging": True}), "non-aging": ("aging", {"aging": False}),
            "random": ("random", {})}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=50, help="number of seeds (0..seeds-1)")
    parser.add_argument("--evaluations", type=int, default=2000)
    parser.add_argument("--bits", type=int, default=100)
    parser.add_argument("--sigma", type=float, default=0.1, help="fitness noise (Gaussian sd)")
    parser.add_argument("--population", type=int, default=100, help="P")
    parser.add_argument("--sample", type=int, default=10, help="S")
    parser.add_argument("--workers", type=int, default=1,
                        help="simulated asynchronous workers (proposals in flight)")
    parser.add_argument("--processes", type=int, default=2, help="processes over seeds")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    if args.seeds < 1 or args.evaluations < 1 or args.processes < 1 or args.sigma < 0:
        parser.error("--seeds, --evaluations and --processes must be positive, --sigma >= 0")
    return args


def one_run(variant: str, seed: int, args: dict) -> dict:
    """One search of ``args['evaluations']`` evaluations; returns its figures."""
    strategy_name, extra = VARIANTS[variant]
    params = {"population_size": args["population"], **extra}
    if strategy_name == "aging":
        params["sample_size"] = args["sample"]
    strategy = make_strategy(strategy_name, bitstring_variation(args["bits"]), seed, **params)
    proposals = evolve(strategy, noisy_ones(args["sigma"]), args["evaluations"], args["workers"])
    true = np.array([ones_fraction(p.genome) for p in proposals])
    best_id, best_measured = strategy.best()
    checkpoints = sorted({min(c, len(true)) for c in (250, 500, 1000, len(true))})
    return {"variant": variant, "seed": seed, "best_true": float(true.max()),
            "true_of_best_measured": float(true[best_id]), "best_measured": best_measured,
            "best_true_at": {str(c): float(true[:c].max()) for c in checkpoints}}


def _run_task(task: tuple[str, int, dict]) -> dict:
    return one_run(*task)


def quartiles(values: list[float]) -> dict[str, float]:
    q1, median, q3 = np.percentile(values, [25, 50, 75])
    return {"q1": float(q1), "median": float(median), "q3": float(q3)}


def summarise(runs: list[dict]) -> dict[str, dict]:
    """Median and quartiles per variant of every figure."""
    out = {}
    for variant in VARIANTS:
        mine = [r for r in runs if r["variant"] == variant]
        out[variant] = {"best_true": quartiles([r["best_true"] for r in mine]),
                        "true_of_best_measured": quartiles([r["true_of_best_measured"]
                                                            for r in mine]),
                        "best_true_at": {c: quartiles([r["best_true_at"][c] for r in mine])
                                         for c in mine[0]["best_true_at"]}}
    return out


def environment() -> dict:
    import deap
    return {"machine": {"platform": platform.platform(), "processor": platform.processor(),
                        "cpu_count": os.cpu_count()},
            "versions": {"python": sys.version.split()[0], "numpy": np.__version__,
                         "deap": deap.__version__}}


def print_table(summary: dict, args: argparse.Namespace) -> None:
    """Median [q1, q3] per variant (rich when available, plain text otherwise)."""
    title = (f"Toy bit strings (Real et al. 2019): {args.bits} bits, sigma={args.sigma}, "
             f"P={args.population}, S={args.sample}, {args.evaluations} evaluations, "
             f"{args.seeds} seeds")
    header = ["search", "best true fitness\nmedian [q1, q3]",
              "true fitness of best measured\nmedian [q1, q3]"]
    rows = [[v] + [f"{s[k]['median']:.3f} [{s[k]['q1']:.3f}, {s[k]['q3']:.3f}]"
                   for k in ("best_true", "true_of_best_measured")]
            for v, s in summary.items()]
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:
        print(title)
        for row in [header] + rows:
            print("  ".join(f"{cell.replace(chr(10), ' '):<32}" for cell in row))
        return
    table = Table(title=title)
    for column in header:
        table.add_column(column)
    for row in rows:
        table.add_row(*row)
    Console().print(table)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    config = {k: getattr(args, k) for k in ("evaluations", "bits", "sigma", "population",
                                            "sample", "workers")}
    tasks = [(variant, seed, config) for seed in range(args.seeds) for variant in VARIANTS]
    start = time.perf_counter()
    if args.processes == 1:
        runs = [_run_task(t) for t in tasks]
    else:
        with ProcessPoolExecutor(args.processes) as pool:
            runs = list(pool.map(_run_task, tasks, chunksize=4))
    wall = time.perf_counter() - start
    summary = summarise(runs)
    print_table(summary, args)
    print(f"{len(runs)} runs in {wall:.1f} s on {args.processes} processes")
    report = {"benchmark": "toy_bitstring", "paper": "Real et al. 2019, toy search space",
              **environment(), "config": config, "seeds": list(range(args.seeds)),
              "processes": args.processes, "wall_seconds": wall, "summary": summary,
              "runs": runs}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(".tmp")
    tmp.write_text(json.dumps(report, indent=1))
    os.replace(tmp, args.out)
    print(f"wrote {args.out}")
    return report


if __name__ == "__main__":
    main()
