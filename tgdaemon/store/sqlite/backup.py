"""An online copy of the live SQLite database, for ``tgdaemon backup``.

SQLite's backup API, in one step (``pages=-1``) on a connection of its own:
the copy is read inside one read transaction, so it is one consistent
snapshot, and in WAL mode that read never blocks the daemon's writer (nor
does the writer restart the copy, as it would a step-by-step backup). It runs
in a worker thread, so listings and writes go on while it does.

The copy is written to a temporary name beside the target, made 0600 before
SQLite opens it (it holds auth keys), turned into a single self-contained file
(journal mode DELETE), fsynced, and only then moved to the target: a reader of
the target never finds half a backup.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import sqlite3
from pathlib import Path

from tgdaemon.errors import BackupError, BackupExists
from tgdaemon.store.api import STREAM_EPOCH


def copy_database(source: Path, target: Path, *, replace: bool) -> int:
    """Copy ``source`` to ``target`` (absolute, its directory existing); the copy's size in bytes.

    Without ``replace`` an existing ``target`` is refused, atomically: the
    finished copy is hard-linked into place, which fails if the name is taken.
    """
    tmp = target.with_name(f".{target.name}.{secrets.token_hex(6)}.tmp")
    try:
        os.close(os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_CLOEXEC, 0o600))
    except OSError as exc:
        raise BackupError(f"backup {target}: the daemon cannot create a file in {target.parent}: {exc.strerror}"
                          " (it writes the backup itself, with its own user and file system view)") from None
    try:
        _snapshot(source, tmp)
        _fsync(tmp)
        _place(tmp, target, replace=replace)
        _fsync(target.parent)
        return target.stat().st_size
    except OSError as exc:
        raise BackupError(f"backup {target}: {exc.strerror or exc}") from None
    except sqlite3.Error as exc:
        raise BackupError(f"backup {target}: {exc}") from None
    finally:
        for leftover in ("", "-journal", "-wal", "-shm"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(f"{tmp}{leftover}")


def _snapshot(source: Path, dest: Path) -> None:
    src = sqlite3.connect(source, isolation_level=None)
    try:
        src.execute("PRAGMA busy_timeout=5000")
        dst = sqlite3.connect(dest, isolation_level=None)
        try:
            src.backup(dst)  # pages=-1: the whole database in one step, one snapshot
            dst.execute("PRAGMA journal_mode=DELETE")  # the copy arrives in WAL mode: make it one file
            # Restored, the copy's log goes on from an older point than the one dashboards saw: a new
            # epoch (made at its first start) makes them take a snapshot rather than resume.
            dst.execute("DELETE FROM meta WHERE key = ?", (STREAM_EPOCH,))
        finally:
            dst.close()
    finally:
        src.close()


def _place(tmp: Path, target: Path, *, replace: bool) -> None:
    if replace:
        os.replace(tmp, target)
        return
    try:
        os.link(tmp, target)
    except FileExistsError:
        raise BackupExists.at(target) from None
    except OSError:  # a file system without hard links: check, then rename (a racing writer could slip in)
        if target.exists() or target.is_symlink():
            raise BackupExists.at(target) from None
        os.rename(tmp, target)




def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
