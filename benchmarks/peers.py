"""Peers: evograph against Optuna and DEAP on the same digits search, at equal wall time.

Each system searches the genes of an evograph ``lse-conv`` genome on 8x8 digits (the space of
``runs/configs/digits.toml``: 1..max_layers convolutions, each with its channels, kernel height
and width, strides, BN + ReLU or not and a skip connection or not; the learning rate and the
optimizer; weight decay and batch size fixed at the space's genes) for the same wall time on two
processes, as its users would write it:

* **Optuna** — TPE (define-by-run), two processes sharing one journal-file storage, each running
  ``study.optimize(timeout=...)``; an nn.Module built from the trial's parameters and trained by
  a plain PyTorch loop;
* **DEAP** — ``algorithms.eaSimple`` (population 24, two-point crossover 0.5, uniform-reset
  mutation 0.2, tournaments of 3) over a fixed-length list of genes, a ``multiprocessing`` pool
  of two as ``toolbox.map``, one generation at a time until the time is up;
* **evograph** — ``evograph.run("runs/configs/digits.toml")`` with ``budget.minutes`` set (its
  final selection inside that time); its pick is the final selection's (``evograph status RUN
  --json``), else the first of ``evograph best RUN --json``.

The peers' loop is the ``sgd`` fitness's recipe: ``--epochs`` passes (4), batch 64, random
one-pixel shifts (``augment = "shift"``), scored on the validation split of the run's splits
(``load_dataset("digits", seed=0)``). Each system's pick is then retrained from scratch by one
shared plain loop with ``--seeds`` seeds (the same recipe, ``--retrain-epochs``) and scored on
the test split: mean ± std. Usage::

    python benchmarks/peers.py            # 10 minutes per search, 3 seeds
    python benchmarks/peers.py --quick    # 1 minute per search, 1 seed
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import random
import subprocess
import sys
import tempfile
import time
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from deap import algorithms, base, creator, tools

sys.path.insert(0, str(Path(__file__).resolve().parent))
import peers_report as report
from evograph.compile.determinism import seeded_cpu_rng
from evograph.data.datasets import Dataset, load_dataset
from evograph.genome.space import SearchSpace, get_space
from evograph.runs.config import load_config
from peers_loop import accuracy, make_net, n_params, retrain, train

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "runs" / "configs" / "digits.toml"
RESULTS = ROOT / "benchmarks" / "results"
SYSTEMS = ("evograph", "optuna", "deap")
if not hasattr(creator, "PeerFitness"):  # DEAP's classes, made once per process
    creator.create("PeerFitness", base.Fitness, weights=(1.0,))
    creator.create("PeerIndividual", list, fitness=creator.PeerFitness)


# -- the problem: the config's space and splits --------------------------------------------------
@lru_cache(maxsize=1)
def space() -> SearchSpace:
    """The search space of digits.toml (lse-conv with the config's overrides)."""
    cfg = load_config(CONFIG)
    return get_space(cfg.space.name, **{k: tuple(v) if isinstance(v, list) else v
                                        for k, v in cfg.space.overrides.items()})


@lru_cache(maxsize=4)
def dataset(limit: int = 0) -> Dataset:
    """The splits an evograph run of digits.toml trains and selects on (``limit``: fewer
    training samples, for tests)."""
    cfg = load_config(CONFIG)
    d = cfg.dataset
    return load_dataset(d.name, seed=cfg.seed, val_fraction=d.val_fraction,
                        test_fraction=d.test_fraction, limit=limit or None)


def fixed_genes() -> dict:
    """Genes an lse-conv genome keeps from its start: weight decay and batch size."""
    genes = dict(space().initial_genes)
    return {"weight_decay": genes["weight_decay"], "batch_size": genes["batch_size"]}


def search_score(arch: dict, epochs: int, limit: int, seed: int) -> tuple[float, str]:
    """(validation accuracy, status) of one candidate, as a peer's objective computes it:
    over the space's parameter budget or diverged counts as infeasible (score 0)."""
    with seeded_cpu_rng(seed):  # the initialisation seeded, torch's global generator untouched
        model = make_net(arch)
    if n_params(model) > space().max_params:
        return 0.0, "infeasible"
    data = dataset(limit)
    if not train(model, arch, data, epochs, seed):
        return 0.0, "infeasible"
    return accuracy(model, data.x_val, data.y_val), "completed"


# -- Optuna ----------------------------------------------------------------------------------------
def suggest_arch(trial) -> dict:
    """The genes, define-by-run: a layer's parameters exist only when the layer does."""
    sp, layers = space(), []
    for i in range(trial.suggest_int("layers", 1, sp.max_layers)):
        layers.append({
            "channels": trial.suggest_int(f"channels_{i}", *sp.channels),
            "kernel": [trial.suggest_categorical(f"kernel_{a}_{i}", list(sp.kernel_sizes))
                       for a in "hw"],
            "stride": [trial.suggest_categorical(f"stride_{a}_{i}", list(sp.strides))
                       for a in "hw"],
            "bn_relu": trial.suggest_categorical(f"bn_relu_{i}", [True, False]),
            "skip": trial.suggest_categorical(f"skip_{i}", [True, False])})
    return {"layers": layers, **fixed_genes(),
            "learning_rate": trial.suggest_float("learning_rate", *sp.learning_rate, log=True),
            "optimizer": trial.suggest_categorical("optimizer", list(sp.optimizers))}


def _journal(path: Path):
    import optuna
    from optuna.storages.journal import JournalFileBackend
    return optuna.storages.JournalStorage(JournalFileBackend(str(path)))


def _optuna_worker(path: str, seed: int, deadline: float, epochs: int, limit: int,
                   trials: int | None) -> None:
    """One of the processes: TPE seeded per process, trials until the deadline."""
    import optuna
    torch.set_num_threads(1)
    optuna.logging.set_verbosity(optuna.logging.WARNING)

    def objective(trial) -> float:
        arch = suggest_arch(trial)
        trial.set_user_attr("arch", arch)
        value, status = search_score(arch, epochs, limit, seed=trial.number)
        if status != "completed":
            raise optuna.TrialPruned(status)
        return value

    study = optuna.load_study(study_name="peers", storage=_journal(Path(path)),
                              sampler=optuna.samplers.TPESampler(seed=seed))
    study.optimize(objective, n_trials=trials, timeout=max(0.0, deadline - time.time()))


def search_optuna(seconds: float, *, seed: int = 0, workers: int = 2, epochs: int = 4,
                  limit: int = 0, trials: int | None = None, folder: Path) -> dict:
    """TPE in ``workers`` processes sharing a journal file, for ``seconds`` of wall time (at
    most ``trials`` trials per process)."""
    import optuna
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    start = time.time()
    path = Path(folder) / "optuna.journal"
    optuna.create_study(study_name="peers", storage=_journal(path), direction="maximize")
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_optuna_worker, args=(str(path), seed * 100 + rank,
                                                      start + seconds, epochs, limit, trials))
             for rank in range(workers)]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    if any(p.exitcode for p in procs):
        raise RuntimeError(f"an Optuna worker failed (exit codes {[p.exitcode for p in procs]})")
    study = optuna.load_study(study_name="peers", storage=_journal(path))
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    best = study.best_trial
    trace = sorted((t.datetime_complete.timestamp() - start, t.value) for t in done)
    return _record("optuna", {"arch": best.user_attrs["arch"]}, best.value, trace,
                   {"completed": len(done), "infeasible": len(study.trials) - len(done)},
                   time.time() - start, seconds)


# -- DEAP ------------------------------------------------------------------------------------------
def gene_domains() -> list:
    """One draw per list position: depth, learning rate, optimizer, then 7 genes per layer."""
    sp = space()
    lo, hi = (float(np.log10(v)) for v in sp.learning_rate)
    head = [lambda r: r.randint(1, sp.max_layers), lambda r: 10 ** r.uniform(lo, hi),
            lambda r: r.choice(sp.optimizers)]
    layer = [lambda r: r.randint(*sp.channels)] + [lambda r: r.choice(sp.kernel_sizes)] * 2 \
        + [lambda r: r.choice(sp.strides)] * 2 + [lambda r: r.random() < 0.5] * 2
    return head + layer * sp.max_layers


def decode(genes: list) -> dict:
    """The architecture a list individual encodes (its first ``depth`` layers)."""
    depth, lr, optimizer = genes[:3]
    layers = [{"channels": g[0], "kernel": list(g[1:3]), "stride": list(g[3:5]),
               "bn_relu": g[5], "skip": g[6]}
              for g in (genes[3 + 7 * i:10 + 7 * i] for i in range(depth))]
    return {"layers": layers, **fixed_genes(), "learning_rate": lr, "optimizer": optimizer}


def mutate(individual: list, domains: list, indpb: float) -> tuple:
    """Uniform reset: each gene is drawn anew from its domain with probability ``indpb``."""
    for i, draw in enumerate(domains):
        if random.random() < indpb:
            individual[i] = draw(random)
    return (individual,)


_WORKER: dict = {}


def _init_worker(deadline: float, epochs: int, limit: int) -> None:
    torch.set_num_threads(1)
    _WORKER.update(deadline=deadline, epochs=epochs, limit=limit)


def evaluate_genes(task: tuple[list, int]) -> tuple[float, float | None, str]:
    """(validation accuracy, finishing time, status); past the deadline nothing is trained."""
    genes, seed = task
    if time.time() >= _WORKER["deadline"]:
        return 0.0, None, "skipped"
    value, status = search_score(decode(genes), _WORKER["epochs"], _WORKER["limit"], seed)
    return value, time.time(), status


def search_deap(seconds: float, *, seed: int = 0, workers: int = 2, epochs: int = 4,
                limit: int = 0, population: int = 24, generations: int | None = None) -> dict:
    """eaSimple one generation at a time until ``seconds`` of wall time (or ``generations``)."""
    start = time.time()
    random.seed(seed)
    domains, trace, counts = gene_domains(), [], {"completed": 0, "infeasible": 0}
    toolbox = base.Toolbox()
    toolbox.register("individual", tools.initIterate, creator.PeerIndividual,
                     lambda: [draw(random) for draw in domains])
    toolbox.register("population", tools.initRepeat, list, toolbox.individual)
    toolbox.register("evaluate", evaluate_genes)
    toolbox.register("mate", tools.cxTwoPoint)
    toolbox.register("mutate", mutate, domains=domains, indpb=0.1)
    toolbox.register("select", tools.selTournament, tournsize=3)
    with mp.get_context("spawn").Pool(workers, _init_worker,
                                      (start + seconds, epochs, limit)) as pool:
        def timed_map(evaluate, individuals):
            out = pool.map(evaluate, [(list(i), random.randrange(2**31)) for i in individuals])
            for value, finished, status in out:
                if finished is not None:
                    counts[status] += 1
                if status == "completed":
                    trace.append((finished - start, value))
            return [(value,) for value, _, _ in out]
        toolbox.register("map", timed_map)
        pop, hof, done = toolbox.population(population), tools.HallOfFame(1), 0
        while time.time() < start + seconds and (generations is None or done < generations):
            pop, _ = algorithms.eaSimple(pop, toolbox, cxpb=0.5, mutpb=0.2, ngen=1,
                                         halloffame=hof, verbose=False)
            done += 1
    best = hof[0]
    return _record("deap", {"arch": decode(best)}, best.fitness.values[0], sorted(trace),
                   {**counts, "generations": done}, time.time() - start, seconds)


# -- evograph --------------------------------------------------------------------------------------
def search_evograph(seconds: float, *, seed: int = 0, workers: int = 2, epochs: int = 4,
                    limit: int = 0, evaluations: int = 1_000_000, folder: Path) -> dict:
    """A real run of digits.toml for ``seconds`` (its final selection included); its pick is
    the final selection's (``evograph status RUN --json``), else ``evograph best RUN --json``'s
    first entry."""
    import evograph
    from evograph.runs.store import RunStore
    start = time.time()
    outcome = evograph.run(CONFIG, out=Path(folder) / "evograph", overrides={
        "seed": seed, "budget.minutes": seconds / 60, "budget.evaluations": evaluations,
        "executor.workers": workers, "fitness.epochs": epochs, "dataset.limit": limit})
    wall = time.time() - start
    best = _cli_json("best", outcome.run_dir)[0]
    final = _cli_json("status", outcome.run_dir).get("final") or {}
    pick_id, val = best["id"], best.get("val_accuracy", best["fitness"])
    if final.get("pick"):
        pick_id, val = final["pick"]["id"], final["pick"]["mean"]
    with RunStore.open(outcome.run_dir, readonly=True) as store:
        genome = store.individual(pick_id).genome
        trace = sorted((e.finished_at - start, e.fitness) for e in store.evaluations()
                       if e.fitness is not None and e.finished_at is not None)
        counts = store.counts_by_status()
    return _record("evograph", {"genome": genome, "id": pick_id, "best": best, "final": final,
                                "reason": outcome.reason}, val, trace, counts, wall, seconds)


def _cli_json(command: str, run_dir: Path):
    """``evograph COMMAND RUN --json``, run as a user runs it."""
    return json.loads(subprocess.run(
        [sys.executable, "-m", "evograph.runs.cli", command, str(run_dir), "--json"],
        capture_output=True, text=True, check=True).stdout)


def summarise(pick: dict) -> dict:
    """Convolutions, skip connections, optimizer and learning rate of a pick."""
    if "genome" in pick:
        from evograph.genome.io import from_dict
        g = from_dict(pick["genome"])
        return {"conv": sum(n.op == "conv" for n in g.nodes),
                "skip": len(g.edges) - (len(g.nodes) - 1), "optimizer": g.gene["optimizer"],
                "learning_rate": g.gene["learning_rate"]}
    arch = pick["arch"]
    return {"conv": len(arch["layers"]), "skip": sum(bool(x["skip"]) for x in arch["layers"]),
            "optimizer": arch["optimizer"], "learning_rate": arch["learning_rate"]}


def _record(system: str, pick: dict, val: float, trace: list, counts: dict, wall: float,
            budget: float) -> dict:
    return {"system": system, "pick": pick, "summary": summarise(pick),
            "pick_val_accuracy": val, "evaluations": counts,
            "wall_seconds": wall, "budget_seconds": budget,
            "trace": [[round(t, 2), round(v, 4)] for t, v in trace]}


# -- main --------------------------------------------------------------------------------------------
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=None, help="per search: 10 (quick 1)")
    parser.add_argument("--seeds", type=int, default=None, help="retraining seeds: 3 (quick 1)")
    parser.add_argument("--workers", type=int, default=2, help="processes per search")
    parser.add_argument("--epochs", type=int, default=4, help="training epochs in the search")
    parser.add_argument("--retrain-epochs", type=int, default=None,
                        help="epochs of the picks' retraining (100; quick 10)")
    parser.add_argument("--systems", default=",".join(SYSTEMS), help="comma-separated subset")
    parser.add_argument("--notes", default="", help="a remark stored in the JSON")
    parser.add_argument("--quick", action="store_true", help="1 minute per search, 1 seed")
    parser.add_argument("--out", type=Path, default=None,
                        help="JSON file (default results/peers.json, quick: peers-quick.json)")
    args = parser.parse_args(argv)
    args.minutes = args.minutes or (1.0 if args.quick else 10.0)
    args.seeds = args.seeds or (1 if args.quick else 3)
    # a pick is judged trained as long as a hand-built network is (and as evograph's final
    # selection retrains on digits): about 100 epochs; the search's 4 leave networks near 80%
    args.retrain_epochs = args.retrain_epochs or (10 if args.quick else 100)
    args.systems = [s.strip() for s in args.systems.split(",") if s.strip()]
    unknown = sorted(set(args.systems) - set(SYSTEMS))
    if unknown or not args.systems:
        parser.error(f"--systems: unknown {', '.join(unknown) or '(none given)'} "
                     f"(known: {', '.join(SYSTEMS)})")
    if min(args.minutes, args.seeds, args.workers, args.epochs, args.retrain_epochs) <= 0:
        parser.error("--minutes, --seeds, --workers, --epochs and --retrain-epochs must be > 0")
    args.out = args.out or RESULTS / ("peers-quick.json" if args.quick else "peers.json")
    return args


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    torch.set_num_threads(1)
    searches = {"evograph": search_evograph, "optuna": search_optuna, "deap": search_deap}
    records, start = [], time.time()
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.systems:
            print(f"{name}: searching for {args.minutes:g} min on {args.workers} processes",
                  flush=True)
            kwargs = {"folder": Path(tmp)} if name != "deap" else {}
            record = searches[name](args.minutes * 60, workers=args.workers, epochs=args.epochs,
                                    **kwargs)
            record["test"] = retrain(record, dataset(), args.seeds, args.retrain_epochs)
            records.append(record)
    data = report.to_json(records, args, time.time() - start)
    report.print_table(records, args)
    report.plot(records, args.out.with_suffix(".png"))
    report.write_json(args.out, data)
    print(f"wrote {args.out} and {args.out.with_suffix('.png').name}")
    return data


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    main()
