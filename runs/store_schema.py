"""The run store's SQLite layout: the file names of a run directory, the status and phase
vocabularies, the schema of a new ``run.db`` and the durability settings of its connections
(WAL journal, ``synchronous=FULL``: a committed transaction survives ``kill -9`` and power loss).

The schema is versioned by ``meta.schema_version``. Version 2 added the final selection's table
(``final_evaluations``, :mod:`evograph.runs.final`) and the weight retention's mark
(``evaluations.pruned_at``, :mod:`evograph.runs.retention`); a version-1 run is migrated in one
transaction when opened for writing (:func:`migrate`) and read as it is when opened read-only
(:func:`eval_sql` then reads no pruning mark, and it has no final evaluations). A run written by
any other version is refused on open rather than misread (see
:class:`evograph.runs.store.RunStore`). Runs that predate the ``meta.told_batch`` mark stay
readable: :meth:`RunStore.told_batch` derives it.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

SCHEMA_VERSION = 2
READABLE_VERSIONS = (1, 2)        # older ones are migrated (writing) or read as they are
DB_NAME = "run.db"
LOCK_NAME = "driver.lock"
WEIGHTS_DIR = "weights"
STATUSES = ("pending", "running", "completed", "infeasible", "failed")
FINISHED = ("completed", "infeasible", "failed")
PHASES = ("asked", "told")

SCHEMA = (
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
        finished_at REAL, wall_time REAL, worker TEXT, pruned_at REAL)""",
    "CREATE INDEX evaluations_status ON evaluations (status)",
    f"""CREATE TABLE proposer_state (id INTEGER PRIMARY KEY CHECK (id = 1),
        batch INTEGER NOT NULL, phase TEXT NOT NULL CHECK (phase IN {PHASES!r}),
        state TEXT NOT NULL, updated_at REAL NOT NULL)""",
    """CREATE TABLE events (id INTEGER PRIMARY KEY AUTOINCREMENT, time REAL NOT NULL,
        kind TEXT NOT NULL, message TEXT NOT NULL, data TEXT)""",
)
# what version 2 added; a version-1 run gets it by ALTER TABLE (see migrate)
FINAL_TABLE = (
    f"""CREATE TABLE final_evaluations (id INTEGER PRIMARY KEY,
        candidate INTEGER NOT NULL REFERENCES individuals (id), rank INTEGER NOT NULL,
        seed_index INTEGER NOT NULL, seed INTEGER NOT NULL,
        status TEXT NOT NULL CHECK (status IN {STATUSES!r}), attempt INTEGER NOT NULL DEFAULT 0,
        fitness REAL CHECK (fitness IS NULL OR (status = 'completed'
                            AND abs(fitness) <= 1.7976931348623157e308)),
        metrics TEXT NOT NULL DEFAULT '{{}}', error TEXT, weights TEXT, started_at REAL,
        finished_at REAL, wall_time REAL, worker TEXT, UNIQUE (candidate, seed_index))""",
)
MIGRATIONS = {1: ("ALTER TABLE evaluations ADD COLUMN pruned_at REAL", *FINAL_TABLE)}


def connect(db: Path, mode: str) -> sqlite3.Connection:
    """A connection in autocommit mode: transactions are explicit (``RunStore._write``)."""
    return sqlite3.connect(f"{db.resolve().as_uri()}?mode={mode}", uri=True, timeout=30,
                           isolation_level=None, check_same_thread=False)


def configure(conn: sqlite3.Connection) -> None:
    """Durability settings of a writing connection (WAL persists in the file itself)."""
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA foreign_keys=ON")


def create_schema(conn: sqlite3.Connection, meta: dict[str, str]) -> None:
    """Make the tables and the meta rows in one transaction: a crash leaves no half-made run."""
    with conn:
        conn.execute("BEGIN IMMEDIATE")
        for statement in SCHEMA + FINAL_TABLE:
            conn.execute(statement)
        conn.executemany("INSERT INTO meta VALUES (?, ?)", meta.items())


def migrate(conn: sqlite3.Connection, version: int) -> None:
    """Bring a run written by an older schema ``version`` to :data:`SCHEMA_VERSION`, in one
    transaction: a crash leaves the old version whole, and the next open migrates again."""
    with conn:
        conn.execute("BEGIN IMMEDIATE")
        found = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        if found is None or int(found[0]) != version:  # another process migrated it meanwhile
            return
        for step in range(version, SCHEMA_VERSION):
            for statement in MIGRATIONS[step]:
                conn.execute(statement)
        conn.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'",
                     (str(SCHEMA_VERSION),))


def eval_sql(version: int) -> str:
    """The evaluations query of a run of schema ``version`` (version 1 has no pruning mark)."""
    pruned = "pruned_at" if version >= 2 else "NULL AS pruned_at"
    return ("SELECT id, status, attempt, fitness, metrics, error, weights, started_at, "
            f"finished_at, wall_time, worker, {pruned} FROM evaluations")
