"""Validation before allocation: every malformed genome gets one typed error naming where."""

import time

import numpy as np
import pytest
import torch
from evograph.errors import InvalidGenome
from evograph.genome import Genome, Node, analyze, get_space
from evograph.genome.io import from_dict, to_dict


def conv(i, c=4, k=3, s=1, bn=False):
    return Node.make(i, "conv", out_channels=c, kernel_h=k, kernel_w=k, stride_h=s, stride_w=s,
                     bn=bn, relu=True)


INPUT = Node.make(0, "input", shape=(1, 8, 8))


def out(i):
    return Node.make(i, "output", num_classes=10)


BAD = {
    "cycle": (Genome.make([INPUT, conv(1), conv(2), out(3)], [(0, 1), (1, 2), (2, 1), (2, 3)]),
              "cycle"),
    "dangling": (Genome.make([INPUT, conv(1), conv(2), out(3)], [(0, 1), (1, 3), (1, 2)]),
                 "node 2: node does not lead to the output"),
    "unreachable": (Genome.make([INPUT, conv(1), conv(2), out(3)], [(0, 1), (1, 3), (2, 3)]),
                    "node 2: node is not reachable"),
    "unknown op": (Genome.make([INPUT, Node.make(1, "lstm", units=3), out(2)],
                               [(0, 1), (1, 2)]), "node 1: unknown op 'lstm'"),
    "zero width": (Genome.make([INPUT, conv(1, c=0), out(2)], [(0, 1), (1, 2)]),
                   "node 1: param out_channels=0"),
    "negative width": (Genome.make([INPUT, conv(1, c=-3), out(2)], [(0, 1), (1, 2)]),
                       "node 1: param out_channels=-3"),
    "huge width": (Genome.make([INPUT, conv(1, c=10**12), out(2)], [(0, 1), (1, 2)]),
                   "node 1: param out_channels"),
    "even kernel": (Genome.make([INPUT, conv(1, k=4), out(2)], [(0, 1), (1, 2)]),
                    "node 1: kernel_h=4 must be odd"),
    "mismatched merge": (Genome.make([INPUT, Node.make(1, "dense", units=5, activation="relu"),
                                      conv(2), Node.make(3, "identity"), out(4)],
                                     [(0, 1), (0, 2), (1, 3), (2, 3), (3, 4)]),
                         "node 3: cannot merge spatial and flat"),
    "no output": (Genome.make([INPUT, conv(1)], [(0, 1)]), "exactly one 'output'"),
    "two inputs": (Genome.make([INPUT, Node.make(1, "input", shape=(1, 8, 8)), out(2)],
                               [(0, 2), (1, 2)]), "exactly one 'input'"),
    "edge to nowhere": (Genome.make([INPUT, out(1)], [(0, 1), (1, 7)]), "edge 1->7"),
    "conv after dense": (Genome.make([INPUT, Node.make(1, "dense", units=5, activation="relu"),
                                      conv(2), out(3)], [(0, 1), (1, 2), (2, 3)]),
                         "node 2: op 'conv' needs a spatial input"),
    "bad param type": (Genome.make([INPUT, conv(1).replace(bn="yes"), out(2)],
                                   [(0, 1), (1, 2)]), "node 1: param bn='yes'"),
    "missing param": (Genome.make([INPUT, Node.make(1, "dense", units=5), out(2)],
                                  [(0, 1), (1, 2)]), "node 1: op 'dense' needs param"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_malformed_genome_gets_typed_error_naming_where(case):
    genome, expected = BAD[case]
    start = time.monotonic()
    with pytest.raises(InvalidGenome) as error:
        analyze(genome)
    assert expected in str(error.value)
    assert time.monotonic() - start < 1.0


def test_over_budget_genome_is_rejected_without_allocating(monkeypatch):
    space = get_space("lse-conv", channels=(1, 1 << 20))
    huge = Genome.make([INPUT, conv(1, c=100_000), conv(2, c=100_000), out(3)],
                       [(0, 1), (1, 2), (2, 3)], dict(space.initial_genes))

    def forbidden(*args, **kwargs):
        raise AssertionError("a tensor was allocated for an over-budget genome")

    monkeypatch.setattr(torch, "empty", forbidden)
    monkeypatch.setattr(torch.nn.Conv2d, "__init__", forbidden)
    start = time.monotonic()
    with pytest.raises(InvalidGenome, match="parameters exceed the budget"):
        analyze(huge, space)
    assert time.monotonic() - start < 1.0


def test_merge_rule_takes_first_inputs_channels_and_smallest_size():
    genome = Genome.make([INPUT, conv(1, c=4), conv(2, c=7, s=2), Node.make(3, "identity"),
                          out(4)], [(0, 1), (0, 2), (1, 3), (2, 3), (3, 4)])
    info = analyze(genome)
    assert info.in_shapes[3] == (4, 4, 4)


def test_space_rejects_genes_and_ops_outside_it():
    space = get_space("mlp")
    genome = Genome.make([INPUT, conv(1), out(2)], [(0, 1), (1, 2)], dict(space.initial_genes))
    with pytest.raises(InvalidGenome, match="node 1: op 'conv' is not in space mlp"):
        analyze(genome, space)
    plain = Genome.make([INPUT, out(1)], [(0, 1)], {"optimizer": "lbfgs"})
    with pytest.raises(InvalidGenome, match="genes: optimizer 'lbfgs'"):
        analyze(plain, space)


def test_analysis_is_made_once_per_genome_and_the_space_checked_every_time():
    from evograph.genome.validate import known_analysis
    genome = get_space("mlp").sample(np.random.default_rng(0), (1, 8, 8), 10)
    copy = from_dict(to_dict(genome))          # an equal genome, a fresh object
    assert known_analysis(copy) is None
    info = analyze(copy)
    assert known_analysis(copy) is info and analyze(copy) is info
    assert info == analyze(from_dict(to_dict(genome)))
    tight = get_space("mlp", max_params=info.params - 1)
    with pytest.raises(InvalidGenome):        # the fit to a space is not memoised
        analyze(copy, tight)
