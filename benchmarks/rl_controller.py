"""The RL controller against random search and aging evolution, and ENAS weight sharing against
stand-alone training — both on scikit-learn's digits, in one run.

**Search** (Zoph & Le 2017 vs Real et al. 2019). A small ``mlp`` space seen through its codec
(layers 1-2, units per layer, activation, optimizer, learning-rate bucket) is trained exhaustively
once with the ``sgd`` fitness (``--epochs`` passes, training seed 0) into a lookup table of
validation and test accuracy; then ``rl`` (the controller, default parameters), ``random`` and
``aging`` (regularized evolution, one-decision mutations) search it with equal evaluations, in
synchronous batches of ``--batch`` (as with that many workers), over ``--seeds`` seeds. Every
strategy works on exactly the same decision space (``codec_variation``). Figures: best validation
accuracy after N evaluations, and the evaluations each needs to reach random search's median
best-after-N (median over seeds; "inf" when a seed never gets there).

**ENAS** (Pham et al. 2018). ``--genomes`` random genomes of the ``enas-conv`` config's space are
trained stand-alone (``sgd``, 4 epochs) and scored with shared weights (``enas``, 20 steps) after
``--warmup`` evaluations of random architectures have trained the supernet. Figures: Kendall tau
and Spearman rho between the two scores, and the median wall time per evaluation of each.

Usage::

    python benchmarks/rl_controller.py            # the full version (10-25 min on 2 cores)
    python benchmarks/rl_controller.py --quick    # about a minute
    python benchmarks/rl_controller.py --seeds 20 --rl-params '{"learning_rate": 0.03}'
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import torch
from evograph import meta  # noqa: F401  (registers "rl" and "enas")
from evograph.compile import build, make_fitness
from evograph.data.datasets import load_dataset
from evograph.genome.codec import codec_for
from evograph.genome.io import from_dict, to_dict
from evograph.genome.space import get_space
from evograph.meta.rl.controller import codec_variation
from evograph.selection import Result, make_strategy
from scipy.stats import kendalltau, spearmanr

RESULTS = Path(__file__).resolve().parent / "results"
SPACE = {"max_layers": 2, "unit_choices": (16, 32, 64, 128),
         "activations": ("relu", "elu", "tanh", "sigmoid"),
         "optimizers": ("adam", "sgd", "rmsprop", "adagrad")}
QUICK_SPACE = {"max_layers": 2, "unit_choices": (16, 64), "activations": ("relu", "tanh"),
               "optimizers": ("adam", "sgd")}
LEARNING_RATES = (0.001, 0.01, 0.1)
STRATEGIES = {"rl": {}, "random": {}, "aging": {"population_size": 20, "sample_size": 5}}
ENAS_SPACE = {"max_params": 100000, "max_layers": 5, "channels": (8, 48),  # enas-conv.toml
              "strides": (1, 2)}
_DATA = None


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small space, few seeds (~1 min)")
    parser.add_argument("--seeds", type=int, default=None, help="search seeds (50; quick 10)")
    parser.add_argument("--evaluations", type=int, default=None, help="per search (200; 60)")
    parser.add_argument("--batch", type=int, default=4, help="proposals per synchronous batch")
    parser.add_argument("--epochs", type=float, default=2.0, help="sgd epochs of the table")
    parser.add_argument("--genomes", type=int, default=None, help="ENAS genomes (50; quick 10)")
    parser.add_argument("--warmup", type=int, default=None, help="ENAS warm-up (300; quick 30)")
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--rl-params", type=json.loads, default={},
                        help='JSON overrides of the rl strategy, e.g. \'{"learning_rate": 0.03}\'')
    parser.add_argument("--skip-enas", action="store_true")
    parser.add_argument("--skip-search", action="store_true")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    quick = args.quick
    args.seeds = args.seeds or (10 if quick else 50)
    args.evaluations = args.evaluations or (60 if quick else 200)
    args.genomes = args.genomes or (10 if quick else 50)
    args.warmup = args.warmup if args.warmup is not None else (30 if quick else 300)
    args.out = args.out or RESULTS / ("rl_controller_quick.json" if quick else
                                      "rl_controller.json")
    return args


def data():
    global _DATA
    if _DATA is None:
        torch.set_num_threads(1)
        _DATA = load_dataset("digits", seed=0)
    return _DATA


def table_codec(quick: bool):
    space = get_space("mlp", **(QUICK_SPACE if quick else SPACE))
    return codec_for(space, (1, 8, 8), 10, learning_rates=LEARNING_RATES)


def all_genomes(codec) -> list:
    """Every distinct genome the codec can decode (enumerating all decision sequences)."""
    seen, grid = {}, np.array(np.meshgrid(*[range(s) for s in codec.sizes])).reshape(
        len(codec.sizes), -1).T
    for row in grid:
        genome = codec.decode(row.tolist())
        seen.setdefault(genome.hash, genome)
    return list(seen.values())


def _train(task: tuple[dict, float]) -> tuple[str, float, float, float]:
    genome, epochs = from_dict(task[0]), task[1]
    start = time.perf_counter()
    score = make_fitness("sgd", {"epochs": epochs}).score(
        build(genome, seed=0), genome, data(), seed=0, device=torch.device("cpu"))
    val = score.fitness if score.fitness is not None else 0.0
    return genome.hash, float(val), float(score.metrics.get("test_accuracy", 0.0)), \
        time.perf_counter() - start


def build_table(codec, epochs: float, processes: int,
                cache: Path | None = None) -> dict[str, tuple[float, float]]:
    """genome hash -> (val, test accuracy) for every genome of the codec; reused from
    ``cache`` when it was built for the same decisions and epochs."""
    spec = {"codec": codec.to_dict(), "epochs": epochs}
    if cache is not None and cache.exists():
        saved = json.loads(cache.read_text())
        if saved["spec"] == json.loads(json.dumps(spec)):
            return {h: tuple(v) for h, v in saved["table"].items()}
    table = _train_all(codec, epochs, processes)
    if cache is not None:
        cache.write_text(json.dumps({"spec": spec, "table": table}))
    return table


def _train_all(codec, epochs: float, processes: int) -> dict[str, tuple[float, float]]:
    tasks = [(to_dict(g), epochs) for g in all_genomes(codec)]
    if processes == 1:
        rows = [_train(t) for t in tasks]
    else:
        with ProcessPoolExecutor(processes) as pool:
            rows = list(pool.map(_train, tasks, chunksize=8))
    return {h: (v, t) for h, v, t, _ in rows}


def search(name: str, seed: int, codec, table: dict, evaluations: int, batch: int,
           params: dict) -> dict:
    """One search on the table; the best-so-far validation accuracy after each evaluation."""
    strategy = make_strategy(name, codec_variation(codec), seed, **params)
    best, curve, best_hash = -1.0, [], None
    while len(curve) < evaluations:
        proposals = strategy.ask(min(batch, evaluations - len(curve)))
        results = []
        for p in proposals:
            val = table[p.genome.hash][0]
            results.append(Result(p.id, val))
            if val > best:
                best, best_hash = val, p.genome.hash
            curve.append(best)
        strategy.tell(results)
    return {"strategy": name, "seed": seed, "curve": curve, "test_of_best": table[best_hash][1]}


def _search_task(task):
    name, seed, quick, table, evaluations, batch, params = task
    return search(name, seed, table_codec(quick), table, evaluations, batch, params)


def to_reach(curve: list[float], target: float) -> float:
    hits = [i + 1 for i, v in enumerate(curve) if v >= target - 1e-12]
    return float(hits[0]) if hits else float("inf")


def summarise_search(runs: list[dict], evaluations: int, table: dict) -> dict:
    checkpoints = [n for n in (10, 25, 50, 100, 200, 500) if n <= evaluations]
    by = {name: [r for r in runs if r["strategy"] == name] for name in STRATEGIES}
    out = {"space_best_val": max(v for v, _ in table.values()), "genomes": len(table),
           "best_after": {}, "evaluations_to_reach_random": {}}
    for name, mine in by.items():
        out["best_after"][name] = {n: float(np.median([r["curve"][n - 1] for r in mine]))
                                   for n in checkpoints}
        targets = {n: float(np.median([r["curve"][n - 1] for r in by["random"]]))
                   for n in checkpoints}
        out["evaluations_to_reach_random"][name] = {
            n: float(np.median([to_reach(r["curve"], targets[n]) for r in mine]))
            for n in checkpoints}
    return out


def enas_part(genomes: int, warmup: int, seed: int = 0) -> dict:
    """Kendall tau of shared-weight scores against stand-alone accuracy, and costs."""
    space = get_space("lse-conv", **ENAS_SPACE)
    codec = codec_for(space, (1, 8, 8), 10)
    rng = np.random.default_rng(seed)
    sample = [codec.decode(codec.random(rng)) for _ in range(genomes)]
    cpu, d = torch.device("cpu"), data()
    sgd = make_fitness("sgd", {"epochs": 4})
    alone, alone_time = [], []
    for i, g in enumerate(sample):
        start = time.perf_counter()
        alone.append(sgd.score(build(g, seed=i), g, d, seed=i, device=cpu).fitness or 0.0)
        alone_time.append(time.perf_counter() - start)
    with tempfile.TemporaryDirectory() as tmp:
        enas = make_fitness("enas", {"shared_weights": f"{tmp}/shared.safetensors",
                                     "steps": 20})
        enas_time, shared = [], []
        for i in range(warmup):  # train the supernet on random architectures first
            g = codec.decode(codec.random(rng))
            enas.score(build(g, seed=10_000 + i), g, d, seed=10_000 + i, device=cpu)
        for i, g in enumerate(sample):
            start = time.perf_counter()
            shared.append(enas.score(build(g, seed=i), g, d, seed=i, device=cpu).fitness or 0.0)
            enas_time.append(time.perf_counter() - start)
    tau, rho = kendalltau(shared, alone)[0], spearmanr(shared, alone)[0]
    return {"genomes": genomes, "warmup": warmup, "kendall_tau": float(tau),
            "spearman_rho": float(rho), "sgd_seconds_median": float(np.median(alone_time)),
            "enas_seconds_median": float(np.median(enas_time)),
            "cost_ratio_sgd_over_enas": float(np.median(alone_time) / np.median(enas_time)),
            "standalone_val": alone, "enas_val": shared}


def environment() -> dict:
    return {"machine": {"platform": platform.platform(), "processor": platform.processor(),
                        "cpu_count": os.cpu_count()},
            "versions": {"python": sys.version.split()[0], "numpy": np.__version__,
                         "torch": torch.__version__}}


def print_search(summary: dict, args: argparse.Namespace) -> None:
    print(f"\nSearch on the tabular mlp space ({summary['genomes']} genomes, best val "
          f"{summary['space_best_val']:.4f}); medians over {args.seeds} seeds, batches of "
          f"{args.batch}")
    checkpoints = list(summary["best_after"]["random"])
    print(f"{'strategy':<8} " + " ".join(f"best@{n:<6}" for n in checkpoints)
          + "  | evals to reach random's best@N: " + " ".join(f"N={n}" for n in checkpoints))
    for name in STRATEGIES:
        best = " ".join(f"{summary['best_after'][name][n]:<11.4f}" for n in checkpoints)
        reach = " ".join(f"{summary['evaluations_to_reach_random'][name][n]:g}"
                         for n in checkpoints)
        print(f"{name:<8} {best}  | {reach}")


def print_enas(result: dict) -> None:
    print(f"\nENAS on the enas-conv space: {result['genomes']} genomes after "
          f"{result['warmup']} warm-up evaluations")
    print(f"Kendall tau {result['kendall_tau']:.3f}, Spearman rho {result['spearman_rho']:.3f};"
          f" per evaluation: sgd {result['sgd_seconds_median']:.3f} s, enas "
          f"{result['enas_seconds_median']:.3f} s (x{result['cost_ratio_sgd_over_enas']:.1f} "
          "cheaper)")


def search_part(args: argparse.Namespace) -> tuple[dict, list[dict], float]:
    """The table (built or reused), then every strategy over every seed."""
    start = time.perf_counter()
    codec = table_codec(args.quick)
    cache = RESULTS / ("rl_controller_table_quick.json" if args.quick else
                       "rl_controller_table.json")
    table = build_table(codec, args.epochs, args.processes, cache)
    table_seconds = time.perf_counter() - start
    params = {**STRATEGIES, "rl": {**STRATEGIES["rl"], **args.rl_params}}
    tasks = [(name, seed, args.quick, table, args.evaluations, args.batch, params[name])
             for seed in range(args.seeds) for name in STRATEGIES]
    with ProcessPoolExecutor(args.processes) as pool:
        runs = list(pool.map(_search_task, tasks, chunksize=2))
    return summarise_search(runs, args.evaluations, table), runs, table_seconds


def curves(runs: list[dict], best: float) -> dict[str, dict[str, list[float]]]:
    """Quartiles of the regret (space's best validation accuracy - best so far) per strategy."""
    out = {}
    for name in STRATEGIES:
        regret = best - np.array([r["curve"] for r in runs if r["strategy"] == name])
        q1, med, q3 = np.percentile(regret, [25, 50, 75], axis=0)
        out[name] = {"q1": q1.round(5).tolist(), "median": med.round(5).tolist(),
                     "q3": q3.round(5).tolist()}
    return out


def plot(regret: dict[str, dict[str, list[float]]], path: Path) -> None:
    """Median regret (quartile band) against evaluations, both axes logarithmic."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, q in regret.items():
        x = np.arange(1, len(q["median"]) + 1)
        floor = 1e-3  # regret 0 (the space's best found) drawn at the floor of the log axis
        ax.plot(x, np.maximum(q["median"], floor), label=name)
        ax.fill_between(x, np.maximum(q["q1"], floor), np.maximum(q["q3"], floor), alpha=0.2)
    ax.set(xscale="log", yscale="log", xlabel="evaluations",
           ylabel="regret (best val. accuracy - best so far)",
           title="digits, tabular mlp space: median and quartiles over seeds")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    start = time.perf_counter()
    summary, runs, table_seconds = None, [], 0.0
    if not args.skip_search:
        summary, runs, table_seconds = search_part(args)
        print_search(summary, args)
        summary["regret_curves"] = curves(runs, summary["space_best_val"])
        plot(summary["regret_curves"], args.out.with_suffix(".png"))
    enas = None if args.skip_enas else enas_part(args.genomes, args.warmup)
    if enas:
        print_enas(enas)
    report = {"benchmark": "rl_controller", "quick": args.quick, **environment(),
              "config": {"space": QUICK_SPACE if args.quick else SPACE,
                         "learning_rates": LEARNING_RATES, "epochs": args.epochs,
                         "evaluations": args.evaluations, "batch": args.batch,
                         "strategies": {**STRATEGIES, "rl": {**STRATEGIES["rl"],
                                                             **args.rl_params}},
                         "enas_space": ENAS_SPACE},
              "seeds": list(range(args.seeds)), "table_seconds": table_seconds,
              "wall_seconds": time.perf_counter() - start, "search": summary, "enas": enas,
              "runs": [{k: r[k] for k in ("strategy", "seed", "test_of_best")} |
                       {"final_best": r["curve"][-1]} for r in runs]}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(".tmp")
    tmp.write_text(json.dumps(report, indent=1, default=str))
    os.replace(tmp, args.out)
    print(f"\n{time.perf_counter() - start:.0f} s in all; wrote {args.out}")
    return report


if __name__ == "__main__":
    main()
