"""PostgreSQL for the tests outside the conformance suite: one server per session, a database per test.

The server is a private one from the ``pgserver`` package (PostgreSQL binaries on PyPI: ``make test``
needs nothing installed), on a Unix socket under a short /tmp dir, started when a test first asks for
it; or the server ``TGFLEET_TEST_POSTGRES_URL`` names (a role allowed to CREATE DATABASE and ROLE).

Everything here is synchronous and runs its asyncpg calls on a loop of its own in a thread of its
own, so that sync tests, async tests and fixtures of any scope call it alike.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import uuid
import warnings
from collections.abc import Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote, urlsplit, urlunsplit

import asyncpg
import pytest

URL_ENV = "TGFLEET_TEST_POSTGRES_URL"
STORES = ("sqlite", "postgresql")  # what the end-to-end tests run on: the data dir's file, and PostgreSQL
PASSWORD_ROLE = "tgfpassword"  # the one role the private server asks a password of (pg_hba.conf, below)
T = TypeVar("T")


def run_apart(coro: Coroutine[Any, Any, T]) -> T:
    """``coro`` to its end on a loop of its own, in a thread of its own (a test's loop may be running)."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


async def _execute(url: str, *statements: str, password: str | None = None) -> list[Any]:
    conn = await asyncpg.connect(url, password=password)
    try:
        return [await conn.fetchval(sql) for sql in statements]
    finally:
        await conn.close()


def unique_name(prefix: str) -> str:
    """Unique on a server other sessions may share."""
    return f"{prefix}_{os.getpid()}_{uuid.uuid4().hex[:10]}"


@dataclass
class PgServer:
    admin_url: str  # a superuser's URL, to a database that stays (CREATE and DROP DATABASE run from it)
    private: bool  # ours alone: its pg_hba.conf was written by this module

    def url(self, database: str, *, user: str | None = None) -> str:
        """The server's URL for ``database`` (and ``user``), without any password."""
        parts = urlsplit(self.admin_url)
        host = parts.netloc.rpartition("@")[2]
        name = user if user is not None else parts.netloc.rpartition("@")[0].partition(":")[0]
        netloc = f"{quote(name)}@{host}" if name else host
        return urlunsplit((parts.scheme, netloc, f"/{database}", parts.query, ""))

    def create(self, *, owner: str | None = None) -> str:
        """A new empty database (the daemon migrates it, as it would a new one in production); its name."""
        name = unique_name("tgfe2e")
        run_apart(_execute(self.admin_url, f'CREATE DATABASE "{name}"' + (f' OWNER "{owner}"' if owner else "")))
        return name

    def drop(self, name: str) -> None:
        """FORCE: a daemon a failed test left behind must not keep its database alive."""
        run_apart(_execute(self.admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))

    def password_role(self, password: str) -> str:
        """``PASSWORD_ROLE`` with ``password`` (set anew each call); the private server checks it (SCRAM)."""
        escaped = password.replace("'", "''")
        run_apart(_execute(self.admin_url, f"DO $$ BEGIN CREATE ROLE {PASSWORD_ROLE} LOGIN;"
                                           " EXCEPTION WHEN duplicate_object THEN NULL; END $$",
                           f"ALTER ROLE {PASSWORD_ROLE} PASSWORD '{escaped}'"))
        return PASSWORD_ROLE

    def asks_password(self, database: str) -> bool:
        """Whether a wrong password is refused for ``PASSWORD_ROLE`` (a server of another's may trust it)."""
        try:
            run_apart(_execute(self.url(database, user=PASSWORD_ROLE), "SELECT 1", password="wrong-on-purpose"))
        except asyncpg.InvalidPasswordError:
            return True
        return False

    def query(self, database: str, sql: str) -> list[tuple[Any, ...]]:
        """Rows of ``sql`` in ``database``: what a test reads of a store once its daemon is gone."""
        async def rows() -> list[tuple[Any, ...]]:
            conn = await asyncpg.connect(self.url(database))
            try:
                return [tuple(r) for r in await conn.fetch(sql)]
            finally:
                await conn.close()
        return run_apart(rows())


@contextmanager
def private_server() -> Iterator[PgServer]:
    """A throwaway server: fsync off (durability is not what these tests measure), and SCRAM passwords
    for ``PASSWORD_ROLE`` over the socket, every other role trusted."""
    with warnings.catch_warnings():  # platformdirs warns at import when XDG_RUNTIME_DIR is unset
        warnings.simplefilter("ignore")
        import pgserver
    root = Path(tempfile.mkdtemp(prefix="tgf-pg-", dir="/tmp"))  # short: the socket lives under it
    server = pgserver.get_server(root / "pgdata", cleanup_mode="stop")
    try:
        admin = server.get_uri()
        [hba] = run_apart(_execute(admin, "SHOW hba_file"))
        path = Path(hba)
        path.write_text(f"local all {PASSWORD_ROLE} scram-sha-256\n" + path.read_text())  # first match wins
        run_apart(_execute(admin, "ALTER SYSTEM SET fsync = off", "ALTER SYSTEM SET synchronous_commit = off",
                           "ALTER SYSTEM SET full_page_writes = off", "SELECT pg_reload_conf()"))
        yield PgServer(admin, private=True)
    finally:
        server.cleanup()
        shutil.rmtree(root, ignore_errors=True)


@dataclass
class Restartable:
    """A private server a test may stop and start again (same data dir, so the same socket and databases):
    the database lost under a running daemon, and back."""

    pgdata: Path
    server: Any  # pgserver's handle
    user: str | None  # the system user it runs as (pgserver's own when the tests run as root)

    @property
    def admin(self) -> PgServer:
        return PgServer(self.server.get_uri(), private=True)

    def stop(self) -> None:
        """``pg_ctl stop -m fast``: every session is ended by the server, as on a restart or a failover."""
        from pgserver import _commands  # type: ignore[import-untyped]

        getattr(_commands, "pg_ctl")(["-w", "-m", "fast", "stop"], pgdata=self.pgdata, user=self.user, timeout=30)

    def start(self) -> None:
        self.server.ensure_postgres_running()


@contextmanager
def restartable_server() -> Iterator[Restartable]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pgserver
    root = Path(tempfile.mkdtemp(prefix="tgf-pgr-", dir="/tmp"))  # short: the socket lives under it
    server = pgserver.get_server(root / "pgdata", cleanup_mode="stop")
    try:
        run_apart(_execute(server.get_uri(), "ALTER SYSTEM SET fsync = off", "SELECT pg_reload_conf()"))
        yield Restartable(root / "pgdata", server, "pgserver" if os.geteuid() == 0 else None)
    finally:
        server.cleanup()
        shutil.rmtree(root, ignore_errors=True)


@contextmanager
def session_server() -> Iterator[PgServer]:
    if url := os.environ.get(URL_ENV):
        yield PgServer(url, private=False)
        return
    with private_server() as server:
        yield server


@contextmanager
def store_url(kind: str, request: pytest.FixtureRequest) -> Iterator[str | None]:
    """For a daemon's ``--store``: None on "sqlite" (the data dir's own file, the default), else the URL of
    a fresh database on the session's server (``pg_server`` in conftest.py), dropped afterwards."""
    if kind == "sqlite":
        yield None
        return
    server: PgServer = request.getfixturevalue("pg_server")
    name = server.create()
    try:
        yield server.url(name)
    finally:
        server.drop(name)


def database_of(url: str) -> str:
    return urlsplit(url).path.lstrip("/")
