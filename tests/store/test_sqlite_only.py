"""What only the SQLite driver has: its pragmas (WAL, foreign keys, synchronous), its migrations and schema
version, what it does with a file that is not its own, disk errors, and the file copy a backup makes.

These open SQLite files directly; the rules both drivers share are in the other modules of this suite.
"""

from __future__ import annotations

import asyncio
import os
import re
import resource
import signal
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest

from store.test_schema import DESIGN_COLUMNS
from tgdaemon.errors import BackupError, StoreError, StoreUnavailable
from tgdaemon.store.sqlite import SQLiteStore, migrate
from tgdaemon.store.sqlite.backup import copy_database


def columns(conn: sqlite3.Connection, table: str) -> set[str]:
    return {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}


def tables(conn: sqlite3.Connection) -> set[str]:
    return {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}


def read_file(path: Path, sql: str) -> list[tuple[Any, ...]]:
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return db.execute(sql).fetchall()
    finally:
        db.close()


async def pragma(conn: Any, name: str) -> Any:
    return (await conn.execute_fetchall(f"PRAGMA {name}"))[0][0]


@pytest.fixture
async def sqlite_store(tmp_path: Path) -> Any:
    s = await SQLiteStore.open(tmp_path / "data" / "tgfleet.sqlite3")
    try:
        yield s
    finally:
        await s.close()


# --- pragmas -----------------------------------------------------------------------------------

async def test_wal_and_foreign_keys(sqlite_store: SQLiteStore) -> None:
    store = sqlite_store
    assert [r[0] for r in await store.read("PRAGMA journal_mode")] == ["wal"]
    assert [r[0] for r in await store.read("PRAGMA foreign_keys")] == [1]
    async with store.tx() as tx:
        assert [r[0] for r in await tx.fetchall("PRAGMA foreign_keys")] == [1]
    # and enforced on the writer: a session for a missing account is refused, and rolled back
    with pytest.raises(sqlite3.IntegrityError):
        async with store.tx() as tx:
            await tx.execute("INSERT INTO meta (key, value) VALUES ('k', 'v')")
            await tx.execute("INSERT INTO sessions (account_id, dc_id, server, port, updated_at)"
                             " VALUES (424242, 2, 'x', 443, 0)")
    assert await store.get_meta("k") is None
    # the file on disk is in WAL mode for any other connection too
    conn = sqlite3.connect(store.path)
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        conn.close()


@pytest.mark.parametrize(("mode", "level"), [(None, 2), ("full", 2), ("normal", 1)])
async def test_the_store_runs_synchronous_full_unless_told_normal(tmp_path: Path, mode: str | None,
                                                                  level: int) -> None:
    path = tmp_path / "db.sqlite3"
    store = await (SQLiteStore.open(path) if mode is None else SQLiteStore.open(path, mode))
    try:
        assert await pragma(store._writer, "synchronous") == level  # 2 = FULL, 1 = NORMAL
        assert await pragma(store._reader, "synchronous") == level
        assert await pragma(store._writer, "journal_mode") == "wal"
    finally:
        await store.close()


async def test_a_fresh_file_is_at_the_latest_version_with_one_setup_task_per_type(sqlite_store: SQLiteStore) -> None:
    store = sqlite_store
    conn = sqlite3.connect(store.path)
    try:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == migrate.latest_version()
    finally:
        conn.close()
    async with store.tx() as tx:  # one setup task per (account, task_type)
        await store.insert_accounts(tx, [{"phone": "+15550000001", "tg_user_id": 1, "label": "a",
                                          "is_probe": 0, "profile_json": "{}"}])
        await tx.execute("INSERT INTO account_tasks (account_id, task_type, created_at, updated_at)"
                         " VALUES (1, 'ensure_2fa', 0, 0)")
    with pytest.raises(sqlite3.IntegrityError):
        async with store.tx() as tx:
            await tx.execute("INSERT INTO account_tasks (account_id, task_type, created_at, updated_at)"
                             " VALUES (1, 'ensure_2fa', 0, 0)")


async def test_the_database_figures_include_the_file_and_its_wal(sqlite_store: SQLiteStore) -> None:
    async with sqlite_store.tx() as tx:
        await tx.event("test.x", "x")
    stats = await sqlite_store.database_stats()
    assert stats["path"] == str(sqlite_store.path)
    assert stats["file_bytes"] > 0 and stats["wal_bytes"] > 0


# --- migrations --------------------------------------------------------------------------------

def _insert_rows_valid_at(conn: sqlite3.Connection, version: int) -> dict[str, Any]:
    """Rows a database at ``version`` could hold; returns what must survive the upgrade."""
    present = tables(conn)
    kept: dict[str, Any] = {}
    if "accounts" in present:
        conn.execute("INSERT INTO accounts (id, phone, label, is_probe, disabled_at, disabled_reason,"
                     " created_at) VALUES (7, '+15550000777', ?, 0, 5.0, 'old', 1.0)", (f"from-v{version}",))
        conn.execute("INSERT INTO events (at, kind, account_id, message) VALUES (1.0, 'old.event', 7, 'hi')")
        kept["account"] = (7, "+15550000777", f"from-v{version}", "old")
    if "account_tasks" in present:
        conn.execute("INSERT INTO account_tasks (account_id, task_type, status, created_at, updated_at)"
                     " VALUES (7, 'update_name', 'done', 1.0, 1.0)")
        kept["setup_done"] = 1
    if "measurements" in present:
        conn.execute("INSERT INTO quotas (id, name, target, action, interval_seconds, expires_at, created_at)"
                     " VALUES (3, 'q', '@x', 'post_stats', 60, 0, 0)")
        conn.executemany("INSERT INTO measurements (quota_id, observed_at) VALUES (3, ?)", [(1.0,), (2.0,)])
        if "measurements_count" in columns(conn, "quotas"):  # from 0009 the daemon keeps the count with the rows
            conn.execute("UPDATE quotas SET measurements_count = 2 WHERE id = 3")
        kept["measurements"] = 2
    return kept


@pytest.mark.parametrize("version", range(migrate.latest_version()))
async def test_upgrade_from_every_older_version(tmp_path: Path, version: int) -> None:
    latest = migrate.latest_version()
    path = tmp_path / "old.sqlite3"
    assert migrate.upgrade(path, target=version) == version
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == version
        if version >= 1:
            assert "accounts" in tables(conn)
        kept = _insert_rows_valid_at(conn, version)
        assert bool(kept) == (version >= 1)
    finally:
        conn.close()

    assert migrate.upgrade(path) == latest
    assert migrate.upgrade(path) == latest  # idempotent
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == latest
        assert set(DESIGN_COLUMNS) <= tables(conn)
        for table, cols in DESIGN_COLUMNS.items():
            assert cols <= columns(conn, table), (table, cols - columns(conn, table))
        if "account" in kept:
            row = conn.execute("SELECT id, phone, label, disabled_reason FROM accounts").fetchall()
            assert row == [kept["account"]]
            assert conn.execute("SELECT kind FROM events").fetchall() == [("old.event",)]
    finally:
        conn.close()

    s = await SQLiteStore.open(path)  # and the daemon's own view of it
    try:
        if "account" in kept:
            account = await s.get_account(7)
            assert account["label"] == f"from-v{version}" and account["state"] == "disabled"
            assert account["setup"]["done"] == kept.get("setup_done", 0)
            assert (await s.database_stats())["rows"]["events"] == 1
        else:
            assert await s.count_accounts() == 0
        if "measurements" in kept:
            assert (await s.quota(3))["measurements"] == kept["measurements"]
    finally:
        await s.close()


async def test_migration_backfills_the_counters(tmp_path: Path) -> None:
    path = tmp_path / "v8.sqlite3"
    assert migrate.upgrade(path, target=8) == 8
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("INSERT INTO accounts (id, created_at) VALUES (1, 0)")
    conn.execute("INSERT INTO quotas (id, name, target, action, interval_seconds, expires_at, created_at)"
                 " VALUES (4, 'q', '@x', 'post_stats', 60, 0, 0)")
    conn.executemany("INSERT INTO measurements (quota_id, observed_at) VALUES (4, ?)", [(i,) for i in range(3)])
    conn.executemany("INSERT INTO events (at, kind, message) VALUES (0, 'k', 'm')", [()] * 5)
    conn.executemany("INSERT INTO tasks (subject_type, subject_id, account_id, action, target, status, created_at)"
                     " VALUES ('quota', 4, 1, 'post_stats', '@x', ?, 0)", [("done",), ("done",), ("pending",)])
    conn.execute("INSERT INTO account_tasks (account_id, task_type, status, created_at, updated_at)"
                 " VALUES (1, 'update_name', 'retry', 0, 0)")
    conn.close()
    migrate.upgrade(path)
    s = await SQLiteStore.open(path)
    try:
        assert (await s.quota(4))["measurements"] == 3
        assert await s.task_counts() == {"setup": {"retry": 1}, "pulled": {"done": 2, "pending": 1}}
        assert (await s.database_stats())["rows"] == {"accounts": 1, "account_tasks": 1, "quotas": 1, "tasks": 3,
                                                      "events": 5, "measurements": 3}
    finally:
        await s.close()


async def test_migration_0014_backfills_the_status_counters_from_the_rows(tmp_path: Path) -> None:
    """Accounts and quotas counted, and the last hour of finished tasks by second (older ones left out:
    only the last minute is read), from the rows of a database at version 13."""
    path = tmp_path / "v13.sqlite3"
    assert migrate.upgrade(path, target=13) == 13
    now = time.time()
    conn = sqlite3.connect(path, isolation_level=None)
    conn.executemany("INSERT INTO accounts (id, created_at) VALUES (?, 0)", [(1,), (2,), (3,)])
    conn.execute("INSERT INTO quotas (id, name, target, action, interval_seconds, expires_at, created_at)"
                 " VALUES (4, 'q', '@x', 'post_stats', 60, 0, 0)")
    conn.executemany("INSERT INTO tasks (subject_type, subject_id, account_id, action, target, status, created_at,"
                     " reported_at) VALUES ('quota', 4, 1, 'post_stats', '@x', ?, 0, ?)",
                     [("done", now - 10.5), ("failed", now - 10.2), ("done", now - 50), ("done", now - 2 * 3600),
                      ("pending", None)])
    conn.executemany("INSERT INTO account_tasks (account_id, task_type, status, created_at, updated_at)"
                     " VALUES (?, 'update_name', ?, 0, ?)", [(1, "done", now - 30), (2, "failed", now - 5000),
                                                           (3, "running", now - 1)])
    conn.close()
    migrate.upgrade(path)
    s = await SQLiteStore.open(path)
    try:
        rows = (await s.database_stats())["rows"]
        assert (rows["accounts"], rows["quotas"]) == (3, 1)
        assert await s.tasks_finished_since(now - 60) == 4  # 2 reports 10 s ago, 1 at 50 s, 1 setup at 30 s
        assert await s.tasks_finished_since(now - 11) == 2
        assert await s.tasks_finished_since(now) == 0
    finally:
        await s.close()


async def test_database_newer_than_the_code_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "new.sqlite3"
    migrate.upgrade(path)
    newer = migrate.latest_version() + 1
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {newer}")
    conn.close()
    with pytest.raises(StoreError, match=rf"schema version {newer}, newer than"):
        migrate.upgrade(path)
    with pytest.raises(StoreError) as info:
        await SQLiteStore.open(path)
    assert "\n" not in str(info.value)
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == newer  # left untouched
    conn.close()


async def test_not_a_database_is_a_store_error(tmp_path: Path) -> None:
    path = tmp_path / "junk.sqlite3"
    path.write_bytes(b"this is not an sqlite database at all " * 200)
    with pytest.raises(StoreError, match=str(path)):
        await SQLiteStore.open(path)


def test_migrations_are_numbered_without_gaps() -> None:
    steps = migrate.migrations()
    assert [v for v, _, _ in steps] == list(range(1, migrate.latest_version() + 1))
    assert all(re.fullmatch(r"\d{4}_[a-z0-9_]+\.sql", name) for _, name, _ in steps)


# --- disk errors and copies ----------------------------------------------------------------------

async def test_a_disk_error_refuses_later_writes_at_once_and_the_store_still_closes(tmp_path: Path) -> None:
    store = await SQLiteStore.open(tmp_path / "data" / "db.sqlite3")
    told: list[str] = []
    store.on_failure = told.append
    writer, reader = store._writer, store._reader
    pages = await pragma(writer, "page_count")
    await writer.execute(f"PRAGMA max_page_count = {pages}")  # SQLite's own SQLITE_FULL at the current size
    with pytest.raises(StoreUnavailable) as caught:
        for i in range(10_000):  # bounded: a few hundred 1 KB events fill the last free pages
            async with store.tx() as tx:
                await tx.event("test.fill", "x" * 1024, data={"i": i})
    assert len(told) == 1 and f"data dir {tmp_path / 'data'}" in told[0] and "(SQLITE_FULL)" in told[0]
    assert "the daemon is stopping" in str(caught.value)
    await writer.execute(f"PRAGMA max_page_count = {pages * 100}")  # the disk is back, but this store stays failed
    with pytest.raises(StoreUnavailable):
        async with store.tx() as tx:
            await tx.event("test.after", "refused before it reaches SQLite")
    assert list(await store.read("SELECT COUNT(*) FROM events WHERE kind = 'test.after'"))[0][0] == 0
    assert len(told) == 1
    await asyncio.wait_for(store.close(), 10)
    for conn in (writer, reader):  # a worker thread ends just after it hands back close's result
        conn._thread.join(5)
        assert not conn._thread.is_alive()


async def test_a_copy_that_fails_half_way_leaves_nothing_behind(sqlite_store: SQLiteStore, tmp_path: Path) -> None:
    """A real write failure (the file-size limit, as a full disk would): no PATH, no temporary file."""
    store = sqlite_store
    async with store.tx() as tx:
        for i in range(2000):
            await tx.event("test.filler", "x" * 500, data={"i": i})
    out = tmp_path / "out"
    out.mkdir()
    target = out / "backup.sqlite3"
    old_handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (256 * 1024, hard))
    try:
        with pytest.raises(BackupError, match=rf"^backup {target}: "):
            copy_database(store.path, target, replace=False)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, old_handler)
    assert os.listdir(out) == []
    assert copy_database(store.path, target, replace=False) > 256 * 1024  # and with room, it works
    assert read_file(target, "SELECT COUNT(*) FROM events WHERE kind = 'test.filler'") == [(2000,)]
