"""Task distributions for few-shot meta-learning (Finn et al. 2017, *Model-Agnostic
Meta-Learning for Fast Adaptation of Deep Networks*, section 5).

A task family samples *batches of tasks*: for each task a support set (the K examples the model
adapts on) and a query set (where the adapted model is scored). Every sampler takes an explicit
``torch.Generator`` (a ``numpy.random.Generator`` is accepted and turned into one); nothing here
touches a global RNG.

* ``sinusoid`` — the paper's regression problem: ``y = A sin(x - phase)`` with amplitude
  ``A ~ U[0.1, 5]``, phase ``~ U[0, pi]`` and inputs ``x ~ U[-5, 5]``; K-shot with K = 5, 10, 20
  in the paper (any K here).
* ``digits`` — N-way K-shot classification from scikit-learn's bundled 8x8 digits; meta-train and
  meta-test use disjoint classes (``test_classes``, by default 5..9).
* ``omniglot`` — N-way K-shot classification from Omniglot in torchvision's layout under a local
  ``root`` (``root/omniglot-py/images_background/<alphabet>/<character>/*.png`` and optionally
  ``images_evaluation``); images resized to 28x28 with strokes as 1, the first
  ``train_characters`` (1200 in the paper) characters meta-train, the rest meta-test; meta-train
  classes are augmented with rotations by multiples of 90 degrees, as in the paper.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import DatasetError
from .digits import digits

Gen = torch.Generator | np.random.Generator
OMNIGLOT_FOLDER = "omniglot-py"       # torchvision's folder under a root


def torch_generator(gen: Gen) -> torch.Generator:
    """``gen`` itself, or a CPU torch generator seeded by one draw from a numpy Generator."""
    if isinstance(gen, torch.Generator):
        return gen
    if isinstance(gen, np.random.Generator):
        return torch.Generator().manual_seed(int(gen.integers(0, 2**63 - 1)))
    raise TypeError(f"expected a torch.Generator or numpy.random.Generator, got {type(gen)}")


def stream_generator(seed: int, stream: int) -> torch.Generator:
    """A private torch generator for one purpose (``stream``) of one ``seed``."""
    state = np.random.SeedSequence([int(seed) % 2**63, int(stream)]).generate_state(2, np.uint64)
    return torch.Generator().manual_seed(int(state[0]) % 2**63)


@dataclass(frozen=True)
class TaskBatch:
    """T tasks: ``x_*`` are ``(T, S, *input_shape)``; ``y_*`` are ``(T, S, 1)`` float targets
    (regression) or ``(T, S)`` int64 labels in ``0..n_way-1`` (classification). ``info`` holds
    per-task parameters, e.g. the sinusoids' ``amplitude`` and ``phase`` of shape ``(T,)``."""

    x_support: torch.Tensor
    y_support: torch.Tensor
    x_query: torch.Tensor
    y_query: torch.Tensor
    info: dict[str, torch.Tensor] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.x_support)

    @property
    def tensors(self) -> tuple[torch.Tensor, ...]:
        return self.x_support, self.y_support, self.x_query, self.y_query

    def to(self, device: str | torch.device) -> TaskBatch:
        moved = [t.to(device) for t in self.tensors]
        return TaskBatch(*moved, {k: v.to(device) for k, v in self.info.items()})


def _positive(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name}: must be a positive integer (got {value!r})")


@dataclass(frozen=True)
class SinusoidTasks:
    """The paper's sinusoid regression (section 5.1); the sign convention ``sin(x - phase)``
    follows the authors' reference code."""

    k_shot: int = 10
    k_query: int = 10
    amplitude: tuple[float, float] = (0.1, 5.0)
    phase: tuple[float, float] = (0.0, math.pi)
    x_range: tuple[float, float] = (-5.0, 5.0)
    kind = "regression"
    input_shape = (1,)
    num_outputs = 1

    def __post_init__(self) -> None:
        _positive("k_shot", self.k_shot)
        _positive("k_query", self.k_query)

    @staticmethod
    def function(x: torch.Tensor, amplitude: torch.Tensor, phase: torch.Tensor) -> torch.Tensor:
        return amplitude * torch.sin(x - phase)

    def sample(self, gen: Gen, n_tasks: int, split: str = "train") -> TaskBatch:
        """``n_tasks`` sinusoids with K support and ``k_query`` query points each (any split:
        every sinusoid is a fresh task)."""
        g = torch_generator(gen)
        amp = _uniform(g, (n_tasks, 1, 1), self.amplitude)
        phase = _uniform(g, (n_tasks, 1, 1), self.phase)
        x = _uniform(g, (n_tasks, self.k_shot + self.k_query, 1), self.x_range)
        y = self.function(x, amp, phase)
        k = self.k_shot
        return TaskBatch(x[:, :k], y[:, :k], x[:, k:], y[:, k:],
                         {"amplitude": amp.view(-1), "phase": phase.view(-1)})


def _uniform(g: torch.Generator, shape: tuple[int, ...], bounds: tuple[float, float]):
    lo, hi = bounds
    return lo + (hi - lo) * torch.rand(shape, generator=g)


@dataclass(frozen=True, eq=False)
class ClassTasks:
    """N-way K-shot classification over pools of examples per class, split into meta-train
    (``train_pool``) and meta-test (``test_pool``) classes that never overlap.

    A pool is ``(classes, M, *input_shape)`` (uint8 pools are divided by 255). Each task draws
    ``n_way`` classes without replacement, labels them 0..n_way-1 in a random order, and draws
    ``k_shot + k_query`` distinct examples of each. With ``rotations`` = 4 the meta-train classes
    also come rotated by 90, 180 and 270 degrees as new classes (the paper's Omniglot augmentation).
    ``class_ids`` names each pool's classes in the source dataset (default: meta-train 0..A-1,
    meta-test A..A+B-1); a batch's ``info['classes']`` gives them per task, ``(T, n_way)``.
    """

    name: str
    train_pool: torch.Tensor
    test_pool: torch.Tensor
    n_way: int = 5
    k_shot: int = 1
    k_query: int = 5
    rotations: int = 1
    class_ids: tuple[tuple[int, ...], tuple[int, ...]] | None = None  # source labels per split
    kind = "classification"

    def __post_init__(self) -> None:
        for key in ("n_way", "k_shot", "k_query"):
            _positive(key, getattr(self, key))
        if self.rotations not in (1, 4):
            raise ValueError(f"rotations: must be 1 or 4 (got {self.rotations})")
        for split, pool, count in (("meta-train", self.train_pool, self.classes("train")),
                                   ("meta-test", self.test_pool, self.classes("test"))):
            if self.n_way > count:
                raise ValueError(f"n_way: {self.n_way} exceeds the {count} {split} classes "
                                 f"of {self.name}")
            if self.k_shot + self.k_query > pool.shape[1]:
                raise ValueError(f"k_shot: k_shot + k_query = {self.k_shot + self.k_query} "
                                 f"exceeds the {pool.shape[1]} examples per class of {self.name}")

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.train_pool.shape[2:])

    @property
    def num_outputs(self) -> int:
        return self.n_way

    def classes(self, split: str) -> int:
        pool = self._pool(split)
        return len(pool) * (self.rotations if split == "train" else 1)

    def _pool(self, split: str) -> torch.Tensor:
        if split not in ("train", "test"):
            raise ValueError(f"split: must be 'train' or 'test' (got {split!r})")
        return self.train_pool if split == "train" else self.test_pool

    def sample(self, gen: Gen, n_tasks: int, split: str = "train") -> TaskBatch:
        """``n_tasks`` tasks from the ``split``'s classes; support and query sorted by label."""
        g, pool = torch_generator(gen), self._pool(split)
        rot = self.rotations if split == "train" else 1
        n, m, shots = self.n_way, pool.shape[1], self.k_shot + self.k_query
        chosen = torch.rand(n_tasks, len(pool) * rot, generator=g).argsort(1)[:, :n]  # (T, n)
        items = torch.rand(n_tasks, n, m, generator=g).argsort(2)[..., :shots]        # (T, n, s)
        x = pool[(chosen // rot)[..., None], items]                      # (T, n, s, *shape)
        x = x.float() / 255.0 if pool.dtype == torch.uint8 else x     # a copy: safe to rotate
        x = _rotate(x, (chosen % rot)[..., None].expand(-1, -1, shots))
        labels = torch.arange(n).view(1, n, 1).expand(n_tasks, n, shots)
        ids = torch.tensor(self._ids(split))[chosen // rot]
        k, shape = self.k_shot, x.shape[3:]
        return TaskBatch(x[:, :, :k].reshape(n_tasks, n * k, *shape),
                         labels[:, :, :k].reshape(n_tasks, n * k),
                         x[:, :, k:].reshape(n_tasks, n * self.k_query, *shape),
                         labels[:, :, k:].reshape(n_tasks, n * self.k_query),
                         {"classes": ids, "rotation": chosen % rot})

    def _ids(self, split: str) -> tuple[int, ...]:
        if self.class_ids is not None:
            return tuple(self.class_ids[split == "test"])
        start = 0 if split == "train" else len(self.train_pool)
        return tuple(range(start, start + len(self._pool(split))))


def _rotate(x: torch.Tensor, turns: torch.Tensor) -> torch.Tensor:
    """Rotate images ``x[..., H, W]`` by ``turns`` (same leading shape) quarter turns."""
    for k in (1, 2, 3):
        mask = turns == k
        if bool(mask.any()):
            x[mask] = torch.rot90(x[mask], k, dims=(-2, -1))
    return x


@lru_cache(maxsize=1)
def _digits_by_class() -> torch.Tensor:
    """scikit-learn's digits as ``(10, 174, 1, 8, 8)`` floats in [0, 1]; each class keeps its
    first 174 images (the smallest class's count) so every pool is rectangular."""
    raw, labels = digits()
    images = torch.from_numpy(raw.astype(np.float32) / 16.0)
    per_class = [images[labels == c] for c in range(10)]
    m = min(len(p) for p in per_class)
    return torch.stack([p[:m] for p in per_class])[:, :, None]


def digits_tasks(n_way: int = 5, k_shot: int = 1, k_query: int = 5,
                 test_classes: tuple[int, ...] = (5, 6, 7, 8, 9)) -> ClassTasks:
    """N-way K-shot digits: classes in ``test_classes`` meta-test, the others meta-train."""
    test = sorted({int(c) for c in test_classes})
    if not test or any(not 0 <= c <= 9 for c in test) or len(test) == 10:
        raise ValueError(f"test_classes: must be a non-empty proper subset of 0..9 "
                         f"(got {test_classes!r})")
    train = [c for c in range(10) if c not in test]
    pools = _digits_by_class()
    return ClassTasks("digits", pools[train], pools[test], n_way, k_shot, k_query,
                      class_ids=(tuple(train), tuple(test)))


def omniglot_tasks(root: str | Path, n_way: int = 5, k_shot: int = 1, k_query: int = 1,
                   image_size: int = 28, train_characters: int = 1200, rotations: bool = True,
                   download: bool = False) -> ClassTasks:
    """N-way K-shot Omniglot from a local torchvision root (see the module doc)."""
    _positive("image_size", image_size)
    _positive("train_characters", train_characters)
    if not str(root):
        raise DatasetError("omniglot: no root folder given (parameter 'root'); set it to the "
                           f"folder holding {OMNIGLOT_FOLDER}, or download=true to fetch it there")
    pool = _omniglot_pool(str(Path(root).expanduser()), image_size, download)
    if train_characters >= len(pool):
        raise ValueError(f"train_characters: {train_characters} leaves no meta-test characters "
                         f"of the {len(pool)} Omniglot characters under {root}")
    return ClassTasks("omniglot", pool[:train_characters], pool[train_characters:], n_way,
                      k_shot, k_query, 4 if rotations else 1)


@lru_cache(maxsize=2)
def _omniglot_pool(root: str, image_size: int, download: bool) -> torch.Tensor:
    """Every character of the background (then evaluation) set as ``(chars, M, 1, S, S)``
    uint8, strokes bright; M is the smallest image count of any character (20 in Omniglot)."""
    characters = []
    for background in (True, False):
        if background or download or (Path(root) / OMNIGLOT_FOLDER / "images_evaluation").is_dir():
            characters += _omniglot_characters(root, background, image_size, download)
    m = min(len(images) for images in characters)
    return torch.stack([images[:m] for images in characters])



@lru_cache(maxsize=1)
def _extracted_omniglot() -> type:
    """torchvision's Omniglot, accepting an extracted folder without its zip: torchvision checks
    only the zip's MD5, and the zips are commonly deleted after extraction. (Imported lazily:
    torchvision is slow to import and only Omniglot needs it.)"""
    from torchvision.datasets import Omniglot

    class ExtractedOmniglot(Omniglot):
        def _check_integrity(self) -> bool:
            return (Path(self.root) / self._get_target_folder()).is_dir()
    return ExtractedOmniglot


def _omniglot_characters(root: str, background: bool, size: int,
                         download: bool) -> list[torch.Tensor]:
    """One ``(images, 1, size, size)`` uint8 tensor per character, sorted by
    ``alphabet/character`` and file name (torchvision lists folders in os order)."""
    target = "images_background" if background else "images_evaluation"
    folder = Path(root) / OMNIGLOT_FOLDER / target
    if not download and not folder.is_dir():
        raise DatasetError(f"omniglot: no {target} folder in {folder.parent} (expected "
                           f"torchvision's layout ROOT/{OMNIGLOT_FOLDER}/{target}/<alphabet>/"
                           f"<character>/*.png with ROOT = {root!r}); set the root to the folder "
                           f"holding {OMNIGLOT_FOLDER}, or download=true to fetch it")
    try:
        data = _extracted_omniglot()(root, background=background, download=download,
                                  loader=lambda path: (path, _read_glyph(path, size)))
        records = sorted((data[i][0] for i in range(len(data))), key=lambda r: r[0])
    except (OSError, RuntimeError, ValueError) as err:
        raise DatasetError(f"omniglot: cannot read {folder} ({type(err).__name__}: {err})") \
            from err
    by_character: dict[Path, list[np.ndarray]] = {}
    for path, image in records:
        by_character.setdefault(Path(path).parent, []).append(image)
    if not by_character:
        raise DatasetError(f"omniglot: no character images (*.png) under {folder}")
    return [torch.from_numpy(np.stack(images))[:, None] for images in by_character.values()]


def _read_glyph(path: str, size: int) -> np.ndarray:
    """A 105x105 Omniglot PNG as a ``(size, size)`` uint8 array with bright strokes."""
    from PIL import Image
    with Image.open(path) as image:
        small = image.convert("L").resize((size, size), Image.LANCZOS)
    return 255 - np.asarray(small, dtype=np.uint8)


FEW_SHOT_FAMILIES: dict[str, Callable[..., Any]] = {
    "sinusoid": lambda n_way, k_shot, k_query, **_: SinusoidTasks(k_shot, k_query),
    "digits": lambda n_way, k_shot, k_query, **_: digits_tasks(n_way, k_shot, k_query),
    "omniglot": lambda n_way, k_shot, k_query, root="", image_size=28, train_characters=1200,
    download=False, **_: omniglot_tasks(root, n_way, k_shot, k_query, image_size,
                                        train_characters, True, download),
}


def make_tasks(family: str, *, n_way: int = 5, k_shot: int = 1, k_query: int = 5,
               **options: Any):
    """A task family by name (``FEW_SHOT_FAMILIES``); ``options`` go to the ones that use them
    (``root``, ``image_size``, ``train_characters``, ``download`` for omniglot)."""
    if family not in FEW_SHOT_FAMILIES:
        raise ValueError(f"family: unknown task family {family!r} "
                         f"(known: {', '.join(sorted(FEW_SHOT_FAMILIES))})")
    return FEW_SHOT_FAMILIES[family](n_way=n_way, k_shot=k_shot, k_query=k_query, **options)
