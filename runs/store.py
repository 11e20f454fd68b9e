"""The run store: the single source of truth of an evolution run.

One SQLite database per run directory (``RUN_DIR/run.db``, WAL journal, ``synchronous=FULL`` so a
committed transaction survives ``kill -9`` and power loss) holds genomes, births (parents, the edit,
the weight-copy report), evaluations, the latest proposer checkpoint and an event log. Weights are
safetensors files beside it (``RUN_DIR/weights/<id>.safetensors``), written atomically. Every
public write is one transaction, so a crash leaves either all of a batch or none of it. One driver
writes (guarded by an OS file lock); any number of read-only readers (``evograph status``) may look
on meanwhile. No pickle anywhere: JSON text columns and safetensors files only.
"""

from __future__ import annotations

import fcntl
import json
import math
import os
import secrets
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..crashpoints import crash_point
from ..errors import RunStoreError
from ..files import TMP_SUFFIX as _TMP_SUFFIX
from ..files import atomic_write_bytes, atomic_write_text  # noqa: F401  (re-exported)

if TYPE_CHECKING:  # torch is heavy: imported only where weights are read or written
    import torch
    from typing_extensions import Self

SCHEMA_VERSION = 1
DB_NAME = "run.db"
LOCK_NAME = "driver.lock"
WEIGHTS_DIR = "weights"
STATUSES = ("pending", "running", "completed", "infeasible", "failed")
FINISHED = ("completed", "infeasible", "failed")
PHASES = ("asked", "told")

_SCHEMA = (
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    """CREATE TABLE individuals (id INTEGER PRIMARY KEY, genome TEXT NOT NULL,
        genome_hash TEXT, arch_hash TEXT, seed INTEGER, batch INTEGER NOT NULL,
        created_at REAL NOT NULL)""",
    "CREATE INDEX individuals_batch ON individuals (batch)",
    """CREATE TABLE births (child INTEGER PRIMARY KEY REFERENCES individuals (id),
        parents TEXT NOT NULL, mutation TEXT, args TEXT NOT NULL, inherit INTEGER NOT NULL,
        changed TEXT NOT NULL, inherited TEXT)""",
    f"""CREATE TABLE evaluations (id INTEGER PRIMARY KEY REFERENCES individuals (id),
        status TEXT NOT NULL CHECK (status IN {STATUSES!r}), attempt INTEGER NOT NULL DEFAULT 0,
        fitness REAL CHECK (fitness IS NULL OR (status = 'completed'
                            AND abs(fitness) <= 1.7976931348623157e308)),
        metrics TEXT NOT NULL DEFAULT '{{}}', error TEXT, weights TEXT, started_at REAL,
        finished_at REAL, wall_time REAL, worker TEXT)""",
    "CREATE INDEX evaluations_status ON evaluations (status)",
    f"""CREATE TABLE proposer_state (id INTEGER PRIMARY KEY CHECK (id = 1),
        batch INTEGER NOT NULL, phase TEXT NOT NULL CHECK (phase IN {PHASES!r}),
        state TEXT NOT NULL, updated_at REAL NOT NULL)""",
    """CREATE TABLE events (id INTEGER PRIMARY KEY AUTOINCREMENT, time REAL NOT NULL,
        kind TEXT NOT NULL, message TEXT NOT NULL, data TEXT)""",
)


# --- JSON columns -------------------------------------------------------------------------------

def _plain(value: Any) -> Any:
    """Strict-JSON-safe copy: non-finite floats become the strings 'nan', 'inf', '-inf' (so a raw
    NaN fitness can be kept in metrics); numpy scalars and arrays become Python values."""
    if isinstance(value, float):
        return value if math.isfinite(value) else repr(value)
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if hasattr(value, "tolist") and not isinstance(value, (str, bytes)):  # numpy scalar / array
        return _plain(value.tolist())
    return value


def _dumps(value: Any) -> str:
    """Strict JSON of ``value``; the common case (plain finite data: a strategy's state, metrics)
    goes straight to the C encoder, and only what it refuses takes the :func:`_plain` walk."""
    try:
        return json.dumps(value, sort_keys=True, allow_nan=False)
    except (TypeError, ValueError):  # NaN/inf, numpy values, keys of mixed types
        return json.dumps(_plain(value), sort_keys=True, allow_nan=False)


def _loads(text: str | None, default: Any = None) -> Any:
    return default if text is None else json.loads(text)


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


# --- rows ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class IndividualRow:
    """One individual and its birth: who its parents were and which edit made it."""

    id: int
    genome: dict
    genome_hash: str | None
    arch_hash: str | None
    seed: int | None
    batch: int
    created_at: float
    parents: tuple[int, ...]
    mutation: str | None
    args: dict
    inherit: bool
    changed: tuple
    inherited: dict | None


@dataclass(frozen=True)
class EvaluationRow:
    """The evaluation state of one individual (``fitness`` is None unless completed and finite)."""

    id: int
    status: str
    attempt: int
    fitness: float | None
    metrics: dict
    error: str | None
    weights: str | None
    started_at: float | None
    finished_at: float | None
    wall_time: float | None
    worker: str | None


_IND_SQL = ("SELECT i.id, i.genome, i.genome_hash, i.arch_hash, i.seed, i.batch, i.created_at, "
            "b.parents, b.mutation, b.args, b.inherit, b.changed, b.inherited "
            "FROM individuals i JOIN births b ON b.child = i.id")
_EVAL_SQL = ("SELECT id, status, attempt, fitness, metrics, error, weights, started_at, "
             "finished_at, wall_time, worker FROM evaluations")


def _individual(r: tuple) -> IndividualRow:
    return IndividualRow(r[0], json.loads(r[1]), r[2], r[3], r[4], r[5], r[6],
                         tuple(json.loads(r[7])), r[8], json.loads(r[9]), bool(r[10]),
                         tuple(json.loads(r[11])), _loads(r[12]))


def _evaluation(r: tuple) -> EvaluationRow:
    return EvaluationRow(r[0], r[1], r[2], r[3], json.loads(r[4]), *r[5:])


# --- the store ----------------------------------------------------------------------------------

class RunStore:
    """A run directory: ``run.db`` (SQLite, WAL) plus ``weights/*.safetensors``.

    Use :meth:`create` for a new run and :meth:`open` to resume or inspect one. A driver calls
    :meth:`acquire_lock` before writing; ``readonly=True`` opens never write and never block it.
    """

    def __init__(self, run_dir: Path, conn: sqlite3.Connection, readonly: bool):
        self.run_dir = run_dir
        self.readonly = readonly
        self._conn = conn
        self._mutex = threading.RLock()
        self._lock_fd: int | None = None
        meta = dict(self._query("SELECT key, value FROM meta"))
        version = meta.get("schema_version")
        try:
            if version != str(SCHEMA_VERSION):
                raise RunStoreError(f"run directory {run_dir} was written by schema version "
                                    f"{version}; this evograph reads {SCHEMA_VERSION}")
            self.run_id: str = meta["run_id"]
            self.created_at = float(meta["created_at"])
            self.config: dict = json.loads(meta["config"])
            self.fingerprint: str = meta["fingerprint"]
        except KeyError as e:
            conn.close()
            raise RunStoreError(f"run directory {run_dir} is incomplete (meta lacks {e})") from None
        except RunStoreError:
            conn.close()
            raise

    # opening ---------------------------------------------------------------------------------

    @staticmethod
    def _connect(db: Path, mode: str) -> sqlite3.Connection:
        """A connection in autocommit mode: transactions are explicit (see :meth:`_write`)."""
        return sqlite3.connect(f"{db.resolve().as_uri()}?mode={mode}", uri=True, timeout=30,
                               isolation_level=None, check_same_thread=False)

    @staticmethod
    def _configure(conn: sqlite3.Connection) -> None:
        """Durability settings of a writing connection (WAL persists in the file itself)."""
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA foreign_keys=ON")

    @classmethod
    def create(cls, run_dir: str | os.PathLike, config: dict, fingerprint: str,
               run_id: str | None = None) -> RunStore:
        """Start a new run in ``run_dir`` (created if needed); refuses a directory holding one."""
        run_dir = Path(run_dir)
        db = run_dir / DB_NAME
        if db.exists():
            raise RunStoreError(f"run directory {run_dir} already holds a run ({db}); "
                                "resume it or choose another directory")
        try:
            (run_dir / WEIGHTS_DIR).mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise RunStoreError(f"cannot create run directory {run_dir}: {e}") from e
        run_id = run_id or f"{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}"
        conn = cls._connect(db, "rwc")
        meta = {"schema_version": str(SCHEMA_VERSION), "run_id": run_id,
                "created_at": repr(time.time()), "config": _dumps(config),
                "fingerprint": fingerprint, "told_batch": "0"}
        try:
            cls._configure(conn)
            with conn:  # schema and meta in one transaction: a crash leaves no half-made run
                conn.execute("BEGIN IMMEDIATE")
                for statement in _SCHEMA:
                    conn.execute(statement)
                conn.executemany("INSERT INTO meta VALUES (?, ?)", meta.items())
        except sqlite3.OperationalError as e:  # another process created it meanwhile
            conn.close()
            raise RunStoreError(f"cannot create a run in {run_dir}: {e}") from e
        except BaseException:
            conn.close()
            raise
        return cls(run_dir, conn, readonly=False)

    @classmethod
    def open(cls, run_dir: str | os.PathLike, readonly: bool = False) -> RunStore:
        """Open an existing run; ``readonly`` opens (``mode=ro``) work while a driver writes."""
        run_dir = Path(run_dir)
        db = run_dir / DB_NAME
        if not db.is_file():
            raise RunStoreError(f"{run_dir} is not an evograph run directory (no {DB_NAME})")
        conn = cls._connect(db, "ro" if readonly else "rw")
        try:
            tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
        except sqlite3.DatabaseError as e:
            conn.close()
            raise RunStoreError(f"{db} cannot be read as an evograph run database: {e}") from e
        if "meta" not in tables:
            conn.close()
            raise RunStoreError(f"{run_dir} is not an evograph run directory "
                                f"({db} has no meta table)")
        if not readonly:
            cls._configure(conn)
        return cls(run_dir, conn, readonly=readonly)

    def check_fingerprint(self, fingerprint: str) -> None:
        """Refuse to resume with a configuration or search space other than the run's own."""
        if fingerprint != self.fingerprint:
            raise RunStoreError(f"run directory {self.run_dir} was started with another "
                                f"configuration (fingerprint {self.fingerprint[:12]}, now "
                                f"{fingerprint[:12]}); resume with its stored config or start "
                                "a new run directory")

    def close(self) -> None:
        self.release_lock()
        with self._mutex:
            self._conn.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # the driver lock ---------------------------------------------------------------------------

    def acquire_lock(self) -> None:
        """Take the one-driver-per-run lock (an OS lock, released by the kernel even on kill -9)."""
        if self.readonly:
            raise RunStoreError(f"run directory {self.run_dir} was opened read-only")
        if self._lock_fd is not None:
            return
        fd = os.open(self.run_dir / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            pid = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise RunStoreError(f"run directory {self.run_dir} is in use by another evograph "
                                f"driver (pid {pid})") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._lock_fd = fd
        for stale in (self.run_dir / WEIGHTS_DIR).glob(f".*{_TMP_SUFFIX}"):
            stale.unlink(missing_ok=True)  # temp files of a killed driver (we hold the lock now)

    def release_lock(self) -> None:
        if self._lock_fd is not None:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            os.close(self._lock_fd)
            self._lock_fd = None

    # plumbing ----------------------------------------------------------------------------------

    @contextmanager
    def _write(self, name: str = "write") -> Iterator[sqlite3.Connection]:
        """One write transaction (BEGIN IMMEDIATE ... COMMIT, rolled back on any error).
        ``name`` labels the crash points around the commit (see :mod:`.crashpoints`)."""
        if self.readonly:
            raise RunStoreError(f"run directory {self.run_dir} was opened read-only")
        try:
            with self._mutex, self._conn:
                self._conn.execute("BEGIN IMMEDIATE")
                yield self._conn
                crash_point(f"store.{name}.before_commit")
        except sqlite3.IntegrityError as e:
            raise RunStoreError(f"run directory {self.run_dir}: write refused ({e}); "
                                "nothing of it was stored") from e
        crash_point(f"store.{name}.after_commit")

    def _query(self, sql: str, params: Iterable[Any] = ()) -> list[tuple]:
        with self._mutex:
            return self._conn.execute(sql, tuple(params)).fetchall()

    @staticmethod
    def _require(cursor: sqlite3.Cursor, expected: int, what: str) -> None:
        if cursor.rowcount != expected:
            raise RunStoreError(f"{what}: {expected - cursor.rowcount} of the ids are unknown")

    # writes ------------------------------------------------------------------------------------

    def add_batch(self, batch: int, proposals: list[dict], proposer_state: dict) -> None:
        """Record a batch of proposals (individual, birth, pending evaluation each) and the
        proposer checkpoint taken right after ``ask`` — all in one transaction."""
        now = time.time()
        with self._write("add_batch") as c:
            for p in proposals:
                edit = p.get("edit")
                edit = edit.to_dict() if hasattr(edit, "to_dict") else (edit or {})
                c.execute("INSERT INTO individuals VALUES (?, ?, ?, ?, ?, ?, ?)",
                          (p["id"], _dumps(p["genome"]), p.get("genome_hash"),
                           p.get("arch_hash"), p.get("seed"), batch, now))
                c.execute("INSERT INTO births VALUES (?, ?, ?, ?, ?, ?, NULL)",
                          (p["id"], _dumps(list(p.get("parents", ()))), edit.get("mutation"),
                           _dumps(edit.get("args", {})), int(bool(edit.get("inherit", False))),
                           _dumps(list(edit.get("changed", ())))))
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
        stored = float(fitness) if status == "completed" and _finite(fitness) else None
        if fitness is not None and stored is None:
            metrics.setdefault("raw_fitness", fitness)
        now = time.time()
        with self._write("record_result") as c:
            cur = c.execute(
                "UPDATE evaluations SET status = ?, fitness = ?, metrics = ?, error = ?, "
                "weights = ?, finished_at = ?, wall_time = coalesce(?, ? - started_at) "
                "WHERE id = ?",
                (status, stored, _dumps(metrics), error, weights, now, wall_time, now, id))
            self._require(cur, 1, f"record_result({id})")
            if inherited is not None:
                c.execute("UPDATE births SET inherited = ? WHERE child = ?",
                          (_dumps(inherited), id))

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
                  "updated_at = excluded.updated_at", (batch, phase, _dumps(state), now))

    def log_event(self, kind: str, message: str, data: dict | None = None) -> None:
        with self._write() as c:
            self._insert_event(c, time.time(), kind, message, data)

    @staticmethod
    def _insert_event(c: sqlite3.Connection, now: float, kind: str, message: str,
                      data: dict | None) -> None:
        c.execute("INSERT INTO events (time, kind, message, data) VALUES (?, ?, ?, ?)",
                  (now, kind, message, None if data is None else _dumps(data)))

    # reads -------------------------------------------------------------------------------------

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
        rows = self._query(_IND_SQL + " WHERE i.id = ?", (id,))
        if not rows:
            raise RunStoreError(f"run {self.run_dir} has no individual {id}")
        return _individual(rows[0])

    def genome_dict(self, id: int) -> dict:
        """The stored genome of individual ``id`` (its JSON dict), without the rest of its row."""
        rows = self._query("SELECT genome FROM individuals WHERE id = ?", (id,))
        if not rows:
            raise RunStoreError(f"run {self.run_dir} has no individual {id}")
        return json.loads(rows[0][0])

    def individuals(self) -> list[IndividualRow]:
        return [_individual(r) for r in self._query(_IND_SQL + " ORDER BY i.id")]

    def count_individuals(self) -> int:
        return self._query("SELECT count(*) FROM individuals")[0][0]

    def recent_statuses(self, n: int) -> list[str]:
        """Statuses of the last ``n`` finished evaluations (by id), oldest first."""
        rows = self._query("SELECT status FROM evaluations WHERE status IN "
                           f"{tuple(FINISHED)!r} ORDER BY id DESC LIMIT ?", (n,))
        return [r[0] for r in reversed(rows)]

    def evaluation(self, id: int) -> EvaluationRow:
        rows = self._query(_EVAL_SQL + " WHERE id = ?", (id,))
        if not rows:
            raise RunStoreError(f"run {self.run_dir} has no evaluation of individual {id}")
        return _evaluation(rows[0])

    def evaluations(self) -> list[EvaluationRow]:
        return [_evaluation(r) for r in self._query(_EVAL_SQL + " ORDER BY id")]

    def counts_by_status(self) -> dict[str, int]:
        counts = dict.fromkeys(STATUSES, 0)
        counts.update(self._query("SELECT status, count(*) FROM evaluations GROUP BY status"))
        return counts

    def best(self, n: int = 1) -> list[EvaluationRow]:
        """The ``n`` completed evaluations of highest finite fitness. Ties (common when a
        small validation set saturates) go to the lower validation loss, then the lower id."""
        return [_evaluation(r) for r in self._query(
            _EVAL_SQL + " WHERE status = 'completed' AND fitness IS NOT NULL "
            "ORDER BY fitness DESC, json_extract(metrics, '$.val_loss') IS NULL, "
            "json_extract(metrics, '$.val_loss') ASC, id ASC LIMIT ?", (n,))]

    def events(self, kind: str | None = None) -> list[dict]:
        sql = "SELECT id, time, kind, message, data FROM events"
        rows = self._query(sql + " WHERE kind = ? ORDER BY id", (kind,)) if kind is not None \
            else self._query(sql + " ORDER BY id")
        return [{"id": r[0], "time": r[1], "kind": r[2], "message": r[3], "data": _loads(r[4])}
                for r in rows]

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

    # weights -----------------------------------------------------------------------------------

    def weights_file(self, id: int) -> Path:
        return self.run_dir / WEIGHTS_DIR / f"{id}.safetensors"

    def write_weights(self, id: int, tensors: dict[str, torch.Tensor],
                      metadata: dict[str, str] | None = None) -> str:
        """Write an individual's weights atomically; returns the path relative to the run dir."""
        from safetensors.torch import save
        plain, seen = {}, set()
        for name, t in tensors.items():
            t = t.detach().cpu()
            ptr = t.untyped_storage().data_ptr()
            if not t.is_contiguous() or ptr in seen:  # safetensors refuses shared storage
                t = t.contiguous().clone()
            seen.add(ptr)
            plain[name] = t
        path = self.weights_file(id)
        # one metadata key: safetensors writes several keys in arbitrary order, and weight
        # files should be byte-reproducible
        packed = {"evograph": json.dumps(metadata, sort_keys=True)} if metadata else None
        atomic_write_bytes(path, save(plain, metadata=packed))
        return str(path.relative_to(self.run_dir))

    def read_weights(self, id: int) -> dict[str, torch.Tensor]:
        from safetensors.torch import load
        path = self.weights_file(id)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise RunStoreError(f"weights of individual {id} are missing ({path})") from None
        try:
            return load(data)
        except Exception as e:  # safetensors raises its own error type for bad headers
            raise RunStoreError(f"weights file {path} is corrupt or truncated: {e}") from e
