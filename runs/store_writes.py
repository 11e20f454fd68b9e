"""The write path of the run store: every public write is one transaction (``_write``), so a
crash leaves all of it or none. A mixin of :class:`evograph.runs.store.RunStore`, which supplies
``_write`` (BEGIN IMMEDIATE ... COMMIT with the crash points of :mod:`evograph.crashpoints`)."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterable

from .store_rows import dumps, finite
from .store_schema import FINISHED, PHASES


class StoreWrites:
    """Recording proposals, evaluation outcomes, proposer checkpoints and events."""

    def add_batch(self, batch: int, proposals: list[dict], proposer_state: dict) -> None:
        """Record a batch of proposals (individual, birth, pending evaluation each) and the
        proposer checkpoint taken right after ``ask`` — all in one transaction."""
        now = time.time()
        with self._write("add_batch") as c:
            for p in proposals:
                edit = p.get("edit")
                edit = edit.to_dict() if hasattr(edit, "to_dict") else (edit or {})
                c.execute("INSERT INTO individuals VALUES (?, ?, ?, ?, ?, ?, ?)",
                          (p["id"], dumps(p["genome"]), p.get("genome_hash"),
                           p.get("arch_hash"), p.get("seed"), batch, now))
                c.execute("INSERT INTO births VALUES (?, ?, ?, ?, ?, ?, NULL)",
                          (p["id"], dumps(list(p.get("parents", ()))), edit.get("mutation"),
                           dumps(edit.get("args", {})), int(bool(edit.get("inherit", False))),
                           dumps(list(edit.get("changed", ())))))
                c.execute("INSERT INTO evaluations (id, status, attempt) "
                          "VALUES (?, 'pending', 0)", (p["id"],))
            self._upsert_state(c, batch, "asked", proposer_state, now)

    def mark_running(self, ids: list[int], worker: str | None = None) -> None:
        """Start (or retry) evaluations: status running, attempt + 1, previous outcome cleared."""
        ids = list(ids)
        if not ids:
            return
        with self._write("mark_running") as c:
            cur = c.executemany(
                "UPDATE evaluations SET status = 'running', attempt = attempt + 1, "
                "started_at = ?, worker = ?, fitness = NULL, error = NULL, finished_at = NULL, "
                "wall_time = NULL WHERE id = ?", [(time.time(), worker, i) for i in ids])
            self._require(cur, len(ids), "mark_running")

    def mark_pending(self, ids: Iterable[int]) -> None:
        """Put evaluations back to pending (in-flight ones of an interrupted run, on resume)."""
        ids = list(ids)
        if not ids:
            return
        with self._write() as c:
            cur = c.executemany("UPDATE evaluations SET status = 'pending', started_at = NULL, "
                                "worker = NULL WHERE id = ?", [(i,) for i in ids])
            self._require(cur, len(ids), "mark_pending")

    def record_result(self, id: int, status: str, fitness: float | None, metrics: dict,
                      error: str | None = None, weights: str | None = None,
                      inherited: dict | None = None, wall_time: float | None = None) -> None:
        """Record the outcome of an evaluation. Fitness is stored only when the status is
        'completed' and the value finite; otherwise it is NULL and a non-NULL raw value is kept in
        ``metrics['raw_fitness']`` (non-finite floats as 'nan' / 'inf' / '-inf')."""
        if status not in FINISHED:
            raise ValueError(f"record_result: status must be one of {FINISHED}, not {status!r}")
        metrics = dict(metrics)
        stored = float(fitness) if status == "completed" and finite(fitness) else None
        if fitness is not None and stored is None:
            metrics.setdefault("raw_fitness", fitness)
        now = time.time()
        with self._write("record_result") as c:
            cur = c.execute(
                "UPDATE evaluations SET status = ?, fitness = ?, metrics = ?, error = ?, "
                "weights = ?, finished_at = ?, wall_time = coalesce(?, ? - started_at) "
                "WHERE id = ?",
                (status, stored, dumps(metrics), error, weights, now, wall_time, now, id))
            self._require(cur, 1, f"record_result({id})")
            if inherited is not None:
                c.execute("UPDATE births SET inherited = ? WHERE child = ?",
                          (dumps(inherited), id))

    def save_proposer_state(self, batch: int, phase: str, state: dict,
                            events: Iterable[tuple[str, str, dict | None]] = ()) -> None:
        """Checkpoint the proposer (only the latest is kept), with the events (kind, message,
        data) that come with it in the same transaction: a crash keeps both or neither."""
        now = time.time()
        with self._write("save_proposer_state") as c:
            self._upsert_state(c, batch, phase, state, now)
            for kind, message, data in events:
                self._insert_event(c, now, kind, message, data)

    @staticmethod
    def _upsert_state(c: sqlite3.Connection, batch: int, phase: str, state: dict,
                      now: float) -> None:
        """The checkpoint row; a ``told`` one also moves the told mark (``meta.told_batch``:
        with pipelined batches, later batches may already have been asked)."""
        if phase not in PHASES:
            raise ValueError(f"proposer phase must be one of {PHASES}, not {phase!r}")
        if phase == "told":
            c.execute("INSERT INTO meta VALUES ('told_batch', ?) ON CONFLICT (key) DO UPDATE "
                      "SET value = excluded.value", (str(batch),))
        c.execute("INSERT INTO proposer_state VALUES (1, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE "
                  "SET batch = excluded.batch, phase = excluded.phase, state = excluded.state, "
                  "updated_at = excluded.updated_at", (batch, phase, dumps(state), now))

    def log_event(self, kind: str, message: str, data: dict | None = None) -> None:
        with self._write() as c:
            self._insert_event(c, time.time(), kind, message, data)

    def replace_config(self, config: dict, fingerprint: str, message: str,
                       data: dict | None = None) -> None:
        """Store a changed run config and its fingerprint (``evograph resume --set``) with
        an ``extended`` event saying what changed, in one transaction."""
        with self._write("replace_config") as c:
            c.executemany("UPDATE meta SET value = ? WHERE key = ?",
                          [(dumps(config), "config"), (fingerprint, "fingerprint")])
            self._insert_event(c, time.time(), "extended", message, data)
        self.config, self.fingerprint = config, fingerprint

    @staticmethod
    def _insert_event(c: sqlite3.Connection, now: float, kind: str, message: str,
                      data: dict | None) -> None:
        c.execute("INSERT INTO events (time, kind, message, data) VALUES (?, ?, ?, ?)",
                  (now, kind, message, None if data is None else dumps(data)))
