"""A private PostgreSQL server for a benchmark: pgserver's binaries, a data dir and a Unix socket of its own.

Not tests/pgtest.py's server: that one turns fsync and synchronous_commit off, because durability
is not what tests check, and a benchmark that compares PostgreSQL with SQLite's FULL durability
must not flatter one side. This server keeps PostgreSQL's defaults (fsync on, synchronous_commit
on), as an operator's server has them, in the benchmark's scratch dir on the same disk as the
SQLite files. It listens on its socket only (no TCP port) and is stopped, by pgserver, when the
block ends. A fresh database per measurement: ``create()`` then ``drop()``.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
import warnings
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit


async def _execute(url: str, *statements: str) -> list[Any]:
    import asyncpg

    conn = await asyncpg.connect(url, timeout=10)
    try:
        return [await conn.fetchval(sql) for sql in statements]
    finally:
        await conn.close()


@dataclass
class Server:
    admin_url: str  # postgresql://postgres:@/postgres?host=SOCKETDIR
    version: str
    pid: int  # the postmaster's: its CPU time and its children's are the server's share of a measurement

    def url(self, database: str) -> str:
        """The server's URL for ``database``: no password (the socket trusts its local users)."""
        parts = urlsplit(self.admin_url)
        user = parts.netloc.rpartition("@")[0].partition(":")[0]
        host = parts.netloc.rpartition("@")[2]
        return urlunsplit((parts.scheme, f"{user}@{host}" if user else host, f"/{database}", parts.query, ""))

    async def create(self, prefix: str) -> str:
        """A new empty database (the daemon or the store migrates it); its URL."""
        name = f"{prefix}_{uuid.uuid4().hex[:8]}"
        await _execute(self.admin_url, f'CREATE DATABASE "{name}"')
        return self.url(name)

    async def drop(self, url: str) -> None:
        """FORCE: a daemon a failed measurement left connected must not keep its database."""
        name = urlsplit(url).path.lstrip("/")
        await _execute(self.admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextlib.asynccontextmanager
async def private_server(directory: Path) -> AsyncIterator[Server]:
    """A server on ``directory`` (its data dir and socket; keep the path short), stopped when the block ends.
    initdb and pg_ctl block, so they run in a thread: the event loop stays free."""
    with warnings.catch_warnings():  # platformdirs warns at import when XDG_RUNTIME_DIR is unset
        warnings.simplefilter("ignore")
        import pgserver
    server = await asyncio.to_thread(pgserver.get_server, directory, cleanup_mode="stop")
    try:
        admin = server.get_uri()
        [version] = await _execute(admin, "SHOW server_version")
        yield Server(admin, str(version), server.get_pid() or 0)
    finally:
        await asyncio.to_thread(server.cleanup)
