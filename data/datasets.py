"""Datasets for evograph runs: a registry of loaders giving seeded, stratified splits.

Every loader returns a :class:`Dataset` of float32 inputs and int64 labels in train/val/test splits,
stratified and derived only from ``seed`` through private RNGs: one seed always gives the same
splits, and no loader moves the global ``random``/``numpy.random``/``torch`` RNGs.

Offline: ``digits`` (scikit-learn's bundled 8x8 digits) and ``mnist1d`` (generated). From a user's
``root`` in torchvision's layout: ``mnist``, ``fashion-mnist`` (raw IDX files in ``root/MNIST/raw``,
``root/FashionMNIST/raw``) and ``cifar10`` (pickled batches in ``root/cifar-10-batches-py``, read
with an unpickler that admits only numpy arrays).
"""

from __future__ import annotations

import dataclasses
import functools
import numbers
import os
import random
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from sklearn.model_selection import train_test_split

from ..errors import DatasetError
from .digits import digits
from .numpy_pickle import NumpyOnlyUnpickler
from .preprocess import Preprocess

DEFAULT_ROOT = Path("~/.cache/evograph/datasets").expanduser()
_FETCH_HINT = "pass download=True (--set dataset.download=true) to fetch it"
_GLOBAL_RNG_LOCK = threading.Lock()  # mnist1d reseeds the process-wide RNGs: one run at a time


@dataclass(frozen=True, eq=False)
class Dataset:
    """A dataset split three ways: inputs ``(N, *input_shape)`` float32, labels ``(N,)`` int64;
    ``preprocess`` says how raw samples become those inputs (None: unknown, e.g. hand-made)."""

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    input_shape: tuple[int, ...]
    num_classes: int
    preprocess: Preprocess | None = None

    def __post_init__(self) -> None:
        """Refuse inconsistent splits early, before a training loop fails far from the cause."""
        splits = (self.x_train, self.y_train), (self.x_val, self.y_val), (self.x_test, self.y_test)
        for x, y in splits:
            if tuple(x.shape[1:]) != tuple(self.input_shape) or len(x) != len(y):
                raise DatasetError(f"dataset {self.name!r}: a split has inputs {tuple(x.shape)}"
                                   f" and labels {tuple(y.shape)}, expected inputs (N, "
                                   f"*{self.input_shape}) and as many labels")

    def to(self, device: torch.device | str, pinned: bool = False) -> Dataset:
        """The dataset with every split on ``device`` (itself on CPU). ``pinned``: copied from
        page-locked host memory, the splits' copies overlapping, then waited for once."""
        device = torch.device(device)
        if device.type == "cpu":
            return self
        splits = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                  if isinstance(getattr(self, f.name), torch.Tensor)}
        moved = {name: (t.pin_memory() if pinned else t).to(device, non_blocking=pinned)
                 for name, t in splits.items()}
        if pinned:
            torch.cuda.synchronize(device)
        return dataclasses.replace(self, **moved)

    def describe(self) -> dict:
        """What a run stores about its data (JSON): a one-line ``summary`` for logs and the CLI,
        the split sizes, and the ``preprocess`` record that exports ship (None if unknown)."""
        sizes = {"train": len(self.y_train), "val": len(self.y_val), "test": len(self.y_test)}
        summary = (f"{self.name}: input {self.input_shape}, {self.num_classes} classes, "
                   f"train {sizes['train']} / val {sizes['val']} / test {sizes['test']}")
        return {"summary": summary, "name": self.name, "input_shape": list(self.input_shape),
                "num_classes": self.num_classes, "splits": sizes,
                "preprocess": self.preprocess.to_dict() if self.preprocess else None}


@dataclass(frozen=True)
class LoadOptions:
    """The validated arguments of :func:`load_dataset`, handed to a registered loader."""

    name: str
    seed: int
    root: Path
    download: bool
    val_fraction: float
    test_fraction: float
    limit: int | None


Loader = Callable[[LoadOptions], Dataset]
DATASETS: dict[str, Loader] = {}


def register_dataset(name: str) -> Callable[[Loader], Loader]:
    """Decorator adding a loader to :data:`DATASETS` under ``name`` (a plain dict, as for ops)."""
    def add(loader: Loader) -> Loader:
        DATASETS[name] = loader
        return loader
    return add


def load_dataset(name: str, *, seed: int = 0, root: str | os.PathLike | None = None,
                 download: bool = False, val_fraction: float = 0.15, test_fraction: float = 0.2,
                 limit: int | None = None) -> Dataset:
    """Load dataset ``name`` split by ``seed``; any user mistake raises one clear DatasetError.

    ``test_fraction`` applies to datasets without an official test set (digits, mnist1d);
    ``limit`` keeps at most that many training samples (a stratified subset) for quick runs.
    """
    key = name.strip().lower().replace("_", "-") if isinstance(name, str) else None
    if key not in DATASETS:
        known = ", ".join(sorted(DATASETS))
        raise DatasetError(f"unknown dataset {name!r}; known datasets: {known}")
    return DATASETS[key](_options(key, seed, root, download, val_fraction, test_fraction, limit))


def _options(name: str, seed, root, download, val_fraction, test_fraction, limit) -> LoadOptions:
    """Validate the arguments of load_dataset, naming the dataset and the bad value."""
    def fail(what: str) -> DatasetError:
        return DatasetError(f"dataset {name!r}: {what}")
    if not _is_int(seed) or seed < 0:
        raise fail(f"seed must be a non-negative integer, got {seed!r}")
    for key, value in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if not isinstance(value, numbers.Real) or isinstance(value, bool) or not 0 < value < 1:
            raise fail(f"{key} must be a number strictly between 0 and 1, got {value!r}")
    if val_fraction + test_fraction >= 1:
        raise fail(f"val_fraction + test_fraction must be below 1 to leave training data, "
                   f"got {val_fraction} + {test_fraction}")
    if limit is not None and (not _is_int(limit) or limit < 1):
        raise fail(f"limit must be a positive integer or None, got {limit!r}")
    if not isinstance(download, bool):
        raise fail(f"download must be true or false, got {download!r}")
    if root is not None and not isinstance(root, (str, os.PathLike)):
        raise fail(f"root must be a path, got {root!r}")
    path = DEFAULT_ROOT if root is None else Path(root).expanduser()
    if path.exists() and not path.is_dir():
        raise fail(f"root {path} is a file, not a directory")
    limit = None if limit is None else int(limit)
    return LoadOptions(name, int(seed), path, download, float(val_fraction), float(test_fraction),
                       limit)


def _is_int(value: object) -> bool:
    """True for Python and numpy integers, but not for bools (True is no seed or limit)."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


# ---------------------------------------------------------------- splitting and finishing


Arrays = tuple[np.ndarray, np.ndarray]


def _rng(seed: int, stream: int) -> np.random.RandomState:
    """A private RNG for one purpose (stream) of one seed: splits and subsets never share draws."""
    return np.random.RandomState(np.random.SeedSequence([seed, stream]).generate_state(4))


def _take(opts: LoadOptions, y: np.ndarray, size: int, rng: np.random.RandomState,
          what: str) -> tuple[np.ndarray, np.ndarray]:
    """Indices of ``y`` split into (rest, taken) with ``size`` taken, class proportions kept."""
    try:
        rest, taken = train_test_split(np.arange(len(y)), test_size=size, stratify=y,
                                       random_state=rng)
    except ValueError as err:
        raise DatasetError(f"dataset {opts.name!r}: cannot draw a stratified {what} split of "
                           f"{size} from {len(y)} samples ({err})") from err
    return np.sort(rest), np.sort(taken)


Splits = tuple[Arrays, Arrays, Arrays]


def _split(opts: LoadOptions, pool: Arrays, test: Arrays | None = None) -> Splits:
    """Split ``pool`` into train/val(/test) by the requested fractions of its size, stratified and
    from the seed; an official ``test`` set, when given, is kept as it is."""
    (x, y), rng = pool, _rng(opts.seed, 0)
    rest = np.arange(len(y))
    if test is None:
        rest, held = _take(opts, y, round(len(y) * opts.test_fraction), rng, "test")
        test = x[held], y[held]
    fit, val = _take(opts, y[rest], round(len(y) * opts.val_fraction), rng, "validation")
    return (x[rest[fit]], y[rest[fit]]), (x[rest[val]], y[rest[val]]), test


def _limit(opts: LoadOptions, x: np.ndarray, y: np.ndarray, num_classes: int) -> Arrays:
    """Keep at most ``opts.limit`` training samples, stratified, from their own seeded stream."""
    if opts.limit is None or opts.limit >= len(y):
        return x, y
    if opts.limit < num_classes:
        raise DatasetError(f"dataset {opts.name!r}: limit must be at least the number of classes "
                           f"({num_classes}) to keep every class, got {opts.limit}")
    rng = _rng(opts.seed, 1)
    if len(y) - opts.limit < num_classes:  # too few left out to stratify; nearly everything is kept
        keep = np.sort(rng.permutation(len(y))[:opts.limit])
    else:
        keep = _take(opts, y, opts.limit, rng, "limited training")[1]
    return x[keep], y[keep]


def _finish(opts: LoadOptions, splits: Splits, num_classes: int, raw: str,
            divide_by: float = 1.0, standardise: str = "none") -> Dataset:
    """Apply ``limit``, scale to float32 (``x / divide_by``), standardise with training statistics
    ("global" or per-"channel"), all through the :class:`Preprocess` record kept with the data
    (``raw`` describes a raw sample); uint8 images stay uint8 until here to keep peak memory low."""
    (x_train, y_train), val, test = splits
    x_train, y_train = _limit(opts, x_train, y_train, num_classes)
    recipe = Preprocess(raw, tuple(x_train.shape[1:]), float(divide_by))
    xs = [recipe.scale(x) for x, _ in ((x_train, y_train), val, test)]  # fresh float32 copies
    recipe = recipe.fitted(xs[0], standardise)
    parts = []
    for x, (_, y) in zip(xs, ((x_train, y_train), val, test)):
        parts += [recipe.standardised(x), torch.from_numpy(y.astype(np.int64))]
    return Dataset(opts.name, *parts, input_shape=recipe.shape, num_classes=num_classes,
                   preprocess=recipe)


def _reason(err: BaseException) -> str:
    """An exception as short text (torchvision's assertions carry no message of their own)."""
    return f"{type(err).__name__}: {err}" if str(err) else type(err).__name__


def _check_labels(opts: LoadOptions, y: np.ndarray, num_classes: int, path: Path) -> None:
    """Labels must be integers in ``[0, num_classes)``; anything else means a corrupt file."""
    if y.size and (y.min() < 0 or y.max() >= num_classes):
        raise DatasetError(f"dataset {opts.name!r}: {path} has labels outside 0..{num_classes - 1}")


def _ensure_files(opts: LoadOptions, folder: Path, names: list[str],
                  fetch: Callable[[], object]) -> None:
    """Check the expected files exist (fetching them first when asked), else say where we looked."""
    missing = [n for n in names if not (folder / n).is_file()]
    if missing and opts.download:
        try:
            fetch()
        except Exception as err:  # network, disk or checksum failure from torchvision
            raise DatasetError(f"dataset {opts.name!r}: download into {opts.root} failed "
                               f"({_reason(err)})") from err
        missing = [n for n in names if not (folder / n).is_file()]
    if missing:
        absent = "" if opts.root.exists() else f" (root {opts.root} does not exist)"
        hint = "" if opts.download else f"; set dataset.root to the right folder or {_FETCH_HINT}"
        raise DatasetError(f"dataset {opts.name!r} not found in {folder}{absent}: missing "
                           f"{', '.join(missing)}{hint}")


# ---------------------------------------------------------------- offline datasets


@register_dataset("digits")
def _load_digits(opts: LoadOptions) -> Dataset:
    """scikit-learn's bundled 8x8 digits (1797 samples, 0..16 pixels): the offline default."""
    images, labels = digits()
    raw = "sklearn.datasets.load_digits().images: (N, 8, 8) floats 0..16"
    return _finish(opts, _split(opts, (images[:, None], labels)), 10, raw, divide_by=16)


@functools.lru_cache(maxsize=4)
def _mnist1d_pool(seed: int) -> Arrays:
    """Generate MNIST-1D (Greydanus 2020) offline; its generator reseeds the global RNGs, so those
    are saved and restored around it. Returns read-only (x, y) with x of shape (5000, 1, 40)."""
    with _GLOBAL_RNG_LOCK:
        py_state, np_state = random.getstate(), np.random.get_state()
        try:
            from mnist1d.data import get_dataset_args, make_dataset
            args = get_dataset_args()
            args.seed = seed % 2**32  # numpy's legacy seeding takes 32 bits
            data = make_dataset(args)
        finally:
            random.setstate(py_state)
            np.random.set_state(np_state)
    x = np.concatenate([data["x"], data["x_test"]]).astype(np.float32)[:, None]
    y = np.concatenate([data["y"], data["y_test"]]).astype(np.int64)
    x.setflags(write=False)
    y.setflags(write=False)
    return x, y


@register_dataset("mnist1d")
def _load_mnist1d(opts: LoadOptions) -> Dataset:
    """MNIST-1D: 5000 length-40 signals, pooled and re-split; standardised with train statistics."""
    x, y = _mnist1d_pool(opts.seed)
    raw = "mnist1d.data.make_dataset() signals x / x_test: (N, 40) floats"
    return _finish(opts, _split(opts, (x, y)), 10, raw, standardise="global")


# ---------------------------------------------------------------- torchvision datasets from a root


_IDX_FILES = ["train-images-idx3-ubyte", "train-labels-idx1-ubyte",
              "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]


def _read_idx(opts: LoadOptions, path: Path, images: bool) -> np.ndarray:
    """Read one raw IDX file with torchvision's parser; any failure names the file."""
    from torchvision.datasets.mnist import read_image_file, read_label_file
    try:
        array = (read_image_file if images else read_label_file)(str(path)).numpy()
    except Exception as err:  # torchvision raises AssertionError/ValueError/RuntimeError/... here
        raise DatasetError(f"dataset {opts.name!r}: {path} is not a valid IDX file "
                           f"({_reason(err)})") from err
    if images and array.shape[1:] != (28, 28):
        raise DatasetError(f"dataset {opts.name!r}: {path} holds images of shape "
                           f"{array.shape[1:]}, expected (28, 28)")
    return array


def _load_idx_dataset(opts: LoadOptions, class_name: str) -> Dataset:
    """MNIST (LeCun et al. 1998) or Fashion-MNIST (Xiao et al. 2017) from raw IDX files in
    ``root/<class_name>/raw``: the official training set is split into train/val."""
    import torchvision.datasets as tvd
    folder = opts.root / class_name / "raw"
    _ensure_files(opts, folder, _IDX_FILES,
                  lambda: getattr(tvd, class_name)(str(opts.root), train=True, download=True))
    arrays = {n: _read_idx(opts, folder / n, "images" in n) for n in _IDX_FILES}
    splits = []
    for prefix in ("train", "t10k"):
        x, y = arrays[f"{prefix}-images-idx3-ubyte"], arrays[f"{prefix}-labels-idx1-ubyte"]
        labels_path = folder / f"{prefix}-labels-idx1-ubyte"
        if len(x) != len(y):
            raise DatasetError(f"dataset {opts.name!r}: {labels_path} has {len(y)} labels for "
                               f"{len(x)} images in {folder / f'{prefix}-images-idx3-ubyte'}")
        _check_labels(opts, y, 10, labels_path)
        splits.append((x[:, None], y))
    raw = f"{class_name} IDX images: (N, 28, 28) uint8 0..255"
    return _finish(opts, _split(opts, *splits), 10, raw, divide_by=255)


for _name, _folder in (("mnist", "MNIST"), ("fashion-mnist", "FashionMNIST")):
    register_dataset(_name)(functools.partial(_load_idx_dataset, class_name=_folder))


def _read_cifar_batch(opts: LoadOptions, path: Path) -> Arrays:
    """Read one CIFAR-10 batch (a dict with data (N, 3072) uint8 and labels) as (N, 3, 32, 32)."""
    try:
        with open(path, "rb") as handle:
            entry = NumpyOnlyUnpickler(handle, encoding="latin1").load()
        if not isinstance(entry, dict):
            raise TypeError(f"expected a dict, found {type(entry).__name__}")
        data = entry.get(b"data", entry.get("data"))
        labels = entry.get(b"labels", entry.get("labels"))
        if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 \
                or data.shape[1] != 3 * 32 * 32:
            raise ValueError("'data' must be a uint8 array of shape (N, 3072)")
        y = np.asarray(labels, dtype=np.int64)
        if y.shape != (len(data),):
            raise ValueError(f"'labels' must list {len(data)} integers")
    except Exception as err:  # unpickling errors, truncation, wrong structure
        raise DatasetError(f"dataset {opts.name!r}: {path} is not a valid CIFAR-10 batch "
                           f"({_reason(err)})") from err
    _check_labels(opts, y, 10, path)
    return data.reshape(-1, 3, 32, 32), y


@register_dataset("cifar10")
def _load_cifar10(opts: LoadOptions) -> Dataset:
    """CIFAR-10 (Krizhevsky 2009) from ``root/cifar-10-batches-py``: five training batches split
    into train/val, the test batch kept; scaled to [0, 1] and standardised per channel on train."""
    from torchvision.datasets import CIFAR10
    from torchvision.datasets.utils import download_and_extract_archive
    folder = opts.root / CIFAR10.base_folder
    train_names = [n for n, _ in CIFAR10.train_list]
    test_names = [n for n, _ in CIFAR10.test_list]
    _ensure_files(opts, folder, train_names + test_names, lambda: download_and_extract_archive(
        CIFAR10.url, str(opts.root), filename=CIFAR10.filename, md5=CIFAR10.tgz_md5))
    train, test = ([_read_cifar_batch(opts, folder / n) for n in names]
                   for names in (train_names, test_names))
    train, test = ((np.concatenate([x for x, _ in parts]), np.concatenate([y for _, y in parts]))
                   for parts in (train, test))
    splits = _split(opts, train, test)
    raw = "CIFAR-10 images, channels first: (N, 3, 32, 32) uint8 0..255 (HWC: transpose first)"
    return _finish(opts, splits, 10, raw, divide_by=255, standardise="channel")
