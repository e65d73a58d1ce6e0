"""The PostgreSQL end of ``tgdaemon store copy``: the tables as the copy sees them, read and written in batches.

A connection of its own at each end, named ``tgdaemon store copy`` (the daemon's are ``tgdaemon``: one
connected to either database refuses the copy). The source is read in one REPEATABLE READ transaction
whose first statement locks every table in SHARE mode: one snapshot, and no daemon that starts meanwhile
can write to it before the copy ends. The target is written in one transaction that locks every table
first (ACCESS EXCLUSIVE: nothing else even reads it half-filled), by binary COPY, batch by batch, and is
committed only once the copy verified: a failed copy leaves nothing behind. Its identity sequences are
moved past the copied ids in the same transaction, just before the commit (setval is not undone by a
rollback: done any earlier, a failed copy would leave the sequences moved).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncGenerator, Awaitable, Iterator, Sequence
from typing import Any, TypeVar

import asyncpg

from tgdaemon.errors import StoreError
from tgdaemon.store.connect import StoreURL
from tgdaemon.store.copy import Column, CopyError, Row, Table
from tgdaemon.store.postgres import migrate
from tgdaemon.store.postgres.url import where

T = TypeVar("T")
APPLICATION = "tgdaemon store copy"
DAEMON_APPLICATION = "tgdaemon"  # what the driver's pool names its connections
CONNECT_SECONDS = 10.0
LOCK_TIMEOUT = "10s"  # a table another session holds (a daemon mid-write) is waited for this long, then refused
KINDS = {"int2": "int", "int4": "int", "int8": "int", "float4": "float", "float8": "float", "text": "text",
         "varchar": "text", "bytea": "bytes", "jsonb": "json", "json": "json"}
BOOKKEEPING = ("tgfleet_schema_migrations",)  # each database keeps its own (migrate.TABLE)
# Kept by triggers on events, tasks, account_tasks and task_attempts; a fresh schema seeds its counters at zero.
DERIVED = {"row_counts": "n != 0", "finished_counts": "n != 0", "lane_counts": "n != 0",
           "pulse_counts": "n != 0"}

_COLUMNS = """
SELECT c.relname, a.attname, t.typname, a.attidentity <> '' AS identity
FROM pg_attribute a
JOIN pg_class c ON c.oid = a.attrelid
JOIN pg_type t ON t.oid = a.atttypid
WHERE c.relnamespace = current_schema()::regnamespace AND c.relkind = 'r' AND a.attnum > 0
  AND NOT a.attisdropped AND c.relname <> ALL($1::text[])
ORDER BY c.relname, a.attnum
"""
_KEYS = """
SELECT c.relname, a.attname
FROM pg_constraint k
JOIN pg_class c ON c.oid = k.conrelid
CROSS JOIN LATERAL unnest(k.conkey) WITH ORDINALITY AS u(attnum, position)
JOIN pg_attribute a ON a.attrelid = k.conrelid AND a.attnum = u.attnum
WHERE k.contype = 'p' AND c.relnamespace = current_schema()::regnamespace
ORDER BY c.relname, u.position
"""
_REFERENCES = """
SELECT c.relname, r.relname
FROM pg_constraint k
JOIN pg_class c ON c.oid = k.conrelid
JOIN pg_class r ON r.oid = k.confrelid
WHERE k.contype = 'f' AND c.relnamespace = current_schema()::regnamespace
"""


def quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _compact(text: str | None) -> str | None:
    """jsonb as the daemon writes JSON (no spaces), whatever the server prints."""
    return None if text is None else json.dumps(json.loads(text), separators=(",", ":"))


@contextlib.contextmanager
def failing(place: str) -> Iterator[None]:
    """The server's refusal or a lost connection, as one line naming the database."""
    try:
        yield
    except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as exc:
        raise CopyError(f"{place}: {' '.join(str(exc).split()) or type(exc).__name__}") from None


class PostgresEnd:
    """What both ends share: the schema, reads in key order, counts."""

    def __init__(self, url: StoreURL, conn: asyncpg.Connection, identity: str, notes: list[str]) -> None:
        self.where = url.url
        self.identity = identity
        self.notes = notes
        self._conn = conn
        self._identities: dict[str, str] = {}  # table -> its identity column

    async def _run(self, aw: Awaitable[T]) -> T:
        with failing(self.where):
            return await aw

    async def tables(self) -> dict[str, Table]:
        columns: dict[str, list[Column]] = {}
        for table, column, typname, identity in await self._run(self._conn.fetch(_COLUMNS, list(BOOKKEEPING))):
            kind = KINDS.get(typname)
            if kind is None:
                raise CopyError(f"{self.where}: column {table}.{column} has a type the copy does not know"
                                f" ({typname})")
            columns.setdefault(table, []).append(Column(column, kind))
            if identity:
                self._identities[table] = column
        keys: dict[str, list[str]] = {}
        for table, column in await self._run(self._conn.fetch(_KEYS)):
            keys.setdefault(table, []).append(column)
        references: dict[str, set[str]] = {}
        for table, referenced in await self._run(self._conn.fetch(_REFERENCES)):
            references.setdefault(table, set()).add(referenced)
        out = {}
        for table, cols in columns.items():
            if table not in keys:
                raise CopyError(f"{self.where}: table {table} has no primary key to copy it in order")
            out[table] = Table(table, tuple(cols), tuple(keys[table]), frozenset(references.get(table, ())),
                               derived=table in DERIVED)
        return out

    async def rows(self, table: Table, columns: Sequence[str], batch: int) -> AsyncGenerator[list[Row], None]:
        kinds = table.kinds()
        # "C": text keys in the order of their bytes, as SQLite (BINARY) and Python sort them.
        order = ", ".join(quote(k) + (' COLLATE "C"' if kinds[k] == "text" else "") for k in table.key)
        sql = f"SELECT {', '.join(map(quote, columns))} FROM {quote(table.name)} ORDER BY {order}"
        json_at = [i for i, c in enumerate(columns) if kinds[c] == "json"]
        cursor = await self._run(self._conn.cursor(sql))
        while records := await self._run(cursor.fetch(batch)):
            if not json_at:
                yield [tuple(r) for r in records]
                continue
            rows = []
            for record in records:
                values = list(record)
                for i in json_at:
                    values[i] = _compact(values[i])
                rows.append(tuple(values))
            yield rows

    async def count(self, table: Table) -> int:
        return int(await self._run(self._conn.fetchval(f"SELECT count(*) FROM {quote(table.name)}")))

    async def _lock(self, names: list[str], mode: str) -> None:
        """Every table, in one statement: all or none, never a deadlock with another copy."""
        try:
            await self._run(self._conn.execute(f"LOCK TABLE {', '.join(map(quote, names))} IN {mode} MODE"))
        except asyncpg.exceptions.LockNotAvailableError:
            raise CopyError(f"{self.where}: its tables stayed in use by another session for {LOCK_TIMEOUT};"
                            " stop every daemon on it first") from None

    async def close(self) -> None:
        try:
            await self._conn.close(timeout=CONNECT_SECONDS)
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError):
            self._conn.terminate()  # the server is gone: nothing to say goodbye to


class PostgresSource(PostgresEnd):
    async def high_water(self) -> dict[str, int]:
        """The last value each identity gave: never given again on the target, even past a deleted tail."""
        out = {}
        for table, column in self._identities.items():
            last = await self._run(self._conn.fetchval(
                "SELECT pg_sequence_last_value(pg_get_serial_sequence($1, $2)::regclass)", quote(table), column))
            if last is not None:
                out[table] = int(last)
        return out


class PostgresTarget(PostgresEnd):
    def __init__(self, url: StoreURL, conn: asyncpg.Connection, identity: str, notes: list[str]) -> None:
        super().__init__(url, conn, identity, notes)
        self._tx: Any = None

    async def begin(self) -> None:
        names = await self._run(_table_names(self._conn))
        self._tx = self._conn.transaction()
        await self._run(self._tx.start())
        await self._lock(names, "ACCESS EXCLUSIVE")

    async def occupied(self, tables: Sequence[Table]) -> list[str]:
        out = []
        for table in tables:
            extra = f" WHERE {DERIVED[table.name]}" if table.name in DERIVED else ""
            if await self._run(self._conn.fetchval(f"SELECT EXISTS (SELECT 1 FROM {quote(table.name)}{extra})")):
                out.append(table.name)
        return out

    async def clear(self, table: Table) -> None:
        await self._run(self._conn.execute(f"DELETE FROM {quote(table.name)}"))

    async def write(self, table: Table, columns: Sequence[str], rows: list[Row]) -> None:
        try:
            await self._conn.copy_records_to_table(table.name, records=rows, columns=list(columns))
        except (asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            raise CopyError(f"target {self.where}: table {table.name}: {' '.join(str(exc).split())}") from None

    async def commit(self, high_water: dict[str, int]) -> None:
        for table, column in self._identities.items():
            top = await self._run(self._conn.fetchval(f"SELECT max({quote(column)}) FROM {quote(table)}"))
            last = max(int(top or 0), high_water.get(table, 0))
            if last > 0:
                await self._run(self._conn.execute("SELECT setval(pg_get_serial_sequence($1, $2), $3)",
                                                   quote(table), column, last))
        await self._run(self._tx.commit())
        self._tx = None

    async def abort(self) -> None:
        if self._tx is not None and not self._conn.is_closed():
            tx, self._tx = self._tx, None
            with contextlib.suppress(asyncpg.PostgresError, asyncpg.InterfaceError, OSError):
                await tx.rollback()  # a connection lost meanwhile rolled it back itself

    async def close(self) -> None:
        try:
            await self.abort()
        finally:
            await super().close()


async def _table_names(conn: asyncpg.Connection) -> list[str]:
    return [r[0] for r in await conn.fetch(
        "SELECT relname FROM pg_class WHERE relnamespace = current_schema()::regnamespace AND relkind = 'r'"
        " AND relname <> ALL($1::text[]) ORDER BY relname", list(BOOKKEEPING))]


async def _connect(url: StoreURL, password: str | None, role: str) -> tuple[asyncpg.Connection, str, list[str]]:
    """A connection of the copy's own, at the latest schema, with no daemon on the database; its identity
    (two URLs naming one database give one) and what migrating it did."""
    place = where(url.url)
    try:
        conn = await asyncpg.connect(dsn=url.url, password=password, timeout=CONNECT_SECONDS,
                                     server_settings={"application_name": APPLICATION,
                                                      "lock_timeout": LOCK_TIMEOUT})
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, ValueError) as exc:
        text = " ".join(str(exc).split()) or type(exc).__name__
        raise CopyError(f"{role} database {place}: cannot connect: "
                        f"{text.replace(password, '***') if password else text}") from None
    try:
        daemons = await conn.fetch(
            "SELECT pid, coalesce(host(client_addr), 'a local socket') FROM pg_stat_activity"
            " WHERE datname = current_database() AND application_name = $1 AND pid <> pg_backend_pid()",
            DAEMON_APPLICATION)
        if daemons:
            raise CopyError(f"{role} {url.url}: a tgdaemon is connected to it (server pid {daemons[0][0]}, from"
                            f" {daemons[0][1]}); stop it first: a copy needs the store to itself")
        before = await migrate.current_version(conn)
        after = await migrate.upgrade(conn, url.url)
        identity = await conn.fetchval(
            "SELECT current_database() || '@' || pg_postmaster_start_time()::text || ':'"
            " || coalesce(inet_server_port()::text, 'socket') || '/' || current_schema()")
    except StoreError as exc:
        await conn.close()
        raise CopyError(f"{role} {exc}") from None
    except BaseException:
        await conn.close()
        raise
    notes = [] if before == after else [
        f"{role} {url.url}: schema migrated from version {before} to {after}, as opening it with tgdaemon does"]
    return conn, f"postgresql:{identity}", notes


async def open_source(url: StoreURL, password: str | None) -> PostgresSource:
    conn, identity, notes = await _connect(url, password, "source")
    source = PostgresSource(url, conn, identity, notes)
    try:
        names = await _table_names(conn)
        await conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
        await source._lock(names, "SHARE")  # the first statement: the snapshot is taken after it
    except BaseException:
        await conn.close()
        raise
    return source


async def open_target(url: StoreURL, password: str | None) -> PostgresTarget:
    conn, identity, notes = await _connect(url, password, "target")
    return PostgresTarget(url, conn, identity, notes)
