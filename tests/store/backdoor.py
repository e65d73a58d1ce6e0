"""The conformance suite's only SQL: reading rows as they are stored, and writing what no store operation
writes (an aged row, a time in the past, a counter set by hand), in both dialects.

Tests call these with table and column names and Python values, never with SQL, so each test body runs
unchanged on both drivers. The columns are the same in both schemas (the PostgreSQL migration keeps
SQLite's names; times are epoch seconds in both; JSON columns read back as JSON text in both).

SQLite: the store's own connections (its reader, and its writer through ``store.tx()``). PostgreSQL: a
connection of the backdoor's own to the test's database (``attach``), so that nothing here depends on how
the driver pools its connections; it is closed by ``detach``.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any
from weakref import WeakKeyDictionary

import asyncpg

from tgdaemon.errors import StoreError
from tgdaemon.store import Store

# Tables whose rows have an ``id`` the database assigns.
WITH_ID = frozenset({"accounts", "account_tasks", "events", "measurements", "quotas", "tasks"})
# The order rows come back in when the caller names none: the table's key.
KEY_ORDER = {"account_locks": "account_id", "entities": "account_id, peer_id", "leadership": "name", "meta": "key",
             "nodes": "name", "providers": "name", "sessions": "account_id", "usage": "account_id, day"}
# What a failing trigger raises through a store: the driver's own error, or its translation.
INJECTED_ERRORS: tuple[type[BaseException], ...] = (sqlite3.IntegrityError, asyncpg.PostgresError, StoreError)

NAME = re.compile(r"^[a-z_]+$")


class _Pg:
    def __init__(self, url: str) -> None:
        self.url = url
        self.conn: asyncpg.Connection | None = None

    async def get(self) -> asyncpg.Connection:
        if self.conn is None:
            self.conn = await asyncpg.connect(self.url)
        return self.conn


_pg: WeakKeyDictionary[Any, _Pg] = WeakKeyDictionary()


def attach(store: Store, url: str) -> None:
    """A PostgreSQL store's database, for the backdoor's own connection."""
    _pg[store] = _Pg(url)


async def detach(store: Store) -> None:
    pg = _pg.pop(store, None)
    if pg is not None and pg.conn is not None:
        await pg.conn.close()


def _names(*names: str) -> None:
    for name in names:
        assert NAME.fullmatch(name), f"not a table or column name: {name!r}"


def _is_pg(store: Store) -> bool:
    if store.kind == "postgresql":
        assert store in _pg, "a PostgreSQL store the suite did not open (Database.open attaches it)"
        return True
    return False


class _Sql:
    """One statement's text and parameters, with the dialect's placeholders (``?`` or ``$n``)."""

    def __init__(self, pg: bool) -> None:
        self.pg = pg
        self.params: list[Any] = []

    def bind(self, value: Any) -> str:
        self.params.append(value)
        return f"${len(self.params)}" if self.pg else "?"

    def where(self, where: Mapping[str, Any]) -> str:
        _names(*where)
        parts = [f"{col} IS NULL" if value is None else f"{col} = {self.bind(value)}" for col, value in where.items()]
        return f" WHERE {' AND '.join(parts)}" if parts else ""


async def _read(store: Store, sql: str, params: list[Any]) -> list[dict[str, Any]]:
    if _is_pg(store):
        conn = await _pg[store].get()
        return [dict(r) for r in await conn.fetch(sql, *params)]
    return [dict(r) for r in await store.read(sql, params)]  # type: ignore[attr-defined]


async def _write(store: Store, sql: str, params: list[Any], returning: bool = False) -> tuple[int, int | None]:
    """(rows changed, the id of the row inserted when ``returning``)."""
    if _is_pg(store):
        conn = await _pg[store].get()
        if returning:
            found = await conn.fetchval(sql + " RETURNING id", *params)
            return 1, int(found)
        status = await conn.execute(sql, *params)  # "UPDATE 3", "INSERT 0 1", "CREATE FUNCTION"
        last = status.rpartition(" ")[2]
        return int(last) if last.isdigit() else 0, None
    async with store.tx() as tx:
        cur = await tx.execute(sql, params)  # type: ignore[attr-defined]
        return cur.rowcount, (int(cur.lastrowid) if returning else None)


# --- reading --------------------------------------------------------------------------------------------------------

async def rows(store: Store, table: str, *, order: str | None = None, **where: Any) -> list[dict[str, Any]]:
    """Every row of ``table`` whose columns equal ``where`` (None: IS NULL), in key order, as stored."""
    _names(table)
    q = _Sql(_is_pg(store))
    order = order or KEY_ORDER.get(table, "id")
    _names(*(part.strip() for part in order.split(",")))
    return await _read(store, f"SELECT * FROM {table}{q.where(where)} ORDER BY {order}", q.params)


async def row(store: Store, table: str, **where: Any) -> dict[str, Any]:
    """The one row that matches."""
    found = await rows(store, table, **where)
    assert len(found) == 1, (table, where, found)
    return found[0]


async def maybe_row(store: Store, table: str, **where: Any) -> dict[str, Any] | None:
    found = await rows(store, table, **where)
    assert len(found) <= 1, (table, where, found)
    return found[0] if found else None


async def count(store: Store, table: str, **where: Any) -> int:
    _names(table)
    q = _Sql(_is_pg(store))
    [found] = await _read(store, f"SELECT COUNT(*) AS n FROM {table}{q.where(where)}", q.params)
    return int(found["n"])


# --- writing what no operation writes -------------------------------------------------------------------------------

async def update(store: Store, table: str, where: Mapping[str, Any], **values: Any) -> int:
    """Set columns of the rows that match ``where`` (every row when it is empty); how many changed."""
    _names(table, *values)
    if not values:
        return 0
    q = _Sql(_is_pg(store))
    sets = ", ".join(f"{col} = {q.bind(value)}" for col, value in values.items())
    changed, _ = await _write(store, f"UPDATE {table} SET {sets}{q.where(where)}", q.params)
    return changed


async def delete(store: Store, table: str, **where: Any) -> int:
    """Delete the rows that match ``where`` (at least one column: never a whole table by mistake); how many."""
    assert where, "delete needs a condition"
    _names(table)
    q = _Sql(_is_pg(store))
    changed, _ = await _write(store, f"DELETE FROM {table}{q.where(where)}", q.params)
    return changed


async def insert(store: Store, table: str, **values: Any) -> int | None:
    """One row, as a driver would never write it (an old time, a state reached by hand); its id, if it has one."""
    _names(table, *values)
    q = _Sql(_is_pg(store))
    marks = ", ".join(q.bind(value) for value in values.values())
    _, new_id = await _write(store, f"INSERT INTO {table} ({', '.join(values)}) VALUES ({marks})", q.params,
                             returning=table in WITH_ID)
    return new_id


async def insert_many(store: Store, table: str, many: list[dict[str, Any]]) -> list[int | None]:
    return [await insert(store, table, **values) for values in many]


@asynccontextmanager
async def cursor_updates_fail(store: Store) -> AsyncIterator[None]:
    """While inside: any statement that changes a quota's cursor fails (an error half-way through a
    transaction); one of ``INJECTED_ERRORS`` reaches the caller of the store operation."""
    if _is_pg(store):
        statements = [
            "CREATE FUNCTION tgf_test_no_advance() RETURNS trigger LANGUAGE plpgsql AS"
            " $$ BEGIN RAISE EXCEPTION 'no advance'; END $$",
            "CREATE TRIGGER no_advance BEFORE UPDATE OF cursor ON quotas"
            " FOR EACH ROW EXECUTE FUNCTION tgf_test_no_advance()"]
        undo = ["DROP TRIGGER no_advance ON quotas", "DROP FUNCTION tgf_test_no_advance()"]
    else:
        statements = ["CREATE TRIGGER no_advance BEFORE UPDATE OF cursor ON quotas"
                      " BEGIN SELECT RAISE(ABORT, 'no advance'); END"]
        undo = ["DROP TRIGGER no_advance"]
    async with _installed(store, statements, undo):
        yield


@asynccontextmanager
async def inserts_fail(store: Store, table: str) -> AsyncIterator[None]:
    """While inside: any statement that inserts into ``table`` (an upsert too) fails, half-way through its
    transaction; one of ``INJECTED_ERRORS`` reaches the caller of the store operation."""
    _names(table)
    if _is_pg(store):
        statements = [
            "CREATE FUNCTION tgf_test_no_insert() RETURNS trigger LANGUAGE plpgsql AS"
            " $$ BEGIN RAISE EXCEPTION 'no insert'; END $$",
            f"CREATE TRIGGER no_insert BEFORE INSERT ON {table} FOR EACH ROW EXECUTE FUNCTION tgf_test_no_insert()"]
        undo = [f"DROP TRIGGER no_insert ON {table}", "DROP FUNCTION tgf_test_no_insert()"]
    else:
        statements = [f"CREATE TRIGGER no_insert BEFORE INSERT ON {table} BEGIN SELECT RAISE(ABORT, 'no insert'); END"]
        undo = ["DROP TRIGGER no_insert"]
    async with _installed(store, statements, undo):
        yield


@asynccontextmanager
async def _installed(store: Store, statements: list[str], undo: list[str]) -> AsyncIterator[None]:
    """Test-only triggers, in place while inside."""
    for sql in statements:
        await _write(store, sql, [])
    try:
        yield
    finally:
        for sql in undo:
            await _write(store, sql, [])


@asynccontextmanager
async def log_writes_fail(store: Store, kind: str) -> AsyncIterator[None]:
    """While inside: a transaction that writes an event of ``kind`` fails as its log rows are written, just
    before COMMIT (on PostgreSQL after their ids were taken: a gap in the log, as any commit that fails
    there leaves); one of ``INJECTED_ERRORS`` reaches the caller."""
    _names(kind.replace(".", "_"))
    if _is_pg(store):
        statements = [
            "CREATE FUNCTION tgf_test_log_fails() RETURNS trigger LANGUAGE plpgsql AS"
            f" $$ BEGIN IF NEW.kind = '{kind}' THEN RAISE EXCEPTION 'log write fails'; END IF; RETURN NEW; END $$",
            "CREATE TRIGGER log_fails BEFORE INSERT ON events FOR EACH ROW EXECUTE FUNCTION tgf_test_log_fails()"]
        undo = ["DROP TRIGGER log_fails ON events", "DROP FUNCTION tgf_test_log_fails()"]
    else:
        statements = [f"CREATE TRIGGER log_fails BEFORE INSERT ON events WHEN NEW.kind = '{kind}'"
                      " BEGIN SELECT RAISE(ABORT, 'log write fails'); END"]
        undo = ["DROP TRIGGER log_fails"]
    async with _installed(store, statements, undo):
        yield


async def columns(store: Store, table: str) -> set[str]:
    """The column names of ``table`` as the schema has them."""
    _names(table)
    if _is_pg(store):
        conn = await _pg[store].get()
        found = await conn.fetch("SELECT column_name FROM information_schema.columns"
                                 " WHERE table_schema = current_schema() AND table_name = $1", table)
        return {r["column_name"] for r in found}
    return {r[1] for r in await store.read(f"PRAGMA table_info({table})")}  # type: ignore[attr-defined]
