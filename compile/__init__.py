"""Compilation of genomes into PyTorch modules, weight inheritance and candidate training."""

from .builder import GenomeModule, build, count_parameters

__all__ = ["GenomeModule", "build", "count_parameters"]
