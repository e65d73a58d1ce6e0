"""The connection pair and the transaction that records what changed.

One writer connection behind an asyncio lock (the daemon is the only
writer), one reader connection for large listings, which WAL lets run while a
write is in progress. Every write goes through ``Store.tx()``, whose ``Tx``
collects the accounts it touched and the events it wrote; the commit hook
turns those into stream deltas while the write lock is still held, so deltas
leave in commit order.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Protocol

import aiosqlite

from tgdaemon.errors import StoreError
from tgdaemon.store import migrate
from tgdaemon.store.backup import copy_database
from tgdaemon.timeutil import now

# aiosqlite logs every statement with its parameters at DEBUG: auth keys among them.
logging.getLogger("aiosqlite").setLevel(logging.INFO)


async def _connect(path: Path) -> aiosqlite.Connection:
    conn = await aiosqlite.connect(path, isolation_level=None)
    conn.row_factory = sqlite3.Row
    await conn.execute("PRAGMA foreign_keys=ON")
    await conn.execute("PRAGMA synchronous=NORMAL")
    await conn.execute("PRAGMA busy_timeout=5000")
    return conn


class Tx:
    """One write transaction, and what it changed."""

    def __init__(self, conn: aiosqlite.Connection) -> None:
        self.conn = conn
        self.accounts: set[int] = set()
        self.quotas: set[int] = set()
        self.events: list[dict[str, Any]] = []

    async def execute(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> aiosqlite.Cursor:
        return await self.conn.execute(sql, params)

    async def fetchall(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> Iterable[sqlite3.Row]:
        return await self.conn.execute_fetchall(sql, params)

    async def events_many(self, events: list[dict[str, Any]]) -> None:
        """Many events in one statement; AUTOINCREMENT ids are consecutive under the one writer."""
        if not events:
            return
        at = now()
        await self.conn.executemany(
            "INSERT INTO events (at, kind, account_id, task_id, quota_id, message, data_json)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            [(at, e["kind"], e.get("account_id"), e.get("task_id"), e.get("quota_id"), e["message"],
              json.dumps(e.get("data") or {}, separators=(",", ":"))) for e in events])
        last = next(iter(await self.fetchall("SELECT seq FROM sqlite_sequence WHERE name = 'events'")))[0]
        for offset, e in enumerate(events, start=last - len(events) + 1):
            self.events.append({"id": offset, "at": at, "kind": e["kind"], "account_id": e.get("account_id"),
                                "task_id": e.get("task_id"), "quota_id": e.get("quota_id"),
                                "message": e["message"], "data": e.get("data") or {}})
            if e.get("account_id") is not None:
                self.touch(e["account_id"])

    def touch_quota(self, quota_id: int) -> None:
        self.quotas.add(quota_id)

    def touch(self, account_id: int) -> None:
        """Mark an account as changed, so its new state is published after commit."""
        self.accounts.add(account_id)

    async def event(self, kind: str, message: str, *, account_id: int | None = None,
                    task_id: int | None = None, quota_id: int | None = None,
                    data: dict[str, Any] | None = None) -> None:
        """Append to the audit trail; the caller must keep secrets out of ``message`` and ``data``."""
        at = now()
        data_json = json.dumps(data or {}, separators=(",", ":"))
        cur = await self.conn.execute(
            "INSERT INTO events (at, kind, account_id, task_id, quota_id, message, data_json)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            (at, kind, account_id, task_id, quota_id, message, data_json),
        )
        self.events.append({
            "id": cur.lastrowid, "at": at, "kind": kind, "account_id": account_id,
            "task_id": task_id, "quota_id": quota_id, "message": message, "data": data or {},
        })
        if account_id is not None:
            self.touch(account_id)


CommitHook = Callable[[Tx], Awaitable[None]]


class ClockFollower(Protocol):
    """Moves stored deadlines with a step of the wall clock (tgdaemon/clockstep.py)."""

    def pending(self) -> float: ...

    async def shift(self, tx: Tx, step: float) -> None: ...

    def followed(self, step: float) -> None: ...


class StoreCore:
    """Connections, transactions and the little key/value ``meta`` table."""

    def __init__(self, path: Path, writer: aiosqlite.Connection, reader: aiosqlite.Connection) -> None:
        self.path = path
        self._writer = writer
        self._reader = reader
        self._lock = asyncio.Lock()
        self.on_commit: CommitHook | None = None
        self.clock: ClockFollower | None = None

    @classmethod
    async def open(cls, path: Path) -> "StoreCore":
        path.parent.mkdir(parents=True, exist_ok=True)
        migrate.upgrade(path)
        try:
            writer = await _connect(path)
            reader = await _connect(path)
        except sqlite3.Error as exc:
            raise StoreError(f"database {path}: {exc}") from None
        return cls(path, writer, reader)

    async def close(self) -> None:
        async with self._lock:
            await self._writer.execute("PRAGMA optimize")  # keeps the planner's statistics fresh
            for conn in (self._reader, self._writer):
                await conn.close()

    @asynccontextmanager
    async def tx(self) -> AsyncIterator[Tx]:
        """BEGIN IMMEDIATE … COMMIT under the write lock; the commit hook runs before the lock is let go.
        A step of the wall clock not yet followed moves the stored deadlines first, in the same
        transaction, so nothing in it compares a stepped clock with unmoved deadlines."""
        async with self._lock:
            tx = Tx(self._writer)
            clock, step = self.clock, 0.0
            try:  # BEGIN inside: a caller cancelled while BEGIN is queued must still roll it back
                await self._writer.execute("BEGIN IMMEDIATE")
                if clock is not None and (step := clock.pending()):  # before the caller compares a deadline
                    await clock.shift(tx, step)
                yield tx
            except BaseException:
                with contextlib.suppress(sqlite3.OperationalError):  # no transaction was begun
                    await self._writer.execute("ROLLBACK")
                raise
            await self._writer.execute("COMMIT")
            if clock is not None and step:
                clock.followed(step)
            if self.on_commit is not None and (tx.accounts or tx.quotas or tx.events):
                await self.on_commit(tx)

    async def read(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> Iterable[sqlite3.Row]:
        """A read on the reader connection: it never waits for a writer."""
        return await self._reader.execute_fetchall(sql, params)

    async def backup(self, target: Path, *, replace: bool = False) -> int:
        """A consistent copy of the live database at ``target``, on a connection and thread of its own
        (store.backup): the writer and the reader go on meanwhile. The copy's size in bytes."""
        size = await asyncio.to_thread(copy_database, self.path, target, replace=replace)
        async with self.tx() as tx:  # the audit trail says where copies of the auth keys went
            await tx.event("store.backup", f"backup written to {target}", data={"path": str(target), "bytes": size})
        return size

    async def get_meta(self, key: str) -> str | None:
        rows = list(await self.read("SELECT value FROM meta WHERE key = ?", (key,)))
        return rows[0][0] if rows else None

    async def set_meta(self, tx: Tx, key: str, value: str) -> None:
        await tx.execute(
            "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (key, value),
        )
