"""The conformance suite's fixtures: each test runs once per driver, on a database of its own.

``store`` is an opened store, ``database`` the fresh database under it (to open a second store on the same
data, as a restarted daemon would: ``async with database.opened() as again: ...``)::

    async def test_something(store: Store) -> None:      # runs as [sqlite] and [postgresql]
        ...

SQLite: a new file in the test's tmp_path. PostgreSQL: the session's one server, ``pg_server`` of
tests/conftest.py (tests/pgtest.py: a private ``pgserver`` server, whose PostgreSQL binaries come from
PyPI so ``make test`` needs nothing installed, or the one ``TGFLEET_TEST_POSTGRES_URL`` names), started
only when a postgresql test first runs. Each test gets a database of its own, cloned from a template the
driver migrated once per session (a clone costs less than migrating), dropped after the test.
``empty_pg_database`` is for tests that need a database no store has touched (migrations).

The postgresql parameter is never skipped: a driver that cannot be imported or opened fails its tests.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import pytest
from pgtest import PgServer, run_apart, unique_name

from store import backdoor
from tgdaemon.store import Store
from tgdaemon.store.sqlite import SQLiteStore

DRIVERS = ("sqlite", "postgresql")


async def _admin(server: PgServer, statement: str) -> None:
    conn = await asyncpg.connect(server.admin_url)
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


async def _create(server: PgServer, template: str, prefix: str = "tgfstore") -> str:
    name = unique_name(prefix)  # not tgf_…: the logs redact that as a provider token
    await _admin(server, f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
    return name


async def _drop(server: PgServer, name: str) -> None:
    """FORCE: a connection a failed test left open must not keep its database alive."""
    await _admin(server, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def _open_postgres(url: str) -> Store:
    from tgdaemon.store.postgres import (
        PostgresStore,  # here: a driver that is not there fails its tests
    )

    return await PostgresStore.open(url)


@pytest.fixture(scope="session")
def pg_template(pg_server: PgServer) -> Iterator[str]:
    """A database the driver has migrated, once per session; every test's database is a copy of it."""

    async def make() -> str:
        name = await _create(pg_server, "template0", "tgftmpl")
        store = await _open_postgres(pg_server.url(name))
        await store.close()  # a template must have no connections when it is copied
        return name

    name = run_apart(make())
    try:
        yield name
    finally:
        run_apart(_drop(pg_server, name))


@dataclass
class Database:
    """Where one test's data lives."""

    kind: str
    path: Path | None = None
    url: str | None = None

    async def _open(self) -> Store:
        if self.kind == "sqlite":
            assert self.path is not None
            return await SQLiteStore.open(self.path)
        assert self.url is not None
        store = await _open_postgres(self.url)
        backdoor.attach(store, self.url)
        return store

    @asynccontextmanager
    async def opened(self) -> AsyncIterator[Store]:
        """A store on this database for the block; closed after it (its backdoor connection too)."""
        store = await self._open()
        try:
            yield store
        finally:
            await backdoor.detach(store)
            await store.close()


@pytest.fixture(params=DRIVERS)
async def database(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    """A fresh database of each driver, at the latest schema once a store opens it."""
    if request.param == "sqlite":
        yield Database("sqlite", path=tmp_path / "data" / "tgfleet.sqlite3")
        return
    server: PgServer = request.getfixturevalue("pg_server")
    name = await _create(server, request.getfixturevalue("pg_template"))
    try:
        yield Database("postgresql", url=server.url(name))
    finally:
        await _drop(server, name)


@pytest.fixture
async def store(database: Database) -> AsyncIterator[Store]:
    """An opened store of the test's driver; closed after the test."""
    async with database.opened() as s:
        yield s


@pytest.fixture
async def empty_pg_database(pg_server: PgServer) -> AsyncIterator[str]:
    """The URL of a PostgreSQL database no store has touched (from template0), dropped after the test."""
    name = await _create(pg_server, "template0")
    try:
        yield pg_server.url(name)
    finally:
        await _drop(pg_server, name)
