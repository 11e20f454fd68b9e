"""Where an export goes: ``-o model.onnx`` / ``-o model.pt2`` write exactly that one file (with
the manifest's information inside), a folder is made only when ``-o`` names one, and bad input
(unknown format, missing run, mismatched or unwritable ``-o``) is one line with nothing written."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from evograph.errors import ExportError
from evograph.runs.cli.main import main
from evograph.runs.export.api import FORMATS, export, load_model
from evograph.runs.export.bundle import MANIFEST
from evograph.runs.export.names import FORMATS as CLI_FORMATS
from evograph.runs.export.target import names_folder
from evograph.runs.store import RunStore

from .test_export import CHILD, TRIVIAL, fixed_batch, make_run, reference


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    return make_run(tmp_path_factory.mktemp("targets") / "run")


def test_the_cli_knows_the_registered_formats():
    assert CLI_FORMATS == FORMATS


@pytest.mark.parametrize("text, folder", [
    ("model.onnx", False), ("out/model.pt2", False), ("deploy", True), ("deploy/", True),
    ("v1.2/", True), ("my_model.d", False)])
def test_what_names_a_folder(text, folder):
    assert names_folder(text) is folder


def test_onnx_file_output_writes_that_one_file(run_dir, tmp_path, capsys):
    import onnxruntime
    target = tmp_path / "model.onnx"
    assert main(["export", str(run_dir), "--id", str(TRIVIAL), "--format", "onnx", "-o",
                 str(target)]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx"]
    assert f"-> onnx in {target}" in capsys.readouterr().out
    session = onnxruntime.InferenceSession(str(target))
    meta = session.get_modelmeta().custom_metadata_map
    info = json.loads(meta["evograph.export"])
    assert info["individual"] == TRIVIAL and json.loads(meta["evograph.preprocess"]) == \
        info["preprocess"] and info["preprocess"]["divide_by"] == 16.0
    x = fixed_batch()
    got = torch.from_numpy(session.run(None, {"x": x.numpy()})[0])
    assert (got - reference(run_dir, TRIVIAL, x)).abs().max() <= 1e-5


def test_pt2_file_output_infers_its_format_and_loads_with_its_preprocessing(run_dir,
                                                                            tmp_path):
    [path] = export(run_dir, id=CHILD, output=tmp_path / "child.pt2")
    assert path == tmp_path / "child.pt2" and path.is_file()
    assert [p.name for p in tmp_path.iterdir()] == ["child.pt2"]
    model = load_model(path)
    x = fixed_batch()
    assert torch.equal(model(x), reference(run_dir, CHILD, x))
    assert torch.equal(model.preprocess(x.numpy() * 16), x)


@pytest.mark.parametrize("output", ["deploy", "deploy/"])
def test_folder_output_makes_a_folder(run_dir, tmp_path, output):
    [path] = export(run_dir, id=TRIVIAL, format="onnx", output=f"{tmp_path}/{output}")
    assert path.is_dir() and {p.name for p in path.iterdir()} == {"model.onnx", MANIFEST}


def test_an_existing_file_is_replaced_only_with_force_and_only_if_ours(run_dir, tmp_path):
    target = tmp_path / "m.onnx"
    export(run_dir, id=TRIVIAL, output=target)
    with pytest.raises(ExportError, match="already exists"):
        export(run_dir, id=CHILD, output=target)
    export(run_dir, id=CHILD, output=target, overwrite=True)
    foreign = tmp_path / "theirs.pt2"
    foreign.write_bytes(b"not ours")
    with pytest.raises(ExportError, match="not an evograph export"):
        export(run_dir, id=CHILD, output=foreign, overwrite=True)
    assert foreign.read_bytes() == b"not ours"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx", "theirs.pt2"]


@pytest.mark.parametrize("args, message", [
    (["--format", "tflite"], "unknown export format 'tflite'"),
    (["--format", "pt2", "-o", "{tmp}/model.onnx"], "a pt2 file ends in .pt2"),
    (["-o", "{tmp}/best.zip"], "a bundle export is a folder, not one file"),
    (["--format", "python", "-o", "{tmp}/model.py"], "a python export is a folder"),
    (["--pareto", "-o", "{tmp}/front.onnx"], "--pareto writes one export per individual"),
    (["-o", "{tmp}/a-file/model.onnx"], "cannot write the export to"),
])
def test_bad_input_is_one_line_and_writes_nothing(run_dir, tmp_path, capsys, args, message):
    (tmp_path / "a-file").write_text("a file, not a folder")
    argv = ["export", str(run_dir), "--id", str(TRIVIAL),
            *[a.format(tmp=tmp_path) for a in args]]
    if "--pareto" in args:
        argv.remove("--id")
        argv.remove(str(TRIVIAL))
    assert main(argv) == 2
    error = capsys.readouterr().err
    assert error.startswith("evograph: error:") and message in error and error.count("\n") == 1
    assert [p.name for p in tmp_path.iterdir()] == ["a-file"]


def test_a_missing_run_is_one_line(tmp_path, capsys):
    assert main(["export", str(tmp_path / "nowhere"), "-o", str(tmp_path / "m.onnx")]) == 2
    error = capsys.readouterr().err
    assert "not an evograph run directory" in error and error.count("\n") == 1


def test_a_run_created_before_preprocessing_was_stored_gets_it_recomputed(run_dir, tmp_path):
    from evograph.data.datasets import load_dataset
    with RunStore.open(run_dir, readonly=True) as store:  # made without a "created" event
        assert store.events("created") == []
    [path] = export(run_dir, id=TRIVIAL, output=tmp_path / "old")
    assert load_model(path).preprocess(np.full((2, 8, 8), 8.0)).unique().tolist() == [0.5]
    recipe = json.loads((path / MANIFEST).read_text())["preprocess"]
    assert recipe == load_dataset("digits").preprocess.to_dict()
