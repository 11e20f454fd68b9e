"""Exporting a run's final-selection pick (:mod:`evograph.runs.final`): which of its retrained
weights files ships, and the figures that describe it.

A run with a final selection answers "which network?" with the pick: the candidate whose mean
validation fitness over ``seeds`` retrainings from its genes is best, not the search's luckiest
single score. ``export --best`` therefore ships the pick's genome with ONE of its retrained
weights files: the **representative** seed, whose validation score is closest to the pick's
mean (ties: the first seed). Taking the best seed instead would bring back, over seeds, the very
luck the final selection averages away; the representative seed's own figures are what the
reported mean says to expect. The manifest records the choice, the mean ± std over the seeds
(validation and, where the fitness reports it, test accuracy) and every seed's values.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ...compile.builder import GenomeModule, build
from ...errors import ExportError
from ...genome.core import Genome
from ..final_pick import FinalPick, final_pick
from ..store import RunStore
from ..store_rows import FinalRow
from .bundle import load_state, read_safetensors

CHOSEN_BY = "the seed whose validation score is closest to the pick's mean (ties: the first)"
TIE = 1e-12   # distances to the mean this close count as equal (2 seeds: always a tie)


@dataclass(frozen=True)
class FinalChoice:
    """The pick and the retraining whose weights ship (``exported``, None when no retraining
    of the pick kept a weights file: a fitness that writes none, like a table lookup)."""

    pick: FinalPick
    rows: tuple[FinalRow, ...]      # the pick's completed retrainings, in seed order
    exported: FinalRow | None

    @property
    def id(self) -> int:
        return self.pick.id

    @property
    def by(self) -> str:
        return f"final selection ({self.pick.seeds} seeds, retrained from genes)"

    def words(self) -> str:
        """``final selection: 0.9700 ± 0.0100 over 3 seeds of 5 candidates``."""
        p = self.pick
        return (f"final selection: {p.mean:.4f} ± {p.std:.4f} over {p.n} seeds of "
                f"{p.candidates} candidates")

    def seed_words(self, row: FinalRow) -> str:
        return f"seed {row.seed_index + 1} of {self.pick.seeds}"


def final_choice(store: RunStore) -> FinalChoice | None:
    """The final selection's pick and its representative retraining; None in a run without
    a finished final selection (then ``--best`` is the search's best, as always)."""
    pick = final_pick(store)
    if pick is None:
        return None
    rows = tuple(sorted((r for r in store.final_rows() if r.candidate == pick.id
                         and r.status == "completed" and r.fitness is not None),
                        key=lambda r: r.seed_index))
    return FinalChoice(pick, rows, representative(rows, pick.mean))


def representative(rows: tuple[FinalRow, ...], mean: float) -> FinalRow | None:
    """The retraining (of those that kept a weights file) whose validation fitness is closest
    to ``mean``; the first in ``rows`` among equally close ones; None when none kept one."""
    kept = [r for r in rows if r.weights]
    nearest = min((abs(r.fitness - mean) for r in kept), default=0.0)
    return next((r for r in kept if abs(r.fitness - mean) <= nearest + TIE), None)


def final_module(store: RunStore, choice: FinalChoice, genome: Genome) -> GenomeModule:
    """The pick's genome holding the chosen retraining's weights, exactly as the file has them."""
    row = choice.exported
    if row is None:
        raise ExportError(
            f"the final-selection pick #{choice.id} of run {store.run_dir} kept no retrained "
            "weights file; export the search's best with its evolved weights (--best "
            f"--evolved), or retrain the pick: --train EPOCHS --from-scratch")
    path = store.run_dir / row.weights
    if not path.is_file():
        raise ExportError(f"the final-selection pick's retrained weights {path} are missing; "
                          "export --best --evolved, or --train EPOCHS --from-scratch")
    module = build(genome, seed=row.seed)
    load_state(module, read_safetensors(path), path)
    return module


def per_seed(choice: FinalChoice) -> list[dict[str, Any]]:
    """Every retraining of the pick: its seed, validation fitness, test accuracy (if reported),
    weights file, and whether it is the one exported."""
    return [{"seed_index": r.seed_index, "seed": r.seed, "val": r.fitness,
             "test_accuracy": _number(r.metrics.get("test_accuracy")), "weights": r.weights,
             "exported": r is choice.exported} for r in choice.rows]


def final_record(choice: FinalChoice) -> dict[str, Any]:
    """The manifest's ``final``: the pick's figures, the exported retraining and why it."""
    p, row = choice.pick, choice.exported
    return {"pick": p.id, "mean": p.mean, "std": p.std, "n": p.n, "seeds": p.seeds,
            "candidates": p.candidates, "test_mean": p.score.test_mean,
            "test_std": p.score.test_std, "by": choice.by, "text": choice.words(),
            "exported_seed_index": None if row is None else row.seed_index,
            "exported_weights": None if row is None else row.weights, "chosen_by": CHOSEN_BY,
            "per_seed": per_seed(choice)}


def final_figures(choice: FinalChoice, search_metrics: dict[str, Any], fitness: str,
                  ours: bool, keys: tuple[str, ...]) -> dict[str, dict[str, Any]]:
    """The final selection's figures (mean ± std over the seeds, each seed's value), the
    exported retraining's own (``of_exported_weights`` when ``ours``: shipped as trained) and
    the search's single evaluation of the pick (``search_*``, never of these weights)."""
    p, seeds = choice.pick, per_seed(choice)
    out: dict[str, dict[str, Any]] = {"final_selection": {
        "value": p.mean, "std": p.std, "n": p.n, "seeds": p.seeds, "candidates": p.candidates,
        "values": [s["val"] for s in seeds], "text": choice.words(), "by": choice.by,
        "of_exported_weights": False}}
    if p.score.test_mean is not None:
        out["final_test_accuracy"] = {
            "value": p.score.test_mean, "std": p.score.test_std, "n": p.n,
            "values": [s["test_accuracy"] for s in seeds],
            "text": f"test {p.score.test_mean:.4f} ± {p.score.test_std:.4f} over {p.n} seeds",
            "by": choice.by, "of_exported_weights": False}
    if choice.exported is not None:
        by = f"{fitness}, final selection retraining {choice.seed_words(choice.exported)}"
        out.update({key: {"value": choice.exported.metrics[key], "by": by,
                          "of_exported_weights": ours}
                    for key in keys if _number(choice.exported.metrics.get(key)) is not None})
    out.update({f"search_{key}": {"value": search_metrics[key],
                                  "by": f"{fitness} (the search's single evaluation)",
                                  "of_exported_weights": False}
                for key in keys if _number(search_metrics.get(key)) is not None})
    return out


def pick_line(final: dict[str, Any]) -> str:
    """The command line's words for an exported pick (from the manifest's ``final``):
    ``the final-selection pick #12, val 0.9700 ± 0.0100 over 3 seeds of 5 candidates``."""
    return (f"the final-selection pick #{final['pick']}, val {final['mean']:.4f} ± "
            f"{final['std']:.4f} over {final['n']} seeds of {final['candidates']} candidates")


def seeds_line(final: dict[str, Any]) -> str:
    """Each retraining's validation score, the exported one marked."""
    parts = [f"seed {s['seed_index'] + 1} val {s['val']:.4f}"
             + (" (exported: closest to the mean)" if s["exported"] else "")
             for s in final["per_seed"]]
    return "  retrained from its genes: " + "; ".join(parts)


def _number(value: Any) -> float | None:
    return value if isinstance(value, (int, float)) else None
