"""The conformance suite's fixtures: each test runs once per driver, on a database of its own.

``store`` is an opened store, ``database`` the fresh database under it (to open a second store on the same
data, as a restarted daemon would: ``await database.open()``)::

    async def test_something(store: Store) -> None:      # runs as [sqlite] and [postgresql]
        ...

SQLite: a new file in the test's tmp_path. PostgreSQL: one private server per pytest session, from the
``pgserver`` package (it ships the PostgreSQL binaries: ``make test`` needs nothing installed), started
only when a postgresql test runs and stopped at the session's end; or the server named by
``TGFLEET_TEST_POSTGRES_URL`` (a role allowed to CREATE DATABASE). Each test gets a database of its own,
cloned from a template migrated once per session (cheaper than migrating per test), dropped after it.
``pg_server.url(name)`` and ``empty_pg_database`` serve tests that need a database the store has never
touched (migrations).

The postgresql parameter is never skipped: a driver that cannot be imported or opened fails its tests.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import uuid
import warnings
from collections.abc import AsyncIterator, Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from store import backdoor
from tgdaemon.store import Store

DRIVERS = ("sqlite", "postgresql")
URL_ENV = "TGFLEET_TEST_POSTGRES_URL"
T = TypeVar("T")


def with_database(url: str, name: str) -> str:
    """The same server and role, another database."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, parts.fragment))


def unique_name(prefix: str) -> str:
    """Unique on a server that other sessions may share (TGFLEET_TEST_POSTGRES_URL)."""
    return f"{prefix}_{os.getpid()}_{uuid.uuid4().hex[:10]}"


def run_apart(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` to the end on a loop of its own, in a thread of its own: the session's fixtures are
    first asked for from inside a test's running loop, where ``asyncio.run`` is refused."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


async def _admin(url: str, *statements: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        for sql in statements:
            await conn.execute(sql)
    finally:
        await conn.close()


async def _open_postgres(url: str) -> Store:
    from tgdaemon.store.postgres import PostgresStore  # here: a driver that is not there fails its tests

    return await PostgresStore.open(url)


@dataclass
class PgServer:
    admin_url: str  # a database to connect to for CREATE and DROP DATABASE

    def url(self, database: str) -> str:
        return with_database(self.admin_url, database)

    async def create(self, template: str = "template0") -> str:
        name = unique_name("tgf_test")
        await _admin(self.admin_url, f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
        return name

    async def drop(self, name: str) -> None:
        """FORCE: a connection a failed test left open must not keep its database alive."""
        await _admin(self.admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _private_server() -> Iterator[PgServer]:
    with warnings.catch_warnings():  # platformdirs warns at import that XDG_RUNTIME_DIR is unset
        warnings.simplefilter("ignore")
        import pgserver
    # Short and under /tmp: the server's Unix socket lives in it (AF_UNIX paths are limited to 108 bytes).
    root = Path(tempfile.mkdtemp(prefix="tgf-pg-", dir="/tmp"))
    server = pgserver.get_server(root / "pgdata", cleanup_mode="stop")
    try:
        admin = server.get_uri()
        # A throwaway server: durability is not what these tests measure, and fsyncs are most of a
        # CREATE DATABASE's cost. The daemon's own settings are untouched (they are the server's).
        run_apart(_admin(admin, "ALTER SYSTEM SET fsync = off", "ALTER SYSTEM SET synchronous_commit = off",
                           "ALTER SYSTEM SET full_page_writes = off", "SELECT pg_reload_conf()"))
        yield PgServer(admin)
    finally:
        server.cleanup()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    """The session's PostgreSQL server; started on first use only (a ``-k sqlite`` run never starts it)."""
    if url := os.environ.get(URL_ENV):
        yield PgServer(url)
        return
    yield from _private_server()


@pytest.fixture(scope="session")
def pg_template(pg_server: PgServer) -> Iterator[str]:
    """A database the driver has migrated, once per session; every test's database is a copy of it."""
    name = unique_name("tgf_template")

    async def make() -> None:
        await _admin(pg_server.admin_url, f'CREATE DATABASE "{name}" TEMPLATE template0')
        store = await _open_postgres(pg_server.url(name))
        await store.close()

    run_apart(make())
    try:
        yield name
    finally:
        run_apart(pg_server.drop(name))


@dataclass
class Database:
    """Where one test's data lives; ``open`` gives a store on it (each caller closes what it opened)."""

    kind: str
    path: Path | None = None
    url: str | None = None

    async def open(self) -> Store:
        if self.kind == "sqlite":
            from tgdaemon.store.sqlite import SQLiteStore

            assert self.path is not None
            return await SQLiteStore.open(self.path)
        assert self.url is not None
        store = await _open_postgres(self.url)
        backdoor.attach(store, self.url)
        return store


@pytest.fixture(params=DRIVERS)
async def database(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    """A fresh database of each driver, at the latest schema once a store opens it."""
    if request.param == "sqlite":
        yield Database("sqlite", path=tmp_path / "data" / "tgfleet.sqlite3")
        return
    server: PgServer = request.getfixturevalue("pg_server")
    name = await server.create(template=request.getfixturevalue("pg_template"))
    try:
        yield Database("postgresql", url=server.url(name))
    finally:
        await server.drop(name)


@pytest.fixture
async def store(database: Database) -> AsyncIterator[Store]:
    """An opened store of the test's driver; closed after the test (its backdoor connection too)."""
    s = await database.open()
    try:
        yield s
    finally:
        await backdoor.detach(s)
        await s.close()


@pytest.fixture
async def empty_pg_database(pg_server: PgServer) -> AsyncIterator[str]:
    """The URL of a PostgreSQL database no store has touched (from template0), dropped after the test."""
    name = await pg_server.create()
    try:
        yield pg_server.url(name)
    finally:
        await pg_server.drop(name)


