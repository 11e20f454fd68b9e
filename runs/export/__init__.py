"""Export: a run's chosen genomes as ordinary PyTorch models (state dict, readable Python module,
``torch.export`` program, ONNX), each verified against the run's own module and written with a
manifest of checksums, metrics, lineage and versions; :func:`load_model` reads any of them back."""

from .api import ExportResult, export, load_model

__all__ = ["ExportResult", "export", "load_model"]
