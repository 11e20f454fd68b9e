"""The live view of a run: evaluations done / budget, throughput, best validation accuracy,
failures, the run's elapsed wall time (across resumes), its time budget and an ETA — a rich
panel on a terminal, one log line per evaluation otherwise (CI, pipes). Until this session's
first result it says what is starting (``starting 2 worker(s) · 6 s``) instead of a frozen
``0 / 5000``; the panel redraws itself twice a second, so the clocks tick meanwhile.

The figures are read from the store once, when the view starts (a resumed run goes on from
its counts and its best), and then kept up to date from each result the driver records: asking
the store after every result would mean two scans of the whole evaluations table per result, a
cost growing with the run (figures: docs/performance.md)."""

from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.live import Live
from rich.table import Table

from .store import FINISHED

if TYPE_CHECKING:
    from typing_extensions import Self


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
    """The view of one driver session. ``minutes``: the run's time budget (0: none);
    ``elapsed_before``: the run's wall time in earlier sessions (see :mod:`.state`)."""

    def __init__(self, store: Any, budget: int, live: bool | None = None,
                 minutes: float = 0.0, elapsed_before: float = 0.0):
        self.store, self.budget = store, budget
        self.minutes, self.elapsed_before = minutes, elapsed_before
        self.console = Console(stderr=True)
        self.live_mode = sys.stderr.isatty() if live is None else live
        self.started = time.monotonic()
        stored = store.counts_by_status()
        self.counts = {status: stored[status] for status in FINISHED}
        self.done_at_start = sum(self.counts.values())
        top = store.best(1)
        self.best = Best(top[0].id, top[0].fitness, _val_loss(top[0].metrics)) if top else None
        self.starting: str | None = None   # what is starting, until the first result
        self._live: Live | None = None

    def record(self, id: int, status: str, fitness: float | None,
               metrics: dict[str, Any]) -> None:
        """Count a result the store has just recorded (the store's rule: only a completed
        evaluation with a finite fitness can be the best)."""
        self.starting = None
        self.counts[status] += 1
        if status == "completed" and isinstance(fitness, (int, float)) \
                and math.isfinite(fitness):
            candidate = Best(id, float(fitness), _val_loss(metrics))
            if self.best is None or candidate.rank() > self.best.rank():
                self.best = candidate

    def phase(self, text: str | None) -> None:
        """Say what is starting (shown until the first result arrives)."""
        self.starting = text
        if text and not self.live_mode:
            print(f"[{self.elapsed_before + self._elapsed():6.0f}s] {text}…", file=sys.stderr,
                  flush=True)

    def __enter__(self) -> Self:
        self.started = time.monotonic()
        if self.live_mode:
            self._live = Live(self, console=self.console, refresh_per_second=2,
                              transient=False)
            self._live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._live is not None:
            self.starting = None
            self._live.refresh()
            self._live.__exit__(*exc)

    def __rich__(self) -> Table:
        """The panel, drawn afresh at each refresh (clocks tick while nothing arrives)."""
        return self._table()

    def _elapsed(self) -> float:
        return time.monotonic() - self.started

    def _figures(self) -> dict[str, Any]:
        done = sum(self.counts.values())
        session = self._elapsed()
        rate = (done - self.done_at_start) / session * 60 if session > 0 else 0.0
        total = self.elapsed_before + session
        return {"done": done, "counts": dict(self.counts), "rate": rate, "elapsed": total,
                "session": session, "best": self.best, "eta": self._eta(done, rate, total)}

    def _eta(self, done: int, rate: float, elapsed: float) -> tuple[float, str] | None:
        """Seconds to the end and which budget ends it first: the evaluation budget at the
        rate so far, or the time budget; None while neither can be told."""
        ends = []
        if rate > 0:
            ends.append((max(0.0, self.budget - done) / rate * 60, "evaluations"))
        if self.minutes:
            ends.append((max(0.0, self.minutes * 60 - elapsed), "time budget"))
        return min(ends) if ends else None

    def _table(self) -> Table:
        f = self._figures()
        table = Table(title=f"evograph · {self.store.run_dir}", show_header=False)
        if self.starting:
            table.add_row("starting", f"{self.starting}… {f['session']:.0f} s")
        table.add_row("evaluations", f"{f['done']} / {self.budget}")
        table.add_row("throughput", f"{f['rate']:.1f} evaluations/min")
        best = f["best"]
        table.add_row("best fitness (val)",
                      f"{best.fitness:.4f} (individual {best.id})" if best else "—")
        table.add_row("failed / infeasible",
                      f"{f['counts']['failed']} / {f['counts']['infeasible']}")
        table.add_row("elapsed", clock(f["elapsed"]) + (
            f" (this session {clock(f['session'])})" if self.elapsed_before else ""))
        left = max(0.0, self.minutes * 60 - f["elapsed"])
        table.add_row("time budget",
                      f"{self.minutes:g} min ({clock(left)} left)" if self.minutes else "none")
        table.add_row("ETA", eta_text(f["eta"]))
        return table

    def update(self) -> None:
        if self._live is not None:
            self._live.refresh()
            return
        f = self._figures()
        best = f["best"]
        best_text = f"{best.fitness:.4f} (#{best.id})" if best else "-"
        print(f"[{f['elapsed']:6.0f}s] {f['done']}/{self.budget} evaluations, "
              f"{f['rate']:.1f}/min, best fitness {best_text}, "
              f"failed {f['counts']['failed']}, infeasible {f['counts']['infeasible']}, "
              f"ETA {eta_text(f['eta'])}", file=sys.stderr, flush=True)


def clock(seconds: float) -> str:
    """``4.2 s``, ``42 s``, ``3 min 20 s``, ``2 h 05 min``."""
    if seconds < 10:
        return f"{seconds:.1f} s"
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


def eta_text(eta: tuple[float, str] | None) -> str:
    return "—" if eta is None else f"{clock(eta[0])} ({eta[1]})"
