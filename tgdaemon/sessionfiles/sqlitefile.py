"""Opening an operator's SQLite session file read-only, and telling whose schema it has."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator
from pathlib import Path

from tgdaemon.sessionfiles import Broken

MAGIC = b"SQLite format 3\x00"


def is_sqlite(head: bytes) -> bool:
    return head.startswith(MAGIC)


@contextlib.contextmanager
def opened(path: Path) -> Iterator[sqlite3.Connection]:
    """Read-only, so reading an operator's file never changes it (nor leaves a journal beside it)."""
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        raise Broken(f"{path}: cannot open it as SQLite ({exc})") from None
    try:
        yield conn
    except sqlite3.Error as exc:
        raise Broken(f"{path}: a damaged SQLite file ({exc})") from None
    finally:
        conn.close()


def session_columns(path: Path) -> set[str]:
    """The columns of its ``sessions`` table (empty: there is none)."""
    with opened(path) as conn:
        return {row[1] for row in conn.execute("PRAGMA table_info(sessions)")}
