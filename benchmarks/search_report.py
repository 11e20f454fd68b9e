"""Figures, table, plot and JSON of ``benchmarks/search.py`` (kept apart from the searches).

Conventions: the *true* value of an architecture is its mean validation accuracy over the
table's seeds; ``best_so_far[t]`` is the best true value among the first ``t`` evaluations;
an evaluation count that was never reached within a search's budget is censored (``inf``
internally, ``null`` in JSON) and quartiles of counts are order statistics (no interpolation),
so a median exists whenever more than half of the seeds got there.
"""

from __future__ import annotations

import json
import os
import platform
import sys
from pathlib import Path

import numpy as np

TOL = 1e-9
TARGET_NS = (10, 25, 50, 100, 200, 500, 1000)
AT = (10, 25, 50, 100, 200, 500, 1000)
COLOURS = {"aging": "tab:red", "tournament": "tab:orange", "topk": "tab:purple",
           "random": "tab:gray", "rl": "tab:green", "tpe": "tab:blue", "brute-force": "black"}


def _by_name(traces: list[tuple]) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for name, seed, trace, seconds in sorted(traces, key=lambda t: (t[0], t[1])):
        out.setdefault(name, []).append({**trace, "seed": seed, "seconds": seconds})
    return out


def best_so_far(trace: dict) -> np.ndarray:
    return np.maximum.accumulate(trace["true"])


def pick_test(trace: dict) -> np.ndarray:
    """Mean test accuracy of the architecture the search itself would return after each
    evaluation: the best *measured* so far (first on ties)."""
    out, best, current = np.empty(len(trace["measured"])), -np.inf, np.nan
    for t, (value, test) in enumerate(zip(trace["measured"], trace["test"])):
        if value > best:
            best, current = value, test
        out[t] = current
    return out


def first_reach(curve: np.ndarray, target: float) -> float:
    """Evaluations until ``curve`` reaches ``target`` (inf when it never does)."""
    hits = np.flatnonzero(curve >= target - TOL)
    return float(hits[0] + 1) if len(hits) else float("inf")


def count_stats(values: list[float]) -> dict:
    """Order-statistic quartiles of censored counts, the share reached, the mean of those."""
    v = np.sort(np.asarray(values, dtype=float))
    q = [float(np.quantile(v, x, method="inverted_cdf")) for x in (0.25, 0.5, 0.75)]
    reached = v[np.isfinite(v)]
    return {"q1": _finite(q[0]), "median": _finite(q[1]), "q3": _finite(q[2]),
            "reached": float(len(reached) / len(v)),
            "mean_of_reached": float(reached.mean()) if len(reached) else None}


def _finite(x: float) -> float | None:
    return x if np.isfinite(x) else None


def value_stats(values) -> dict:
    q1, med, q3 = np.percentile(np.asarray(values, dtype=float), [25, 50, 75])
    return {"q1": float(q1), "median": float(med), "q3": float(q3)}


def analyse(traces: list[tuple], p: dict, names: list[str], budgets: dict[str, int]) -> dict:
    """Every figure per search: reaching the space's best, reaching random search's median
    best-after-N, best-so-far and the pick's test accuracy at fixed evaluation counts."""
    runs = _by_name(traces)
    best, n_best = p["best"], int(np.sum(p["true"] >= p["best"] - TOL))
    random_curves = np.array([best_so_far(t) for t in runs["random"]])
    final = random_curves.shape[1]          # random search's median final, at its budget
    targets = {n: float(np.median(random_curves[:, n - 1]))
               for n in sorted({*TARGET_NS, final}) if n <= final}
    out = {"space": {"title": p["title"], "architectures": len(p["true"]), "best_val": best,
                     "tied_at_best": n_best,
                     "best_keys": [p["keys"][i] for i in np.flatnonzero(p["true"] >= best - TOL)],
                     "test_of_best": float(p["test"][np.argmax(p["true"])])},
           "random_targets": {str(n): v for n, v in targets.items()}, "searches": {}}
    for name in names:
        curves = [best_so_far(t) for t in runs[name]]
        picks = [pick_test(t) for t in runs[name]]
        budget = budgets[name]
        out["searches"][name] = {
            "budget": budget, "seconds_per_search": float(np.median([t["seconds"]
                                                                     for t in runs[name]])),
            "reach_best": count_stats([first_reach(c, best) for c in curves]),
            "reach_random_best_after": {str(n): count_stats([first_reach(c, v) for c in curves])
                                        for n, v in targets.items()},
            "best_val_at": {str(n): value_stats([c[n - 1] for c in curves])
                            for n in AT if n <= budget},
            "pick_test_at": {str(n): value_stats([c[n - 1] for c in picks])
                             for n in AT if n <= budget},
            "final_best_val": value_stats([c[-1] for c in curves]),
            "infeasible_share": float(np.mean([t["infeasible"] / len(t["true"])
                                               for t in runs[name]]))}
    out["expected"] = {"brute_force_reach_best": (len(p["true"]) + 1) / (n_best + 1),
                       "uniform_random_reach_best": len(p["true"]) / n_best}
    out["ratios"] = ratios(out, runs)
    return out


def ratios(out: dict, runs: dict) -> dict:
    """The issue's comparisons: brute force / search to reach the best (means), random /
    search to match random's best-after-N (medians), P(search beats TPE) at equal budgets."""
    s = out["searches"]
    brute = out["expected"]["brute_force_reach_best"]
    result = {}
    for name, fig in s.items():
        mean = fig["reach_best"]["mean_of_reached"]
        entry = {"brute_force_over_search_reach_best": brute / mean
                 if mean and fig["reach_best"]["reached"] == 1.0 else None}
        for n, stats in fig["reach_random_best_after"].items():
            base = s["random"]["reach_random_best_after"][n]["median"]
            entry[f"random_over_search_to_match_random_{n}"] = (
                base / stats["median"] if base and stats["median"] else None)
        result[name] = entry
    if "tpe" in runs:
        tpe = [best_so_far(t) for t in runs["tpe"]]
        for name in s:
            mine = [best_so_far(t) for t in runs[name]]
            result[name]["p_beats_tpe_at"] = {
                str(n): _a12([c[n - 1] for c in mine], [c[n - 1] for c in tpe])
                for n in AT if n <= min(len(tpe[0]), len(mine[0]))}
    return result


def _a12(a: list[float], b: list[float]) -> float:
    """Vargha-Delaney A: P(a > b) + P(a = b) / 2 over all pairs (0.5: no difference)."""
    x, y = np.asarray(a)[:, None], np.asarray(b)[None, :]
    return float(np.mean((x > y + TOL) + 0.5 * (np.abs(x - y) <= TOL)))


# -- output ---------------------------------------------------------------------------------------
def _cell(stats: dict, fmt: str = "{:.0f}") -> str:
    if stats["median"] is None:
        return f"> budget ({stats['reached']:.0%} reached)"
    q1 = fmt.format(stats["q1"])
    q3 = fmt.format(stats["q3"]) if stats["q3"] is not None else "-"
    text = f"{fmt.format(stats['median'])} [{q1}, {q3}]"
    return text + (f" ({stats['reached']:.0%})" if stats.get("reached", 1.0) < 1.0 else "")


def print_table(results: dict, args) -> None:
    """Per search: evaluations to the space's best and to random's best-after-500, best val
    and the pick's test accuracy at a common evaluation count (median [q1, q3])."""
    from rich.console import Console
    from rich.table import Table
    sp, searches = results["space"], results["searches"]
    n_match = "500" if "500" in results["random_targets"] else max(results["random_targets"],
                                                                     key=int)
    common = min(f["budget"] for f in searches.values())
    at = str(max([n for n in AT if n <= common], default=min(AT)))
    table = Table(title=f"Search on {sp['title']}: {sp['architectures']} architectures, best "
                        f"mean val {sp['best_val']:.4f}; {args.seeds} seeds, "
                        f"seed_policy={args.seed_policy}")
    for col in ("search", "budget", "evals to space's best", "mean of those reaching it",
                f"evals to random's best@{n_match}", f"best val @{at}", f"pick test @{at}"):
        table.add_column(col)
    for name, f in searches.items():
        mean = f["reach_best"]["mean_of_reached"]
        table.add_row(name, str(f["budget"]), _cell(f["reach_best"]),
                      f"{mean:.0f}" if mean else "-",
                      _cell(f["reach_random_best_after"][n_match]),
                      _cell(f["best_val_at"][at], "{:.4f}"), _cell(f["pick_test_at"][at], "{:.4f}"))
    console = Console(width=160)
    console.print(table)
    exp = results["expected"]
    console.print(f"expected evaluations to the best: brute force {exp['brute_force_reach_best']:.0f}"
                  f", uniform random search {exp['uniform_random_reach_best']:.0f}")
    n_key = "500" if "500" in results["random_targets"] else n_match
    for name, r in results["ratios"].items():
        bits = []
        if r["brute_force_over_search_reach_best"] and name != "brute-force":
            bits.append(f"brute force / {name} to the best {r['brute_force_over_search_reach_best']:.1f}x")
        ratio = r.get(f"random_over_search_to_match_random_{n_key}")
        if ratio:
            bits.append(f"random / {name} to match random@{n_key} {ratio:.1f}x")
        beats = r.get("p_beats_tpe_at", {})
        if beats and name != "tpe":
            bits.append("P(beats TPE) " + ", ".join(f"@{n} {v:.2f}" for n, v in beats.items()))
        if bits:
            console.print(f"  {name}: " + "; ".join(bits))


def plot(traces: list[tuple], p: dict, names: list[str], path: Path) -> None:
    """Best-so-far (true val), regret and the pick's test accuracy, median and quartile band."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    runs = _by_name(traces)
    fig, axes = plt.subplots(1, 3, figsize=(17, 5))
    panels = (("best-so-far mean val accuracy", best_so_far, False),
              ("regret (space's best - best so far)", lambda t: p["best"] - best_so_far(t), True),
              ("test accuracy of the search's pick", pick_test, False))
    for ax, (title, fn, log) in zip(axes, panels):
        for name in names:
            curves = np.array([fn(t) for t in runs[name]])
            x = np.arange(1, curves.shape[1] + 1)
            q1, med, q3 = np.nanpercentile(curves, [25, 50, 75], axis=0)
            ax.plot(x, med, label=name, color=COLOURS.get(name), lw=1.6)
            ax.fill_between(x, q1, q3, color=COLOURS.get(name), alpha=0.15, lw=0)
        ax.set_xscale("log")
        ax.set_xlabel("evaluations")
        ax.set_title(title)
        ax.grid(alpha=0.3)
        if log:
            ax.set_yscale("symlog", linthresh=1e-3)
            ax.set_ylim(0, None)
        else:
            ax.set_ylim(float(np.nanmedian(p["true"])), None)
    axes[0].axhline(p["best"], color="k", ls=":", lw=1)
    axes[0].legend(loc="lower right")
    fig.suptitle(f"evograph searches on {p['title']} ({len(p['true'])} architectures): "
                 "median and quartiles over seeds")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def environment() -> dict:
    import optuna
    import torch
    return {"machine": {"platform": platform.platform(), "processor": platform.processor(),
                        "cpu_count": os.cpu_count()},
            "versions": {"python": sys.version.split()[0], "numpy": np.__version__,
                         "torch": torch.__version__, "optuna": optuna.__version__}}


def to_json(results: dict, args, names: list[str], budgets: dict, wall: float,
            verification: dict, table_path: str) -> dict:
    return {"benchmark": "search", "table": table_path, **environment(),
            "config": {"seeds": args.seeds, "evaluations": args.evaluations,
                       "tpe_evaluations": args.tpe_evaluations, "seed_policy": args.seed_policy,
                       "processes": args.processes, "quick": args.quick},
            "searches": names, "budgets": budgets, "seeds": list(range(args.seeds)),
            "wall_seconds": wall, "verified_against_real_run": verification, **results}


def write_json(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=1) + "\n")
    os.replace(tmp, path)
