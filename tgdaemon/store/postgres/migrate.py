"""Versioned schema migrations for PostgreSQL, kept as numbered SQL files beside this module.

Applied versions are rows of ``tgfleet_schema_migrations`` (version, name, applied_at). Every pending
migration runs in one transaction that first takes a transaction-level advisory lock, so two daemons
starting at the same moment on one database do not both migrate: the second waits, then finds the work
done. PostgreSQL's DDL is transactional, so a failed upgrade leaves the previous version intact.
"""

from __future__ import annotations

import re
from importlib import resources

import asyncpg

from tgdaemon.errors import StoreError
from tgdaemon.timeutil import now

_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")
# pg_advisory_xact_lock's key: any constant the daemon's other locks never use ("tgfleet" in ASCII).
LOCK_KEY = 0x7467666C656574

TABLE = """CREATE TABLE IF NOT EXISTS tgfleet_schema_migrations (
    version    integer PRIMARY KEY,
    name       text NOT NULL,
    applied_at double precision NOT NULL
)"""


def migrations() -> list[tuple[int, str, str]]:
    """(version, file name, SQL) for every migration, in order."""
    out = []
    for entry in resources.files("tgdaemon.store.postgres").joinpath("migrations").iterdir():
        if match := _NAME.match(entry.name):
            out.append((int(match[1]), entry.name, entry.read_text(encoding="utf-8")))
    out.sort()
    if [v for v, _, _ in out] != list(range(1, len(out) + 1)):
        raise StoreError("migrations are not numbered 0001, 0002, … without gaps")
    return out


def latest_version() -> int:
    return len(migrations())


async def current_version(conn: asyncpg.Connection) -> int:
    """The highest applied version; 0 for a database no tgdaemon has migrated."""
    exists = await conn.fetchval("SELECT to_regclass('tgfleet_schema_migrations') IS NOT NULL")
    if not exists:
        return 0
    return int(await conn.fetchval("SELECT COALESCE(MAX(version), 0) FROM tgfleet_schema_migrations"))


async def upgrade(conn: asyncpg.Connection, where: str, target: int | None = None) -> int:
    """Bring the database to ``target`` (default: latest); the version reached. ``where`` names the
    database in messages (a URL without its password)."""
    steps = migrations()
    target = len(steps) if target is None else target
    try:
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", LOCK_KEY)
            await conn.execute(TABLE)
            current = await current_version(conn)
            if current > len(steps):
                raise StoreError(f"database {where} is at schema version {current}, newer than this tgdaemon"
                                 f" knows ({len(steps)}); upgrade tgfleet")
            for version, name, sql in steps:
                if current < version <= target:
                    try:
                        await conn.execute(sql)  # no arguments: the simple protocol runs a script
                    except asyncpg.PostgresError as exc:
                        raise StoreError(f"database {where}: migration {name} failed: {exc}") from None
                    await conn.execute("INSERT INTO tgfleet_schema_migrations (version, name, applied_at)"
                                       " VALUES ($1, $2, $3)", version, name, now())
                    current = version
            return current
    except asyncpg.InsufficientPrivilegeError as exc:
        raise StoreError(f"database {where}: the role cannot create the schema ({exc}); see docs/postgresql.md"
                         ) from None
