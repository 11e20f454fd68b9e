"""The export formats: each writer puts its files in a folder, reads them back the way a user
would, and checks the outputs against the compiled genome on a fixed batch before anything is
published. ``bundle``, ``python`` and ``pt2`` must match bit for bit on CPU (they run the same
kernels in the same order); ``onnx`` runs in onnxruntime, so it must match within a tolerance.

``python`` writes the readable module of :mod:`evograph.compile.codegen` with the run's input
preprocessing and a ``load()`` that finds its weights beside the file (:mod:`.standalone`);
``pt2`` and ``onnx`` export that same generated module (its tensor names — ``conv3.weight`` — are
the readable ones) with a dynamic batch dimension. ONNX is written as ONE file: the dynamo
exporter would put the weights in a separate ``.data`` file unless told ``external_data=False``.

What the manifest says (``Artifact.info``: preprocessing, figures, lineage) also travels inside
the files that can hold it: the ``.pt2`` archive's extra file ``evograph.json`` and the ONNX
model's ``metadata_props`` (``evograph.preprocess``, ``evograph.export``), so a single ``.onnx``
or ``.pt2`` file says what it expects on its own.
"""

from __future__ import annotations

import contextlib
import io
import json
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save

from ...compile.builder import GenomeModule
from ...compile.codegen import GeneratedModel, generate
from ...data.preprocess import Preprocess
from ...errors import ExportError
from ...genome.core import Genome
from ...genome.io import to_json
from ..store import atomic_write_bytes, atomic_write_text
from .bundle import PT2_INFO, load_bundle_files, load_pt2, load_state, read_pt2_info
from .standalone import import_file, python_source

ONNX_TOLERANCE = 1e-4   # max |onnxruntime - torch|, relative to max(1, max |logit|)
CLASS_NAME = "EvolvedNet"
ONNX_PREPROCESS, ONNX_INFO = "evograph.preprocess", "evograph.export"   # ONNX metadata keys


@dataclass
class Artifact:
    """What is exported: the trained module (CPU, eval mode), its genome, and a fixed batch with
    the module's outputs on it (the reference every format is checked against); ``preprocess``
    is the run's input recipe and ``info`` what the manifest says (JSON), carried in the files."""

    genome: Genome
    module: GenomeModule
    sample: torch.Tensor
    reference: torch.Tensor
    note: str = ""
    preprocess: Preprocess | None = None
    info: dict[str, Any] | None = None

    @staticmethod
    def of(genome: Genome, module: GenomeModule, batch: int = 4, seed: int = 0,
           note: str = "", preprocess: Preprocess | None = None,
           info: dict[str, Any] | None = None) -> Artifact:
        module = module.to("cpu").eval()
        gen = torch.Generator().manual_seed(seed)
        sample = torch.randn(batch, *module.input_shape, generator=gen)  # (B, *input_shape)
        with torch.no_grad():
            return Artifact(genome, module, sample, module(sample), note, preprocess, info)

    def info_json(self) -> str:
        return json.dumps(self.info or {}, sort_keys=True, allow_nan=False)

    def raw_sample(self, batch: int = 4, seed: int = 1) -> Any:
        """Made-up raw samples (float64, 0..divide_by) to check an export's preprocess on."""
        gen = torch.Generator().manual_seed(seed)
        scale = self.preprocess.divide_by if self.preprocess else 1.0
        return (torch.rand(batch, *self.module.input_shape, generator=gen,
                           dtype=torch.float64) * scale).numpy()


Writer = Callable[[Artifact, Path], dict[str, Any]]
WRITERS: dict[str, Writer] = {}


def register_format(name: str):
    """Decorator: a writer ``(artifact, folder) -> verification record`` for ``name``."""
    def wrap(fn: Writer) -> Writer:
        WRITERS[name] = fn
        return fn
    return wrap


def _tensors(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu").contiguous() for k, v in state.items()}


def _meta(art: Artifact, fmt: str, cls: str | None = None) -> dict[str, str]:
    """safetensors metadata as ONE key: the library writes several keys in a random order
    (a Rust HashMap), and exports must be byte-reproducible."""
    info = {"genome_hash": art.genome.hash, "export_format": fmt, "class": cls}
    return {"evograph": json.dumps(info, sort_keys=True)}


def _same(what: str, got: torch.Tensor, art: Artifact) -> dict[str, Any]:
    """Bit-identity with the reference, or an ExportError saying by how much it differs."""
    if got.shape != art.reference.shape or not torch.equal(got, art.reference):
        diff = (got - art.reference).abs().max().item() if got.shape == art.reference.shape \
            else "shape"
        raise ExportError(f"{what}: outputs differ from the compiled genome's (max |diff| "
                          f"{diff}); export refused")
    return {"check": f"{what} reloaded; outputs bit-identical to the compiled genome",
            "batch": len(art.sample), "max_abs_diff": 0.0}


@register_format("bundle")
def write_bundle(art: Artifact, folder: Path) -> dict[str, Any]:
    """genome.json + model.safetensors (the compiled module's tensor names)."""
    atomic_write_text(folder / "genome.json", to_json(art.genome) + "\n")
    atomic_write_bytes(folder / "model.safetensors",
                       save(_tensors(art.module.state_dict()), metadata=_meta(art, "bundle")))
    with torch.no_grad():
        return _same("bundle", load_bundle_files(folder)(art.sample), art)


def generated_module(gen: GeneratedModel, state: dict[str, torch.Tensor],
                     where: Path) -> torch.nn.Module:
    """Run generated source in a fresh namespace, instantiate its class and load ``state``."""
    namespace: dict[str, Any] = {"__name__": "evograph_generated_model"}
    exec(compile(gen.source, str(where), "exec"), namespace)  # noqa: S102 - our own code
    net = namespace[gen.class_name]()
    load_state(net, state, where)
    return net.eval()


@register_format("python")
def write_python(art: Artifact, folder: Path) -> dict[str, Any]:
    """model.py (generated, with ``preprocess`` and ``load``) + model.safetensors renamed to its
    attributes; checked by importing the file as written and calling its ``load()`` and
    ``preprocess()`` (against the run's recipe, on made-up raw samples)."""
    gen = python_source(art.genome, CLASS_NAME, art.note, art.preprocess)
    atomic_write_text(folder / "model.py", gen.source)
    atomic_write_bytes(folder / "model.safetensors",
                       save(_tensors(gen.remap(art.module.state_dict())),
                            metadata=_meta(art, "python", CLASS_NAME)))
    written = import_file(folder / "model.py")
    with torch.no_grad():
        record = _same("model.py's load() (weights beside it)", written.load()(art.sample), art)
    if art.preprocess is None:
        return {**record, "class": CLASS_NAME, "preprocess": "unknown (not recorded by the run)"}
    raw = art.raw_sample()
    if not torch.equal(written.preprocess(raw), art.preprocess.apply(raw)):
        raise ExportError("model.py's preprocess() differs from the run's input recipe; "
                          "export refused")
    return {**record, "class": CLASS_NAME,
            "preprocess": "model.py's preprocess() equals the run's recipe on raw samples"}


def _standalone(art: Artifact) -> torch.nn.Module:
    """The generated module holding the artifact's weights (what pt2 and onnx export)."""
    gen = generate(art.genome, CLASS_NAME)
    return generated_module(gen, gen.remap(_tensors(art.module.state_dict())), Path("model.py"))


def _batch_dim() -> dict[str, dict[int, Any]]:
    return {"x": {0: torch.export.Dim("batch", min=1, max=1 << 16)}}


@register_format("pt2")
def write_pt2(art: Artifact, folder: Path) -> dict[str, Any]:
    """model.pt2: ``torch.export`` with a dynamic batch, saved with ``torch.export.save``."""
    try:
        program = torch.export.export(_standalone(art), (art.sample,),
                                      dynamic_shapes=_batch_dim())
    except Exception as exc:  # noqa: BLE001 - tracing failures come in many types
        raise ExportError(f"torch.export failed: {exc}") from None
    buffer = io.BytesIO()
    torch.export.save(program, buffer, extra_files={PT2_INFO: art.info_json()})
    atomic_write_bytes(folder / "model.pt2", buffer.getvalue())
    if read_pt2_info(folder / "model.pt2") != json.loads(art.info_json()):
        raise ExportError("model.pt2: the embedded evograph.json does not read back")
    program = load_pt2(folder / "model.pt2")
    with torch.no_grad():  # the batch axis is dynamic: one sample must work as well
        one = art.module(art.sample[:1])
        if not torch.equal(program(art.sample[:1]), one):
            raise ExportError("model.pt2: outputs for a single sample differ from the compiled "
                              "genome's; export refused")
        return _same("model.pt2 (any batch size)", program(art.sample), art)


@register_format("onnx")
def write_onnx(art: Artifact, folder: Path) -> dict[str, Any]:
    """model.onnx with the weights embedded (dynamo exporter, dynamic batch, input ``x``,
    output ``logits``); the exporter's progress lines are kept off the terminal."""
    path = folder / "model.onnx"
    quiet = io.StringIO()
    try:
        with contextlib.redirect_stdout(quiet), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(_standalone(art), (art.sample,), str(path), dynamo=True,
                              external_data=False, input_names=["x"], output_names=["logits"],
                              dynamic_shapes=_batch_dim(), verbose=False)
    except Exception as exc:  # noqa: BLE001 - exporter failures come in many types
        raise ExportError(f"ONNX export failed: {exc}") from None
    if any(p.name != "model.onnx" for p in folder.iterdir()):
        raise ExportError(f"ONNX export wrote more than one file in {folder}")
    embed_onnx_metadata(path, art)
    return check_onnx(path, art)


def embed_onnx_metadata(path: Path, art: Artifact) -> None:
    """Add the preprocessing and the manifest's information to the model's metadata_props."""
    import onnx
    model = onnx.load(str(path))
    record = art.preprocess.to_dict() if art.preprocess else None
    for key, value in ((ONNX_PREPROCESS, json.dumps(record, sort_keys=True)),
                       (ONNX_INFO, art.info_json())):
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    atomic_write_bytes(path, model.SerializeToString())


def check_onnx(path: Path, art: Artifact) -> dict[str, Any]:
    """Run the file in onnxruntime on the fixed batch and on a single sample (the batch axis is
    dynamic); refuse it if it strays from PyTorch by more than ONNX_TOLERANCE."""
    import onnx
    import onnxruntime as ort
    model = onnx.load(str(path))
    onnx.checker.check_model(model, full_check=True)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    metadata = session.get_modelmeta().custom_metadata_map
    if json.loads(metadata.get(ONNX_INFO, "null")) != json.loads(art.info_json()):
        raise ExportError(f"{path}: the evograph metadata does not read back")
    worst = 0.0
    for x, ref in ((art.sample, art.reference), (art.sample[:1], art.reference[:1])):
        got = torch.from_numpy(session.run(["logits"], {"x": x.numpy()})[0])
        if got.shape != ref.shape:
            raise ExportError(f"{path}: onnxruntime gives shape {tuple(got.shape)}, "
                              f"PyTorch {tuple(ref.shape)}")
        worst = max(worst, (got - ref).abs().max().item())
    limit = ONNX_TOLERANCE * max(1.0, art.reference.abs().max().item())
    if not worst <= limit:
        raise ExportError(f"{path}: onnxruntime outputs differ from PyTorch by {worst:.3g} "
                          f"(limit {limit:.3g}); export refused")
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
    return {"check": "onnxruntime vs PyTorch on the fixed batch and on one sample",
            "batch": len(art.sample), "max_abs_diff": worst, "tolerance": limit,
            "opset": opset}
