"""Few-shot task distributions: the paper's sinusoids, disjoint digit classes, Omniglot read from
files written here in torchvision's layout."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from evograph.data.tasks import (
    FEW_SHOT_FAMILIES,
    ClassTasks,
    SinusoidTasks,
    digits_tasks,
    make_tasks,
    omniglot_tasks,
    torch_generator,
)
from evograph.errors import DatasetError, EvographError
from PIL import Image, ImageDraw
from sklearn.datasets import load_digits


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ------------------------------------------------------------------ omniglot files on disk


def write_omniglot(root, background=(("Alpha", 3), ("Beta", 2)), evaluation=(("Gamma", 2),),
                   images=4):
    """Characters as 105x105 1-bit PNGs (white paper, black strokes), the real format, in
    ``root/omniglot-py/images_{background,evaluation}/<alphabet>/characterNN/NNNN_MM.png``.
    Character number c (in sorted order) has a black box at row 10 * c; image j a box at
    column 10 * j, so tests can tell every image apart after resizing."""
    number = 0
    for folder, alphabets in (("images_background", background),
                              ("images_evaluation", evaluation)):
        for alphabet, characters in alphabets:
            for c in range(characters):
                where = root / "omniglot-py" / folder / alphabet / f"character{c + 1:02d}"
                where.mkdir(parents=True)
                for j in range(images):
                    image = Image.new("1", (105, 105), 1)
                    ImageDraw.Draw(image).rectangle(
                        [10 * j, 10 * number, 10 * j + 20, 10 * number + 20], fill=0)
                    image.save(where / f"{number:04d}_{j + 1:02d}.png")
                number += 1
    return root


@pytest.fixture
def omniglot_root(tmp_path):
    return write_omniglot(tmp_path / "omni")


# ------------------------------------------------------------------ every family


def family_kwargs(name: str, root) -> dict:
    if name == "omniglot":
        return {"root": str(root), "train_characters": 4, "k_query": 2, "n_way": 2,
                "image_size": 14}
    return {"n_way": 3, "k_shot": 2, "k_query": 3}


@pytest.mark.parametrize("name", sorted(FEW_SHOT_FAMILIES))
def test_every_family_samples_reproducible_batches_of_its_shapes(name, omniglot_root):
    tasks = make_tasks(name, **family_kwargs(name, omniglot_root))
    a = tasks.sample(gen(1), 4, "train")
    b = tasks.sample(gen(1), 4, "train")
    c = tasks.sample(gen(2), 4, "test")
    for x, y in zip(a.tensors, b.tensors):
        assert torch.equal(x, y)
    assert not torch.equal(a.x_support, c.x_support)
    assert len(a) == 4 and a.x_support.shape[2:] == tasks.input_shape
    assert a.x_support.shape[1] == tasks.k_shot * (1 if tasks.kind == "regression"
                                                   else tasks.n_way)
    if tasks.kind == "classification":
        assert a.y_support.dtype == torch.int64
        assert set(a.y_query.unique().tolist()) == set(range(tasks.num_outputs))
    else:
        assert a.y_support.shape == a.x_support.shape


def test_unknown_family_names_the_key():
    with pytest.raises(ValueError, match="family: unknown task family 'nope'"):
        make_tasks("nope")


# ------------------------------------------------------------------ sinusoids


@pytest.mark.parametrize("k", [5, 10, 20])
def test_sinusoid_tasks_follow_the_paper_distribution(k):
    tasks = SinusoidTasks(k_shot=k, k_query=10)
    batch = tasks.sample(gen(0), 20000)
    amp, phase = batch.info["amplitude"], batch.info["phase"]
    x = torch.cat([batch.x_support, batch.x_query], 1)
    y = torch.cat([batch.y_support, batch.y_query], 1)
    assert batch.x_support.shape == (20000, k, 1) and batch.x_query.shape == (20000, 10, 1)
    assert 0.1 <= float(amp.min()) and float(amp.max()) <= 5.0
    assert 0.0 <= float(phase.min()) and float(phase.max()) <= math.pi
    assert -5.0 <= float(x.min()) and float(x.max()) <= 5.0
    # uniform moments: mean (a+b)/2, variance (b-a)^2/12, within a few standard errors
    assert abs(float(amp.mean()) - 2.55) < 0.03 and abs(float(amp.var()) - 4.9**2 / 12) < 0.05
    assert abs(float(phase.mean()) - math.pi / 2) < 0.02
    assert abs(float(x.mean())) < 0.02 and abs(float(x.var()) - 100 / 12) < 0.05
    expected = amp.view(-1, 1, 1) * torch.sin(x - phase.view(-1, 1, 1))
    assert torch.allclose(y, expected)
    assert float(y.abs().max()) <= 5.0


def test_samplers_accept_a_numpy_generator_and_leave_global_rngs_alone():
    torch.manual_seed(123)
    before = torch.get_rng_state()
    np_before = np.random.get_state()[1].copy()
    a = SinusoidTasks().sample(np.random.default_rng(5), 3)
    b = SinusoidTasks().sample(np.random.default_rng(5), 3)
    assert torch.equal(a.x_support, b.x_support)
    assert torch.equal(torch.get_rng_state(), before)
    assert np.array_equal(np.random.get_state()[1], np_before)
    with pytest.raises(TypeError, match="Generator"):
        torch_generator(5)


# ------------------------------------------------------------------ digits


def true_labels(images: torch.Tensor) -> list[set[int]]:
    """The digit label(s) of each 8x8 image, looked up by content in scikit-learn's digits."""
    bunch = load_digits()
    table: dict[bytes, set[int]] = {}
    for image, label in zip(bunch.images.astype(np.float32) / 16.0, bunch.target):
        table.setdefault(image.tobytes(), set()).add(int(label))
    return [table[img.numpy().reshape(8, 8).tobytes()] for img in images]


@pytest.mark.parametrize("split,allowed", [("train", {0, 1, 2, 3, 4}), ("test", {5, 6, 7, 8, 9})])
def test_digits_tasks_use_disjoint_classes_and_correct_labels(split, allowed):
    tasks = digits_tasks(n_way=5, k_shot=2, k_query=3)
    batch = tasks.sample(gen(3), 6, split)
    classes = batch.info["classes"]                                        # (T, n_way)
    assert set(classes.flatten().tolist()) <= allowed
    assert all(len(set(row.tolist())) == 5 for row in classes)             # distinct per task
    for t in range(len(batch)):
        for x, y in ((batch.x_support[t], batch.y_support[t]), (batch.x_query[t], batch.y_query[t])):
            for labels, label in zip(true_labels(x), y.tolist()):
                assert int(classes[t, label]) in labels                    # label j = class j


def test_digits_split_is_configurable_and_checked():
    tasks = digits_tasks(n_way=2, k_shot=1, k_query=1, test_classes=(0, 9))
    assert set(tasks.sample(gen(0), 20, "test").info["classes"].flatten().tolist()) == {0, 9}
    assert 0 not in tasks.sample(gen(0), 20, "train").info["classes"]
    with pytest.raises(ValueError, match="n_way: 6 exceeds the 5 meta-train classes"):
        digits_tasks(n_way=6)
    with pytest.raises(ValueError, match="k_shot: k_shot \\+ k_query = 200 exceeds"):
        digits_tasks(k_shot=100, k_query=100)
    with pytest.raises(ValueError, match="test_classes"):
        digits_tasks(test_classes=tuple(range(10)))


def test_support_and_query_never_share_an_example():
    pool = torch.arange(2 * 6, dtype=torch.float32).view(2, 6, 1)          # unique values
    tasks = ClassTasks("toy", pool, pool + 100, n_way=2, k_shot=3, k_query=3)
    batch = tasks.sample(gen(0), 50)
    for t in range(50):
        support = set(batch.x_support[t].flatten().tolist())
        query = set(batch.x_query[t].flatten().tolist())
        assert len(support) == 6 and len(query) == 6 and not support & query


# ------------------------------------------------------------------ omniglot


def test_omniglot_reads_torchvision_layout_sorted_inverted_and_split(omniglot_root):
    tasks = omniglot_tasks(omniglot_root, n_way=2, k_shot=1, k_query=3, image_size=28,
                           train_characters=4)
    # 5 background + 2 evaluation characters: the first 4 meta-train, 3 meta-test
    assert tasks.train_pool.shape == (4, 4, 1, 28, 28)
    assert tasks.test_pool.shape == (3, 4, 1, 28, 28)
    assert tasks.train_pool.dtype == torch.uint8
    pools = torch.cat([tasks.train_pool, tasks.test_pool]).float()
    # strokes are bright; character c's box sits at row ~10c/105*28, image j's at column ~10j
    for c in range(7):
        for j in range(4):
            rows, cols = torch.nonzero(pools[c, j, 0] > 128, as_tuple=True)
            assert abs(float(rows.float().mean()) - (10 * c + 10) * 28 / 105) < 1.5
            assert abs(float(cols.float().mean()) - (10 * j + 10) * 28 / 105) < 1.5
    assert float(pools.mean()) < 128                                       # mostly dark paper
    assert tasks.classes("train") == 16 and tasks.classes("test") == 3     # rotations x4


def test_omniglot_rotations_make_new_classes(omniglot_root):
    tasks = omniglot_tasks(omniglot_root, n_way=3, k_shot=1, k_query=1, image_size=28,
                           train_characters=4)
    batch = tasks.sample(gen(0), 30, "train")
    assert set(batch.info["rotation"].flatten().tolist()) == {0, 1, 2, 3}
    t, j = torch.nonzero(batch.info["rotation"] == 1)[0].tolist()
    char = int(batch.info["classes"][t, j])
    original = tasks.train_pool[char].float() / 255.0                      # (M, 1, 28, 28)
    rotated = batch.x_support[t, j]                                        # (1, 28, 28)
    assert any(torch.equal(torch.rot90(o, 1, dims=(-2, -1)), rotated) for o in original)
    assert set(tasks.sample(gen(0), 30, "test").info["rotation"].flatten().tolist()) == {0}


def test_omniglot_without_the_evaluation_set_uses_background_only(tmp_path):
    root = write_omniglot(tmp_path / "bg", evaluation=())
    tasks = omniglot_tasks(root, n_way=2, k_shot=1, k_query=1, train_characters=3)
    assert len(tasks.train_pool) == 3 and len(tasks.test_pool) == 2


def test_omniglot_missing_root_is_one_clear_error(tmp_path):
    with pytest.raises(DatasetError, match="omniglot: no images_background folder") as info:
        omniglot_tasks(tmp_path / "nowhere")
    assert isinstance(info.value, EvographError)
    assert "omniglot-py" in str(info.value) and "download=true" in str(info.value)


def test_omniglot_without_a_root_says_so():
    with pytest.raises(DatasetError, match="no root folder given"):
        omniglot_tasks("")


def test_maml_fitness_on_omniglot_files(omniglot_root):
    import evograph.meta  # noqa: F401  (registers the fitness generators)
    from evograph.compile.builder import build
    from evograph.compile.training.fitness import make_fitness
    from evograph.genome.core import Genome, Node
    conv = {"kernel_h": 3, "kernel_w": 3, "stride_h": 2, "stride_w": 2, "bn": True,
            "relu": True}
    genome = Genome.make([Node.make(0, "input", shape=(1, 14, 14)),
                          Node.make(1, "conv", out_channels=4, **conv),
                          Node.make(2, "output", num_classes=2)], [(0, 1), (1, 2)])
    fitness = make_fitness("maml", {"family": "omniglot", "root": str(omniglot_root),
                                    "n_way": 2, "k_shot": 1, "k_query": 1, "image_size": 14,
                                    "train_characters": 4, "meta_steps": 3, "meta_batch": 2,
                                    "eval_tasks": 4, "eval_steps": 1, "inner_lr": 0.4})
    score = fitness.score(build(genome), genome, None, seed=0, device=torch.device("cpu"))
    assert score.status == "completed" and 0.0 <= score.fitness <= 1.0
    assert fitness.task_shapes() == ((1, 14, 14), 2)
    with pytest.raises(DatasetError, match="omniglot"):
        make_fitness("maml", {"family": "omniglot", "root": str(omniglot_root / "missing")})


def test_omniglot_too_few_characters_names_the_parameter(omniglot_root):
    with pytest.raises(ValueError, match="train_characters: 1200 leaves no meta-test"):
        omniglot_tasks(omniglot_root)
