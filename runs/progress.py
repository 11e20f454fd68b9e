"""The live view of a run: evaluations done / budget, throughput, best validation accuracy and
failures — a rich panel on a terminal, one log line per evaluation otherwise (CI, pipes).

The figures are read from the store once, when the view starts (a resumed run goes on from
its counts and its best), and then kept up to date from each result the driver records: asking
the store after every result would mean two scans of the whole evaluations table per result, a
cost growing with the run (figures: docs/performance.md)."""

from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.table import Table

from .store import FINISHED


@dataclass(frozen=True)
class Best:
    """The best evaluation so far, ranked as :meth:`RunStore.best` ranks: higher fitness, then
    a validation loss before none, then the lower loss, then the lower id."""

    id: int
    fitness: float
    val_loss: float | None = None

    def rank(self) -> tuple:
        known = self.val_loss is not None
        return (self.fitness, known, -self.val_loss if known else 0.0, -self.id)


def _val_loss(metrics: dict[str, Any]) -> float | None:
    value = metrics.get("val_loss")
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None


class Progress:
    def __init__(self, store: Any, budget: int, live: bool | None = None):
        self.store, self.budget = store, budget
        self.console = Console(stderr=True)
        self.live_mode = sys.stderr.isatty() if live is None else live
        self.started = time.monotonic()
        stored = store.counts_by_status()
        self.counts = {status: stored[status] for status in FINISHED}
        self.done_at_start = sum(self.counts.values())
        top = store.best(1)
        self.best = Best(top[0].id, top[0].fitness, _val_loss(top[0].metrics)) if top else None
        self._live: Live | None = None

    def record(self, id: int, status: str, fitness: float | None,
               metrics: dict[str, Any]) -> None:
        """Count a result the store has just recorded (the store's rule: only a completed
        evaluation with a finite fitness can be the best)."""
        self.counts[status] += 1
        if status == "completed" and isinstance(fitness, (int, float)) \
                and math.isfinite(fitness):
            candidate = Best(id, float(fitness), _val_loss(metrics))
            if self.best is None or candidate.rank() > self.best.rank():
                self.best = candidate

    def __enter__(self) -> "Progress":
        if self.live_mode:
            self._live = Live(self._table(), console=self.console, refresh_per_second=2,
                              transient=False)
            self._live.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._live is not None:
            self._live.update(self._table())
            self._live.__exit__(*exc)

    def _figures(self) -> dict[str, Any]:
        done = sum(self.counts.values())
        elapsed = time.monotonic() - self.started
        rate = (done - self.done_at_start) / elapsed * 60 if elapsed > 0 else 0.0
        return {"done": done, "counts": dict(self.counts), "rate": rate, "elapsed": elapsed,
                "best": self.best}

    def _table(self) -> Table:
        f = self._figures()
        table = Table(title=f"evograph · {self.store.run_dir}", show_header=False)
        table.add_row("evaluations", f"{f['done']} / {self.budget}")
        table.add_row("throughput", f"{f['rate']:.1f} evaluations/min")
        best = f["best"]
        table.add_row("best fitness (val)",
                      f"{best.fitness:.4f} (individual {best.id})" if best else "—")
        table.add_row("failed / infeasible",
                      f"{f['counts']['failed']} / {f['counts']['infeasible']}")
        table.add_row("elapsed", f"{f['elapsed']:.0f} s")
        return table

    def update(self) -> None:
        if self._live is not None:
            self._live.update(self._table())
            return
        f = self._figures()
        best = f["best"]
        best_text = f"{best.fitness:.4f} (#{best.id})" if best else "-"
        print(f"[{f['elapsed']:6.0f}s] {f['done']}/{self.budget} evaluations, "
              f"{f['rate']:.1f}/min, best fitness {best_text}, "
              f"failed {f['counts']['failed']}, infeasible {f['counts']['infeasible']}",
              file=sys.stderr, flush=True)
