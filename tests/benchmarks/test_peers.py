"""The peers benchmark (benchmarks/peers.py): each system's search runs for a tiny budget in real
worker processes and returns a complete record whose pick retrains through the shared loop; the
peers' plain loop augments exactly as the ``sgd`` fitness does. No timing is asserted."""

import importlib
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
LIMIT = 60  # training samples: one minibatch per epoch


@pytest.fixture
def peers(monkeypatch):
    """The script as a module importable by name (its spawned workers import it)."""
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    return importlib.import_module("peers")


def check_record(peers, record: dict, system: str, evaluated: int) -> None:
    """A search's record is complete and its pick retrains on the test split."""
    assert record["system"] == system
    counts = record["evaluations"]
    assert counts.get("completed", 0) + sum(v for k, v in counts.items()
                                            if k not in ("completed", "generations")) >= evaluated
    assert len(record["trace"]) == counts["completed"] > 0
    assert 0.0 <= record["pick_val_accuracy"] <= 1.0
    if system != "evograph":  # a peer's pick is its best trial; evograph's is checked below
        assert record["pick_val_accuracy"] == pytest.approx(
            max(v for _, v in record["trace"]), abs=1e-4)
    assert record["summary"]["conv"] >= 0 and record["summary"]["optimizer"]
    test = peers.retrain(record, peers.dataset(LIMIT), seeds=2, epochs=1)
    assert len(test["values"]) == 2 and all(0.0 <= v <= 1.0 for v in test["values"])
    assert test["params"] > 0


def test_the_peers_loop_shifts_as_the_sgd_fitness_does(peers):
    from evograph.compile.training.sgd import random_shift
    from peers_loop import shift
    x = torch.randn(32, 1, 8, 8)
    ours = shift(x, torch.Generator().manual_seed(5))
    assert torch.equal(ours, random_shift(x, torch.Generator().manual_seed(5)))
    assert not torch.equal(ours, x)


def test_a_skip_adds_the_input_pooled_and_padded_to_the_output(peers):
    from peers_loop import Block
    block = Block(3, {"channels": 5, "kernel": [3, 1], "stride": [2, 2], "bn_relu": False,
                      "skip": True})
    torch.nn.init.zeros_(block.body.weight)
    torch.nn.init.zeros_(block.body.bias)
    x = torch.randn(2, 3, 8, 8)
    out = block(x)
    assert out.shape == (2, 5, 4, 4)
    pooled = torch.nn.functional.avg_pool2d(x, 2)
    assert torch.allclose(out[:, :3], pooled, atol=1e-6)
    assert torch.equal(out[:, 3:], torch.zeros(2, 2, 4, 4))


def test_optuna_search_returns_its_best_trial(peers, tmp_path):
    record = peers.search_optuna(120, workers=2, epochs=1, limit=LIMIT, trials=2,
                                 folder=tmp_path)
    check_record(peers, record, "optuna", evaluated=4)
    arch = record["pick"]["arch"]
    assert 1 <= len(arch["layers"]) <= peers.space().max_layers
    assert arch["optimizer"] in peers.space().optimizers
    assert arch["batch_size"] == 64


def test_deap_search_returns_its_hall_of_fame(peers):
    record = peers.search_deap(120, workers=2, epochs=1, limit=LIMIT, population=4,
                               generations=1)
    check_record(peers, record, "deap", evaluated=4)
    assert record["evaluations"]["generations"] == 1
    layers = record["pick"]["arch"]["layers"]
    assert all(16 <= x["channels"] <= 128 and x["stride"][0] in (1, 2) for x in layers)


def test_evograph_search_returns_the_run_pick(peers, tmp_path):
    record = peers.search_evograph(120, workers=2, epochs=1, limit=LIMIT, evaluations=4,
                                   folder=tmp_path)
    check_record(peers, record, "evograph", evaluated=4)
    final = record["pick"]["final"]
    if final.get("pick"):
        assert (record["pick"]["id"], record["pick_val_accuracy"]) == (
            final["pick"]["id"], final["pick"]["mean"])
    else:
        assert record["pick"]["id"] == record["pick"]["best"]["id"]
        assert record["pick_val_accuracy"] == pytest.approx(
            max(v for _, v in record["trace"]), abs=1e-4)
    assert record["pick"]["genome"]["nodes"]


def test_quick_arguments_and_an_unknown_system(peers, capsys):
    args = peers.parse_args(["--quick"])
    assert (args.minutes, args.seeds, args.out.name) == (1.0, 1, "peers-quick.json")
    assert args.systems == ["evograph", "optuna", "deap"]
    with pytest.raises(SystemExit):
        peers.parse_args(["--systems", "optuna,hyperopt"])
    assert "--systems: unknown hyperopt" in capsys.readouterr().err
