"""Genomes: the immutable network value, its ops, search spaces, validation and serialization."""

from . import cells as _cells  # noqa: F401  (registers the cell ops, skeletons and spaces)
from . import codec_spaces as _codec_spaces  # noqa: F401  (registers the mlp and conv codecs)
from .core import DEFAULT_GENES, Genome, Node
from .io import from_json, load, save, to_json
from .space import SPACES, SearchSpace, get_space, register_space
from .validate import GenomeInfo, analyze, validate

__all__ = [
    "DEFAULT_GENES",
    "SPACES",
    "Genome",
    "GenomeInfo",
    "Node",
    "SearchSpace",
    "analyze",
    "from_json",
    "get_space",
    "load",
    "register_space",
    "save",
    "to_json",
    "validate",
]
