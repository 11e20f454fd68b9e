"""Accuracy against published tables: evolved networks next to classic baselines, all trained in
this one run.

* **MNIST-1D** (Greydanus & Kobak 2020, "Scaling down deep learning with MNIST-1D"): published
  test accuracy on the standard 4000/1000 split is logistic regression 32%, MLP 68%, CNN 94%,
  GRU 91%, human 96%. Here ``runs/configs/mnist1d.toml`` evolves CNNs for ``--minutes`` on 2
  workers. The run sees only MNIST-1D samples generated with its own seed (0), never the
  standard set (seed 42), so nothing of the standard test split leaks into the search. The best
  individual (by validation accuracy) is tested on the standard 1000 three ways: as evolved (the
  weights the run trained), fine-tuned on the standard 4000 training samples (its weights train
  on, as a child's would) and retrained from scratch on them with its genes (``--seeds`` seeds
  each). Logistic regression and the paper's CNN (three stride-2 convolutions of 25 channels,
  Adam 1e-2, batch 100, 6000 steps) are trained here on the same split, as checks of the split
  and the recipe. ``--mnist1d-run DIR`` (and ``--digits-run DIR``) score an existing run instead.
* **digits** (scikit-learn's 8x8 digits, the splits of run seed 0): logistic regression, an RBF
  SVM and a hand-built CNN against evograph's best MLP of the tabular benchmark and a CNN evolved
  by ``runs/configs/digits.toml`` for ``--digits-minutes``.

Usage::

    python benchmarks/published.py               # 30 + 5 minutes of evolution
    python benchmarks/published.py --quick       # 1 + 1 minutes, shorter training
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from evograph.compile.builder import build
from evograph.compile.determinism import seeded_cpu_rng
from evograph.compile.training.sgd import SGDTraining, evaluate
from evograph.compile.training.table import load_table
from evograph.data.datasets import Dataset, load_dataset
from evograph.genome.io import from_dict
from evograph.runs.config import load_config
from evograph.runs.driver import create_run, run
from evograph.runs.store import RunStore
from safetensors.torch import load_file
from torch import nn
from torch.nn import functional as F

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
PUBLISHED_MNIST1D = {"logistic regression": 0.32, "MLP": 0.68, "CNN": 0.94, "GRU": 0.91,
                     "human": 0.96}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=None, help="MNIST-1D evolution (30)")
    parser.add_argument("--digits-minutes", type=float, default=None, help="digits evolution (5)")
    parser.add_argument("--retrain-epochs", type=float, default=None,
                        help="epochs of the evolved MNIST-1D network on the standard split (60)")
    parser.add_argument("--seeds", type=int, default=3, help="training seeds of every network")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--executor", choices=("local", "serial"), default=None,
                        help="where evolution evaluates: local pool (full) or serial (quick: "
                             "spawning workers costs much of a one-minute budget)")
    parser.add_argument("--finetune-epochs", type=float, default=None,
                        help="epochs of the evolved MNIST-1D network's own weights on the "
                             "standard split (20)")
    parser.add_argument("--mnist1d-run", type=Path, default=None,
                        help="use this finished run of mnist1d.toml instead of evolving")
    parser.add_argument("--digits-run", type=Path, default=None,
                        help="use this finished run of digits.toml instead of evolving")
    parser.add_argument("--lr-schedule", choices=("constant", "cosine"), default="cosine",
                        help="of the retrainings from scratch (the final selection's: cosine)")
    parser.add_argument("--sections", default="mnist1d,digits",
                        help="which to run, comma separated (mnist1d, digits)")
    parser.add_argument("--out", type=Path, default=None, help="the JSON report's path")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    args.sections = [s.strip() for s in args.sections.split(",") if s.strip()]
    unknown = sorted(set(args.sections) - {"mnist1d", "digits"})
    if unknown or not args.sections:
        parser.error(f"--sections: unknown {', '.join(unknown) or 'none given'} "
                     "(known: mnist1d, digits)")
    quick = {"minutes": 1.0, "digits_minutes": 1.0, "retrain_epochs": 20.0,
             "finetune_epochs": 5.0, "executor": "serial"}
    full = {"minutes": 30.0, "digits_minutes": 5.0, "retrain_epochs": 60.0,
            "finetune_epochs": 20.0, "executor": "local"}
    for name, value in (quick if args.quick else full).items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    args.cnn_steps = 1500 if args.quick else 6000
    args.out = args.out or RESULTS / ("published-quick.json" if args.quick else "published.json")
    return args


# -- data ---------------------------------------------------------------------------------------
def mnist1d_standard() -> Dataset:
    """The standard MNIST-1D split (the library's default arguments, seed 42): 4000 train,
    1000 test, standardised with training statistics. The test set doubles as the
    validation split (nothing is selected on it). The generator reseeds the global RNGs:
    they are saved and restored around it."""
    from mnist1d.data import get_dataset_args, make_dataset
    py_state, np_state = random.getstate(), np.random.get_state()
    try:
        data = make_dataset(get_dataset_args())
    finally:
        random.setstate(py_state)
        np.random.set_state(np_state)
    x, xt = (torch.tensor(a, dtype=torch.float32)[:, None] for a in (data["x"], data["x_test"]))
    mean, std = x.mean(), x.std()
    x, xt = (x - mean) / std, (xt - mean) / std
    y, yt = (torch.tensor(a, dtype=torch.int64) for a in (data["y"], data["y_test"]))
    return Dataset("mnist1d-standard", x, y, xt, yt, xt, yt, (1, 40), 10)


def flat(x: torch.Tensor) -> np.ndarray:
    return x.reshape(len(x), -1).numpy()


# -- baselines ----------------------------------------------------------------------------------
def sklearn_baselines(data: Dataset, svm: bool = True) -> dict[str, float]:
    """Logistic regression (and an RBF SVM) on flattened inputs: test accuracy."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.svm import SVC
    models = {"logistic regression": LogisticRegression(max_iter=5000)}
    if svm:
        models["SVM (RBF, C=10)"] = SVC(C=10.0, gamma="scale")
    out = {}
    for name, model in models.items():
        model.fit(flat(data.x_train), data.y_train.numpy())
        out[name] = float(model.score(flat(data.x_test), data.y_test.numpy()))
    return out


def paper_cnn() -> nn.Module:
    """MNIST-1D's ConvBase: 3 convolutions (25 channels, kernel 5/3/3, stride 2, ReLU), linear."""
    return nn.Sequential(nn.Conv1d(1, 25, 5, 2, 1), nn.ReLU(), nn.Conv1d(25, 25, 3, 2, 1),
                         nn.ReLU(), nn.Conv1d(25, 25, 3, 2, 1), nn.ReLU(), nn.Flatten(),
                         nn.Linear(25 * 5, 10))


def digits_cnn() -> nn.Module:
    """A small hand-built CNN for 8x8 digits: two 3x3 conv blocks with BN, pooling, linear."""
    return nn.Sequential(nn.Conv2d(1, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(),
                         nn.Conv2d(32, 64, 3, stride=2, padding=1), nn.BatchNorm2d(64), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, 10))


def train_torch(make, data: Dataset, steps: int, batch: int, lr: float, seed: int) -> float:
    """Adam for ``steps`` minibatch steps from ``seed`` (private generators); test accuracy."""
    with seeded_cpu_rng(seed):
        model = make()
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    for _ in range(steps):
        idx = torch.randint(0, len(data.x_train), (batch,), generator=gen)
        loss = F.cross_entropy(model(data.x_train[idx]), data.y_train[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        return float((model(data.x_test).argmax(1) == data.y_test).float().mean())


def over_seeds(fn, seeds: int) -> dict:
    values = [fn(s) for s in range(seeds)]
    return {"mean": float(np.mean(values)), "std": float(np.std(values)), "values": values}


# -- evolution ------------------------------------------------------------------------------------
def evolve(config: str, args: argparse.Namespace, minutes: float, tmp: Path,
           existing: Path | None = None) -> dict:
    """A real run of ``config`` for ``minutes`` (or the finished run ``existing``): its best
    individual (genome and trained weights) and a few run figures."""
    start, reason, run_dir = time.perf_counter(), "existing run", existing
    if existing is None:
        cfg = load_config(ROOT / "runs" / "configs" / config,
                          [f"budget.minutes={minutes}", "budget.evaluations=100000",
                           f"executor.name={args.executor}", f"executor.workers={args.workers}"])
        outcome = run(create_run(cfg, tmp / config.split(".")[0]), live=False)
        run_dir, reason = outcome.run_dir, outcome.reason
    with RunStore.open(run_dir, readonly=True) as store:
        best = store.best(1)[0]
        genome = from_dict(store.individual(best.id).genome)
        weights = load_file(store.weights_file(best.id))
        counts = store.counts_by_status()
        spent = sum(e.wall_time or 0.0 for e in store.evaluations())
        final = final_of(store, run_dir)
    return {"genome": genome, "weights": weights, "id": best.id, "final": final,
            "val_accuracy": best.metrics.get("val_accuracy"),
            "test_accuracy": best.metrics.get("test_accuracy"),
            "params": best.metrics.get("params"), "evaluations": counts,
            "minutes": (time.perf_counter() - start) / 60 if existing is None else None,
            "evaluation_minutes": spent / 60, "reason": reason}


def final_of(store: RunStore, run_dir: Path) -> dict | None:
    """The run's final pick: its genome, the weights of each retraining seed, and the
    candidates' scores on the run's own splits (None when the run made no final selection)."""
    from evograph.runs.final_pick import final_pick
    pick = final_pick(store)
    if pick is None:
        return None
    return {"id": pick.id, "genome": from_dict(store.individual(pick.id).genome),
            "weights": [load_file(run_dir / w) for w in pick.weights],
            "candidates": pick.candidates, "seeds": pick.seeds,
            "val_mean": pick.mean, "run_test_mean": pick.score.test_mean,
            "fitness": dict(store.config.get("final", {}).get("fitness", {}))}


def with_weights(genome, weights: dict, seed: int) -> nn.Module:
    """The evolved network with the weights evolution trained (a fresh build, then loaded)."""
    module = build(genome, seed=seed, device=torch.device("cpu"))
    module.load_state_dict(weights)
    return module


def as_is(genome, weights: dict, data: Dataset) -> float:
    """Test accuracy of the evolved network exactly as the run trained it."""
    module = with_weights(genome, weights, 0)
    return evaluate(module, data.x_test, data.y_test, torch.device("cpu"))[0]


def finetune(genome, weights: dict, data: Dataset, epochs: float, seed: int) -> float:
    """Continue training the evolved weights on ``data`` (as a child would), test accuracy."""
    device = torch.device("cpu")
    score = SGDTraining(epochs=epochs).score(with_weights(genome, weights, seed), genome, data,
                                             seed=seed, device=device)
    return float(score.metrics.get("test_accuracy", float("nan")))


def retrain(genome, data: Dataset, epochs: float, seed: int,
            lr_schedule: str = "constant", recipe: dict | None = None) -> float:
    """Train a genome from scratch (the ``sgd`` fitness) with its own genes, or with the
    ``learning_rate`` and ``optimizer`` of ``recipe`` (the config's ``[final] fitness``) in
    their place; test accuracy."""
    device = torch.device("cpu")
    score = SGDTraining(epochs=epochs, lr_schedule=lr_schedule, **(recipe or {})).score(
        build(genome, seed=seed, device=device), genome, data, seed=seed, device=device)
    return float(score.metrics.get("test_accuracy", float("nan")))


def mnist1d_section(args: argparse.Namespace, tmp: Path) -> dict:
    """Baselines and the evolved network on the standard MNIST-1D split."""
    data = mnist1d_standard()
    out = {"split": {"train": len(data.y_train), "test": len(data.y_test)},
           "published": PUBLISHED_MNIST1D,
           "ours": {"logistic regression": sklearn_baselines(data, svm=False)[
               "logistic regression"]}}
    out["ours"]["paper CNN"] = over_seeds(lambda s: train_torch(
        paper_cnn, data, args.cnn_steps, 100, 1e-2, s), args.seeds)
    evolved = evolve("mnist1d.toml", args, args.minutes, tmp, args.mnist1d_run)
    genome, weights = evolved["genome"], evolved["weights"]
    out["evolved"] = {k: v for k, v in evolved.items() if k not in ("genome", "weights")}
    out["evolved"]["genome"] = genome.canonical_dict()
    out["evolved"]["summary"] = _describe(genome)
    ours = out["ours"]
    ours["evolved, as evolved"] = as_is(genome, weights, data)
    ours["evolved, fine-tuned"] = over_seeds(
        lambda s: finetune(genome, weights, data, args.finetune_epochs, s), args.seeds)
    schedule, recipe = args.lr_schedule, retraining_recipe("mnist1d.toml")
    out["retraining recipe"] = {"epochs": args.retrain_epochs, "lr_schedule": schedule,
                                **(recipe or {"genes": "the genome's own"})}
    ours["evolved, retrained from scratch"] = over_seeds(
        lambda s: retrain(genome, data, args.retrain_epochs, s, schedule, recipe), args.seeds)
    final = evolved.get("final")
    out["evolved"]["final"] = None if final is None else {
        k: (v.canonical_dict() if k == "genome" else v) for k, v in final.items()
        if k != "weights"}
    if final is not None:  # the final selection's effect: its pick beside the search's best
        ours["final pick, as the run retrained it"] = over_weights(final, data)
        ours["final pick, retrained from scratch"] = over_seeds(
            lambda s: retrain(final["genome"], data, args.retrain_epochs, s, schedule,
                              recipe), args.seeds)
    return out


def retraining_recipe(config: str) -> dict:
    """The set ``learning_rate`` and ``optimizer`` of ``config``'s ``[final] fitness`` (the
    run's own retraining recipe), so a from-scratch retraining here trains as the run's final
    selection did; empty when the config leaves them to the genome."""
    fitness = load_config(ROOT / "runs" / "configs" / config).final.fitness
    return {k: fitness[k] for k in ("learning_rate", "optimizer") if k in fitness}


def over_weights(final: dict, data: Dataset) -> dict:
    """The pick's test accuracy with each of the run's retrained weights (one per seed)."""
    values = [as_is(final["genome"], w, data) for w in final["weights"]]
    return {"mean": float(np.mean(values)), "std": float(np.std(values)), "values": values}


def digits_section(args: argparse.Namespace, tmp: Path) -> dict:
    """Baselines and evograph's networks on digits (the splits of run seed 0)."""
    data = load_dataset("digits", seed=0)
    ours = sklearn_baselines(data)
    ours["hand-built CNN"] = over_seeds(lambda s: train_torch(
        digits_cnn, data, 600 if args.quick else 2000, 64, 3e-3, s), args.seeds)
    table = load_table("")
    means = {k: (np.mean([r["val_accuracy"] for r in rows]),
                 np.mean([r["test_accuracy"] for r in rows])) for k, rows in table.rows.items()}
    best_key = max(means, key=lambda k: (means[k][0], k))
    ours["best MLP of the table (by val)"] = float(means[best_key][1])
    evolved = evolve("digits.toml", args, args.digits_minutes, tmp, args.digits_run)
    ours["evolved CNN (digits.toml)"] = evolved["test_accuracy"]
    return {"split": {"train": len(data.y_train), "val": len(data.y_val),
                      "test": len(data.y_test)}, "ours": ours, "table_best_key": best_key,
            "evolved": {**{k: v for k, v in evolved.items() if k not in ("genome", "weights")},
                        "summary": _describe(evolved["genome"])}}


def _describe(genome) -> str:
    layers = [n for n in genome.nodes if n.op not in ("input", "output")]
    genes = genome.gene
    return (f"{len(layers)} hidden nodes ({', '.join(sorted({n.op for n in layers})) or '-'}), "
            f"{len(genome.edges)} edges, {genes['optimizer']} lr {genes['learning_rate']:.3g}")


def _acc(value) -> str:
    if isinstance(value, dict):
        return f"{value['mean']:.1%} ± {value['std']:.1%}"
    return "-" if value is None else f"{value:.1%}"


def print_tables(result: dict) -> None:
    from rich.console import Console
    from rich.table import Table
    m = result["mnist1d"]
    t = Table(title="MNIST-1D, standard 4000/1000 split: test accuracy")
    for col in ("model", "published", "this run"):
        t.add_column(col)
    for name, value in m["published"].items():
        ours = m["ours"].get(name if name != "CNN" else "paper CNN")
        t.add_row(name, f"{value:.0%}", _acc(ours))
    for name in ("evolved, as evolved", "evolved, fine-tuned", "evolved, retrained from scratch",
                 "final pick, as the run retrained it", "final pick, retrained from scratch"):
        if name in m["ours"]:
            t.add_row(f"evograph {name}", "-", _acc(m["ours"][name]))
    console = Console(width=140)
    console.print(t)
    console.print(f"  evolved: {m['evolved']['summary']}; run val "
                  f"{_acc(m['evolved']['val_accuracy'])}, {m['evolved']['evaluations']}")
    if "digits" not in result:
        return
    d = Table(title="digits (8x8, 359 test images): test accuracy")
    d.add_column("model")
    d.add_column("this run")
    for name, value in result["digits"]["ours"].items():
        d.add_row(name, _acc(value))
    console.print(d)
    console.print(f"  evolved CNN: {result['digits']['evolved']['summary']}")


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    torch.set_num_threads(1)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        result = {}
        if "mnist1d" in args.sections:
            result["mnist1d"] = mnist1d_section(args, Path(tmp))
        if "digits" in args.sections:
            result["digits"] = digits_section(args, Path(tmp))
    wall = time.perf_counter() - start
    print_tables(result)
    report = {"benchmark": "published", "quick": args.quick,
              "config": {k: v for k, v in vars(args).items() if k != "out"},
              "machine": {"platform": platform.platform(), "cpu_count": os.cpu_count()},
              "versions": {"python": sys.version.split()[0], "torch": torch.__version__,
                           "numpy": np.__version__},
              "seeds": list(range(args.seeds)), "wall_seconds": wall, **result}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp_out = args.out.with_name(args.out.name + ".tmp")
    tmp_out.write_text(json.dumps(report, indent=1, default=str) + "\n")
    os.replace(tmp_out, args.out)
    print(f"wrote {args.out} in {wall / 60:.1f} min")
    return report


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    main()
