"""Inline SVG charts for the HTML report, written as plain strings (no plotting library, no
script needed to see them): the fitness of every evaluation over time with the best-so-far curve
and the best's line of descent — the progress plot of Real et al. 2017, *Large-Scale Evolution of
Image Classifiers*, Fig. 1 — and Pareto fronts for multi-objective runs. Every plotted evaluation
is one element of class ``pt`` carrying ``data-id``, which the report's script makes clickable.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from html import escape

import numpy as np

WIDTH, HEIGHT = 880, 340
LEFT, RIGHT, TOP, BOTTOM = 64, 18, 14, 58
BAD_BAND = 14  # pixels under the x axis where infeasible / failed evaluations are marked


@dataclass(frozen=True)
class Point:
    """One finished evaluation: its id, x value, fitness (None unless completed) and status."""

    id: int
    x: float
    fitness: float | None
    status: str


@dataclass(frozen=True)
class Axis:
    """A linear or log10 mapping of ``[lo, hi]`` onto ``[start, end]`` pixels."""

    lo: float
    hi: float
    start: float
    end: float
    log: bool = False

    def __call__(self, value: float) -> float:
        f = math.log10 if self.log else float
        lo, hi = f(self.lo), f(self.hi)
        t = (f(value) - lo) / (hi - lo) if hi > lo else 0.5
        return round(self.start + t * (self.end - self.start), 1)

    def ticks(self) -> list[float]:
        if self.log:
            first, last = math.floor(math.log10(self.lo)), math.ceil(math.log10(self.hi))
            return [10.0 ** k for k in range(first, last + 1) if self.lo <= 10.0 ** k <= self.hi]
        span = self.hi - self.lo
        if span <= 0:
            return [self.lo]
        raw = span / 5
        step = 10 ** math.floor(math.log10(raw))
        step *= next(m for m in (1, 2, 2.5, 5, 10) if step * m >= raw)
        first = math.ceil(self.lo / step) * step
        return [round(first + k * step, 12) for k in range(int((self.hi - first) / step) + 1)]


def padded(values: list[float], log: bool = False) -> tuple[float, float]:
    """A data range with a little room around it (never empty)."""
    lo, hi = min(values), max(values)
    if log:
        return lo / 1.3, hi * 1.3
    pad = (hi - lo) * 0.05 or abs(hi) * 0.05 or 0.5
    return lo - pad, hi + pad


def fmt(value: float) -> str:
    """A short tick label: 0.85, 1.2k, 3M, 1e+09."""
    if value == 0:
        return "0"
    if abs(value) >= 1e9 or abs(value) < 1e-3:
        return f"{value:.0e}"
    for size, suffix in ((1e6, "M"), (1e3, "k")):
        if abs(value) >= size:
            return f"{value / size:.3g}{suffix}"
    return f"{value:.4g}"


def _frame(x: Axis, y: Axis, xlabel: str, ylabel: str) -> list[str]:
    """Grid, ticks and axis titles."""
    out = []
    bottom = HEIGHT - BOTTOM
    for v in x.ticks():
        px = x(v)
        out.append(f'<line class="grid" x1="{px}" x2="{px}" y1="{TOP}" y2="{bottom}"/>'
                   f'<text class="tick" x="{px}" y="{bottom + BAD_BAND + 14}" '
                   f'text-anchor="middle">{fmt(v)}</text>')
    for v in y.ticks():
        py = y(v)
        out.append(f'<line class="grid" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{py}" y2="{py}"/>'
                   f'<text class="tick" x="{LEFT - 6}" y="{py + 4}" text-anchor="end">'
                   f"{fmt(v)}</text>")
    out.append(f'<line class="axis" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{bottom}" '
               f'y2="{bottom}"/><line class="axis" x1="{LEFT}" x2="{LEFT}" y1="{TOP}" '
               f'y2="{bottom}"/>')
    out.append(f'<text class="label" x="{(LEFT + WIDTH - RIGHT) / 2}" y="{HEIGHT - 8}" '
               f'text-anchor="middle">{escape(xlabel)}</text>')
    out.append(f'<text class="label" transform="translate(16 {(TOP + bottom) / 2}) '
               f'rotate(-90)" text-anchor="middle">{escape(ylabel)}</text>')
    return out


def _svg(body: list[str], label: str, cls: str) -> str:
    return (f'<svg class="chart {cls}" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
            f'aria-label="{escape(label)}">' + "".join(body) + "</svg>")


def _best_so_far(points: list[Point], x: Axis, y: Axis) -> str:
    """A step curve through each new record, in x order."""
    path, best = [], -math.inf
    for p in sorted(points, key=lambda p: (p.x, p.id)):
        if p.fitness is not None and p.fitness > best:
            best = p.fitness
            path.append(f"{'H' + str(x(p.x)) + 'V' if path else 'M' + str(x(p.x)) + ','}"
                        f"{y(best)}")
    if path:
        path.append(f"H{WIDTH - RIGHT}")
    return f'<path class="best-line" d="{"".join(path)}"/>'


def fitness_chart(points: list[Point], descent: list[int], xlabel: str) -> str:
    """Every finished evaluation as a point (completed: a dot at its fitness; infeasible or
    failed: a cross under the axis), the best-so-far curve and the best's line of descent."""
    done = [p for p in points if p.fitness is not None]
    xs = [p.x for p in points] or [0.0]
    x = Axis(*padded(xs), LEFT, WIDTH - RIGHT)
    y = Axis(*padded([p.fitness for p in done] or [0.0, 1.0]), HEIGHT - BOTTOM, TOP)
    body = _frame(x, y, xlabel, "fitness")
    body.append(_best_so_far(done, x, y))
    by_id = {p.id: p for p in done}
    line = [by_id[i] for i in descent if i in by_id]
    if line:
        coords = " ".join(f"{x(p.x)},{y(p.fitness)}" for p in line)
        body.append(f'<polyline class="descent" points="{coords}"/>')
    on_line = set(descent)
    band = HEIGHT - BOTTOM + BAD_BAND / 2 + 2
    for p in points:
        if p.fitness is None:
            px = x(p.x)
            body.append(f'<path class="pt bad {p.status}" data-id="{p.id}" '
                        f'd="M{px - 3},{band - 3}l6,6m0,-6l-6,6"/>')
        else:
            cls = "pt on-line" if p.id in on_line else "pt"
            body.append(f'<circle class="{cls}" data-id="{p.id}" cx="{x(p.x)}" '
                        f'cy="{y(p.fitness)}" r="{4 if p.id in on_line else 2.6}"/>')
    return _svg(body, "fitness of every evaluation over time", "fitness-chart")


def pareto_front(fitness: np.ndarray, costs: np.ndarray) -> np.ndarray:
    """Boolean mask of the non-dominated rows: fitness maximised, every cost column minimised
    (chunked pairwise comparison, fine for tens of thousands of rows)."""
    scores = np.column_stack([-fitness, costs])  # all minimised
    keep = np.ones(len(scores), dtype=bool)
    for start in range(0, len(scores), 512):
        block = scores[start:start + 512]
        le = (scores[None, :, :] <= block[:, None, :]).all(axis=2)
        lt = (scores[None, :, :] < block[:, None, :]).any(axis=2)
        keep[start:start + 512] = ~(le & lt).any(axis=1)
    return keep


def pareto_chart(ids: list[int], fitness: list[float], cost: list[float], front: set[int],
                 objective: str) -> str:
    """Fitness against one minimised objective; the non-dominated individuals joined."""
    positive = all(c > 0 for c in cost)
    log = positive and max(cost) / min(cost) > 100
    x = Axis(*padded(cost, log), LEFT, WIDTH - RIGHT, log)
    y = Axis(*padded(fitness), HEIGHT - BOTTOM, TOP)
    body = _frame(x, y, objective + (" (log scale)" if log else ""), "fitness")
    on = sorted((c, f, i) for i, f, c in zip(ids, fitness, cost) if i in front)
    if on:
        steps = " ".join(f"{x(c)},{y(f)}" for c, f, _ in on)
        body.append(f'<polyline class="front" points="{steps}"/>')
    for i, f, c in zip(ids, fitness, cost):
        cls = "pt front-pt" if i in front else "pt"
        body.append(f'<circle class="{cls}" data-id="{i}" cx="{x(c)}" cy="{y(f)}" '
                    f'r="{4 if i in front else 2.4}"/>')
    return _svg(body, f"Pareto front: fitness against {objective}", "pareto-chart")
