"""The shift augmentation of compile.train: each sample translated by -1, 0 or +1 per axis,
zero fill, offsets drawn from the training generator."""

from __future__ import annotations

import pytest
import torch
from evograph.compile.training.sgd import random_shift
from torch.nn import functional as F


def shifted_one_by_one(x: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
    """The oracle: each sample's window of its zero-padded self, cut out by plain slicing."""
    padded = F.pad(x, [1, 1] * (x.dim() - 2))
    out = []
    for sample, offset in zip(padded, offsets.tolist()):
        if x.dim() == 3:
            out.append(sample[:, offset[0]:offset[0] + x.shape[2]])
        else:
            out.append(sample[:, offset[0]:offset[0] + x.shape[2],
                              offset[1]:offset[1] + x.shape[3]])
    return torch.stack(out)


@pytest.mark.parametrize("shape", [(64, 1, 8, 8), (7, 3, 5, 9), (16, 2, 32, 32), (9, 2, 40),
                                   (1, 1, 1, 1)])
def test_each_sample_is_its_padded_window_at_offsets_from_the_generator(shape):
    x = torch.randn(*shape)
    out = random_shift(x, torch.Generator().manual_seed(4))
    # the offsets are the generator's next draw, and nothing more is drawn
    gen = torch.Generator().manual_seed(4)
    offsets = torch.randint(0, 3, (shape[0], len(shape) - 2), generator=gen)
    assert torch.equal(out, shifted_one_by_one(x, offsets))
    after = torch.Generator().manual_seed(4)
    random_shift(x, after)
    assert torch.equal(after.get_state(), gen.get_state())


def test_flat_features_are_left_alone_and_nothing_is_drawn():
    x, gen = torch.randn(5, 64), torch.Generator().manual_seed(0)
    state = gen.get_state()
    assert random_shift(x, gen) is x and torch.equal(gen.get_state(), state)


def test_all_nine_shifts_occur():
    """Over 400 samples every one of the 3 x 3 offsets is drawn (each sample matches exactly
    one of them: pixels values are distinct, so no two windows agree)."""
    x = torch.arange(1, 1 + 400 * 16, dtype=torch.float32).reshape(400, 1, 4, 4)
    out = random_shift(x, torch.Generator().manual_seed(1))
    seen = set()
    for i in range(400):
        matches = [(dy, dx) for dy in range(3) for dx in range(3)
                   if torch.equal(out[i:i + 1],
                                  shifted_one_by_one(x[i:i + 1], torch.tensor([[dy, dx]])))]
        assert len(matches) == 1
        seen.add(matches[0])
    assert len(seen) == 9
