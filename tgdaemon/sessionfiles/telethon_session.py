"""Telethon ``.session`` files: SQLite with a ``sessions(dc_id, server_address, port, auth_key, takeout_id)``
table, as ``telethon.sessions.SQLiteSession`` writes them (and writes them here, for export)."""

from __future__ import annotations

from pathlib import Path

from tgdaemon.sessionfiles import Broken
from tgdaemon.sessionfiles.sqlitefile import opened

COLUMNS = {"dc_id", "server_address", "port", "auth_key"}


def read(path: Path) -> tuple[int, str, int, bytes]:
    with opened(path) as conn:
        rows = conn.execute("SELECT dc_id, server_address, port, auth_key FROM sessions").fetchall()
    good = [r for r in rows if isinstance(r[3], bytes) and len(r[3]) == 256 and r[0] and r[1] and r[2]]
    if not good:
        raise Broken(f"{path}: the Telethon session in it has no auth key (never signed in?)")
    dc_id, server, port, key = good[0]
    return int(dc_id), str(server), int(port), bytes(key)


def write(path: Path, dc_id: int, server: str, port: int, key: bytes) -> None:
    """A ``.session`` file Telethon opens as its own (written by SQLiteSession)."""
    from telethon.crypto import AuthKey
    from telethon.sessions import SQLiteSession

    session = SQLiteSession(str(path.with_suffix("")))
    try:
        session.set_dc(dc_id, server, port)
        session.auth_key = AuthKey(key)
        session.save()
    finally:
        session.close()
