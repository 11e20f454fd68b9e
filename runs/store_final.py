"""The run store's final selection and weight retention: the ``final_evaluations`` table
(:mod:`evograph.runs.final`) and the pruning mark of ``evaluations``
(:mod:`evograph.runs.retention`).

A mixin of :class:`evograph.runs.store.RunStore`, which supplies ``_write`` (one transaction with
its crash points), ``_query``, ``run_dir`` and ``schema_version``. Like every write of the store,
each one here is one transaction: the plan of a final selection is committed whole, each final
evaluation as it finishes, and a pruning is committed before its files are deleted, so a pruned
weights file is always said to be pruned, never silently missing.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from pathlib import Path

from .store_rows import FINAL_SQL, FinalRow, dumps, final_row, finite
from .store_schema import FINISHED, WEIGHTS_DIR


class StoreFinal:
    """Final-selection rows and pruned weights."""

    # -- final selection -----------------------------------------------------------------------

    def final_weights_file(self, candidate: int, seed_index: int) -> Path:
        """Where the final evaluation of ``candidate`` with its ``seed_index``-th seed writes
        its retrained weights (beside the individuals' own, never pruned)."""
        return self.run_dir / WEIGHTS_DIR / f"final-{candidate}-{seed_index}.safetensors"

    def add_final_plan(self, rows: list[dict], data: dict) -> None:
        """Commit a final selection's plan in one transaction: one pending row per candidate
        and seed (``candidate``, ``rank``, ``seed_index``, ``seed``) and a ``final planned``
        event with ``data``. A resume finds the plan and runs only what is not finished."""
        now = time.time()
        with self._write("add_final_plan") as c:
            c.executemany("INSERT INTO final_evaluations (candidate, rank, seed_index, seed, "
                          "status) VALUES (?, ?, ?, ?, 'pending')",
                          [(r["candidate"], r["rank"], r["seed_index"], r["seed"]) for r in rows])
            self._insert_event(c, now, "final planned",
                               f"final selection of {data['candidates']} x {data['seeds']}", data)

    def drop_final_rows(self, ids: list[int], message: str, data: dict) -> None:
        """Drop pending final evaluations from the plan (candidates that would not finish in
        the time left), with a ``final trimmed`` event saying so, in one transaction."""
        if not ids:
            return
        with self._write("drop_final_rows") as c:
            cur = c.executemany("DELETE FROM final_evaluations WHERE id = ? AND status = "
                                "'pending' AND attempt = 0", [(i,) for i in ids])
            self._require(cur, len(ids), "drop_final_rows")
            self._insert_event(c, time.time(), "final trimmed", message, data)

    def final_rows(self) -> list[FinalRow]:
        """Every final evaluation, in plan order (none in a run without final selection)."""
        if self.schema_version < 2:
            return []
        return [final_row(r) for r in self._query(FINAL_SQL + " ORDER BY id")]

    def mark_final_running(self, ids: list[int]) -> None:
        """Start (or retry) final evaluations: running, attempt + 1, earlier outcome cleared."""
        if not ids:
            return
        with self._write("mark_final_running") as c:
            cur = c.executemany(
                "UPDATE final_evaluations SET status = 'running', attempt = attempt + 1, "
                "started_at = ?, fitness = NULL, error = NULL, finished_at = NULL, "
                "wall_time = NULL WHERE id = ?", [(time.time(), i) for i in ids])
            self._require(cur, len(ids), "mark_final_running")

    def mark_final_pending(self, ids: Iterable[int]) -> None:
        """Put final evaluations back to pending (those in flight when a driver stopped)."""
        ids = list(ids)
        if not ids:
            return
        with self._write() as c:
            c.executemany("UPDATE final_evaluations SET status = 'pending', started_at = NULL "
                          "WHERE id = ?", [(i,) for i in ids])

    def record_final(self, id: int, status: str, fitness: float | None, metrics: dict,
                     error: str | None = None, weights: str | None = None,
                     wall_time: float | None = None, worker: str | None = None) -> None:
        """Record a final evaluation's outcome (fitness stored only when completed and finite,
        as :meth:`~.store_writes.StoreWrites.record_result` does)."""
        if status not in FINISHED:
            raise ValueError(f"record_final: status must be one of {FINISHED}, not {status!r}")
        stored = float(fitness) if status == "completed" and finite(fitness) else None
        metrics = dict(metrics)
        if fitness is not None and stored is None:
            metrics.setdefault("raw_fitness", fitness)
        now = time.time()
        with self._write("record_final") as c:
            cur = c.execute(
                "UPDATE final_evaluations SET status = ?, fitness = ?, metrics = ?, error = ?, "
                "weights = ?, finished_at = ?, wall_time = coalesce(?, ? - started_at), "
                "worker = ? WHERE id = ?",
                (status, stored, dumps(metrics), error, weights, now, wall_time, now, worker, id))
            self._require(cur, 1, f"record_final({id})")

    # -- weight retention ----------------------------------------------------------------------

    def weights_kept(self, told_batch: int) -> list[int]:
        """Ids of told individuals (batch <= ``told_batch``) whose weights file is kept."""
        return [r[0] for r in self._query(
            "SELECT e.id FROM evaluations e JOIN individuals i ON i.id = e.id "
            "WHERE e.weights IS NOT NULL AND i.batch <= ? ORDER BY e.id", (told_batch,))]

    def parents_of_open(self, told_batch: int) -> set[int]:
        """Parents of the individuals of batches asked after ``told_batch`` (not told yet)."""
        rows = self._query("SELECT b.parents FROM births b JOIN individuals i ON i.id = b.child "
                           "WHERE i.batch > ?", (told_batch,))
        return {parent for (parents,) in rows for parent in json.loads(parents)}

    def kept_completed(self, told_batch: int) -> list[tuple]:
        """(id, fitness, val_loss, val_accuracy or fitness, params, architecture) of the told,
        completed individuals whose weights are still kept."""
        return self._query(
            "SELECT e.id, e.fitness, json_extract(e.metrics, '$.val_loss'), "
            "coalesce(json_extract(e.metrics, '$.val_accuracy'), e.fitness), "
            "json_extract(e.metrics, '$.params'), coalesce(i.arch_hash, i.genome_hash, e.id) "
            "FROM evaluations e "
            "JOIN individuals i ON i.id = e.id WHERE e.weights IS NOT NULL "
            "AND e.fitness IS NOT NULL AND i.batch <= ?", (told_batch,))

    def first_parent_lines(self, ids: Iterable[int]) -> set[int]:
        """``ids`` and their first parents (whose weights each inherited) back to initial
        individuals, in one recursive query."""
        rows = self._query(
            "WITH RECURSIVE line(id) AS (SELECT value FROM json_each(?) UNION "
            "SELECT json_extract(b.parents, '$[0]') FROM births b JOIN line "
            "ON b.child = line.id WHERE json_array_length(b.parents) > 0) SELECT id FROM line",
            (json.dumps(sorted(ids)),))
        return {row[0] for row in rows}

    def prune_weights(self, ids: Iterable[int], data: dict | None = None) -> int:
        """Delete the weights of ``ids``: first mark them pruned in one transaction (weights
        NULL, ``pruned_at`` set, a ``pruned`` event with ``data``), then delete the files; a
        crash in between leaves files the next driver deletes (:meth:`delete_pruned_files`).
        Returns the bytes freed."""
        ids = sorted(set(ids))
        if not ids:
            return 0
        now = time.time()
        with self._write("prune_weights") as c:
            c.executemany("UPDATE evaluations SET weights = NULL, pruned_at = ? WHERE id = ?",
                          [(now, i) for i in ids])
            self._insert_event(c, now, "pruned", f"weights of {len(ids)} individual(s) pruned",
                               {"ids": ids, **(data or {})})
        return sum(self._unlink(self.weights_file(i)) for i in ids)

    def weights_pruned(self, id: int) -> bool:
        """Whether the retention policy deleted individual ``id``'s weights."""
        if self.schema_version < 2:
            return False
        rows = self._query("SELECT pruned_at FROM evaluations WHERE id = ?", (id,))
        return bool(rows) and rows[0][0] is not None

    def pruned_count(self) -> int:
        if self.schema_version < 2:
            return 0
        return self._query("SELECT count(*) FROM evaluations WHERE pruned_at IS NOT NULL")[0][0]

    def pruned_message(self, id: int) -> str:
        """One line saying that ``id``'s weights were pruned on purpose, and what to do."""
        return (f"weights of individual {id} were pruned by the run's weight retention "
                "([weights] keep = \"policy\" keeps the population, the best's line of descent, "
                "the top_k and the final selection); retrain it from its genome (export "
                "--train EPOCHS --from-scratch), or run with [weights] keep = \"all\"")

    def delete_pruned_files(self) -> int:
        """Delete weights files the store says are pruned but are still on disk (a driver
        killed between the commit and the deletion); the bytes freed."""
        if self.schema_version < 2 or self.readonly:
            return 0
        ids = [r[0] for r in self._query("SELECT id FROM evaluations WHERE pruned_at IS NOT NULL")]
        return sum(self._unlink(self.weights_file(i)) for i in ids)

    @staticmethod
    def _unlink(path: Path) -> int:
        try:
            size = path.stat().st_size
            path.unlink()
        except FileNotFoundError:
            return 0
        return size
