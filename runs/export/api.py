"""Take models out of a run: ``export`` (the API behind ``evograph export``) and ``load_model``.

``export(run_dir, best=True, format="python", output="my_model/")`` rebuilds the chosen
individual from its stored genome, loads its stored weights (``RUN_DIR/weights/<id>.safetensors``),
optionally trains it further on train+val (``train_epochs``; from the run's weights, or from scratch
with ``from_scratch=True``: search budgets are short), then writes one folder per individual in the
chosen format (:mod:`evograph.runs.export.formats`) with a ``manifest.json`` of checksums, metrics,
lineage and library versions (:mod:`evograph.runs.export.bundle`). Each folder is written beside its
destination, checked by reading it back, and only then renamed into place, so a failed export
leaves nothing behind. ``pareto=True`` exports the non-dominated set of validation accuracy vs
parameters, each into its own subfolder.

``load_model(path)`` verifies an export's checksums and returns the model in eval mode; no path
unpickles anything.
"""

from __future__ import annotations

import dataclasses
import json
import math
import secrets
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ...compile.builder import GenomeModule, build
from ...compile.determinism import use_deterministic_kernels
from ...compile.training.sgd import evaluate, train_steps
from ...data.datasets import load_dataset
from ...devices import pick_device
from ...errors import ExportError
from ...genome.core import Genome
from ...genome.io import from_dict
from ...genome.validate import analyze
from ...selection.base import derive_seed
from ...selection.deap_adapter import first_front
from ..config import config_from_dict
from ..store import RunStore, atomic_write_text
from .bundle import (
    MANIFEST,
    library_versions,
    load_bundle_files,
    load_pt2,
    load_state,
    make_manifest,
    manifest_text,
    verify_export,
)
from .formats import WRITERS, Artifact

FORMATS = tuple(WRITERS)


@dataclass
class ExportResult:
    """One exported individual: where it went and what the manifest says about it."""

    id: int
    path: Path
    format: str
    manifest: dict[str, Any]


# -- choosing individuals -------------------------------------------------------------------------

def choose(store: RunStore, best: bool, id: int | None, pareto: bool) -> list[int]:
    """The ids to export: ``--best`` (the default), ``--id ID`` or ``--pareto``."""
    if sum([bool(best), id is not None, bool(pareto)]) > 1:
        raise ExportError("choose one of best, id and pareto")
    if id is not None:
        return [int(id)]
    if pareto:
        return pareto_ids(store)
    top = store.best(1)
    if not top:
        raise ExportError(f"run {store.run_dir} has no completed evaluation to export yet")
    return [top[0].id]


def pareto_ids(store: RunStore) -> list[int]:
    """Ids of the completed individuals no other beats on both validation accuracy (higher)
    and parameter count (lower), fewest parameters first (DEAP's non-dominated sort)."""
    entries = []
    for row in store.evaluations():
        if row.status == "completed" and row.fitness is not None and row.weights:
            accuracy = row.metrics.get("val_accuracy", row.fitness)
            params = row.metrics.get("params")
            if params is None:
                params = analyze(from_dict(store.individual(row.id).genome)).params
            entries.append((row.id, (float(accuracy), float(params))))
    if not entries:
        raise ExportError(f"run {store.run_dir} has no completed evaluation to export yet")
    points = dict(entries)
    return sorted(first_front(entries), key=lambda i: (points[i][1], -points[i][0], i))


def lineage(store: RunStore, id: int) -> dict[str, Any]:
    """Parents, every ancestor's id, and each birth on the way (id, parents, mutation)."""
    rows = {row.id: row for row in store.individuals()}
    seen, todo = set(), list(rows[id].parents)
    while todo:
        current = todo.pop()
        if current not in seen and current in rows:
            seen.add(current)
            todo.extend(rows[current].parents)
    births = [{"id": i, "parents": list(rows[i].parents), "mutation": rows[i].mutation}
              for i in sorted(seen | {id})]
    return {"parents": list(rows[id].parents), "ancestors": sorted(seen), "births": births}


# -- rebuilding and retraining --------------------------------------------------------------------

def trained_module(store: RunStore, id: int) -> tuple[Genome, GenomeModule]:
    """The individual's genome and its module with the run's trained weights loaded."""
    row, evaluation = store.individual(id), store.evaluation(id)
    if evaluation.status != "completed" or not evaluation.weights:
        raise ExportError(f"individual {id} of run {store.run_dir} has no trained weights "
                          f"(evaluation {evaluation.status})")
    genome = from_dict(row.genome, f"individual {id}")
    module = build(genome, seed=row.seed or 0)
    load_state(module, store.read_weights(id), store.weights_file(id))
    return genome, module


def run_dataset(store: RunStore):
    """The run's dataset with its own splits (same seed, fractions and limit as the run)."""
    config = config_from_dict(store.config, source=f"{store.run_dir}/config")
    d = config.dataset
    return load_dataset(d.name, seed=config.seed, root=d.root or None, download=d.download,
                        val_fraction=d.val_fraction, test_fraction=d.test_fraction,
                        limit=d.limit or None)


def retrain(store: RunStore, id: int, genome: Genome, module: GenomeModule, epochs: float,
            from_scratch: bool, seed: int, device: torch.device) -> tuple[GenomeModule, dict]:
    """Train for ``epochs`` more passes over train+val (a fresh module if ``from_scratch``);
    report test accuracy before (the run's weights) and after; on a GPU with deterministic
    kernels, as the run trained."""
    use_deterministic_kernels(device)
    data = run_dataset(store)
    joined = dataclasses.replace(data, x_train=torch.cat([data.x_train, data.x_val]),
                                 y_train=torch.cat([data.y_train, data.y_val]))
    before = evaluate(module.to(device), data.x_test, data.y_test, device)
    train_seed = derive_seed(seed, id)
    if from_scratch:
        module = build(genome, seed=train_seed, device=device)
    batch = int(genome.gene.get("batch_size", 64))
    steps = max(1, math.ceil(epochs * math.ceil(len(joined.x_train) / batch)))
    curve = train_steps(module, joined, genome.gene, steps, batch, train_seed, device)
    if not curve or not math.isfinite(curve[-1]):
        raise ExportError(f"retraining individual {id} diverged (loss {curve[-1:]}); "
                          "nothing was exported")
    after = evaluate(module, data.x_test, data.y_test, device)
    return module.to("cpu").eval(), {
        "epochs": epochs, "steps": steps, "from_scratch": from_scratch, "seed": train_seed,
        "data": "train+val", "test_accuracy_before": before[0], "test_loss_before": before[1],
        "test_accuracy_after": after[0], "test_loss_after": after[1], "loss_curve": curve}


# -- writing --------------------------------------------------------------------------------------

def _manifest_info(store: RunStore, id: int, genome: Genome, retrained: dict | None,
                   fmt: str) -> dict[str, Any]:
    """Everything the manifest says besides the checksums: who, from where, how good, lineage."""
    evaluation, info = store.evaluation(id), analyze(genome)
    weights = "run" if retrained is None else (
        "retrained from scratch" if retrained["from_scratch"] else "fine-tuned")
    extra = ("onnx", "onnxruntime") if fmt == "onnx" else ()
    return {"individual": id, "run_id": store.run_id, "genome_hash": genome.hash,
            "arch_hash": genome.arch_hash, "input_shape": list(genome.input_node.get("shape")),
            "num_classes": genome.output_node.get("num_classes"), "params": info.params,
            "flops": info.flops, "fitness": evaluation.fitness, "metrics": evaluation.metrics,
            "dataset": store.config.get("dataset", {}).get("name"),
            "space": store.config.get("space", {}).get("name"), "weights": weights,
            "retrain": retrained, "lineage": lineage(store, id),
            "versions": library_versions(*extra)}


def _replaceable(target: Path, overwrite: bool) -> bool:
    """Whether ``target`` may be (re)written: absent or empty, or an earlier export and
    ``overwrite``. Never deletes a folder that is not an evograph export."""
    if not target.exists() or (target.is_dir() and not any(target.iterdir())):
        return True
    if not overwrite:
        raise ExportError(f"{target} already exists; choose another output or overwrite it "
                          "(--force)")
    if not (target / MANIFEST).is_file():
        raise ExportError(f"{target} exists and is not an evograph export; refusing to "
                          "replace it")
    return True


def publish(art: Artifact, fmt: str, target: Path, info: dict[str, Any],
            overwrite: bool) -> dict[str, Any]:
    """Write ``fmt`` into a temporary sibling folder, verify it, then rename it to ``target``."""
    _replaceable(target, overwrite)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".{target.name}.tmp-{secrets.token_hex(4)}"
    tmp.mkdir()
    try:
        verification = WRITERS[fmt](art, tmp)
        manifest = make_manifest(tmp, fmt, {**info, "verification": verification})
        atomic_write_text(tmp / MANIFEST, manifest_text(manifest))
        verify_export(tmp)
        if target.exists():
            old = target.parent / f".{target.name}.old-{secrets.token_hex(4)}"
            target.rename(old)
            shutil.rmtree(old)
        tmp.rename(target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return manifest


def export_one(store: RunStore, id: int, fmt: str, target: Path, *, train_epochs: float = 0,
               from_scratch: bool = False, seed: int = 0, device: str = "cpu",
               overwrite: bool = False) -> ExportResult:
    """Rebuild, optionally retrain, write and verify one individual."""
    genome, module = trained_module(store, id)
    retrained = None
    if train_epochs > 0:
        module, retrained = retrain(store, id, genome, module, train_epochs, from_scratch, seed,
                                    pick_device(device))
    note = (f"Individual {id} of run {store.run_id}; training genes in GENES; "
            f"weights: {'run' if retrained is None else 'retrained'}.")
    art = Artifact.of(genome, module, note=note)
    info = _manifest_info(store, id, genome, retrained, fmt)
    manifest = publish(art, fmt, target, info, overwrite)
    return ExportResult(id, target, fmt, manifest)


def export_results(run_dir: str | Path, *, best: bool = False, id: int | None = None,
                   pareto: bool = False, format: str = "bundle", output: str | Path | None = None,
                   train_epochs: float = 0, from_scratch: bool = False, seed: int = 0,
                   device: str = "cpu", overwrite: bool = False) -> list[ExportResult]:
    """:func:`export`, returning the manifests too (the CLI prints from them)."""
    if format not in WRITERS:
        raise ExportError(f"unknown export format {format!r} (known: {', '.join(FORMATS)})")
    if train_epochs < 0 or (from_scratch and not train_epochs):
        raise ExportError("train_epochs must be positive (from_scratch needs it too)")
    with RunStore.open(run_dir, readonly=True) as store:
        ids = choose(store, best, id, pareto)
        base = Path(output) if output else store.run_dir / "exports" / (
            f"pareto-{format}" if pareto else f"{ids[0]}-{format}")
        targets = {i: base / str(i) if pareto else base for i in ids}
        if pareto:
            for i in ids:  # refuse before writing anything
                _replaceable(targets[i], overwrite)
        results = [export_one(store, i, format, targets[i], train_epochs=train_epochs,
                              from_scratch=from_scratch, seed=seed, device=device,
                              overwrite=overwrite) for i in ids]
    if pareto:
        write_pareto_index(base, results)
    return results


def write_pareto_index(base: Path, results: list[ExportResult]) -> None:
    """``pareto.json`` beside the subfolders: each point's id, accuracy, size and folder."""
    points = [{"id": r.id, "val_accuracy": r.manifest["metrics"].get("val_accuracy"),
               "test_accuracy": r.manifest["metrics"].get("test_accuracy"),
               "params": r.manifest["params"], "folder": r.path.name} for r in results]
    atomic_write_text(base / "pareto.json", json.dumps(points, indent=2) + "\n")


def export(run_dir: str | Path, *, best: bool = False, id: int | None = None,
           pareto: bool = False, format: str = "bundle", output: str | Path | None = None,
           train_epochs: float = 0, from_scratch: bool = False, seed: int = 0,
           device: str = "cpu", overwrite: bool = False) -> list[Path]:
    """Export individuals of a run; returns the folder of each.

    Choose with ``best`` (default), ``id`` or ``pareto``; ``format`` is bundle, python, pt2 or
    onnx; ``output`` defaults to ``RUN_DIR/exports/<id>-<format>`` (``pareto-<format>/<id>``).
    ``train_epochs`` trains further on train+val before export (from scratch if
    ``from_scratch``), seeded by ``seed`` and the individual's id, on ``device``."""
    return [r.path for r in export_results(
        run_dir, best=best, id=id, pareto=pareto, format=format, output=output,
        train_epochs=train_epochs, from_scratch=from_scratch, seed=seed, device=device,
        overwrite=overwrite)]


def load_model(path: str | Path, *, device: str | torch.device | None = None) -> torch.nn.Module:
    """Load an exported model after verifying its checksums; eval mode, no pickle.

    Reads ``bundle`` exports (an ordinary ``GenomeModule``) and ``pt2`` exports (the
    ExportedProgram's module, frozen in inference mode). ``python`` exports are loaded with their
    own ``model.py`` and ``onnx`` ones with onnxruntime."""
    manifest = verify_export(path)
    folder = Path(path).parent if Path(path).name == MANIFEST else Path(path)
    kind = manifest["export_format"]
    if kind == "bundle":
        module = load_bundle_files(folder)
        return module.to(device) if device is not None else module
    if kind == "pt2":
        return load_pt2(folder / "model.pt2")
    hint = "`from model import load` in that folder" if kind == "python" else "onnxruntime"
    raise ExportError(f"{folder}: a {kind} export is loaded with {hint}; load_model reads "
                      "bundle and pt2 exports")
