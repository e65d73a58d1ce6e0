"""The writer connection, the readers' pool and the transaction that records what changed, on PostgreSQL.

As on SQLite, one writer connection behind an asyncio lock, and readers beside it: a transaction takes the
lock, BEGIN … COMMIT on the writer, and runs the commit hook before it lets the lock go. A dedicated writer,
not one taken from the pool, because a pool's release resets the connection: one more round trip on
every transaction. Reads run on a pool of their own connections and never wait for the writer.

The event log is the stream's source (tgdaemon/stream.py): what a transaction touched that none of its
events names goes in the log as one ``changes`` row just before COMMIT, as on SQLite. The stream follows
the log by id, so log ids must become visible in increasing order: a follower that has read up to N never
looks below N again. Several daemons write to one database at once, so a transaction's log rows (held
until then, tgdaemon/store/txlog.py) are written in one statement just before its COMMIT, under
``pg_advisory_xact_lock(LOG_LOCK)`` taken by that statement before it takes an id and held to the COMMIT:
the next writer takes its ids only once this one is committed (and visible: a transaction is visible
before its locks are let go). The lock is the transaction's last: it waits for no row lock while holding
it, so no cycle of waits can pass through it. The statement's insert waits for one row lock only, the
``row_counts`` counter of events (its trigger), which no transaction takes but under the same lock (the
log's rows, and retention's DELETE of old ones, take the lock first). ``events`` has no foreign key:
its insert takes no lock on an account (a foreign key would take ``FOR KEY SHARE`` of the account row,
which waits for a lease's ``FOR UPDATE`` of it). The same statement sends ``pg_notify(LOG_CHANNEL,
<last id>)``, delivered at COMMIT, which wakes every daemon's stream (``listen``, tgdaemon/store/postgres/listener.py).

A database that goes away while the daemon runs (the server stopped or restarted, the connection reset,
an administrator's shutdown) is not a failure of the store: the writer connects anew at the next
transaction, the pool at the next read. Such an error raises ``StoreDisconnected`` and sets ``down``
(what is wrong, one line, no password) until a transaction succeeds again; the store is never marked
failed for it. ``on_down`` hears of both changes; saying them to the operator is its business
(tgdaemon/lifecycle/storewatch.py), so a store used without one logs nothing of it.

JSON: jsonb columns go in and come out as text (asyncpg's own jsonb codec, which is C code: a Python
codec set per connection would cost a call per value). The statements bind ``json.dumps`` text and
cast it (``$1::jsonb``) and the row views ``json.loads`` it, exactly as on SQLite, so one view serves
both drivers.
"""

from __future__ import annotations

import asyncio
import functools
import json
import random
import re
from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Coroutine,
    Iterable,
    Mapping,
    Sequence,
)
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any, Concatenate, Literal, ParamSpec, Self, TypeVar

import asyncpg
from asyncpg import Record

from tgdaemon.bounded import bounded
from tgdaemon.errors import BackupError, StoreDisconnected, StoreError, StoreUnavailable
from tgdaemon.store.api import (
    ClockFollower,
    CommitHook,
    DownHook,
    FailureHook,
)
from tgdaemon.store.api import Tx as ApiTx
from tgdaemon.store.postgres import migrate
from tgdaemon.store.postgres.listener import Listener
from tgdaemon.store.postgres.url import password_in, redact, where
from tgdaemon.store.txlog import TxLog

T = TypeVar("T")
Connect = Callable[[], Awaitable[asyncpg.Connection]]

SYNCHRONOUS = {"full": "on", "normal": "off"}  # [store] synchronous -> synchronous_commit
POOL_READERS = 6  # besides the one writer: listings, the stream's snapshots, status, the provider API's reads
CONNECT_SECONDS = 10.0
IDLE_IN_TX = "10s"  # none of the daemon's transactions waits on anything but the database inside
CLOSE_STEP_SECONDS = 1.5


class PgDumpOnly(BackupError):
    """``tgdaemon backup`` copies a SQLite file; a PostgreSQL database is backed up with pg_dump."""


CONFLICT_ATTEMPTS = 4
P = ParamSpec("P")
R = TypeVar("R")
S = TypeVar("S")


def retried(method: Callable[Concatenate[S, P], Coroutine[Any, Any, R]],
            ) -> Callable[Concatenate[S, P], Coroutine[Any, Any, R]]:
    """For a method that is one transaction of its own: run again when PostgreSQL rolled it back to break a
    deadlock with another node's (two daemons locking one account's rows in different orders: an acquisition
    and a report, say). Nothing of it was committed, and it holds nothing outside the transaction."""

    @functools.wraps(method)
    async def run(self: S, *args: P.args, **kwargs: P.kwargs) -> R:
        for attempt in range(1, CONFLICT_ATTEMPTS + 1):
            try:
                return await method(self, *args, **kwargs)
            except asyncpg.TransactionRollbackError:  # deadlock_detected, serialization_failure
                if attempt == CONFLICT_ATTEMPTS:
                    raise
                await asyncio.sleep(random.uniform(0, 0.02 * attempt))  # apart, so they do not meet again
        raise AssertionError("unreachable")

    return run


def rowcount(status: str) -> int:
    """Rows a statement touched, from its command tag (``UPDATE 3``, ``INSERT 0 3``, ``DELETE 0``)."""
    last = status.rpartition(" ")[2]
    return int(last) if last.isdigit() else 0


class Params:
    """Positional parameters for a statement built piece by piece: ``p(value)`` gives its ``$n``."""

    def __init__(self, *values: Any) -> None:
        self.values: list[Any] = list(values)

    def __call__(self, value: Any) -> str:
        self.values.append(value)
        return f"${len(self.values)}"


_NAMED = re.compile(r"(?<![:\w]):([a-z_]\w*)")  # :name, not a ::cast nor the colon inside 'setup:%'


def named(sql: str, params: Mapping[str, Any]) -> tuple[str, list[Any]]:
    """A statement written with SQLite's ``:name`` parameters as asyncpg's ``$n`` ones, and their values:
    for the long statements ported from the SQLite driver, where numbering by hand invites mistakes."""
    order: dict[str, str] = {}

    def number(match: re.Match[str]) -> str:
        return order.setdefault(match[1], f"${len(order) + 1}")

    return _NAMED.sub(number, sql), [params[name] for name in order]


def connection_lost(exc: BaseException) -> bool:
    """Whether ``exc`` says the server cannot be reached (not that a statement was wrong): a closed or
    reset connection, a server shutting down or starting up, no connection slot, no disk on the server."""
    if isinstance(exc, asyncpg.PostgresConnectionError | OSError):  # OSError: refused, reset, timed out
        return True
    if isinstance(exc, asyncpg.exceptions.OperatorInterventionError):
        return not isinstance(exc, asyncpg.exceptions.QueryCanceledError)  # a cancel is the statement's own
    return isinstance(exc, asyncpg.exceptions.InsufficientResourcesError | asyncpg.exceptions.CannotConnectNowError)


def _text(exc: BaseException, secrets: Iterable[str]) -> str:
    """One line for an exception, with any password it might quote taken out."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


LOG_CHANNEL = "tgfleet_log"  # NOTIFY'd with the last id of every commit that wrote log rows
LOG_LOCK = 0x7467666C6565743A  # "tgfleet:": the advisory lock that orders the log's ids by commit
# Every log row of one transaction, the lock first: an uncorrelated sub-select in WHERE is an InitPlan, a
# one-time filter evaluated before the first row reaches the insert and takes its id from the sequence.
WRITE_LOG = ("WITH ev AS (INSERT INTO events (at, kind, account_id, task_id, quota_id, message, data_json)"
             " SELECT e.at, e.k, e.a, e.t, e.q, e.m, e.d::jsonb FROM unnest($1::float8[], $2::text[], $3::bigint[],"
             " $4::bigint[], $5::bigint[], $6::text[], $7::text[]) WITH ORDINALITY AS e(at, k, a, t, q, m, d, o)"
             f" WHERE (SELECT pg_advisory_xact_lock({LOG_LOCK}) IS NOT NULL) ORDER BY e.o RETURNING id)"
             f" SELECT array_agg(id ORDER BY id) AS ids, pg_notify('{LOG_CHANNEL}', max(id)::text) FROM ev")


class Tx(TxLog):
    """One write transaction on one pool connection, and what it changed.

    Besides the ``tgdaemon.store.api.Tx`` methods, the driver's own statements go through
    ``execute`` (the row count), ``fetch``, ``fetchrow``, ``fetchval`` and ``executemany``; each turns
    a lost connection into ``StoreDisconnected``.
    """

    def __init__(self, conn: asyncpg.Connection, core: PostgresCore) -> None:
        super().__init__()
        self._conn = conn
        self._core = core
        self.broken = False  # the connection was lost: nothing to roll back, it has left the pool

    async def _run(self, aw: Awaitable[T]) -> T:
        try:
            return await aw
        except Exception as exc:
            # A connection the server ended can also surface as the protocol's confusion (InternalClientError:
            # "another operation is in progress") or as "connection is closed" (InterfaceError).
            if connection_lost(exc) or self._conn.is_closed() or isinstance(exc, asyncpg.InternalClientError):
                self.broken = True
                self._conn.terminate()  # never back into the pool as it is: the pool connects anew
                raise self._core.lost(exc) from None
            raise

    async def execute(self, sql: str, *args: Any) -> int:
        """Run one statement; the number of rows it touched."""
        return rowcount(await self._run(self._conn.execute(sql, *args)))

    async def fetch(self, sql: str, *args: Any) -> list[Record]:
        return await self._run(self._conn.fetch(sql, *args))

    async def fetchrow(self, sql: str, *args: Any) -> Record | None:
        return await self._run(self._conn.fetchrow(sql, *args))

    async def fetchval(self, sql: str, *args: Any) -> Any:
        return await self._run(self._conn.fetchval(sql, *args))

    async def executemany(self, sql: str, args: Iterable[Sequence[Any]]) -> None:
        """One prepared statement run for every argument tuple, in one round trip (no row count:
        where a count matters, use one statement over ``unnest`` arrays with RETURNING)."""
        args = list(args)
        if args:
            await self._run(self._conn.executemany(sql, args))

    async def write_log(self, rows: Sequence[dict[str, Any]]) -> Sequence[int]:
        """The transaction's log rows, at its end, in one statement that takes the log's lock first (the
        module's docstring); their ids in insertion order."""
        row = await self.fetchrow(
            WRITE_LOG, [e["at"] for e in rows], [e["kind"] for e in rows], [e["account_id"] for e in rows],
            [e["task_id"] for e in rows], [e["quota_id"] for e in rows], [e["message"] for e in rows],
            [json.dumps(e["data"], separators=(",", ":")) for e in rows])
        assert row is not None
        ids: list[int] = row["ids"]
        return ids

    async def set_meta(self, key: str, value: str) -> None:
        """A key of the little ``meta`` table, in this transaction (for parts that hold a Tx, not the store)."""
        await self.execute("INSERT INTO meta (key, value) VALUES ($1, $2)"
                           " ON CONFLICT (key) DO UPDATE SET value = excluded.value", key, value)

    async def setdefault_meta(self, key: str, value: str) -> str:
        # The insert waits for another transaction's uncommitted row of the key; the next statement sees
        # that row once committed (READ COMMITTED: a new snapshot per statement).
        await self.execute("INSERT INTO meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING", key, value)
        stored: str = await self.fetchval("SELECT value FROM meta WHERE key = $1", key)
        return stored


def own(tx: ApiTx) -> Tx:
    """The caller's transaction is this driver's own: one from this store's ``tx()``."""
    assert isinstance(tx, Tx), "a transaction of another store"
    return tx


class PostgresCore:
    """The writer connection, the readers' pool, transactions and the little key/value ``meta`` table."""

    kind: Literal["sqlite", "postgresql"] = "postgresql"

    def __init__(self, connect: Connect, writer: asyncpg.Connection, pool: asyncpg.Pool, url: str, synchronous: str,
                 secrets: tuple[str, ...] = ()) -> None:
        self.url = redact(url)  # what status and logs show
        self.where = where(url)  # host:port/database, for one-line messages
        self.synchronous = synchronous
        self._connect = connect
        self._writer: asyncpg.Connection | None = writer
        self._pool = pool
        self._secrets = secrets
        self._lock = asyncio.Lock()
        self.on_commit: CommitHook | None = None
        self.clock: ClockFollower | None = None
        self.on_failure: FailureHook | None = None  # never called: a lost server is ``down``, not a failure
        self.on_down: DownHook | None = None  # told what is wrong when the server is lost, None when it is back
        self.failure: str | None = None
        self.down: str | None = None  # what is wrong while the server cannot be reached
        self.listener = Listener(connect, LOG_CHANNEL, self._writer_pid)  # its own connection, once listening

    @classmethod
    async def open(cls, url: str, *, password: str | None = None, synchronous: str = "full") -> Self:
        """Connect, migrate, and give the store; one line naming the server and the error when it cannot.
        ``password``: from ``[store] password_file``; without it libpq's sources apply (PGPASSWORD, ~/.pgpass)."""
        if synchronous not in SYNCHRONOUS:
            raise StoreError(f"store synchronous {synchronous!r}: one of {', '.join(SYNCHRONOUS)}")
        place = where(url)
        secrets = tuple(s for s in (password, password_in(url)) if s)
        settings = {"dsn": url, "password": password, "timeout": CONNECT_SECONDS,
                    "server_settings": {"synchronous_commit": SYNCHRONOUS[synchronous], "application_name": "tgdaemon",
                                        "jit": "off",  # JIT compiles long plans: tens of ms lost on a listing
                                        # A daemon stalled inside a transaction (SIGSTOP, a frozen VM) would hold
                                        # its row locks, and so every other node, for as long as it stalls.
                                        "idle_in_transaction_session_timeout": IDLE_IN_TX}}

        async def connect() -> asyncpg.Connection:
            return await asyncpg.connect(**settings)

        try:
            writer = await connect()
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, ValueError) as exc:
            raise StoreError(f"database {place}: cannot connect: {_text(exc, secrets)}") from None
        try:
            await migrate.upgrade(writer, redact(url))
            # min_size 0: no connection is kept open for its own sake, so none is retried in the background
            # (with a log line each time) while the server is away; readers connect when they first read.
            pool = await asyncpg.create_pool(min_size=0, max_size=POOL_READERS, **settings)
        except StoreError:
            await bounded("closing the writer connection", writer.close(), CLOSE_STEP_SECONDS)
            raise
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            await bounded("closing the writer connection", writer.close(), CLOSE_STEP_SECONDS)
            raise StoreError(f"database {place}: {_text(exc, secrets)}") from None
        return cls(connect, writer, pool, url, synchronous, secrets)

    def _writer_pid(self) -> int | None:
        writer = self._writer
        return writer.get_server_pid() if writer is not None and not writer.is_closed() else None

    def lost(self, exc: BaseException) -> StoreDisconnected:
        """The server cannot be reached: say so once (``down``, ``on_down``) and give what callers raise."""
        why = f"database {self.where}: {_text(exc, self._secrets)}"
        if self.down is None:
            self.down = why
            if self.on_down is not None:
                self.on_down(why)
        return StoreDisconnected(f"the database cannot be reached ({why}); waiting for it to return")

    def _back(self) -> None:
        if self.down is not None:
            self.down = None
            if self.on_down is not None:
                self.on_down(None)

    async def _pooled(self, read: Callable[[], Awaitable[T]]) -> T:
        """A read on the pool, once more on another connection when the first was one the server had ended
        (kept from before a restart: its first use finds it gone), so a stale connection alone does not mark a
        database that is back as lost again. A read changes nothing: running it twice is harmless."""
        for attempt in (1, 2):
            try:
                return await read()
            except Exception as exc:
                # A pooled connection is never used by two callers at once: the protocol's confusion can only be
                # a connection the server was ending as it was handed out (its FATAL in, its close not yet seen),
                # as happens to a read started the moment the server shuts down (the stream's poll reads every
                # second).
                if not (connection_lost(exc) or isinstance(exc, asyncpg.InternalClientError)):
                    raise
                if attempt == 2 or self.down is not None:
                    raise self.lost(exc) from None
        raise AssertionError("unreachable")

    async def _writer_connection(self) -> asyncpg.Connection:
        """The writer, connected anew after it was lost (or left inside a transaction by a cancelled caller)."""
        conn = self._writer
        if conn is not None and not conn.is_closed() and not conn.is_in_transaction():
            return conn
        if conn is not None:
            conn.terminate()
        self._writer = None
        try:
            self._writer = await self._connect()
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            # Whatever refuses a new session (a server starting, a database closed to connections, a role's
            # password changed) leaves the daemon without its database until it is fixed: down, not a bug.
            raise self.lost(exc) from None
        return self._writer

    async def close(self, seconds: float = 2 * CLOSE_STEP_SECONDS) -> None:
        """Each step bounded: the listener stops, the last transaction finishes, then the writer and the pool
        close (or are cut off)."""
        await self.listener.close()  # first: nothing is told of commits while the store closes
        step = seconds / 2
        locked = await bounded("waiting for the last transaction", self._lock.acquire(), step)
        try:
            writer, self._writer = self._writer, None
            closing = [self._pool.close()] + ([writer.close()] if writer is not None else [])
            if not await bounded("closing the connections", asyncio.gather(*closing), step):
                self._pool.terminate()
                if writer is not None:
                    writer.terminate()
        finally:
            if locked:
                self._lock.release()

    def tx(self) -> AbstractAsyncContextManager[Tx]:
        return self.setting_tx()

    @asynccontextmanager
    async def setting_tx(self, *, local: str = "") -> AsyncIterator[Tx]:
        """``tx()`` with a setting: BEGIN … COMMIT on the writer under the write lock; the commit hook runs before the lock is let go.
        A step of the wall clock not yet followed moves the stored deadlines first, in the same
        transaction, so nothing in it compares a stepped clock with unmoved deadlines. ``local``: a setting
        for this transaction only (``SET LOCAL``), sent with BEGIN in one round trip."""
        async with self._lock:
            if self.failure is not None:
                raise StoreUnavailable(f"the database cannot be written ({self.failure}); the daemon is stopping")
            conn = await self._writer_connection()
            tx = Tx(conn, self)
            clock, step = self.clock, 0.0
            try:  # BEGIN inside: a caller cancelled while BEGIN is in flight must still roll it back
                await tx.execute(f"BEGIN; SET LOCAL {local}" if local else "BEGIN")  # no parameters: one message
                if clock is not None and (step := clock.pending()):  # before the caller compares a deadline
                    await clock.shift(self, tx, step)  # type: ignore[arg-type]  # the whole store is PostgresStore
                yield tx
                await tx.log_changes()  # last: under the log's lock until COMMIT (the module's docstring)
                await tx.execute("COMMIT")
            except BaseException:
                if not tx.broken:  # a lost connection has nothing to roll back
                    try:
                        await conn.execute("ROLLBACK")
                    except Exception:  # mid-cancellation, or gone meanwhile: the next transaction connects anew
                        conn.terminate()
                raise
            self._back()
            if clock is not None and step:
                clock.followed(step)
            if self.on_commit is not None and (tx.accounts or tx.quotas or tx.events):
                await self.on_commit(tx)

    async def read(self, sql: str, *args: Any) -> list[Record]:
        """Rows read on a pool connection of their own: never waits for the writer."""
        return await self._pooled(lambda: self._pool.fetch(sql, *args))

    async def read_row(self, sql: str, *args: Any) -> Record | None:
        return await self._pooled(lambda: self._pool.fetchrow(sql, *args))

    async def read_val(self, sql: str, *args: Any) -> Any:
        return await self._pooled(lambda: self._pool.fetchval(sql, *args))

    async def backup(self, target: Path, *, replace: bool = False) -> int:
        raise PgDumpOnly(f"backup {target}: the store is PostgreSQL ({self.where}); back it up with pg_dump"
                         " (docs/postgresql.md), tgdaemon backup copies a SQLite store")

    async def listen(self, callback: Callable[[int], None]) -> None:
        """``callback(last id)`` for every other store's commit to the event log (this one's reach the commit
        hook), and once each time it starts listening (listener.py)."""
        await self.listener.add(callback)

    async def get_meta(self, key: str) -> str | None:
        value: str | None = await self.read_val("SELECT value FROM meta WHERE key = $1", key)
        return value

    async def set_meta(self, tx: ApiTx, key: str, value: str) -> None:
        await tx.set_meta(key, value)

