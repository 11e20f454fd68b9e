"""Prints the reliability figures (kills survived, faults injected, inputs tried, rows lost,
final-state mismatches) at the end of the session."""

from tests.reliability.harness import FIGURES


def pytest_terminal_summary(terminalreporter):
    if not FIGURES:
        return
    terminalreporter.section("reliability figures")
    for key in sorted(FIGURES):
        terminalreporter.write_line(f"{key:>32}: {FIGURES[key]}")
