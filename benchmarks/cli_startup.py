"""How long the ``evograph`` command takes to answer when it has nothing heavy to do.

Each case runs as a fresh process (as a user's shell runs it) ``--repeats`` times; the median,
fastest and slowest wall-clock times are kept, the median CPU time of the process (user + system:
the steadier figure on a shared machine) and whether the process imported torch (one more run
under ``python -X importtime``). The cases: ``evograph --help``, ``--version``, a config
mistake (``evograph run missing.toml``) and ``status`` of a small synthetic run
(:mod:`evograph.runs.report.demo`), beside two floors: the bare interpreter and ``import
evograph``, and ``import torch`` for scale.

``--source DIR`` times another checkout of evograph instead of the installed one (a folder named
``evograph`` holding the package, put first on ``PYTHONPATH``), so a before/after pair is two
runs of this script with different ``--label``; each writes its own entry of the JSON file and
the plot shows every label kept there::

    git archive --prefix=evograph/ HEAD~1 | tar -x -C /tmp/before
    python benchmarks/cli_startup.py --label before --source /tmp/before/evograph
    python benchmarks/cli_startup.py --label after

Writes ``benchmarks/results/cli_startup.json`` and ``cli_startup.png`` and prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results" / "cli_startup.json"
# the ``evograph`` console script: run main, then leave without the interpreter's teardown
CONSOLE = "import sys; from evograph.runs.cli.main import console_main; console_main()"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="runs of each case (median kept)")
    parser.add_argument("--label", default="after", help="the name of this measurement")
    parser.add_argument("--source", type=Path, default=None,
                        help="a checkout's evograph folder to time instead of the installed one")
    parser.add_argument("--out", type=Path, default=RESULTS)
    return parser.parse_args(argv)


def cases(run_dir: Path) -> dict[str, list[str]]:
    """Case name -> the Python arguments of the process (after the interpreter)."""
    def evograph(*args: str) -> list[str]:
        return ["-c", CONSOLE, *args]
    return {"python (nothing)": ["-c", "pass"],
            "import evograph": ["-c", "import evograph"],
            "evograph --help": evograph("--help"),
            "evograph --version": evograph("--version"),
            "config mistake": evograph("run", "missing.toml"),
            "evograph status RUN": evograph("status", str(run_dir)),
            "import torch": ["-c", "import torch"]}


def environment(source: Path | None) -> dict[str, str]:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    if source is not None:
        env["PYTHONPATH"] = str(source.resolve().parent)
    return env


def imports_torch(args: list[str], cwd: Path, env: dict[str, str]) -> bool:
    """Whether the process imports torch (read from ``python -X importtime``)."""
    result = subprocess.run([sys.executable, "-X", "importtime", *args], cwd=cwd, env=env,
                            capture_output=True, text=True, timeout=300, check=False)
    return any(line.rsplit("|", 1)[-1].strip() == "torch" for line in result.stderr.splitlines())


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def time_case(args: list[str], cwd: Path, env: dict[str, str], repeats: int) -> dict:
    walls, cpus, codes = [], [], set()
    for _ in range(repeats):
        start, cpu = time.perf_counter(), children_cpu()
        result = subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True,
                                timeout=300, check=False)
        walls.append(time.perf_counter() - start)
        cpus.append(children_cpu() - cpu)
        codes.add(result.returncode)
    return {"median_s": statistics.median(walls), "min_s": min(walls), "max_s": max(walls),
            "cpu_s": statistics.median(cpus), "walls_s": walls, "exit_codes": sorted(codes),
            "imports_torch": imports_torch(args, cwd, env)}


def measure(args: argparse.Namespace) -> dict:
    from evograph.runs.report.demo import DemoSpec, make_demo_run

    base = Path(tempfile.mkdtemp(prefix="evograph-cli-bench-"))
    try:
        run_dir = make_demo_run(base / "run", DemoSpec(individuals=30, population=10))
        env = environment(args.source)
        out = {}
        for name, case in cases(run_dir).items():
            out[name] = time_case(case, base, env, args.repeats)
            print(f"timed {name}", file=sys.stderr)
        return out
    finally:
        shutil.rmtree(base, ignore_errors=True)


def print_table(runs: dict[str, dict]) -> None:
    labels = list(runs)
    names = list(next(iter(runs.values())))
    print(f"{'case':<22}" + "".join(f"{label + ' wall s':>16}{'cpu s':>7}{'torch':>7}"
                                     for label in labels))
    for name in names:
        row = f"{name:<22}"
        for label in labels:
            r = runs[label].get(name)
            row += (f"{r['median_s']:>16.2f}{r['cpu_s']:>7.2f}"
                    f"{'yes' if r['imports_torch'] else 'no':>7}" if r
                    else f"{'-':>16}{'':>7}{'':>7}")
        print(row)


def plot(runs: dict[str, dict], path: Path) -> None:
    """Per case and label: the median wall time (bars spanning fastest to slowest) and the
    median CPU time of the process."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    labels = list(runs)
    names = list(next(iter(runs.values())))
    height = 0.8 / len(labels)
    empty = {"median_s": 0.0, "min_s": 0.0, "max_s": 0.0, "cpu_s": 0.0}
    fig, axes = plt.subplots(1, 2, sharey=True,
                             figsize=(11, 0.8 + 0.4 * len(names) * len(labels)))
    for k, label in enumerate(labels):
        ys = [i + k * height for i in range(len(names))]
        r = [runs[label].get(name, empty) for name in names]
        med = [x["median_s"] for x in r]
        err = [[m - x["min_s"] for m, x in zip(med, r)], [x["max_s"] - m for m, x in zip(med, r)]]
        axes[0].barh(ys, med, height=height, xerr=err, label=label, capsize=2)
        axes[1].barh(ys, [x["cpu_s"] for x in r], height=height, label=label)
    axes[0].set_yticks([i + height * (len(labels) - 1) / 2 for i in range(len(names))], names)
    axes[0].invert_yaxis()
    axes[0].set_xlabel("wall-clock seconds (median; whiskers: fastest to slowest)")
    axes[1].set_xlabel("CPU seconds of the process (median)")
    fig.suptitle("evograph command start-up, fresh processes", fontsize=10)
    axes[1].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.source is not None and not (args.source / "runs" / "cli" / "main.py").is_file():
        sys.exit(f"--source {args.source}: not an evograph checkout (no runs/cli/main.py)")
    results = measure(args)
    payload = json.loads(args.out.read_text()) if args.out.exists() else {}
    payload.update({"benchmark": "cli_startup", "repeats": args.repeats,
                    "machine": {"platform": platform.platform(),
                                "python": platform.python_version(), "cpus": os.cpu_count(),
                                "load_avg": os.getloadavg()}})
    payload.setdefault("runs", {})[args.label] = {
        "source": str(args.source) if args.source else "installed", "cases": results}
    runs = {label: entry["cases"] for label, entry in payload["runs"].items()}
    print_table(runs)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(payload, indent=2) + "\n")
    plot(runs, args.out.with_suffix(".png"))
    print(f"wrote {args.out} and {args.out.with_suffix('.png')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
