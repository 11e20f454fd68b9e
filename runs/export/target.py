"""Where an export goes, and writing it there only once it is verified.

``-o`` names a folder when it has no suffix, ends with ``/`` or is an existing folder: the
format's files and ``manifest.json`` go in it. Otherwise it names ONE file, which only the
single-file formats can be: ``-o model.onnx`` writes that ONNX file and ``-o model.pt2`` that
archive, each carrying the manifest's information inside (their metadata); the format follows
from the suffix when it is not given. Everything is written into a temporary sibling first,
checked, and only then renamed into place, so a failed export leaves nothing behind.
"""

from __future__ import annotations

import os
import secrets
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...errors import ExportError
from ..store import atomic_write_text
from .bundle import MANIFEST, make_manifest, manifest_text, read_pt2_info, verify_export

FILE_FORMATS = {".onnx": "onnx", ".pt2": "pt2"}       # the formats that can be one file
FILE_NAMES = {"onnx": "model.onnx", "pt2": "model.pt2"}
DEFAULT_FORMAT = "bundle"


@dataclass(frozen=True)
class Output:
    """The export's format, and its destination: a folder, or one file (``as_file``)."""

    format: str
    path: Path | None        # None: the default folder in the run directory
    as_file: bool = False


def names_folder(output: str | os.PathLike) -> bool:
    """Whether ``-o`` names a folder: an existing one, a trailing ``/``, or no suffix."""
    text = os.fspath(output)
    return text.endswith(("/", os.sep)) or Path(text).is_dir() or not Path(text).suffix


def resolve(format: str | None, output: str | os.PathLike | None, pareto: bool,
            known: tuple[str, ...]) -> Output:
    """The format and destination of ``--format``/``-o``, or one ExportError saying why not."""
    if format is not None and format not in known:
        raise ExportError(f"unknown export format {format!r} (known: {', '.join(known)})")
    if output is None or names_folder(output):
        return Output(format or DEFAULT_FORMAT, None if output is None else Path(output))
    path, suffix = Path(output), Path(output).suffix.lower()
    if pareto:
        raise ExportError(f"-o {output}: --pareto writes one export per individual, so -o "
                          "must name a folder (no suffix, or end it with /)")
    inferred = FILE_FORMATS.get(suffix)
    if inferred is None or (format is not None and format != inferred):
        kind = format or DEFAULT_FORMAT
        if kind in FILE_FORMATS.values():
            want = next(s for s, f in FILE_FORMATS.items() if f == kind)
            raise ExportError(f"-o {output}: a {kind} file ends in {want}; name it so, or "
                              "name a folder (no suffix, or end it with /)")
        raise ExportError(f"-o {output}: a {kind} export is a folder, not one file; name a "
                          "folder (no suffix, or end it with /), or choose --format onnx or "
                          "pt2 for a single .onnx or .pt2 file")
    return Output(inferred, path, as_file=True)


def replaceable(target: Path, overwrite: bool, as_file: bool = False) -> None:
    """Refuse unless ``target`` may be (re)written: absent or an empty folder, or an earlier
    evograph export and ``overwrite``. Never deletes anything that is not an evograph export."""
    if not target.exists() or (target.is_dir() and not as_file and not any(target.iterdir())):
        return
    if not overwrite:
        raise ExportError(f"{target} already exists; choose another output or overwrite it "
                          "(--force)")
    ours = earlier_file_export(target) if as_file else (target / MANIFEST).is_file()
    if not ours:
        raise ExportError(f"{target} exists and is not an evograph export; refusing to "
                          "replace it")


def earlier_file_export(path: Path) -> bool:
    """Whether ``path`` is a single-file evograph export (its metadata says so)."""
    if not path.is_file():
        return False
    try:
        if path.suffix.lower() == ".pt2":
            return read_pt2_info(path) is not None
        import onnx
        model = onnx.load(str(path), load_external_data=False)
        return any(p.key.startswith("evograph.") for p in model.metadata_props)
    except Exception:  # noqa: BLE001 - anything unreadable is not ours to replace
        return False


Writer = Callable[[Path], dict[str, Any]]   # writes the format into a folder, verifies it


def _sibling(target: Path, what: str) -> Path:
    return target.parent / f".{target.name}.{what}-{secrets.token_hex(4)}"


def publish(write: Writer, fmt: str, target: Path, info: dict[str, Any], overwrite: bool,
            as_file: bool) -> dict[str, Any]:
    """Write into a temporary sibling folder, verify, then rename into ``target`` (the folder,
    or the one file of a single-file export); returns the manifest (written only to folders)."""
    replaceable(target, overwrite, as_file)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = _sibling(target, "tmp")
        tmp.mkdir()
    except OSError as exc:
        raise ExportError(f"cannot write the export to {target} ({exc.strerror or exc})") \
            from None
    try:
        verification = write(tmp)
        manifest = make_manifest(tmp, fmt, {**info, "verification": verification})
        if as_file:
            os.replace(tmp / FILE_NAMES[fmt], target)
            return manifest
        atomic_write_text(tmp / MANIFEST, manifest_text(manifest))
        verify_export(tmp)
        if target.exists():
            old = _sibling(target, "old")
            target.rename(old)
            shutil.rmtree(old)
        tmp.rename(target)
        return manifest
    except OSError as exc:
        raise ExportError(f"cannot write the export to {target} ({exc.strerror or exc})") \
            from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
