"""Search efficiency on evograph's tabular benchmark: evolution against random search, brute
force and Optuna's TPE, each over many seeds, in one run.

Every strategy searches the ``mlp-table`` space (1,008 MLPs on digits, ``benchmarks/tabular.py``)
through the ``table`` fitness generator, driven directly through its ``ask``/``tell`` (one
proposal at a time, as a run with the serial executor does — verified once against a real
``evograph run`` of ``runs/configs/digits-table.toml``). Searches compared:

* ``aging`` — regularized evolution (Real et al. 2019), P=20, S=5 (the strategy's defaults);
* ``tournament`` — Real et al. 2017's pairwise tournaments, P=20;
* ``topk`` — generational truncation with crossover, P=20, k=5;
* ``random`` — random search, uniform over the space's architectures;
* ``rl`` — the RL controller (Zoph & Le 2017), when ``meta/controller.py`` registers it; it
  samples ``--rl-batch`` architectures per REINFORCE update (Zoph & Le's minibatch of
  child networks), i.e. it runs as with ``executor.batch = 10``;
* ``tpe`` — Optuna's TPE sampler (Bergstra et al. 2011) on the same space (depth, widths,
  activation, optimizer), the tool a user would pick instead;
* ``brute-force`` — every architecture once, in a random order.

By default each evaluation returns the validation accuracy of ONE of the table's 3 training
seeds, picked by the evaluation's seed (``seed_policy = "seed"``: as noisy as real training,
NAS-Bench-101's protocol); ``--seed-policy mean`` gives the noise-free mean. The figures use the
*true* value of an architecture, its mean validation accuracy over seeds: best-so-far curves,
regret against the space's best, evaluations to reach the space's best, and evaluations to reach
random search's median best-after-N. Medians and quartiles over ``--seeds`` seeds. Usage::

    python benchmarks/search.py            # 100 seeds, 1000 evaluations (TPE 500, random 2000)
    python benchmarks/search.py --quick    # 20 seeds, 300 evaluations (TPE 200, random 1000)
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import sys
import tempfile
import time
import warnings
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import search_report as report
from evograph import meta as _meta  # noqa: F401  (registers the RL controller if present)
from evograph.compile.training.table import TableFitness, load_table, mlp_chain_key
from evograph.compile.training.table import _number as table_number
from evograph.errors import EvographError
from evograph.genome.codec import codec_for
from evograph.genome.space import get_space
from evograph.genome.spaces_tabular import enumerate_mlp_table, mlp_chain_genome
from evograph.selection import STRATEGIES, make_strategy
from evograph.selection.base import Result, Variation, derive_seed

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "search.json"
CONFIG = ROOT / "runs" / "configs" / "digits-table.toml"
SHAPE, CLASSES = (1, 8, 8), 10


@dataclass(frozen=True)
class Spec:
    """Which table is searched: its space (name and overrides), key function, the input shape
    and classes its genomes are built for, and the config the real-run check runs."""

    space: str = "mlp-table"
    overrides: tuple = ()
    key: str = "mlp-chain"
    shape: tuple = SHAPE
    classes: int = CLASSES
    config: str = str(CONFIG)

    @property
    def title(self) -> str:
        return ("the digits MLP table" if self.space == "mlp-table"
                else f"the {self.space} table")
EVOLUTION = {"aging": {"population_size": 20, "sample_size": 5},
             "tournament": {"population_size": 20},
             "topk": {"population_size": 20, "k": 5},
             "random": {}}


def strategies() -> dict[str, dict]:
    """The ask/tell strategies compared; ``rl`` joins when it is registered."""
    out = dict(EVOLUTION)
    if "rl" in STRATEGIES:
        out["rl"] = {}
    return out


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=None, help="100 (quick: 20)")
    parser.add_argument("--evaluations", type=int, default=None,
                        help="budget per search: 1000 (quick: 300)")
    parser.add_argument("--tpe-evaluations", type=int, default=None,
                        help="TPE's budget, as its cost grows with the trials: 500 (quick: 200)")
    parser.add_argument("--random-evaluations", type=int, default=None,
                        help="random search's budget, long enough to see it reach the best: "
                             "2000 (quick: 1000)")
    parser.add_argument("--rl-batch", type=int, default=10,
                        help="architectures per REINFORCE update of the RL controller")
    parser.add_argument("--seed-policy", choices=("seed", "mean"), default="seed")
    parser.add_argument("--table", default="", help="table file ('' = the shipped one)")
    parser.add_argument("--space", default=None,
                        help="the table's space (default: its definition's, else mlp-table)")
    parser.add_argument("--space-set", action="append", default=[], metavar="KEY=VALUE",
                        help="a space parameter, e.g. ops=none,skip_connect,nor_conv_3x3")
    parser.add_argument("--key", default=None, help="the table's key function")
    parser.add_argument("--shape", default=None, help="input shape of the genomes")
    parser.add_argument("--classes", type=int, default=None)
    parser.add_argument("--config", default=None,
                        help="the table config the real `evograph run` check runs")
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--verify-evaluations", type=int, default=60,
                        help="length of the real `evograph run` checked against the loop")
    parser.add_argument("--searches", default="",
                        help="comma-separated subset (random is always run: the targets)")
    parser.add_argument("--quick", action="store_true", help="20 seeds, 300 evaluations")
    parser.add_argument("--out", type=Path, default=None,
                        help="JSON file (default results/search.json, quick: search-quick.json)")
    args = parser.parse_args(argv)
    args.out = args.out or RESULTS.with_name("search-quick.json" if args.quick else "search.json")
    defaults = (20, 300, 200, 1000) if args.quick else (100, 1000, 500, 2000)
    for name, default in zip(("seeds", "evaluations", "tpe_evaluations",
                              "random_evaluations"), defaults):
        setattr(args, name, default if getattr(args, name) is None else getattr(args, name))
    if min(args.seeds, args.evaluations, args.tpe_evaluations, args.random_evaluations,
           args.processes, args.rl_batch) < 1:
        parser.error("--seeds, --evaluations, --tpe-evaluations, --processes and --rl-batch "
                     "must be >= 1")
    args.spec = spec_of(args, parser)
    args.searches = {n for n in args.searches.split(",") if n} | (
        {"random"} if args.searches else set())
    unknown = args.searches - {*strategies(), "tpe", "brute-force"}
    if unknown:
        parser.error(f"--searches: unknown {', '.join(sorted(unknown))} (known: "
                     f"{', '.join([*strategies(), 'tpe', 'brute-force'])})")
    return args


def spec_of(args: argparse.Namespace, parser: argparse.ArgumentParser) -> Spec:
    """The searched table from the command line, what it leaves out from the table's definition
    (``<table stem>.json`` beside it, as the table builders write it: space, its parameters,
    key function, input shape, run config), else the shipped digits table's; one error line for
    a malformed value."""
    known = definition_of(args.table)
    args.space = args.space or known.get("space_name", "mlp-table")
    args.key = args.key or known.get("key_function", "mlp-chain")
    args.shape = args.shape or ",".join(map(str, known.get("dataset", {}).get(
        "input_shape", SHAPE)))
    args.classes = args.classes or known.get("dataset", {}).get("classes", CLASSES)
    args.config = args.config or str(ROOT / known.get("config", CONFIG.relative_to(ROOT)))
    overrides = [] if args.space_set else [(k, tuple(v) if isinstance(v, list) else v)
                                           for k, v in known.get("space_overrides", {}).items()]
    for item in args.space_set:
        name, sep, value = item.partition("=")
        if not sep or not name:
            parser.error(f"--space-set {item!r}: expected KEY=VALUE")
        parts = tuple(_number(v) for v in value.split(","))
        overrides.append((name, parts if "," in value else parts[0]))
    try:
        shape = tuple(int(x) for x in args.shape.split(","))
        get_space(args.space, **dict(overrides))
    except (ValueError, TypeError, KeyError, EvographError) as exc:
        parser.error(f"--space/--space-set/--shape: {exc}")
    return Spec(args.space, tuple(overrides), args.key, shape, args.classes, args.config)


def definition_of(table: str) -> dict:
    """The JSON definition beside a table file (``{}`` when there is none)."""
    if not table:
        return {}
    path = Path(table)
    sidecar = path.with_name(path.name.split(".")[0] + ".json")
    try:
        return json.loads(sidecar.read_text())
    except (OSError, ValueError):
        return {}


def _number(text: str):
    """An int or float where the text is one (the table reader's rule), else the text."""
    number = table_number(text)
    return text if number is None else number


# -- the problem ----------------------------------------------------------------------------------
@lru_cache(maxsize=4)
def problem(table: str, policy: str, spec: Spec = Spec()) -> dict:
    """The space, its architectures' keys, the true value (mean val) and mean test of every
    key. The ``mlp-table`` space is enumerated (its genomes are TPE's); any other space's
    architectures are the table's keys."""
    space = get_space(spec.space, **dict(spec.overrides))
    rows = load_table(table).rows
    genomes = (list(enumerate_mlp_table(space, spec.shape, spec.classes))
               if spec.space == "mlp-table" else None)
    keys = [mlp_chain_key(g) for g in genomes] if genomes else sorted(rows)
    true = np.array([np.mean([r["val_accuracy"] for r in rows[k]]) for k in keys])
    test = np.array([np.mean([r["test_accuracy"] for r in rows[k]]) for k in keys])
    return {"space": space, "genomes": genomes, "keys": keys, "index": {k: i for i, k in
            enumerate(keys)}, "true": true, "test": test, "best": float(true.max()),
            "fitness": TableFitness(path=table, key=spec.key, seed_policy=policy),
            "variation": Variation.for_space(space, spec.shape, spec.classes),
            "spec": spec, "title": spec.title if spec.space == "mlp-table" or not table else
            f"the {Path(table).name.split('.')[0]} table ({spec.space})"}


def _record(p: dict, evaluated: list[int], measured: list[float | None]) -> dict:
    """A search's trace: true value and mean test of each evaluated architecture, in order;
    a genome outside the table (index -1, e.g. a crossover child mixing activations) was an
    infeasible evaluation: true value -inf, no test accuracy, never picked."""
    idx = np.array(evaluated, dtype=np.int64)
    outside = idx < 0
    true = np.where(outside, -np.inf, p["true"][np.where(outside, 0, idx)])
    test = np.where(outside, np.nan, p["test"][np.where(outside, 0, idx)])
    value = np.array([-np.inf if m is None else m for m in measured], dtype=float)
    return {"true": true, "test": test, "measured": value, "arch": idx,
            "infeasible": int(outside.sum())}


def _index(p: dict, score) -> int:
    """The table row an evaluation looked up (-1 when the genome was outside the table)."""
    return p["index"].get(score.metrics.get("table_key"), -1)


def run_strategy(name: str, seed: int, budget: int, table: str, policy: str, batch: int = 1,
                 genomes: bool = False, spec: Spec = Spec()) -> dict:
    """One search of ``budget`` evaluations: ask ``batch`` proposals, look them up, tell the
    results in id order — what the run driver does with ``executor.batch = batch``."""
    p = problem(table, policy, spec)
    params = strategies().get(name, {})
    strategy = make_strategy(name, p["variation"], seed, **params)
    evaluated, measured, hashes = [], [], []
    while len(evaluated) < budget:
        proposals = strategy.ask(min(batch, budget - len(evaluated)))
        scores = [p["fitness"].lookup(q.genome, q.seed) for q in proposals]
        strategy.tell([Result(q.id, s.fitness) for q, s in zip(proposals, scores)])
        for proposal, score in zip(proposals, scores):
            evaluated.append(_index(p, score))
            measured.append(score.fitness)
            if genomes:
                hashes.append((proposal.genome.hash, score.fitness))
    out = _record(p, evaluated, measured)
    if genomes:
        out["proposals"] = hashes
    return out


def run_tpe(seed: int, budget: int, table: str, policy: str, spec: Spec = Spec()) -> dict:
    """Optuna's TPE sampler (seeded): over depth, per-layer width, activation and optimizer
    on ``mlp-table``; over the space codec's categorical decisions (the RL controller's, e.g.
    the six edge ops of an nb201 cell) on any other space."""
    import optuna
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    p = problem(table, policy, spec)
    study = optuna.create_study(direction="maximize",
                                sampler=optuna.samplers.TPESampler(seed=seed))
    suggest = (_mlp_trial_genome if spec.space == "mlp-table"
               else _codec_trial(codec_for(p["space"], spec.shape, spec.classes)))
    evaluated, measured = [], []
    for number in range(budget):
        trial = study.ask()
        genome = suggest(trial, p["space"], spec)
        score = p["fitness"].lookup(genome, derive_seed(seed, number))
        if score.fitness is None:  # outside the table: a failed trial, as for the strategies
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
        else:
            study.tell(trial, score.fitness)
        evaluated.append(_index(p, score))
        measured.append(score.fitness)
    return _record(p, evaluated, measured)


def _mlp_trial_genome(trial, space, spec: Spec):
    depth = trial.suggest_int("layers", 1, space.max_layers)
    widths = tuple(trial.suggest_categorical(f"units_{i}", list(space.unit_choices))
                   for i in range(depth))
    return mlp_chain_genome(widths, trial.suggest_categorical("activation", list(
        space.activations)), trial.suggest_categorical("optimizer", list(space.optimizers)),
        space, spec.shape, spec.classes)


def _codec_trial(codec):
    def suggest(trial, space, spec: Spec):
        return codec.decode([trial.suggest_categorical(d.name, list(range(d.size)))
                             for d in codec.decisions])
    return suggest


def run_brute_force(seed: int, table: str, policy: str, spec: Spec = Spec()) -> dict:
    """Every architecture once, in an order drawn from ``seed``."""
    p = problem(table, policy, spec)
    order = np.random.default_rng(seed).permutation(len(p["keys"]))
    measured = [p["fitness"].lookup_key(p["keys"][i], derive_seed(seed, n)).fitness
                for n, i in enumerate(order)]
    return _record(p, [int(i) for i in order], measured)


def run_one(task: tuple) -> tuple[str, int, dict, float]:
    """Pool entry point: ``(search, seed, budget, table, policy, batch, spec)`` -> trace,
    seconds."""
    import torch
    torch.set_num_threads(1)
    name, seed, budget, table, policy, batch, spec = task
    start = time.perf_counter()
    if name == "tpe":
        trace = run_tpe(seed, budget, table, policy, spec)
    elif name == "brute-force":
        trace = run_brute_force(seed, table, policy, spec)
    else:
        trace = run_strategy(name, seed, budget, table, policy, batch, spec=spec)
    return name, seed, trace, time.perf_counter() - start


# -- the check against a real run -----------------------------------------------------------------
def verify_real_run(args: argparse.Namespace, seed: int = 0) -> dict:
    """Run ``evograph run`` (the real CLI entry point, in process) on the table config and
    compare its proposals and fitnesses with this script's direct loop for the same seed."""
    from evograph.runs.cli.main import main as evograph_main
    from evograph.runs.store import RunStore
    n = args.verify_evaluations
    with tempfile.TemporaryDirectory() as tmp:
        argv = ["run", args.spec.config, "--out", f"{tmp}/run", "--no-live", "--set",
                f"seed={seed}", "--set", f"budget.evaluations={n}", "--set",
                f"fitness.path='{args.table}'", "--set",
                f"fitness.seed_policy='{args.seed_policy}'", "--set", "strategy.name='aging'",
                "--set", "final.share=0",  # the search alone: no final selection
                *[f"--set=strategy.{k}={v}" for k, v in EVOLUTION["aging"].items()]]
        start = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            code = evograph_main(argv)
        seconds = time.perf_counter() - start
        with RunStore.open(f"{tmp}/run", readonly=True) as store:
            real = [(i.genome_hash, e.fitness) for i, e in zip(store.individuals(),
                                                               store.evaluations())]
    direct = run_strategy("aging", seed, n, args.table, args.seed_policy, genomes=True,
                          spec=args.spec)
    same = real == direct["proposals"]
    print(f"real `evograph run` ({n} evaluations, {seconds:.1f} s) vs direct loop: "
          f"{'identical proposals and fitnesses' if same else 'DIFFERENT'}")
    return {"exit_code": code, "evaluations": n, "identical": same, "seconds": seconds,
            "strategy": "aging", "seed": seed}


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    names = [n for n in list(strategies()) + ["tpe", "brute-force"]
             if not args.searches or n in args.searches]
    size = len(problem(args.table, args.seed_policy, args.spec)["keys"])
    special = {"tpe": args.tpe_evaluations, "brute-force": size,
               "random": args.random_evaluations}
    budgets = {n: special.get(n, args.evaluations) for n in names}
    batches = {n: args.rl_batch if n == "rl" else 1 for n in names}
    slow_first = sorted(names, key=lambda n: n not in ("rl", "tpe"))
    tasks = [(n, s, budgets[n], args.table, args.seed_policy, batches[n], args.spec)
             for n in slow_first for s in range(args.seeds)]
    print(f"{len(names)} searches x {args.seeds} seeds on {size} architectures "
          f"({args.seed_policy} policy), {args.processes} processes")
    start = time.perf_counter()
    traces = []
    with ProcessPoolExecutor(args.processes) as pool:
        for trace in pool.map(run_one, tasks, chunksize=2):
            traces.append(trace)
            if len(traces) % args.seeds == 0:
                print(f"  {trace[0]}: {args.seeds} seeds done "
                      f"({time.perf_counter() - start:.0f} s)", flush=True)
    wall = time.perf_counter() - start
    verification = verify_real_run(args)
    results = report.analyse(traces, problem(args.table, args.seed_policy, args.spec), names,
                             budgets)
    report.print_table(results, args)
    report.plot(traces, problem(args.table, args.seed_policy, args.spec), names,
                args.out.with_suffix(".png"))
    data = report.to_json(results, args, names, budgets, wall, verification,
                          load_table(args.table).path)
    data["batches"] = batches
    report.write_json(args.out, data)
    print(f"{len(tasks)} searches in {wall:.0f} s; wrote {args.out} and "
          f"{args.out.with_suffix('.png').name}")
    return data


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    main()
