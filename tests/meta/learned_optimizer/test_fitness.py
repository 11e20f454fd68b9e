"""The ``learned-optimizer`` fitness generator and ``evograph meta train-optimizer``, end to end
through the real run driver and the real CLI."""

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from evograph.compile.builder import build
from evograph.compile.training.fitness import make_fitness
from evograph.data.datasets import load_dataset
from evograph.errors import ConfigError
from evograph.genome.space import get_space
from evograph.meta.learned_optimizer.lstm import (
    LSTMOptimizer,
    cached_optimizer,
    load_optimizer,
    save_optimizer,
)
from evograph.meta.learned_optimizer.tasks import make_family
from evograph.meta.learned_optimizer.train import make_meta_optimizer, meta_train, save_checkpoint
from evograph.runs.cli.main import main
from evograph.runs.cli.meta import checkpoint_path, load_train_config
from evograph.runs.config import load_config
from evograph.runs.driver import create_run, run
from evograph.runs.store import RunStore

ROOT = Path(__file__).resolve().parents[3]
TINY_RUN = ["budget.evaluations=6", "dataset.limit=300", "fitness.steps=10",
            "strategy.population_size=4", "strategy.sample_size=2", "budget.minutes=0",
            "space.unit_choices=[16,32]"]
TINY_TRAIN = """seed = 3
device = "cpu"
[task]
family = "quadratic"
batch = 8
[training]
steps = 10
unroll = 5
meta_lr = 0.01
meta_iterations = 4
checkpoint_every = 2
"""


@pytest.fixture
def optimizer_file(tmp_path):
    return save_optimizer(LSTMOptimizer(seed=0), tmp_path / "opt.safetensors")


def test_fitness_trains_a_genome_with_the_learned_optimizer(optimizer_file):
    data = load_dataset("digits", seed=0, limit=300)
    genome = get_space("mlp", unit_choices=(16,)).sample(
        __import__("numpy").random.default_rng(0), data.input_shape, data.num_classes)
    module = build(genome, seed=1)
    before = [p.detach().clone() for p in module.parameters()]
    fitness = make_fitness("learned-optimizer", {"path": str(optimizer_file), "steps": 5})
    score = fitness.score(module, genome, data, seed=1, device=torch.device("cpu"))
    assert score.status == "completed" and score.fitness == score.metrics["val_accuracy"]
    assert score.metrics["optimizer"] == "learned" and len(score.metrics["loss_curve"]) == 5
    assert any(not torch.equal(a, b) for a, b in zip(before, module.parameters()))


def test_fitness_names_a_missing_or_bad_file(tmp_path):
    with pytest.raises(ValueError, match="path: .*not found.*evograph meta train-optimizer"):
        make_fitness("learned-optimizer", {"path": str(tmp_path / "nope.safetensors")})
    with pytest.raises(ValueError, match="path: required"):
        make_fitness("learned-optimizer", {})
    (tmp_path / "junk.safetensors").write_bytes(b"not a tensor file")
    with pytest.raises(ValueError, match="not a safetensors file"):
        make_fitness("learned-optimizer", {"path": str(tmp_path / "junk.safetensors")})


def test_run_config_without_a_trained_optimizer_is_one_clear_error(tmp_path):
    config = load_config(ROOT / "runs/configs/digits-learned-optimizer.toml",
                         [f"fitness.path={tmp_path / 'missing.safetensors'}"])
    with pytest.raises(ConfigError, match="lo.toml: fitness.path: .*not found"):
        create_run(config, tmp_path / "run", source="lo.toml")


def _tiny_run(tmp_path, optimizer_file, extra=()):
    config = load_config(ROOT / "runs/configs/digits-learned-optimizer.toml",
                         TINY_RUN + [f"fitness.path={optimizer_file}"] + list(extra))
    run_dir = create_run(config, tmp_path / "run")
    assert run(run_dir, live=False).finished
    with RunStore.open(run_dir, readonly=True) as store:
        return store.individuals(), store.evaluations()


def test_tiny_evolution_run_with_the_learned_optimizer(tmp_path, optimizer_file):
    _, evaluations = _tiny_run(tmp_path, optimizer_file, ["executor.name=serial"])
    completed = [e for e in evaluations if e.status == "completed"]
    assert len(evaluations) == 6 and completed
    assert all(e.metrics["optimizer"] == "learned" and e.fitness == e.metrics["val_accuracy"]
               for e in completed)


@pytest.mark.slow
def test_evolution_can_choose_the_learned_optimizer_gene(tmp_path, optimizer_file):
    """use_gene: each genome trains with its own gene; ``learned`` loads the file in spawned
    worker processes too."""
    _, evaluations = _tiny_run(
        tmp_path, optimizer_file,
        ["executor.name=local", "executor.workers=2", "fitness.use_gene=true",
         'space.optimizers=["learned","adam"]', "budget.evaluations=8"])
    used = {e.metrics["optimizer"] for e in evaluations if e.status == "completed"}
    assert used <= {"learned", "adam"} and "learned" in used
    assert all(e.status == "completed" for e in evaluations)


# -- the CLI -------------------------------------------------------------------------------------
def test_shipped_meta_training_config_parses():
    config = load_train_config(ROOT / "runs/configs/learned-optimizer.toml")
    assert config.optimizer.hidden == 20 and config.training.unroll == 20
    assert config.training.steps == 100


def test_train_optimizer_cli_writes_a_loadable_optimizer(tmp_path, capsys):
    (tmp_path / "tiny.toml").write_text(TINY_TRAIN)
    out = tmp_path / "o" / "opt.safetensors"
    assert main(["meta", "train-optimizer", str(tmp_path / "tiny.toml"), "-o", str(out),
                 "--no-live"]) == 0
    _, info = load_optimizer(out)
    assert len(info["history"]) == 4 and info["config"]["task"]["family"] == "quadratic"
    assert not checkpoint_path(out).exists()          # removed once the output is written
    assert "learned optimizer written to" in capsys.readouterr().out


def test_train_optimizer_resumes_exactly(tmp_path):
    cfg_path = tmp_path / "tiny.toml"
    cfg_path.write_text(TINY_TRAIN)
    straight = tmp_path / "a.safetensors"
    assert main(["meta", "train-optimizer", str(cfg_path), "-o", str(straight), "--no-live"]) == 0
    # an interrupted training: the checkpoint the CLI writes after 2 of 4 trajectories
    config = load_train_config(cfg_path)
    net = LSTMOptimizer(config.optimizer, seed=config.seed)
    meta_opt = make_meta_optimizer(net, config.meta_config())
    family = make_family(config.family, config.family_params)
    resumed = tmp_path / "b.safetensors"

    def interrupt(iteration, history):
        if iteration + 1 == 2:
            save_checkpoint(checkpoint_path(resumed), net, meta_opt, 2, history,
                            {"config": config.to_dict()})
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        meta_train(net, family, config.meta_config(), meta_opt=meta_opt, callback=interrupt)
    assert main(["meta", "train-optimizer", str(cfg_path), "-o", str(resumed)]) == 2  # no --resume
    assert main(["meta", "train-optimizer", str(cfg_path), "-o", str(resumed), "--resume",
                 "--set", "training.meta_lr=0.02"]) == 2                             # other config
    assert main(["meta", "train-optimizer", str(cfg_path), "-o", str(resumed), "--resume",
                 "--no-live"]) == 0
    (a, info_a), (b, info_b) = load_optimizer(straight), load_optimizer(resumed)
    assert info_a["history"] == info_b["history"]
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(),
                                                 b.state_dict().values()))


@pytest.mark.slow
def test_ctrl_c_checkpoints_and_resume_finishes_the_same_training(tmp_path):
    """The real CLI in a subprocess: SIGINT stops after the current trajectory with a checkpoint
    (exit 130); ``--resume`` finishes with exactly the weights of an uninterrupted training."""
    cfg = tmp_path / "tiny.toml"
    cfg.write_text(TINY_TRAIN.replace("meta_iterations = 4", "meta_iterations = 200")
                   .replace("checkpoint_every = 2", "checkpoint_every = 100"))
    out = tmp_path / "opt.safetensors"
    command = [sys.executable, "-m", "evograph.runs.cli.main", "meta", "train-optimizer", str(cfg),
               "-o", str(out), "--no-live"]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while "trajectories" not in (line := proc.stderr.readline()) or "/200" not in line:
        assert time.monotonic() < deadline and line, "no progress line"
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130 and "--resume" in err and not out.exists()
    assert subprocess.run(command + ["--resume"], capture_output=True, check=False).returncode == 0
    straight = tmp_path / "straight.safetensors"
    assert main(["meta", "train-optimizer", str(cfg), "-o", str(straight), "--no-live"]) == 0
    (a, info_a), (b, info_b) = load_optimizer(out), load_optimizer(straight)
    assert info_a["history"] == info_b["history"] and len(info_a["history"]) == 200
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(),
                                                 b.state_dict().values()))


@pytest.mark.parametrize("text, message", [
    ("[training]\nbogus = 1\n", "tiny.toml: training.bogus: unknown key"),
    ("[training]\nmeta_lr = 'fast'\n", "tiny.toml: training.meta_lr: must be float"),
    ("[task]\nfamily = 'cubic'\n", "tiny.toml: task.family: unknown task family 'cubic'"),
    ("[task]\nfamily = 'quadratic'\ndim = 3\n", "tiny.toml: task.dim: unknown parameter"),
    ("[optimizer]\nhidden = 0\n", "tiny.toml: optimizer.hidden/layers: must be positive"),
    ("colour = 1\n", "tiny.toml: colour: unknown key"),
    ("[training]\nunroll = 0\n", "tiny.toml: training.steps/unroll/meta_iterations"),
    ("[training\n", "tiny.toml: not valid TOML"),
    (b"\x89PNG\r\n\x1a\n\xff\xfe", "tiny.toml: not a text file"),
])
def test_config_mistakes_are_one_line_naming_key_and_file(tmp_path, capsys, text, message):
    if isinstance(text, bytes):
        (tmp_path / "tiny.toml").write_bytes(text)
    else:
        (tmp_path / "tiny.toml").write_text(text)
    assert main(["meta", "train-optimizer", str(tmp_path / "tiny.toml"), "-o",
                 str(tmp_path / "x.safetensors")]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


def test_each_generator_trains_with_its_own_file(tmp_path):
    """The file is passed to the optimizer, never set process-wide: two generators made in one
    process (two runs, a test after a test) each keep theirs."""
    files = [save_optimizer(LSTMOptimizer(seed=s), tmp_path / f"o{s}.safetensors") for s in (0, 1)]
    first, second = (make_fitness("learned-optimizer", {"path": str(f), "steps": 2}) for f in files)
    genes = {"optimizer": "learned", "learning_rate": 0.01}
    for fitness, path in ((first, files[0]), (second, files[1]), (first, files[0])):
        opt = fitness.optimizer_for(genes, [torch.nn.Parameter(torch.zeros(2))])
        assert opt.net is cached_optimizer(path)
