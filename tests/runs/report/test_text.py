"""The text report's lines: a best individual is told with the figures its fitness recorded."""

import pytest
from evograph.runs.report.text import best_line


@pytest.mark.parametrize("best, line", [
    ({"id": 7, "val_accuracy": 0.98, "test_accuracy": 0.97, "params": 12345, "fitness": 0.98},
     "#7: val 0.9800, test 0.9700, 12,345 params"),
    # a table of a user's own: validation accuracy alone (status used to crash on the params)
    ({"id": 3, "val_accuracy": 0.81, "test_accuracy": 0.8, "params": None, "fitness": 0.81},
     "#3: val 0.8100, test 0.8000"),
    ({"id": 2, "val_accuracy": None, "test_accuracy": None, "params": None, "fitness": -1.5},
     "#2: fitness -1.5000"),
])
def test_best_line_tells_only_what_was_measured(best, line):
    assert best_line(best) == line
