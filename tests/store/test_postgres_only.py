"""What only the PostgreSQL driver has: its migrations table and lock, its URLs, its connection errors, and
what it does when the server goes away under a running store and comes back.

The server-lifecycle tests run on a private server of their own (they stop and start it, which a
shared one must not suffer); the rest use the conformance suite's session server.
"""

from __future__ import annotations

import asyncio
import collections
import os
import shutil
import socket
import tempfile
import time
import warnings
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from store.conftest import PgServer
from tgdaemon.errors import BackupError, StoreDisconnected, StoreError
from tgdaemon.store.postgres import PostgresStore, migrate
from tgdaemon.store.postgres.core import (
    PgDumpOnly,
    PostgresCore,
    connection_lost,
    named,
)
from tgdaemon.store.postgres.url import password_in, redact, where

PASSWORD_ROLE = "tgf_p1_pw"
SECRET = "s3cret-Passw0rd"


async def _rows(url: str, sql: str) -> list[tuple[Any, ...]]:
    conn = await asyncpg.connect(url)
    try:
        return [tuple(r) for r in await conn.fetch(sql)]
    finally:
        await conn.close()


# --- URLs -----------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("url", "shown"), [
    ("postgresql://tg:pw@db.example:5433/fleet?sslmode=require", "postgresql://tg@db.example:5433/fleet?sslmode=require"),
    ("postgresql://tg:@/fleet?host=/run/pg", "postgresql://tg@/fleet?host=/run/pg"),
    ("postgresql://tg@h/fleet?password=pw&sslmode=verify-full", "postgresql://tg@h/fleet?sslmode=verify-full"),
    ("postgres://a:p%40ss@[::1]:5432/x", "postgres://a@[::1]:5432/x"),
    ("postgresql://h/fleet", "postgresql://h/fleet"),
])
def test_url_is_shown_without_its_password(url: str, shown: str) -> None:
    assert redact(url) == shown
    assert "pw" not in redact(url).replace("/run/pg", "")


def test_where_names_host_port_and_database() -> None:
    assert where("postgresql://tg:pw@db.example:5433/fleet") == "db.example:5433/fleet"
    assert where("postgresql://tg@db.example/fleet") == "db.example:5432/fleet"
    assert where("postgresql://tg:@/fleet?host=/run/pg") == "/run/pg:5432/fleet"
    assert where("postgres://a@[::1]:6000/x") == "::1:6000/x"
    assert password_in("postgresql://tg:p%40ss@h/x") == "p@ss"
    assert password_in("postgresql://tg@h/x?password=q") == "q"
    assert password_in("postgresql://tg@h/x") is None


def test_named_parameters_become_positional() -> None:
    sql, args = named("UPDATE t SET a = :at WHERE b > :at + :n::float8 AND h LIKE 'setup:%'", {"at": 1.5, "n": 2})
    assert sql == "UPDATE t SET a = $1 WHERE b > $1 + $2::float8 AND h LIKE 'setup:%'"
    assert args == [1.5, 2]


def test_connection_lost_is_told_from_a_statement_error() -> None:
    assert connection_lost(ConnectionResetError())
    assert connection_lost(asyncpg.exceptions.AdminShutdownError("terminating connection"))
    assert connection_lost(asyncpg.exceptions.ConnectionDoesNotExistError("closed in the middle"))
    assert not connection_lost(asyncpg.exceptions.UniqueViolationError("duplicate key"))
    assert not connection_lost(asyncpg.exceptions.QueryCanceledError("canceling statement"))


# --- migrations -----------------------------------------------------------------------------------------------------

async def test_migrations_are_recorded_in_their_table(empty_pg_database: str) -> None:
    store = await PostgresCore.open(empty_pg_database)
    await store.close()
    again = await PostgresCore.open(empty_pg_database)  # a second start applies nothing
    await again.close()
    rows = await _rows(empty_pg_database, "SELECT version, name FROM tgfleet_schema_migrations ORDER BY version")
    assert rows == [(v, name) for v, name, _ in migrate.migrations()]
    assert rows[0] == (1, "0001_schema.sql")


async def test_two_daemons_starting_at_once_migrate_once(empty_pg_database: str) -> None:
    """Without the advisory lock the second CREATE TABLE fails ("already exists") or both record version 1."""
    stores = await asyncio.gather(*(PostgresCore.open(empty_pg_database) for _ in range(3)))
    for s in stores:
        await s.close()
    rows = await _rows(empty_pg_database, "SELECT version FROM tgfleet_schema_migrations")
    assert sorted(r[0] for r in rows) == list(range(1, migrate.latest_version() + 1))


async def test_a_newer_schema_is_refused_in_one_line(empty_pg_database: str) -> None:
    store = await PostgresCore.open(empty_pg_database)
    await store.close()
    conn = await asyncpg.connect(empty_pg_database)
    try:
        await conn.execute("INSERT INTO tgfleet_schema_migrations VALUES (999, '0999_future.sql', 0)")
    finally:
        await conn.close()
    with pytest.raises(StoreError) as info:
        await PostgresCore.open(empty_pg_database)
    message = str(info.value)
    assert "\n" not in message
    assert "schema version 999, newer than this tgdaemon knows" in message
    assert "upgrade tgfleet" in message



async def test_migration_0005_backfills_the_status_counters_from_the_rows(empty_pg_database: str) -> None:
    """SQLite's 0014: accounts and quotas counted, the last hour of finished tasks by second."""
    now = time.time()
    conn = await asyncpg.connect(empty_pg_database)
    try:
        assert await migrate.upgrade(conn, "test", target=4) == 4
        await conn.execute("INSERT INTO accounts (id, created_at) SELECT g, 0 FROM generate_series(1, 3) g")
        await conn.execute("INSERT INTO quotas (id, name, target, action, interval_seconds, expires_at, created_at)"
                           " VALUES (4, 'q', '@x', 'post_stats', 60, 0, 0)")
        await conn.executemany(
            "INSERT INTO tasks (subject_type, subject_id, account_id, action, target, status, created_at, reported_at)"
            " VALUES ('quota', 4, 1, 'post_stats', '@x', $1, 0, $2)",
            [("done", now - 10.5), ("failed", now - 10.2), ("done", now - 50), ("done", now - 2 * 3600),
             ("pending", None)])
        await conn.executemany("INSERT INTO account_tasks (account_id, task_type, status, created_at, updated_at)"
                               " VALUES ($1, 'update_name', $2, 0, $3)",
                               [(1, "done", now - 30), (2, "failed", now - 5000), (3, "running", now - 1)])
    finally:
        await conn.close()
    store = await PostgresStore.open(empty_pg_database)
    try:
        rows = (await store.database_stats())["rows"]
        assert (rows["accounts"], rows["quotas"]) == (3, 1)
        assert await store.tasks_finished_since(now - 60) == 4
        assert await store.tasks_finished_since(now - 11) == 2
        assert await store.tasks_finished_since(now) == 0
    finally:
        await store.close()


async def test_a_database_of_the_first_schema_gets_the_audit_index_and_keeps_its_log(empty_pg_database: str) -> None:
    """Migration 0002 (SQLite's 0011): the audit trail read through a partial index that the stream's
    ``changes`` rows are not in, so the newest audit events are found without stepping over them."""
    conn = await asyncpg.connect(empty_pg_database)
    try:
        assert await migrate.upgrade(conn, "test", target=1) == 1
        await conn.execute("INSERT INTO events (at, kind, message)"
                           " SELECT 0, 'changes', '' FROM generate_series(1, 5000)")
        await conn.execute("INSERT INTO events (at, kind, message) VALUES (1, 'old.audit', 'a'), (2, 'new.audit', 'b')")
    finally:
        await conn.close()
    store = await PostgresStore.open(empty_pg_database)
    try:
        assert [e["kind"] for e in await store.recent_events(limit=5)] == ["new.audit", "old.audit"]
        assert await store.last_event_id() == 5002
    finally:
        await store.close()
    rows = await _rows(empty_pg_database, "SELECT version, name FROM tgfleet_schema_migrations ORDER BY version")
    assert rows[:2] == [(1, "0001_schema.sql"), (2, "0002_events_audit.sql")]
    [(definition,)] = await _rows(empty_pg_database, "SELECT indexdef FROM pg_indexes WHERE indexname = 'events_audit'")
    assert "WHERE (kind <> 'changes'::text)" in definition
    await _rows(empty_pg_database, "ANALYZE events")
    plan = await _rows(empty_pg_database,
                       "EXPLAIN SELECT * FROM events WHERE kind <> 'changes' ORDER BY id DESC LIMIT 100")
    assert "events_audit" in " ".join(r[0] for r in plan)

# --- the transaction's own parts ------------------------------------------------------------------------------------

async def test_events_many_returns_ids_in_order_and_counts_them(empty_pg_database: str) -> None:
    store = await PostgresCore.open(empty_pg_database)
    try:
        async with store.tx() as tx:
            await tx.event("one", "first", data={"k": "v"})
            await tx.events_many([{"kind": f"k{i}", "message": f"m{i}", "data": {"i": i}} for i in range(50)])
        ids = [e["id"] for e in tx.events]
        rows = await store.read("SELECT id, kind, data_json FROM events ORDER BY id")
        assert [r["id"] for r in rows] == ids == list(range(ids[0], ids[0] + 51))
        assert [r["kind"] for r in rows] == ["one", *(f"k{i}" for i in range(50))]
        assert isinstance(rows[1]["data_json"], str)  # jsonb comes back as text, as SQLite's columns
        assert await store.read_val("SELECT n FROM row_counts WHERE name = 'events'") == 51
    finally:
        await store.close()


async def test_backup_says_to_use_pg_dump(empty_pg_database: str, tmp_path: Path) -> None:
    store = await PostgresCore.open(empty_pg_database)
    try:
        with pytest.raises(BackupError) as info:
            await store.backup(tmp_path / "copy.sqlite3")
        assert isinstance(info.value, PgDumpOnly)
        assert "pg_dump" in str(info.value)
        assert not (tmp_path / "copy.sqlite3").exists()
    finally:
        await store.close()


async def test_store_url_has_no_password(pg_server: PgServer, empty_pg_database: str) -> None:
    store = await PostgresCore.open(empty_pg_database, password="not-needed-by-a-trusting-server")
    try:
        assert store.kind == "postgresql"
        assert store.url == redact(empty_pg_database)
        assert "not-needed" not in store.url
    finally:
        await store.close()


# --- connection errors at start -------------------------------------------------------------------------------------

def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_a_closed_port_is_one_line_naming_the_server() -> None:
    port = _closed_port()
    with pytest.raises(StoreError) as info:
        await PostgresCore.open(f"postgresql://tg@127.0.0.1:{port}/fleet", password=SECRET)
    message = str(info.value)
    assert message.startswith(f"database 127.0.0.1:{port}/fleet: cannot connect: ")
    assert "\n" not in message
    assert SECRET not in message


# --- a private server: passwords, and the server going away ---------------------------------------------------------

@dataclass
class Private:
    root: Path
    pgdata: Path
    socket_dir: Path
    user: str | None  # the system user the server runs as (pgserver's, when the tests run as root)
    server: Any  # pgserver's handle

    def url(self, database: str, user: str = "postgres") -> str:
        return f"postgresql://{user}@/{database}?host={self.socket_dir}"

    def pg_ctl(self, *args: str) -> None:
        from pgserver import _commands  # type: ignore[import-untyped]

        pg_ctl = getattr(_commands, "pg_ctl")  # made at import, one function per PostgreSQL program
        pg_ctl(list(args), pgdata=self.pgdata, user=self.user, timeout=30)

    def stop(self) -> None:
        self.pg_ctl("-w", "-m", "fast", "stop")

    def start(self) -> None:
        """pgserver starts it again, as it started it first (and so knows the process to stop at the end)."""
        self.server.ensure_postgres_running()


@pytest.fixture(scope="module")
def private() -> Iterator[Private]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pgserver
    root = Path(tempfile.mkdtemp(prefix="tgf-p1-", dir="/tmp"))
    server = pgserver.get_server(root / "pgdata", cleanup_mode="stop")
    user = "pgserver" if os.geteuid() == 0 else None
    socket_dir = Path(server.get_uri().partition("host=")[2])
    p = Private(root, root / "pgdata", socket_dir, user, server)
    try:
        async def prepare() -> None:
            conn = await asyncpg.connect(p.url("postgres"))
            try:
                hba = Path(await conn.fetchval("SHOW hba_file"))
                hba.write_text(f"local all {PASSWORD_ROLE} scram-sha-256\n" + hba.read_text())
                await conn.execute(f"CREATE ROLE {PASSWORD_ROLE} LOGIN PASSWORD '{SECRET}'")
                await conn.execute("ALTER SYSTEM SET fsync = off")
                await conn.execute("SELECT pg_reload_conf()")
            finally:
                await conn.close()
        asyncio.run(prepare())
        yield p
    finally:
        server.cleanup()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
async def private_db(private: Private) -> AsyncIterator[str]:
    name = f"p1_{os.getpid()}_{id(object())}"
    conn = await asyncpg.connect(private.url("postgres"))
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    try:
        yield name
    finally:
        conn = await asyncpg.connect(private.url("postgres"))
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()


async def test_a_wrong_password_is_one_line_without_it(private: Private, private_db: str) -> None:
    url = private.url(private_db, user=PASSWORD_ROLE)
    with pytest.raises(StoreError) as info:
        await PostgresCore.open(url, password="wrong-" + SECRET)
    message = str(info.value)
    assert message.startswith(f"database {private.socket_dir}:5432/{private_db}: cannot connect: ")
    assert "password authentication failed" in message
    assert "\n" not in message and SECRET not in message


async def test_the_right_password_from_the_caller_opens(private: Private, private_db: str) -> None:
    """The role may not create the schema (least privilege): that too is one line, and names no password."""
    url = private.url(private_db, user=PASSWORD_ROLE)
    with pytest.raises(StoreError) as info:
        await PostgresCore.open(url, password=SECRET)
    assert "permission denied" in str(info.value) and SECRET not in str(info.value)
    conn = await asyncpg.connect(private.url(private_db))
    try:
        await conn.execute(f"GRANT ALL ON SCHEMA public TO {PASSWORD_ROLE}")
    finally:
        await conn.close()
    store = await PostgresCore.open(url, password=SECRET)
    try:
        assert await store.get_meta("nothing") is None
    finally:
        await store.close()


async def test_a_terminated_connection_is_disconnected_then_recovers(private: Private, private_db: str) -> None:
    store = await PostgresCore.open(private.url(private_db))
    told: list[str | None] = []
    store.on_down = told.append
    try:
        with pytest.raises(StoreDisconnected) as info:
            async with store.tx() as tx:
                await tx.set_meta("k", "before")
                pid = await tx.fetchval("SELECT pg_backend_pid()")
                await _rows(private.url("postgres"), f"SELECT pg_terminate_backend({pid})")
                await tx.set_meta("k", "lost")
        assert store.down is not None and private_db in store.down
        assert store.failure is None  # not a failed store: it comes back
        assert "waiting for it to return" in str(info.value)
        async with store.tx() as tx:  # the pool makes a new connection
            await tx.set_meta("k", "after")
        assert store.down is None
        assert told == [told[0], None] and told[0] is not None
        assert await store.get_meta("k") == "after"  # nothing of the lost transaction was applied
    finally:
        await store.close()


async def test_the_server_stopped_under_a_running_store(private: Private, private_db: str) -> None:
    store = await PostgresCore.open(private.url(private_db))
    try:
        async with store.tx() as tx:
            await tx.set_meta("k", "kept")
        await asyncio.to_thread(private.stop)
        try:
            with pytest.raises(StoreDisconnected):
                async with store.tx() as tx:
                    await tx.set_meta("k", "while down")
            down = store.down
            assert down is not None and down.startswith(f"database {private.socket_dir}:5432/{private_db}: ")
            with pytest.raises(StoreDisconnected):
                await store.get_meta("k")  # reads too
            assert store.down == down  # said once
        finally:
            await asyncio.to_thread(private.start)
        async with store.tx() as tx:
            await tx.set_meta("k", "back")
        assert store.down is None
        assert await store.get_meta("k") == "back"
    finally:
        await store.close()


async def test_a_transaction_in_flight_when_the_server_stops(private: Private, private_db: str) -> None:
    store = await PostgresCore.open(private.url(private_db))
    try:
        try:
            with pytest.raises(StoreDisconnected):
                async with store.tx() as tx:
                    await tx.set_meta("k", "never")
                    await asyncio.to_thread(private.stop)  # fast: the server ends this session itself
                    await tx.set_meta("k", "never again")
        finally:
            await asyncio.to_thread(private.start)
        assert await store.get_meta("k") is None
    finally:
        await store.close()



async def test_reads_racing_the_servers_shutdown_are_disconnected_never_the_protocols_confusion(
        private: Private, private_db: str) -> None:
    """A pooled connection the server is ending as it is handed out fails with asyncpg's "another operation
    is in progress": that too is the database lost (StoreDisconnected), not an error that ends a side task."""
    store = await PostgresCore.open(private.url(private_db))
    failures: collections.Counter[str] = collections.Counter()
    stop = asyncio.Event()

    async def read() -> None:
        while not stop.is_set():
            try:
                await store.get_meta("k")
            except Exception as exc:  # what the test counts: every kind of failure
                failures[type(exc).__name__] += 1
            await asyncio.sleep(0)

    try:
        readers = [asyncio.create_task(read()) for _ in range(6)]
        try:
            await asyncio.sleep(0.2)
            await asyncio.to_thread(private.stop)
            await asyncio.sleep(0.2)
        finally:
            stop.set()
            await asyncio.gather(*readers)
            await asyncio.to_thread(private.start)
        assert set(failures) == {"StoreDisconnected"}, failures
    finally:
        await store.close()


async def test_the_listener_listens_again_once_the_server_is_back_and_hands_over_the_head(
        private: Private, private_db: str) -> None:
    store = await PostgresStore.open(private.url(private_db))
    other: PostgresStore | None = None
    heard: list[int] = []
    try:
        await store.listen(heard.append)
        assert store.listener.sessions == 1
        await asyncio.to_thread(private.stop)
        await asyncio.to_thread(private.start)
        other = await PostgresStore.open(private.url(private_db))
        async with other.tx() as tx:  # committed while the listener may still be waiting to try again
            await tx.event("test.back", "after the server came back")
        last = await other.last_event_id()
        for _ in range(1000):  # bounded: the backoff is at most listener.MAX_BACKOFF
            if last in heard:
                break
            await asyncio.sleep(0.01)
        assert last in heard and store.listener.sessions >= 2
    finally:
        if other is not None:
            await other.close()
        await store.close()
