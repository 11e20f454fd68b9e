"""An unpickler for files that hold numpy arrays only (CIFAR-10's batches): a crafted file
cannot run code, where ordinary ``pickle.load`` would call any function the file names."""

from __future__ import annotations

import pickle
from typing import ClassVar

import numpy as np


class NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickler for CIFAR batches admitting only what numpy arrays need: a crafted batch file
    cannot run code (ordinary ``pickle.load`` would call any function the file names)."""

    _ALLOWED: ClassVar[frozenset[tuple[str, str]]] = frozenset(
        [(f"{p}.multiarray", "_reconstruct") for p in ("numpy.core", "numpy._core")]
        + [(f"{p}.numeric", "_frombuffer") for p in ("numpy.core", "numpy._core")]
        + [("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode")])

    def find_class(self, module: str, name: str):
        """Resolve allowed numpy globals (``numpy.core`` read as ``numpy._core``), refuse others."""
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}")
        if module.startswith("numpy.core.") and hasattr(np, "_core"):
            module = "numpy._core." + module[len("numpy.core."):]
        return super().find_class(module, name)
