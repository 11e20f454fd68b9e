"""Build evograph's tabular benchmark: every architecture of the ``mlp-table`` space, trained
on scikit-learn's digits with several seeds (after Ying et al. 2019, NAS-Bench-101).

Each (architecture, seed) is trained exactly as a run with ``[fitness] name = "sgd"`` trains it
(``evograph.compile.build`` + ``SGDTraining``, ``--epochs`` passes, batch 64, the optimizer's fixed
learning rate) on the digits splits of run seed 0 (train 1168 / val 270 / test 359), and one row
is recorded: validation and test accuracy and loss, training time, parameters and FLOPs.

The build runs over ``--processes`` worker processes (one torch thread each) and is resumable:
every finished row is appended to ``<out>.partial.csv`` at once, and a restarted build skips the
rows already there. When all rows are in, the table is written (sorted, gzipped, reproducible
bytes) to ``--out`` with its space definition beside it (``<out stem>.json``), and a summary to
``benchmarks/results/tabular.json``. ``--estimate N`` trains N random rows and extrapolates the
build time instead. Usage::

    python benchmarks/tabular.py                 # the shipped table (1,008 archs x 3 seeds)
    python benchmarks/tabular.py --quick         # 8 archs x 3 seeds, to benchmarks/results/
    python benchmarks/tabular.py --estimate 60   # how long would the full build take here?
"""

from __future__ import annotations

import argparse
import csv
import gzip
import io
import json
import os
import platform
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from functools import lru_cache
from pathlib import Path

import evograph
import numpy as np
from evograph.compile.training.table import mlp_chain_key
from evograph.genome.io import from_dict, to_dict
from evograph.genome.space import get_space
from evograph.genome.spaces_tabular import MLP_TABLE_LEARNING_RATES, enumerate_mlp_table, space_size

HERE = Path(__file__).resolve().parent
TABLE = HERE / "data" / "digits-mlp.csv.gz"
QUICK_TABLE = HERE / "results" / "tabular-quick.csv.gz"
SUMMARY = HERE / "results" / "tabular.json"
QUICK_SPACE = {"max_layers": 1, "unit_choices": (16, 64), "activations": ("relu", "tanh"),
               "optimizers": ("adam", "sgd")}
COLUMNS = ("key", "seed", "depth", "widths", "activation", "optimizer", "learning_rate",
           "val_accuracy", "val_loss", "test_accuracy", "test_loss", "train_time", "params",
           "flops")
DATASET = {"name": "digits", "seed": 0, "val_fraction": 0.15, "test_fraction": 0.2}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3, help="training seeds 0..seeds-1")
    parser.add_argument("--epochs", type=float, default=10.0)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--out", type=Path, default=None, help=f"table file (default {TABLE})")
    parser.add_argument("--quick", action="store_true", help="a tiny space, in seconds")
    parser.add_argument("--estimate", type=int, default=0, metavar="N",
                        help="train N random rows and extrapolate the full build time")
    args = parser.parse_args(argv)
    if args.seeds < 1 or args.epochs <= 0 or args.processes < 1 or args.estimate < 0:
        parser.error("--seeds, --epochs and --processes must be positive")
    args.out = args.out or (QUICK_TABLE if args.quick else TABLE)
    return args


def table_space(quick: bool):
    return get_space("mlp-table", **(QUICK_SPACE if quick else {}))


# -- workers ---------------------------------------------------------------------------------------
def _init_worker() -> None:
    import torch
    torch.set_num_threads(1)


@lru_cache(maxsize=2)
def splits(name: str, seed: int, val_fraction: float, test_fraction: float):
    """A dataset's splits, loaded once per process (each worker trains many rows on them)."""
    from evograph.data.datasets import load_dataset
    return load_dataset(name, seed=seed, val_fraction=val_fraction, test_fraction=test_fraction)


def _dataset():
    return splits(**DATASET)


def train_row(genome_dict: dict, seed: int, epochs: float) -> dict:
    """Train one architecture with one seed, as the ``sgd`` fitness generator does; one row."""
    import torch
    from evograph.compile.builder import build
    from evograph.compile.training.sgd import SGDTraining
    genome = from_dict(genome_dict)
    device = torch.device("cpu")
    score = SGDTraining(epochs=epochs).score(build(genome, seed=seed, device=device), genome,
                                             _dataset(), seed=seed, device=device)
    m, hidden = score.metrics, [n for n in genome.nodes if n.op == "dense"]
    nan = float("nan")
    return {"key": mlp_chain_key(genome), "seed": seed, "depth": len(hidden),
            "widths": "-".join(str(n.get("units")) for n in hidden),
            "activation": hidden[0].get("activation"), "optimizer": genome.gene["optimizer"],
            "learning_rate": genome.gene["learning_rate"],
            "val_accuracy": round(m.get("val_accuracy", nan), 6),
            "val_loss": round(m.get("val_loss", nan), 5),
            "test_accuracy": round(m.get("test_accuracy", nan), 6),
            "test_loss": round(m.get("test_loss", nan), 5),
            "train_time": round(m["train_time"], 4), "params": m["params"], "flops": m["flops"]}


def _train_many(jobs: list[tuple[dict, int]], epochs: float) -> list[dict]:
    return [train_row(g, s, epochs) for g, s in jobs]


# -- the build ------------------------------------------------------------------------------------
def partial_path(out: Path) -> Path:
    return out.with_name(out.name.split(".")[0] + ".partial.csv")


def read_partial(path: Path, columns: tuple[str, ...] = COLUMNS) -> list[dict]:
    """Complete rows of an interrupted build: a last line without its newline was torn by
    the interruption and is dropped (its row is trained again)."""
    if not path.exists():
        return []
    text = path.read_text()
    if not text.endswith("\n"):
        text = text[:text.rfind("\n") + 1]
    rows = list(csv.DictReader(io.StringIO(text)))
    return [r for r in rows if None not in r.values() and len(r) == len(columns)]


def all_jobs(space, seeds: int) -> list[tuple[dict, int]]:
    return [(to_dict(g), s) for g in enumerate_mlp_table(space, (1, 8, 8), 10)
            for s in range(seeds)]


def run_jobs(jobs: list[tuple], args: argparse.Namespace, sink, train_many=None) -> int:
    """Train ``jobs`` on the pool in chunks with ``train_many(chunk, epochs)`` (default: this
    table's rows); ``sink(rows)`` receives each finished chunk."""
    chunks = [jobs[i:i + 12] for i in range(0, len(jobs), 12)]
    done, start = 0, time.perf_counter()
    with ProcessPoolExecutor(args.processes, initializer=_init_worker) as pool:
        futures = [pool.submit(train_many or _train_many, chunk, args.epochs)
                   for chunk in chunks]
        for future in as_completed(futures):
            rows = future.result()
            sink(rows)
            done += len(rows)
            if done % 240 < len(rows) or done == len(jobs):
                rate = done / (time.perf_counter() - start)
                print(f"  {done}/{len(jobs)} rows, {rate:.1f} rows/s, "
                      f"~{(len(jobs) - done) / rate / 60:.1f} min left", flush=True)
    return done


def build_table(args: argparse.Namespace) -> tuple[list[dict], float]:
    """Train every missing row (resuming from the partial file); return all rows, wall time."""
    space = table_space(args.quick)
    partial = partial_path(args.out)
    have = read_partial(partial)
    done = {(r["key"], int(r["seed"])) for r in have}
    jobs = [(g, s) for g, s in all_jobs(space, args.seeds)
            if (mlp_chain_key(from_dict(g)), s) not in done]
    print(f"{space_size(space)} architectures x {args.seeds} seeds: {len(have)} rows done, "
          f"{len(jobs)} to train on {args.processes} processes")
    start = time.perf_counter()
    append_rows(partial, COLUMNS, bool(have), jobs, args)
    return read_partial(partial), time.perf_counter() - start


def append_rows(partial: Path, columns: tuple[str, ...], resumed: bool, jobs: list[tuple],
                args: argparse.Namespace, train_many=None) -> None:
    """Train ``jobs`` and append each finished chunk of rows to ``partial`` at once (flushed
    and fsynced: a killed build loses at most the chunks in flight); a fresh build starts
    the file with its header."""
    partial.parent.mkdir(parents=True, exist_ok=True)
    with open(partial, "a", newline="") as handle:
        writer = csv.DictWriter(handle, columns, lineterminator="\n")
        if not resumed:
            handle.truncate(0)
            writer.writeheader()

        def sink(rows: list[dict]) -> None:
            writer.writerows(rows)
            handle.flush()
            os.fsync(handle.fileno())
        if jobs:
            run_jobs(jobs, args, sink, train_many)


def write_table(rows: list[dict], out: Path, columns: tuple[str, ...] = COLUMNS) -> None:
    """Sorted rows as gzipped CSV with a zero mtime (same rows, same bytes); atomic."""
    rows = sorted(rows, key=lambda r: (r["key"], int(r["seed"])))
    text = io.StringIO()
    writer = csv.DictWriter(text, columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    data = gzip.compress(text.getvalue().encode(), compresslevel=9, mtime=0)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, out)


def _atomic_json(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=1) + "\n")
    os.replace(tmp, path)


# -- figures --------------------------------------------------------------------------------------
def per_architecture(rows: list[dict]) -> dict[str, dict]:
    """Mean (and seed spread) of the numeric columns per key."""
    groups: dict[str, list[dict]] = {}
    for r in rows:
        groups.setdefault(r["key"], []).append(r)
    out = {}
    for key, rs in groups.items():
        val = np.array([float(r["val_accuracy"]) for r in rs])
        out[key] = {"val": float(val.mean()), "val_std": float(val.std()),
                    "test": float(np.mean([float(r["test_accuracy"]) for r in rs])),
                    "train_time": float(np.mean([float(r["train_time"]) for r in rs])),
                    "params": int(rs[0]["params"]), "flops": int(rs[0]["flops"]),
                    "depth": int(rs[0]["depth"]), "activation": rs[0]["activation"],
                    "optimizer": rs[0]["optimizer"], "seeds": len(rs)}
    return out


def _quantiles(values) -> dict[str, float]:
    q = np.percentile(np.asarray(values, dtype=float), [0, 25, 50, 75, 100])
    return dict(zip(("min", "q1", "median", "q3", "max"), (float(x) for x in q)))


def summarise(rows: list[dict]) -> dict:
    """The figures of a table: spread, best architectures, seed noise, val/test agreement."""
    from scipy.stats import spearmanr
    arch = per_architecture(rows)
    keys = sorted(arch, key=lambda k: (-arch[k]["val"], k))
    best_val = arch[keys[0]]["val"]
    vals, tests = [arch[k]["val"] for k in keys], [arch[k]["test"] for k in keys]
    by = {}
    for field in ("depth", "activation", "optimizer"):
        by[field] = {str(v): _quantiles([a["val"] for a in arch.values() if a[field] == v])
                     for v in sorted({a[field] for a in arch.values()}, key=str)}
    return {"architectures": len(arch), "rows": len(rows),
            "mean_val_accuracy": _quantiles(vals), "mean_test_accuracy": _quantiles(tests),
            "best_val_key": keys[0], "best_val": best_val, "best_val_test": arch[keys[0]]["test"],
            "tied_at_best": sum(v == best_val for v in vals),
            "best_test_key": max(arch, key=lambda k: (arch[k]["test"], k)),
            "best_test": max(tests),
            "top10": [{"key": k, **{f: arch[k][f] for f in ("val", "val_std", "test", "params")}}
                      for k in keys[:10]],
            "seed_std_val_median": float(np.median([a["val_std"] for a in arch.values()])),
            "spearman_val_test": float(spearmanr(vals, tests).statistic),
            "train_time_s": _quantiles([float(r["train_time"]) for r in rows]),
            "cpu_seconds": float(sum(float(r["train_time"]) for r in rows)),
            "params": _quantiles([a["params"] for a in arch.values()]), "by": by}


def environment() -> dict:
    import torch
    return {"machine": {"platform": platform.platform(), "processor": platform.processor(),
                        "cpu_count": os.cpu_count()},
            "versions": {"python": sys.version.split()[0], "numpy": np.__version__,
                         "torch": torch.__version__, "evograph": evograph.__version__
                         if hasattr(evograph, "__version__") else "0.1.0"}}


def space_definition(args: argparse.Namespace, summary: dict, wall: float) -> dict:
    """What the table covers and how it was made (written beside the table)."""
    space = table_space(args.quick)
    data = _dataset()
    return {"table": args.out.name, "space_name": "mlp-table",
            "space_overrides": {k: list(v) if isinstance(v, tuple) else v
                                for k, v in (QUICK_SPACE if args.quick else {}).items()},
            "space": space.to_dict(), "key_function": "mlp-chain",
            "key_format": "<width1>-<width2>...|<activation>|<optimizer>",
            "learning_rates": {o: MLP_TABLE_LEARNING_RATES[o] for o in space.optimizers},
            "architectures": summary["architectures"], "rows": summary["rows"],
            "seeds": list(range(args.seeds)),
            "training": {"fitness": "sgd", "epochs": args.epochs, "batch_size": 64,
                         "weight_decay": 0.0, "init_and_shuffle_seed": "the row's seed"},
            "dataset": {**DATASET, "train": len(data.y_train), "val": len(data.y_val),
                        "test": len(data.y_test), "input_shape": list(data.input_shape)},
            "columns": list(COLUMNS), "build": {"processes": args.processes,
                                                "wall_seconds_last_session": wall,
                                                **environment()}}


def print_summary(s: dict) -> None:
    q = s["mean_val_accuracy"]
    print(f"{s['architectures']} architectures, {s['rows']} rows")
    print(f"mean val accuracy: min {q['min']:.4f}  q1 {q['q1']:.4f}  median {q['median']:.4f}  "
          f"q3 {q['q3']:.4f}  max {q['max']:.4f}  ({s['tied_at_best']} at the max)")
    print(f"best by val: {s['best_val_key']}  val {s['best_val']:.4f}  test "
          f"{s['best_val_test']:.4f};  best test anywhere {s['best_test']:.4f} "
          f"({s['best_test_key']})")
    print(f"seed noise (median std of val over seeds) {s['seed_std_val_median']:.4f};  "
          f"Spearman(val, test) {s['spearman_val_test']:.3f}")
    print(f"training time per row: median {s['train_time_s']['median']:.3f} s;  "
          f"{s['cpu_seconds'] / 60:.1f} CPU-minutes in all")
    for field, groups in s["by"].items():
        print(f"  by {field}: " + ",  ".join(f"{v} {g['median']:.3f}/{g['max']:.3f}"
                                             for v, g in groups.items()) + "  (median/max val)")


def estimate(args: argparse.Namespace) -> dict:
    """Train ``args.estimate`` random rows on the pool; extrapolate the full build's time."""
    space = table_space(args.quick)
    jobs = all_jobs(space, args.seeds)
    pick = np.random.default_rng(0).choice(len(jobs), size=min(args.estimate, len(jobs)),
                                           replace=False)
    sample = [jobs[int(i)] for i in pick]
    rows: list[dict] = []
    start = time.perf_counter()
    run_jobs(sample, args, rows.extend)
    wall = time.perf_counter() - start
    total = wall / len(sample) * len(jobs)
    out = {"sampled_rows": len(sample), "wall_seconds": wall, "rows": len(jobs),
           "estimated_minutes": total / 60, "median_train_time": float(np.median(
               [r["train_time"] for r in rows]))}
    print(f"{len(sample)} rows in {wall:.1f} s on {args.processes} processes: the full "
          f"{len(jobs)} rows would take ~{total / 60:.1f} min")
    return out


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    if args.estimate:
        return estimate(args)
    rows, wall = build_table(args)
    write_table(rows, args.out)
    summary = summarise(rows)
    definition = space_definition(args, summary, wall)
    _atomic_json(args.out.with_name(args.out.name.split(".")[0] + ".json"), definition)
    partial_path(args.out).unlink(missing_ok=True)
    print_summary(summary)
    print(f"wrote {args.out} ({args.out.stat().st_size / 1024:.0f} KiB) in {wall:.0f} s")
    report = {"benchmark": "tabular", "paper": "Ying et al. 2019 (NAS-Bench-101) protocol",
              "quick": args.quick, "table": str(args.out.relative_to(HERE.parent))
              if args.out.is_relative_to(HERE.parent) else str(args.out),
              "config": {"seeds": args.seeds, "epochs": args.epochs,
                         "processes": args.processes}, **environment(),
              "wall_seconds": wall, "summary": summary}
    _atomic_json(SUMMARY.with_name("tabular-quick.json") if args.quick else SUMMARY, report)
    return report


if __name__ == "__main__":
    main()
