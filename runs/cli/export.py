"""``evograph export RUN_DIR [--best [--evolved] | --id ID | --pareto] [--format FORMAT]
[-o PATH] [--train [EPOCHS]]``. Light at import: the export machinery (torch) is imported by the
handler. In a run with a final selection, ``--best`` is its pick with retrained weights."""

from __future__ import annotations

import argparse
from typing import Any

from ..export.names import DEFAULT_TRAIN_EPOCHS, FORMATS

HOW_TO_LOAD = {
    "bundle": "m = evograph.load_model('{path}'); m(m.preprocess(raw))",
    "python": "from model import load, preprocess (in {path}, or import its model.py by "
              "path); net = load(); net(preprocess(raw))",
    "pt2": "m = evograph.load_model('{path}'); m(m.preprocess(raw))  "
           "(or torch.export.load, then PREPROCESS in the manifest)",
    "onnx": "onnxruntime.InferenceSession('{path}'); raw inputs prepared as its metadata "
            "evograph.preprocess says",
}


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="export individuals of a run as models anyone can load",
                       description="Rebuild individuals of a run with their trained weights and "
                       "write them as a bundle (genome + safetensors + manifest), a standalone "
                       "model.py, a torch.export program or one ONNX file; every export is read "
                       "back and checked against the run's model before it is kept, and carries "
                       "the run's input preprocessing.")
    p.add_argument("run_dir")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--best", action="store_true",
                       help="the best (default): the final selection's pick with its "
                       "retrained weights when the run has one, else the search's best")
    which.add_argument("--id", type=int, default=None, help="the individual with this id")
    which.add_argument("--pareto", action="store_true",
                       help="every non-dominated individual (val accuracy vs params), each in "
                       "its own subfolder")
    p.add_argument("--evolved", action="store_true",
                   help="with --best: the search's best by validation with its evolved "
                   "weights, not the final selection's pick")
    p.add_argument("--format", default=None, metavar="{" + ",".join(FORMATS) + "}",
                   help="what to write (default: from -o's suffix, .onnx or .pt2; else "
                   "bundle); checked by the handler, so a typo is one line")
    p.add_argument("-o", "--output", default=None, metavar="PATH",
                   help="a folder (no suffix, ending in /, or existing; default "
                   "RUN_DIR/exports/ID-FORMAT) or one .onnx / .pt2 file")
    p.add_argument("--train", type=float, nargs="?", const=DEFAULT_TRAIN_EPOCHS, default=0,
                   metavar="EPOCHS",
                   help=f"train first (default {DEFAULT_TRAIN_EPOCHS:g} epochs): EPOCHS more "
                   "passes over train+val; a run whose fitness does not train its weights "
                   "(table, hypernet, hypernet-static, enas) needs it, and trains from scratch "
                   "with sgd")
    p.add_argument("--from-scratch", action="store_true",
                   help="with --train: start from fresh weights instead of the run's")
    p.add_argument("--seed", type=int, default=0, help="seed of --train (default 0)")
    p.add_argument("--device", default="cpu", help="device for --train: cpu, cuda, auto")
    p.add_argument("--force", action="store_true", help="replace an earlier export in PATH")
    p.set_defaults(handler=cmd_export)


def figure_text(figures: dict[str, Any]) -> list[str]:
    """One line per figure: its value (or its words: a mean ± std), what produced it, and
    whether it is these weights'."""
    lines = []
    for name, entry in figures.items():
        if isinstance(entry.get("value"), (int, float)) and (
                "accuracy" in name or name == "final_selection"):
            number = entry["value"]
            value = entry.get("text") or f"{name} {number:.4f}"
            mine = "" if entry["of_exported_weights"] else " (not of the exported weights)"
            lines.append(f"  {value} by {entry['by']}{mine}")
    return lines


def chosen_text(result: Any) -> str:
    """Which individual was exported, in words: the final selection's pick (its mean over
    the seeds), the search's best, or an individual by id."""
    m = result.manifest
    if m.get("final"):
        from ..export.pick import pick_line
        return pick_line(m["final"])
    if m.get("chosen") == "search's best by validation":
        return f"individual {result.id}, the search's best by validation (evolved weights)"
    return f"individual {result.id}"


def describe(result: Any) -> list[str]:
    """A few lines on one export: what, where, its figures and by whom, what was verified (the
    files against the weights, not the accuracy), and how to load it."""
    m = result.manifest
    head = f"{chosen_text(result)} ({m['params']:,} params) -> {result.format} in {result.path}"
    lines = [head]
    if m.get("final"):
        from ..export.pick import seeds_line
        lines.append(seeds_line(m["final"]))
    lines += figure_text(m.get("figures", {}))
    retrain = m.get("retrain")
    if retrain and retrain.get("test_accuracy_before") is not None:
        start = "the final selection's retrained weights" if m.get("final") else \
            "the run's weights"
        lines.append(f"  test accuracy of {start} {retrain['test_accuracy_before']:.4f}"
                     f" -> {retrain['test_accuracy_after']:.4f} after --train")
    check = m.get("verification", {})
    lines.append(f"  verified (the written files against the exported weights, not their "
                 f"accuracy): {check.get('check')} (max |diff| {check.get('max_abs_diff', 0):.2g})")
    if check.get("preprocess"):
        lines.append(f"  verified: {check['preprocess']}")
    recipe = m.get("preprocess")
    lines.append("  inputs: " + (f"{recipe['formula']}, raw = {recipe['raw']}" if recipe else
                                 "preprocessing unknown (the run did not record it)"))
    lines.append("  load: " + HOW_TO_LOAD[result.format].format(path=result.path))
    return lines


def cmd_export(args: argparse.Namespace) -> int:
    """Export, then print what was written, how it was checked and how to load it."""
    from ..export.api import export_results
    results = export_results(
        args.run_dir, best=args.best, id=args.id, pareto=args.pareto, evolved=args.evolved,
        format=args.format,
        output=args.output, train_epochs=args.train, from_scratch=args.from_scratch,
        seed=args.seed, device=args.device, overwrite=args.force)
    for result in results:
        print("\n".join(describe(result)))
    return 0
