"""``evograph run | resume | status | best | show``: the user's main job.

The handlers import the driver, the store and the views themselves: building the parser (and
so ``evograph --help``) imports nothing heavy."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("run", help="start an evolution run from a TOML config")
    p.add_argument("config")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set budget.evaluations=50")
    p.add_argument("--out", default=None, help="run directory (default: OUT/NAME-TIMESTAMP)")
    p.add_argument("--init", nargs="+", default=[], metavar="GENOME.json",
                   help="start from these genomes (evograph genome JSON): the strategy's first "
                        "initial individuals, recorded in lineage as seeded")
    p.add_argument("--no-live", action="store_true", help="log lines instead of a live panel")
    p.set_defaults(handler=cmd_run)

    r = sub.add_parser("resume", help="continue a stopped or crashed run, or extend its budget")
    r.add_argument("run_dir")
    r.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="change the budget first, e.g. --set budget.evaluations=500 (or "
                        "budget.minutes, budget.max_failure_fraction); other keys need --force")
    r.add_argument("--force", action="store_true",
                   help="resume even if the config or search space changed")
    r.add_argument("--no-live", action="store_true")
    r.set_defaults(handler=cmd_resume)

    s = sub.add_parser("status", help="the run's state, evaluations by status, best, time")
    s.add_argument("run_dir")
    s.add_argument("--json", action="store_true")
    s.add_argument("--failed", action="store_true",
                   help="list the failed and infeasible evaluations with their reasons")
    s.set_defaults(handler=cmd_status)

    b = sub.add_parser("best", help="the best individual of a run")
    b.add_argument("run_dir")
    b.add_argument("--json", action="store_true")
    b.add_argument("-n", type=int, default=1, help="how many of the best")
    b.set_defaults(handler=cmd_best)

    w = sub.add_parser("show", help="an individual's full record: genome, birth, metrics, "
                                    "error, weights")
    w.add_argument("run_dir")
    w.add_argument("id", type=int)
    w.add_argument("--json", action="store_true")
    w.set_defaults(handler=cmd_show)


def _finish(outcome: Any) -> int:
    from ..report.text import print_status
    from ..store import RunStore
    store = RunStore.open(outcome.run_dir, readonly=True)
    try:
        print_status(store)
        d = outcome.run_dir
        if outcome.finished:
            print(f"\nrun finished ({outcome.reason}); it lives in {d}\n"
                  f"  more of it: evograph resume {d} --set budget.evaluations=N")
        else:
            print(f"\nrun stopped ({outcome.reason}); continue it with: evograph resume {d}")
        print("next:\n"
              f"  evograph status {d}\n"
              f"  evograph report {d}                       # HTML report\n"
              f"  evograph lineage {d} --best --format svg -o best.svg\n"
              f"  evograph export {d} --best --format python -o my_model/")
    finally:
        store.close()
    return 0 if outcome.finished else (130 if "interrupted" in outcome.reason else 1)


def cmd_run(args: argparse.Namespace) -> int:
    from ..config import load_config
    config = load_config(args.config, args.overrides)  # a config mistake answers before torch
    from ..driver import create_run, run
    run_dir = create_run(config, args.out, source=Path(args.config).name, init=args.init)
    print(f"run directory: {run_dir}", file=sys.stderr)
    return _finish(run(run_dir, live=False if args.no_live else None))


def cmd_resume(args: argparse.Namespace) -> int:
    from ..driver import run
    return _finish(run(args.run_dir, force=args.force, live=False if args.no_live else None,
                       overrides=args.overrides))


def cmd_status(args: argparse.Namespace) -> int:
    from ..report.text import failed_payload, print_failed, print_status, status_payload
    from ..store import RunStore
    with RunStore.open(args.run_dir, readonly=True) as store:
        if args.json:
            payload = failed_payload(store) if args.failed else status_payload(store)
            print(json.dumps(payload, indent=2))
        elif args.failed:
            print_failed(store)
        else:
            print_status(store)
    return 0


def cmd_best(args: argparse.Namespace) -> int:
    from ..report.text import best_payload, print_best
    from ..store import RunStore
    with RunStore.open(args.run_dir, readonly=True) as store:
        if not store.best(1):
            counts = store.counts_by_status()
            done = ", ".join(f"{n} {s}" for s, n in counts.items() if n) or "nothing proposed"
            print(f"evograph: {args.run_dir} has no completed evaluation yet ({done}); see: "
                  f"evograph status {args.run_dir}", file=sys.stderr)
            return 1
        if args.json:
            print(json.dumps(best_payload(store, args.n), indent=2))
        else:
            print_best(store, args.n)
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    from ..report.text import individual_payload, print_individual
    from ..store import RunStore
    with RunStore.open(args.run_dir, readonly=True) as store:
        if args.json:
            print(json.dumps(individual_payload(store, args.id), indent=2))
        else:
            print_individual(store, args.id)
    return 0
