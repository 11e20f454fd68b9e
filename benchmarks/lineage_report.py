"""How long the lineage graph, the exports and the HTML report take as runs grow.

Synthetic run stores (:mod:`evograph.runs.report.demo`: aging evolution, P = 100, S = 25, over
real ``lse-conv`` genomes and the real mutation operators, 5 % of evaluations infeasible or
failed) of several sizes are written once (to /dev/shm when it exists: making them is not what
is measured), then each step is timed ``--repeats`` times and the median kept, side by side in
one process: ``lineage()`` (reading the store and building the graph), ``render_report()`` (the
whole self-contained HTML, graphviz drawings included), and the GraphML / JSON exports. Wall
and CPU time (this process and graphviz) are both given: on a shared machine the CPU figure is the steadier one.
The target from the issue: a report of a 10,000-individual store in under 5 s.

Usage::

    python benchmarks/lineage_report.py            # 1,000 and 10,000 individuals, 3 repeats
    python benchmarks/lineage_report.py --quick    # 300 and 2,000 individuals, 1 repeat
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import networkx as nx
from evograph.runs.lineage.graph import lineage
from evograph.runs.lineage.writers import write_lineage
from evograph.runs.report.demo import DemoSpec, make_demo_run
from evograph.runs.report.page import render_report

RESULTS = Path(__file__).resolve().parent / "results" / "lineage_report.json"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, one repeat")
    parser.add_argument("--sizes", type=int, nargs="+", default=None)
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    args.sizes = args.sizes or ([300, 2000] if args.quick else [1000, 10000])
    args.repeats = args.repeats or (1 if args.quick else 3)
    return args


def cpu_seconds() -> float:
    """CPU time of this process and of its finished children (graphviz ``dot``)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def timed(fn) -> tuple[float, float, object]:
    wall, cpu = time.perf_counter(), cpu_seconds()
    value = fn()
    return time.perf_counter() - wall, cpu_seconds() - cpu, value


def measure(run_dir: Path, repeats: int, scratch: Path) -> dict:
    steps = {"lineage": lambda: lineage(run_dir), "report": lambda: render_report(run_dir)}
    out: dict = {}
    for name, fn in steps.items():
        runs = [timed(fn) for _ in range(repeats)]
        out[name] = {"wall_s": statistics.median(r[0] for r in runs),
                     "cpu_s": statistics.median(r[1] for r in runs)}
        if name == "report":
            out[name]["html_bytes"] = len(runs[-1][2].encode())
    g = lineage(run_dir)
    for fmt in ("graphml", "json"):
        path = scratch / f"lineage.{fmt}"
        runs = [timed(lambda p=path: write_lineage(g, p)) for _ in range(repeats)]
        out[fmt] = {"wall_s": statistics.median(r[0] for r in runs),
                    "cpu_s": statistics.median(r[1] for r in runs),
                    "bytes": path.stat().st_size}
    out["graph"] = {"nodes": len(g), "edges": g.number_of_edges(),
                    "dag": nx.is_directed_acyclic_graph(g)}
    return out


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    base = Path(tempfile.mkdtemp(prefix="evograph-bench-",
                                 dir="/dev/shm" if os.path.isdir("/dev/shm") else None))
    results = {}
    try:
        for n in args.sizes:
            spec = DemoSpec(individuals=n, seed=args.seed, population=min(100, n), sample=25,
                            batch=20, bad_fraction=0.05)
            run_dir = make_demo_run(base / f"run{n}", spec)
            results[n] = measure(run_dir, args.repeats, base)
            print(f"made and measured {n} individuals", file=sys.stderr)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    print(f"{'individuals':>11} {'lineage s':>10} {'report s':>9} {'report cpu s':>12} "
          f"{'html MB':>8} {'graphml s':>9} {'json s':>7}")
    for n, r in results.items():
        print(f"{n:>11,} {r['lineage']['wall_s']:>10.2f} {r['report']['wall_s']:>9.2f} "
              f"{r['report']['cpu_s']:>12.2f} {r['report']['html_bytes'] / 1e6:>8.2f} "
              f"{r['graphml']['wall_s']:>9.2f} {r['json']['wall_s']:>7.2f}")
    small, big = min(results), max(results)
    ratio = results[big]["report"]["cpu_s"] / results[small]["report"]["cpu_s"]
    print(f"report CPU time ratio {big:,} / {small:,} individuals: {ratio:.1f}x "
          f"(size ratio {big / small:.0f}x)")
    payload = {"benchmark": "lineage_report", "quick": args.quick, "seed": args.seed,
               "repeats": args.repeats, "machine": {"platform": platform.platform(),
                                                     "python": platform.python_version(),
                                                     "cpus": os.cpu_count(),
                                                     "load_avg": os.getloadavg()},
               "versions": {"networkx": nx.__version__},
               "results": {str(n): r for n, r in results.items()},
               "report_cpu_ratio": ratio}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
