"""Deterministic GPU kernels (compile.determinism), the pooling that has no deterministic
CUDA backward in torch (compile.layers.adaptive_avg_pool), and the GPU's way of reading losses
(compile.train.train_steps, a block at a time): the same results."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from evograph.compile.builder import build
from evograph.compile.determinism import seeded_cpu_rng, use_deterministic_kernels
from evograph.compile.layers import adaptive_avg_pool, pool_by_matrices
from evograph.compile.training.sgd import AUGMENTATIONS, train_steps
from evograph.data.datasets import load_dataset
from torch.nn import functional as F

from tests.compile.training.test_batched import conv_genome


@pytest.mark.parametrize("shape, size", [((8, 8), (4, 4)), ((7, 7), (4, 4)), ((5, 3), (2, 2)),
                                         ((6, 6), (1, 1)), ((4, 4), (4, 4)), ((9, 5), (4, 3))])
def test_pooling_by_matrices_equals_adaptive_pooling_forward_and_backward(shape, size):
    x = torch.randn(2, 3, *shape, dtype=torch.float64, requires_grad=True)
    weights = torch.randn(2, 3, *size, dtype=torch.float64)
    ours = pool_by_matrices(x, size)
    (grad_ours,) = torch.autograd.grad((ours * weights).sum(), x)
    theirs = F.adaptive_avg_pool2d(x, size)
    (grad_theirs,) = torch.autograd.grad((theirs * weights).sum(), x)
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-12)
    torch.testing.assert_close(grad_ours, grad_theirs, rtol=0, atol=1e-12)


def test_cpu_keeps_torch_pooling_and_global_settings():
    """On CPU nothing changes: torch's own pooling (bit for bit), no process-wide switch."""
    before = (torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.deterministic,
              os.environ.get("CUBLAS_WORKSPACE_CONFIG"))
    use_deterministic_kernels("cpu")
    use_deterministic_kernels(torch.device("cpu"))
    assert (torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.deterministic,
            os.environ.get("CUBLAS_WORKSPACE_CONFIG")) == before
    x = torch.randn(2, 3, 7, 7)
    assert torch.equal(adaptive_avg_pool(x, (3, 3)), F.adaptive_avg_pool2d(x, (3, 3)))


TRAIN_TWICE = textwrap.dedent("""
    import torch
    from evograph.compile.builder import build
    from evograph.compile.determinism import seeded_cpu_rng, use_deterministic_kernels
    from evograph.compile.training.sgd import train_steps
    from evograph.data.datasets import load_dataset
    from tests.compile.training.test_batched import conv_genome

    cuda = torch.device("cuda")
    use_deterministic_kernels(cuda)
    data = load_dataset("digits", seed=0).to(cuda)
    genome = conv_genome(optimizer="adam", lr=1e-3)
    states = []
    for _ in range(2):
        module = build(genome, seed=3, device=cuda)
        train_steps(module, data, genome.gene, 30, 32, 3, cuda)
        states.append(module.state_dict())
    print(all(torch.equal(states[0][k], states[1][k]) for k in states[0]))
""")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_training_twice_on_cuda_gives_the_same_bits():
    """A conv net whose output merges an 8x8 and a 4x4 input (adaptive pooling in the graph),
    trained twice in a fresh process with deterministic kernels: identical weights."""
    done = subprocess.run([sys.executable, "-c", TRAIN_TWICE], capture_output=True, text=True,
                          timeout=300, cwd=os.path.dirname(os.path.dirname(
                              os.path.dirname(os.path.abspath(__file__)))), check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "True"


@pytest.mark.parametrize("every", [3, 16, 100])
def test_losses_read_in_blocks_give_the_same_curve_and_weights(every):
    """The GPU's way of reading losses (a block at a time), run on CPU: value for value the
    curve and the weights of reading every loss at once, whatever the block size."""
    data = load_dataset("digits", seed=0)
    genome = conv_genome(optimizer="adam", lr=1e-3)
    runs = []
    for read_every in (1, every):
        module = build(genome, seed=3)
        curve = train_steps(module, data, genome.gene, 23, 32, 3, torch.device("cpu"), points=5,
                            augment=AUGMENTATIONS["shift"], loss_read_every=read_every)
        runs.append((curve, module.state_dict()))
    (curve_one, state_one), (curve_block, state_block) = runs
    assert curve_block == curve_one and len(curve_one) == 6  # 5 chunks of 4 steps, then 3
    assert all(torch.equal(state_one[k], state_block[k]) for k in state_one)


def test_losses_read_in_blocks_end_the_curve_at_the_first_non_finite_loss():
    data = load_dataset("digits", seed=0)
    genome = conv_genome(optimizer="sgd", lr=1e-3)
    curves = []
    for read_every in (1, 16):
        module = build(genome, seed=3)
        with torch.no_grad():
            next(module.parameters()).fill_(float("nan"))
        curves.append(train_steps(module, data, genome.gene, 40, 32, 3, torch.device("cpu"),
                                  loss_read_every=read_every))
    assert len(curves[0]) == len(curves[1]) == 1 and all(c[0] != c[0] for c in curves)  # NaN


def test_seeded_cpu_rng_seeds_the_cpu_generator_alone_and_restores_it(monkeypatch):
    def refuse(*args):
        raise AssertionError("a CUDA generator was seeded")

    monkeypatch.setattr(torch.cuda, "manual_seed_all", refuse)
    monkeypatch.setattr(torch.cuda, "manual_seed", refuse)
    torch.default_generator.manual_seed(123)
    expected = torch.rand(3)
    torch.default_generator.manual_seed(123)
    with seeded_cpu_rng(5):
        first = torch.rand(3)
    with seeded_cpu_rng(5):
        again = torch.rand(3)
    with seeded_cpu_rng(None):  # unseeded: draws from the current state, then restores it
        torch.rand(100)
    assert torch.equal(first, again) and not torch.equal(first, expected)
    assert torch.equal(torch.rand(3), expected)


PACKAGES = ("genome", "operators", "selection", "compile", "meta", "runs", "benchmarks")


def test_no_module_seeds_torch_globally():
    """``torch.manual_seed`` seeds every CUDA device too, outside ``fork_rng(devices=[])``: the
    package and its benchmarks seed through :func:`seeded_cpu_rng` or their own
    ``torch.Generator`` objects."""
    root = Path(__file__).resolve().parents[2]
    calls = []
    for package in PACKAGES:
        for path in (root / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Attribute) and node.attr in (
                        "manual_seed", "manual_seed_all", "seed", "seed_all") and \
                        ast.unparse(node.value) in ("torch", "torch.cuda", "torch.random"):
                    calls.append(f"{path.relative_to(root)}:{node.lineno}")
    assert not calls, f"global torch seeding: {calls}"
