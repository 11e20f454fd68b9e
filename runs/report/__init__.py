"""The run report: one self-contained HTML page (charts, the best genomes drawn, the line of
descent with diffs, mutation statistics) built from a run store, readable offline."""

from .page import build_report, render_report

__all__ = ["build_report", "render_report"]
