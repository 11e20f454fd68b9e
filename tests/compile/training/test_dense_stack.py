"""The direct path for chains of dense layers: K candidates as flat rows, hand-written backward,
equal to training each alone and to the generic ``vmap`` path."""

import copy
import dataclasses

import numpy as np
import pytest
import torch
from evograph.compile.builder import build
from evograph.compile.layers import ACTIVATION_MODULES
from evograph.compile.training.batched import train_batched
from evograph.compile.training.dense_stack import DenseStack, dense_chain
from evograph.compile.training.functional_optim import FUNCTIONAL_OPTIMIZERS
from evograph.compile.training.sgd import train_steps
from evograph.data.datasets import load_dataset
from evograph.genome import Genome, Node

CPU = torch.device("cpu")
TOL = {"rtol": 1e-4, "atol": 1e-5}


@pytest.fixture(scope="module")
def data():
    return load_dataset("digits", seed=0, limit=200)


def chain(widths=(24, 12), activation="relu", optimizer="adam", lr=1e-3, batch=32,
          input_shape=(1, 8, 8), skip=False) -> Genome:
    nodes = [Node.make(0, "input", shape=input_shape), Node.make(1, "output", num_classes=10)]
    edges, prev = [], 0
    for i, width in enumerate(widths, start=2):
        nodes.append(Node.make(i, "dense", units=width, activation=activation))
        edges.append((prev, i))
        prev = i
    edges.append((prev, 1))
    if skip:
        edges.append((2, 1))    # the first hidden layer also feeds the classifier
    genes = {"learning_rate": lr, "optimizer": optimizer, "weight_decay": 1e-4,
             "batch_size": batch}
    return Genome.make(nodes, edges, genes)


def siblings(genome: Genome, factors=(1.0, 0.5, 2.0)) -> list[Genome]:
    return [genome.with_genes(learning_rate=genome.gene["learning_rate"] * f) for f in factors]


def assert_same_weights(a: torch.nn.Module, b: torch.nn.Module):
    for (name, x), y in zip(a.state_dict().items(), b.state_dict().values()):
        torch.testing.assert_close(x, y, **TOL, msg=name)


def check_against_alone(data, genomes, steps=12, seeds=(7, 8, 9), **kw):
    """Train the siblings batched (direct path) and each alone; curves and weights agree."""
    modules = [build(g, seed=i) for i, g in enumerate(genomes)]
    assert dense_chain(modules[0]) is not None
    alone = [copy.deepcopy(m) for m in modules]
    batch = genomes[0].gene["batch_size"]
    curves = train_batched(modules, [g.gene for g in genomes], data, steps, batch, seeds, CPU,
                           **kw)
    for module, single, genome, seed, curve in zip(modules, alone, genomes, seeds, curves):
        expected = train_steps(single, data, genome.gene, steps, batch, seed, CPU,
                               kw.get("label_smoothing", 0.0), kw.get("grad_clip", 0.0))
        np.testing.assert_allclose(curve, expected, **TOL)
        assert_same_weights(module, single)
    return modules


def test_dense_chain_recognises_chains_only():
    layers = dense_chain(build(chain((24, 12), "tanh")))
    assert [(d.fan_in, d.units, d.activation) for d in layers] == \
        [(64, 24, "tanh"), (24, 12, "tanh"), (12, 10, "linear")]
    assert dense_chain(build(chain((), input_shape=(64,))))[0].fan_in == 64  # linear model
    assert dense_chain(build(chain((), input_shape=(1, 8, 8)))) is None       # global pooling
    assert dense_chain(build(chain((16, 8), skip=True))) is None             # a merge
    conv = Genome.make([Node.make(0, "input", shape=(1, 8, 8)),
                        Node.make(1, "conv", out_channels=4, kernel_h=3, kernel_w=3,
                                  stride_h=1, stride_w=1, bn=False, relu=True),
                        Node.make(2, "dense", units=8, activation="relu"),
                        Node.make(3, "output", num_classes=10)],
                       [(0, 1), (1, 2), (2, 3)], {"learning_rate": 0.01})
    assert dense_chain(build(conv)) is None


@pytest.mark.parametrize("activation", sorted(ACTIVATION_MODULES))
def test_every_activation_follows_one_by_one(data, activation):
    check_against_alone(data, siblings(chain((24, 12), activation)))


@pytest.mark.parametrize("optimizer", sorted(FUNCTIONAL_OPTIMIZERS))
def test_every_optimizer_follows_one_by_one(data, optimizer):
    lr = 1e-3 if optimizer in ("adam", "adamax", "nadam", "rmsprop") else 0.05
    check_against_alone(data, siblings(chain((16,), "relu", optimizer, lr)), steps=8)


def test_label_smoothing_clipping_and_a_flat_input(data):
    flat = dataclasses.replace(data, x_train=data.x_train.flatten(1), x_val=data.x_val.flatten(1),
                               x_test=data.x_test.flatten(1), input_shape=(64,))
    check_against_alone(data, siblings(chain((20,), "elu", "sgd", 0.5), (1.0, 3.0)),
                        seeds=(1, 2), label_smoothing=0.1, grad_clip=0.5)
    check_against_alone(flat, siblings(chain((20,), "relu", input_shape=(64,)), (1.0, 2.0)),
                        seeds=(1, 2))


def test_direct_and_vmap_paths_agree(data):
    genomes = siblings(chain((32, 16), "gelu", "adam"))
    modules = [build(g, seed=i) for i, g in enumerate(genomes)]
    generic = [copy.deepcopy(m) for m in modules]
    genes = [g.gene for g in genomes]
    direct = train_batched(modules, genes, data, 10, 32, [4, 5, 6], CPU)
    via_vmap = train_batched(generic, genes, data, 10, 32, [4, 5, 6], CPU, direct=False)
    np.testing.assert_allclose(direct, via_vmap, **TOL)
    for a, b in zip(modules, generic):
        assert_same_weights(a, b)


def test_layers_are_contiguous_blocks_of_one_flat_buffer(data):
    genomes = siblings(chain((8,)), (1.0, 2.0))
    modules = [build(g, seed=i) for i, g in enumerate(genomes)]
    stack = DenseStack(modules, dense_chain(modules[0]), [g.gene for g in genomes], CPU, 0.0)
    (w, b), (w_out, _) = stack.params
    assert w.shape == (2, 8, 64) and b.shape == (2, 8) and w_out.shape == (2, 10, 8)
    assert stack.flat.shape == (2 * (8 * 64 + 8 + 10 * 8 + 10),)
    assert w.data_ptr() == stack.flat.data_ptr() and w.is_contiguous() and b.is_contiguous()
    assert b.data_ptr() == w.data_ptr() + w.numel() * w.element_size()
    torch.testing.assert_close(w[1], modules[1].layers.n2[1].weight)
