"""Contract of every registered search space (``evograph.genome.space.SPACES``).

A space's starting and random genomes honour the input shape and class count asked for, build
into a module whose forward pass has the right output shape, stay inside the space's size budgets
(also budgets tightened by overrides, or else one clear ``InvalidGenome``), and round-trip through
``genome.io.to_dict``/``from_dict`` unchanged — same content hash, same network. A space is stored
with every run (its data is part of the run fingerprint a resume checks), so its data must be
JSON and its fingerprint stable.

Parametrized over the live registry at collection time: a space registered later is tested by
being registered. Checked per space elsewhere and not repeated here: ``tests/genome/
test_space.py`` (samples and initial genomes on the default class count validate, compile, run
forward and backward, parameter counts match analysis; same seed same sample), ``test_io.py``
(samples round-trip through JSON and GraphML files), ``test_codec.py`` (every space has a codec),
``tests/operators/test_mutations.py`` (every space's mutation table is registered).
"""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch
from evograph.compile import build
from evograph.errors import InvalidGenome
from evograph.genome import analyze, get_space
from evograph.genome.io import from_dict, to_dict
from evograph.genome.space import CELL_STRUCTURE, SPACES

from tests.contracts import entries, shapes_for

NAMES = entries(SPACES)
CLASS_COUNTS = (2, 7)   # not the default 10, so a factory that ignores num_classes shows


def _genomes(space, shape, num_classes=10, seed=0, count=3):
    """``count`` starting genomes and ``count`` random ones of ``space`` on ``shape``."""
    rng = np.random.default_rng(seed)
    return ([space.initial_genome(rng, shape, num_classes) for _ in range(count)]
            + [space.sample(rng, shape, num_classes) for _ in range(count)])


@pytest.mark.parametrize("name", NAMES)
def test_genomes_honour_input_shape_and_class_count(name):
    space = get_space(name)
    x_gen = torch.Generator().manual_seed(0)
    for shape in shapes_for(space):
        for k in CLASS_COUNTS:
            for genome in _genomes(space, shape, k, count=2):
                assert tuple(genome.input_node.get("shape")) == shape
                assert genome.output_node.get("num_classes") == k
                module = build(genome, seed=0).eval()
                with torch.no_grad():
                    y = module(torch.randn(3, *shape, generator=x_gen))     # (N, *shape) -> (N, k)
                assert y.shape == (3, k) and torch.isfinite(y).all()


@pytest.mark.parametrize("name", NAMES)
def test_starting_genomes_are_a_function_of_the_rng_seed(name):
    space = get_space(name)
    for shape in shapes_for(space):
        first = [g.hash for g in _genomes(space, shape, seed=5)]
        assert first == [g.hash for g in _genomes(space, shape, seed=5)]


@pytest.mark.parametrize("name", NAMES)
def test_genomes_stay_within_the_space_budgets(name):
    space = get_space(name)
    for shape in shapes_for(space):
        for genome in _genomes(space, shape, count=4):
            info = analyze(genome, space)   # raises if outside the space
            if space.family != "cell":   # a cell's size is its blocks', not max_layers
                assert len(genome.nodes) - 2 <= space.max_layers
            assert info.params <= space.max_params and info.flops <= space.max_flops
            structure = CELL_STRUCTURE if space.family == "cell" else ()
            assert {n.op for n in genome.nodes} <= set(space.ops) | {"input", "output",
                                                                     *structure}


@pytest.mark.parametrize("name", NAMES)
def test_tightened_budgets_are_kept_or_refused_with_one_clear_error(name):
    """Budgets lowered by overrides (half-way through what the space draws by default):
    every genome the space still hands out fits them; where none fits, InvalidGenome names
    the space instead of an over-budget genome slipping through."""
    space = get_space(name)
    for shape in shapes_for(space):
        infos = [analyze(g) for g in _genomes(space, shape, count=4)]
        layers = space.max_layers if space.family == "cell" else 1  # a cell's size is fixed
        tight = get_space(name, max_layers=layers,
                          max_params=int(np.median([i.params for i in infos])),
                          max_flops=int(np.median([i.flops for i in infos])))
        rng, kept = np.random.default_rng(1), 0
        for draw in (tight.initial_genome, tight.sample) * 4:
            try:
                genome = draw(rng, shape, 10)
            except InvalidGenome as error:
                assert tight.name in str(error) and "\n" not in str(error)
                continue
            info = analyze(genome, tight)
            assert space.family == "cell" or len(genome.nodes) - 2 <= layers
            assert info.params <= tight.max_params and info.flops <= tight.max_flops
            kept += 1
        assert kept, f"space {name}: nothing drawn fits budgets its own genomes meet"
        impossible = get_space(name, max_params=0)
        for draw in (impossible.initial_genome, impossible.sample):
            with pytest.raises(InvalidGenome, match=re.escape(name)):
                draw(np.random.default_rng(0), shape, 10, attempts=5)


@pytest.mark.parametrize("name", NAMES)
def test_genomes_round_trip_through_genome_io_unchanged(name):
    space = get_space(name)
    x_gen = torch.Generator().manual_seed(0)
    for shape in shapes_for(space):
        genomes = _genomes(space, shape)
        for genome in genomes:
            data = to_dict(genome)
            back = from_dict(json.loads(json.dumps(data)))
            assert back == genome
            assert (back.hash, back.arch_hash) == (genome.hash, genome.arch_hash)
            assert to_dict(back) == data
        genome, back = genomes[-1], from_dict(json.loads(json.dumps(to_dict(genomes[-1]))))
        a, b = build(genome, seed=3).eval(), build(back, seed=3).eval()
        assert {k: v.shape for k, v in a.state_dict().items()} == \
            {k: v.shape for k, v in b.state_dict().items()}
        x = torch.randn(2, *shape, generator=x_gen)
        with torch.no_grad():
            assert torch.equal(a(x), b(x))


@pytest.mark.parametrize("name", NAMES)
def test_space_data_is_json_and_its_fingerprint_stable(name):
    """The run fingerprint hashes ``space.to_dict()``: two factory calls must agree, and a
    changed budget must show."""
    space, again = get_space(name), get_space(name)
    data = space.to_dict()
    assert json.loads(json.dumps(data)) == data == again.to_dict()
    assert data["name"] == name == space.name
    assert space.fingerprint() == again.fingerprint()
    assert space.replace(max_params=space.max_params + 1).fingerprint() != space.fingerprint()
