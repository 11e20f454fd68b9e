"""Which weights an export ships and which figures belong to them.

A run's figures come from its fitness generator. Most train the weights they score (``sgd``, the
learned optimizer): those weights ship under those figures. Some do not — a table lookup (no
weights at all), SMASH's generated weights, a static hypernetwork's, ENAS's shared ones — and say
so with ``weights_trained = False``
(:func:`evograph.compile.training.fitness.trains_reported_weights`). Their genomes are exported
only with ``--train``: trained from scratch by the ``sgd`` fitness on the run's own splits, and
the manifest gives the retrained figures beside the run's, each with what produced it.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import torch

from ... import meta as _meta  # noqa: F401  (registers the meta-learners' fitness generators)
from ...compile.builder import GenomeModule, build
from ...compile.determinism import use_deterministic_kernels
from ...compile.training.fitness import FITNESS, trains_reported_weights
from ...compile.training.sgd import SGDTraining, evaluate, train_steps
from ...data.datasets import Dataset, load_dataset
from ...data.preprocess import Preprocess
from ...errors import EvographError, ExportError
from ...genome.core import Genome
from ...genome.io import from_dict
from ...selection.base import derive_seed
from ..config import config_from_dict
from ..store import RunStore
from .bundle import load_state
from .names import DEFAULT_TRAIN_EPOCHS

FIGURES = ("val_accuracy", "val_loss", "test_accuracy", "test_loss")


def run_fitness(store: RunStore) -> tuple[str, bool]:
    """The run's fitness generator and whether it trains the weights it reports (an unknown
    generator, e.g. a plug-in of another process, is taken to train them)."""
    name = str(store.config.get("fitness", {}).get("name", "sgd"))
    return name, trains_reported_weights(FITNESS.get(name))


def untrained(store: RunStore, id: int, fitness: str) -> ExportError:
    """The one line refusing to ship weights that the run's figures do not belong to."""
    return ExportError(
        f"run {store.run_dir} was scored by the {fitness!r} fitness, which does not train the "
        f"weights it reports, so individual {id} has no weights its accuracy belongs to; train "
        f"it first: evograph export {store.run_dir} --id {id} --train [EPOCHS] (from scratch "
        f"with sgd on the run's data, default {DEFAULT_TRAIN_EPOCHS:g} epochs; train_epochs= "
        "in Python)")


def run_dataset(store: RunStore) -> Dataset:
    """The run's dataset with its own splits (same seed, fractions and limit as the run)."""
    config = config_from_dict(store.config, source=f"{store.run_dir}/config")
    d = config.dataset
    return load_dataset(d.name, seed=config.seed, root=d.root or None, download=d.download,
                        val_fraction=d.val_fraction, test_fraction=d.test_fraction,
                        limit=d.limit or None)


def run_preprocess(store: RunStore) -> Preprocess | None:
    """The input preprocessing stored with the run (its "created" event); recomputed from the
    stored dataset config for a run created before it was stored."""
    where = f"run {store.run_dir}: the stored preprocessing"
    for event in store.events("created"):
        dataset = (event.get("data") or {}).get("dataset")
        if isinstance(dataset, dict) and "preprocess" in dataset:
            record = dataset["preprocess"]
            return None if record is None else Preprocess.from_dict(record, where)
    try:
        return run_dataset(store).preprocess
    except EvographError as exc:
        raise ExportError(f"run {store.run_dir} predates stored preprocessing and its dataset "
                          f"cannot be loaded to recompute it ({exc})") from None


def run_module(store: RunStore, id: int, genome: Genome) -> GenomeModule:
    """The individual's module with the run's weights (a pruned file is said to be pruned)."""
    evaluation = store.evaluation(id)
    if evaluation.status != "completed" or not evaluation.weights:
        if store.weights_pruned(id):
            raise ExportError(store.pruned_message(id))
        raise ExportError(f"individual {id} of run {store.run_dir} has no trained weights "
                          f"(evaluation {evaluation.status})")
    module = build(genome, seed=store.individual(id).seed or 0)
    load_state(module, store.read_weights(id), store.weights_file(id))
    return module


def stored_genome(store: RunStore, id: int) -> Genome:
    return from_dict(store.individual(id).genome, f"individual {id}")


def sgd_from_scratch(store: RunStore, id: int, genome: Genome, epochs: float, seed: int,
                     device: torch.device) -> tuple[GenomeModule, dict[str, Any]]:
    """Train ``genome`` from fresh weights with the ``sgd`` fitness on the run's own splits
    (train; validation and test scored), for a run whose figures belong to no weights."""
    use_deterministic_kernels(device)
    data, train_seed = run_dataset(store), derive_seed(seed, id)
    module = build(genome, seed=train_seed, device=device)
    score = SGDTraining(epochs=float(epochs)).score(module, genome, data, seed=train_seed,
                                                    device=device)
    if score.status != "completed":
        raise ExportError(f"training individual {id} from scratch failed "
                          f"({score.metrics.get('reason')}); nothing was exported")
    by = f"export --train (sgd, {epochs:g} epochs from scratch on the run's train split)"
    return module.to("cpu").eval(), {
        "by": by, "epochs": epochs, "from_scratch": True, "seed": train_seed, "data": "train",
        "figures": {k: score.metrics[k] for k in FIGURES},
        "loss_curve": score.metrics["loss_curve"]}


def further(store: RunStore, id: int, genome: Genome, epochs: float, from_scratch: bool,
            seed: int, device: torch.device, start: GenomeModule | None = None,
            origin: str = "the run's weights") -> tuple[GenomeModule, dict[str, Any]]:
    """Train for ``epochs`` more passes over train+val (from fresh weights if
    ``from_scratch``); test accuracy before (the run's weights, if kept, or ``start``: the
    weights it starts from, described by ``origin``) and after."""
    use_deterministic_kernels(device)
    data = run_dataset(store)
    joined = dataclasses.replace(data, x_train=torch.cat([data.x_train, data.x_val]),
                                 y_train=torch.cat([data.y_train, data.y_val]))
    before: tuple[float | None, float | None] = (None, None)
    if start is not None or not from_scratch or store.evaluation(id).weights:
        module = (start if start is not None else run_module(store, id, genome)).to(device)
        before = evaluate(module, data.x_test, data.y_test, device)
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
    begun = "from scratch" if from_scratch else f"from {origin}"
    return module.to("cpu").eval(), {
        "by": f"export --train (sgd, {epochs:g} epochs on train+val {begun})",
        "epochs": epochs, "steps": steps, "from_scratch": from_scratch, "seed": train_seed,
        "data": "train+val", "test_accuracy_before": before[0], "test_loss_before": before[1],
        "test_accuracy_after": after[0], "test_loss_after": after[1],
        "figures": {"test_accuracy": after[0], "test_loss": after[1]}, "loss_curve": curve}


def figures(metrics: dict[str, Any], fitness: str, trains: bool,
            retrained: dict[str, Any] | None) -> dict[str, dict[str, Any]]:
    """Each figure with what produced it and whether it was measured on the exported weights:
    the run's (``by`` its fitness) and, after ``--train``, the retrained ones."""
    ours = trains and retrained is None
    out = {key: {"value": metrics[key], "by": fitness, "of_exported_weights": ours}
           for key in FIGURES if isinstance(metrics.get(key), (int, float))}
    return {**out, **retrained_figures(retrained)}


def retrained_figures(retrained: dict[str, Any] | None) -> dict[str, dict[str, Any]]:
    """The figures of ``--train`` (``retrained_*``), measured on the exported weights."""
    return {f"retrained_{key}": {"value": value, "by": retrained["by"],
                                 "of_exported_weights": True}
            for key, value in (retrained or {}).get("figures", {}).items()}
