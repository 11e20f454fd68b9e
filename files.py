"""Atomic file writes: a reader, or a crash at any instant, sees the old file or the whole new
one — never a part (temp file in the same directory, flush + fsync, rename, fsync the dir)."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from .crashpoints import crash_point

TMP_SUFFIX = ".tmp"


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` so that a reader (or a crash) sees the old file or the whole new
    one, never a part: temp file in the same directory, flush + fsync, rename, fsync the dir."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}{TMP_SUFFIX}")
    try:
        with open(tmp, "xb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        crash_point("atomic_write.before_rename")
        os.replace(tmp, path)
        crash_point("atomic_write.after_rename")
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """:func:`atomic_write_bytes` for UTF-8 text."""
    atomic_write_bytes(path, text.encode("utf-8"))
