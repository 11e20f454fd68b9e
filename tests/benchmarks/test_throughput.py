"""The throughput benchmark's quick run end to end: its report holds every figure the README
quotes, and the comparisons it rests on (the same candidates with 1 and N workers) hold. No
timing is asserted: figures are for the benchmark, not for tests."""

import importlib
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def load_benchmark(monkeypatch):
    """The script as a module importable by name (its spawned roof processes import it)."""
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    return importlib.import_module("throughput")


@pytest.mark.slow
def test_quick_throughput_report_is_complete_and_consistent(tmp_path, monkeypatch):
    out = tmp_path / "throughput.json"
    report = load_benchmark(monkeypatch).main(["--quick", "--workers", "2", "--out", str(out)])
    assert json.loads(out.read_text())["benchmark"] == "throughput"
    # both roofs measured; their order is a timing and depends on the load (not asserted)
    assert report["roof"]["all_cores"] > 0 and report["roof"]["one_core_alone"] > 0
    assert [s["space"] for s in report["spaces"]] == ["lse-conv", "mlp"]
    for section in report["spaces"]:
        assert section["same_candidates_1_vs_n_workers"] is True
        ways = [w["way"] for w in section["ways"]]
        assert ways == ["plain per-model loop", "engine, 1 worker", "engine, 2 workers",
                        "engine, 2 workers, batched auto"]
        for way in section["ways"]:
            assert way["evaluations"] == 16 and way["flops"] > 0 and way["gflops"] > 0
        assert section["ways"][1]["scaling_vs_1_worker"] == 1.0
        assert 0 < section["evaluation_s"] and "overhead_fraction" in section
    assert [o["pipeline"] for o in report["longer_evaluations"]] == [0, 1]
    assert len(report["population"]) == 2
    for row in report["population"]:
        assert row["direct_gflops"] > 0 and isinstance(row["targets_met"], bool)


def test_sections_and_device_are_checked_and_name_the_output(monkeypatch, capsys):
    throughput = load_benchmark(monkeypatch)
    args = throughput.parse_args(["--quick", "--sections", "population, spaces"])
    assert args.sections == ["population", "spaces"]
    assert args.out.name == "throughput-quick.json"
    with pytest.raises(SystemExit):
        throughput.parse_args(["--sections", "spaces,roofs"])
    assert "--sections: unknown roofs (known: spaces, overhead, population)" in \
        capsys.readouterr().err
    if not __import__("torch").cuda.is_available():
        with pytest.raises(SystemExit):
            throughput.parse_args(["--device", "cuda"])
        assert "--device cuda: torch finds no CUDA device" in capsys.readouterr().err
    else:
        assert throughput.parse_args(["--device", "cuda"]).out.name == "throughput-cuda.json"


@pytest.mark.slow
def test_quick_population_section_alone(tmp_path, monkeypatch):
    """--sections population: the report has the population rows and nothing of the runs."""
    report = load_benchmark(monkeypatch).main(["--quick", "--workers", "1", "--sections",
                                               "population", "--out", str(tmp_path / "p.json")])
    assert report["spaces"] == [] and report["longer_evaluations"] == []
    assert len(report["population"]) == 2
    for row in report["population"]:  # the roof is measured in every round beside the ways
        assert len(row["roof_per_round_gflops"]) == row["repeats"]
        assert row["roof_gflops"] == sorted(row["roof_per_round_gflops"])[row["repeats"] // 2]
        assert row["direct_roof_fraction"] == pytest.approx(
            row["direct_gflops"] / row["roof_gflops"])
        assert row["start_roof_gflops"] == report["roof"]["one_core_alone"]


def test_engine_overhead_pairs_each_engine_run_with_the_plain_loop_run_after_it(monkeypatch):
    """Per repeat: (engine's time outside training - the plain loop's, run right after it) per
    candidate; the median over repeats is the figure, each repeat's value beside it."""
    throughput = load_benchmark(monkeypatch)

    def run(steady: float, train: float, build: float = 0.0, evaluate: float = 0.0) -> dict:
        return {"steady_s": steady, "train_s": train, "build_s": build, "eval_s": evaluate,
                "evaluations": 10}

    ones = [run(12.0, 10.0), run(13.0, 10.5), run(11.0, 9.5)]     # 2.0, 2.5, 1.5 s outside
    plains = [run(11.5, 10.0), run(11.0, 9.0), run(12.0, 10.8)]   # 1.5, 2.0, 1.2 s outside
    got = throughput.engine_overhead(ones, plains)
    assert got["overhead_per_repeat_s"] == pytest.approx([0.05, 0.05, 0.03])
    assert got["overhead_per_candidate_s"] == pytest.approx(0.05)
    assert got["evaluation_s"] == pytest.approx(1.15)              # median plain candidate
    assert got["overhead_fraction"] == pytest.approx(0.05 / 1.15)
    assert got["wall_difference_per_candidate_s"] == pytest.approx(0.05)  # 0.05, 0.2, -0.1
    with pytest.raises(ValueError):
        throughput.engine_overhead(ones, plains[:2])              # every run needs its pair
    # within each run: what is left beside building, training and evaluating, engine - plain
    ones = [run(12.0, 10.0, 0.5, 1.2), run(13.0, 10.5, 0.6, 1.7)]   # 0.3, 0.2 s left
    plains = [run(11.5, 10.0, 0.4, 1.05), run(11.0, 9.0, 0.5, 1.49)]  # 0.05, 0.01 s left
    got = throughput.engine_overhead(ones, plains)
    assert got["engine_own_time_per_repeat_s"] == pytest.approx([0.025, 0.019])
    assert got["engine_own_time_per_candidate_s"] == pytest.approx(0.022)
    assert got["engine_own_time_fraction"] == pytest.approx(0.022 / 1.125)  # median plain
