"""The live view of a run: evaluations done / budget, throughput, best validation accuracy and
failures — a rich panel on a terminal, one log line per evaluation otherwise (CI, pipes)."""

from __future__ import annotations

import sys
import time
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.table import Table


class Progress:
    def __init__(self, store: Any, budget: int, live: bool | None = None):
        self.store, self.budget = store, budget
        self.console = Console(stderr=True)
        self.live_mode = sys.stderr.isatty() if live is None else live
        self.started = time.monotonic()
        self.done_at_start = self._done()
        self._live: Live | None = None

    def _done(self) -> int:
        counts = self.store.counts_by_status()
        return counts["completed"] + counts["infeasible"] + counts["failed"]

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
        counts = self.store.counts_by_status()
        done = counts["completed"] + counts["infeasible"] + counts["failed"]
        elapsed = time.monotonic() - self.started
        rate = (done - self.done_at_start) / elapsed * 60 if elapsed > 0 else 0.0
        best = self.store.best(1)
        return {"done": done, "counts": counts, "rate": rate, "elapsed": elapsed,
                "best": best[0] if best else None}

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
