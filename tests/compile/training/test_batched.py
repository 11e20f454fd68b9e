"""Batched populations: K candidates trained together with torch.func equal K trained alone."""

import copy

import numpy as np
import pytest
import torch
from evograph.compile.builder import build
from evograph.compile.inherit import inherit_weights
from evograph.compile.training import functional_optim
from evograph.compile.training.batched import batch_problem, score_batched, train_batched
from evograph.compile.training.functional_optim import (
    FUNCTIONAL_OPTIMIZERS,
    apply_update,
    init_state,
)
from evograph.compile.training.sgd import (
    AUGMENTATIONS,
    OPTIMIZER_FACTORIES,
    SGDTraining,
    evaluate,
    lr_factor,
    train_steps,
)
from evograph.data.datasets import load_dataset
from evograph.genome import Genome, Node
from evograph.genome.space import get_space

CPU = torch.device("cpu")
TOL = {"rtol": 1e-4, "atol": 1e-4}


@pytest.fixture(scope="module")
def data():
    return load_dataset("digits", seed=0, limit=200)


def conv_genome(optimizer="momentum", lr=0.05, batch=32) -> Genome:
    """A conv net with batch norm, a strided conv and a skip edge (merge): the hard case."""
    nodes = [Node.make(0, "input", shape=(1, 8, 8)),
             Node.make(1, "conv", out_channels=6, kernel_h=3, kernel_w=3, stride_h=1,
                       stride_w=1, bn=True, relu=True),
             Node.make(2, "conv", out_channels=8, kernel_h=3, kernel_w=3, stride_h=2,
                       stride_w=2, bn=False, relu=True),
             Node.make(3, "output", num_classes=10)]
    genes = {"learning_rate": lr, "optimizer": optimizer, "weight_decay": 1e-4,
             "batch_size": batch}
    return Genome.make(nodes, [(0, 1), (1, 2), (2, 3), (1, 3)], genes)


def mlp_genome(optimizer="adam", lr=1e-3, batch=32) -> Genome:
    nodes = [Node.make(0, "input", shape=(1, 8, 8)),
             Node.make(1, "dense", units=32, activation="tanh"),
             Node.make(2, "dense", units=16, activation="relu"),
             Node.make(3, "output", num_classes=10)]
    genes = {"learning_rate": lr, "optimizer": optimizer, "weight_decay": 0.0,
             "batch_size": batch}
    return Genome.make(nodes, [(0, 1), (1, 2), (2, 3)], genes)


def siblings(genome: Genome, factors=(1.0, 0.5, 2.0)) -> list[Genome]:
    """ALTER-LEARNING-RATE-style siblings: one architecture, different learning rates."""
    lr = genome.gene["learning_rate"]
    return [genome.with_genes(learning_rate=lr * f) for f in factors]


def inherited_modules(genomes, parent_seed=99):
    """Each child built from its own seed, then given its parent's trained-looking weights."""
    parent = build(genomes[0], seed=parent_seed)
    with torch.no_grad():
        for p in parent.parameters():
            p.mul_(1.5)
    state = parent.state_dict()
    modules = []
    for i, g in enumerate(genomes):
        m = build(g, seed=i)
        inherit_weights(m, state)
        modules.append(m)
    return modules


def assert_same_state(a: torch.nn.Module, b: torch.nn.Module):
    for (name, x), y in zip(a.state_dict().items(), b.state_dict().values()):
        torch.testing.assert_close(x.float(), y.float(), **TOL, msg=name)


@pytest.mark.parametrize("make", [conv_genome, mlp_genome], ids=["conv-bn", "mlp"])
@pytest.mark.parametrize("optimizer", ["sgd", "momentum", "adam"])
def test_batched_training_equals_one_by_one(data, make, optimizer):
    lr = 1e-3 if optimizer == "adam" else 0.05
    genomes = siblings(make(optimizer, lr))
    modules = inherited_modules(genomes)
    alone = [copy.deepcopy(m) for m in modules]
    seeds, steps = [11, 12, 13], 14   # 14 steps of 32 over 140 samples: crosses an epoch
    curves = train_batched(modules, [g.gene for g in genomes], data, steps, 32, seeds, CPU)
    for module, single, genome, seed, curve in zip(modules, alone, genomes, seeds, curves):
        expected = train_steps(single, data, genome.gene, steps, 32, seed, CPU)
        np.testing.assert_allclose(curve, expected, **TOL)
        assert_same_state(module, single)   # weights and BN running statistics


@pytest.mark.parametrize("name", sorted(FUNCTIONAL_OPTIMIZERS))
def test_functional_update_matches_torch_optim(name):
    """Same gradients in, same parameters out: each row follows torch.optim with its own lr/wd."""
    gen = torch.Generator().manual_seed(0)
    lrs, wds = [0.01, 0.003], [0.0, 1e-2]
    rows = [torch.randn(5, 3, generator=gen) for _ in lrs]
    stacked = [torch.stack(rows).clone()]
    state = init_state(name, stacked)
    singles = [row.clone().requires_grad_(True) for row in rows]
    optims = [OPTIMIZER_FACTORIES[name]([p], lr, wd) for p, lr, wd in zip(singles, lrs, wds)]
    for step in range(1, 5):
        grads = [torch.randn(5, 3, generator=gen) for _ in lrs]
        for p, g, opt in zip(singles, grads, optims):
            p.grad = g.clone()
            opt.step()
        apply_update(name, stacked, [torch.stack(grads)], state,
                     torch.tensor(lrs, dtype=torch.float64),
                     torch.tensor(wds, dtype=torch.float64), step)
        for k, p in enumerate(singles):
            torch.testing.assert_close(stacked[0][k], p.detach(), rtol=1e-5, atol=1e-6)


def test_both_fused_adam_strategies_follow_torch_adam_with_a_reused_gradient_buffer():
    """Adam's fused kernel runs once per candidate on CPU (its own lr and weight decay) and once
    for all candidates on a GPU (a direction buffer); both are run here on CPU, with the
    gradients written into one buffer reused from step to step (as a dense stack does, so the
    cached row views are reused) and then into a new one (so they are made again)."""
    gen = torch.Generator().manual_seed(2)
    lrs, wds = [0.01, 0.003, 0.02], [0.0, 1e-2, 0.0]
    lr, wd = (torch.tensor(v, dtype=torch.float64) for v in (lrs, wds))
    base = [torch.randn(3, 4, 6, generator=gen), torch.randn(3, 4, generator=gen)]
    singles = [[t[k].clone().requires_grad_(True) for t in base] for k in range(3)]
    optims = [OPTIMIZER_FACTORIES["adam"](ps, lr_k, wd_k) for ps, lr_k, wd_k in zip(singles, lrs, wds)]
    by_row, by_direction = [t.clone() for t in base], [t.clone() for t in base]
    states = [init_state("adam", by_row), init_state("adam", by_direction)]
    buffers = [torch.empty_like(t) for t in base]
    for step in range(1, 7):
        if step == 4:
            buffers = [torch.empty_like(t) for t in base]          # a new gradient buffer
        for buffer in buffers:
            buffer.copy_(torch.randn(buffer.shape, generator=gen))
        for k, (ps, opt) in enumerate(zip(singles, optims)):
            for p, g in zip(ps, buffers):
                p.grad = g[k].clone()
            opt.step()
        columns = [(by_row, buffers, states[0]["exp_avg"], states[0]["exp_avg_sq"]),
                   (by_direction, buffers, states[1]["exp_avg"], states[1]["exp_avg_sq"])]
        hyper = {"beta1": 0.9, "beta2": 0.999, "eps": 1e-8, "amsgrad": False,
                 "maximize": False}
        functional_optim._fused_adam_by_row(states[0], columns[0], lr, wd, step, hyper)
        functional_optim._fused_adam_by_direction(states[1], columns[1], lr, wd, step, hyper)
        for stacked in (by_row, by_direction):
            for i, tensor in enumerate(stacked):
                for k in range(3):
                    torch.testing.assert_close(tensor[k], singles[k][i].detach(),
                                               rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", sorted(FUNCTIONAL_OPTIMIZERS))
def test_functional_update_does_not_depend_on_memory_layout(name):
    """Stacked parameters come contiguous (dense stacks) or transposed (vmap's weight layout);
    Adam takes a fused kernel for the first and plain tensor code for the second."""
    gen = torch.Generator().manual_seed(1)
    base = torch.randn(2, 4, 6, generator=gen)
    contiguous = [base.clone()]
    transposed = [base.transpose(1, 2).contiguous().transpose(1, 2)]    # same values, strided
    assert not transposed[0].is_contiguous()
    lr, wd = torch.tensor([0.01, 0.002], dtype=torch.float64), torch.tensor([0.0, 0.1],
                                                                            dtype=torch.float64)
    states = [init_state(name, contiguous), init_state(name, transposed)]
    for step in range(1, 4):
        grad = torch.randn(2, 4, 6, generator=gen)
        apply_update(name, contiguous, [grad], states[0], lr, wd, step)
        apply_update(name, transposed, [grad.transpose(1, 2).contiguous().transpose(1, 2)],
                     states[1], lr, wd, step)
    torch.testing.assert_close(contiguous[0], transposed[0], rtol=1e-5, atol=1e-7)


def test_every_optimizer_gene_of_the_spaces_can_batch():
    from evograph.genome.space import OPTIMIZERS as SPACE_OPTIMIZERS
    assert set(SPACE_OPTIMIZERS) <= set(FUNCTIONAL_OPTIMIZERS) <= set(OPTIMIZER_FACTORIES)
    learned = mlp_genome().with_genes(optimizer="not-functional")
    assert "no functional" in batch_problem([learned, learned])


@pytest.mark.parametrize("optimizer, lr", [("momentum", 0.05), ("adam", 1e-3)])
@pytest.mark.parametrize("direct", [True, False], ids=["dense-stack", "vmap"])
def test_diverging_candidate_stops_alone(data, direct, optimizer, lr):
    """An MLP is a dense chain: both the direct path and the vmap path are checked, with
    Adam's per-candidate fused update too (the stopped row keeps learning rate 0)."""
    tol = {"rtol": 1e-4, "atol": 1e-5}
    genomes = siblings(mlp_genome(optimizer, lr))
    modules = inherited_modules(genomes)
    with torch.no_grad():
        for p in modules[1].parameters():
            p.fill_(float("nan"))
    alone = [copy.deepcopy(m) for m in modules]
    curves = train_batched(modules, [g.gene for g in genomes], data, 8, 32, [1, 2, 3], CPU,
                           direct=direct)
    assert len(curves[1]) == 1 and not np.isfinite(curves[1][-1])
    for i in (0, 2):
        expected = train_steps(alone[i], data, genomes[i].gene, 8, 32, i + 1, CPU)
        np.testing.assert_allclose(curves[i], expected, **tol)
        for (name, x), y in zip(modules[i].state_dict().items(), alone[i].state_dict().values()):
            torch.testing.assert_close(x, y, **tol, msg=name)


def test_clipping_and_label_smoothing_follow_one_by_one(data):
    genomes = siblings(conv_genome("sgd", 0.5), (1.0, 2.0))
    modules = inherited_modules(genomes)
    alone = [copy.deepcopy(m) for m in modules]
    curves = train_batched(modules, [g.gene for g in genomes], data, 6, 32, [5, 6], CPU,
                           label_smoothing=0.1, grad_clip=0.5)
    for i, genome in enumerate(genomes):
        expected = train_steps(alone[i], data, genome.gene, 6, 32, 5 + i, CPU, 0.1, 0.5)
        np.testing.assert_allclose(curves[i], expected, **TOL)
        assert_same_state(modules[i], alone[i])


@pytest.mark.parametrize("make", [conv_genome, mlp_genome], ids=["conv-bn", "mlp"])
def test_augmented_training_follows_one_by_one(data, make):
    """Random shifts: each candidate draws its offsets from its own generator, as alone (the
    mlp takes the direct path on 8x8 images, the conv net vmap)."""
    genomes = siblings(make("momentum", 0.05))
    modules = inherited_modules(genomes)
    alone = [copy.deepcopy(m) for m in modules]
    shift = AUGMENTATIONS["shift"]
    curves = train_batched(modules, [g.gene for g in genomes], data, 12, 32, [7, 8, 9], CPU,
                           augment=shift)
    for i, genome in enumerate(genomes):
        expected = train_steps(alone[i], data, genome.gene, 12, 32, 7 + i, CPU, augment=shift)
        unshifted = train_steps(copy.deepcopy(alone[i]), data, genome.gene, 12, 32, 7 + i, CPU)
        np.testing.assert_allclose(curves[i], expected, **TOL)
        assert_same_state(modules[i], alone[i])
        assert not np.allclose(unshifted, expected, **TOL)  # the shifts do change training


def test_score_batched_trains_with_the_fitness_augmentation(data):
    fitness = SGDTraining(steps=8, augment="shift")
    genomes = siblings(conv_genome("momentum", 0.05), (1.0, 2.0))
    modules = inherited_modules(genomes)
    alone = [copy.deepcopy(m) for m in modules]
    scores = score_batched(fitness, modules, genomes, data, [3, 4], CPU)
    for score, module, genome, seed in zip(scores, alone, genomes, [3, 4]):
        expected = fitness.score(module, genome, data, seed=seed, device=CPU)
        np.testing.assert_allclose(score.metrics["loss_curve"], expected.metrics["loss_curve"],
                                   **TOL)


def test_score_batched_matches_sgd_training(data):
    fitness = SGDTraining(steps=10)
    genomes = siblings(mlp_genome("adam", 1e-3))
    modules = inherited_modules(genomes)
    alone = [copy.deepcopy(m) for m in modules]
    scores = score_batched(fitness, modules, genomes, data, [3, 4, 5], CPU)
    for score, module, genome, seed in zip(scores, alone, genomes, [3, 4, 5]):
        expected = fitness.score(module, genome, data, seed=seed, device=CPU)
        assert score.status == expected.status == "completed"
        assert score.fitness == pytest.approx(expected.fitness, abs=2 / len(data.y_val))
        assert score.metrics["val_loss"] == pytest.approx(expected.metrics["val_loss"], rel=1e-3)


def test_batch_problem_names_the_obstacle():
    base = mlp_genome("adam")
    assert batch_problem(siblings(base)) is None
    assert batch_problem([base]) == "fewer than two candidates"
    assert batch_problem([base, conv_genome("adam")]) == "architectures differ"
    assert batch_problem([base, base.with_genes(optimizer="sgd")]) == "optimizers differ"
    assert batch_problem([base, base.with_genes(batch_size=64)]) == "batch sizes differ"


def test_mlp_space_siblings_batch(data):
    """Real genomes of the mlp space with their alter-learning-rate siblings."""
    space = get_space("mlp", unit_choices=(16, 32))
    genome = space.sample(np.random.default_rng(4), (1, 8, 8), 10)
    genome = genome.with_genes(optimizer="sgd", learning_rate=0.01)
    genomes = siblings(genome, (1.0, 0.7))
    modules = [build(g, seed=i) for i, g in enumerate(genomes)]
    alone = [copy.deepcopy(m) for m in modules]
    batch = genome.gene["batch_size"]
    curves = train_batched(modules, [g.gene for g in genomes], data, 5, batch, [0, 1], CPU)
    for i, genome in enumerate(genomes):
        expected = train_steps(alone[i], data, genome.gene, 5, batch, i, CPU)
        np.testing.assert_allclose(curves[i], expected, **TOL)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_batched_on_cuda_matches_cpu(data):
    genomes = siblings(conv_genome("adam", 1e-3))
    cpu = inherited_modules(genomes)
    gpu = [copy.deepcopy(m).cuda() for m in cpu]
    cuda = torch.device("cuda")
    train_batched(cpu, [g.gene for g in genomes], data, 5, 32, [1, 2, 3], CPU)
    train_batched(gpu, [g.gene for g in genomes], data, 5, 32, [1, 2, 3], cuda)
    for a, b in zip(cpu, gpu):
        for x, y in zip(a.state_dict().values(), b.state_dict().values()):
            torch.testing.assert_close(x.float(), y.float().cpu(), rtol=1e-3, atol=1e-3)


def test_cosine_schedule_is_the_sgdr_curve():
    assert [lr_factor("cosine", s, 4) for s in range(5)] == pytest.approx(
        [1.0, (1 + 2 ** -0.5) / 2, 0.5, (1 - 2 ** -0.5) / 2, 0.0])
    assert lr_factor("constant", 3, 4) == 1.0 and lr_factor("cosine", 0, 0) == 1.0
    with pytest.raises(ValueError, match="lr_schedule: must be one of constant, cosine"):
        SGDTraining(lr_schedule="linear")


@pytest.mark.parametrize("make, optimizer", [(conv_genome, "momentum"), (mlp_genome, "adam")],
                         ids=["conv-bn-vmap", "mlp-direct"])
def test_a_cosine_schedule_trains_batched_as_one_by_one(data, make, optimizer):
    """The annealed rate reaches every path alike: vmap (conv), the direct dense path (mlp) and
    train_steps; and it changes the training (the constant rate gives another curve)."""
    genomes = siblings(make(optimizer, 1e-3 if optimizer == "adam" else 0.05))
    modules = inherited_modules(genomes)
    alone = [copy.deepcopy(m) for m in modules]
    curves = train_batched(modules, [g.gene for g in genomes], data, 10, 32, [3, 4, 5], CPU,
                           lr_schedule="cosine")
    for i, genome in enumerate(genomes):
        expected = train_steps(alone[i], data, genome.gene, 10, 32, 3 + i, CPU,
                               lr_schedule="cosine")
        constant = train_steps(copy.deepcopy(alone[i]), data, genome.gene, 10, 32, 3 + i, CPU)
        np.testing.assert_allclose(curves[i], expected, **TOL)
        assert_same_state(modules[i], alone[i])
        assert not np.allclose(constant, expected, **TOL)


def test_train_steps_anneals_the_optimizers_rate_step_by_step(data):
    """Plain SGD, weight w: each step moves it by -lr * factor(step) * grad; the rates the
    optimizer was given are recorded through its step (a hand-checkable oracle)."""
    genome = conv_genome("sgd", 0.2)
    module = inherited_modules([genome])[0]
    seen: list[float] = []

    def recording(genes, params):
        optimizer = torch.optim.SGD(params, lr=0.2)
        optimizer.register_step_pre_hook(lambda opt, *_: seen.append(opt.param_groups[0]["lr"]))
        return optimizer

    train_steps(module, data, genome.gene, 4, 32, 0, CPU, make_opt=recording,
                lr_schedule="cosine")
    assert seen == pytest.approx([0.2 * lr_factor("cosine", s, 4) for s in range(4)])


def test_after_step_sees_every_step_and_a_learning_curve_leaves_training_unchanged(data):
    """after_step(step) runs once per step, in order; evaluating there (eval mode, then back to
    train mode, as a table's per-epoch validation does) leaves the losses and weights exactly
    as a training without it (batch norm's running statistics included)."""
    genome = conv_genome("momentum", 0.05)
    module = inherited_modules([genome])[0]
    plain = copy.deepcopy(module)
    seen, accuracies = [], []

    def validate(step: int) -> None:
        seen.append(step)
        if (step + 1) % 3 == 0:
            accuracies.append(evaluate(module, data.x_val, data.y_val, CPU)[0])
            module.train()

    curve = train_steps(module, data, genome.gene, 9, 32, 0, CPU, after_step=validate,
                        lr_schedule="cosine")
    expected = train_steps(plain, data, genome.gene, 9, 32, 0, CPU, lr_schedule="cosine")
    assert seen == list(range(9)) and len(accuracies) == 3
    assert curve == expected
    assert_same_state(module, plain)
    assert accuracies[-1] == evaluate(plain, data.x_val, data.y_val, CPU)[0]


def test_a_set_rate_and_optimizer_replace_the_genomes_genes_alone_and_batched(data):
    """SGDTraining(learning_rate=, optimizer=): the training runs with them instead of the
    genes (the rates handed to the optimizer say so), alone and batched alike; the batching
    rule judges the genes the training uses."""
    fitness = SGDTraining(steps=6, learning_rate=0.02, optimizer="momentum")
    genomes = siblings(conv_genome("sgd", 0.5), (1.0, 0.3))   # sgd at 0.5 and 0.15
    assert fitness.genes_for(genomes[1]) == {**genomes[1].gene, "learning_rate": 0.02,
                                             "optimizer": "momentum"}
    assert SGDTraining().genes_for(genomes[1]) == genomes[1].gene
    modules = inherited_modules(genomes)
    alone = [copy.deepcopy(m) for m in modules]
    scores = score_batched(fitness, modules, genomes, data, [4, 5], CPU)
    for i, genome in enumerate(genomes):
        expected = fitness.score(alone[i], genome, data, seed=4 + i, device=CPU)
        np.testing.assert_allclose(scores[i].metrics["loss_curve"],
                                   expected.metrics["loss_curve"], **TOL)
        assert_same_state(modules[i], alone[i])
    seen: list[float] = []

    def recording(genes, params):
        seen.append(genes["learning_rate"])
        return OPTIMIZER_FACTORIES[genes["optimizer"]](params, genes["learning_rate"], 0.0)

    fitness.optimizer_for = recording
    fitness.score(inherited_modules(genomes[:1])[0], genomes[0], data, seed=0, device=CPU)
    assert seen == [0.02]
    mixed = [genomes[0], genomes[1].with_genes(optimizer="adam")]
    assert batch_problem(mixed) == "optimizers differ"          # by their own genes
    assert batch_problem(mixed, [fitness.genes_for(g) for g in mixed]) is None  # both momentum


@pytest.mark.parametrize("params, message", [
    ({"learning_rate": -0.1}, "learning_rate: must be >= 0"),
    ({"optimizer": "lion"}, "optimizer: must be genome or one of sgd, momentum"),
])
def test_a_bad_set_rate_or_optimizer_is_one_line(params, message):
    with pytest.raises(ValueError, match=message):
        SGDTraining(**params)
