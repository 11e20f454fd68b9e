"""Genome codecs: any decision sequence decodes to a valid genome of the space, within budgets;
encode inverts decode; the registry covers every space and takes user codecs."""

from __future__ import annotations

import pytest
from evograph.errors import ConfigError, InvalidGenome
from evograph.genome import Genome, Node
from evograph.genome.codec import (
    CODECS,
    Codec,
    Decision,
    IndexCodec,
    NotEncodable,
    codec_for,
    register_codec,
)
from evograph.genome.codec_spaces import ConvCodec
from evograph.genome.space import SPACES, SearchSpace, get_space
from evograph.genome.validate import analyze
from hypothesis import given
from hypothesis import strategies as st

from ..conftest import SHAPES_BY_FAMILY

# (space, its overrides, input shape, codec params): defaults, tight budgets, odd shapes
CASES = [
    ("mlp", {}, (1, 8, 8), {}),
    ("mlp", {"max_params": 20_000}, (64,), {}),
    ("mlp", {"max_layers": 2, "unit_choices": (16, 32)}, (40,), {"learning_rates": ()}),
    ("lse-conv", {}, (1, 8, 8), {}),
    ("lse-conv", {"max_params": 5_000, "max_flops": 200_000}, (1, 8, 8), {}),
    ("lse-conv", {}, (1, 40), {"max_depth": 4}),
    ("lse-conv", {"max_flops": 2_000_000}, (3, 32, 32), {"learning_rates": (0.01, 0.1)}),
    ("lse-conv", {"max_layers": 3, "channels": (4, 16)}, (2, 9, 7), {"skips": False}),
]
IDS = [f"{c[0]}-{i}" for i, c in enumerate(CASES)]


def make(case):
    name, overrides, shape, params = case
    space = get_space(name, **overrides)
    return space, codec_for(space, shape, 10, **params)


@pytest.mark.parametrize("case", CASES, ids=IDS)
@given(data=st.data())
def test_any_decision_sequence_decodes_to_a_valid_genome(case, data):
    space, codec = make(case)
    indices = data.draw(st.lists(st.integers(-50, 50), min_size=len(codec.decisions),
                                 max_size=len(codec.decisions)))
    genome = codec.decode(indices)
    info = analyze(genome, space)  # raises if invalid or over budget
    assert info.params <= space.max_params and info.flops <= space.max_flops
    assert codec.decode(codec.encode(genome)) == genome  # encode inverts decode


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_decode_is_a_pure_function_and_largest_choices_are_clamped(case):
    space, codec = make(case)
    largest = [d.size - 1 for d in codec.decisions]
    assert codec.decode(largest) == codec.decode(largest)
    assert space.is_valid(codec.decode(largest))
    assert space.is_valid(codec.decode([0] * len(codec.decisions)))


def test_budget_clamp_shrinks_widths_before_depth():
    space = get_space("mlp", max_params=40_000)
    codec = codec_for(space, (64,), 10, learning_rates=())
    genome = codec.decode([3] + [5] * 4 + [0, 0])  # 4 layers of 1024 units: far over budget
    assert len(genome.nodes_with_op("dense")) == 4  # widths shrank, the depth stayed
    assert analyze(genome, space).params <= 40_000


def test_decision_layout_of_the_conv_codec_follows_zoph_and_le():
    codec = codec_for(get_space("lse-conv"), (1, 8, 8), 10, max_depth=3)
    names = [d.name for d in codec.decisions]
    assert names[:6] == ["depth", "layer1.kernel_h", "layer1.kernel_w", "layer1.stride",
                         "layer1.channels", "layer2.kernel_h"]
    skips = [d for d in codec.decisions if d.skip_from is not None]
    assert [(d.layer, d.skip_from) for d in skips] == [(3, 1)]
    assert skips[0].choices == (False, True)
    one_d = codec_for(get_space("lse-conv"), (1, 40), 10, max_depth=3)
    assert not any(d.name.endswith("kernel_h") for d in one_d.decisions)


def test_conv_skips_merge_into_the_chain_input():
    codec = codec_for(get_space("lse-conv"), (1, 8, 8), 10, max_depth=3)
    values = {"depth": 3, "layer3.skip1": True, "layer1.channels": 8, "layer2.channels": 64,
              "layer3.channels": 16}
    indices = [d.choices.index(values[d.name]) if d.name in values else 0
               for d in codec.decisions]
    genome = codec.decode(indices)
    third = [n for n in genome.nodes if n.op == "conv" and len(genome.predecessors(n.id)) == 2]
    assert len(third) == 1
    preds = genome.predecessors(third[0].id)
    info = analyze(genome)
    assert info.in_shapes[third[0].id][0] == 64  # the chain input (layer 2) is the main path
    assert genome.node(preds[0]).get("out_channels") == 64


def test_encode_refuses_other_forms():
    space = get_space("mlp")
    codec = codec_for(space, (64,), 10)
    nodes = [Node.make(0, "input", shape=(64,)), Node.make(1, "dense", units=64,
                                                            activation="relu"),
             Node.make(2, "dense", units=64, activation="tanh"),
             Node.make(3, "output", num_classes=10)]
    mixed = Genome.make(nodes, [(0, 1), (1, 2), (2, 3)], {"learning_rate": 0.001})
    with pytest.raises(NotEncodable, match="different activations"):
        codec.encode(mixed)
    odd_lr = codec.decode([0] * len(codec.decisions)).with_genes(learning_rate=0.0123)
    with pytest.raises(NotEncodable, match="learning_rate"):
        codec.encode(odd_lr)
    conv = codec_for(get_space("lse-conv"), (1, 8, 8), 10)
    with pytest.raises(NotEncodable):
        conv.encode(mixed)


def test_wrong_length_and_non_integers_are_one_clear_error():
    codec = codec_for(get_space("mlp"), (64,), 10)
    with pytest.raises(InvalidGenome, match=f"takes {len(codec.decisions)} decisions"):
        codec.decode([0])
    with pytest.raises(InvalidGenome, match="must be an integer"):
        codec.decode([0.5] * len(codec.decisions))


@pytest.mark.parametrize("name", sorted(SPACES))
def test_every_registered_space_has_a_codec(name):
    space = get_space(name)
    for shape in SHAPES_BY_FAMILY[space.family]:
        codec = codec_for(space, shape, 10)
        assert isinstance(codec, Codec) and codec.decisions
        assert space.is_valid(codec.decode([1] * len(codec.decisions)))


@pytest.mark.parametrize("name", sorted(CODECS))
def test_every_registered_codec_round_trips(name):
    family = {"conv": "lse-conv"}.get(name, name)
    space = get_space(family) if family in SPACES else None
    if space is None:
        pytest.skip(f"codec {name} has no built-in space to exercise it on")
    codec = codec_for(space, SHAPES_BY_FAMILY[space.family][0], 10, name=name)
    genome = codec.decode([2] * len(codec.decisions))
    assert codec.decode(codec.encode(genome)) == genome
    assert codec.to_dict()["decisions"][0][0] == codec.decisions[0].name


def test_unknown_codec_and_bad_params_are_config_errors():
    space = get_space("mlp")
    with pytest.raises(ConfigError, match="no codec for search space"):
        codec_for(space.replace(name="mine", family="mine"), (64,), 10)
    with pytest.raises(ConfigError, match="codec 'mlp'"):
        codec_for(space, (64,), 10, max_depth=3)
    with pytest.raises(ConfigError, match="smallest genome does not fit"):
        codec_for(get_space("lse-conv", max_params=10), (1, 8, 8), 10)


def test_a_user_space_registers_its_own_codec():
    class WidthCodec(ConvCodec):
        name = "one-layer"

    @register_codec("my-space")
    def factory(space: SearchSpace, input_shape, num_classes, **params):
        return WidthCodec(space, input_shape, num_classes, max_depth=1, **params)

    try:
        space = get_space("lse-conv").replace(name="my-space")
        codec = codec_for(space, (1, 8, 8), 10)
        assert isinstance(codec, WidthCodec) and codec.decisions[0].choices == (1,)
        assert len(codec.decode([0] * len(codec.decisions)).nodes) == 3
    finally:
        del CODECS["my-space"]


def test_index_codec_decodes_to_wrapped_indices():
    codec = IndexCodec([3, Decision("flag", (False, True))])
    assert codec.decode([4, -1]) == (1, 1)
    assert codec.describe([2, 0]) == {"d0": 2, "flag": False}
    assert codec.deserialize(codec.serialize((2, 1))) == (2, 1)
