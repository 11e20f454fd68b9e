"""Throughput: how much of the machine evograph's training uses, and what the engine costs.

All in one run on digits, for the ``mlp`` and ``lse-conv`` spaces:

1. **Roofs** — fp32 matrix-multiply GFLOP/s of one single-threaded process per core, all cores
   at once (and one core alone): what training could reach at best.
2. **Training FLOPs** — counted with ``torch.utils.flop_counter.FlopCounterMode`` on one real
   training step (forward and backward) and one evaluation pass of each genome, times the steps
   the ``sgd`` fitness takes. (The counter counts matrix products and convolutions; elementwise
   work and optimizer updates are not counted, as is usual.)
3. **The same evolution run, four ways** — the same config and seed evaluated by

   * the plain per-model loop: each candidate built and trained alone in this process
     (``train_steps`` then validation/test evaluation), nothing else;
   * the engine with 1 worker (``local`` executor, the driver, the SQLite store, weights
     files, weight inheritance — everything a real run does);
   * the engine with one worker per core;
   * the engine with one worker per core and ``batched = "auto"``.

   The first three are run ``--repeats`` times (3), interleaved, and the run with the median
   steady time of each is reported (all steady times beside it): one slow spell of the machine
   would otherwise decide a ratio.

   Every run asks batches one ahead (``executor.pipeline``, 1 by default: the workers never
   wait for the driver between batches); ``executor.batch`` is fixed, so the 1-worker and
   N-worker runs evaluate the very same candidates (the benchmark checks that their final
   states are equal); reported per way:
   wall seconds, models per hour, achieved GFLOP/s and the fraction of the roof, scaling over
   1 worker (in training FLOP/s: the batched run's candidates are its own), and the
   **engine's overhead per candidate** — everything but training: the 1-worker run's time
   outside training minus the plain loop's time outside training (its building and
   evaluating) on the same candidates, training timed inside both (``train_time``), per
   candidate and as a share of the evaluation time, for each repeat (the engine's run and the
   plain loop run right after it) and its median over repeats; beside it the plain wall-time
   difference,
   which also carries how fast each process happened to train (worker start-up is reported
   separately; it is paid once per run). The same overhead is measured twice more, 1 worker
   against the plain loop: with synchronous batches (``executor.pipeline = 0``) and with longer
   evaluations (the demo's config trained 30 epochs instead of 4).
4. **Population training** (``mlp``): K siblings of one architecture (ALTER-LEARNING-RATE
   children: the same network with K learning rates) trained by the plain per-model loop and
   together by ``compile.batched.train_batched`` — by its generic ``vmap`` path and by the
   direct path it takes for chains of dense layers — GFLOP/s, fraction of the one-core roof and
   the speed-up of the direct path over the loop, for a few widths, K and batch sizes (median
   of 5 interleaved timings of each way, 3 for the big networks).

With ``--device cuda`` the same report is made on the GPU: the roof is the GPU's fp32
matrix-multiply rate (TF32 off), the plain loop and every worker train on it, and "N workers"
are N worker processes sharing the one GPU (``executor.per_gpu = N``); training uses the
deterministic kernels every GPU worker uses (:mod:`evograph.compile.determinism`).

Usage::

    python benchmarks/throughput.py [--quick] [--device cpu|cuda] [--workers N]
                                    [--sections spaces,overhead,population]
                                    [--out benchmarks/results/throughput.json]
"""

from __future__ import annotations

import argparse
import copy
import json
import multiprocessing as mp
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from evograph.compile.builder import build
from evograph.compile.determinism import use_deterministic_kernels
from evograph.compile.training.batched import train_batched
from evograph.compile.training.fitness import make_fitness
from evograph.compile.training.sgd import AUGMENTATIONS, evaluate, train_steps
from evograph.data.datasets import load_dataset
from evograph.genome.core import Genome, Node
from evograph.genome.io import from_dict
from evograph.runs.config import load_config
from evograph.runs.driver import create_run, run
from evograph.runs.execute.process import warm_up
from evograph.runs.store import RunStore
from torch.nn import functional as F
from torch.utils.flop_counter import FlopCounterMode

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).resolve().parent / "results" / "throughput.json"
CPU = torch.device("cpu")
SPACES = {  # space -> (config, overrides of the run)
    "lse-conv": ("runs/configs/digits.toml", []),  # the demo's: 4 epochs, shifted images
    "mlp": ("runs/configs/rl-mlp.toml", ["strategy.name=aging", "fitness.epochs=3",
                                         "strategy.population_size=24",
                                         "strategy.sample_size=6"]),
}


# the engine's overhead where evaluations are longer: the demo's config trained 30 epochs, not 4
# (8 in --quick)
LONGER = {"lse-conv, 30 epochs": ("runs/configs/digits.toml", ["fitness.epochs=30"]),
          "lse-conv, 8 epochs": ("runs/configs/digits.toml", ["fitness.epochs=8"]),
          "lse-conv, synchronous batches": ("runs/configs/digits.toml", [])}


SECTIONS = ("spaces", "overhead", "population")  # 3., its two longer-evaluation rows, 4.


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="about two minutes")
    parser.add_argument("--evaluations", type=int, default=160, help="per run")
    parser.add_argument("--batch", type=int, default=16, help="executor.batch of every run")
    parser.add_argument("--pipeline", type=int, default=1,
                        help="executor.pipeline of every run (batches asked ahead)")
    parser.add_argument("--workers", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--repeats", type=int, default=3,
                        help="runs of the plain loop, 1 worker and N workers (median reported)")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                        help="cuda: the plain loop and every worker train on the GPU, "
                             "N workers share it")
    parser.add_argument("--sections", default=",".join(SECTIONS),
                        help=f"comma-separated, of {', '.join(SECTIONS)} (default: all)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    args.sections = [part.strip() for part in args.sections.split(",") if part.strip()]
    unknown = sorted(set(args.sections) - set(SECTIONS))
    if unknown or not args.sections:
        parser.error(f"--sections: unknown {', '.join(unknown) or '(none given)'} "
                     f"(known: {', '.join(SECTIONS)})")
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: torch finds no CUDA device")
    name = "throughput" + ("-cuda" if args.device == "cuda" else "")
    if args.quick:
        args.evaluations, args.batch, args.repeats = 16, 8, 1
        name += "-quick"
    if args.out == RESULTS:
        args.out = RESULTS.with_name(f"{name}.json")
    return args


def _cpuinfo(field: str) -> str:
    """The first core's ``field`` in /proc/cpuinfo ("" where there is none)."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return ""
    return next((line.split(":", 1)[1].strip() for line in lines if line.startswith(field)), "")


def cpu_model() -> str:
    """The CPU's model name (``platform.processor()`` is empty on Linux): roofs differ ~1.7x
    between the machines this benchmark has run on, and a report must say which it was."""
    return _cpuinfo("model name") or platform.processor()


def cpu_flags() -> list[str]:
    """The vector extensions the roof depends on (AVX2, AVX-512, AMX), from /proc/cpuinfo."""
    return sorted(f for f in _cpuinfo("flags").split() if f in ("avx2", "avx512f", "amx_tile"))


def machine() -> dict:
    return {"platform": platform.platform(), "processor": cpu_model(), "cpu_flags": cpu_flags(),
            "cpus": len(os.sched_getaffinity(0)), "load_average": os.getloadavg(),
            "versions": {"python": sys.version.split()[0], "torch": torch.__version__},
            "cuda": torch.cuda.is_available(),
            "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}


# -- 1. roofs -------------------------------------------------------------------------------------

def products_rate(n: int, seconds: float, device: torch.device = CPU) -> float:
    """GFLOP/s of n x n fp32 matrix products repeated for about ``seconds`` after three
    untimed ones, on this process's threads or on the GPU (TF32 off: true fp32; the GPU is
    waited for every 10 products, so the clock counts their work)."""
    chunk = 10 if device.type == "cuda" else 1
    previous = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    try:
        a, b = (torch.randn(n, n, device=device) for _ in range(2))
        for _ in range(3):
            a @ b  # warm-up
        synchronize(device)
        count, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            for _ in range(chunk):
                a @ b
            synchronize(device)
            count += chunk
        return 2 * n ** 3 * count / (time.perf_counter() - t0) / 1e9
    finally:
        torch.backends.cuda.matmul.allow_tf32 = previous


def _matmul_rate(n: int, seconds: float, start, out) -> None:
    """One roof process: single-threaded products, started with the others (``start``)."""
    torch.set_num_threads(1)
    start.wait()
    out.put(products_rate(n, seconds))


def roof(processes: int, n: int = 512, seconds: float = 3.0) -> list[float]:
    """Per-process matmul GFLOP/s with ``processes`` single-threaded processes at once."""
    ctx = mp.get_context("spawn")
    start, out = ctx.Barrier(processes), ctx.Queue()
    procs = [ctx.Process(target=_matmul_rate, args=(n, seconds, start, out))
             for _ in range(processes)]
    for p in procs:
        p.start()
    rates = [out.get(timeout=120) for _ in procs]
    for p in procs:
        p.join()
    return sorted(rates)


def gpu_roof(n: int = 8192, seconds: float = 3.0) -> float:
    """GFLOP/s of n x n fp32 matrix products on the GPU, TF32 off (true fp32)."""
    return products_rate(n, seconds, torch.device("cuda"))


# -- 2. FLOPs -------------------------------------------------------------------------------------

def _counted(fn) -> int:
    with FlopCounterMode(display=False) as counter:
        fn()
    return int(counter.get_total_flops())


def step_flops(genome: Genome, data, batch: int) -> int:
    """Matmul/conv FLOPs of one training step (forward + backward) on a batch of ``batch``."""
    module = build(genome, seed=0).train()
    x, y = data.x_train[:batch], data.y_train[:batch]
    return _counted(lambda: F.cross_entropy(module(x), y).backward())


def eval_flops(genome: Genome, data) -> int:
    module = build(genome, seed=0).eval()
    with torch.no_grad():
        return _counted(lambda: (module(data.x_val), module(data.x_test)))


class FlopBook:
    """Training + evaluation FLOPs of one ``sgd`` evaluation, cached per architecture."""

    def __init__(self, data, fitness_params: dict):
        self.data, self.fitness = data, make_fitness("sgd", fitness_params)
        self.cache: dict[tuple, int] = {}

    def __call__(self, genome: Genome) -> int:
        batch, steps = self.fitness.schedule(genome, self.data)
        key = (genome.arch_hash, batch)
        if key not in self.cache:
            self.cache[key] = (steps * step_flops(genome, self.data, batch)
                               + eval_flops(genome, self.data))
        return self.cache[key]


# -- 3. one run, four ways ------------------------------------------------------------------------

def run_config(space: str, args, tmp: Path, name: str, workers: int, batched: str):
    path, extra = {**SPACES, **LONGER}[space]
    overrides = extra + [f"budget.evaluations={args.evaluations}", "budget.minutes=0",
                         "final.share=0",  # the search's throughput, no final selection
                         "executor.name=local", f"executor.workers={workers}",
                         f"executor.batch={args.batch}", f"executor.batched={batched}",
                         f"executor.pipeline={args.pipeline}", f"out={tmp}",
                         f"executor.device={args.device}"]
    if args.device == "cuda":
        overrides.append(f"executor.per_gpu={workers}")  # the N workers share the one GPU
    return create_run(load_config(ROOT / path, overrides), tmp / name)


def median_run(runs: list[dict]) -> dict:
    """Of repeated runs of one way, the one with the median steady time (a whole run, so its
    figures stay consistent with each other), with every repeat's steady time beside it."""
    pick = sorted(runs, key=lambda r: r["steady_s"])[len(runs) // 2]
    return {**pick, "repeats_steady_s": [r["steady_s"] for r in runs]}


def engine(space: str, args, tmp: Path, workers: int, batched: str = "never",
           tag: str = "") -> dict:
    run_dir = run_config(space, args, tmp, f"{space}-{workers}-{batched}{tag}", workers, batched)
    t0 = time.perf_counter()
    outcome = run(run_dir, live=False)
    wall = time.perf_counter() - t0
    assert outcome.finished, outcome.reason
    with RunStore.open(run_dir, readonly=True) as store:
        evaluations, individuals = store.evaluations(), store.individuals()
    # from the moment the first evaluation began inside a worker (worker start-up excluded)
    # to the last result; the rest of the wall time is start-up and shutdown
    window = max(e.finished_at for e in evaluations) - min(e.finished_at - e.wall_time
                                                           for e in evaluations)
    metrics = [e.metrics for e in evaluations]
    return {"way": f"engine, {workers} worker{'s' * (workers > 1)}"
                   + (", batched auto" if batched != "never" else ""),
            "workers": workers, "batched": batched, "run_dir": str(run_dir), "wall_s": wall,
            "evaluations": len(evaluations), "steady_s": window, "startup_s": wall - window,
            "worker_eval_s": sum(e.wall_time or 0.0 for e in evaluations),
            "train_s": sum(m.get("train_time", 0.0) for m in metrics),
            "build_s": sum(m.get("build_time", 0.0) for m in metrics),
            "eval_s": sum(m.get("eval_time", 0.0) for m in metrics),
            "evaluations_batched": sum(1 for m in metrics if "batched" in m),
            "state": [(e.id, e.status, e.fitness) for e in evaluations],
            "genomes": [i.genome for i in individuals]}


def plain_loop(genomes: list[Genome], fitness_params: dict, data,
               device: torch.device = CPU) -> dict:
    """Each candidate built and trained alone in this process, then evaluated: the work of an
    evaluation with nothing of the engine around it."""
    fitness = make_fitness("sgd", fitness_params)
    data = data.to(device)
    t0, build_s, train_s, eval_s = time.perf_counter(), 0.0, 0.0, 0.0
    for i, genome in enumerate(genomes):
        batch, steps = fitness.schedule(genome, data)
        started = time.perf_counter()
        module = build(genome, seed=i, device=device)
        built = time.perf_counter()
        train_steps(module, data, genome.gene, steps, batch, i, device,
                    augment=AUGMENTATIONS[fitness.augment])
        trained = time.perf_counter()  # train_steps reads its losses: synchronised
        evaluate(module, data.x_val, data.y_val, device, fitness.eval_batch_size)
        evaluate(module, data.x_test, data.y_test, device, fitness.eval_batch_size)
        build_s += built - started
        train_s += trained - built
        eval_s += time.perf_counter() - trained
    wall = time.perf_counter() - t0
    return {"way": "plain per-model loop", "workers": 1, "wall_s": wall, "steady_s": wall,
            "startup_s": 0.0, "train_s": train_s, "build_s": build_s, "eval_s": eval_s,
            "evaluations": len(genomes)}


def space_section(space: str, args, tmp: Path, roof_all: float, roof_one: float) -> dict:
    path, extra = SPACES[space]
    config = load_config(ROOT / path, extra)
    data = load_dataset("digits", seed=config.seed, val_fraction=config.dataset.val_fraction,
                        test_fraction=config.dataset.test_fraction)
    fitness_params = dict(config.fitness.params)
    ones, manies, plains, genomes = [], [], [], []
    for r in range(args.repeats):  # interleaved, so that a slow spell hits every way alike
        print(f"[{space}] engine, 1 worker ({r + 1}/{args.repeats})", flush=True)
        ones.append(engine(space, args, tmp, 1, tag=f"-{r}"))
        print(f"[{space}] engine, {args.workers} workers", flush=True)
        manies.append(engine(space, args, tmp, args.workers, tag=f"-{r}"))
        genomes = genomes or [from_dict(g) for g in ones[0]["genomes"]]
        print(f"[{space}] plain loop over the same {len(genomes)} candidates", flush=True)
        plains.append(plain_loop(genomes, fitness_params, data, torch.device(args.device)))
    one, many, plain = median_run(ones), median_run(manies), median_run(plains)
    print(f"[{space}] engine, {args.workers} workers, batched auto", flush=True)
    batched = engine(space, args, tmp, args.workers, "auto")
    book = FlopBook(data, fitness_params)
    flops = sum(book(g) for g in genomes)
    ways = [plain, one, many, batched]
    for way in ways:
        way_flops = flops if "genomes" not in way or way is one or way is many else \
            sum(book(from_dict(g)) for g in way["genomes"])
        roof_of = roof_one if way["workers"] == 1 else roof_all
        way.update(flops=way_flops, gflops=way_flops / way["steady_s"] / 1e9,
                   models_per_hour=way["evaluations"] / way["steady_s"] * 3600,
                   models_per_hour_end_to_end=way["evaluations"] / way["wall_s"] * 3600)
        way["roof_fraction"] = way["gflops"] / roof_of
    for way in ways:
        # work done per second over the 1-worker run's: the batched run trains candidates of
        # its own (batched results differ in the last bits, so its trajectory does), so its
        # speed is compared in training FLOP/s; for the others (the same candidates) this is
        # the ratio of their times
        way["scaling_vs_1_worker"] = way["gflops"] / one["gflops"]
    section = {
        "space": space, "config": path, "overrides": extra, "fitness": fitness_params,
        "same_candidates_1_vs_n_workers": all(a["state"] == b["state"]
                                              for a in ones for b in manies),
        **engine_overhead(ones, plains),
        "ways": [{k: v for k, v in w.items() if k not in ("state", "genomes")} for w in ways]}
    return section


def overhead_section(args, tmp: Path) -> list[dict]:
    """The engine (1 worker) against the plain loop on the same candidates, twice more: with
    synchronous batches (``executor.pipeline = 0``: the worker waits while the driver tells a
    batch and asks the next), and training 30 epochs instead of the demo's 4 (the overhead per
    candidate stays, its share shrinks)."""
    longer = "lse-conv, 8 epochs" if args.quick else "lse-conv, 30 epochs"
    cases = [("lse-conv, synchronous batches", {"pipeline": 0}),
             (longer, {"evaluations": 16 if args.quick else 48})]
    rows = []
    for name, changes in cases:
        path, extra = LONGER[name]
        case = argparse.Namespace(**{**vars(args), **changes})
        config = load_config(ROOT / path, extra)
        data = load_dataset("digits", seed=config.seed, val_fraction=config.dataset.val_fraction,
                            test_fraction=config.dataset.test_fraction)
        print(f"[{name}] engine, 1 worker", flush=True)
        one = engine(name, case, tmp, 1)
        print(f"[{name}] plain loop over the same candidates", flush=True)
        plain = plain_loop([from_dict(g) for g in one["genomes"]], dict(config.fitness.params),
                           data, torch.device(args.device))
        rows.append({"config": name, "overrides": extra, "pipeline": case.pipeline,
                     "evaluations": one["evaluations"], "plain_s": plain["steady_s"],
                     "engine_s": one["steady_s"], **engine_overhead([one], [plain])})
    return rows


def engine_overhead(ones: list[dict], plains: list[dict]) -> dict:
    """The engine's own time per candidate: what the 1-worker run spends outside training
    minus what the plain loop spends outside training (building and evaluating), training
    timed inside each (``train_time``, the same ``train_steps`` call). Subtracting training
    time measured in the same run keeps out how fast the two processes happen to train (their
    training speeds differ by a few percent either way from run to run, more than the whole
    overhead); the plain wall-time difference is reported beside it.

    Each repeat pairs the engine's run with the plain loop run right after it on the same
    candidates (interleaved, so a slow spell of the machine hits both), and the median over
    repeats is reported, every repeat's value beside it.

    The comparison of two processes cannot resolve much under a millisecond: building and
    evaluating the same candidates takes 1.9-2.7 ms in one run of the plain loop and another in
    the next. So the engine's own time is also measured *within* the 1-worker run: its steady
    time per candidate minus the building, training and evaluating timed inside the worker
    (``build_time``, ``train_time``, ``eval_time``) — everything else the engine does per
    candidate (the unit's trip, parsing, inheriting, the result's bookkeeping, the gaps between
    units) — less the same remainder of the plain loop (its loop, nearly nothing)."""
    def outside_training(run: dict) -> float:
        return (run["steady_s"] - run["train_s"]) / run["evaluations"]

    def outside_the_model(run: dict) -> float:
        return outside_training(run) - (run["build_s"] + run["eval_s"]) / run["evaluations"]

    pairs = list(zip(ones, plains, strict=True))
    overheads = [outside_training(one) - outside_training(plain) for one, plain in pairs]
    walls = [(one["steady_s"] - plain["steady_s"]) / one["evaluations"] for one, plain in pairs]
    evaluation = statistics.median(plain["steady_s"] / plain["evaluations"] for plain in plains)
    overhead, wall = statistics.median(overheads), statistics.median(walls)
    within = [outside_the_model(one) - outside_the_model(plain) for one, plain in pairs]
    return {"evaluation_s": evaluation, "overhead_per_candidate_s": overhead,
            "overhead_fraction": overhead / evaluation, "overhead_per_repeat_s": overheads,
            "engine_own_time_per_candidate_s": statistics.median(within),
            "engine_own_time_fraction": statistics.median(within) / evaluation,
            "engine_own_time_per_repeat_s": within,
            "wall_difference_per_candidate_s": wall,
            "wall_difference_fraction": wall / evaluation,
            "training_speed_engine_vs_plain": statistics.median(
                plain["train_s"] / one["train_s"] for one, plain in pairs)}


# -- 4. population training -----------------------------------------------------------------------

def synchronize(device: torch.device) -> None:
    """Wait for the GPU's queued work, so that a clock read after it counts it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def mlp_genome(widths: tuple[int, ...], batch: int, lr: float) -> Genome:
    """input(64) -> dense(w1, relu) -> ... -> output(10): a member of the ``mlp`` space."""
    nodes = [Node.make(0, "input", shape=(1, 8, 8)), Node.make(1, "output", num_classes=10)]
    edges, prev = [], 0
    for i, width in enumerate(widths, start=2):
        nodes.append(Node.make(i, "dense", units=width, activation="relu"))
        edges.append((prev, i))
        prev = i
    edges.append((prev, 1))
    return Genome.make(nodes, edges, {"learning_rate": lr, "optimizer": "adam",
                                      "batch_size": batch, "weight_decay": 0.0})


def matmul_rate_now(device: torch.device) -> float:
    """GFLOP/s of fp32 matrix products in this very process, now, for about 0.25 s: on CPU
    512 x 512 on one thread (this process's), on a GPU 8192 x 8192 (:func:`products_rate`).
    The population rows measure their roof this way in every round, beside the three ways,
    so that a machine that speeds up or slows down during the run moves both alike."""
    return products_rate(8192 if device.type == "cuda" else 512, 0.25, device)


def population(widths, k: int, batch: int, steps: int, data, roof_one: float,
               device: torch.device = CPU) -> dict:
    """K siblings trained three ways: the plain per-model loop, batched by the generic ``vmap``
    path, and batched by the direct path for dense chains (what ``train_batched`` picks); and,
    in every interleaved round beside them, the roof (:func:`matmul_rate_now`), against which
    each way's fraction is reported. ``roof_one``, measured once at the run's start, is kept
    beside it for comparison."""
    genomes = [mlp_genome(widths, batch, 1e-3 * 1.2 ** i) for i in range(k)]
    flops = k * steps * step_flops(genomes[0], data, batch)
    data = data.to(device)
    modules = [build(g, seed=i, device=device) for i, g in enumerate(genomes)]
    genes = [g.gene for g in genomes]

    def loop(copies: list) -> None:
        for i, (m, g) in enumerate(zip(copies, genomes)):
            train_steps(m, data, g.gene, steps, batch, i, device)

    def batched(direct: bool):
        return lambda copies: train_batched(copies, genes[:len(copies)], data, steps, batch,
                                            range(len(copies)), device, direct=direct)

    ways = {"per_model": loop, "vmap": batched(False), "direct": batched(True)}
    for way in ways.values():
        way([copy.deepcopy(m) for m in modules[:2]])              # warm-up
    times: dict[str, list[float]] = {name: [] for name in ways}
    roofs: list[float] = []
    repeats = 5
    while len(times["direct"]) < repeats:  # interleaved, so that load hits every way alike
        roofs.append(matmul_rate_now(device))
        for name, way in ways.items():
            copies = [copy.deepcopy(m) for m in modules]          # fresh candidates, untimed
            synchronize(device)
            t = time.perf_counter()
            way(copies)
            synchronize(device)
            times[name].append(time.perf_counter() - t)
        if sum(t[0] for t in times.values()) > 3.0:
            repeats = 3              # big networks: each run is long and relatively quiet
    median = {name: statistics.median(t) for name, t in times.items()}
    roof = statistics.median(roofs)
    row = {"widths": list(widths), "k": k, "batch": batch, "steps": steps, "repeats": repeats,
           "params": sum(p.numel() for p in modules[0].parameters()), "flops": flops,
           "roof_gflops": roof, "roof_per_round_gflops": roofs, "start_roof_gflops": roof_one}
    for name, seconds in median.items():
        row.update({f"{name}_s": seconds, f"{name}_gflops": flops / seconds / 1e9,
                    f"{name}_roof_fraction": flops / seconds / 1e9 / roof,
                    f"{name}_start_roof_fraction": flops / seconds / 1e9 / roof_one})
    row["speedup"] = median["per_model"] / median["direct"]
    row["targets_met"] = row["direct_roof_fraction"] >= 0.5 and row["speedup"] >= 4
    return row


def population_section(args, roof_one: float) -> list[dict]:
    """Members of the ``mlp`` space (digits, Adam), from small networks that the per-model loop
    leaves mostly idle to wide ones it already runs near the roof."""
    data = load_dataset("digits", seed=0)
    cases = [((128, 128), 16, 64), ((64, 64, 64), 32, 128), ((64,), 64, 32), ((128,), 16, 64),
             ((128, 128, 128), 16, 64), ((256, 256), 16, 64), ((512, 512), 16, 128),
             ((1024, 1024), 8, 256)]
    if args.device == "cuda":  # a GPU is idle below dozens of small networks at once
        cases = [((128, 128), 16, 64), ((128, 128), 64, 64), ((64, 64, 64), 128, 128),
                 ((256, 256), 64, 128), ((1024, 1024), 32, 256), ((2048, 2048), 32, 512)]
    if args.quick:
        cases = cases[:2]
    steps = 20 if args.quick else 60
    rows = []
    for widths, k, batch in cases:
        print(f"[population] widths {widths}, K={k}, batch {batch}", flush=True)
        rows.append(population(widths, k, batch, steps, data, roof_one,
                               torch.device(args.device)))
    return rows


# -- report ---------------------------------------------------------------------------------------

def overhead_line(s: dict) -> str:
    repeats = s.get("overhead_per_repeat_s", [])
    each = (f", repeats {', '.join(f'{1000 * r:.2f}' for r in repeats)} ms"
            if len(repeats) > 1 else "")
    within = s["engine_own_time_per_repeat_s"]
    own = (f"engine's own time measured within its run "
           f"{1000 * s['engine_own_time_per_candidate_s']:.2f} "
           f"ms/candidate ({100 * s['engine_own_time_fraction']:.2f}%"
           + (f", repeats {', '.join(f'{1000 * r:.2f}' for r in within)} ms" if len(within) > 1
              else "") + "); ")
    return (own + f"engine overhead against the plain loop "
            f"{s['overhead_per_candidate_s'] * 1000:.2f} ms/candidate "
            f"({100 * s['overhead_fraction']:.2f}% of an evaluation{each}; wall-time difference "
            f"{s['wall_difference_per_candidate_s'] * 1000:.1f} ms, "
            f"{100 * s['wall_difference_fraction']:.1f}%, the worker training "
            f"{s['training_speed_engine_vs_plain']:.3f}x as fast as the plain loop)")


def print_tables(report: dict) -> None:
    r = report["roof"]
    if "gpu" in r:
        print(f"\nroof: {r['gpu']:.0f} GFLOP/s fp32 (TF32 off) on {report['machine']['gpu']}")
    else:
        print(f"\nroof: {r['one_core_alone']:.1f} GFLOP/s on one core alone; "
              f"{r['all_cores']:.1f} GFLOP/s on {len(r['per_core'])} cores at once "
              f"({', '.join(f'{v:.1f}' for v in r['per_core'])})")
    for s in report["spaces"]:
        print(f"\n{s['space']}: {s['ways'][0]['evaluations']} evaluations, "
              f"{s['evaluation_s']:.2f} s each; same candidates 1 vs N workers: "
              f"{s['same_candidates_1_vs_n_workers']}; {overhead_line(s)}")
        print(f"{'way':46} {'wall s':>7} {'start s':>8} {'models/h':>9} {'GFLOP/s':>8} "
              f"{'of roof':>8} {'x 1 worker':>10}")
        for w in s["ways"]:
            way = w["way"] + (f" ({w['evaluations_batched']} batched)"
                              if w.get("batched", "never") != "never" else "")
            print(f"{way:46} {w['wall_s']:>7.1f} {w['startup_s']:>8.1f} "
                  f"{w['models_per_hour']:>9.0f} {w['gflops']:>8.2f} "
                  f"{100 * w['roof_fraction']:>7.1f}% {w['scaling_vs_1_worker']:>10.2f}")
    for o in report["longer_evaluations"]:
        print(f"\n{o['config']} (pipeline {o['pipeline']}): {o['evaluations']} evaluations, "
              f"{o['evaluation_s']:.2f} s each; {overhead_line(o)}")
    print(f"\n{'population (mlp, adam)':22} {'K':>3} {'batch':>5} {'params':>9} "
          f"{'GFLOP/s: roof':>13} {'loop':>6} {'vmap':>6} {'direct':>6}   "
          f"{'of roof: loop':>13} {'direct':>6} {'speed-up':>8}  targets")
    for p in report["population"]:
        print(f"{'x'.join(map(str, p['widths'])):22} {p['k']:>3} {p['batch']:>5} "
              f"{p['params']:>9,} {p['roof_gflops']:>13.1f} {p['per_model_gflops']:>6.1f} "
              f"{p['vmap_gflops']:>6.1f} "
              f"{p['direct_gflops']:>6.1f}   {100 * p['per_model_roof_fraction']:>12.1f}% "
              f"{100 * p['direct_roof_fraction']:>5.1f}% {p['speedup']:>8.2f}  "
              f"{'both met' if p['targets_met'] else '-'}")


def main(argv=None) -> dict:
    args = parse_args(argv)
    torch.set_num_threads(1)
    device = torch.device(args.device)
    use_deterministic_kernels(device)  # as every GPU worker trains
    warm_up(device)  # as every worker does: torch's one-time imports out of the plain loop's time
    start = time.perf_counter()
    report = {"benchmark": "throughput", "machine": machine(), "args": {
        k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}}
    if args.device == "cuda":  # one roof: the workers share the GPU
        rate = gpu_roof()
        report["roof"] = {"matmul_n": 8192, "gpu": rate, "per_core": [rate], "all_cores": rate,
                          "one_core_alone": rate}
    else:
        per_core = roof(args.workers)
        report["roof"] = {"matmul_n": 512, "per_core": per_core, "all_cores": sum(per_core),
                          "one_core_alone": roof(1)[0]}
    roof_all, roof_one = report["roof"]["all_cores"], report["roof"]["one_core_alone"]
    report["spaces"], report["longer_evaluations"], report["population"] = [], [], []
    if "population" in args.sections:  # first: the shortest, and on a GPU the one most asked
        report["population"] = population_section(args, roof_one)
    with tempfile.TemporaryDirectory(prefix="evograph-throughput-") as tmp:
        if "spaces" in args.sections:
            report["spaces"] = [space_section(space, args, Path(tmp), roof_all, roof_one)
                                for space in SPACES]
        if "overhead" in args.sections:
            report["longer_evaluations"] = overhead_section(args, Path(tmp))
    report["wall_seconds"] = time.perf_counter() - start
    print_tables(report)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1))
    print(f"\nwrote {args.out}")
    return report


if __name__ == "__main__":
    main()
