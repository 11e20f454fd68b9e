"""Exports say what they expect: RAW dataset samples (scikit-learn's 0..16 digits, MNIST-1D's
generated signals) go through each export format's own preprocessing — model.py's
``preprocess``, ``load_model(...).preprocess``, the ONNX metadata — and give the run's test
accuracy as evograph measured it for the same weights. Also: model.py finds its weights beside
itself, and two exports import side by side from another directory."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from evograph.compile import build
from evograph.compile.training.sgd import SGDTraining
from evograph.data.preprocess import Preprocess
from evograph.genome import get_space
from evograph.genome.io import from_dict, to_dict
from evograph.runs.config import load_config
from evograph.runs.driver import create_run
from evograph.runs.export.api import export, load_model
from evograph.runs.export.standalone import import_file
from evograph.runs.export.training import run_dataset
from evograph.runs.store import RunStore

from ...data.test_preprocess import raw_split

ROOT = Path(__file__).resolve().parents[3]
FORMATS = ("bundle", "python", "pt2", "onnx")
SETTINGS = ["executor.name=serial", "budget.minutes=0", "budget.evaluations=1"]


def raw_pool(name: str, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The dataset's samples as its source makes them, before evograph touches them."""
    if name == "digits":
        from sklearn.datasets import load_digits
        bunch = load_digits()
        return bunch.images, bunch.target
    from mnist1d.data import get_dataset_args, make_dataset
    args = get_dataset_args()
    args.seed = seed
    state = np.random.get_state()
    generated = make_dataset(args)
    np.random.set_state(state)
    return (np.concatenate([generated["x"], generated["x_test"]]),
            np.concatenate([generated["y"], generated["y_test"]]))


def trained_run(run_dir: Path, config_name: str, input_shape: tuple[int, ...]) -> dict:
    """A run created the real way (its "created" event stores the preprocessing), holding one
    MLP trained and scored by the real ``sgd`` fitness, as a worker would record it."""
    config = load_config(ROOT / f"runs/configs/{config_name}.toml", SETTINGS)
    run_dir = create_run(config, run_dir)
    genome = get_space("mlp").sample(np.random.default_rng(1), input_shape, 10).with_genes(
        optimizer="adam", learning_rate=0.003, batch_size=32, weight_decay=0.0)
    with RunStore.open(run_dir) as store:
        data = run_dataset(store)
        module = build(genome, seed=1)
        score = SGDTraining(epochs=8).score(module, genome, data, seed=1,
                                            device=torch.device("cpu"))
        store.add_batch(0, [{"id": 0, "genome": to_dict(genome), "seed": 1,
                             "genome_hash": genome.hash, "parents": [], "edit": None}], {})
        weights = store.write_weights(0, module.state_dict())
        store.record_result(0, "completed", score.fitness, score.metrics, weights=weights)
    return {"run_dir": run_dir, "data": data, "metrics": score.metrics}


@pytest.fixture(scope="module", params=[("digits", (1, 8, 8)), ("mnist1d", (1, 40))],
                ids=["digits", "mnist1d"])
def exported(request, tmp_path_factory):
    """One trained run per dataset, exported in every format, and its raw test samples."""
    name, shape = request.param
    base = tmp_path_factory.mktemp(name)
    run = trained_run(base / "run", name, shape)
    run["paths"] = {fmt: export(run["run_dir"], format=fmt, output=base / fmt)[0]
                    for fmt in FORMATS}
    raw, labels = raw_pool(name, seed=0)
    data = run["data"]
    run["raw"] = raw_split(data.x_test, data.y_test, raw, labels, data.preprocess)
    run["labels"] = data.y_test
    return run


def accuracy(logits, labels) -> float:
    logits = torch.as_tensor(np.asarray(logits))
    return (logits.argmax(1) == labels).double().mean().item()


def predict_all_formats(run, cwd: Path) -> dict[str, float]:
    """Each export fed the raw test samples through its own preprocessing (from ``cwd``)."""
    import onnxruntime
    raw, paths, out = run["raw"], run["paths"], {}
    os.chdir(cwd)
    model = import_file(paths["python"] / "model.py")       # by path, from elsewhere
    with torch.no_grad():
        out["python"] = accuracy(model.load()(model.preprocess(raw)), run["labels"])
        for fmt in ("bundle", "pt2"):
            loaded = load_model(paths[fmt])
            out[fmt] = accuracy(loaded(loaded.preprocess(raw)), run["labels"])
    session = onnxruntime.InferenceSession(str(paths["onnx"] / "model.onnx"))
    record = json.loads(session.get_modelmeta().custom_metadata_map["evograph.preprocess"])
    x = Preprocess.from_dict(record).apply(raw).numpy()
    out["onnx"] = accuracy(session.run(None, {"x": x})[0], run["labels"])
    return out


@pytest.mark.slow
def test_raw_samples_through_every_format_give_the_runs_test_accuracy(exported, tmp_path,
                                                                      monkeypatch):
    monkeypatch.chdir(tmp_path)
    figure = exported["metrics"]["test_accuracy"]
    assert figure > 0.6  # a trained network, so that wrong inputs would show
    got = predict_all_formats(exported, tmp_path)
    assert got.keys() == set(FORMATS)
    for fmt, value in got.items():
        assert abs(value - figure) <= 1e-6, (fmt, value, figure)
    prepared = exported["data"].x_test   # and the samples fed were really raw
    unprepared = torch.as_tensor(exported["raw"], dtype=torch.float32).reshape(prepared.shape)
    assert not torch.equal(unprepared, prepared)


@pytest.mark.slow
def test_every_format_carries_the_runs_preprocessing(exported):
    stored = exported["data"].preprocess.to_dict()
    for fmt, path in exported["paths"].items():
        manifest = json.loads((path / "manifest.json").read_text())
        assert manifest["preprocess"] == stored, fmt
    model_py = (exported["paths"]["python"] / "model.py").read_text()
    assert "def preprocess(raw)" in model_py and "PREPROCESS = {" in model_py
    assert "net = load()" in model_py and 'load("model.safetensors")' not in model_py
    assert repr(stored["divide_by"]) in model_py


def run_model(run_dir: Path, id: int = 0) -> torch.nn.Module:
    """The run's own module: the stored genome with the stored weights."""
    with RunStore.open(run_dir, readonly=True) as store:
        module = build(from_dict(store.individual(id).genome))
        module.load_state_dict(store.read_weights(id))
    return module.eval()


def test_two_model_py_exports_import_side_by_side_from_another_directory(tmp_path,
                                                                        monkeypatch):
    run = trained_run(tmp_path / "run", "digits", (1, 8, 8))
    first = export(run["run_dir"], format="python", output=tmp_path / "a")[0]
    second = export(run["run_dir"], format="python", output=tmp_path / "b", train_epochs=1,
                    from_scratch=True)[0]
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    one, two = import_file(first / "model.py"), import_file(second / "model.py")
    x = run["data"].x_test[:7]
    with torch.no_grad():
        a, b = one.load()(x), two.load()(x)
        assert torch.equal(a, run_model(run["run_dir"])(x))
    assert not torch.equal(a, b)  # each found its OWN weights, beside its file
    assert one.preprocess is not two.preprocess and list(elsewhere.iterdir()) == []
