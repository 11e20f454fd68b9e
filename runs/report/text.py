"""Terminal views of a run (``status``, ``best``) and the same facts as JSON-ready dicts."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

from ..store import RunStore


def status_payload(store: RunStore) -> dict[str, Any]:
    summary = store.summary()
    counts = store.counts_by_status()
    return {"run_dir": str(store.run_dir), "run_id": store.run_id,
            "strategy": store.config["strategy"]["name"],
            "budget": store.config["budget"]["evaluations"],
            "evaluations": store.count_individuals(), "counts": counts,
            "batch": store.last_batch(),
            "best": best_payload(store, 1)[0] if store.best(1) else None,
            "wall_time_s": summary.get("total_wall_time"),
            "elapsed_s": summary.get("elapsed")}


def best_payload(store: RunStore, n: int = 1) -> list[dict[str, Any]]:
    out = []
    for row in store.best(n):
        ind = store.individual(row.id)
        out.append({"id": row.id, "fitness": row.fitness, "genome_hash": ind.genome_hash,
                    "val_accuracy": row.metrics.get("val_accuracy"),
                    "test_accuracy": row.metrics.get("test_accuracy"),
                    "params": row.metrics.get("params"), "flops": row.metrics.get("flops"),
                    "parents": list(ind.parents), "mutation": ind.mutation,
                    "weights": row.weights})
    return out


def print_status(store: RunStore) -> None:
    p = status_payload(store)
    table = Table(title=f"run {p['run_id']} ({p['strategy']})", show_header=False)
    table.add_row("directory", p["run_dir"])
    table.add_row("evaluations", f"{p['evaluations']} proposed of {p['budget']}, "
                  f"batch {p['batch']}")
    for status, count in p["counts"].items():
        table.add_row(f"  {status}", str(count))
    best = p["best"]
    if best:
        test = best["test_accuracy"]
        table.add_row("best", f"#{best['id']}: val {best['val_accuracy']:.4f}, test "
                      f"{test:.4f}, {best['params']:,} params" if test is not None
                      else f"#{best['id']}: fitness {best['fitness']:.4f}")
    if p["wall_time_s"] is not None:
        table.add_row("time in evaluations", f"{p['wall_time_s']:.0f} s")
    if p["elapsed_s"] is not None:
        table.add_row("elapsed (first to last)", f"{p['elapsed_s']:.0f} s")
    Console().print(table)


def print_best(store: RunStore, n: int) -> None:
    table = Table(title="best individuals")
    for column in ("id", "val acc", "test acc", "params", "FLOPs", "mutation", "parents"):
        table.add_column(column)
    for b in best_payload(store, n):
        table.add_row(str(b["id"]), _fmt(b["val_accuracy"]), _fmt(b["test_accuracy"]),
                      f"{b['params']:,}" if b["params"] is not None else "—",
                      f"{b['flops']:,}" if b["flops"] is not None else "—",
                      b["mutation"] or "(initial)", ",".join(map(str, b["parents"])))
    Console().print(table)


def _fmt(value: float | None) -> str:
    return f"{value:.4f}" if value is not None else "—"
