"""Pyrogram session files: SQLite with ``sessions(dc_id, api_id, test_mode, auth_key, date, user_id,
is_bot)``, ``peers`` and ``version`` tables (pyrogram/storage/sqlite_storage.py, schema version 3).
Files from before Pyrogram 2.0 (schema version 2) have no ``api_id``; columns are read by name, so
both are read. The writer makes a version 3 file, which Pyrogram opens (and upgrades) as its own.
"""

from __future__ import annotations

import contextlib
import sqlite3
import time
from pathlib import Path

from tgdaemon.sessionfiles import Broken
from tgdaemon.sessionfiles.pyrogram_string import PyrogramSession
from tgdaemon.sessionfiles.sqlitefile import opened

COLUMNS = {"dc_id", "test_mode", "auth_key", "user_id", "is_bot"}  # api_id only since version 3
VERSION = 3
SCHEMA = """
CREATE TABLE sessions (dc_id INTEGER PRIMARY KEY, api_id INTEGER, test_mode INTEGER, auth_key BLOB,
                       date INTEGER NOT NULL, user_id INTEGER, is_bot INTEGER);
CREATE TABLE peers (id INTEGER PRIMARY KEY, access_hash INTEGER, type INTEGER NOT NULL, username TEXT,
                    phone_number TEXT,
                    last_update_on INTEGER NOT NULL DEFAULT (CAST(STRFTIME('%s', 'now') AS INTEGER)));
CREATE TABLE version (number INTEGER PRIMARY KEY);
CREATE INDEX idx_peers_id ON peers (id);
CREATE INDEX idx_peers_username ON peers (username);
CREATE INDEX idx_peers_phone_number ON peers (phone_number);
CREATE TRIGGER trg_peers_last_update_on AFTER UPDATE ON peers
BEGIN
    UPDATE peers SET last_update_on = CAST(STRFTIME('%s', 'now') AS INTEGER) WHERE id = NEW.id;
END;
"""


def read(path: Path, columns: set[str]) -> PyrogramSession:
    api_id = "api_id" if "api_id" in columns else "NULL"
    with opened(path) as conn:
        rows = conn.execute(f"SELECT dc_id, {api_id}, test_mode, auth_key, user_id, is_bot FROM sessions").fetchall()
    good = [r for r in rows if isinstance(r[3], bytes) and len(r[3]) == 256 and r[0]]
    if not good:
        raise Broken(f"{path}: the Pyrogram session in it has no auth key (never signed in?)")
    dc_id, api, test_mode, key, user_id, is_bot = good[0]
    return PyrogramSession(int(dc_id), int(api) if api else None, bool(test_mode), bytes(key),
                           int(user_id) if user_id else None, bool(is_bot))


def write(path: Path, session: PyrogramSession) -> None:
    """Into a new, empty file (made by the caller, mode 600)."""
    with contextlib.closing(sqlite3.connect(path)) as conn:
        with conn:
            conn.executescript(SCHEMA)
            conn.execute("INSERT INTO version VALUES (?)", (VERSION,))
            conn.execute("INSERT INTO sessions VALUES (?, ?, ?, ?, ?, ?, ?)",
                         (session.dc_id, session.api_id, int(session.test_mode), session.auth_key,
                          int(time.time()), session.user_id, int(session.is_bot)))
