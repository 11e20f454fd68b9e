"""evograph — genome-centric neuroevolution.

Networks are immutable NetworkX-graph genomes; DEAP-driven strategies propose them; a compiler
turns them into PyTorch modules trained in parallel; every birth is recorded for lineage, and the
best genomes export as ordinary PyTorch models. Heavy parts (torch, the run machinery) are imported
on first use, so ``import evograph`` stays quick.
"""

from importlib import import_module
from typing import Any

from .errors import EvographError, InvalidGenome
from .genome import Genome, Node, SearchSpace, get_space, register_space

__version__ = "0.1.0"

_LAZY = {
    "build": "evograph.compile.builder",
    "load_model": "evograph.runs.export",
    "export": "evograph.runs.export",
    "run": "evograph.runs.api",
    "resume": "evograph.runs.api",
    "lineage": "evograph.runs.lineage",
}

__all__ = [
    "EvographError",
    "Genome",
    "InvalidGenome",
    "Node",
    "SearchSpace",
    "__version__",
    "build",
    "export",
    "get_space",
    "lineage",
    "load_model",
    "register_space",
    "resume",
    "run",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'evograph' has no attribute {name!r}")
