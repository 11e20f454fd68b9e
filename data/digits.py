"""scikit-learn's bundled 8x8 handwritten digits (1797 images of 0..9, pixels 0..16), read once
per process: the offline dataset of a run (:mod:`.datasets`), MAML's few-shot digits tasks
(:mod:`.tasks`) and the learned optimizer's ``digits-mlp`` optimizees all start from these arrays,
so they see the same data whichever way they cut it.

Data: Alpaydin & Kaynak 1998, *Optical Recognition of Handwritten Digits* (UCI), the 8x8 copy
shipped with scikit-learn.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np


@lru_cache(maxsize=1)
def digits() -> tuple[np.ndarray, np.ndarray]:
    """``(images, labels)``: images ``(1797, 8, 8)`` float64 in 0..16, labels ``(1797,)`` int.

    Cached and shared, so both arrays are read-only: a user that scales or reshapes in place
    must copy first (``astype``, fancy indexing and arithmetic already do)."""
    from sklearn.datasets import load_digits  # sklearn is heavy: imported on first use
    bunch = load_digits()
    images, labels = bunch.images, bunch.target
    images.flags.writeable = False
    labels.flags.writeable = False
    return images, labels
