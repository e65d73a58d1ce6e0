"""The connection pair and the transaction that records what changed.

One writer connection behind an asyncio lock (the daemon is the only
writer), one reader connection for large listings, which WAL lets run while a
write is in progress. Every write goes through ``Store.tx()``, whose ``Tx``
collects the accounts and quotas it touched and the events it wrote; what it
touched that no event of it names goes in the log too, as one ``changes`` row
just before COMMIT, so every change is in the event log, the stream's source
(tgdaemon/stream.py). The commit hook then tells the stream how far the log grew.

Each of aiosqlite's calls is a hand-off to the connection's thread and a wake-up back: for the hot paths
(a pull, a report) that was more CPU than SQLite's own work, so ``StoreCore.write`` runs a whole
transaction there in one hand-off (``Tx.run``: any number of statements in one), and every
transaction's log rows and COMMIT go in one.

A disk or I/O error (``SQLITE_FULL``, ``SQLITE_IOERR`` and kin) is not the
request's fault and will not pass by retrying: the first one marks the store
failed, tells the daemon (``on_failure``), and every write after it is
refused at once with ``StoreUnavailable`` instead of touching the disk again.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sqlite3
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Self, TypeVar

import aiosqlite

from tgdaemon.bounded import bounded
from tgdaemon.errors import StoreError, StoreUnavailable
from tgdaemon.store.api import (
    ClockFollower,
    CommitHook,
    DownHook,
    FailureHook,
)
from tgdaemon.store.api import Tx as ApiTx
from tgdaemon.store.sqlite import migrate
from tgdaemon.store.sqlite.backup import copy_database
from tgdaemon.store.txlog import TxLog

T = TypeVar("T")

# aiosqlite logs every statement with its parameters at DEBUG: auth keys among them.
logging.getLogger("aiosqlite").setLevel(logging.INFO)


# Primary result codes that mean the disk, not the statement: nothing the caller can fix by asking again.
DISK_ERRORS = {8: "SQLITE_READONLY", 10: "SQLITE_IOERR", 11: "SQLITE_CORRUPT", 13: "SQLITE_FULL",
               14: "SQLITE_CANTOPEN", 26: "SQLITE_NOTADB"}
CLOSE_STEP_SECONDS = 1.5
SYNCHRONOUS = {"full": "FULL", "normal": "NORMAL"}


def disk_error(exc: BaseException) -> str | None:
    """The SQLite name of a disk or I/O error (``SQLITE_IOERR_WRITE``…), None for any other exception."""
    code = getattr(exc, "sqlite_errorcode", None)
    if not isinstance(exc, sqlite3.Error) or code is None or code & 0xFF not in DISK_ERRORS:
        return None
    return getattr(exc, "sqlite_errorname", None) or DISK_ERRORS[code & 0xFF]


async def _connect(path: Path, synchronous: str) -> aiosqlite.Connection:
    conn = await aiosqlite.connect(path, isolation_level=None)
    conn.row_factory = sqlite3.Row
    await conn.execute("PRAGMA foreign_keys=ON")
    # FULL: in WAL mode every COMMIT is fsynced, so a write acknowledged to anyone survives power loss.
    await conn.execute(f"PRAGMA synchronous={SYNCHRONOUS[synchronous]}")
    await conn.execute("PRAGMA busy_timeout=5000")
    return conn


async def _in_daemon_thread(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """``fn`` on a daemon thread of its own: unlike asyncio.to_thread's executor, which ``asyncio.run``
    waits for without limit at exit, a long copy never keeps a stopping daemon from exiting."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[T] = loop.create_future()

    def settle(how: Callable[[], object]) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is closed: the daemon stopped meanwhile
            loop.call_soon_threadsafe(lambda: done.done() or how())

    def run() -> None:
        try:
            result = fn(*args, **kwargs)
        except BaseException as exc:  # handed to the awaiting task, which raises it
            error = exc  # `exc` is unbound once the block ends, before the loop runs the callback
            settle(lambda: done.set_exception(error))
        else:
            settle(lambda: done.set_result(result))

    threading.Thread(target=run, name="tgdaemon backup", daemon=True).start()
    return await done


LOG_ROWS_PER_INSERT = 128  # 7 parameters a row: under the 999 older SQLite builds allow in one statement


def insert_events(n: int) -> str:
    return ("INSERT INTO events (at, kind, account_id, task_id, quota_id, message, data_json) VALUES "
            + ", ".join(["(?, ?, ?, ?, ?, ?, ?)"] * n))


def on_thread(conn: aiosqlite.Connection, fn: Callable[[sqlite3.Connection], T]) -> Awaitable[T]:
    """``fn(the sqlite3 connection)`` on the connection's own thread: one hand-off there and one wake-up
    back for any number of statements, where each of aiosqlite's calls is one of each (the hand-offs were
    the larger part of a pull's CPU). aiosqlite has no public call for it; ``_execute`` is the queue all
    of its own calls go through (tests/store/test_hotpath.py holds it to that)."""
    return conn._execute(fn, conn._conn)


def _insert_log(conn: sqlite3.Connection, rows: Sequence[dict[str, Any]]) -> list[int]:
    """One statement per ``LOG_ROWS_PER_INSERT`` rows (one writer: AUTOINCREMENT ids are consecutive, in
    commit order, the last one the statement's rowid)."""
    ids: list[int] = []
    for start in range(0, len(rows), LOG_ROWS_PER_INSERT):
        chunk = rows[start:start + LOG_ROWS_PER_INSERT]
        cur = conn.execute(insert_events(len(chunk)), [
            v for e in chunk for v in (e["at"], e["kind"], e["account_id"], e["task_id"], e["quota_id"],
                                       e["message"], json.dumps(e["data"], separators=(",", ":")))])
        last = int(cur.lastrowid or 0)
        ids += range(last - len(chunk) + 1, last + 1)
    return ids


class Tx(TxLog):
    """One write transaction, and what it changed.

    Statements go one by one (``execute``, ``fetchall``, ``conn``: aiosqlite's connection), or many at
    once with ``run``: a synchronous function given the sqlite3 connection, on the writer's thread."""

    def __init__(self, conn: aiosqlite.Connection) -> None:
        super().__init__()
        self.conn = conn

    async def execute(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> aiosqlite.Cursor:
        return await self.conn.execute(sql, params)

    async def fetchall(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> Iterable[sqlite3.Row]:
        return await self.conn.execute_fetchall(sql, params)

    async def run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """``fn`` in this transaction, on the writer's thread, in one hand-off. ``fn`` must not block on
        anything but SQLite, and may use this Tx's synchronous methods (``touch``, ``add_event``…)."""
        return await on_thread(self.conn, fn)

    async def write_log(self, rows: Sequence[dict[str, Any]]) -> Sequence[int]:
        """The transaction's log rows, at its end, in one hand-off."""
        return await self.run(lambda conn: _insert_log(conn, rows))

    def commit_now(self, conn: sqlite3.Connection) -> None:
        """On the writer's thread: the log rows (``take_log``), then COMMIT."""
        rows = self.take_log()
        if rows:
            self.logged(rows, _insert_log(conn, rows))
        conn.execute("COMMIT")

    def whole(self, conn: sqlite3.Connection, body: Callable[[Self, sqlite3.Connection], T]) -> T:
        """On the writer's thread: BEGIN IMMEDIATE, ``body``, the log rows, COMMIT; ROLLBACK should any of
        them fail, so a failure in the middle leaves nothing written."""
        conn.execute("BEGIN IMMEDIATE")
        try:
            result = body(self, conn)
            self.commit_now(conn)
        except BaseException:
            if conn.in_transaction:  # SQLite may have rolled it back itself (a failed COMMIT)
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
            raise
        return result

    async def set_meta(self, key: str, value: str) -> None:
        """A key of the little ``meta`` table, in this transaction (for parts that hold a Tx, not the store)."""
        await self.execute(
            "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (key, value))

    async def setdefault_meta(self, key: str, value: str) -> str:
        await self.execute("INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO NOTHING", (key, value))
        [(stored,)] = await self.fetchall("SELECT value FROM meta WHERE key = ?", (key,))
        return str(stored)


def own(tx: ApiTx) -> Tx:
    """The caller's transaction is this driver's own: one from this store's ``tx()``."""
    assert isinstance(tx, Tx), "a transaction of another store"
    return tx


class StoreCore:
    """Connections, transactions and the little key/value ``meta`` table."""

    def __init__(self, path: Path, writer: aiosqlite.Connection, reader: aiosqlite.Connection,
                 synchronous: str = "full") -> None:
        self.path = path
        self.synchronous = synchronous
        self._writer = writer
        self._reader = reader
        self._lock = asyncio.Lock()
        self.on_commit: CommitHook | None = None
        self.clock: ClockFollower | None = None
        self.on_failure: FailureHook | None = None
        self.failure: str | None = None  # what broke the disk for this store, once something has
        self.down: str | None = None  # never set: a file is not out of reach, its errors are failures
        self.on_down: DownHook | None = None  # never called, for the same reason

    @classmethod
    async def open(cls, path: Path, synchronous: str = "full") -> Self:
        path.parent.mkdir(parents=True, exist_ok=True)
        migrate.upgrade(path)
        conns: list[aiosqlite.Connection] = []
        try:
            for _ in range(2):
                conns.append(await _connect(path, synchronous))
        except sqlite3.Error as exc:
            for conn in conns:  # an open connection's thread would keep the process alive
                await bounded("closing a connection", conn.close(), CLOSE_STEP_SECONDS)
            raise StoreError(f"database {path}: {exc}") from None
        return cls(path, conns[0], conns[1], synchronous)

    def _failed(self, exc: BaseException) -> None:
        """After a disk error: remember it, tell the daemon once, and raise what callers (and HTTP) understand."""
        if (name := disk_error(exc)) is None:
            return
        if self.failure is None:
            self.failure = f"data dir {self.path.parent}: {exc} ({name})"
            if self.on_failure is not None:
                self.on_failure(self.failure)
        raise StoreUnavailable(f"the database cannot be written ({self.failure}); the daemon is stopping") from None

    async def close(self, seconds: float = 4 * CLOSE_STEP_SECONDS) -> None:
        """Each step bounded and independent: one that fails or hangs never skips the others; all of
        them within ``seconds`` (a quarter each)."""
        step = seconds / 4
        locked = await bounded("waiting for the last transaction", self._lock.acquire(), step)
        try:
            if self.failure is None:  # keeps the planner's statistics fresh; it writes, so not on a failed disk
                # analysis_limit bounds the ANALYZE that optimize may run over millions of rows (SQLite's advice).
                await bounded("PRAGMA optimize", self._writer.execute("PRAGMA analysis_limit=400"), step)
                await bounded("PRAGMA optimize", self._writer.execute("PRAGMA optimize"), step)
            for name, conn in (("reader", self._reader), ("writer", self._writer)):
                await bounded(f"closing the {name} connection", conn.close(), step)
        finally:
            if locked:
                self._lock.release()

    @asynccontextmanager
    async def tx(self) -> AsyncIterator[Tx]:
        """BEGIN IMMEDIATE … COMMIT under the write lock; the commit hook runs before the lock is let go."""
        async with self._lock, self._locked_tx() as tx:
            yield tx

    @asynccontextmanager
    async def _locked_tx(self) -> AsyncIterator[Tx]:
        """``tx`` with the lock held. A step of the wall clock not yet followed moves the stored deadlines
        first, in the same transaction, so nothing in it compares a stepped clock with unmoved deadlines.
        The log rows and COMMIT go in one hand-off."""
        tx = Tx(self._writer)
        if self.failure is not None:
            raise StoreUnavailable(f"the database cannot be written ({self.failure}); the daemon is stopping")
        clock, step = self.clock, 0.0
        try:  # BEGIN inside: a caller cancelled while BEGIN is queued must still roll it back
            await self._writer.execute("BEGIN IMMEDIATE")
            if clock is not None and (step := clock.pending()):  # before the caller compares a deadline
                await clock.shift(self, tx, step)  # type: ignore[arg-type]  # the whole store is SQLiteStore
            yield tx
            await tx.run(tx.commit_now)  # inside too: a failed COMMIT must not leave it open
        except BaseException as exc:
            # None was begun, SQLite rolled it back itself, or the connection is already closed.
            with contextlib.suppress(sqlite3.Error, ValueError):
                await self._writer.execute("ROLLBACK")
            self._failed(exc)
            raise
        if clock is not None and step:
            clock.followed(step)
        await self._committed(tx)

    async def write(self, body: Callable[[Tx, sqlite3.Connection], T]) -> T:
        """A whole write transaction in one hand-off to the writer's thread: BEGIN IMMEDIATE, ``body``
        (synchronous: its statements on the sqlite3 connection, its changes on the Tx), the log rows and
        COMMIT, all or nothing; then the commit hook, as ``tx``. For the hot paths (a pull, a report), where
        the hand-offs of a statement at a time cost more than the statements. While a step of the wall
        clock waits to be followed, ``body`` runs inside ``tx`` instead (the shift is not synchronous)."""
        async with self._lock:
            if self.clock is not None and self.clock.pending():
                async with self._locked_tx() as slow:
                    return await slow.run(lambda conn: body(slow, conn))
            if self.failure is not None:
                raise StoreUnavailable(f"the database cannot be written ({self.failure}); the daemon is stopping")
            tx = Tx(self._writer)
            try:
                result = await tx.run(lambda conn: tx.whole(conn, body))
            except BaseException as exc:
                self._failed(exc)
                raise
            await self._committed(tx)
            return result

    async def _committed(self, tx: Tx) -> None:
        if self.on_commit is not None and (tx.accounts or tx.quotas or tx.events):
            try:
                await self.on_commit(tx)
            except sqlite3.Error as exc:  # its reads run on the writer: the same disk
                self._failed(exc)
                raise

    async def read(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> Iterable[sqlite3.Row]:
        """A read on the reader connection: it never waits for a writer."""
        try:
            return await self._reader.execute_fetchall(sql, params)
        except sqlite3.Error as exc:
            self._failed(exc)
            raise

    async def backup(self, target: Path, *, replace: bool = False) -> int:
        """A consistent copy of the live database at ``target``, on a connection and thread of its own
        (store.backup): the writer and the reader go on meanwhile. The copy's size in bytes."""
        size = await _in_daemon_thread(copy_database, self.path, target, replace=replace)
        async with self.tx() as tx:  # the audit trail says where copies of the auth keys went
            await tx.event("store.backup", f"backup written to {target}", data={"path": str(target), "bytes": size})
        return size

    async def get_meta(self, key: str) -> str | None:
        rows = list(await self.read("SELECT value FROM meta WHERE key = ?", (key,)))
        return rows[0][0] if rows else None

    async def set_meta(self, tx: ApiTx, key: str, value: str) -> None:
        await tx.set_meta(key, value)

    async def listen(self, callback: Callable[[int], None]) -> None:
        """Nothing to hear: the data dir's lock leaves one daemon writing, and its commit hook sees every commit."""
