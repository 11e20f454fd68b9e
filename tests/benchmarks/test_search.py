"""The search benchmark (benchmarks/search.py) on a table of a cell space, given its path, space
and key on the command line: a synthetic nb201 table over {none, skip_connect, nor_conv_3x3}
whose value rises with every convolution (an oracle: the all-conv cell is the one best).
No timing is asserted."""

import csv
import importlib
import itertools
from pathlib import Path

import numpy as np
import pytest
from evograph.genome.cells.nb201 import arch_string, nb201_genome

ROOT = Path(__file__).resolve().parents[2]
OPS = ("none", "skip_connect", "nor_conv_3x3")
BEST = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|" \
       "nor_conv_3x3~2|"


@pytest.fixture
def search(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    return importlib.import_module("search")


@pytest.fixture
def table(tmp_path) -> Path:
    path = tmp_path / "cells.csv"
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, ["key", "seed", "val_accuracy", "test_accuracy"])
        writer.writeheader()
        for ops in itertools.product(OPS, repeat=6):
            key = arch_string(nb201_genome(list(ops), (1, 40), 10))
            value = 0.4 + 0.08 * ops.count("nor_conv_3x3") + 0.01 * ops.count("skip_connect")
            for seed in (0, 1):
                writer.writerow({"key": key, "seed": seed, "val_accuracy": value + 0.002 * seed,
                                 "test_accuracy": value - 0.01})
    return path


def cell_args(search, table: Path, tmp_path: Path, *extra: str):
    config = tmp_path / "cells.toml"
    text = (ROOT / "runs/configs/digits-table.toml").read_text()
    config.write_text(text.replace('name = "mlp-table"', 'name = "nb201"\nops = '
                                   '["none", "skip_connect", "nor_conv_3x3"]')
                      .replace('name = "digits"', 'name = "mnist1d"')
                      .replace('key = "mlp-chain"', 'key = "nb201"'))
    return search.parse_args(["--table", str(table), "--space", "nb201", "--space-set",
                              "ops=none,skip_connect,nor_conv_3x3", "--key", "nb201",
                              "--shape", "1,40", "--config", str(config), *extra])


def test_every_search_runs_on_a_cell_table_named_on_the_command_line(search, table, tmp_path):
    args = cell_args(search, table, tmp_path)
    spec, path = args.spec, str(table)
    p = search.problem(path, "seed", spec)
    assert len(p["keys"]) == 3 ** 6 and p["keys"][int(np.argmax(p["true"]))] == BEST
    brute = search.run_brute_force(3, path, "seed", spec)
    assert sorted(brute["arch"]) == list(range(3 ** 6))  # every cell once
    for name in ("aging", "rl", "random"):
        trace = search.run_strategy(name, 0, 300, path, "seed", spec=spec)
        assert trace["infeasible"] == 0 and (trace["arch"] >= 0).all()  # every proposal in the table
    aging = search.run_strategy("aging", 0, 300, path, "seed", spec=spec)
    assert p["keys"][aging["arch"][int(np.argmax(aging["true"]))]] == BEST
    tpe = search.run_tpe(0, 40, path, "seed", spec)  # over the codec's six edge decisions
    assert tpe["infeasible"] == 0 and len(set(tpe["arch"].tolist())) > 20


def test_the_direct_loop_is_the_real_run_on_a_cell_table(search, table, tmp_path):
    args = cell_args(search, table, tmp_path, "--verify-evaluations", "30")
    assert search.verify_real_run(args)["identical"]


@pytest.mark.parametrize("argv, message", [
    (["--space-set", "ops"], "--space-set 'ops': expected KEY=VALUE"),
    (["--space", "nosuch"], "--space/--space-set/--shape: unknown search space 'nosuch'"),
    (["--shape", "1,x"], "--space/--space-set/--shape: invalid literal for int()"),
    (["--searches", "aging,annealing"], "--searches: unknown annealing"),
])
def test_bad_command_lines_get_one_line(search, capsys, argv, message):
    with pytest.raises(SystemExit) as exit_info:
        search.parse_args(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err.strip().splitlines()[-1]


def test_a_table_definition_beside_the_file_stands_in_for_the_flags(search, table, tmp_path):
    """What the table builders write beside a table (space, its parameters, key, input shape,
    run config) is what the command line leaves out; a flag still wins."""
    import json
    spec = cell_args(search, table, tmp_path).spec
    (tmp_path / "cells.json").write_text(json.dumps({
        "space_name": "nb201", "space_overrides": {"ops": list(OPS)}, "key_function": "nb201",
        "dataset": {"input_shape": [1, 40], "classes": 10}, "config": spec.config}))
    assert search.parse_args(["--table", str(table)]).spec == spec
    assert search.parse_args(["--table", str(table), "--shape", "1,8,8"]).spec.shape == (1, 8, 8)
    assert search.parse_args([]).spec == search.Spec()   # the shipped digits table
