"""The run store: the single source of truth of an evolution run.

One SQLite database per run directory (``RUN_DIR/run.db``, WAL journal, ``synchronous=FULL`` so a
committed transaction survives ``kill -9`` and power loss) holds genomes, births (parents, the edit,
the weight-copy report), evaluations, the latest proposer checkpoint, the final selection's
evaluations and an event log. Weights are safetensors files beside it
(``RUN_DIR/weights/<id>.safetensors``), written atomically, and deleted only by the retention
policy, which marks them pruned first (:mod:`evograph.runs.retention`). Every
public write is one transaction, so a crash leaves either all of a batch or none of it. One driver
writes (guarded by an OS file lock); any number of read-only readers (``evograph status``) may look
on meanwhile. No pickle anywhere: JSON text columns and safetensors files only.
"""

from __future__ import annotations

import fcntl
import json
import os
import secrets
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..crashpoints import crash_point
from ..errors import RunStoreError
from ..files import TMP_SUFFIX as _TMP_SUFFIX
from ..files import atomic_write_bytes, atomic_write_text  # noqa: F401  (re-exported)
from .store_final import StoreFinal
from .store_reads import StoreReads
from .store_rows import EvaluationRow, IndividualRow, dumps  # noqa: F401  (re-exported)
from .store_schema import (  # noqa: F401  (re-exported)
    DB_NAME,
    FINISHED,
    LOCK_NAME,
    PHASES,
    READABLE_VERSIONS,
    SCHEMA_VERSION,
    STATUSES,
    WEIGHTS_DIR,
    configure,
    connect,
    create_schema,
    migrate,
)
from .store_writes import StoreWrites

if TYPE_CHECKING:  # torch is heavy: imported only where weights are read or written
    import torch
    from typing_extensions import Self


class RunStore(StoreFinal, StoreWrites, StoreReads):
    """A run directory: ``run.db`` (SQLite, WAL) plus ``weights/*.safetensors``.

    Use :meth:`create` for a new run and :meth:`open` to resume or inspect one. A driver calls
    :meth:`acquire_lock` before writing; ``readonly=True`` opens never write and never block it.
    The writes come from :class:`~.store_writes.StoreWrites`, the queries from
    :class:`~.store_reads.StoreReads`, final selection and weight pruning from
    :class:`~.store_final.StoreFinal`, the schema from :mod:`.store_schema`.
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
            if version not in {str(v) for v in READABLE_VERSIONS}:
                raise RunStoreError(f"run directory {run_dir} was written by schema version "
                                    f"{version}; this evograph reads {SCHEMA_VERSION}")
            self.schema_version = int(version)
            if self.schema_version < SCHEMA_VERSION and not readonly:
                migrate(conn, self.schema_version)
                self.schema_version = SCHEMA_VERSION
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
        conn = connect(db, "rwc")
        meta = {"schema_version": str(SCHEMA_VERSION), "run_id": run_id,
                "created_at": repr(time.time()), "config": dumps(config),
                "fingerprint": fingerprint, "told_batch": "0"}
        try:
            configure(conn)
            create_schema(conn, meta)
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
        conn = connect(db, "ro" if readonly else "rw")
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
            configure(conn)
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
        self.delete_pruned_files()  # pruned in the store, the driver killed before deleting

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
            if self.weights_pruned(id):
                raise RunStoreError(self.pruned_message(id)) from None
            raise RunStoreError(f"weights of individual {id} are missing ({path})") from None
        try:
            return load(data)
        except Exception as e:  # safetensors raises its own error type for bad headers
            raise RunStoreError(f"weights file {path} is corrupt or truncated: {e}") from e
