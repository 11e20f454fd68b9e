"""The preprocessing record of every dataset: applied to RAW samples (the 0..16 digits of
scikit-learn, MNIST-1D's generated signals, IDX and CIFAR bytes) it gives the loader's tensors bit
for bit; it survives JSON; a broken record is one clear error."""

from __future__ import annotations

import json
from collections import defaultdict

import numpy as np
import pytest
import torch
from evograph.data import datasets
from evograph.data.datasets import load_dataset
from evograph.data.preprocess import Preprocess
from evograph.errors import DatasetError

from .test_datasets import images_for, labels_for, write_cifar_root, write_idx_root


def raw_split(x: torch.Tensor, y: torch.Tensor, raw: np.ndarray, labels: np.ndarray,
              recipe: Preprocess) -> np.ndarray:
    """The raw samples behind a loaded split, in its order: each loaded row is matched to a raw
    sample that the recipe turns into exactly those bytes, with the same label (duplicates are
    consumed one by one). Fails if any row has no such raw sample."""
    pool = defaultdict(list)
    for i, row in enumerate(recipe.apply(raw).reshape(len(raw), -1).numpy()):
        pool[(row.tobytes(), int(labels[i]))].append(i)
    picked = [pool[(row.tobytes(), int(label))].pop()
              for row, label in zip(x.reshape(len(x), -1).numpy(), y.tolist())]
    return raw[picked]


def test_digits_raw_images_become_the_loaded_splits():
    from sklearn.datasets import load_digits
    bunch, data = load_digits(), load_dataset("digits", seed=3)
    recipe = data.preprocess
    assert recipe.divide_by == 16 and recipe.standardise == "none" and recipe.shape == (1, 8, 8)
    raw = raw_split(data.x_test, data.y_test, bunch.images, bunch.target, recipe)
    assert raw.shape == (len(data.y_test), 8, 8) and raw.max() == 16  # really raw
    assert torch.equal(recipe.apply(raw), data.x_test)
    assert torch.equal(recipe.apply(raw[0]), data.x_test[:1])  # one sample: a batch of one


def test_mnist1d_raw_signals_become_the_loaded_splits_with_train_statistics():
    from mnist1d.data import get_dataset_args, make_dataset
    data = load_dataset("mnist1d", seed=0)
    recipe = data.preprocess
    assert recipe.standardise == "global" and len(recipe.mean) == len(recipe.std) == 1
    scaled_train = data.x_train * recipe.std[0] + recipe.mean[0]
    assert abs(scaled_train.mean().item() - recipe.mean[0]) < 1e-4
    args = get_dataset_args()
    args.seed = 0
    state = np.random.get_state()
    generated = make_dataset(args)  # float64, as the mnist1d package makes it
    np.random.set_state(state)
    raw = np.concatenate([generated["x"], generated["x_test"]])
    labels = np.concatenate([generated["y"], generated["y_test"]])
    for x, y in ((data.x_train, data.y_train), (data.x_test, data.y_test)):
        assert torch.equal(recipe.apply(raw_split(x, y, raw, labels, recipe)), x)
    assert torch.equal(recipe.apply(datasets._mnist1d_pool(0)[0]), recipe.apply(raw))


def test_idx_and_cifar_raw_bytes_become_the_official_test_split(tmp_path):
    write_idx_root(tmp_path, "MNIST", n_train=100, n_test=20)
    write_cifar_root(tmp_path)
    mnist = load_dataset("mnist", root=tmp_path)
    assert torch.equal(mnist.preprocess.apply(images_for(labels_for(20), seed=2)), mnist.x_test)
    cifar = load_dataset("cifar10", root=tmp_path)
    batch = datasets._read_cifar_batch(datasets._options(
        "cifar10", 0, tmp_path, False, 0.15, 0.2, None), tmp_path / "cifar-10-batches-py" /
        "test_batch")[0]
    recipe = cifar.preprocess
    assert recipe.standardise == "channel" and len(recipe.mean) == 3
    assert batch.dtype == np.uint8 and torch.equal(recipe.apply(batch), cifar.x_test)


def test_the_record_round_trips_through_json_exactly():
    recipe = load_dataset("mnist1d", seed=1).preprocess
    again = Preprocess.from_dict(json.loads(json.dumps(recipe.to_dict())))
    assert again == recipe
    x = np.random.default_rng(0).normal(size=(5, 40))
    assert torch.equal(again.apply(x), recipe.apply(x))


@pytest.mark.parametrize("change", [
    {"standardise": "sometimes"}, {"mean": [0.0, 1.0]}, {"std": [0.0]}, {"divide_by": 0},
    {"shape": "eight"}, {"raw": None, "mean": None}])
def test_a_broken_record_is_one_clear_error(change):
    record = {**load_dataset("mnist1d", seed=1).preprocess.to_dict(), **change}
    with pytest.raises(DatasetError, match="run.json: not a usable preprocessing record") as info:
        Preprocess.from_dict(record, "run.json")
    assert "\n" not in str(info.value)


def test_raw_samples_of_the_wrong_size_are_refused():
    recipe = load_dataset("digits").preprocess
    with pytest.raises(ValueError, match=r"do not hold samples of \(1, 8, 8\)"):
        recipe.apply(np.zeros((3, 7, 7)))
