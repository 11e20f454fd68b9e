"""Config files: strict parsing, one clear line naming the key and the file, overrides;
every strategy on every shipped config."""

import logging
import subprocess
import sys
from pathlib import Path

import pytest
from evograph.compile.training.fitness import FITNESS, example
from evograph.errors import ConfigError
from evograph.runs.config import load_config
from evograph.runs.setup import resolve
from evograph.runs.store import RunStore
from evograph.selection import STRATEGIES, strategy_params

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


@pytest.mark.parametrize("strategy", sorted(STRATEGIES))
@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_every_strategy_resolves_on_every_shipped_config(path, strategy, tmp_path, caplog):
    """``--set strategy.name=X`` (the README's and the configs' own suggestion) works for every
    registered strategy: what X does not take is dropped with one notice, the rest is kept."""
    overrides = [f"strategy.name={strategy}"]
    fitness = load_config(path).fitness.name
    if fitness in NEEDS_A_TRAINED_FILE:  # the generator's own smallest file stands in
        made = example(FITNESS[fitness], tmp_path)["params"]["path"]
        overrides.append(f"fitness.path={made}")
    written = load_config(path, overrides).strategy.params
    with caplog.at_level(logging.WARNING, logger="evograph.config"):
        parts = resolve(load_config(path, overrides), path.name)
    assert parts.proposer.name == strategy
    takes = set(strategy_params(strategy)) | {"objectives"}
    kept = parts.config.strategy.params
    assert set(kept) <= takes and kept == {k: v for k, v in written.items() if k in takes}
    notes = [r.getMessage() for r in caplog.records if r.name == "evograph.config"]
    assert len(notes) == (1 if set(written) - takes else 0)
    for key in set(written) - takes:
        assert f"does not take {key} = " in notes[0] and "\n" not in notes[0]


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
    ("[space]\nmax_layers = '5'\n", [], "x.toml: space.max_layers: must be int, got str '5'"),
    ("[space]\nlearning_rate = 0.1\n", [],
     "x.toml: space.learning_rate: must be a list [float, float], got float 0.1"),
    ("[space]\noptimizers = 'adam'\n", [],
     "x.toml: space.optimizers: must be a list of str, got str 'adam'"),
    ("[space]\nchannels = 16\n", [], "x.toml: space.channels: must be a list [int, int], got int"),
    ("[space]\nchannels = [16]\n", [], "x.toml: space.channels: must be a list [int, int]"),
    ("[space]\nchannels = [16, 4]\n", [], "x.toml: space.channels: must be [lo, hi] with 1 <="),
    ("[space]\nchannels = [4, 8.5]\n", [], "x.toml: space.channels[1]: must be int, got float"),
    ("[space]\nlearning_rate = [0, 0.1]\n", [], "x.toml: space.learning_rate: must be [lo, hi]"),
    ("[space]\nstrides = [0, 1]\n", [], "x.toml: space.strides: every entry must be at least 1"),
    ("[space]\nkernel_sizes = []\n", [], "x.toml: space.kernel_sizes: must not be empty"),
    ("[space]\nmax_params = 0\n", [], "x.toml: space.max_params: must be at least 1"),
    ("[space]\nactivations = ['relu', 'swish']\n", [], "space.activations: 'swish' is not one of"),
    ("[space]\nops = ['conv', 'pool']\n", [], "x.toml: space.ops: 'pool' is not one of"),
    ("[space]\nmutation_weights = [['identity', -1]]\n", [], "space.mutation_weights: weights"),
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
    ("strategy", "[strategy]\nname = 'aging'\nsample_size = '5'\n",
     "y.toml: strategy.sample_size: must be int, got str '5'"),
    ("strategy", "[strategy]\nname = 'aging'\naging = 1\n",
     "y.toml: strategy.aging: must be true or false, got int 1"),
    ("strategy", "[strategy]\nname = 'aging'\nsample_sise = 3\n",
     ("y.toml: strategy.sample_sise: unknown key (known for aging: population_size, sample_size, "
      "aging, objectives)")),
    ("fitness", "[fitness]\nname = 'sgd'\nepochz = 3\n",
     "fitness.epochz: unknown parameter (known for sgd: epochs, steps, eval_batch_size"),
    ("fitness", "[fitness]\nname = 'sgd'\nepochs = '4'\n",
     "y.toml: fitness.epochs: must be float, got str '4'"),
    ("fitness", "[fitness]\nname = 'maml'\nfirst_order = 'no'\n",
     "y.toml: fitness.first_order: must be true or false, got str 'no'"),
    ("fitness", "[fitness]\nname = 'guess'\n", "unknown fitness generator 'guess'"),
    ("space", "[space]\nname = 'lse-conv'\nmax_paramz = 3\n",
     "y.toml: space.max_paramz: unknown key (known: family, ops, channels,"),
    ("space", "[space]\noptimizers = ['adma']\n",
     "y.toml: space.optimizers: no optimizer is registered as 'adma' (known: sgd,"),
    ("space", "[space]\nmutation_weights = [['grow', 1.0]]\n",
     "y.toml: space.mutation_weights: no mutation is registered as 'grow'"),
    ("space", "[space]\nname = 'nas-bench-9000'\n", "unknown search space 'nas-bench-9000'"),
    ("dataset", "[dataset]\nname = 'imagenet'\n", "imagenet"),
])
def test_bad_parts_are_reported_with_the_file(tmp_path, section, text, message):
    path = tmp_path / "y.toml"
    path.write_text(text + "[budget]\nevaluations = 3\n")
    with pytest.raises(Exception) as error:
        resolve(load_config(path), path.name)
    assert message in str(error.value) and "\n" not in str(error.value)
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
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert lines[0].startswith("evograph: error: typo.toml: fitnes: unknown key (known: name, "
                               "seed, out, dataset, space, strategy, fitness, budget, executor")
    assert len(lines) == 1


def run_cli(tmp_path, text, *sets):
    """``evograph run`` on a tiny config holding ``text``, with ``--set`` ``sets``."""
    path = tmp_path / "tiny.toml"
    path.write_text(f"out = '{tmp_path / 'out'}'\n{text}\n[dataset]\nlimit = 200\n"
                    "[budget]\nevaluations = 3\n[executor]\nname = 'serial'\n")
    command = [sys.executable, "-m", "evograph.runs.cli.main", "run", str(path),
               "--out", str(tmp_path / "run"), "--no-live"]
    for value in sets:
        command += ["--set", value]
    return subprocess.run(command, check=False, capture_output=True, text=True, timeout=300)


def assert_refused_leaving_nothing(tmp_path, result, message):
    """Exit 2, one stderr line naming the file and key, and no run directory anywhere."""
    assert result.returncode == 2, result.stderr
    assert result.stderr.splitlines() == [f"evograph: error: tiny.toml: {message}"]
    assert not (tmp_path / "run").exists() and not (tmp_path / "out").exists()


@pytest.mark.parametrize("text, message", [
    ("[space]\nmax_layers = '5'", "space.max_layers: must be int, got str '5'"),
    ("[space]\nlearning_rate = 0.1",
     "space.learning_rate: must be a list [float, float], got float 0.1"),
    ("[space]\noptimizers = 'adam'", "space.optimizers: must be a list of str, got str 'adam'"),
    ("[space]\nchannels = 16", "space.channels: must be a list [int, int], got int 16"),
    ("[fitness]\nepochs = '4'", "fitness.epochs: must be float, got str '4'"),
    ("[strategy]\nname = 'aging'\nsample_size = 30",
     "strategy 'aging': sample_size=30 must be between 1 and population_size"),
])
def test_cli_refuses_a_mistyped_section_in_one_line_creating_nothing(tmp_path, text, message):
    assert_refused_leaving_nothing(tmp_path, run_cli(tmp_path, text), message)


def test_cli_switches_strategy_dropping_what_it_does_not_take(tmp_path):
    """The README's ``--set strategy.name=tournament`` on an aging table: one notice, a run,
    and the stored config holds only what tournament took."""
    result = run_cli(tmp_path, "[strategy]\nname = 'aging'\npopulation_size = 4\n"
                     "sample_size = 2", "strategy.name=tournament")
    assert result.returncode == 0, result.stderr
    notes = [line for line in result.stderr.splitlines() if "note:" in line]
    assert notes == [("evograph: note: tiny.toml: strategy 'tournament' does not take "
                      "sample_size = 2 (set for another strategy): dropped")]
    with RunStore.open(tmp_path / "run", readonly=True) as store:
        assert store.config["strategy"] == {"name": "tournament", "population_size": 4}


@pytest.mark.parametrize("executor, pipeline, ahead", [("serial", None, 0), ("local", None, 1),
                                                       ("dask", None, 1), ("local", "0", 0),
                                                       ("serial", "2", 2), ("dask", "auto", 1)])
def test_pipeline_auto_asks_ahead_only_where_workers_would_wait(tmp_path, executor, pipeline,
                                                                ahead):
    path = tmp_path / "x.toml"
    path.write_text(f"[executor]\nname = '{executor}'\n")
    config = load_config(path, [f"executor.pipeline={pipeline}"] if pipeline else [])
    assert config.executor.batches_ahead == ahead
