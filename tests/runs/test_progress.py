"""The live view keeps its figures from the results it is told, equal to what the store says."""

from __future__ import annotations

import io

import pytest
from evograph.runs.progress import Progress
from evograph.runs.store import RunStore
from rich.console import Console

from tests.runs.test_store import CONFIG, proposal

RESULTS = [  # id, status, fitness, metrics: ties on fitness broken by val_loss, then id
    (0, "completed", 0.5, {"val_loss": 0.9}),
    (1, "failed", None, {}),
    (2, "completed", 0.7, {"val_loss": 0.8}),
    (3, "infeasible", float("nan"), {"reason": "non-finite training loss"}),
    (4, "completed", 0.7, {"val_loss": 0.6}),        # same fitness, lower loss: the best
    (5, "completed", 0.7, {}),                       # no loss ranks after one with a loss
    (6, "completed", float("inf"), {"val_loss": 0.1}),  # not finite: never stored, never best
    (7, "completed", 0.7, {"val_loss": 0.6}),        # a full tie: the lower id stays best
    (8, "failed", 0.99, {}),                         # a failed run's fitness does not count
]


def store_figures(store: RunStore) -> tuple:
    counts = store.counts_by_status()
    best = store.best(1)
    return ({status: counts[status] for status in ("completed", "infeasible", "failed")},
            (best[0].id, best[0].fitness) if best else None)


def view_figures(progress: Progress) -> tuple:
    best = progress.best
    return progress.counts, (best.id, best.fitness) if best else None


def test_progress_follows_the_results_recorded_and_agrees_with_the_store(tmp_path, capsys):
    with RunStore.create(tmp_path / "run", CONFIG, "fp-1", run_id="progress") as store:
        store.add_batch(0, [proposal(i) for i in range(len(RESULTS))], {})
        store.mark_running(range(len(RESULTS)))
        progress = Progress(store, budget=len(RESULTS), live=False)
        assert view_figures(progress) == store_figures(store) == (
            {"completed": 0, "infeasible": 0, "failed": 0}, None)
        for id, status, fitness, metrics in RESULTS:
            store.record_result(id, status, fitness, metrics)
            progress.record(id, status, fitness, metrics)
            progress.update()
            assert view_figures(progress) == store_figures(store), f"after result {id}"
        assert progress.best.id == 4
        lines = capsys.readouterr().err.strip().splitlines()
        assert lines[-1].split("]", 1)[1].startswith(
            " 9/9 evaluations") and "best fitness 0.7000 (#4), failed 2, infeasible 1" in lines[-1]
        resumed = Progress(store, budget=20, live=False)  # a resumed run starts from the store
        assert view_figures(resumed) == store_figures(store)
        assert resumed.done_at_start == 9


@pytest.mark.parametrize("live", [True, False])
def test_progress_shows_a_run_with_no_result_yet(tmp_path, capsys, live):
    with RunStore.create(tmp_path / "run", CONFIG, "fp-1", run_id="empty") as store, \
            Progress(store, budget=3, live=live) as progress:
        progress.update()
    shown = capsys.readouterr().err
    if live:  # the panel, drawn on the (captured) terminal
        assert "0 / 3" in shown and "—" in shown
    else:
        assert "0/3 evaluations" in shown and "best fitness -" in shown


def test_progress_says_what_is_starting_until_the_first_result(tmp_path, capsys):
    with RunStore.create(tmp_path / "run", CONFIG, "fp-1", run_id="start") as store, \
            Progress(store, budget=5000, live=True) as progress:
        progress.phase("starting 2 worker(s)")
        shown = progress.__rich__()  # what the live panel draws
        store.add_batch(0, [proposal(0)], {})
        store.mark_running([0])
        store.record_result(0, "completed", 0.5, {})
        progress.record(0, "completed", 0.5, {})
        after = progress.__rich__()
    console = Console(width=120, record=True, file=io.StringIO())
    console.print(shown)
    before_text = console.export_text()
    console.print(after)
    after_text = console.export_text()
    assert "starting 2 worker(s)…" in before_text and "0 / 5000" in before_text
    assert "starting" not in after_text and "1 / 5000" in after_text
    assert "time budget" in after_text and "none" in after_text


def test_progress_log_lines_give_the_start_up_the_elapsed_time_and_an_eta(tmp_path, capsys):
    with RunStore.create(tmp_path / "run", CONFIG, "fp-1", run_id="eta") as store:
        store.add_batch(0, [proposal(i) for i in range(5)], {})
        store.mark_running(range(5))
        progress = Progress(store, budget=10, live=False, elapsed_before=100.0)
        progress.phase("starting 2 worker(s)")
        assert "] starting 2 worker(s)…" in capsys.readouterr().err
        progress.started -= 60  # as if this session had run a minute
        for i in range(5):
            store.record_result(i, "completed", 0.1 * i, {})
            progress.record(i, "completed", 0.1 * i, {})
        progress.update()  # 5 in a minute, 5 to go: the evaluation budget ends in a minute
        line = capsys.readouterr().err.strip().splitlines()[-1]
        assert line.startswith("[   160s] 5/10 evaluations") and line.endswith("(evaluations)")
        timed = Progress(store, budget=10, live=False, minutes=2.0, elapsed_before=100.0)
        timed.started -= 15  # 115 s of a 120 s time budget gone, none done this session
        timed.update()
        line = capsys.readouterr().err.strip().splitlines()[-1]
        assert line.endswith("(time budget)")
        figures = timed._figures()
        assert figures["eta"][1] == "time budget" and 4.0 <= figures["eta"][0] <= 5.0
