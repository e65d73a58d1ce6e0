"""Versioned schema migrations, kept as numbered SQL files beside this module.

``PRAGMA user_version`` records the version; each migration runs in its own
transaction, so a crash mid-upgrade leaves the previous version intact.
"""

from __future__ import annotations

import contextlib
import re
import sqlite3
from importlib import resources
from pathlib import Path

from tgdaemon.errors import StoreError

_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")


def migrations() -> list[tuple[int, str, str]]:
    """(version, file name, SQL) for every migration, in order."""
    out = []
    for entry in resources.files("tgdaemon.store.sqlite").joinpath("migrations").iterdir():
        if match := _NAME.match(entry.name):
            out.append((int(match[1]), entry.name, entry.read_text(encoding="utf-8")))
    out.sort()
    if [v for v, _, _ in out] != list(range(1, len(out) + 1)):
        raise StoreError("migrations are not numbered 0001, 0002, … without gaps")
    return out


def latest_version() -> int:
    return len(migrations())


def upgrade(path: Path, target: int | None = None) -> int:
    """Bring the database at ``path`` to ``target`` (default: latest); returns the version reached."""
    steps = migrations()
    target = len(steps) if target is None else target
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA foreign_keys=ON")
        current = conn.execute("PRAGMA user_version").fetchone()[0]
        if current > len(steps):
            raise StoreError(
                f"database {path} is at schema version {current}, newer than this tgdaemon knows "
                f"({len(steps)}); upgrade tgfleet"
            )
        for version, name, sql in steps:
            if current < version <= target:
                try:
                    conn.execute("BEGIN IMMEDIATE")
                    for statement in _statements(sql):
                        conn.execute(statement)
                    conn.execute(f"PRAGMA user_version = {version}")
                    conn.execute("COMMIT")
                except sqlite3.Error as exc:
                    with contextlib.suppress(sqlite3.Error):  # SQLite may have rolled back itself (disk full)
                        conn.execute("ROLLBACK")
                    raise StoreError(f"database {path}: migration {name} failed: {exc}") from None
                current = version
        return current
    except sqlite3.DatabaseError as exc:
        raise StoreError(f"database {path}: {exc}") from None
    finally:
        conn.close()


def _statements(sql: str) -> list[str]:
    """Split a migration into statements; executescript would commit on its own."""
    out, buf = [], ""
    for line in sql.splitlines(keepends=True):
        buf += line
        if sqlite3.complete_statement(buf):
            out.append(buf.strip())
            buf = ""
    if buf.strip() and not all(l.strip().startswith("--") or not l.strip() for l in buf.splitlines()):
        raise StoreError("a migration ends in an incomplete statement")
    return [s for s in out if s]
