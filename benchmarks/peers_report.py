"""Table, plot and JSON of ``benchmarks/peers.py`` (kept apart from the searches)."""

from __future__ import annotations

import json
import os
import platform
import sys
from pathlib import Path

import numpy as np

COLOURS = {"evograph": "tab:red", "optuna": "tab:blue", "deap": "tab:green"}


def describe(record: dict) -> str:
    """A one-line summary of a pick: convolutions, skips, optimizer and learning rate."""
    s = record["summary"]
    return f"{s['conv']} conv, {s['skip']} skip, {s['optimizer']} lr {s['learning_rate']:.3g}"


def _evaluations(counts: dict) -> str:
    """Completed evaluations, then any others by status: ``25 (+15 infeasible)``."""
    other = [f"+{v} {k}" for k, v in counts.items()
             if v and k not in ("completed", "generations", "pending", "running")]
    return f"{counts.get('completed', 0)}" + (f" ({', '.join(other)})" if other else "")


def print_table(records: list[dict], args) -> None:
    from rich.console import Console
    from rich.table import Table
    table = Table(title=f"digits, {args.minutes:g} min per search on {args.workers} processes: "
                        f"each pick retrained {args.seeds}x, test accuracy")
    for col in ("system", "evaluations", "search s", "pick", "params", "search val", "test"):
        table.add_column(col)
    for r in records:
        t = r["test"]
        table.add_row(r["system"], _evaluations(r["evaluations"]), f"{r['wall_seconds']:.0f}",
                      describe(r), f"{t['params']:,}", f"{r['pick_val_accuracy']:.4f}",
                      f"{t['mean']:.2%} ± {t['std']:.2%}")
    Console(width=150).print(table)


def plot(records: list[dict], path: Path) -> None:
    """Best validation accuracy so far against wall time; test accuracy of each pick."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 4.8))
    for r in records:
        trace = np.array(sorted(r["trace"]), dtype=float).reshape(-1, 2)
        if len(trace):
            left.step(trace[:, 0], np.maximum.accumulate(trace[:, 1]), where="post",
                      label=r["system"], color=COLOURS.get(r["system"]))
    left.set_xlim(0, max(r["budget_seconds"] for r in records) * 1.25)
    left.set_xlabel("wall time (s) since the search started")
    left.set_ylabel("best validation accuracy so far")
    left.set_title("search")
    left.grid(alpha=0.3)
    left.legend(loc="lower right")
    names = [r["system"] for r in records]
    means = [r["test"]["mean"] for r in records]
    right.bar(names, means, yerr=[r["test"]["std"] for r in records], capsize=6,
              color=[COLOURS.get(n, "gray") for n in names], alpha=0.6)
    for i, r in enumerate(records):
        right.scatter([i] * len(r["test"]["values"]), r["test"]["values"], color="k", s=12)
    low = min(min(r["test"]["values"]) for r in records)
    right.set_ylim(max(0.0, low - 0.03), 1.0)
    right.set_ylabel("test accuracy (retrained from scratch)")
    right.set_title("each system's pick, mean ± std over seeds")
    right.grid(alpha=0.3, axis="y")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def to_json(records: list[dict], args, wall: float) -> dict:
    import deap
    import optuna
    import torch
    config = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    return {"benchmark": "peers", "quick": args.quick, "config": config, "notes": args.notes,
            "machine": {"platform": platform.platform(), "cpu_count": os.cpu_count()},
            "versions": {"python": sys.version.split()[0], "torch": torch.__version__,
                         "optuna": optuna.__version__, "deap": deap.__version__,
                         "numpy": np.__version__},
            "retrain_seeds": list(range(args.seeds)), "wall_seconds": wall,
            "systems": records}


def write_json(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=1) + "\n")
    os.replace(tmp, path)
