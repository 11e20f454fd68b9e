"""Code generation: the generated model.py is plain, standalone, and the compiled genome's twin."""

import ast

import pytest
import torch
from evograph.compile import build
from evograph.compile.codegen import EMITTERS, generate, reconcile_expr
from evograph.genome import Genome, Node, get_space
from evograph.genome.ops import OPS
from evograph.genome.space import SPACES
from hypothesis import given

from ..conftest import random_dags, sample_genomes


def instantiate(genome, seed=0):
    """(compiled module, generated module holding the same weights)."""
    gen = generate(genome)
    namespace = {"__name__": "generated"}
    exec(compile(gen.source, "model.py", "exec"), namespace)  # noqa: S102 - generated
    compiled = build(genome, seed=seed)
    with torch.no_grad():  # non-trivial batch-norm statistics, so eval mode is really tested
        for name, tensor in compiled.state_dict().items():
            if name.endswith(("running_mean", "running_var")):
                tensor.copy_(torch.rand(tensor.shape, generator=torch.Generator().manual_seed(1))
                             + (0.5 if name.endswith("var") else -0.5))
    net = namespace["EvolvedNet"]()
    net.load_state_dict(gen.remap(compiled.state_dict()), strict=True)
    return compiled, net


def assert_twins(genome, batch=3):
    compiled, net = instantiate(genome)
    x = torch.randn(batch, *genome.input_node.get("shape"),
                    generator=torch.Generator().manual_seed(2))
    for mode in ("eval", "train"):  # train mode: batch statistics, same kernels
        getattr(compiled, mode)()
        getattr(net, mode)()
        with torch.no_grad():
            assert torch.equal(net(x), compiled(x)), (mode, genome)


def merge_genome():
    """Skips whose merges pool 8x8 -> 4x4 (and 4x4 -> 2x2), zero-pad and truncate channels."""
    conv = {"kernel_h": 3, "kernel_w": 3, "bn": True, "relu": True}
    return Genome.make(
        [Node.make(0, "input", shape=(1, 8, 8)),
         Node.make(1, "conv", out_channels=4, stride_h=1, stride_w=1, **conv),
         Node.make(2, "conv", out_channels=6, stride_h=2, stride_w=2, **conv),
         Node.make(3, "identity"),
         Node.make(4, "conv", out_channels=3, stride_h=2, stride_w=2, **conv),
         Node.make(5, "output", num_classes=10)],
        [(0, 1), (0, 3), (1, 2), (1, 4), (2, 3), (3, 4), (4, 5), (2, 5)])


def test_every_op_has_an_emitter():
    assert set(EMITTERS) == {op for op, spec in OPS.items() if not spec.template}


@pytest.mark.parametrize("space_name", sorted(SPACES))
def test_sampled_genomes_of_every_space_are_reproduced_exactly(space_name):
    for _, genome in sample_genomes(get_space(space_name), 6, seed=11):
        assert_twins(genome)


@given(random_dags())
def test_random_dags_are_reproduced_exactly(genome):
    assert_twins(genome)


def test_merges_are_written_out_and_match():
    genome = merge_genome()
    source = generate(genome).source
    assert "F.adaptive_avg_pool2d(x1, (4, 4))" in source        # pooled 8x8 -> 4x4
    assert "x2[:, :1]" in source                                 # truncated 6 -> 1 channels
    assert "F.pad(x3, (0, 0, 0, 0, 0, 3))" in source            # zero-padded 1 -> 4
    assert "# node 3 sums x0 + x2" in source
    assert_twins(genome)


def test_state_dict_keys_map_one_to_one():
    genome = merge_genome()
    gen = generate(genome)
    compiled, net = instantiate(genome)
    mapping = gen.key_map(compiled.state_dict())
    assert sorted(mapping.values()) == sorted(net.state_dict())
    assert len(set(mapping.values())) == len(mapping)
    assert mapping["layers.n2.0.weight"] == "conv2.weight"
    assert mapping["layers.n2.1.running_var"] == "bn2.running_var"
    assert mapping["layers.n5.1.weight"] == "head5.weight"


def test_source_is_standalone_plain_and_straight_line():
    source = generate(merge_genome()).source
    tree = ast.parse(source)
    imports = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    imports |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert imports <= {"torch", "torch.nn", "safetensors.torch"}
    assert "evograph" not in source.split('"""', 2)[2]  # only the docstring mentions it
    forward = next(n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)
                   and n.name == "forward")
    assert not any(isinstance(n, (ast.For, ast.While, ast.If)) for n in ast.walk(forward))
    assert "self.conv1 = nn.Conv2d(1, 4" in source and "# conv -> (N, 4, 8, 8)" in source


def test_mlp_activations_and_flat_merges():
    nodes = [Node.make(0, "input", shape=(12,))]
    for i, act in enumerate(["relu", "tanh", "sigmoid", "elu", "selu", "gelu", "leaky_relu",
                             "linear"], start=1):
        nodes.append(Node.make(i, "dense", units=14 - i, activation=act))
    nodes.append(Node.make(9, "output", num_classes=3))
    edges = [(i, i + 1) for i in range(9)] + [(2, 5), (1, 8)]
    genome = Genome.make(nodes, edges)
    source = generate(genome).source
    assert "m5 = x2 + F.pad(x4, (0, 2))" in source  # 10 features zero-padded to 12
    assert "m8 = x1 + F.pad(x7, (0, 6))" in source
    assert_twins(genome, batch=5)


def test_one_d_signals_are_reshaped_to_height_one():
    genome = next(g for _, g in sample_genomes(get_space("lse-conv"), 1, seed=3)
                  if len(g.input_node.get("shape")) == 2)
    assert "x.reshape(x.shape[0], 1, 1, 40)" in generate(genome).source
    assert_twins(genome)


def test_reconcile_expression_order_pool_then_channels():
    assert reconcile_expr("v", (8, 4, 4), (3, 2, 2)) == \
        "F.adaptive_avg_pool2d(v, (2, 2))[:, :3]"
    assert reconcile_expr("v", (2, 4, 4), (3, 4, 4)) == "F.pad(v, (0, 0, 0, 0, 0, 1))"
    assert reconcile_expr("v", (3, 4, 4), (3, 4, 4)) == "v"


def test_bad_class_name_is_refused():
    with pytest.raises(ValueError, match="identifier"):
        generate(merge_genome(), class_name="not a name")


def test_generated_model_trains():
    """An ordinary module: gradients reach every parameter and a few SGD steps lower the loss."""
    _, net = instantiate(merge_genome())
    net.train()
    gen = torch.Generator().manual_seed(0)
    x, y = torch.randn(16, 1, 8, 8, generator=gen), torch.randint(0, 10, (16,), generator=gen)
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
    losses = []
    for _ in range(8):
        loss = torch.nn.functional.cross_entropy(net(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert all(p.grad is not None for p in net.parameters())
    assert losses[-1] < losses[0]
