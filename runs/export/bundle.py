"""Export folders: the manifest, its checksums, and safe loading (no pickle on any path).

Every export is a folder holding the format's files and a ``manifest.json``::

    {"format": "evograph-export", "format_version": 1, "export_format": "bundle",
     "files": {"genome.json": {"sha256": "…", "bytes": 812}, "model.safetensors": {…}},
     "individual": 17, "run_id": "…", "genome_hash": "…", "metrics": {…},
     "lineage": {"parents": [12], "ancestors": [0, 3, 12], "births": […]},
     "versions": {"evograph": "0.1.0", "torch": "2.14.1", …}, "manifest_sha256": "…"}

``manifest_sha256`` is the SHA-256 of the manifest's canonical JSON without that key, so an
edited manifest is caught as surely as a changed byte in a listed file. The checksums give
integrity (a corrupted, truncated or half-copied export), not authenticity: someone who rewrites
the files and recomputes every checksum is not detected, which is why loading never runs code
from the files — weights are read with safetensors, genomes are JSON, and a ``.pt2`` archive is
screened for pickled payloads before ``torch.export.load`` sees it.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import sys
import warnings
import zipfile
from importlib import metadata
from pathlib import Path
from typing import Any

import torch

from ...compile.builder import GenomeModule, build
from ...errors import ExportError, InvalidGenome
from ...genome.io import from_json

FORMAT = "evograph-export"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
FILES = {"bundle": ("genome.json", "model.safetensors"),   # what each export format holds
         "python": ("model.py", "model.safetensors"), "pt2": ("model.pt2",),
         "onnx": ("model.onnx",)}
PICKLE_MARK, ZIP_MARK = b"\x80", b"PK\x03\x04"
PT2_INFO = "evograph.json"   # the .pt2 archive's extra file holding the manifest's information


# -- checksums and the manifest -------------------------------------------------------------------

def sha256_file(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _canonical(manifest: dict[str, Any]) -> bytes:
    body = {k: v for k, v in manifest.items() if k != "manifest_sha256"}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), allow_nan=False).encode()


def library_versions(*extra: str) -> dict[str, str]:
    """Versions of Python and of the libraries an export depends on (for reproducibility)."""
    out = {"python": sys.version.split()[0]}
    for name in ("evograph", "torch", "safetensors", "numpy", *extra):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def make_manifest(directory: Path, export_format: str, info: dict[str, Any]) -> dict[str, Any]:
    """The manifest of ``directory``: checksums of the format's files, ``info``, self-checksum."""
    files = {name: {"sha256": sha256_file(directory / name),
                    "bytes": (directory / name).stat().st_size}
             for name in FILES[export_format]}
    manifest = {"format": FORMAT, "format_version": FORMAT_VERSION,
                "export_format": export_format, "files": files, **info}
    manifest["manifest_sha256"] = hashlib.sha256(_canonical(manifest)).hexdigest()
    return manifest


def manifest_text(manifest: dict[str, Any]) -> str:
    return json.dumps(manifest, indent=2, sort_keys=True, allow_nan=False) + "\n"


def read_manifest(directory: Path) -> dict[str, Any]:
    """Parse and self-check ``directory/manifest.json``; ExportError names what is wrong."""
    path = directory / MANIFEST
    if not directory.is_dir():
        raise ExportError(f"{directory}: no such export folder")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ExportError(f"{directory}: not an evograph export (no {MANIFEST})") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ExportError(f"{path}: manifest is not valid JSON ({exc})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise ExportError(f"{path}: not an evograph export manifest")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise ExportError(f"{path}: export format version {manifest.get('format_version')!r} "
                          f"is not supported (this evograph reads {FORMAT_VERSION})")
    if manifest.get("export_format") not in FILES or not isinstance(manifest.get("files"), dict):
        raise ExportError(f"{path}: manifest names no known export format and files")
    expected = hashlib.sha256(_canonical(manifest)).hexdigest()
    if manifest.get("manifest_sha256") != expected:
        raise ExportError(f"{path}: the manifest was modified after export (its checksum does "
                          "not match its content)")
    return manifest


def verify_export(path: str | Path) -> dict[str, Any]:
    """Check an export folder (or its manifest.json): the manifest and every file's size and
    SHA-256. Returns the manifest; raises ExportError naming the first file that fails."""
    directory = Path(path)
    directory = directory.parent if directory.name == MANIFEST else directory
    manifest = read_manifest(directory)
    for name in FILES[manifest["export_format"]]:
        entry = manifest["files"].get(name)
        if not isinstance(entry, dict):
            raise ExportError(f"{directory}: the manifest does not list {name}")
        file = directory / name
        if not file.is_file():
            raise ExportError(f"{directory}: {name} is missing")
        size = file.stat().st_size
        if size != entry.get("bytes"):
            raise ExportError(f"{file}: {size} bytes, the manifest says {entry.get('bytes')} "
                              "(truncated or replaced)")
        if sha256_file(file) != entry.get("sha256"):
            raise ExportError(f"{file}: checksum mismatch (the file was modified or corrupted)")
    return manifest


# -- safe readers ---------------------------------------------------------------------------------

def read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    """Tensors of a safetensors file; a pickle, a ``torch.save`` zip or garbage is refused.

    safetensors parses a length-prefixed JSON header and raw bytes, never code; the leading bytes
    are only looked at to explain a refusal (a real file may start with 0x80: its header size)."""
    from safetensors.torch import load
    data = path.read_bytes()
    try:
        return load(data)
    except Exception as exc:  # noqa: BLE001 - safetensors raises its own error types
        if data[:1] == PICKLE_MARK:
            raise ExportError(f"{path}: is a pickle, not safetensors; evograph never "
                              "unpickles") from None
        if data[:4] == ZIP_MARK:
            raise ExportError(f"{path}: is a torch.save archive (pickle), not "
                              "safetensors") from None
        raise ExportError(f"{path}: not a valid safetensors file ({exc})") from None


_PT2_SAFE = re.compile(
    r"(models/[^/]+\.json|data/weights/weight_\d+|data/weights/[^/]+_weights_config\.json"
    r"|data/constants/tensor_\d+|data/constants/[^/]+_constants_config\.json"
    r"|data/sample_inputs/[^/]+\.pt|archive_format|archive_version|byteorder"
    r"|\.data/version|\.data/serialization_id|extra/module_info\.json|extra/evograph\.json)")


def check_pt2_archive(path: Path) -> None:
    """Refuse a ``.pt2`` archive that could make ``torch.export.load`` unpickle: entries other
    than JSON graphs and raw tensor payloads, payloads flagged ``use_pickle``, or sample inputs
    that ``torch.load(weights_only=True)`` rejects (torch then retries with weights_only=False)."""
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise ExportError(f"{path}: not a .pt2 archive ({exc})") from None
    with archive:
        for name in archive.namelist():
            inner = name.split("/", 1)[1] if "/" in name else name
            if not _PT2_SAFE.fullmatch(inner):
                raise ExportError(f"{path}: unexpected entry {name!r} (refused: it may hold "
                                  "a pickle)")
            if inner.endswith("_config.json"):
                config = json.loads(archive.read(name)).get("config", {})
                if any(entry.get("use_pickle") for entry in config.values()):
                    raise ExportError(f"{path}: {name} holds pickled tensors (refused)")
            if inner.startswith("data/sample_inputs/"):
                try:
                    with warnings.catch_warnings():  # protocol notes about refused data
                        warnings.simplefilter("ignore")
                        torch.load(io.BytesIO(archive.read(name)), weights_only=True)
                except Exception as exc:  # noqa: BLE001 - anything not plain tensors
                    raise ExportError(f"{path}: {name} is not plain tensor data ({exc})") from None


# -- loaders --------------------------------------------------------------------------------------

def load_state(module: torch.nn.Module, state: dict[str, torch.Tensor], where: Path) -> None:
    """``load_state_dict(strict=True)`` with one clear error for missing or misshapen tensors."""
    expected = module.state_dict()
    missing = sorted(set(expected) - set(state))
    extra = sorted(set(state) - set(expected))
    if missing or extra:
        raise ExportError(f"{where}: weights do not fit the genome (missing {missing[:3]}, "
                          f"unexpected {extra[:3]})")
    for key, tensor in state.items():
        if tensor.shape != expected[key].shape or tensor.dtype != expected[key].dtype:
            raise ExportError(f"{where}: tensor {key} is {tuple(tensor.shape)} {tensor.dtype}, "
                              f"the genome needs {tuple(expected[key].shape)} "
                              f"{expected[key].dtype}")
    module.load_state_dict(state, strict=True)


def load_bundle_files(directory: Path) -> GenomeModule:
    """Build ``genome.json`` and load ``model.safetensors`` into it (no checksum check)."""
    try:
        genome = from_json((directory / "genome.json").read_text(encoding="utf-8"),
                           str(directory / "genome.json"))
        module = build(genome, seed=0)
    except (InvalidGenome, UnicodeDecodeError) as exc:
        raise ExportError(f"{directory}: genome.json cannot be used ({exc})") from None
    load_state(module, read_safetensors(directory / "model.safetensors"),
               directory / "model.safetensors")
    return module.eval()


def read_pt2_info(file: Path) -> dict[str, Any] | None:
    """The manifest's information embedded in a screened ``.pt2`` (None if it holds none)."""
    check_pt2_archive(file)
    with zipfile.ZipFile(file) as archive:
        names = [n for n in archive.namelist() if n.endswith(f"/extra/{PT2_INFO}")]
        if not names:
            return None
        try:
            return json.loads(archive.read(names[0]))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ExportError(f"{file}: its {PT2_INFO} is not valid JSON ({exc})") from None


def load_pt2(file: Path) -> torch.nn.Module:
    """Screen then load a ``.pt2`` ExportedProgram; returns its callable module."""
    check_pt2_archive(file)
    try:
        return torch.export.load(file).module()
    except Exception as exc:  # noqa: BLE001 - torch raises many types for a bad archive
        raise ExportError(f"{file}: cannot load the exported program ({exc})") from None
