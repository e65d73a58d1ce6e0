"""Moving a fleet from one store to another (``tgdaemon store copy``), whichever drivers are at either end.

Each driver opens its end of the copy in its own ``tables`` module (SQL stays there) and hands rows over
in one neutral form: ints (flags too), floats, str, bytes, None, and JSON as compact text. This module
only moves them: the source is read in one consistent snapshot, in primary-key order, batch by batch;
the target is written in one transaction that is made final (PostgreSQL: committed; SQLite: a temporary
file renamed into place) only after every table read back from it has the source's row count and
checksum. A copy that fails or does not verify leaves the target as it was: empty.

The checksum is computed here, the same code on both sides, over rows in a canonical form, so that the
same data compares equal whatever the driver gives back: JSON parsed and written again with sorted keys
and numbers by value (SQLite keeps the text it was given, PostgreSQL's jsonb its own), floats by repr,
bytes as hex (flags are integers in both schemas).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import time
from collections.abc import AsyncGenerator, Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from tgdaemon.errors import ConfigError, TgfleetError
from tgdaemon.store.connect import StoreURL, parse_url

BATCH = 5000
Row = tuple[Any, ...]
Progress = Callable[[str, str, int, int], None]  # "copied" or "verified", table, rows so far, rows in all
Say = Callable[[str], None]


class CopyError(TgfleetError):
    """The copy was refused or failed; the target is left as it was."""


class CopyURLError(CopyError):
    """A --from or --to URL that is not a store's: a bad argument (exit 2)."""

    exit_code = 2


@dataclass(frozen=True, slots=True)
class Column:
    name: str
    kind: str  # "int", "float", "text", "bytes" or "json": what the schemas of both ends must agree on


@dataclass(frozen=True, slots=True)
class Table:
    name: str
    columns: tuple[Column, ...]
    key: tuple[str, ...]  # the primary key: rows are read in its order
    references: frozenset[str] = frozenset()  # tables its foreign keys point to: written before it
    derived: bool = False  # kept by triggers on other tables (row_counts): written after all the others

    def kinds(self) -> dict[str, str]:
        return {c.name: c.kind for c in self.columns}


class End(Protocol):
    """What both ends of a copy offer."""

    where: str  # the store's URL without a password
    identity: str  # equal for two ends on one database
    notes: list[str]  # what opening it did (a schema migrated), for the operator

    async def tables(self) -> dict[str, Table]: ...

    def rows(self, table: Table, columns: Sequence[str], batch: int) -> AsyncGenerator[list[Row], None]: ...

    async def count(self, table: Table) -> int: ...

    async def close(self) -> None: ...


class Source(End, Protocol):
    async def high_water(self) -> dict[str, int]:
        """The last id each table's sequence gave (may exceed the largest id left after deletes)."""
        ...


class Target(End, Protocol):
    async def begin(self) -> None:
        """Take the target for the copy (PostgreSQL: its tables locked in the copy's transaction)."""
        ...

    async def occupied(self, tables: Sequence[Table]) -> list[str]:
        """The tables holding rows a freshly migrated schema does not have."""
        ...

    async def clear(self, table: Table) -> None:
        """Remove what the migrations seeded in a derived table (row_counts' zeros) before it is written."""
        ...

    async def write(self, table: Table, columns: Sequence[str], rows: list[Row]) -> None: ...

    async def commit(self, high_water: dict[str, int]) -> None:
        """Move every sequence past the copied ids (and the source's high water), then make the copy final."""
        ...

    async def abort(self) -> None:
        """Leave the target as it was before the copy."""
        ...


@dataclass(slots=True)
class TableResult:
    name: str
    source_rows: int = 0
    target_rows: int = 0
    source_sum: str = ""
    target_sum: str = ""

    @property
    def ok(self) -> bool:
        return self.source_rows == self.target_rows and self.source_sum == self.target_sum


@dataclass(slots=True)
class Report:
    source: str
    target: str
    tables: list[TableResult] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0
    committed: bool = False

    @property
    def ok(self) -> bool:
        return self.committed and all(t.ok for t in self.tables)


def plan(source: dict[str, Table], target: dict[str, Table]) -> list[Table]:
    """The target's tables in the order they can be written; a schema that differs is refused in one line."""
    if only := sorted(source.keys() ^ target.keys()):
        side = "source" if only[0] in source else "target"
        raise CopyError(f"the schemas differ: table {only[0]} is only in the {side}; are both at the latest"
                        " version of this tgdaemon?")
    for name in sorted(target):
        s, t = source[name], target[name]
        if only := sorted(s.kinds().keys() ^ t.kinds().keys()):
            side = "source" if only[0] in s.kinds() else "target"
            raise CopyError(f"the schemas differ: column {name}.{only[0]} is only in the {side}")
        for column, kind in t.kinds().items():
            if s.kinds()[column] != kind:
                raise CopyError(f"the schemas differ: column {name}.{column} holds {s.kinds()[column]} in the"
                                f" source, {kind} in the target")
        if s.key != t.key:
            raise CopyError(f"the schemas differ: table {name} has primary key ({', '.join(s.key)}) in the"
                            f" source, ({', '.join(t.key)}) in the target")
    return dependency_order(list(target.values()))


def dependency_order(tables: list[Table]) -> list[Table]:
    """Referenced tables first (ties by name, so both drivers agree); derived tables last."""
    by_name = {t.name: t for t in tables}
    done: list[Table] = []
    seen: set[str] = set()
    pending = sorted((t for t in tables if not t.derived), key=lambda t: t.name)
    while pending:
        ready = [t for t in pending if (t.references & by_name.keys()) - {t.name} <= seen]
        if not ready:
            raise CopyError(f"the tables' foreign keys form a cycle: {', '.join(t.name for t in pending)}")
        first = ready[0]
        done.append(first)
        seen.add(first.name)
        pending.remove(first)
    return done + sorted((t for t in tables if t.derived), key=lambda t: t.name)


class Checksum:
    """sha256 over a table's rows in canonical form, in primary-key order."""

    def __init__(self, table: Table, columns: Sequence[str]) -> None:
        kinds = table.kinds()
        self._json = [i for i, c in enumerate(columns) if kinds[c] == "json"]
        self._bytes = [i for i, c in enumerate(columns) if kinds[c] == "bytes"]
        self._hash = hashlib.sha256()
        self.rows = 0

    def update(self, rows: list[Row]) -> None:
        fix = self._json or self._bytes
        for row in rows:
            if fix:
                values = list(row)
                for i in self._json:
                    if values[i] is not None:
                        values[i] = canonical_json(values[i])
                for i in self._bytes:
                    if values[i] is not None:
                        values[i] = bytes(values[i]).hex()
                row = tuple(values)
            self._hash.update(repr(row).encode("utf-8", "surrogatepass") + b"\n")
        self.rows += len(rows)

    def hexdigest(self) -> str:
        return self._hash.hexdigest()


def canonical_json(text: str) -> str:
    """JSON text as one string whatever wrote it: keys sorted, no spaces, numbers by value. jsonb keeps
    numbers as decimals and prints them its own way (Python's 1e+16 comes back as 10000000000000000), so
    an integral number within float's exact range is written as an int, any other as a float."""
    return _CANONICAL.encode(_NUMBERS.decode(text))


def _int(text: str) -> int | float:
    n = int(text)
    return n if -EXACT <= n <= EXACT else float(n)


def _float(text: str) -> int | float:
    f = float(text)
    return int(f) if f.is_integer() and -EXACT <= f <= EXACT else f


EXACT = 2**53  # every integer up to this is a float too
_NUMBERS = json.JSONDecoder(parse_int=_int, parse_float=_float)
_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)


async def copy_tables(source: Source, target: Target, *, batch: int = BATCH,
                      progress: Progress | None = None) -> Report:
    """Copy every table of ``source`` into the empty ``target`` and verify it; the target is made final only
    when every table matches (``Report.committed``). Both ends stay open: the caller closes them."""
    started = time.monotonic()
    report = Report(source.where, target.where, notes=[*source.notes, *target.notes])
    if source.identity == target.identity:
        raise CopyError(f"the source and the target are the same database ({target.where})")
    try:
        await target.begin()
        order = plan(await source.tables(), await target.tables())
        if occupied := await target.occupied(order):
            raise CopyError(f"the target {target.where} is not empty ({', '.join(occupied)} hold rows): a copy"
                            " goes only into a new database")
        for table in order:
            columns = [c.name for c in table.columns]
            result = TableResult(table.name, source_rows=await source.count(table))
            if table.derived:
                await target.clear(table)
            checksum = Checksum(table, columns)
            async with contextlib.aclosing(read_ahead(source.rows(table, columns, batch))) as batches, \
                    Behind() as writes:
                async for rows in batches:
                    checksum.update(rows)  # while the batch before is being written
                    await writes.then(target.write(table, columns, rows))
                    if progress is not None:
                        progress("copied", table.name, checksum.rows, result.source_rows)
            if checksum.rows != result.source_rows:  # a snapshot cannot change: a driver bug, not the data
                raise CopyError(f"table {table.name}: {result.source_rows} rows counted, {checksum.rows} read")
            result.source_sum = checksum.hexdigest()
            report.tables.append(result)
        for result, table in zip(report.tables, order, strict=True):
            result.target_rows = await target.count(table)
            columns = [c.name for c in table.columns]
            checksum = Checksum(table, columns)
            async with contextlib.aclosing(read_ahead(target.rows(table, columns, batch))) as batches:
                async for rows in batches:
                    checksum.update(rows)
                    if progress is not None:
                        progress("verified", table.name, checksum.rows, result.target_rows)
            result.target_sum = checksum.hexdigest()
        if all(t.ok for t in report.tables):
            await target.commit(await source.high_water())
            report.committed = True
        else:
            await target.abort()
    except BaseException:
        await target.abort()
        raise
    report.seconds = time.monotonic() - started
    return report


class Behind:
    """One write at a time, each started as soon as the one before has ended, and not waited for: the
    next batch is checksummed meanwhile. Leaving waits for the last one; leaving on an error cancels it."""

    def __init__(self) -> None:
        self._pending: asyncio.Future[None] | None = None

    async def then(self, write: Coroutine[Any, Any, None]) -> None:
        if self._pending is not None:
            pending, self._pending = self._pending, None
            try:
                await pending
            except BaseException:
                write.close()
                raise
        self._pending = asyncio.ensure_future(write)

    async def __aenter__(self) -> Behind:
        return self

    async def __aexit__(self, kind: type[BaseException] | None, *_: object) -> None:
        if self._pending is None:
            return
        pending, self._pending = self._pending, None
        if kind is None:
            await pending
            return
        pending.cancel()  # the target is being given up: what this write did is rolled back with the rest
        with contextlib.suppress(BaseException):
            await pending


async def read_ahead(batches: AsyncGenerator[list[Row], None]) -> AsyncGenerator[list[Row], None]:
    """Each batch with the next one already being read: the reading end works while the caller checksums
    and the writing end writes (a SQLite connection's thread, a PostgreSQL server), not one after the other."""
    async def step() -> list[Row] | None:
        return await anext(batches, None)

    pending = asyncio.ensure_future(step())
    try:
        while (rows := await pending) is not None:
            pending = asyncio.ensure_future(step())
            yield rows
    finally:
        if not pending.done():
            pending.cancel()
            with contextlib.suppress(BaseException):
                await pending
        await batches.aclose()


def _driver(url: StoreURL) -> Any:
    """The driver's ``tables`` module: each loads only when used."""
    if url.kind == "sqlite":
        from tgdaemon.store.sqlite import tables as sqlite_tables

        return sqlite_tables
    from tgdaemon.store.postgres import tables as postgres_tables

    return postgres_tables


def parse(url: str, role: str) -> StoreURL:
    """The URL checked as ``[store] url`` is (no password in it, among the rest)."""
    try:
        return parse_url(url)
    except ConfigError as exc:
        raise CopyURLError(f"{role}: {str(exc).removeprefix('store.url: ')}") from None


async def copy_store(from_url: str, to_url: str, *, from_password: str | None = None,
                     to_password: str | None = None, batch: int = BATCH,
                     progress: Progress | None = None, say: Say | None = None) -> Report:
    """Open both ends (each refuses a store a daemon holds, and brings its schema to the latest version,
    which ``say`` is told at once), copy, verify, close."""
    source_url, target_url = parse(from_url, "source"), parse(to_url, "target")
    source: Source = await _driver(source_url).open_source(source_url, from_password)
    try:
        if say is not None:
            for note in source.notes:
                say(note)
        target: Target = await _driver(target_url).open_target(target_url, to_password)
        try:
            if say is not None:
                for note in target.notes:
                    say(note)
            return await copy_tables(source, target, batch=batch, progress=progress)
        finally:
            await target.close()
    finally:
        await source.close()
