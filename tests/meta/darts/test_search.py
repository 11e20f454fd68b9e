"""A DARTS search: it records alpha's trajectory and the derived cell per epoch, and a search
interrupted after any epoch resumes from its checkpoint to exactly the uninterrupted result."""

import pytest
import torch
from evograph.data.datasets import load_dataset
from evograph.errors import ConfigError
from evograph.genome.cells.nb201 import arch_string
from evograph.genome.space import get_space
from evograph.meta.darts.bilevel import DartsSettings
from evograph.meta.darts.search import darts_search

SPACE = get_space("nb201", cell_channels=4, cells=1, stages=2,
                  ops=("none", "skip_connect", "nor_conv_3x3"))


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits", seed=0, limit=160)


@pytest.mark.parametrize("order", [1, 2])
def test_an_interrupted_search_resumes_to_the_uninterrupted_result(digits, tmp_path, order):
    settings = DartsSettings(order=order, alpha_lr=0.01)
    straight = darts_search(SPACE, digits, epochs=3, settings=settings, batch_size=32, seed=4)

    def interrupt_after_two(record):
        if record["epoch"] == 2:
            raise KeyboardInterrupt
    checkpoint = tmp_path / "darts.safetensors"
    with pytest.raises(KeyboardInterrupt):
        darts_search(SPACE, digits, epochs=3, settings=settings, batch_size=32, seed=4,
                     checkpoint=checkpoint, on_epoch=interrupt_after_two)
    resumed = darts_search(SPACE, digits, epochs=3, settings=settings, batch_size=32, seed=4,
                           checkpoint=checkpoint)
    assert resumed.records == straight.records
    for (name, a), b in zip(straight.supernet.state_dict().items(),
                            resumed.supernet.state_dict().values()):
        assert torch.equal(a, b), name
    assert arch_string(resumed.genome) == arch_string(straight.genome) == \
        straight.records[-1]["arch"]


def test_records_hold_alphas_trajectory_and_the_derived_cell(digits):
    outcome = darts_search(SPACE, digits, epochs=2, settings=DartsSettings(alpha_lr=0.05),
                           batch_size=32, seed=0)
    first, last = outcome.records
    assert [r["epoch"] for r in outcome.records] == [1, 2]
    assert set(first["softmax"]) == {"0->1", "0->2", "1->2", "0->3", "1->3", "2->3"}
    for weights in last["softmax"].values():
        assert set(weights) == set(SPACE.ops) and sum(weights.values()) == pytest.approx(1.0)
    assert first["alpha"] != last["alpha"]             # alpha moved
    assert 0.0 <= last["supernet_val_accuracy"] <= 1.0


def test_another_searchs_checkpoint_is_refused_in_one_line(digits, tmp_path):
    checkpoint = tmp_path / "darts.safetensors"
    darts_search(SPACE, digits, epochs=1, settings=DartsSettings(), batch_size=32, seed=0,
                 checkpoint=checkpoint)
    with pytest.raises(ConfigError, match="checkpoint: .* holds another search"):
        darts_search(SPACE, digits, epochs=1, settings=DartsSettings(), batch_size=32, seed=1,
                     checkpoint=checkpoint)
    with pytest.raises(ConfigError, match="space: DARTS here searches the nb201 cell"):
        darts_search(get_space("nasnet"), digits, epochs=1, settings=DartsSettings())
