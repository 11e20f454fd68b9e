"""The compiler: plans, determinism, merges and devices."""

import numpy as np
import pytest
import torch
from evograph.compile import build
from evograph.compile.layers import LAYERS
from evograph.genome import Genome, Node, get_space
from evograph.genome.ops import OPS


def test_every_op_has_a_layer_factory():
    assert set(LAYERS) == {op for op, spec in OPS.items() if not spec.template}


def test_same_seed_same_weights_and_global_rng_untouched():
    genome = get_space("lse-conv").sample(np.random.default_rng(1), (1, 8, 8), 10)
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    a, b = build(genome, seed=5), build(genome, seed=5)
    assert torch.equal(torch.rand(1), before)
    for (name, ta), (_, tb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert torch.equal(ta, tb), name


def test_merge_pads_truncates_and_pools():
    conv = {"kernel_h": 1, "kernel_w": 1, "bn": False, "relu": False}
    genome = Genome.make(
        [Node.make(0, "input", shape=(1, 8, 8)),
         Node.make(1, "conv", out_channels=2, stride_h=1, stride_w=1, **conv),
         Node.make(2, "conv", out_channels=3, stride_h=2, stride_w=2, **conv),
         Node.make(3, "identity"), Node.make(4, "output", num_classes=2)],
        [(0, 1), (0, 2), (1, 3), (2, 3), (3, 4)])
    module = build(genome).eval()
    x = torch.randn(2, 1, 8, 8)
    a = module.layers["n1"](x)
    b = module.layers["n2"](x)
    merged = module.merges["n3"](a, b)
    expected = torch.nn.functional.avg_pool2d(a, 2) + b[:, :2]
    assert merged.shape == (2, 2, 4, 4)
    assert torch.allclose(merged, expected, atol=1e-6)


def test_one_d_signals_run_as_height_one_images():
    genome = get_space("lse-conv").sample(np.random.default_rng(2), (1, 40), 10)
    assert build(genome)(torch.randn(3, 1, 40)).shape == (3, 10)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_runs_on_cuda():
    genome = get_space("lse-conv").sample(np.random.default_rng(3), (3, 32, 32), 10)
    module = build(genome, device="cuda")
    assert module(torch.randn(2, 3, 32, 32, device="cuda")).device.type == "cuda"
