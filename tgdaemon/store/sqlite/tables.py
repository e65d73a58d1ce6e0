"""The SQLite end of ``tgdaemon store copy``: the tables as the copy sees them, read and written in batches.

Each end holds the daemon's own data dir lock for the whole copy: a daemon running on either store
refuses the copy, and none can start on it meanwhile. The source is read on a connection of its own
inside one read transaction (one snapshot). The target is never written in place: the copy fills a new
file beside it (migrated by this driver's migrations, written in one transaction, journal mode DELETE so
it is one self-contained file), which is fsynced and renamed over the target's path only once the copy
verified; a failed copy leaves the target as it was and removes the new file.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import sqlite3
from collections.abc import AsyncGenerator, Iterator, Sequence
from pathlib import Path

import aiosqlite

from tgdaemon.errors import AlreadyRunning, StoreError
from tgdaemon.lifecycle.datadir import LOCK_NAME, DataDirLock
from tgdaemon.store.connect import StoreURL
from tgdaemon.store.copy import Column, CopyError, Row, Table
from tgdaemon.store.sqlite import migrate

KINDS = {"INTEGER": "int", "REAL": "float", "TEXT": "text", "BLOB": "bytes"}
# Kept by triggers on events, tasks, account_tasks and task_attempts; a fresh schema seeds its counters at zero.
DERIVED = {"row_counts": "n != 0", "finished_counts": "n != 0", "lane_counts": "n != 0",
           "pulse_counts": "n != 0"}

# The data dir locks this process holds, with how many ends use each: a copy between two files of one
# data dir takes its lock once.
_held: dict[Path, tuple[DataDirLock, int]] = {}


def quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _lock(path: Path, role: str) -> None:
    data_dir = path.parent
    if data_dir in _held:
        lock, users = _held[data_dir]
        _held[data_dir] = (lock, users + 1)
        return
    lock = DataDirLock(data_dir)
    try:
        lock.acquire()
    except AlreadyRunning:
        try:
            pid = (data_dir / LOCK_NAME).read_text().strip() or "unknown"
        except OSError:
            pid = "unknown"
        raise CopyError(f"{role} sqlite://{path}: a tgdaemon (pid {pid}) is running on data dir {data_dir};"
                        " stop it first: a copy needs the store to itself") from None
    except StoreError as exc:
        raise CopyError(f"{role} sqlite://{path}: {exc}") from None
    _held[data_dir] = (lock, 1)


def _unlock(path: Path) -> None:
    lock, users = _held.pop(path.parent)
    if users > 1:
        _held[path.parent] = (lock, users - 1)
    else:
        lock.release()


def _upgrade(path: Path, role: str) -> list[str]:
    """Opening a store migrates it: so does the copy, and it says so when that changed the schema."""
    try:
        conn = sqlite3.connect(path)
        try:
            before = conn.execute("PRAGMA user_version").fetchone()[0]
        finally:
            conn.close()
        after = migrate.upgrade(path)
    except sqlite3.DatabaseError as exc:
        raise CopyError(f"{role} sqlite://{path}: {exc}") from None
    except StoreError as exc:
        raise CopyError(f"{role} {exc}") from None
    if before == after:
        return []
    return [f"{role} sqlite://{path}: schema migrated from version {before} to {after}, as opening it with"
            " tgdaemon does"]


@contextlib.contextmanager
def failing(where: str) -> Iterator[None]:
    """A database or file the copy cannot use, as one line naming it."""
    try:
        yield
    except sqlite3.Error as exc:
        raise CopyError(f"{where}: {exc}") from None
    except OSError as exc:
        raise CopyError(f"{where}: {exc.strerror or exc}") from None


class SQLiteEnd:
    """What both ends share: the schema, reads in key order, counts."""

    def __init__(self, path: Path, conn: aiosqlite.Connection | None, notes: list[str]) -> None:
        self.path = path
        self.where = f"sqlite://{path}"
        self.identity = f"sqlite:{path.resolve()}"
        self.notes = notes
        self._conn = conn

    @property
    def conn(self) -> aiosqlite.Connection:
        assert self._conn is not None, "the copy's connection is not open"
        return self._conn

    async def tables(self) -> dict[str, Table]:
        with failing(self.where):
            return await self._tables()

    async def _tables(self) -> dict[str, Table]:
        out = {}
        names = [r[0] for r in await self.conn.execute_fetchall(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\'"
            " ORDER BY name")]
        for name in names:
            info = list(await self.conn.execute_fetchall(f"PRAGMA table_info({quote(name)})"))
            columns = []
            for _, column, declared, _, _, _ in info:
                kind = KINDS.get(declared.upper())
                if kind is None:
                    raise CopyError(f"{self.where}: column {name}.{column} has a type the copy does not know"
                                    f" ({declared})")
                # JSON is text here; the schema names every JSON column *_json.
                columns.append(Column(column, "json" if kind == "text" and column.endswith("_json") else kind))
            key = tuple(r[1] for r in sorted((r for r in info if r[5]), key=lambda r: r[5]))
            if not key:
                raise CopyError(f"{self.where}: table {name} has no primary key to copy it in order")
            references = frozenset(r[2] for r in await self.conn.execute_fetchall(
                f"PRAGMA foreign_key_list({quote(name)})"))
            out[name] = Table(name, tuple(columns), key, references, derived=name in DERIVED)
        return out

    async def rows(self, table: Table, columns: Sequence[str], batch: int) -> AsyncGenerator[list[Row], None]:
        # Text keys sort by their bytes (BINARY), as Python sorts str and PostgreSQL's "C" collation does.
        sql = (f"SELECT {', '.join(map(quote, columns))} FROM {quote(table.name)}"
               f" ORDER BY {', '.join(map(quote, table.key))}")
        with failing(self.where):
            async with self.conn.execute(sql) as cursor:
                while rows := await cursor.fetchmany(batch):
                    yield [tuple(r) for r in rows]

    async def count(self, table: Table) -> int:
        with failing(self.where):
            [(n,)] = await self.conn.execute_fetchall(f"SELECT COUNT(*) FROM {quote(table.name)}")
        return int(n)


class SQLiteSource(SQLiteEnd):
    async def high_water(self) -> dict[str, int]:
        """AUTOINCREMENT's record (events): its ids are never given twice, even after the newest rows went."""
        with failing(self.where):
            return {r[0]: int(r[1]) for r in await self.conn.execute_fetchall("SELECT name, seq FROM sqlite_sequence")}

    async def close(self) -> None:
        try:
            await self.conn.close()
        finally:
            _unlock(self.path)


async def open_source(url: StoreURL, password: str | None) -> SQLiteSource:
    assert url.path is not None
    path = url.path
    if password is not None:
        raise CopyError(f"source {url.url}: a SQLite store takes no password")
    if not path.is_file():
        raise CopyError(f"source {url.url}: no such database")
    _lock(path, "source")
    try:
        notes = _upgrade(path, "source")
        conn = await aiosqlite.connect(path, isolation_level=None)
        try:
            await conn.execute("PRAGMA query_only = ON")
            await conn.execute("BEGIN")  # one snapshot from the first read to the last
        except BaseException:
            await conn.close()
            raise
    except BaseException:
        _unlock(path)
        raise
    return SQLiteSource(path, conn, notes)


class SQLiteTarget(SQLiteEnd):
    """Writes go to a new file beside ``path``; ``commit`` moves it over ``path``."""

    def __init__(self, path: Path, notes: list[str]) -> None:
        super().__init__(path, None, notes)
        self.tmp = path.with_name(f".{path.name}.copy-{secrets.token_hex(6)}.tmp")
        self._deferred: list[tuple[str, str, str]] = []  # (type, name, sql) of the indexes and triggers

    async def begin(self) -> None:
        try:  # it will hold auth keys: 0600 before SQLite writes a byte
            os.close(os.open(self.tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_CLOEXEC, 0o600))
        except OSError as exc:
            raise CopyError(f"target {self.where}: cannot create a file in {self.path.parent}: {exc.strerror}"
                            ) from None
        with failing(self.where):
            migrate.upgrade(self.tmp)
            self._conn = await aiosqlite.connect(self.tmp, isolation_level=None)
            # One file, no WAL beside it to lose in the rename; durability comes from the fsync before it.
            await self._conn.execute("PRAGMA journal_mode = DELETE")
            await self._conn.execute("PRAGMA synchronous = OFF")
            await self._conn.execute("PRAGMA foreign_keys = ON")
            await self._conn.execute("BEGIN IMMEDIATE")
            # Indexes built once over the loaded rows instead of row by row, triggers off while the tables
            # fill (row_counts is copied as the source has it): the writes take a third of the time. Both
            # come back, exactly as the migrations made them, in the same transaction (commit).
            self._deferred = [(r[0], r[1], r[2]) for r in await self._conn.execute_fetchall(
                "SELECT type, name, sql FROM sqlite_master WHERE type IN ('index', 'trigger') AND sql IS NOT NULL")]
            for kind, name, _ in self._deferred:
                await self._conn.execute(f"DROP {kind.upper()} {quote(name)}")

    async def occupied(self, tables: Sequence[Table]) -> list[str]:
        """Rows in the database at the target's path, if there is one (the new file is empty by making)."""
        if not self.path.exists():
            return []
        conn = sqlite3.connect(self.path)
        try:
            out = []
            for table in tables:
                extra = f" WHERE {DERIVED[table.name]}" if table.name in DERIVED else ""
                if conn.execute(f"SELECT EXISTS (SELECT 1 FROM {quote(table.name)}{extra})").fetchone()[0]:
                    out.append(table.name)
            return out
        except sqlite3.DatabaseError as exc:
            raise CopyError(f"target {self.where}: {exc}") from None
        finally:
            conn.close()

    async def clear(self, table: Table) -> None:
        with failing(self.where):
            await self.conn.execute(f"DELETE FROM {quote(table.name)}")

    async def write(self, table: Table, columns: Sequence[str], rows: list[Row]) -> None:
        sql = (f"INSERT INTO {quote(table.name)} ({', '.join(map(quote, columns))})"
               f" VALUES ({', '.join('?' * len(columns))})")
        try:
            await self.conn.executemany(sql, rows)
        except sqlite3.Error as exc:
            raise CopyError(f"target {self.where}: table {table.name}: {exc}") from None

    async def commit(self, high_water: dict[str, int]) -> None:
        with failing(self.where):
            await self._commit(high_water)

    async def _commit(self, high_water: dict[str, int]) -> None:
        for _, _, sql in self._deferred:
            await self.conn.execute(sql)
        autoincrement = {r[0] for r in await self.conn.execute_fetchall(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND sql LIKE '%AUTOINCREMENT%'")}
        for name, seq in high_water.items():
            if name not in autoincrement:  # the others number from their largest id, as SQLite always does
                continue
            await self.conn.execute("UPDATE sqlite_sequence SET seq = MAX(seq, ?) WHERE name = ?", (seq, name))
            await self.conn.execute("INSERT INTO sqlite_sequence (name, seq) SELECT ?, ? WHERE NOT EXISTS"
                                    " (SELECT 1 FROM sqlite_sequence WHERE name = ?)", (name, seq, name))
        await self.conn.execute("COMMIT")
        await self.conn.close()
        self._conn = None
        _fsync(self.tmp)
        for stale in ("-wal", "-shm"):  # of the empty database replaced: never to be applied to the copy
            with contextlib.suppress(FileNotFoundError):
                os.unlink(f"{self.path}{stale}")
        os.replace(self.tmp, self.path)
        _fsync(self.path.parent)

    async def abort(self) -> None:
        if self._conn is not None:
            conn, self._conn = self._conn, None
            with contextlib.suppress(sqlite3.Error, ValueError):
                await conn.execute("ROLLBACK")
            await conn.close()
        _remove(self.tmp)

    async def close(self) -> None:
        try:
            await self.abort()  # nothing left to undo once committed: the new file has become the target
        finally:
            _unlock(self.path)


async def open_target(url: StoreURL, password: str | None) -> SQLiteTarget:
    assert url.path is not None
    path = url.path
    if password is not None:
        raise CopyError(f"target {url.url}: a SQLite store takes no password")
    _lock(path, "target")
    try:
        notes = _upgrade(path, "target") if path.exists() else []
    except BaseException:
        _unlock(path)
        raise
    return SQLiteTarget(path, notes)


def _remove(path: Path) -> None:
    for leftover in ("", "-journal", "-wal", "-shm"):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(f"{path}{leftover}")


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
