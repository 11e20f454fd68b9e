"""Terminal views of a run (``status``, ``best``, ``show``) and the same facts as JSON-ready
dicts. ``status`` leads with the run's state (:mod:`evograph.runs.state`): running, finished by
which budget, interrupted, aborted and why; ``elapsed_s`` is the wall clock across driver
sessions, ``compute_s`` the evaluations' summed time (with several workers, more than elapsed)."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

from ...errors import EvographError
from ...genome.cells.nb201 import arch_string
from ...genome.cells.skeleton import skeleton_node
from ...genome.io import from_dict
from ...genome.validate import analyze
from ..final_pick import final_line, final_summary
from ..progress import clock
from ..state import run_state
from ..store import RunStore


def status_payload(store: RunStore) -> dict[str, Any]:
    summary = store.summary()
    counts = store.counts_by_status()
    state = run_state(store)
    budget = store.config["budget"]
    return {"run_dir": str(store.run_dir), "run_id": store.run_id,
            "state": state.state, "stopped_by": state.by, "reason": state.reason,
            "strategy": store.config["strategy"]["name"],
            "budget": budget["evaluations"], "budget_minutes": budget.get("minutes") or None,
            "evaluations": store.count_individuals(), "counts": counts,
            "batch": store.last_batch(),
            "best": best_payload(store, 1)[0] if store.best(1) else None,
            "elapsed_s": state.elapsed_s, "sessions": state.sessions,
            "compute_s": summary.get("total_wall_time"), "final": final_summary(store)}


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


def best_line(best: dict) -> str:
    """``#id: val v, test t, n params``, with only the figures the fitness recorded (a table
    of a user's own may hold no test accuracy or parameter count)."""
    figures = [f"{name} {best[key]:.4f}" for name, key in (("val", "val_accuracy"),
                                                           ("test", "test_accuracy"))
               if best.get(key) is not None]
    if best.get("params") is not None:
        figures.append(f"{best['params']:,} params")
    return f"#{best['id']}: " + (", ".join(figures) or f"fitness {best['fitness']:.4f}")


def print_status(store: RunStore) -> None:
    p = status_payload(store)
    table = Table(title=f"run {p['run_id']} ({p['strategy']})", show_header=False)
    table.add_row("state", f"{p['state']}: {p['reason']}")
    table.add_row("directory", p["run_dir"])
    table.add_row("evaluations", f"{p['evaluations']} proposed of {p['budget']}, "
                  f"batch {p['batch']}")
    for status, count in p["counts"].items():
        table.add_row(f"  {status}", str(count))
    best = p["best"]
    if best:
        table.add_row("best", best_line(best))
    if p["final"]:
        table.add_row("final selection", final_line(p["final"]))
    minutes = p["budget_minutes"]
    table.add_row("elapsed (wall clock)", f"{clock(p['elapsed_s'])} in {p['sessions']} driver "
                  f"session(s)" + (f", of a {minutes:g} min time budget" if minutes else ""))
    table.add_row("time in evaluations", clock(p["compute_s"] or 0.0))
    if p["counts"]["failed"] or p["counts"]["infeasible"]:
        table.add_row("why they failed", f"evograph status {p['run_dir']} --failed")
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
    final = final_summary(store)  # the luckiest validation score above; the pick here
    if final:
        Console().print(f"final selection: {final_line(final)}", markup=False, highlight=False)


def _fmt(value: float | None) -> str:
    return f"{value:.4f}" if value is not None else "—"


# -- one individual (``evograph show``) and the failures (``status --failed``) -------------------
def individual_payload(store: RunStore, id: int) -> dict[str, Any]:
    """Everything the store knows about individual ``id``: its genome in short, its birth,
    its evaluation (every metric, the error in full) and where its weights are."""
    ind, ev = store.individual(id), store.evaluation(id)
    return {"id": id, "status": ev.status, "attempts": ev.attempt, "fitness": ev.fitness,
            "genome": genome_summary(ind.genome), "genome_hash": ind.genome_hash,
            "arch_hash": ind.arch_hash, "batch": ind.batch, "seed": ind.seed,
            "parents": list(ind.parents), "mutation": ind.mutation, "args": ind.args,
            "inherit": ind.inherit, "changed": list(ind.changed), "inherited": ind.inherited,
            "seeded_from": _seed_source(store, ind.mutation, ind.args),
            "metrics": ev.metrics, "error": ev.error, "weights": weights_text(store, ev),
            "wall_time_s": ev.wall_time, "started_at": ev.started_at,
            "finished_at": ev.finished_at, "worker": ev.worker}


def genome_summary(genome: dict) -> dict[str, Any]:
    """Nodes by op, parameters, FLOPs and the genes of a stored genome."""
    try:
        g = from_dict(genome)
        info = analyze(g)
    except EvographError as exc:
        return {"error": str(exc)}
    ops: dict[str, int] = {}
    for node in g.nodes:
        ops[node.op] = ops.get(node.op, 0) + 1
    out = {"nodes": len(g.nodes), "ops": ops, "params": info.params, "flops": info.flops,
           "genes": dict(genome.get("genes", {}))}
    skeleton = skeleton_node(g)
    if skeleton is not None and skeleton.get("name") == "nb201":
        out["arch"] = arch_string(g)      # the NAS-Bench-201 string, as tables key it
    return out


def weights_text(store: RunStore, ev: Any) -> str:
    """The weights file, or why there is none: ``pruned`` (deleted by the retention policy),
    ``none`` (never written: failed, or a fitness that trains nothing), ``missing``."""
    if ev.weights:
        path = store.run_dir / ev.weights
        return str(path) if path.exists() else f"missing ({path})"
    return "pruned" if getattr(ev, "pruned", False) else "none"


def _seed_source(store: RunStore, mutation: str | None, args: dict) -> str | None:
    if mutation != "seeded":
        return None
    events = store.events("seeded")
    sources = events[-1]["data"].get("sources", []) if events else []
    k = args.get("index")
    return sources[k] if isinstance(k, int) and k < len(sources) else "a given genome"


def print_individual(store: RunStore, id: int) -> None:
    p = individual_payload(store, id)
    table = Table(title=f"individual {id} of run {store.run_id}", show_header=False)
    table.add_row("status", f"{p['status']} after {p['attempts']} attempt(s)")
    table.add_row("fitness", _fmt(p["fitness"]))
    g = p["genome"]
    table.add_row("genome", g["error"] if "error" in g else (
        f"{g['nodes']} nodes ({', '.join(f'{op} ×{n}' for op, n in g['ops'].items())}), "
        f"{g['params']:,} params, {g['flops']:,} FLOPs; hash {p['genome_hash']}"))
    if "arch" in g:
        table.add_row("nb201 cell", g["arch"])
    if "genes" in g:
        table.add_row("genes", ", ".join(f"{k}={v}" for k, v in sorted(g["genes"].items())))
    table.add_row("born", _birth(p))
    table.add_row("seed", f"{p['seed']} (batch {p['batch']})")
    for key, value in sorted(p["metrics"].items()):
        table.add_row(f"  {key}", _fmt(value) if isinstance(value, float) else str(value))
    table.add_row("weights", p["weights"])
    table.add_row("wall time", clock(p["wall_time_s"]) if p["wall_time_s"] is not None else "—")
    table.add_row("worker", p["worker"] or "—")
    Console().print(table)
    if p["error"]:
        print(f"error (in full):\n{p['error']}")


def _birth(p: dict[str, Any]) -> str:
    if p["seeded_from"]:
        return f"seeded: given genome {p['seeded_from']}"
    if not p["parents"]:
        return "initial (no parent)"
    args = p["args"]
    if isinstance(args.get("mutation"), dict):  # crossover then mutation: the mutation's
        args = args["mutation"].get("args", {})
    text = ", ".join(f"{k}={v}" for k, v in sorted(args.items()))
    weights = "inherits weights" if p["inherit"] else "fresh weights"
    return (f"{p['mutation']}({text}) of #{', #'.join(map(str, p['parents']))}; {weights}"
            + (f", changed nodes {p['changed']}" if p["changed"] else ""))


def failed_payload(store: RunStore) -> list[dict[str, Any]]:
    """Failed and infeasible evaluations, each with the first line of its reason."""
    out = []
    for ev in store.evaluations():
        if ev.status in ("failed", "infeasible"):
            reason = ev.error or str(ev.metrics.get("reason") or "no reason recorded")
            out.append({"id": ev.id, "status": ev.status, "attempts": ev.attempt,
                        "reason": (reason.strip().splitlines() or [""])[0]})
    return out


def print_failed(store: RunStore) -> None:
    rows = failed_payload(store)
    if not rows:
        print(f"no failed or infeasible evaluations in {store.run_dir}")
        return
    table = Table(title=f"failed and infeasible evaluations ({len(rows)})")
    for column in ("id", "status", "attempts", "reason (first line; evograph show RUN ID)"):
        table.add_column(column)
    for r in rows:
        table.add_row(str(r["id"]), r["status"], str(r["attempts"]), r["reason"])
    Console().print(table)
