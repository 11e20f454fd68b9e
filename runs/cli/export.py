"""``evograph export RUN_DIR [--best | --id ID | --pareto] --format FORMAT [-o PATH]``."""

from __future__ import annotations

import argparse

from ..export.api import FORMATS, ExportResult, export_results

HOW_TO_LOAD = {
    "bundle": "evograph.load_model('{path}')",
    "python": "cd {path} && python -c 'from model import load; print(load())'",
    "pt2": "torch.export.load('{path}/model.pt2').module()",
    "onnx": "onnxruntime.InferenceSession('{path}/model.onnx')",
}


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="export individuals of a run as models anyone can load",
                       description="Rebuild individuals of a run with their trained weights and "
                       "write them as a bundle (genome + safetensors + manifest), a standalone "
                       "model.py, a torch.export program or one ONNX file; every export is read "
                       "back and checked against the run's model before it is kept.")
    p.add_argument("run_dir")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--best", action="store_true", help="the best individual (default)")
    which.add_argument("--id", type=int, default=None, help="the individual with this id")
    which.add_argument("--pareto", action="store_true",
                       help="every non-dominated individual (val accuracy vs params), each in "
                       "its own subfolder")
    p.add_argument("--format", choices=FORMATS, default="bundle",
                   help="what to write (default: bundle)")
    p.add_argument("-o", "--output", default=None, metavar="PATH",
                   help="output folder (default RUN_DIR/exports/ID-FORMAT; with --pareto one "
                   "subfolder per individual)")
    p.add_argument("--train", type=float, default=0, metavar="EPOCHS",
                   help="train EPOCHS more passes over train+val before exporting")
    p.add_argument("--from-scratch", action="store_true",
                   help="with --train: start from fresh weights instead of the run's")
    p.add_argument("--seed", type=int, default=0, help="seed of --train (default 0)")
    p.add_argument("--device", default="cpu", help="device for --train: cpu, cuda, auto")
    p.add_argument("--force", action="store_true", help="replace an earlier export in PATH")
    p.set_defaults(handler=cmd_export)


def describe(result: ExportResult) -> list[str]:
    """A few lines on one export: what, where, how it was verified, how to load it."""
    m = result.manifest
    metrics = m.get("metrics", {})
    accuracy = metrics.get("val_accuracy")
    head = (f"individual {result.id} ({m['params']:,} params"
            + (f", val accuracy {accuracy:.4f}" if isinstance(accuracy, float) else "")
            + f") -> {result.format} in {result.path}")
    lines = [head]
    retrain = m.get("retrain")
    if retrain:
        how = "from scratch" if retrain["from_scratch"] else "from the run's weights"
        lines.append(f"  retrained {retrain['epochs']:g} epoch(s) on train+val {how}: test "
                     f"accuracy {retrain['test_accuracy_before']:.4f} -> "
                     f"{retrain['test_accuracy_after']:.4f}")
    check = m.get("verification", {})
    lines.append(f"  verified: {check.get('check')} (max |diff| "
                 f"{check.get('max_abs_diff', 0):.2g})")
    lines.append("  load: " + HOW_TO_LOAD[result.format].format(path=result.path))
    return lines


def cmd_export(args: argparse.Namespace) -> int:
    """Export, then print what was written, how it was checked and how to load it."""
    results = export_results(
        args.run_dir, best=args.best, id=args.id, pareto=args.pareto, format=args.format,
        output=args.output, train_epochs=args.train, from_scratch=args.from_scratch,
        seed=args.seed, device=args.device, overwrite=args.force)
    for result in results:
        print("\n".join(describe(result)))
    return 0
