"""Export: every format reloads (in a fresh process, without evograph where promised) to the run's
model; tampered exports are refused; choosing, retraining, the CLI and the folder discipline."""

import hashlib
import json
import os
import pickle
import shutil
import subprocess
import sys
import sysconfig
import textwrap
import zipfile
from pathlib import Path

import evograph
import numpy as np
import pytest
import torch
from evograph.compile import build
from evograph.errors import ExportError
from evograph.genome import get_space
from evograph.genome.io import to_dict
from evograph.runs.cli.main import main
from evograph.runs.config import load_config
from evograph.runs.export import formats as export_formats
from evograph.runs.export.api import export, export_results, load_model, pareto_ids
from evograph.runs.export.bundle import (
    FILES,
    MANIFEST,
    make_manifest,
    manifest_text,
    read_safetensors,
    verify_export,
)
from evograph.runs.export.formats import WRITERS, Artifact
from evograph.runs.store import RunStore
from safetensors.torch import load_file, save, save_file

from ...compile.test_codegen import merge_genome
from ...conftest import SHAPES_BY_FAMILY

ROOT = Path(__file__).resolve().parents[3]
TINY = ["dataset.limit=300", "final.share=0", "space.channels=[1,64]", "executor.name=serial"]
MERGED, CHILD, MLP, TRIVIAL, INFEASIBLE, DOMINATED = range(6)


def sampled_with_merge(space, shape, seed=0):
    rng = np.random.default_rng(seed)
    while True:
        genome = space.sample(rng, shape, 10)
        if len(genome.edges) >= len(genome.nodes):  # a skip edge, hence a merge
            return genome


def run_genomes():
    conv, mlp = get_space("lse-conv"), get_space("mlp")
    child = sampled_with_merge(conv, (1, 8, 8))
    big = mlp.sample(np.random.default_rng(1), (1, 8, 8), 10)
    return {MERGED: (merge_genome(), (), 0.8), CHILD: (child, (MERGED,), 0.6),
            MLP: (big, (), 0.95), TRIVIAL: (conv.initial_genome(None, (1, 8, 8), 10), (), 0.3),
            INFEASIBLE: (merge_genome().with_genes(learning_rate=0.5), (MERGED,), None),
            DOMINATED: (big.with_genes(learning_rate=0.002), (MLP, CHILD), 0.5)}


def trained_state(genome, seed):
    """Weights as a run would store them, with non-trivial batch-norm statistics."""
    module = build(genome, seed=seed)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in module.state_dict().items():
            if name.endswith(("running_mean", "running_var")):
                tensor.copy_(torch.rand(tensor.shape, generator=gen) + 0.5)
    return module.state_dict()


def make_run(run_dir):
    """A real run store holding hand-picked individuals (skips and merges, both spaces)."""
    config = load_config(ROOT / "runs/configs/digits.toml", TINY)
    with RunStore.create(run_dir, config.to_dict(), "test-fingerprint") as store:
        for id, (genome, parents, accuracy) in run_genomes().items():
            edit = {"mutation": "identity" if parents else None, "inherit": True}
            store.add_batch(id, [{"id": id, "genome": to_dict(genome), "seed": id,
                                  "genome_hash": genome.hash, "parents": list(parents),
                                  "edit": edit}], {})
            if accuracy is None:
                store.record_result(id, "infeasible", None, {"reason": "test"})
                continue
            weights = store.write_weights(id, trained_state(genome, id))
            params = sum(t.numel() for t in build(genome).parameters())
            store.record_result(id, "completed", accuracy,
                                {"val_accuracy": accuracy, "test_accuracy": accuracy - 0.05,
                                 "params": params}, weights=weights)
    return run_dir


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    return make_run(tmp_path_factory.mktemp("export") / "run")


def reference(run_dir, id, x):
    """The run's model (compiled genome + stored weights) on ``x``."""
    with RunStore.open(run_dir, readonly=True) as store:
        module = build(evograph.genome.io.from_dict(store.individual(id).genome))
        module.load_state_dict(store.read_weights(id))
    with torch.no_grad():
        return module.eval()(x)


def fixed_batch(shape=(1, 8, 8), n=5):
    return torch.randn(n, *shape, generator=torch.Generator().manual_seed(42))


@pytest.fixture(scope="module")
def exports(run_dir, tmp_path_factory):
    """Individual MERGED exported in every format."""
    out = tmp_path_factory.mktemp("formats")
    return {fmt: export(run_dir, id=MERGED, format=fmt, output=out / fmt)[0] for fmt in WRITERS}


@pytest.fixture(scope="module")
def bundle(run_dir, tmp_path_factory):
    return export(run_dir, id=CHILD, output=tmp_path_factory.mktemp("bundle") / "b")[0]


# -- every format, reloaded --------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("fmt", sorted(WRITERS))
def test_every_format_is_verified_and_complete(exports, fmt):
    folder = exports[fmt]
    manifest = verify_export(folder)
    assert {p.name for p in folder.iterdir()} == {*FILES[fmt], MANIFEST}  # onnx: ONE file
    assert manifest["export_format"] == fmt and manifest["individual"] == MERGED
    assert manifest["verification"]["max_abs_diff"] <= (1e-5 if fmt == "onnx" else 0.0)
    assert {"torch", "safetensors", "python", "evograph"} <= set(manifest["versions"])


def run_python(code, cwd, evograph_importable):
    """Run ``code`` in a fresh interpreter; without evograph on its path unless asked."""
    purelib = sysconfig.get_paths()["purelib"]
    prelude = (f"import sys, importlib.util\nsys.path[:0] = [{purelib!r}, '.']\n"
               f"assert (importlib.util.find_spec('evograph') is not None) == "
               f"{evograph_importable}\n")
    flags = [] if evograph_importable else ["-I", "-S"]  # -S: no .pth, so no editable finder
    done = subprocess.run([sys.executable, *flags, "-c", prelude + textwrap.dedent(code)],
                          cwd=cwd, capture_output=True, text=True, timeout=300, check=False,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


@pytest.mark.slow
def test_python_pt2_onnx_load_where_evograph_cannot_be_imported(run_dir, exports, tmp_path):
    x = fixed_batch()
    save_file({"x": x}, tmp_path / "x.safetensors")
    out = json.loads(run_python(f"""
        import json, torch, onnxruntime
        from safetensors.torch import load_file, save_file
        torch.set_num_threads(1)
        x = load_file({str(tmp_path / 'x.safetensors')!r})["x"]
        from model import load, EvolvedNet               # the python export, cwd
        net = load("model.safetensors")
        assert isinstance(net, torch.nn.Module) and not net.training
        program = torch.export.load({str(exports['pt2'] / 'model.pt2')!r}).module()
        session = onnxruntime.InferenceSession({str(exports['onnx'] / 'model.onnx')!r})
        with torch.no_grad():
            outs = {{"python": net(x), "pt2": program(x), "pt2_one": program(x[:1]),
                    "onnx": torch.from_numpy(session.run(None, {{"x": x.numpy()}})[0])}}
        save_file(outs, {str(tmp_path / 'out.safetensors')!r})
        net.train()                                      # and it keeps training
        y = torch.arange(len(x)) % 10
        opt = torch.optim.SGD(net.parameters(), lr=0.05)
        losses = []
        for _ in range(6):
            loss = torch.nn.functional.cross_entropy(net(x), y)
            opt.zero_grad(); loss.backward(); opt.step(); losses.append(loss.item())
        print(json.dumps(losses))
        """, exports["python"], evograph_importable=False))
    assert out[-1] < out[0]
    got, ref = load_file(tmp_path / "out.safetensors"), reference(run_dir, MERGED, x)
    assert torch.equal(got["python"], ref) and torch.equal(got["pt2"], ref)
    assert torch.equal(got["pt2_one"], reference(run_dir, MERGED, x[:1]))
    assert (got["onnx"] - ref).abs().max() <= 1e-5


@pytest.mark.slow
def test_bundle_loads_in_a_fresh_process(run_dir, exports, tmp_path):
    x = fixed_batch()
    save_file({"x": x}, tmp_path / "x.safetensors")
    run_python(f"""
        import torch, evograph
        from safetensors.torch import load_file, save_file
        model = evograph.load_model({str(exports['bundle'])!r})
        assert not model.training
        with torch.no_grad():
            y = model(load_file({str(tmp_path / 'x.safetensors')!r})["x"])
        save_file({{"y": y}}, {str(tmp_path / 'y.safetensors')!r})
        """, tmp_path, evograph_importable=True)
    assert torch.equal(load_file(tmp_path / "y.safetensors")["y"], reference(run_dir, MERGED, x))


def genomes_of_both_spaces():
    yield merge_genome()
    for name in ("lse-conv", "mlp"):
        space = get_space(name)
        for shape in SHAPES_BY_FAMILY[space.family]:
            yield (sampled_with_merge(space, shape, seed=len(shape))
                   if space.family == "conv" else space.sample(np.random.default_rng(0), shape, 10))


@pytest.mark.slow
def test_pt2_and_onnx_export_genomes_of_both_spaces(tmp_path):
    """Adaptive pooling (8x8 -> 4x4 and odd sizes), zero-padding, truncation, 1-D signals and
    flat MLPs: every writer's own read-back check passes (bit-identical pt2, ONNX <= 1e-5)."""
    for i, genome in enumerate(genomes_of_both_spaces()):
        art = Artifact.of(genome, build(genome, seed=i))
        for fmt in ("pt2", "onnx"):
            folder = tmp_path / f"{i}-{fmt}"
            folder.mkdir()
            record = WRITERS[fmt](art, folder)
            assert record["max_abs_diff"] <= (1e-5 if fmt == "onnx" else 0.0), (genome, fmt)


# -- loading -------------------------------------------------------------------------------------

def test_load_model_returns_the_run_model_in_eval_mode(run_dir, bundle):
    x = fixed_batch()
    for path in (bundle, bundle / MANIFEST):
        model = load_model(path)
        assert isinstance(model, torch.nn.Module) and not model.training
        with torch.no_grad():
            assert torch.equal(model(x), reference(run_dir, CHILD, x))


def test_package_api_is_the_export_module():
    assert evograph.export is export and evograph.load_model is load_model


@pytest.mark.slow
def test_load_model_reads_pt2_and_names_the_loader_of_other_formats(run_dir, exports):
    x = fixed_batch()
    assert torch.equal(load_model(exports["pt2"])(x), reference(run_dir, MERGED, x))
    with pytest.raises(ExportError, match="from model import load"):
        load_model(exports["python"])
    with pytest.raises(ExportError, match="onnxruntime"):
        load_model(exports["onnx"])


# -- tampering -----------------------------------------------------------------------------------

class Payload:
    """A pickle that would create a marker file if anything ever unpickled it."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


def resign(folder):
    """Recompute every checksum, as an attacker (or a careless tool) rewriting files would."""
    manifest = json.loads((folder / MANIFEST).read_text())
    info = {k: v for k, v in manifest.items()
            if k not in ("format", "format_version", "export_format", "files", "manifest_sha256")}
    fresh = make_manifest(folder, manifest["export_format"], info)
    fresh.update({k: manifest[k] for k in ("format", "format_version")})
    body = {k: v for k, v in fresh.items() if k != "manifest_sha256"}
    fresh["manifest_sha256"] = hashlib.sha256(json.dumps(
        body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
    (folder / MANIFEST).write_text(manifest_text(fresh))


def flip_byte(path, where=0.5):
    data = bytearray(path.read_bytes())
    data[int(len(data) * where)] ^= 0xFF
    path.write_bytes(bytes(data))


def edit_manifest(folder, **changes):
    manifest = json.loads((folder / MANIFEST).read_text())
    manifest.update(changes)
    (folder / MANIFEST).write_text(json.dumps(manifest))


def wrong_shapes(folder):
    state = load_file(folder / "model.safetensors")
    key = next(k for k, v in state.items() if v.dim() == 2)
    state[key] = torch.zeros(3, 3)
    save_file(state, folder / "model.safetensors")
    resign(folder)


TAMPERING = {
    "weights byte flipped": (lambda f, m: flip_byte(f / "model.safetensors"), "checksum"),
    "weights truncated": (lambda f, m: (f / "model.safetensors").write_bytes(
        (f / "model.safetensors").read_bytes()[:100]), "truncated"),
    "genome byte flipped": (lambda f, m: flip_byte(f / "genome.json", 0.7), "checksum"),
    "manifest edited": (lambda f, m: edit_manifest(f, fitness=0.99), "manifest was modified"),
    "manifest not json": (lambda f, m: (f / MANIFEST).write_text("{oops"), "not valid JSON"),
    "manifest missing": (lambda f, m: (f / MANIFEST).unlink(), "no manifest.json"),
    "weights missing": (lambda f, m: (f / "model.safetensors").unlink(), "missing"),
    "pickle as weights": (lambda f, m: ((f / "model.safetensors").write_bytes(
        pickle.dumps(Payload(m))), resign(f)), "is a pickle"),
    "torch.save as weights": (lambda f, m: (torch.save({"w": torch.zeros(1)},
                                                       f / "model.safetensors"), resign(f)),
                              "torch.save archive"),
    "pickle as genome": (lambda f, m: ((f / "genome.json").write_bytes(
        pickle.dumps(Payload(m))), resign(f)), "genome.json cannot be used"),
    "weights of other shapes": (lambda f, m: wrong_shapes(f), "the genome needs"),
    "future format version": (lambda f, m: (edit_manifest(f, format_version=99), resign(f)),
                              "not supported"),
}


@pytest.mark.parametrize("case", sorted(TAMPERING))
def test_tampered_bundles_are_refused_clearly(bundle, tmp_path, case):
    folder, marker = tmp_path / "copy", tmp_path / "pwned"
    shutil.copytree(bundle, folder)
    tamper, message = TAMPERING[case]
    tamper(folder, marker)
    with pytest.raises(ExportError, match=message) as error:
        load_model(folder)
    assert "\n" not in str(error.value)
    assert not marker.exists()  # nothing was unpickled


def test_safetensors_whose_header_size_starts_like_a_pickle_still_load(tmp_path):
    """A real file may begin with 0x80 (the low byte of its header size): only a file that
    safetensors cannot parse is refused, and the leading bytes merely explain why."""
    tensors = {"w": torch.arange(6.0).reshape(2, 3)}
    data = next(d for d in (save(tensors, metadata={"pad": "x" * n}) for n in range(512))
                if d[:1] == b"\x80")
    (tmp_path / "w.safetensors").write_bytes(data)
    assert torch.equal(read_safetensors(tmp_path / "w.safetensors")["w"], tensors["w"])


@pytest.mark.slow
@pytest.mark.parametrize("case", ["extra entry", "use_pickle", "sample inputs"])
def test_pt2_archives_that_could_unpickle_are_refused(exports, tmp_path, case):
    folder = tmp_path / "pt2"
    shutil.copytree(exports["pt2"], folder)
    source, target = folder / "model.pt2", folder / "rewritten.pt2"
    with zipfile.ZipFile(source) as zin, zipfile.ZipFile(target, "w") as zout:
        root = zin.namelist()[0].split("/")[0]
        for name in zin.namelist():
            data = zin.read(name)
            if case == "use_pickle" and name.endswith("weights_config.json"):
                data = data.replace(b'"use_pickle": false', b'"use_pickle": true')
            if case == "sample inputs" and "sample_inputs" in name:
                data = pickle.dumps(Payload(tmp_path / "pwned"))
            zout.writestr(name, data)
        if case == "extra entry":
            zout.writestr(f"{root}/data/constants/opaque_obj_0",
                          pickle.dumps(Payload(tmp_path / "pwned")))
    target.replace(source)
    resign(folder)
    with pytest.raises(ExportError, match="refused|not plain tensor data"):
        load_model(folder)
    assert not (tmp_path / "pwned").exists()


# -- choosing, lineage, retraining ---------------------------------------------------------------

def test_default_is_the_best_with_lineage_and_metrics(run_dir):
    [path] = export(run_dir)
    manifest = verify_export(path)
    assert path == run_dir / "exports" / f"{MLP}-bundle"
    assert manifest["individual"] == MLP and manifest["metrics"]["val_accuracy"] == 0.95
    assert manifest["weights"] == "run" and manifest["retrain"] is None
    child = export_results(run_dir, id=DOMINATED, output=run_dir.parent / "dominated")[0]
    lineage = child.manifest["lineage"]
    assert lineage["parents"] == [MLP, CHILD] and lineage["ancestors"] == [MERGED, CHILD, MLP]
    assert [b["id"] for b in lineage["births"]] == [MERGED, CHILD, MLP, DOMINATED]


def test_pareto_exports_the_non_dominated_set(run_dir, tmp_path):
    with RunStore.open(run_dir, readonly=True) as store:
        points = {e.id: (e.metrics["val_accuracy"], e.metrics["params"])
                  for e in store.evaluations() if e.status == "completed"}
        front = pareto_ids(store)
    brute = {i for i, (a, p) in points.items()
             if not any(b >= a and q <= p and (b, q) != (a, p) for b, q in points.values())}
    assert set(front) == brute and DOMINATED not in front and TRIVIAL in front
    paths = export(run_dir, pareto=True, output=tmp_path / "front")
    assert [p.name for p in paths] == [str(i) for i in front]
    assert all(verify_export(p)["individual"] == int(p.name) for p in paths)
    index = json.loads((tmp_path / "front" / "pareto.json").read_text())
    assert [entry["id"] for entry in index] == front


@pytest.mark.parametrize("from_scratch", [False, True])
def test_train_before_export_reports_test_accuracy(run_dir, tmp_path, from_scratch):
    result = export_results(run_dir, id=TRIVIAL, output=tmp_path / "t", train_epochs=1,
                            from_scratch=from_scratch, seed=3)[0]
    retrain = result.manifest["retrain"]
    assert retrain["from_scratch"] is from_scratch and retrain["data"] == "train+val"
    assert 0 <= retrain["test_accuracy_before"] <= 1 and 0 <= retrain["test_accuracy_after"] <= 1
    weights = load_file(result.path / "model.safetensors")
    stored = trained_state(run_genomes()[TRIVIAL][0], TRIVIAL)
    assert not torch.equal(weights["layers.n1.1.weight"], stored["layers.n1.1.weight"])
    again = export_results(run_dir, id=TRIVIAL, output=tmp_path / "again", train_epochs=1,
                           from_scratch=from_scratch, seed=3)[0]
    assert again.manifest["files"] == result.manifest["files"]  # same seed, same bytes


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_train_on_cuda_exports_cpu_weights(run_dir, tmp_path):
    [path] = export(run_dir, id=TRIVIAL, output=tmp_path / "cuda", train_epochs=1,
                    device="cuda")
    assert load_model(path).layers["n1"][1].weight.device.type == "cpu"


@pytest.mark.parametrize("kwargs, message", [
    ({"best": True, "id": 1}, "choose one"),
    ({"id": INFEASIBLE}, "no trained weights"),
    ({"id": 77}, "no individual 77"),
    ({"format": "tflite"}, "unknown export format"),
    ({"from_scratch": True}, "train_epochs"),
])
def test_bad_requests_are_one_clear_error(run_dir, tmp_path, kwargs, message):
    with pytest.raises(evograph.EvographError, match=message):
        export(run_dir, output=tmp_path / "x", **kwargs)
    assert not (tmp_path / "x").exists()


def test_existing_folders_are_kept_unless_forced(run_dir, tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("mine")
    with pytest.raises(ExportError, match="already exists"):
        export(run_dir, id=MERGED, output=mine)
    with pytest.raises(ExportError, match="not an evograph export"):
        export(run_dir, id=MERGED, output=mine, overwrite=True)
    assert (mine / "notes.txt").read_text() == "mine"
    [path] = export(run_dir, id=MERGED, output=tmp_path / "e")
    [again] = export(run_dir, id=TRIVIAL, output=path, overwrite=True)
    assert verify_export(again)["individual"] == TRIVIAL
    assert sorted(p.name for p in tmp_path.iterdir()) == ["e", "mine"]  # no temp leftovers


@pytest.mark.slow
def test_a_failed_verification_publishes_nothing(run_dir, tmp_path, monkeypatch):
    monkeypatch.setattr(export_formats, "ONNX_TOLERANCE", -1.0)
    with pytest.raises(ExportError, match="differ from PyTorch"):
        export(run_dir, id=TRIVIAL, format="onnx", output=tmp_path / "onnx")
    assert list(tmp_path.iterdir()) == []


# -- the command line ----------------------------------------------------------------------------

def test_cli_export_and_its_errors(run_dir, tmp_path, capsys):
    out = tmp_path / "cli"
    assert main(["export", str(run_dir), "--id", str(CHILD), "--format", "python",
                 "-o", str(out)]) == 0
    text = capsys.readouterr().out
    assert f"individual {CHILD}" in text and "bit-identical" in text and "from model import" in text
    assert (out / "model.py").is_file()
    assert main(["export", str(run_dir), "--id", str(CHILD), "-o", str(out)]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("evograph: error:") and "already exists" in error
    assert "\n" not in error
    assert main(["export", str(tmp_path / "nowhere")]) == 2
    assert "not an evograph run directory" in capsys.readouterr().err


@pytest.mark.slow
def test_end_to_end_run_then_export_and_load(tmp_path):
    from evograph.runs.driver import create_run, run
    config = load_config(ROOT / "runs/configs/digits.toml", [
        "budget.evaluations=6", "final.share=0", "dataset.limit=200", "fitness.epochs=1",
        "strategy.population_size=3", "strategy.sample_size=2", "budget.minutes=0",
        "space.channels=[4,16]", "executor.name=serial"])
    run_dir = create_run(config, tmp_path / "run")
    assert run(run_dir, live=False).finished
    assert main(["export", str(run_dir), "--best", "--format", "bundle", "-o",
                 str(tmp_path / "best"), "--train", "1"]) == 0
    model = load_model(tmp_path / "best")
    assert model(torch.zeros(2, 1, 8, 8)).shape == (2, 10)
