"""Serialization: JSON and GraphML round trips, and clear errors for every malformed file."""

import json
import pickle

import numpy as np
import pytest
import torch
from evograph.compile import build
from evograph.errors import GenomeFormatError
from evograph.genome import from_json, load, save, to_json
from evograph.genome.draw import draw, to_dot
from hypothesis import given

from tests.conftest import random_dags, sample_genomes


def _same_outputs(a, b, shape):
    x = torch.randn(3, *shape, generator=torch.Generator().manual_seed(0))
    ma, mb = build(a, seed=1).eval(), build(b, seed=1).eval()
    mb.load_state_dict(ma.state_dict())
    return torch.equal(ma(x), mb(x))


@given(genome=random_dags())
def test_json_and_graphml_round_trips_are_equal(genome, tmp_path_factory):
    folder = tmp_path_factory.mktemp("io")
    shape = genome.input_node.get("shape")
    for name in ("g.json", "g.graphml"):
        save(genome, folder / name)
        back = load(folder / name)
        assert back == genome and back.hash == genome.hash
        assert _same_outputs(genome, back, shape)


def test_every_space_sample_round_trips(space, tmp_path):
    for _, genome in sample_genomes(space, 3):
        assert from_json(to_json(genome)) == genome
        save(genome, tmp_path / "g.graphml")
        assert load(tmp_path / "g.graphml") == genome


def test_predecessor_order_does_not_come_from_file_order():
    genome = next(sample_genomes(__import__("evograph").get_space("lse-conv"), 1, seed=4))[1]
    data = json.loads(to_json(genome))
    data["links"].reverse()
    data["nodes"].reverse()
    assert from_json(json.dumps(data)).hash == genome.hash


@pytest.mark.parametrize("content, message", [
    (b"not json at all", "not valid JSON"),
    (b'{"format": "evograph-genome", "version": 99, "nodes": [], "links": []}',
     "unsupported schema version 99"),
    (b'{"format": "something-else"}', "not an evograph genome"),
    (b'{"format": "evograph-genome", "version": 1, "nodes": [{"op": "conv"}], "links": []}',
     "missing field 'id'"),
    (b'{"format": "evograph-genome", "version": 1, "nodes": [], "links": [{"source": true}]}',
     "malformed genome"),
    (b"[1, 2, 3]", "expected a JSON object"),
    (bytes([0xff, 0xfe, 0x00]), "binary file"),
    (b"<graphml><broken", "not valid GraphML"),
])
def test_malformed_files_get_one_clear_error(tmp_path, content, message):
    path = tmp_path / "bad.json"
    path.write_bytes(content)
    with pytest.raises(GenomeFormatError, match=message) as error:
        load(path)
    assert str(path) in str(error.value)


def test_pickle_is_refused_and_never_loaded(tmp_path):
    path = tmp_path / "evil.json"

    class Boom:
        def __reduce__(self):
            return (exec, ("raise SystemExit('unpickled!')",))

    path.write_bytes(pickle.dumps(Boom()))
    with pytest.raises(GenomeFormatError, match="pickle"):
        load(path)


def test_missing_file_is_a_format_error(tmp_path):
    with pytest.raises(GenomeFormatError, match="cannot read file"):
        load(tmp_path / "nope.json")


def test_drawing_is_svg(tmp_path):
    genome = next(sample_genomes(__import__("evograph").get_space("lse-conv"), 1))[1]
    assert "->" in to_dot(genome)
    path = draw(genome, tmp_path / "g.svg")
    assert path.read_text().lstrip().startswith(("<?xml", "<svg"))
    assert np.isfinite(len(path.read_text()))
