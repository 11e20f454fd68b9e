"""``evograph lineage | diff | report``: how the models of a run came to be.

All three open the run read-only, so they work while a driver is still writing to it. The
lineage, report and store modules are imported by the handlers, not here, so that building the
parser stays quick.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ...errors import EvographError

# the formats of :func:`evograph.runs.lineage.writers.write_lineage` (a test keeps them equal)
FORMATS = ("svg", "png", "graphml", "gexf", "json", "dot")
TEXT_FORMATS = ("json", "dot")  # written to standard output when no -o is given


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("lineage", help="the family tree of a run (or of one individual)")
    p.add_argument("run_dir")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--of", type=int, metavar="ID", help="only ID and its ancestors")
    which.add_argument("--best", action="store_true", help="only the best and its ancestors")
    p.add_argument("--format", choices=FORMATS, default=None,
                   help="svg, png, graphml, gexf, json or dot (default: from -o, else svg)")
    p.add_argument("-o", "--output", default=None, metavar="FILE",
                   help="where to write (default: lineage[-best|-ID].FORMAT here; json and "
                        "dot go to standard output)")
    p.set_defaults(handler=cmd_lineage)

    d = sub.add_parser("diff", help="what changed from one individual's genome to another's")
    d.add_argument("run_dir")
    d.add_argument("id_a", type=int, metavar="ID_A")
    d.add_argument("id_b", type=int, metavar="ID_B")
    d.add_argument("--json", action="store_true")
    d.set_defaults(handler=cmd_diff)

    r = sub.add_parser("report", help="a self-contained HTML report (works offline)")
    r.add_argument("run_dir")
    r.add_argument("-o", "--output", default=None, metavar="FILE",
                   help="default: RUN_DIR/report.html")
    r.add_argument("--top", type=int, default=10,
                   help="draw the ancestry of this many of the best (default 10)")
    r.set_defaults(handler=cmd_report)


def _format(args: argparse.Namespace) -> str:
    if args.format:
        return args.format
    suffix = Path(args.output).suffix.lstrip(".").lower() if args.output else ""
    if suffix and suffix not in FORMATS:
        raise EvographError(f"-o {args.output}: unknown format {suffix!r}; pass --format "
                            f"({', '.join(FORMATS)})")
    return suffix or "svg"


def cmd_lineage(args: argparse.Namespace) -> int:
    """Export or draw the whole lineage, or the ancestry of ``--of ID`` / ``--best``."""
    from ..lineage.graph import ancestry, best_id, lineage
    from ..lineage.writers import to_dot, to_json, write_lineage
    fmt = _format(args)
    full = lineage(args.run_dir)
    target, tag = args.of, f"-{args.of}"
    if args.best:
        target, tag = best_id(full), "-best"
        if target is None:
            raise EvographError(f"run {args.run_dir} has no completed individual yet")
    g = ancestry(full, target) if target is not None else full
    if args.output is None and fmt in TEXT_FORMATS:
        sys.stdout.write(to_json(g) + "\n" if fmt == "json" else to_dot(g, full))
        return 0
    out = args.output or f"lineage{tag if target is not None else ''}.{fmt}"
    path = write_lineage(g, out, fmt, full=full)
    print(f"wrote {path} ({len(g)} individuals, {g.number_of_edges()} births)")
    return 0


def cmd_diff(args: argparse.Namespace) -> int:
    """Print what changed from ID_A's genome to ID_B's (one line per change)."""
    from ..lineage.graph import diff, lineage
    from ..report.sections import edit_text
    g = lineage(args.run_dir)
    change = diff(g, args.id_a, args.id_b)
    if args.json:
        print(json.dumps({"from": args.id_a, "to": args.id_b, **change.to_dict()}, indent=2))
        return 0
    print(f"#{args.id_a} -> #{args.id_b}")
    if g.has_edge(args.id_a, args.id_b):
        print(f"  #{args.id_b} was made from #{args.id_a} by {edit_text(g, args.id_b)}")
    for line in change.lines() or ["(no differences: the genomes are equal)"]:
        print(f"  {line}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    """Write the self-contained HTML report."""
    from ..report.page import build_report
    if args.top < 1:
        raise EvographError(f"--top {args.top}: must be at least 1")
    path = build_report(args.run_dir, args.output, top=args.top)
    print(f"wrote {path}")
    return 0
