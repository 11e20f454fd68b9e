"""``evograph run | resume | status | best``: the user's main job."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..config import load_config
from ..driver import RunOutcome, create_run, run
from ..report.text import best_payload, print_best, print_status, status_payload
from ..store import RunStore


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("run", help="start an evolution run from a TOML config")
    p.add_argument("config")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set budget.evaluations=50")
    p.add_argument("--out", default=None, help="run directory (default: OUT/NAME-TIMESTAMP)")
    p.add_argument("--no-live", action="store_true", help="log lines instead of a live panel")
    p.set_defaults(handler=cmd_run)

    r = sub.add_parser("resume", help="continue a stopped or crashed run")
    r.add_argument("run_dir")
    r.add_argument("--force", action="store_true",
                   help="resume even if the config or search space changed")
    r.add_argument("--no-live", action="store_true")
    r.set_defaults(handler=cmd_resume)

    s = sub.add_parser("status", help="evaluations by status, best so far, time spent")
    s.add_argument("run_dir")
    s.add_argument("--json", action="store_true")
    s.set_defaults(handler=cmd_status)

    b = sub.add_parser("best", help="the best individual of a run")
    b.add_argument("run_dir")
    b.add_argument("--json", action="store_true")
    b.add_argument("-n", type=int, default=1, help="how many of the best")
    b.set_defaults(handler=cmd_best)


def _finish(outcome: RunOutcome) -> int:
    store = RunStore.open(outcome.run_dir, readonly=True)
    try:
        print_status(store)
        d = outcome.run_dir
        if outcome.finished:
            print(f"\nrun finished ({outcome.reason}); it lives in {d}")
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
    config = load_config(args.config, args.overrides)
    run_dir = create_run(config, args.out, source=Path(args.config).name)
    print(f"run directory: {run_dir}", file=sys.stderr)
    return _finish(run(run_dir, live=False if args.no_live else None))


def cmd_resume(args: argparse.Namespace) -> int:
    return _finish(run(args.run_dir, force=args.force, live=False if args.no_live else None))


def cmd_status(args: argparse.Namespace) -> int:
    with RunStore.open(args.run_dir, readonly=True) as store:
        if args.json:
            print(json.dumps(status_payload(store), indent=2))
        else:
            print_status(store)
    return 0


def cmd_best(args: argparse.Namespace) -> int:
    with RunStore.open(args.run_dir, readonly=True) as store:
        if args.json:
            print(json.dumps(best_payload(store, args.n), indent=2))
        else:
            print_best(store, args.n)
    return 0
