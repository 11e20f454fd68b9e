"""Take models out of a run: ``export`` (the API behind ``evograph export``) and ``load_model``.

``export(run_dir, best=True, format="python", output="my_model/")`` rebuilds the chosen
individual from its stored genome and loads its stored weights (``RUN_DIR/weights/<id>.safetensors``),
or trains it first (``train_epochs``, :mod:`.training`): further on train+val, from the run's
weights or from scratch; a run whose fitness does not train the weights it reports (a table
lookup, SMASH, ...) is exported only so, trained from scratch by the ``sgd`` fitness, and refused
otherwise. It writes one folder per individual in the chosen format (:mod:`.formats`) with a
``manifest.json`` of checksums, figures (each with what produced it), the run's input
preprocessing, lineage and library versions (:mod:`.bundle`); or one ``.onnx``/``.pt2`` file
when ``output`` names one (:mod:`.target`). Nothing is kept that was not read back and checked.
``pareto=True`` exports the non-dominated set of validation accuracy vs parameters, each into its
own subfolder.

In a run with a finished final selection, ``best`` (the default) is its pick, with one of its
weights files retrained from its genes (:mod:`.pick`: the representative seed) and the mean ±
std over the seeds among its figures; ``evolved=True`` takes the search's best by validation
with its evolved weights instead, and ``id`` always an individual's own weights.

``load_model(path)`` verifies an export's checksums and returns the model in eval mode, with the
run's input preprocessing as ``model.preprocess(raw)``; no path unpickles anything.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ...data.preprocess import Preprocess
from ...devices import pick_device
from ...errors import ExportError
from ...genome.core import Genome
from ...genome.validate import analyze
from ..store import RunStore, atomic_write_text
from .bundle import (
    MANIFEST,
    library_versions,
    load_bundle_files,
    load_pt2,
    read_pt2_info,
    verify_export,
)
from .choose import choose, lineage, pareto_ids
from .formats import WRITERS, Artifact
from .names import DEFAULT_TRAIN_EPOCHS
from .pick import FinalChoice, final_choice, final_figures, final_module, final_record
from .target import Output, publish, replaceable, resolve
from .training import (
    FIGURES,
    figures,
    further,
    retrained_figures,
    run_fitness,
    run_module,
    run_preprocess,
    sgd_from_scratch,
    stored_genome,
    untrained,
)

FORMATS = tuple(WRITERS)
__all__ = ["DEFAULT_TRAIN_EPOCHS", "FORMATS", "ExportResult", "export", "export_results",
           "load_model", "pareto_ids"]


@dataclass
class ExportResult:
    """One exported individual: where it went (a folder, or one file) and what the manifest
    says about it (for a single file: what its metadata carries, plus the verification)."""

    id: int
    path: Path
    format: str
    manifest: dict[str, Any]


# -- one individual -------------------------------------------------------------------------------

def weights_to_ship(store: RunStore, id: int, genome: Genome, train_epochs: float,
                    from_scratch: bool, seed: int, device: str,
                    final: FinalChoice | None = None):
    """The module to export and its retraining record (None: the run's own weights, or the
    final selection's retrained ones for its pick ``final``)."""
    fitness, trains = run_fitness(store)
    if not trains:
        if not train_epochs:
            raise untrained(store, id, fitness)
        return sgd_from_scratch(store, id, genome, train_epochs, seed, pick_device(device))
    if final is not None and (final.exported is not None or not from_scratch):
        start = final_module(store, final, genome)
        if not train_epochs:
            return start, None
        origin = f"the final selection's retrained weights ({final.seed_words(final.exported)})"
        return further(store, id, genome, train_epochs, from_scratch, seed, pick_device(device),
                       start=start, origin=origin)
    if train_epochs:
        return further(store, id, genome, train_epochs, from_scratch, seed, pick_device(device))
    return run_module(store, id, genome), None


def manifest_info(store: RunStore, id: int, genome: Genome, retrained: dict | None, fmt: str,
                  preprocess: Preprocess | None, chosen: str = "id",
                  final: FinalChoice | None = None) -> dict[str, Any]:
    """Everything the manifest says besides the checksums: who, from where, what it expects,
    how good and by whose measure, lineage."""
    evaluation, info = store.evaluation(id), analyze(genome)
    fitness, trains = run_fitness(store)
    weights = "run" if retrained is None else (
        "retrained from scratch" if retrained["from_scratch"] else "fine-tuned")
    extra = ("onnx", "onnxruntime") if fmt == "onnx" else ()
    out = {"individual": id, "chosen": chosen, "run_id": store.run_id,
           "genome_hash": genome.hash, "arch_hash": genome.arch_hash,
           "input_shape": list(genome.input_node.get("shape")),
           "num_classes": genome.output_node.get("num_classes"), "params": info.params,
           "flops": info.flops, "fitness": evaluation.fitness, "metrics": evaluation.metrics,
           "run_fitness": {"name": fitness, "trains_reported_weights": trains},
           "figures": figures(evaluation.metrics, fitness, trains, retrained),
           "preprocess": None if preprocess is None else preprocess.to_dict(),
           "dataset": store.config.get("dataset", {}).get("name"),
           "space": store.config.get("space", {}).get("name"), "weights": weights,
           "retrain": retrained, "lineage": lineage(store, id),
           "versions": library_versions(*extra)}
    return out if final is None else with_final(out, final, fitness, trains, retrained)


def with_final(info: dict[str, Any], final: FinalChoice, fitness: str, trains: bool,
               retrained: dict | None) -> dict[str, Any]:
    """The manifest of the final selection's pick: its ``final`` record; figures of the
    selection, of the exported retraining and of the search (``search_*``); ``fitness`` and
    ``metrics`` those of the exported retraining, the search's kept as ``search_*``."""
    row, ours = final.exported, trains and retrained is None
    info = {**info, "final": final_record(final), "search_fitness": info["fitness"],
            "search_metrics": info["metrics"],
            "figures": {**final_figures(final, info["metrics"], fitness, ours, FIGURES),
                        **retrained_figures(retrained)}}
    if row is not None:
        info.update(fitness=row.fitness, metrics=row.metrics)
        if retrained is None and trains:
            info["weights"] = f"final selection retraining ({final.seed_words(row)})"
    return info


def export_one(store: RunStore, id: int, out: Output, target: Path, *, train_epochs: float = 0,
               from_scratch: bool = False, seed: int = 0, device: str = "cpu",
               overwrite: bool = False, chosen: str = "id",
               final: FinalChoice | None = None) -> ExportResult:
    """Rebuild, (re)train if asked or needed, write and verify one individual (``final``:
    the final selection's pick, shipped with its retrained weights)."""
    genome = stored_genome(store, id)
    module, retrained = weights_to_ship(store, id, genome, train_epochs, from_scratch, seed,
                                        device, final)
    preprocess = run_preprocess(store)
    info = manifest_info(store, id, genome, retrained, out.format, preprocess, chosen, final)
    what = "The final selection's pick, individual" if final else "Individual"
    note = (f"{what} {id} of run {store.run_id}; training genes in GENES; "
            f"weights: {info['weights']}.")
    art = Artifact.of(genome, module, note=note, preprocess=preprocess, info=info)
    manifest = publish(lambda folder: WRITERS[out.format](art, folder), out.format, target,
                       info, overwrite, out.as_file)
    return ExportResult(id, target, out.format, manifest)


# -- the API --------------------------------------------------------------------------------------

def export_results(run_dir: str | Path, *, best: bool = False, id: int | None = None,
                   pareto: bool = False, evolved: bool = False, format: str | None = None,
                   output: str | Path | None = None, train_epochs: float = 0,
                   from_scratch: bool = False, seed: int = 0, device: str = "cpu",
                   overwrite: bool = False) -> list[ExportResult]:
    """:func:`export`, returning the manifests too (the CLI prints from them)."""
    out = resolve(format, output, pareto, FORMATS)
    if train_epochs < 0 or (from_scratch and not train_epochs):
        raise ExportError("train_epochs must be positive (from_scratch needs it too)")
    with RunStore.open(run_dir, readonly=True) as store:
        ids = choose(store, best, id, pareto, evolved)
        final = None if evolved or pareto or id is not None else final_choice(store)
        ids = [final.id] if final else ids
        chosen = ("final-selection pick" if final else "pareto front" if pareto else
                  "id" if id is not None else "search's best by validation")
        name = f"{ids[0]}-final" if final else str(ids[0])
        base = out.path or store.run_dir / "exports" / (
            f"pareto-{out.format}" if pareto else f"{name}-{out.format}")
        targets = {i: base / str(i) if pareto else base for i in ids}
        for i in ids:  # refuse before training or writing anything
            replaceable(targets[i], overwrite, out.as_file)
        results = [export_one(store, i, out, targets[i], train_epochs=train_epochs,
                              from_scratch=from_scratch, seed=seed, device=device,
                              overwrite=overwrite, chosen=chosen, final=final) for i in ids]
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
           pareto: bool = False, evolved: bool = False, format: str | None = None,
           output: str | Path | None = None, train_epochs: float = 0,
           from_scratch: bool = False, seed: int = 0, device: str = "cpu",
           overwrite: bool = False) -> list[Path]:
    """Export individuals of a run; returns the folder (or file) of each.

    Choose with ``best`` (default), ``id`` or ``pareto``. In a run with a finished final
    selection, ``best`` is its pick with the representative seed's retrained weights
    (:mod:`.pick`); ``evolved=True`` takes the search's best by validation with its evolved
    weights instead. ``format`` is bundle (default),
    python, pt2 or onnx, or follows from ``output``'s suffix (``model.onnx``, ``model.pt2``:
    one file); ``output`` defaults to ``RUN_DIR/exports/<id>-<format>``
    (``<id>-final-<format>`` for the pick, ``pareto-<format>/<id>``). ``train_epochs`` trains further on train+val before export
    (from scratch if ``from_scratch``), seeded by ``seed`` and the individual's id, on
    ``device``; for a run whose fitness does not train its weights it is required, and trains
    from scratch with ``sgd`` on the run's splits."""
    return [r.path for r in export_results(
        run_dir, best=best, id=id, pareto=pareto, evolved=evolved, format=format, output=output,
        train_epochs=train_epochs, from_scratch=from_scratch, seed=seed, device=device,
        overwrite=overwrite)]


def load_model(path: str | Path, *, device: str | torch.device | None = None) -> torch.nn.Module:
    """Load an exported model after verifying it; eval mode, no pickle.

    Reads ``bundle`` exports (an ordinary ``GenomeModule``), ``pt2`` exports and single ``.pt2``
    files (the ExportedProgram's module, frozen in inference mode). The model gets the run's
    input preprocessing as ``model.preprocess(raw)``: raw samples (as its manifest's
    ``preprocess.raw`` says) to model inputs, exactly as the run's loader made them. ``python``
    exports are loaded with their own ``model.py``, ``onnx`` ones with onnxruntime."""
    path = Path(path)
    if path.suffix.lower() in (".pt2", ".onnx") and path.is_file():
        return _load_file(path)
    manifest = verify_export(path)
    folder = path.parent if path.name == MANIFEST else path
    kind = manifest["export_format"]
    if kind == "bundle":
        module = load_bundle_files(folder)
        module = module.to(device) if device is not None else module
    elif kind == "pt2":
        module = load_pt2(folder / "model.pt2")
    else:
        hint = "`from model import load` in that folder" if kind == "python" else "onnxruntime"
        raise ExportError(f"{folder}: a {kind} export is loaded with {hint}; load_model reads "
                          "bundle and pt2 exports")
    return _with_preprocess(module, manifest.get("preprocess"), folder / MANIFEST)


def _load_file(path: Path) -> torch.nn.Module:
    """A single-file export: a ``.pt2`` archive (screened; its embedded information read)."""
    if path.suffix.lower() == ".onnx":
        raise ExportError(f"{path}: an ONNX file is loaded with onnxruntime; its metadata_props "
                          "evograph.preprocess says how to prepare raw inputs")
    info = read_pt2_info(path)
    if info is None:
        raise ExportError(f"{path}: not an evograph export (no embedded evograph.json)")
    return _with_preprocess(load_pt2(path), info.get("preprocess"), path)


def _with_preprocess(module: torch.nn.Module, record: Any, where: Path) -> torch.nn.Module:
    """``module`` with ``module.preprocess(raw)``: the run's recipe, or an error saying that
    the run did not record one."""
    recipe = None if record is None else Preprocess.from_dict(record, f"{where}: preprocess")

    def preprocess(raw: Any) -> torch.Tensor:
        if recipe is None:
            raise ExportError(f"{where}: the run did not record its input preprocessing; feed "
                              "inputs as its dataset loader made them")
        return recipe.apply(raw)

    module.preprocess = preprocess
    return module
