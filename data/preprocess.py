"""How a dataset's raw samples become the inputs its networks were trained on.

A trained network expects its inputs exactly as the loader made them: digits divided by 16,
MNIST-1D and CIFAR-10 standardised with statistics of the run's own training split. A
:class:`Preprocess` record keeps that recipe with its constants, so it can be stored with a run
(``Dataset.describe()``) and shipped with every export::

    x = (float32(raw).reshape(-1, *shape) / divide_by - mean) / std

``mean`` and ``std`` hold one value (``standardise = "global"``), one per channel (``"channel"``,
broadcast over axis 1) or nothing (``"none"``). The loaders of :mod:`.datasets` make their splits
with :meth:`Preprocess.apply` itself, and the constants are float32 values written as exact
decimals, so re-applying a stored record to raw samples gives the loader's tensors bit for bit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..errors import DatasetError

STANDARDISE = ("none", "global", "channel")
FORMULA = "x = (float32(raw).reshape(-1, *shape) / divide_by - mean) / std"


@dataclass(frozen=True)
class Preprocess:
    """The recipe from raw samples to model inputs (see the module docstring).

    ``raw`` says in words what a raw sample is (source, layout, value range); ``shape`` is the
    model's input shape per sample; ``mean``/``std`` are float32 values (empty for "none")."""

    raw: str
    shape: tuple[int, ...]
    divide_by: float = 1.0
    standardise: str = "none"
    mean: tuple[float, ...] = ()
    std: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        """Refuse a record whose constants cannot be applied (a hand-edited or foreign one)."""
        count = {"none": 0, "global": 1, "channel": self.shape[0] if self.shape else -1}
        if self.standardise not in STANDARDISE:
            raise ValueError(f"standardise must be one of {', '.join(STANDARDISE)}, "
                             f"got {self.standardise!r}")
        if len(self.mean) != count[self.standardise] or len(self.std) != len(self.mean):
            raise ValueError(f"{self.standardise!r} standardisation needs "
                             f"{count[self.standardise]} mean and std values, got "
                             f"{len(self.mean)} and {len(self.std)}")
        values = (self.divide_by, *self.mean, *self.std)
        if not all(math.isfinite(v) for v in values) or self.divide_by <= 0 \
                or any(s <= 0 for s in self.std):
            raise ValueError("divide_by and std must be finite and positive, mean finite")

    # -- applying ---------------------------------------------------------------------------

    def scale(self, raw: Any) -> torch.Tensor:
        """``float32(raw).reshape(-1, *shape) / divide_by``: a fresh float32 tensor (a single
        sample becomes a batch of one)."""
        if isinstance(raw, torch.Tensor):
            raw = raw.detach().cpu().numpy()
        x = torch.from_numpy(np.array(raw, dtype=np.float32, copy=True))
        try:
            x = x.reshape(-1, *self.shape)
        except RuntimeError:
            raise ValueError(f"raw samples of shape {tuple(x.shape)} do not hold samples of "
                             f"{self.shape} values each") from None
        return x.div_(torch.full((1,) * x.dim(), self.divide_by, dtype=torch.float32))

    def standardised(self, x: torch.Tensor) -> torch.Tensor:
        """``(x - mean) / std`` in place on a scaled batch ``x`` (N, *shape)."""
        if self.standardise == "none":
            return x
        view = [1] * x.dim()
        if self.standardise == "channel":
            view[1] = len(self.mean)
        mean, std = (torch.tensor(v, dtype=torch.float32).reshape(view)
                     for v in (self.mean, self.std))
        return x.sub_(mean).div_(std)

    def apply(self, raw: Any) -> torch.Tensor:
        """Model inputs ``(N, *shape)`` float32 from raw samples (array-like)."""
        return self.standardised(self.scale(raw))

    def fitted(self, train: torch.Tensor, standardise: str) -> Preprocess:
        """This record with ``standardise`` statistics of ``train`` (scaled training inputs
        (N, *shape)): "global" over everything, "channel" per channel (axis 1)."""
        if standardise == "none":
            return self
        dims = [0, *range(1 + (standardise == "channel"), train.dim())]
        mean = train.mean(dims)
        std = train.std(dims, unbiased=False)
        std = torch.where(std > 0, std, torch.ones_like(std))
        return Preprocess(self.raw, self.shape, self.divide_by, standardise,
                          tuple(mean.reshape(-1).tolist()), tuple(std.reshape(-1).tolist()))

    # -- storing ----------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON data (the run's "created" event, export manifests, ONNX metadata)."""
        return {"raw": self.raw, "shape": list(self.shape), "dtype": "float32",
                "divide_by": self.divide_by, "standardise": self.standardise,
                "mean": list(self.mean), "std": list(self.std), "formula": FORMULA}

    @staticmethod
    def from_dict(record: Any, where: str = "preprocess record") -> Preprocess:
        """The record written by :meth:`to_dict`; one DatasetError naming ``where`` if not."""
        try:
            return Preprocess(str(record["raw"]), tuple(int(n) for n in record["shape"]),
                              float(record["divide_by"]), str(record["standardise"]),
                              tuple(float(v) for v in record["mean"]),
                              tuple(float(v) for v in record["std"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise DatasetError(f"{where}: not a usable preprocessing record ({exc})") from None
