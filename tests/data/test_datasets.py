"""Tests of evograph.data.datasets on real data: the bundled digits, generated MNIST-1D, and small
MNIST / Fashion-MNIST / CIFAR-10 roots written here in the real on-disk formats (raw IDX files and
CIFAR's pickled batches), since nothing can be downloaded at test time."""

from __future__ import annotations

import json
import os
import pickle
import random
import struct

import numpy as np
import pytest
import torch
from evograph.data import datasets
from evograph.data.datasets import DATASETS, Dataset, load_dataset
from evograph.errors import DatasetError

IDX_UBYTE = 0x08  # IDX type code of unsigned bytes


# ---------------------------------------------------------------- writers of the real formats


def write_idx(path, array: np.ndarray) -> None:
    """Write ``array`` (uint8) as an IDX file: magic (0, 0, type, ndim), big-endian dims, data."""
    header = bytes([0, 0, IDX_UBYTE, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    path.write_bytes(header + np.ascontiguousarray(array, dtype=np.uint8).tobytes())


def labels_for(n: int) -> np.ndarray:
    """``n`` labels cycling through the ten classes, so every class is equally represented."""
    return (np.arange(n) % 10).astype(np.uint8)


def images_for(labels: np.ndarray, seed: int) -> np.ndarray:
    """28x28 uint8 images whose first pixel encodes the label (checked after loading)."""
    images = np.random.default_rng(seed).integers(0, 256, (len(labels), 28, 28), dtype=np.uint8)
    images[:, 0, 0] = labels * 20
    return images


def write_idx_root(root, folder: str = "MNIST", n_train: int = 100, n_test: int = 20):
    """An MNIST-layout root: the four raw IDX files in ``root/<folder>/raw``, which it returns."""
    raw = root / folder / "raw"
    raw.mkdir(parents=True)
    for prefix, n, seed in (("train", n_train, 1), ("t10k", n_test, 2)):
        labels = labels_for(n)
        write_idx(raw / f"{prefix}-images-idx3-ubyte", images_for(labels, seed))
        write_idx(raw / f"{prefix}-labels-idx1-ubyte", labels)
    return raw


def write_cifar_root(root, per_batch: int = 20, n_test: int = 20, protocol: int = 2,
                     key=lambda k: k.encode()):
    """A CIFAR-10 root: ``cifar-10-batches-py`` with five data batches, the test batch and the
    metadata, each a pickled dict as in the official archive; returns the batches folder."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    batches = {f"data_batch_{i}": per_batch for i in range(1, 6)} | {"test_batch": n_test}
    for name, n in batches.items():
        entry = {key("batch_label"): key(name), key("labels"): labels_for(n).tolist(),
                 key("data"): rng.integers(0, 256, (n, 3072), dtype=np.uint8),
                 key("filenames"): [key(f"img_{i}.png") for i in range(n)]}
        (folder / name).write_bytes(pickle.dumps(entry, protocol=protocol))
    meta = {key("label_names"): [key(f"class{i}") for i in range(10)], key("num_vis"): 3072}
    (folder / "batches.meta").write_bytes(pickle.dumps(meta, protocol=protocol))
    return folder


@pytest.fixture
def all_roots(tmp_path):
    """One root holding small MNIST, Fashion-MNIST and CIFAR-10 copies in their real formats."""
    write_idx_root(tmp_path, "MNIST")
    write_idx_root(tmp_path, "FashionMNIST")
    write_cifar_root(tmp_path)
    return tmp_path


def rows(x: torch.Tensor) -> set[bytes]:
    """The samples of ``x`` as a set of byte strings, to compare splits as sets of samples."""
    return {row.tobytes() for row in x.reshape(len(x), -1).numpy()}


def same_splits(a: Dataset, b: Dataset) -> bool:
    """Whether two datasets hold identical tensors in every split."""
    names = ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test")
    return all(torch.equal(getattr(a, n), getattr(b, n)) for n in names)


# ---------------------------------------------------------------- every registered dataset


def test_registry_holds_the_documented_datasets():
    assert set(DATASETS) == {"digits", "mnist1d", "mnist", "fashion-mnist", "cifar10"}


@pytest.mark.parametrize("name", sorted(DATASETS))
def test_every_dataset_is_well_formed_deterministic_and_leaves_global_rngs_alone(name, all_roots):
    random.seed(11)
    np.random.seed(11)
    torch.manual_seed(11)
    data = load_dataset(name, root=all_roots, seed=3)
    after = (random.random(), np.random.random(), torch.rand(1).item())
    random.seed(11)
    np.random.seed(11)
    torch.manual_seed(11)
    assert after == (random.random(), np.random.random(), torch.rand(1).item())

    assert data.name == name and data.num_classes == 10
    splits = (data.x_train, data.y_train), (data.x_val, data.y_val), (data.x_test, data.y_test)
    for x, y in splits:
        assert x.dtype == torch.float32 and y.dtype == torch.int64
        assert tuple(x.shape[1:]) == data.input_shape and len(x) == len(y) > 0
        assert torch.isfinite(x).all() and set(y.unique().tolist()) == set(range(10))
    assert same_splits(data, load_dataset(name, root=all_roots, seed=3))
    described = data.describe()
    line = described["summary"]
    assert name in line and str(data.input_shape) in line and "\n" not in line
    assert f"train {len(data.y_train)}" in line and f"test {len(data.y_test)}" in line
    assert json.loads(json.dumps(described)) == described  # stored as JSON with the run
    assert described["preprocess"]["shape"] == list(data.input_shape)


# ---------------------------------------------------------------- digits


def test_digits_sizes_shape_and_scale():
    data = load_dataset("digits")
    assert data.input_shape == (1, 8, 8)
    assert (len(data.y_train), len(data.y_val), len(data.y_test)) == (1168, 270, 359)
    assert data.x_train.min() >= 0 and data.x_train.max() == 1.0


def test_digits_splits_partition_the_whole_dataset():
    from sklearn.datasets import load_digits
    data = load_dataset("digits", seed=5)
    train, val, test = rows(data.x_train), rows(data.x_val), rows(data.x_test)
    assert not (train & val) and not (train & test) and not (val & test)
    original = torch.from_numpy((load_digits().images / 16.0).astype(np.float32))[:, None]
    assert train | val | test == rows(original)


def test_digits_splits_are_stratified():
    data = load_dataset("digits", seed=2)
    overall = np.bincount(np.concatenate([data.y_train, data.y_val, data.y_test]), minlength=10)
    for y in (data.y_train, data.y_val, data.y_test):
        expected = overall / overall.sum() * len(y)
        assert np.abs(np.bincount(y.numpy(), minlength=10) - expected).max() <= 1.5


def test_digits_splits_depend_on_the_seed_only():
    assert same_splits(load_dataset("digits", seed=7), load_dataset("digits", seed=7))
    seven, eight = load_dataset("digits", seed=7), load_dataset("digits", seed=8)
    assert not torch.equal(seven.y_train, eight.y_train)


def test_fractions_set_the_split_sizes():
    data = load_dataset("digits", val_fraction=0.1, test_fraction=0.3)
    assert (len(data.y_val), len(data.y_test)) == (round(1797 * 0.1), round(1797 * 0.3))


def test_limit_keeps_a_stratified_subset_of_the_same_training_split():
    full, small = load_dataset("digits", seed=4), load_dataset("digits", seed=4, limit=50)
    assert len(small.y_train) == 50 and np.bincount(small.y_train.numpy()).min() == 5
    assert rows(small.x_train) <= rows(full.x_train)
    assert torch.equal(small.x_val, full.x_val) and torch.equal(small.x_test, full.x_test)
    assert len(load_dataset("digits", limit=10**6).y_train) == len(full.y_train)
    assert len(load_dataset("digits", limit=len(full.y_train) - 3).y_train) == len(full.y_train) - 3


def test_dataset_name_is_case_and_separator_insensitive(all_roots):
    assert load_dataset(" Fashion_MNIST ", root=all_roots).name == "fashion-mnist"


# ---------------------------------------------------------------- mnist1d


def test_mnist1d_is_generated_offline_pooled_and_standardised_on_train():
    data = load_dataset("mnist1d", seed=0)
    assert data.input_shape == (1, 40)
    assert len(data.y_train) + len(data.y_val) + len(data.y_test) == 5000
    assert (len(data.y_val), len(data.y_test)) == (750, 1000)
    assert abs(data.x_train.mean().item()) < 1e-4 and abs(data.x_train.std().item() - 1) < 1e-3


def test_mnist1d_generation_restores_global_rngs():
    datasets._mnist1d_pool.cache_clear()  # make sure the generator (which reseeds globals) runs
    random.seed(1)
    np.random.seed(1)
    load_dataset("mnist1d", seed=9)
    observed = (random.random(), np.random.random())
    random.seed(1)
    np.random.seed(1)
    assert observed == (random.random(), np.random.random())


@pytest.mark.slow
def test_mnist1d_generation_is_deterministic_per_seed():
    first = load_dataset("mnist1d", seed=9)
    datasets._mnist1d_pool.cache_clear()
    assert same_splits(first, load_dataset("mnist1d", seed=9))


def test_mnist1d_signals_differ_between_seeds():
    a, b = load_dataset("mnist1d", seed=0), load_dataset("mnist1d", seed=9)
    assert not torch.equal(a.x_test, b.x_test)


# ---------------------------------------------------------------- MNIST and Fashion-MNIST (IDX)


@pytest.mark.parametrize("name, folder", [("mnist", "MNIST"), ("fashion-mnist", "FashionMNIST")])
def test_idx_datasets_read_real_idx_files(tmp_path, name, folder):
    write_idx_root(tmp_path, folder, n_train=100, n_test=20)
    data = load_dataset(name, root=str(tmp_path), val_fraction=0.2)
    assert data.input_shape == (1, 28, 28)
    assert (len(data.y_train), len(data.y_val), len(data.y_test)) == (80, 20, 20)
    expected = torch.from_numpy(images_for(labels_for(20), seed=2).astype(np.float32) / 255)
    assert torch.equal(data.x_test[:, 0], expected)  # official test set, file order, scaled
    assert torch.equal(data.y_test, torch.from_numpy(labels_for(20).astype(np.int64)))
    for x, y in ((data.x_train, data.y_train), (data.x_val, data.y_val)):
        assert torch.allclose(x[:, 0, 0, 0] * 255, y.float() * 20)  # pixels stay with their labels
    assert np.bincount(data.y_val.numpy()).tolist() == [2] * 10


def test_idx_missing_root_names_the_path_and_download(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(DatasetError) as info:
        load_dataset("mnist", root=missing)
    message = str(info.value)
    assert str(missing / "MNIST" / "raw") in message and "does not exist" in message
    assert "download=True" in message and "dataset.download=true" in message


def test_idx_root_without_files_lists_the_missing_ones(tmp_path):
    raw = write_idx_root(tmp_path, "MNIST")
    (raw / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(DatasetError, match="t10k-labels-idx1-ubyte") as info:
        load_dataset("mnist", root=tmp_path)
    assert str(raw) in str(info.value) and "train-images" not in str(info.value)
    with pytest.raises(DatasetError, match="FashionMNIST"):
        load_dataset("fashion-mnist", root=tmp_path)


@pytest.mark.parametrize("damage",
                         ["garbage", "truncated", "wrong_type", "label_count", "label_range"])
def test_corrupt_idx_files_give_a_dataset_error_naming_the_file(tmp_path, damage):
    raw = write_idx_root(tmp_path, "MNIST")
    images, labels = raw / "train-images-idx3-ubyte", raw / "train-labels-idx1-ubyte"
    if damage == "garbage":
        images.write_bytes(b"this is not an IDX file at all")
    elif damage == "truncated":
        images.write_bytes(images.read_bytes()[:5000])
    elif damage == "wrong_type":  # labels stored as int32 are not MNIST labels
        labels.write_bytes(bytes([0, 0, 0x0C, 1]) + struct.pack(">I", 1) + b"\0\0\0\1")
    elif damage == "label_count":
        write_idx(labels, labels_for(99))
    else:
        write_idx(labels, np.full(100, 42, dtype=np.uint8))
    with pytest.raises(DatasetError) as info:
        load_dataset("mnist", root=tmp_path)
    target = images if damage in ("garbage", "truncated") else labels
    assert "'mnist'" in str(info.value) and str(target) in str(info.value)


# ---------------------------------------------------------------- CIFAR-10 (pickled batches)


def test_cifar10_reads_real_batches_and_standardises_per_channel(tmp_path):
    write_cifar_root(tmp_path, per_batch=20, n_test=20)
    data = load_dataset("cifar10", root=tmp_path, val_fraction=0.2)
    assert data.input_shape == (3, 32, 32)
    assert (len(data.y_train), len(data.y_val), len(data.y_test)) == (80, 20, 20)
    assert torch.equal(data.y_test, torch.from_numpy(labels_for(20).astype(np.int64)))
    channels = data.x_train.transpose(0, 1).reshape(3, -1)
    assert torch.allclose(channels.mean(1), torch.zeros(3), atol=1e-4)
    assert torch.allclose(channels.std(1, unbiased=False), torch.ones(3), atol=1e-4)


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
@pytest.mark.parametrize("key", [str.encode, str], ids=["bytes_keys", "str_keys"])
def test_cifar10_accepts_every_pickle_protocol_and_key_type(tmp_path, protocol, key):
    write_cifar_root(tmp_path, per_batch=10, n_test=10, protocol=protocol, key=key)
    assert len(load_dataset("cifar10", root=tmp_path, val_fraction=0.2).y_test) == 10


def test_cifar10_missing_batch_is_named(tmp_path):
    folder = write_cifar_root(tmp_path)
    (folder / "data_batch_3").unlink()
    with pytest.raises(DatasetError, match="data_batch_3") as info:
        load_dataset("cifar10", root=tmp_path)
    assert str(folder) in str(info.value) and "download=True" in str(info.value)


@pytest.mark.parametrize("damage", ["garbage", "truncated", "no_data", "bad_shape", "label_count"])
def test_corrupt_cifar_batches_give_a_dataset_error_naming_the_file(tmp_path, damage):
    folder = write_cifar_root(tmp_path)
    batch = folder / "data_batch_2"
    entry = {b"labels": labels_for(20).tolist(), b"data": np.zeros((20, 3072), np.uint8)}
    if damage == "garbage":
        batch.write_bytes(b"\x00not a pickle")
    elif damage == "truncated":
        batch.write_bytes(batch.read_bytes()[:1000])
    elif damage == "no_data":
        batch.write_bytes(pickle.dumps({b"labels": [1, 2]}))
    elif damage == "bad_shape":
        batch.write_bytes(pickle.dumps(entry | {b"data": np.zeros((20, 100), np.uint8)}))
    else:
        batch.write_bytes(pickle.dumps(entry | {b"labels": [0, 1]}))
    with pytest.raises(DatasetError) as info:
        load_dataset("cifar10", root=tmp_path)
    assert "'cifar10'" in str(info.value) and str(batch) in str(info.value)


class _Hostile:
    """An object whose unpickling would delete a file, as a crafted 'batch' could."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return os.remove, (self.path,)


def test_cifar_batches_cannot_run_code(tmp_path):
    folder = write_cifar_root(tmp_path)
    sentinel = tmp_path / "sentinel"
    sentinel.write_text("still here")
    hostile = {b"data": _Hostile(sentinel), b"labels": []}
    (folder / "data_batch_1").write_bytes(pickle.dumps(hostile))
    with pytest.raises(DatasetError, match="refusing to load"):
        load_dataset("cifar10", root=tmp_path)
    assert sentinel.exists()


# ---------------------------------------------------------------- bad arguments


def test_unknown_dataset_lists_the_known_ones():
    with pytest.raises(DatasetError, match="unknown dataset 'imagenet'") as info:
        load_dataset("imagenet")
    assert all(name in str(info.value) for name in DATASETS)


@pytest.mark.parametrize("fractions", [
    {"val_fraction": 0.0}, {"val_fraction": -0.1}, {"val_fraction": 1.0}, {"test_fraction": 1.5},
    {"test_fraction": float("nan")}, {"val_fraction": "0.1"},
    {"val_fraction": 0.5, "test_fraction": 0.5},
])
def test_fractions_out_of_range_are_refused(fractions):
    with pytest.raises(DatasetError, match="fraction"):
        load_dataset("digits", **fractions)


@pytest.mark.parametrize("arguments, words", [
    ({"limit": 0}, "limit"), ({"limit": 5}, "number of classes"), ({"limit": 2.5}, "limit"),
    ({"seed": -1}, "seed"), ({"seed": "0"}, "seed"), ({"download": "yes"}, "download"),
    ({"root": 3}, "root"),
])
def test_bad_arguments_are_refused(arguments, words):
    with pytest.raises(DatasetError, match=words):
        load_dataset("digits", **arguments)


def test_root_that_is_a_file_is_refused(tmp_path):
    path = tmp_path / "file"
    path.write_text("x")
    with pytest.raises(DatasetError, match="is a file"):
        load_dataset("mnist", root=path)


def test_too_few_samples_to_stratify_is_a_dataset_error(tmp_path):
    write_idx_root(tmp_path, "MNIST", n_train=20, n_test=10)
    with pytest.raises(DatasetError, match="stratified validation split"):
        load_dataset("mnist", root=tmp_path, val_fraction=0.1)


def test_to_cpu_is_the_dataset_itself():
    data = datasets.load_dataset("digits", seed=0)
    assert data.to("cpu") is data and data.to(torch.device("cpu"), pinned=True) is data


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("pinned", [False, True])
def test_to_cuda_moves_every_split_and_keeps_the_rest(pinned):
    data = datasets.load_dataset("digits", seed=0)
    moved = data.to("cuda", pinned=pinned)
    for name in ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test"):
        assert getattr(moved, name).is_cuda
        assert torch.equal(getattr(moved, name).cpu(), getattr(data, name))
    assert (moved.name, moved.input_shape, moved.num_classes) == \
        (data.name, data.input_shape, data.num_classes)
