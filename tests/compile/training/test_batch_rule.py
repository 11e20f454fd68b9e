"""The batching rule: decided from the step times of trainings already run, by cost class."""

import pytest
import torch
from evograph.compile.training.batch_rule import BatchRule, StepTimes, cost_class
from evograph.genome import Genome, Node

from tests.compile.training.test_dense_stack import chain

CPU = torch.device("cpu")


def dense(widths=(32, 16), skip=False) -> Genome:
    return chain(widths, skip=skip)


def conv() -> Genome:
    nodes = [Node.make(0, "input", shape=(1, 8, 8)),
             Node.make(1, "conv", out_channels=4, kernel_h=3, kernel_w=3, stride_h=1,
                       stride_w=1, bn=False, relu=True),
             Node.make(2, "output", num_classes=10)]
    return Genome.make(nodes, [(0, 1), (1, 2)], {"learning_rate": 0.05, "batch_size": 32,
                                                 "optimizer": "momentum"})


def test_cost_classes_separate_what_batches_differently():
    chain, key = dense(), cost_class(dense(), CPU)
    assert key[0] == "dense-chain" and cost_class(dense(skip=True), CPU)[0] == "dense"
    assert cost_class(conv(), CPU)[0] == "conv"
    assert cost_class(chain.with_genes(learning_rate=0.5), CPU) == key  # lr: same class
    assert cost_class(dense((33, 16)), CPU) == key                      # FLOPs within 2x
    for other in (dense((256, 256)), chain.with_genes(optimizer="sgd"),
                  chain.with_genes(batch_size=64)):
        assert cost_class(other, CPU) != key
    assert cost_class(chain, "cuda:0") != key


def test_fixed_modes_and_an_unseen_class():
    genomes = [dense()] * 3
    assert BatchRule("never").decide(genomes, CPU) == (False, None)
    assert BatchRule("always").decide(genomes, CPU) == (True, None)
    rule, key = BatchRule("auto"), cost_class(genomes[0], CPU)
    assert rule.decide(genomes, CPU) == (True, None)        # nothing seen: try it batched
    rule.times.observe_batched(key, 3, 0.004)
    assert rule.decide(genomes, CPU) == (True, None)        # seen batched only: go on
    rule.times.observe_alone(key, 1e-9)                     # batched would lose by far, but
    for seen in range(1, rule.min_batched):                 # it is believed only from the third
        assert rule.decide(genomes, CPU) == (True, None)
        rule.times.observe_batched(key, 3, 0.004)
    assert rule.decide(genomes, CPU)[0] is False


@pytest.mark.parametrize("alone, together, batched", [(0.002, 0.003, True),     # 2x
                                                       (0.002, 0.005, True),     # 1.2x
                                                       (0.002, 0.0051, False),
                                                       (0.001, 0.004, False)])   # 0.75x
def test_auto_batches_when_k_alone_take_threshold_times_the_batched(alone, together, batched):
    genomes = [dense()] * 3
    rule = BatchRule("auto", threshold=1.2)
    key = cost_class(genomes[0], CPU)
    rule.times.observe_alone(key, alone)
    for _ in range(rule.min_batched):
        rule.times.observe_batched(key, 3, together)
    decision, speedup = rule.decide(genomes, CPU)
    assert speedup == pytest.approx(3 * alone / together) and decision is batched
    other = [dense(skip=True)] * 3                       # another class: still unseen
    assert rule.decide(other, CPU) == (True, None)


def test_step_times_are_medians_of_the_last_trainings():
    times, key = StepTimes(window=3), ("dense-chain", 12, "adam", 32, "cpu")
    for seconds in (9.0, 1.0, 2.0, 50.0):        # 9.0 drops out of the window
        times.observe_alone(key, seconds)
    assert times.alone_step(key) == 2.0
    assert times.alone_step(("conv",)) is None and times.batched_step(key, 4) is None


def test_unseen_group_sizes_are_interpolated_or_scaled_from_the_nearest():
    times, key = StepTimes(), ("dense-chain", 12, "adam", 32, "cpu")
    times.observe_batched(key, 4, 0.010)
    assert times.batched_step(key, 8) == pytest.approx(0.020)   # only smaller seen: x K
    assert times.batched_step(key, 2) == pytest.approx(0.005)   # only larger seen: x K
    times.observe_batched(key, 16, 0.022)
    assert times.batched_step(key, 4) == pytest.approx(0.010)
    assert times.batched_step(key, 10) == pytest.approx(0.016)  # between 4 and 16
    assert times.batched_step(key, 32) == pytest.approx(0.044)


def test_a_refused_class_is_trained_batched_again_after_a_run_of_refusals():
    """A "no" is re-measured: after ``recheck_every`` refusals in a row one group trains
    batched (its time then joins the median); a "yes" in between restarts the count."""
    genomes, rule = [dense()] * 4, BatchRule("auto", recheck_every=4)
    key = cost_class(genomes[0], CPU)
    rule.times.observe_alone(key, 0.001)
    for _ in range(rule.min_batched):
        rule.times.observe_batched(key, 4, 0.008)            # 0.5x: refused
    verdicts = [rule.decide(genomes, CPU)[0] for _ in range(9)]
    assert verdicts == [False, False, False, True] * 2 + [False]
    for _ in range(rule.times.window):
        rule.times.observe_batched(key, 4, 0.002)            # now 2x
    assert rule.decide(genomes, CPU)[0] is True and key not in rule.times.refusals
