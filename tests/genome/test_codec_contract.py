"""Contract of every registered genome codec (``evograph.genome.codec.CODECS``), on every
registered space it serves and every input shape of that space's family.

``decode`` is a pure, total function (Zoph & Le 2017's controller emits any decision sequence):
random decisions, and indices out of range (they wrap), decode to valid genomes of the space with
the asked input shape and class count. Where the codec offers ``encode``, it inverts ``decode``
and, on a genome not of the codec's form, raises ``NotEncodable`` rather than misdescribing it.
The RL strategy stores decoded genomes through ``serialize`` and checks ``to_dict`` on resume, so
both must survive JSON and the layout must not change between two builds of the codec.

A codec serves the spaces ``codec_for`` picks it for: the space registered under its name, else
every space of the family it is named after that has no codec of its own. Parametrized over the
live registries at collection time. ``tests/genome/test_codec.py`` covers hand-picked budgets and
shapes with hypothesis and one round trip per codec; this file is the per-registry-entry sweep.
"""

from __future__ import annotations

import json

import networkx as nx
import numpy as np
import pytest
from evograph.genome import analyze, get_space
from evograph.genome.codec import CODECS, Codec, NotEncodable, codec_for
from evograph.genome.space import SPACES

from tests.contracts import entries, shapes_for

DRAWS = 20


def served_spaces(codec_name: str) -> list[str]:
    """The registered spaces ``codec_for`` gives this codec by default."""
    return [s for s in entries(SPACES) if s == codec_name
            or (s not in CODECS and get_space(s).family == codec_name)]


PAIRS = [(c, s) for c in entries(CODECS) for s in served_spaces(c)]
IDS = [f"{c}@{s}" for c, s in PAIRS]


def codecs(codec_name, space_name):
    """``(space, shape, codec)`` for each input shape the space's family works on."""
    space = get_space(space_name)
    for shape in shapes_for(space):
        yield space, shape, codec_for(space, shape, 10, name=codec_name)


def offers_encoding(codec: Codec) -> bool:
    return type(codec).encode is not Codec.encode


@pytest.mark.parametrize("codec_name", entries(CODECS))
def test_every_codec_serves_a_registered_space(codec_name):
    assert served_spaces(codec_name), (
        f"codec {codec_name!r} is registered under neither a registered space's name nor a "
        "family of one, so no run can pick it and no contract exercises it")


@pytest.mark.parametrize("codec_name, space_name", PAIRS, ids=IDS)
def test_random_decisions_decode_to_valid_genomes_of_the_space(codec_name, space_name):
    for space, shape, codec in codecs(codec_name, space_name):
        rng = np.random.default_rng(0)
        for _ in range(DRAWS):
            indices = codec.random(rng)
            assert codec.check(indices) == indices            # random draws are in range
            genome = codec.decode(indices)
            info = analyze(genome, space)                      # raises if outside the space
            assert info.params <= space.max_params and info.flops <= space.max_flops
            assert tuple(genome.input_node.get("shape")) == shape
            assert genome.output_node.get("num_classes") == 10
            assert codec.decode(list(indices)) == genome        # pure
            wrapped = [i + d.size * int(rng.integers(-3, 4))
                       for i, d in zip(indices, codec.decisions)]
            assert codec.decode(wrapped) == genome              # total: indices wrap


@pytest.mark.parametrize("codec_name, space_name", PAIRS, ids=IDS)
def test_encode_inverts_decode_where_the_codec_encodes(codec_name, space_name):
    for _, _, codec in codecs(codec_name, space_name):
        rng = np.random.default_rng(1)
        for _ in range(DRAWS):
            genome = codec.decode(codec.random(rng))
            if not offers_encoding(codec):
                with pytest.raises(NotEncodable):
                    codec.encode(genome)
                continue
            indices = codec.encode(genome)
            assert codec.check(indices) == tuple(indices)       # canonical, in range
            assert codec.decode(indices) == genome
            assert codec.encode(codec.decode(indices)) == tuple(indices)


@pytest.mark.parametrize("codec_name, space_name", PAIRS, ids=IDS)
def test_encode_refuses_or_describes_genomes_of_other_forms_faithfully(codec_name, space_name):
    """The space's own starting and random genomes need not have the codec's form: encode
    either raises NotEncodable or gives decisions that decode to the same network (up to node
    ids, which codecs may renumber)."""
    for space, shape, codec in codecs(codec_name, space_name):
        if not offers_encoding(codec):
            continue
        rng = np.random.default_rng(2)
        for draw in (space.initial_genome, space.sample) * 6:
            genome = draw(rng, shape, 10)
            try:
                indices = codec.encode(genome)
            except NotEncodable:
                continue
            back = codec.decode(indices)
            assert back.gene == genome.gene
            assert nx.is_isomorphic(back.graph, genome.graph, node_match=dict.__eq__), \
                f"encode misdescribed {genome.hash}: it decodes to {back.hash}"


@pytest.mark.parametrize("codec_name, space_name", PAIRS, ids=IDS)
def test_decoded_genomes_and_the_layout_survive_json(codec_name, space_name):
    for space, shape, codec in codecs(codec_name, space_name):
        layout = codec.to_dict()
        assert json.loads(json.dumps(layout)) == layout
        assert codec_for(space, shape, 10, name=codec_name).to_dict() == layout
        assert [d[0] for d in layout["decisions"]] == [d.name for d in codec.decisions]
        rng = np.random.default_rng(3)
        for _ in range(5):
            genome = codec.decode(codec.random(rng))
            stored = json.loads(json.dumps(codec.serialize(genome)))
            assert codec.deserialize(stored) == genome
