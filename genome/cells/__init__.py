"""Cell search spaces: a small DAG of ops (the cell) stacked into a fixed macro skeleton, as in
NASNet (Zoph et al. 2018), AmoebaNet (Real et al. 2019), ENAS's micro space, DARTS and the
NAS-Bench-201 benchmark (Dong & Yang 2020). A cell genome is compact — the cell and one
``skeleton`` node naming the macro network — and is *expanded* into the plain network genome that
validation, the compiler, weight inheritance and export already understand (:mod:`.skeleton`)."""

from . import codec as _codec  # noqa: F401  (registers the nb201 codec)
from . import nasnet as _nasnet  # noqa: F401  (registers the nasnet skeleton and space)
from . import nb201 as _nb201  # noqa: F401  (registers the nb201 skeleton and space)
from . import ops as _ops  # noqa: F401  (registers the cell ops)
from .skeleton import SKELETONS, expand, is_cell_genome

__all__ = ["SKELETONS", "expand", "is_cell_genome"]
