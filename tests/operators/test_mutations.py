"""Every registered mutation: what it changes, what it keeps, and that children stay valid."""

import numpy as np
import pytest
import torch
from evograph.compile import build
from evograph.compile.inherit import inherit_weights
from evograph.errors import InvalidGenome
from evograph.genome import analyze, get_space
from evograph.operators import MUTATIONS, Edit, NotApplicable, crossover, mutate
from evograph.operators.base import FAMILIES, mutation_table

SPACE_FOR_FAMILY = {"conv": "lse-conv", "mlp": "mlp", "cell": "nasnet"}  # nasnet: every cell mutation


def _grown(space_name, shape=(1, 8, 8), steps=25, seed=0):
    """A population of genomes grown by random mutation from the space's initial genome."""
    space = get_space(space_name)
    rng = np.random.default_rng(seed)
    genomes = [space.initial_genome(rng, shape, 10)]
    for _ in range(steps):
        genomes.append(mutate(genomes[int(rng.integers(len(genomes)))], rng, space)[0])
    return space, genomes


@pytest.mark.parametrize("name", sorted(MUTATIONS))
@pytest.mark.parametrize("shape", [(1, 8, 8), (1, 40)])
def test_mutation_children_are_valid_or_not_applicable(name, shape):
    for family in FAMILIES[name]:
        space, genomes = _grown(SPACE_FOR_FAMILY[family], shape)
        applied = 0
        for i, parent in enumerate(genomes):
            rng = np.random.default_rng(i)
            try:
                child, edit = MUTATIONS[name](parent, rng, space)
            except NotApplicable:
                continue
            assert isinstance(edit, Edit) and edit.mutation == name
            try:
                analyze(child, space)
            except InvalidGenome:
                continue  # rejected before evaluation: mutate() resamples
            applied += 1
            _check_changes(name, parent, child, edit)
        assert applied > 0, f"{name} never applied"


def _check_changes(name, parent, child, edit):
    """What each mutation must change and keep."""
    same_arch = child.arch_hash == parent.arch_hash
    if name in ("identity", "reset-weights"):
        assert child == parent
        assert edit.inherit is (name == "identity")
    elif name in ("alter-learning-rate", "mlp-optimizer"):
        assert same_arch and child.hash != parent.hash
    elif name in ("insert-convolution", "insert-one-to-one"):
        assert len(child.nodes) == len(parent.nodes) + 1
        new = child.node(edit.args["node"])
        assert new.op == ("conv" if name == "insert-convolution" else "identity")
        if new.op == "conv":
            assert new.get("kernel_w") == 3 and new.get("stride_w") in (1, 2)
            assert new.get("bn") == new.get("relu")
    elif name == "remove-convolution":
        assert len(child.nodes) == len(parent.nodes) - 1
        assert not child.has_node(edit.args["node"])
    elif name in ("alter-stride", "alter-number-of-channels", "filter-size"):
        node = edit.args["node"]
        diff = {k for k, v in child.node(node).p.items() if parent.node(node).p[k] != v}
        allowed = {"alter-stride": {"stride_h", "stride_w"},
                   "alter-number-of-channels": {"out_channels"},
                   "filter-size": {"kernel_h", "kernel_w"}}[name]
        assert diff and diff <= allowed
        assert [n for n in child.nodes if n.id != node] == \
            [n for n in parent.nodes if n.id != node]
        if name == "alter-stride":
            assert child.node(node).get("stride_w") & (child.node(node).get("stride_w") - 1) == 0
        if name == "filter-size":
            assert child.node(node).get(edit.args["axis"]) % 2 == 1
    elif name in ("add-skip", "remove-skip"):
        assert child.nodes == parent.nodes
        delta = len(child.edges) - len(parent.edges)
        assert delta == (1 if name == "add-skip" else -1)
    elif name == "mlp-layers":
        assert abs(len(child.nodes) - len(parent.nodes)) == 1
    elif name == "mlp-neurons":
        assert len(child.nodes) == len(parent.nodes) and not same_arch
    elif name == "cell-op":   # one op replaced at its node; nothing else of the cell moves
        node = edit.args["node"]
        assert child.node(node).op == edit.args["to"] != parent.node(node).op
        assert child.edges == parent.edges
        assert [n for n in child.nodes if n.id != node] == [n for n in parent.nodes if n.id != node]
    elif name == "cell-input":  # one op reads another hidden state: the op itself unchanged
        node = edit.args["node"]
        assert child.node(node) == parent.node(node)
        assert child.predecessors(node) != parent.predecessors(node)
    elif name == "mlp-activation":
        acts = {n.get("activation") for n in child.nodes_with_op("dense")}
        assert len(acts) == 1 and acts != {n.get("activation")
                                           for n in parent.nodes_with_op("dense")}


@pytest.mark.parametrize("space_name", ["lse-conv", "mlp"])
def test_mutate_is_pure_and_deterministic(space_name):
    space, genomes = _grown(space_name)
    parent = genomes[-1]
    before = parent.hash
    a = mutate(parent, np.random.default_rng(9), space)
    b = mutate(parent, np.random.default_rng(9), space)
    assert a[0] == b[0] and a[1] == b[1] and parent.hash == before


def test_every_space_mutation_table_is_registered(space):
    names, probs = mutation_table(space)
    assert set(names) <= set(MUTATIONS) and abs(probs.sum() - 1) < 1e-9


@pytest.mark.parametrize("space_name", ["lse-conv", "mlp"])
def test_crossover_takes_genes_from_both_parents(space_name):
    space, genomes = _grown(space_name, steps=40)
    a, b = genomes[-1], genomes[-2]
    sources = set()
    for seed in range(20):
        child, edit = crossover(a, b, np.random.default_rng(seed), space)
        analyze(child)
        assert edit.mutation == "crossover"
        for key, value in child.gene.items():
            assert value in (a.gene[key], b.gene[key])
        sources.update(edit.args["genes_from_second"])
    assert sources, "crossover never took a gene from the second parent"


def _outputs(module, shape):
    x = torch.randn(5, *shape, generator=torch.Generator().manual_seed(3))
    return module.eval()(x)


@pytest.mark.parametrize("name", ["identity", "alter-learning-rate"])
@pytest.mark.parametrize("space_name", ["lse-conv", "mlp"])
def test_inheriting_children_compute_parent_outputs_exactly(name, space_name):
    space, genomes = _grown(space_name, steps=30)
    parent = genomes[-1]
    shape = parent.input_node.get("shape")
    parent_module = build(parent, seed=1)
    child, edit = MUTATIONS[name](parent, np.random.default_rng(0), space)
    child_module = build(child, seed=2)
    report = inherit_weights(child_module, parent_module.state_dict(), edit.inherit)
    assert not report.fresh and not report.partial
    assert torch.equal(_outputs(parent_module, shape), _outputs(child_module, shape))


def test_reset_weights_inherits_nothing():
    space, genomes = _grown("lse-conv")
    parent = genomes[-1]
    child, edit = MUTATIONS["reset-weights"](parent, np.random.default_rng(0), space)
    report = inherit_weights(build(child, seed=2), build(parent, seed=1).state_dict(),
                             edit.inherit)
    assert not report.copied and not report.partial


def test_channel_change_keeps_leading_block_and_filter_size_keeps_centre():
    _, genomes = _grown("lse-conv", steps=40, seed=3)
    parent = next(g for g in reversed(genomes) if g.nodes_with_op("conv"))
    conv = parent.nodes_with_op("conv")[0]
    key = f"layers.n{conv.id}.0.weight"
    parent_state = build(parent, seed=1).state_dict()

    wider = parent.with_node(conv.replace(out_channels=conv.get("out_channels") + 3))
    module = build(wider, seed=2)
    report = inherit_weights(module, parent_state)
    assert key in report.partial
    old = parent_state[key]
    assert torch.equal(module.state_dict()[key][: old.shape[0]], old)

    bigger = parent.with_node(conv.replace(kernel_h=conv.get("kernel_h") + 2,
                                           kernel_w=conv.get("kernel_w") + 2))
    module = build(bigger, seed=2)
    inherit_weights(module, parent_state)
    assert torch.equal(module.state_dict()[key][:, :, 1:-1, 1:-1], old)
