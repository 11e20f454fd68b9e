"""`evograph genome sample | check | draw` through the real console script."""

import json
import subprocess
import sys

import pytest
from evograph.runs.cli.main import main


def test_sample_check_draw_cycle(tmp_path, capsys):
    assert main(["genome", "sample", "--space", "lse-conv", "--seed", "3"]) == 0
    path = tmp_path / "g.json"
    path.write_text(capsys.readouterr().out)
    assert main(["genome", "check", str(path), "--space", "lse-conv"]) == 0
    line = capsys.readouterr().out.strip()
    assert "valid genome" in line and "params" in line and "FLOPs" in line
    assert main(["genome", "draw", str(path), "-o", str(tmp_path / "g.svg")]) == 0
    assert (tmp_path / "g.svg").read_text().count("<g id=\"node") >= 2


@pytest.mark.parametrize("content", ["{not json", json.dumps({"format": "evograph-genome",
                                                              "version": 2})])
def test_check_exits_2_with_one_line(tmp_path, content):
    path = tmp_path / "bad.json"
    path.write_text(content)
    result = subprocess.run([sys.executable, "-m", "evograph.runs.cli.main", "genome", "check",
                             str(path)], capture_output=True, text=True, check=False)
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and str(path) in lines[0]
