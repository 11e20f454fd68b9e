"""Parallel training: executor throughput and batched-population speed-ups, side by side.

Two measurements in one process, reported as ratios (medians over ``--repeats``):

1. **Executors** — the same evaluation tasks (small genomes of the ``mlp`` and ``lse-conv``
   spaces on digits, the ``sgd`` fitness) through ``serial``, ``local`` (2 workers) and ``dask``
   (a LocalCluster of 2 worker processes): evaluations per minute once the workers are up (a
   warm-up unit first loads torch and the dataset in every worker), plus the start-up time.
2. **Batched populations** — K siblings of one architecture (IDENTITY / ALTER-LEARNING-RATE
   children: same network, different learning rates) trained one by one with the plain
   per-model loop (``compile.train.train_steps``) versus together with ``torch.func``
   (``compile.batched.train_batched``), for genomes of the ``mlp`` space and ``lse-conv``
   genomes (the trivial starting network and sampled ones), with what the batching rule
   (``BatchRule("auto")``) decides once it has seen these very trainings' step times, the
   largest loss difference between the two paths, and —
   as its yardstick — how far the plain loop itself moves when the weights are nudged by 1e-7
   (training amplifies rounding differences; the batched path should stay within that scale).

Usage::

    python benchmarks/parallel.py [--quick] [--repeats 3] [--out benchmarks/results/parallel.json]
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from evograph.compile.builder import build
from evograph.compile.training.batch_rule import BatchRule, cost_class
from evograph.compile.training.batched import train_batched
from evograph.compile.training.sgd import train_steps
from evograph.data.datasets import load_dataset
from evograph.genome.io import to_dict
from evograph.genome.space import get_space
from evograph.runs.config import ExecutorConfig
from evograph.runs.execute.executors import make_executor
from evograph.runs.execute.task import Task

RESULTS = Path(__file__).resolve().parent / "results" / "parallel.json"
DATASET = {"name": "digits", "root": "", "download": False, "val_fraction": 0.15,
           "test_fraction": 0.2, "limit": 0}
SEED = 0


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="about a minute")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--tasks", type=int, default=24, help="evaluations per executor run")
    parser.add_argument("--steps", type=int, default=60, help="training steps per evaluation")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    if args.quick:
        args.repeats, args.tasks, args.steps = 1, 8, 30
        if args.out == RESULTS:
            args.out = RESULTS.with_name("parallel-quick.json")
    return args


def machine() -> dict:
    import dask
    return {"platform": platform.platform(), "processor": platform.processor(),
            "cpus": len(os.sched_getaffinity(0)), "load_average": os.getloadavg(),
            "versions": {"python": sys.version.split()[0], "torch": torch.__version__,
                         "numpy": np.__version__, "dask": dask.__version__},
            "cuda": torch.cuda.is_available()}


# -- 1. executors ---------------------------------------------------------------------------------

def executor_tasks(n: int, steps: int, first_id: int) -> list[Task]:
    rng = np.random.default_rng(SEED)
    spaces = [get_space("mlp", unit_choices=(32, 64, 128)), get_space("lse-conv", channels=(4, 16))]
    tasks = []
    for i in range(n):
        genome = spaces[i % 2].sample(rng, (1, 8, 8), 10)
        genome = genome.with_genes(learning_rate=0.01, optimizer="momentum", batch_size=64)
        tasks.append(Task(id=first_id + i, genome=to_dict(genome), seed=i, dataset=DATASET,
                          data_seed=SEED, fitness="sgd", fitness_params={"steps": steps}))
    return tasks


def time_executor(name: str, args) -> dict:
    start = time.perf_counter()
    executor = make_executor(ExecutorConfig(name=name, workers=2, timeout_s=600,
                                            batched="never"))
    warm = executor_tasks(executor.slots, 2, first_id=10_000)
    list(executor.run(warm, lambda: False))      # workers up, torch and data loaded
    startup = time.perf_counter() - start
    per_min, busy, fitness = [], [], None
    try:
        for _ in range(args.repeats):
            tasks = executor_tasks(args.tasks, args.steps, first_id=0)
            t = time.perf_counter()
            results = sorted(executor.run(tasks, lambda: False), key=lambda r: r.id)
            elapsed = time.perf_counter() - t
            per_min.append(len(tasks) / elapsed * 60)
            # share of the slots' time spent inside evaluations (the rest: dispatch, results,
            # idle slots at the end of the batch)
            busy.append(sum(r.wall_time for r in results) / (executor.slots * elapsed))
            fitness = [r.fitness for r in results]
    finally:
        executor.close()
    return {"executor": name, "slots": 2 if name != "serial" else 1, "startup_s": startup,
            "evaluations_per_min": statistics.median(per_min), "runs": per_min,
            "slot_busy_fraction": statistics.median(busy),
            "median_evaluation_s": statistics.median(r.wall_time for r in results),
            "fitness": fitness}


# -- 2. batched populations -----------------------------------------------------------------------

def sibling_sets(quick: bool) -> list[tuple[str, object]]:
    rng = np.random.default_rng(SEED)
    mlp, conv = get_space("mlp"), get_space("lse-conv", channels=(4, 32))
    sets = [("lse-conv trivial", conv.initial_genome(rng, (1, 8, 8), 10))]
    more = 1 if quick else 2
    sets += [("lse-conv sampled", conv.sample(rng, (1, 8, 8), 10)) for _ in range(more)]
    small = get_space("mlp", unit_choices=(64, 128))
    sets += [("mlp small", small.sample(rng, (1, 8, 8), 10))]
    sets += [("mlp sampled", mlp.sample(rng, (1, 8, 8), 10)) for _ in range(more)]
    return sets


def time_batched(label: str, genome, k: int, data, steps: int, repeats: int) -> dict:
    optimizer = "momentum" if label.startswith("lse") else "adam"
    lr = 0.05 if optimizer == "momentum" else 1e-3
    genomes = [genome.with_genes(optimizer=optimizer, learning_rate=lr * (1 + 0.25 * i),
                                 batch_size=64) for i in range(k)]
    modules = [build(g, seed=i) for i, g in enumerate(genomes)]
    cpu = torch.device("cpu")
    one_s, many_s, diff = [], [], 0.0
    for _ in range(repeats):
        alone = [copy.deepcopy(m) for m in modules]
        together = [copy.deepcopy(m) for m in modules]
        t = time.perf_counter()
        curves_one = [train_steps(m, data, g.gene, steps, 64, i, cpu)
                      for i, (m, g) in enumerate(zip(alone, genomes))]
        one_s.append(time.perf_counter() - t)
        t = time.perf_counter()
        curves = train_batched(together, [g.gene for g in genomes], data, steps, 64, range(k), cpu)
        many_s.append(time.perf_counter() - t)
        diff = max(diff, max(abs(a - b) for c1, c2 in zip(curves_one, curves)
                             for a, b in zip(c1, c2)))
    one, many = statistics.median(one_s), statistics.median(many_s)
    rule = BatchRule("auto")   # as a worker's rule after these trainings
    key = cost_class(genomes[0], cpu)
    rule.times.observe_alone(key, one / (k * steps))
    rule.times.observe_batched(key, k, many / steps)
    decision, measured = rule.decide(genomes, cpu)
    chaos = perturbed_difference(modules, genomes, data, steps, curves_one)
    return {"genome": label, "arch_hash": genome.arch_hash, "params": sum(
        p.numel() for p in modules[0].parameters()), "k": k, "optimizer": optimizer,
        "steps": steps, "one_by_one_s": one, "batched_s": many, "speedup": one / many,
        "rule_measured_speedup": measured, "rule_batches": decision,
        "max_loss_difference": diff, "perturbed_reference_difference": chaos}


def perturbed_difference(modules, genomes, data, steps, curves) -> float:
    """How far the plain loop itself moves when every weight is nudged by ~1e-7: the scale of
    float-rounding differences this training amplifies (the yardstick for the batched path)."""
    gen = torch.Generator().manual_seed(SEED)
    worst = 0.0
    for i, (module, genome) in enumerate(zip(modules, genomes)):
        nudged = copy.deepcopy(module)
        with torch.no_grad():
            for p in nudged.parameters():
                p.add_(torch.randn(p.shape, generator=gen) * 1e-7)
        again = train_steps(nudged, data, genome.gene, steps, 64, i, torch.device("cpu"))
        worst = max(worst, max(abs(a - b) for a, b in zip(again, curves[i])))
    return worst


def main(argv=None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(1)
    report = {"benchmark": "parallel", "seed": SEED, "machine": machine(), "args": {
        k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}}
    executors = [time_executor(name, args) for name in ("serial", "local", "dask")]
    base = executors[0]["evaluations_per_min"]
    for row in executors:
        row["speedup_vs_serial"] = row["evaluations_per_min"] / base
    report["executors"] = executors
    report["executor_results_identical"] = len({json.dumps(r["fitness"]) for r in executors}) == 1
    data = load_dataset("digits", seed=SEED)
    report["batched"] = [time_batched(label, genome, k, data, args.steps, args.repeats)
                         for label, genome in sibling_sets(args.quick)
                         for k in ((4,) if args.quick else (4, 8))]
    print_tables(report)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print(f"\nwrote {args.out}")


def print_tables(report: dict) -> None:
    print(f"{'executor':10} {'slots':>5} {'start s':>8} {'evals/min':>10} {'x serial':>9} "
          f"{'eval s':>7} {'busy':>6}")
    for r in report["executors"]:
        print(f"{r['executor']:10} {r['slots']:>5} {r['startup_s']:>8.1f} "
              f"{r['evaluations_per_min']:>10.1f} {r['speedup_vs_serial']:>9.2f} "
              f"{r['median_evaluation_s']:>7.2f} {r['slot_busy_fraction']:>6.2f}")
    print(f"identical results across executors: {report['executor_results_identical']}\n")
    print(f"{'siblings of':18} {'params':>8} {'K':>3} {'one-by-one s':>13} {'batched s':>10} "
          f"{'speedup':>8} {'rule':>12} {'max |dloss|':>11} {'nudged 1e-7':>11}")
    for r in report["batched"]:
        rule = f"{'yes' if r['rule_batches'] else 'no'} ({r['rule_measured_speedup']:.2f})"
        print(f"{r['genome']:18} {r['params']:>8} {r['k']:>3} {r['one_by_one_s']:>13.2f} "
              f"{r['batched_s']:>10.2f} {r['speedup']:>8.2f} {rule:>12} "
              f"{r['max_loss_difference']:>11.1e} {r['perturbed_reference_difference']:>11.1e}")


if __name__ == "__main__":
    main()
