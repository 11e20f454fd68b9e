"""Bad input: hypothesis fuzzing of the genome, config, bundle and run-store loaders — only
success or evograph's own clear errors, never a crash, hang or over-budget allocation — and a
malicious pickle canary that no load path may ever fire."""

from __future__ import annotations

import json
import pickle
import time
from pathlib import Path

import pytest
from evograph.errors import EvographError
from evograph.genome import analyze, get_space, load, to_json
from evograph.runs.config import load_config
from evograph.runs.export.api import load_model
from evograph.runs.store import RunStore
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.reliability.harness import FIGURES, FULL

FUZZ = settings(max_examples=300 if FULL else 60, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture])
SEED_GENOME = json.loads(to_json(get_space("lse-conv").sample(
    __import__("numpy").random.default_rng(0), (1, 8, 8), 10)))
json_values = st.recursive(st.none() | st.booleans() | st.integers(-2**40, 2**40)
                           | st.floats(allow_nan=True) | st.text(max_size=8),
                           lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=6), inner, max_size=4),
                           max_leaves=12)


def _only_clear_errors(fn, *args):
    start = time.monotonic()
    try:
        fn(*args)
    except EvographError as exc:
        assert str(exc) and "\n" not in str(exc).strip()
    assert time.monotonic() - start < 2.0
    FIGURES["malformed inputs tried"] += 1


@FUZZ
@given(path=st.lists(st.sampled_from(["nodes", "links", "genes", 0, 1, 2, "params", "id", "op",
                                      "source", "target", "shape", "out_channels"]),
                     min_size=1, max_size=4), value=json_values)
def test_fuzzed_genomes_load_or_fail_clearly(tmp_path, path, value):
    data = json.loads(json.dumps(SEED_GENOME))
    node = data
    for key in path[:-1]:
        try:
            node = node[key]
        except (KeyError, IndexError, TypeError):
            break
    try:
        node[path[-1]] = value
    except (TypeError, IndexError):
        pass
    file = tmp_path / "g.json"
    file.write_text(json.dumps(data, allow_nan=True))

    def load_and_check(p):
        analyze(load(p), get_space("lse-conv"))
    _only_clear_errors(load_and_check, file)


@FUZZ
@given(text=st.text(max_size=300))
def test_fuzzed_genome_bytes(tmp_path, text):
    file = tmp_path / "g.json"
    file.write_text(text)
    _only_clear_errors(load, file)


CONFIG_KEYS = ["name", "seed", "out", "dataset.name", "dataset.limit", "budget.evaluations",
               "budget.minutes", "executor.name", "executor.workers", "strategy.name",
               "fitness.epochs", "space.max_params", "dataset.val_fraction", "unknown.key"]


@FUZZ
@given(key=st.sampled_from(CONFIG_KEYS), value=st.sampled_from(
    ["1", "-1", "0", "1e309", "'x'", "true", "[1, 2]", "{a = 1}", "nan", "''", "3.5"]))
def test_fuzzed_configs_fail_clearly(tmp_path, key, value):
    file = tmp_path / "c.toml"
    file.write_text("[budget]\nevaluations = 3\n")
    _only_clear_errors(load_config, file, [f"{key}={value}"])


@FUZZ
@given(junk=st.binary(max_size=2048))
def test_fuzzed_run_databases_fail_clearly(tmp_path, junk):
    run_dir = tmp_path / "run"
    run_dir.mkdir(exist_ok=True)
    (run_dir / "run.db").write_bytes(junk)
    _only_clear_errors(lambda d: RunStore.open(d, readonly=True).close(), run_dir)


@FUZZ
@given(junk=st.binary(max_size=512), which=st.sampled_from(["genome.json", "model.safetensors",
                                                           "manifest.json"]))
def test_fuzzed_bundles_fail_clearly(tmp_path, junk, which):
    bundle = tmp_path / "bundle"
    bundle.mkdir(exist_ok=True)
    for name in ("genome.json", "model.safetensors", "manifest.json"):
        (bundle / name).write_bytes(b"{}")
    (bundle / which).write_bytes(junk)
    _only_clear_errors(load_model, bundle)


class _Canary:
    def __init__(self, path: Path):
        self.path = path

    def __reduce__(self):
        return (Path.touch, (self.path,))


def test_no_load_path_unpickles(tmp_path):
    canary = tmp_path / "CANARY-FIRED"
    payload = pickle.dumps(_Canary(canary))
    run_dir = tmp_path / "run"
    (run_dir / "weights").mkdir(parents=True)
    targets = {"genome": tmp_path / "g.json", "config": tmp_path / "c.toml",
               "db": run_dir / "run.db", "bundle": tmp_path / "bundle"}
    targets["bundle"].mkdir()
    for path in (targets["genome"], targets["config"], targets["db"]):
        path.write_bytes(payload)
    for name in ("genome.json", "model.safetensors", "manifest.json"):
        (targets["bundle"] / name).write_bytes(payload)
    (run_dir / "weights" / "0.safetensors").write_bytes(payload)
    loaders = [(load, targets["genome"]), (load_config, targets["config"]),
               (lambda d: RunStore.open(d, readonly=True), run_dir),
               (load_model, targets["bundle"])]
    for loader, target in loaders:
        with pytest.raises(EvographError):
            loader(target)
    assert not canary.exists(), "a load path unpickled a file"
    FIGURES["pickle canaries planted"] += len(loaders)
