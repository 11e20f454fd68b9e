"""The read side of the run store: the queries behind resume, ``evograph status``, reports and
lineage views. A mixin of :class:`evograph.runs.store.RunStore`, which supplies ``_query`` (one
statement under the store's mutex) and ``run_dir``."""

from __future__ import annotations

import json

from ..errors import RunStoreError
from .store_rows import (
    IND_SQL,
    EvaluationRow,
    IndividualRow,
    evaluation_row,
    individual_row,
    loads,
)
from .store_schema import FINISHED, STATUSES, eval_sql


class StoreReads:
    """Proposer checkpoints, batches, individuals, evaluations, events and the run summary."""

    @property
    def _eval_sql(self) -> str:
        """The evaluations query of this run's schema version (read-only opens of an older
        version are read as they are, see :mod:`.store_schema`)."""
        return eval_sql(self.schema_version)

    def load_proposer_state(self) -> tuple[int, str, dict] | None:
        rows = self._query("SELECT batch, phase, state FROM proposer_state WHERE id = 1")
        return (rows[0][0], rows[0][1], json.loads(rows[0][2])) if rows else None

    def told_batch(self) -> int:
        """The last batch whose results the proposer was told (0: none). Runs written before
        the mark existed were never pipelined: the checkpoint's own batch, or the one before
        it when that batch was only asked."""
        rows = self._query("SELECT value FROM meta WHERE key = 'told_batch'")
        if rows:
            return int(rows[0][0])
        state = self._query("SELECT batch, phase FROM proposer_state WHERE id = 1")
        if not state:
            return 0
        batch, phase = state[0]
        return batch if phase == "told" else batch - 1

    def last_batch(self) -> int:
        """The last batch asked (0: none)."""
        return self._query("SELECT coalesce(max(batch), 0) FROM individuals")[0][0]

    def unfinished(self, batch: int | None = None) -> list[int]:
        """Ids still pending or running (of one batch, if given), ascending."""
        sql = ("SELECT e.id FROM evaluations e JOIN individuals i ON i.id = e.id "
               "WHERE e.status IN ('pending', 'running')")
        params: tuple = ()
        if batch is not None:
            sql, params = sql + " AND i.batch = ?", (batch,)
        return [r[0] for r in self._query(sql + " ORDER BY e.id", params)]

    def batch_ids(self, batch: int) -> list[int]:
        return [r[0] for r in self._query("SELECT id FROM individuals WHERE batch = ? "
                                          "ORDER BY id", (batch,))]

    def individual(self, id: int) -> IndividualRow:
        rows = self._query(IND_SQL + " WHERE i.id = ?", (id,))
        if not rows:
            raise RunStoreError(f"run {self.run_dir} has no individual {id}")
        return individual_row(rows[0])

    def genome_dict(self, id: int) -> dict:
        """The stored genome of individual ``id`` (its JSON dict), without the rest of its row."""
        rows = self._query("SELECT genome FROM individuals WHERE id = ?", (id,))
        if not rows:
            raise RunStoreError(f"run {self.run_dir} has no individual {id}")
        return json.loads(rows[0][0])

    def individuals(self) -> list[IndividualRow]:
        return [individual_row(r) for r in self._query(IND_SQL + " ORDER BY i.id")]

    def count_individuals(self) -> int:
        return self._query("SELECT count(*) FROM individuals")[0][0]

    def recent_statuses(self, n: int) -> list[str]:
        """Statuses of the last ``n`` finished evaluations (by id), oldest first."""
        rows = self._query("SELECT status FROM evaluations WHERE status IN "
                           f"{tuple(FINISHED)!r} ORDER BY id DESC LIMIT ?", (n,))
        return [r[0] for r in reversed(rows)]

    def evaluation(self, id: int) -> EvaluationRow:
        rows = self._query(self._eval_sql + " WHERE id = ?", (id,))
        if not rows:
            raise RunStoreError(f"run {self.run_dir} has no evaluation of individual {id}")
        return evaluation_row(rows[0])

    def evaluations(self) -> list[EvaluationRow]:
        return [evaluation_row(r) for r in self._query(self._eval_sql + " ORDER BY id")]

    def counts_by_status(self) -> dict[str, int]:
        counts = dict.fromkeys(STATUSES, 0)
        counts.update(self._query("SELECT status, count(*) FROM evaluations GROUP BY status"))
        return counts

    def best(self, n: int = 1) -> list[EvaluationRow]:
        """The ``n`` completed evaluations of highest finite fitness. Ties (common when a
        small validation set saturates) go to the lower validation loss, then the lower id."""
        return [evaluation_row(r) for r in self._query(
            self._eval_sql + " WHERE status = 'completed' AND fitness IS NOT NULL "
            "ORDER BY fitness DESC, json_extract(metrics, '$.val_loss') IS NULL, "
            "json_extract(metrics, '$.val_loss') ASC, id ASC LIMIT ?", (n,))]

    def events(self, kind: str | None = None) -> list[dict]:
        sql = "SELECT id, time, kind, message, data FROM events"
        rows = self._query(sql + " WHERE kind = ? ORDER BY id", (kind,)) if kind is not None \
            else self._query(sql + " ORDER BY id")
        return [{"id": r[0], "time": r[1], "kind": r[2], "message": r[3], "data": loads(r[4])}
                for r in rows]

    def last_activity(self, since: float, until: float | None = None) -> float | None:
        """The latest time a driver recorded work (a birth, an evaluation started or finished,
        a strategy checkpoint) in ``[since, until)``: where a killed driver's session ended."""
        return self._query(
            "SELECT max(t) FROM (SELECT created_at AS t FROM individuals UNION ALL "
            "SELECT started_at FROM evaluations UNION ALL SELECT finished_at FROM evaluations "
            "UNION ALL SELECT updated_at FROM proposer_state) WHERE t >= ? AND t < ?",
            (since, 1e300 if until is None else until))[0][0]

    def integrity_check(self) -> str:
        return "\n".join(r[0] for r in self._query("PRAGMA integrity_check"))

    def summary(self) -> dict:
        """A run at a glance: counts, the best individual, progress and times."""
        counts = self.counts_by_status()
        top = self.best(1)
        individuals, last_batch, first = self._query(
            "SELECT count(*), max(batch), min(created_at) FROM individuals")[0]
        last, wall = self._query("SELECT max(finished_at), sum(wall_time) FROM evaluations")[0]
        return {"run_id": self.run_id, "run_dir": str(self.run_dir), "counts": counts,
                "individuals": individuals, "last_batch": last_batch,
                "evaluations_done": sum(counts[s] for s in FINISHED),
                "best_id": top[0].id if top else None,
                "best_fitness": top[0].fitness if top else None,
                "first_time": first, "last_time": last, "total_wall_time": wall or 0.0}
