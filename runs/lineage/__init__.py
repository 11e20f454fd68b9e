"""Lineage: a run's births as a NetworkX graph (who descends from whom, by which mutation, with
which inherited tensors), diffs between two genomes, and the graph written as GraphML, DOT or
JSON."""

from .graph import ancestry, best_id, descendants, line_of_descent, lineage, mutation_stats, ranked

__all__ = ["ancestry", "best_id", "descendants", "line_of_descent", "lineage", "mutation_stats",
           "ranked"]
