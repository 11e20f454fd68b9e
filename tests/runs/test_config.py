"""Config files: strict parsing, one clear line naming the key and the file, overrides."""

import subprocess
import sys
from pathlib import Path

import pytest
from evograph.errors import ConfigError
from evograph.runs.config import load_config
from evograph.runs.setup import resolve

META_TRAINING_CONFIGS = {"learned-optimizer.toml"}  # `evograph meta train-optimizer` configs
NEEDS_A_TRAINED_FILE = {"learned-optimizer"}           # fitness generators needing a prior step
CONFIGS = sorted(p for p in (Path(__file__).resolve().parents[2] / "runs" / "configs").glob("*.toml")
                 if p.name not in META_TRAINING_CONFIGS)


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_shipped_configs_load_and_resolve(path):
    config = load_config(path, ["dataset.limit=300"] if "digits" in path.name else [])
    if config.dataset.name in ("digits", "mnist1d") and \
            config.fitness.name not in NEEDS_A_TRAINED_FILE:
        parts = resolve(config, path.name)
        assert parts.data.num_classes == 10


@pytest.mark.parametrize("text, override, message", [
    ("[budget]\nevaluatons = 5\n", [], "x.toml: budget.evaluatons: unknown key"),
    ("[budget]\nevaluations = 'many'\n", [], "x.toml: budget.evaluations: must be int"),
    ("[budget]\nevaluations = 0\n", [], "x.toml: budget.evaluations: must be in [1"),
    ("seeed = 3\n", [], "x.toml: seeed: unknown key"),
    ("[dataset]\nval_fraction = 1.5\n", [], "x.toml: dataset.val_fraction: must be in (0.0"),
    ("[executor]\nname = 'cloud'\n", [], "x.toml: executor.name: must be serial, local or dask"),
    ("[executor]\npipeline = 'fast'\n", [], "x.toml: executor.pipeline: must be auto or an int"),
    ("[executor]\npipeline = true\n", [], "x.toml: executor.pipeline: must be auto or an int"),
    ("[executor]\npipeline = 1.5\n", [], "x.toml: executor.pipeline: must be int or str"),
    ("[executor]\npipeline = 65\n", [], "x.toml: executor.pipeline: must be in [0, 64]"),
    ("name = 'x'\n", ["budget.evaluations=-1"], "x.toml: budget.evaluations"),
    ("[budget\n", [], "x.toml: not valid TOML"),
    ("budget = 3\n", [], "x.toml: budget: must be a table"),
])
def test_bad_config_is_one_line_naming_key_and_file(tmp_path, text, override, message):
    path = tmp_path / "x.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as error:
        load_config(path, override)
    assert message in str(error.value) and "\n" not in str(error.value)


@pytest.mark.parametrize("section, text, message", [
    ("strategy", "[strategy]\nname = 'aging'\nsample_size = 0\n", "sample_size"),
    ("strategy", "[strategy]\nname = 'evolve-harder'\n", "evolve-harder"),
    ("fitness", "[fitness]\nname = 'sgd'\nepochz = 3\n", "fitness.epochz: unknown parameter"),
    ("fitness", "[fitness]\nname = 'guess'\n", "unknown fitness generator 'guess'"),
    ("space", "[space]\nname = 'lse-conv'\nmax_paramz = 3\n", "space: max_paramz: unknown key"),
    ("space", "[space]\nname = 'nas-bench-9000'\n", "unknown search space 'nas-bench-9000'"),
    ("dataset", "[dataset]\nname = 'imagenet'\n", "imagenet"),
])
def test_bad_parts_are_reported_with_the_file(tmp_path, section, text, message):
    path = tmp_path / "y.toml"
    path.write_text(text + "[budget]\nevaluations = 3\n")
    with pytest.raises(Exception) as error:
        resolve(load_config(path), path.name)
    assert message in str(error.value)
    assert type(error.value).__module__.startswith("evograph")


def test_overrides_parse_toml_values_and_bare_strings(tmp_path):
    path = tmp_path / "z.toml"
    path.write_text("[strategy]\nname = 'aging'\n")
    config = load_config(path, ["strategy.name=tournament", "budget.minutes=1.5",
                                "strategy.population_size=8", "executor.workers=1"])
    assert config.strategy.name == "tournament" and config.budget.minutes == 1.5
    assert config.strategy.params == {"population_size": 8}


def test_cli_prints_one_line_for_a_config_typo(tmp_path):
    path = tmp_path / "typo.toml"
    path.write_text("[fitnes]\nname = 'sgd'\n")
    result = subprocess.run([sys.executable, "-m", "evograph.runs.cli.main", "run", str(path)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert lines == ["evograph: error: typo.toml: fitnes: unknown key (known: name, seed, out, "
                     "dataset, space, strategy, fitness, budget, executor)"]


@pytest.mark.parametrize("executor, pipeline, ahead", [("serial", None, 0), ("local", None, 1),
                                                       ("dask", None, 1), ("local", "0", 0),
                                                       ("serial", "2", 2), ("dask", "auto", 1)])
def test_pipeline_auto_asks_ahead_only_where_workers_would_wait(tmp_path, executor, pipeline,
                                                                ahead):
    path = tmp_path / "x.toml"
    path.write_text(f"[executor]\nname = '{executor}'\n")
    config = load_config(path, [f"executor.pipeline={pipeline}"] if pipeline else [])
    assert config.executor.batches_ahead == ahead
