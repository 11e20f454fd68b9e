"""The one digits loader: read once, shared read-only, the same arrays as scikit-learn's."""

from __future__ import annotations

import numpy as np
import pytest
from evograph.data.digits import digits
from sklearn.datasets import load_digits


def test_digits_are_scikit_learns_read_once_and_read_only():
    images, labels = digits()
    bunch = load_digits()
    np.testing.assert_array_equal(images, bunch.images)
    np.testing.assert_array_equal(labels, bunch.target)
    assert digits()[0] is images          # cached: one load per process
    with pytest.raises(ValueError, match="read-only"):
        images[0, 0, 0] = 1.0             # shared: nobody may scale it in place
