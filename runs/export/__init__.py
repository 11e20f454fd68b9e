"""Export: a run's chosen genomes as ordinary PyTorch models (state dict, readable Python module,
``torch.export`` program, ONNX), each verified against the run's own module and written with a
manifest of checksums, figures, input preprocessing, lineage and versions; :func:`load_model`
reads any of them back.

The names below are imported on first use: importing this package (or its light
:mod:`.names`, as the command line does) does not import torch.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

__all__ = ["ExportResult", "export", "load_model"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        return getattr(import_module(".api", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
