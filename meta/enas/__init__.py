"""ENAS weight sharing (Pham et al. 2018, *Efficient Neural Architecture Search via Parameter
Sharing*): one shared supernet whose slices score every genome of a space; fitness ``enas``."""

from . import fitness as _fitness  # noqa: F401  (registers fitness "enas")
