"""Contract of every registered dataset loader (``evograph.data.datasets.DATASETS``), offline:
the bundled and generated ones as they are, the file-based ones from small roots written here
in their real on-disk formats (the writers of ``tests/data/test_datasets.py``).

Each loader gives splits of its declared input shape and class count; train, validation and test
never share a sample; another seed gives another train/validation partition of the same sizes;
``limit`` keeps a subset of the same training split; and a root
that does not exist is either irrelevant (offline data) or one clear ``DatasetError`` line naming
the dataset and the path — never a traceback, never a folder created behind the user's back.

Parametrized over the live registry at collection time; a dataset registered later fails
``test_every_dataset_has_a_contract_case`` until :data:`CASES` says how to load it offline.
Already checked per dataset in ``test_datasets.py`` and not repeated: dtypes, finite values,
every class in every split, same seed same splits, global RNGs untouched, ``describe()``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from evograph.data.datasets import DATASETS, Dataset, load_dataset
from evograph.errors import DatasetError

from tests.contracts import entries
from tests.data.test_datasets import rows, same_splits, write_cifar_root, write_idx_root


@dataclass(frozen=True)
class Case:
    """What a dataset declares, and how to give it a root offline (None: it needs none)."""

    input_shape: tuple[int, ...]
    num_classes: int
    write_root: Callable[[Path], object] | None = None


CASES = {
    "digits": Case((1, 8, 8), 10),
    "mnist1d": Case((1, 40), 10),
    "mnist": Case((1, 28, 28), 10, lambda root: write_idx_root(root, "MNIST")),
    "fashion-mnist": Case((1, 28, 28), 10, lambda root: write_idx_root(root, "FashionMNIST")),
    "cifar10": Case((3, 32, 32), 10, write_cifar_root),
}
NAMES = entries(DATASETS)
SPLITS = ("train", "val", "test")


def case(name: str) -> Case:
    if name not in CASES:
        pytest.fail(f"dataset {name!r} has no contract case: add to CASES in {__file__} its "
                    "input shape, class count and how to write a small root offline")
    return CASES[name]


@pytest.fixture
def load(name, tmp_path):
    """``load(**options)``: the dataset from a root written for it (or none when offline)."""
    writer = case(name).write_root
    root = None
    if writer is not None:
        root = tmp_path / "root"
        writer(root)

    def loader(**options) -> Dataset:
        return load_dataset(name, root=root, **options)
    return loader


def split(data: Dataset, which: str) -> tuple[torch.Tensor, torch.Tensor]:
    return getattr(data, f"x_{which}"), getattr(data, f"y_{which}")


def test_every_dataset_has_a_contract_case():
    assert set(CASES) == set(DATASETS), "CASES must name exactly the registered datasets"


@pytest.mark.parametrize("name", NAMES)
def test_splits_have_the_declared_shape_and_classes(name, load):
    data, declared = load(seed=0), case(name)
    assert (data.input_shape, data.num_classes) == (declared.input_shape, declared.num_classes)
    for which in SPLITS:
        x, y = split(data, which)
        assert tuple(x.shape[1:]) == declared.input_shape and len(x) == len(y) > 0
        assert 0 <= int(y.min()) and int(y.max()) < declared.num_classes


@pytest.mark.parametrize("name", NAMES)
def test_splits_never_share_a_sample(name, load):
    data = load(seed=1)
    train, val, test = (rows(split(data, which)[0]) for which in SPLITS)
    assert len(train) == len(data.x_train)       # no sample twice within the training split
    assert not train & val and not train & test and not val & test


@pytest.mark.parametrize("name", NAMES)
def test_another_seed_gives_another_partition_of_the_same_sizes(name, load):
    a, b = load(seed=0), load(seed=1)
    assert [len(split(a, w)[1]) for w in SPLITS] == [len(split(b, w)[1]) for w in SPLITS]
    assert not same_splits(a, b)
    assert rows(a.x_val) != rows(b.x_val), "another seed gave the same validation samples"


def affine_per_channel(src: torch.Tensor, dst: torch.Tensor):
    """``(a, b)``, per channel (dim 1), with ``dst ≈ a * src + b``: what standardising with
    other training statistics does to a split (a = 1, b = 0 for unstandardised data)."""
    flat = [t.transpose(0, 1).reshape(t.shape[1], -1).double() for t in (src, dst)]
    s, d = (t - t.mean(1, keepdim=True) for t in flat)
    a = (s * d).sum(1) / (s * s).sum(1).clamp_min(1e-12)
    b = flat[1].mean(1) - a * flat[0].mean(1)
    shape = (1, -1) + (1,) * (src.dim() - 2)
    return a.view(shape), b.view(shape)


@pytest.mark.parametrize("name", NAMES)
def test_limit_keeps_a_subset_of_the_same_training_split(name, load):
    """Same validation and test samples, a stratified subset of the same training samples —
    compared up to the per-channel rescaling a loader that standardises with the (now smaller)
    training split's statistics applies to every split."""
    full = load(seed=2)
    limit = 3 * full.num_classes
    small = load(seed=2, limit=limit)
    assert len(small.y_train) == limit
    assert set(small.y_train.tolist()) == set(range(full.num_classes))
    assert torch.equal(small.y_val, full.y_val) and torch.equal(small.y_test, full.y_test)
    a, b = affine_per_channel(full.x_val, small.x_val)
    for which in ("val", "test"):
        assert torch.allclose(a * split(full, which)[0].double() + b,
                              split(small, which)[0].double(), atol=1e-4)
    mapped = (a * full.x_train.double() + b).flatten(1)
    nearest = torch.cdist(small.x_train.double().flatten(1), mapped).min(1)
    assert nearest.values.max() < 1e-3, "a limited training sample is not in the full split"
    assert torch.equal(full.y_train[nearest.indices], small.y_train)


@pytest.mark.parametrize("name", NAMES)
def test_missing_root_is_irrelevant_or_one_clear_dataset_error(name, load, tmp_path):
    missing = tmp_path / "nowhere"
    if case(name).write_root is None:
        assert same_splits(load_dataset(name, root=missing, seed=0), load(seed=0))
    else:
        with pytest.raises(DatasetError) as error:
            load_dataset(name, root=missing, seed=0)
        message = str(error.value)
        assert repr(name) in message and str(missing) in message and "\n" not in message
    assert not missing.exists(), f"loading {name} created {missing}"
