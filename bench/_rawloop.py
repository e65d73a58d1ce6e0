"""The raw reference loop: the least a store can do for a lease and an ack with a result row.

What tgfleet's pull+report is measured against (bench/hotpath.py). A ``jobs`` table pre-filled with tiny
rows; a worker leases rows (one statement: the pending rows, oldest first, marked leased with a token of
its own and handed back), then acknowledges them in one transaction that marks them done (only where the
token still holds: the fence) and inserts one result row each. Nothing else: no accounts, no events, no
stream, no HTTP. It uses the store's own driver libraries at the daemon's durability:

* **SQLite**: aiosqlite, the file in WAL mode with ``synchronous=FULL`` (every COMMIT fsynced), one
  connection (SQLite has one writer; the daemon has one writer connection too) with group commit: what
  the workers hand in while a transaction is being written goes into the next one, as the daemon's
  ``GroupCommit`` does. A transaction is ``BEGIN IMMEDIATE``, one ``executemany`` UPDATE and one
  ``executemany`` INSERT for every ack in the group, one ``UPDATE … WHERE id IN (SELECT … LIMIT n)
  RETURNING`` for every lease in it, ``COMMIT`` (leases alone: that one statement in autocommit).
* **PostgreSQL**: asyncpg, one connection per worker (what ``FOR UPDATE SKIP LOCKED`` is for), the
  server's defaults (``synchronous_commit`` on), JIT off as the daemon sets it. A lease is one
  statement (a CTE selecting ``FOR UPDATE SKIP LOCKED`` and an ``UPDATE … RETURNING``); an ack is one
  statement (a data-modifying CTE: the UPDATE, then the INSERT of the rows it updated).

Modes: **batched** = ``workers`` workers (4, as tgfleet's batched clients) each leasing ``batch`` rows and
acknowledging them in one transaction, until the table is drained; **single** = ``workers`` workers (16)
each leasing 1 and acknowledging 1, until drained or the window ends. Between measurements (untimed) the
table is reset; each measurement then checks that every job marked done has exactly one result row and
that no job is left leased.

Run as a process of its own (the daemon's layout: one process, one event loop):
``python -m bench._rawloop JSON-ARGS`` prints one JSON line. ``CPU`` is this process's (all threads,
aiosqlite's included); ``server_cpu`` the PostgreSQL server's processes' (``bench._stores_worker.server_cpu``).
Every loop is bounded in count and time.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import sqlite3
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

import aiosqlite
import asyncpg

from bench._stores_worker import server_cpu

PENDING, LEASED, DONE = 0, 1, 2
FILL_CHUNK = 5_000


@dataclass
class Sample:
    mode: str
    jobs: int  # acknowledged in the measured window
    seconds: float
    cpu: float  # this process, all threads
    server_cpu: float  # the PostgreSQL server's processes (0 on SQLite)

    @property
    def rate(self) -> float:
        return self.jobs / self.seconds if self.seconds else 0.0


Leased = list[tuple[int, int]]  # (job id, token)


class Loop(Protocol):
    async def lease(self, worker: int, n: int) -> Leased: ...
    async def ack(self, worker: int, leased: Leased) -> int: ...
    async def reset(self) -> None: ...
    async def check(self) -> tuple[int, int, int, int]: ...
    async def close(self) -> None: ...


def body(job_id: int) -> str:
    """A result row as small as a task's: a few fields of JSON."""
    return f'{{"subscribers": {1000 + job_id}, "title": "Markets"}}'


def token() -> int:
    return random.getrandbits(62) + 1


# ---- SQLite ------------------------------------------------------------------------------------------------

SQLITE_SCHEMA = [
    "CREATE TABLE jobs (id INTEGER PRIMARY KEY, payload TEXT NOT NULL, status INTEGER NOT NULL DEFAULT 0,"
    " token INTEGER, leased_at REAL)",
    "CREATE INDEX jobs_pending ON jobs (id) WHERE status = 0",
    "CREATE TABLE results (job_id INTEGER PRIMARY KEY, body TEXT NOT NULL, at REAL NOT NULL)",
]
SQLITE_LEASE = ("UPDATE jobs SET status = 1, token = ?, leased_at = ? WHERE id IN"
                " (SELECT id FROM jobs WHERE status = 0 ORDER BY id LIMIT ?) RETURNING id")
SQLITE_DONE = "UPDATE jobs SET status = 2 WHERE id = ? AND token = ? AND status = 1"
SQLITE_RESULT = "INSERT INTO results (job_id, body, at) VALUES (?, ?, ?)"


class SQLiteLoop:
    """One connection, and group commit: the leases and acks that arrive while a transaction is being written
    go together into the next one (SQLite has one writer; one fsync then serves every waiting worker)."""

    def __init__(self, conn: aiosqlite.Connection) -> None:
        self.conn = conn
        self.lock = asyncio.Lock()  # one connection: one transaction at a time (the writer, reset, check)
        self.waiting: list[tuple[int | Leased, asyncio.Future[Any]]] = []
        self.writer: asyncio.Task[None] | None = None

    @classmethod
    async def open(cls, path: Path, jobs: int) -> SQLiteLoop:
        fresh = not path.exists()
        conn = await aiosqlite.connect(path, isolation_level=None)
        await conn.execute("PRAGMA journal_mode=WAL")
        await conn.execute("PRAGMA synchronous=FULL")
        await conn.execute("PRAGMA busy_timeout=5000")
        if fresh:
            await conn.execute("BEGIN")
            for sql in SQLITE_SCHEMA:
                await conn.execute(sql)
            await conn.executemany("INSERT INTO jobs (id, payload) VALUES (?, ?)",
                                   [(i, f"job {i}") for i in range(1, jobs + 1)])
            await conn.execute("COMMIT")
        return cls(conn)

    async def _submit(self, item: int | Leased) -> Any:
        done: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.waiting.append((item, done))
        if self.writer is None or self.writer.done():
            self.writer = asyncio.create_task(self._write_all())
        return await done

    async def lease(self, worker: int, n: int) -> Leased:
        leased: Leased = await self._submit(n)
        return leased

    async def ack(self, worker: int, leased: Leased) -> int:
        acked: int = await self._submit(leased)
        return acked

    async def _write_all(self) -> None:
        while self.waiting:
            group, self.waiting = self.waiting, []
            try:
                answers = await self._write(group)
            except BaseException as exc:
                for _, done in group:
                    if not done.done():
                        done.set_exception(exc if isinstance(exc, Exception) else RuntimeError("cancelled"))
                if not isinstance(exc, Exception):
                    raise
                continue
            for (_, done), answer in zip(group, answers, strict=True):
                done.set_result(answer)

    async def _write(self, group: list[tuple[int | Leased, asyncio.Future[Any]]]) -> list[Any]:
        """One transaction for the group: the acks (one UPDATE and one INSERT for all), then the leases (one
        UPDATE for all, its rows shared out in order); a group of leases only is one autocommit statement."""
        acks = [item for item, _ in group if isinstance(item, list)]
        wanted = sum(item for item, _ in group if isinstance(item, int))
        pairs = [pair for leased in acks for pair in leased]
        tok, at = token(), time.time()
        async with self.lock:
            if acks:
                await self.conn.execute("BEGIN IMMEDIATE")
            try:
                if acks:
                    cur = await self.conn.executemany(SQLITE_DONE, pairs)
                    if cur.rowcount != len(pairs):
                        raise RuntimeError(f"raw loop: {cur.rowcount} of {len(pairs)} leases still held")
                    await self.conn.executemany(SQLITE_RESULT, [(i, body(i), at) for i, _ in pairs])
                rows = list(await self.conn.execute_fetchall(SQLITE_LEASE, (tok, at, wanted))) if wanted else []
                if acks:
                    await self.conn.execute("COMMIT")
            except BaseException:
                if acks:
                    await self.conn.execute("ROLLBACK")
                raise
        ids = [row[0] for row in rows]
        answers: list[Any] = []
        for item, _ in group:
            if isinstance(item, list):
                answers.append(len(item))
            else:
                answers.append([(i, tok) for i in ids[:item]])
                ids = ids[item:]
        return answers

    async def reset(self) -> None:
        async with self.lock:
            await self.conn.execute("BEGIN IMMEDIATE")
            await self.conn.execute("DELETE FROM results")
            await self.conn.execute("UPDATE jobs SET status = 0, token = NULL, leased_at = NULL")
            await self.conn.execute("COMMIT")
            await self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # each measurement from the same WAL

    async def check(self) -> tuple[int, int, int, int]:
        """(jobs done, jobs still leased, result rows, distinct jobs among the results)."""
        [(done, leased)] = await self.conn.execute_fetchall(
            "SELECT COUNT(*) FILTER (WHERE status = 2), COUNT(*) FILTER (WHERE status = 1) FROM jobs")
        [(results, distinct)] = await self.conn.execute_fetchall(
            "SELECT COUNT(*), COUNT(DISTINCT r.job_id) FROM results r JOIN jobs j ON j.id = r.job_id"
            " AND j.status = 2")
        return done, leased, results, distinct

    async def close(self) -> None:
        await self.conn.close()


# ---- PostgreSQL --------------------------------------------------------------------------------------------

PG_SCHEMA = [
    "CREATE TABLE jobs (id bigint PRIMARY KEY, payload text NOT NULL, status smallint NOT NULL DEFAULT 0,"
    " token bigint, leased_at double precision)",
    "CREATE INDEX jobs_pending ON jobs (id) WHERE status = 0",
    "CREATE TABLE results (job_id bigint PRIMARY KEY, body text NOT NULL, at double precision NOT NULL)",
]
PG_LEASE = """
WITH picked AS (SELECT id FROM jobs WHERE status = 0 ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED)
UPDATE jobs j SET status = 1, token = $2, leased_at = $3 FROM picked WHERE j.id = picked.id RETURNING j.id"""
PG_ACK = """
WITH done AS (
    UPDATE jobs j SET status = 2 FROM unnest($1::bigint[], $2::bigint[]) AS a(id, token)
    WHERE j.id = a.id AND j.token = a.token AND j.status = 1 RETURNING j.id),
ins AS (
    INSERT INTO results (job_id, body, at)
    SELECT r.id, r.body, $4 FROM unnest($1::bigint[], $3::text[]) AS r(id, body) JOIN done ON done.id = r.id
    RETURNING 1)
SELECT count(*) FROM ins"""


class PostgresLoop:
    def __init__(self, url: str, admin: asyncpg.Connection) -> None:
        self.url = url
        self.admin = admin
        self.conns: list[asyncpg.Connection] = []

    @classmethod
    async def open(cls, url: str, jobs: int) -> PostgresLoop:
        admin = await asyncpg.connect(url, timeout=10)
        if not await admin.fetchval("SELECT to_regclass('jobs') IS NOT NULL"):
            async with admin.transaction():
                for sql in PG_SCHEMA:
                    await admin.execute(sql)
                await admin.execute("INSERT INTO jobs (id, payload) SELECT i, 'job ' || i"
                                    " FROM generate_series(1, $1::bigint) AS i", jobs)
            await admin.execute("VACUUM ANALYZE jobs")
        return cls(url, admin)

    async def connections(self, n: int) -> None:
        """One connection per worker, opened before the clock starts."""
        while len(self.conns) < n:
            self.conns.append(await asyncpg.connect(self.url, timeout=10, server_settings={"jit": "off"}))

    async def lease(self, worker: int, n: int) -> Leased:
        tok = token()
        rows = await self.conns[worker].fetch(PG_LEASE, n, tok, time.time())
        return [(row[0], tok) for row in rows]

    async def ack(self, worker: int, leased: Leased) -> int:
        ids = [i for i, _ in leased]
        inserted = await self.conns[worker].fetchval(PG_ACK, ids, [t for _, t in leased], [body(i) for i in ids],
                                                     time.time())
        if inserted != len(leased):
            raise RuntimeError(f"raw loop: {inserted} of {len(leased)} leases still held")
        return inserted

    async def reset(self) -> None:
        await self.admin.execute("TRUNCATE results")
        await self.admin.execute("UPDATE jobs SET status = 0, token = NULL, leased_at = NULL")
        await self.admin.execute("VACUUM ANALYZE jobs, results")  # each measurement on a table without dead rows

    async def check(self) -> tuple[int, int, int, int]:
        row = await self.admin.fetchrow(
            "SELECT count(*) FILTER (WHERE status = 2), count(*) FILTER (WHERE status = 1) FROM jobs")
        res = await self.admin.fetchrow(
            "SELECT count(*), count(DISTINCT r.job_id) FROM results r JOIN jobs j ON j.id = r.job_id AND j.status = 2")
        return row[0], row[1], res[0], res[1]

    async def close(self) -> None:
        for conn in [*self.conns, self.admin]:
            with contextlib.suppress(Exception):
                await conn.close()


# ---- the measurements --------------------------------------------------------------------------------------

@contextlib.asynccontextmanager
async def opened(driver: str, target: str, jobs: int) -> AsyncIterator[Loop]:
    loop: Loop
    if driver == "sqlite":
        loop = await SQLiteLoop.open(Path(target), jobs)
    elif driver == "postgresql":
        loop = await PostgresLoop.open(target, jobs)
    else:
        raise ValueError(f"raw loop: unknown driver {driver!r}")
    try:
        yield loop
    finally:
        await loop.close()


async def measure(loop: Loop, mode: str, *, jobs: int, batch: int, workers: int, window_s: float,
                  pg_pid: int = 0) -> Sample:
    """One drain (batched) or one window (single) from a freshly reset table; checked afterwards."""
    n = batch if mode == "batched" else 1
    await loop.reset()
    if isinstance(loop, PostgresLoop):
        await loop.connections(workers)
    deadline = time.monotonic() + window_s
    acked = [0] * workers

    async def worker(w: int) -> None:
        for _ in range(jobs // n + 1):  # bounded: the table holds ``jobs`` rows
            if time.monotonic() > deadline:
                return
            leased = await loop.lease(w, n)
            if not leased:
                return
            acked[w] += await loop.ack(w, leased)

    cpu0, pg0 = time.process_time(), server_cpu(pg_pid)
    started = time.perf_counter()
    await asyncio.wait_for(asyncio.gather(*(worker(w) for w in range(workers))), window_s + 60)
    seconds = time.perf_counter() - started
    cpu, pg = time.process_time() - cpu0, server_cpu(pg_pid) - pg0
    done, leased, results, distinct = await loop.check()
    total = sum(acked)
    if not (done == results == distinct == total) or leased:
        raise RuntimeError(f"raw loop {mode}: {total} acknowledged, {done} done, {leased} left leased, "
                           f"{results} result rows for {distinct} jobs")
    return Sample(mode, total, seconds, cpu, pg)


async def run(driver: str, target: str, *, jobs: int = 10_000, batch: int = 100, batched_workers: int = 4,
              single_workers: int = 16, drains: int = 3, single_window_s: float = 3.0, pg_pid: int = 0,
              timeout_s: float = 120.0) -> list[Sample]:
    """``drains`` batched drains, then one single window: the samples, each checked."""
    out: list[Sample] = []
    async with opened(driver, target, jobs) as loop:
        for _ in range(drains):
            out.append(await measure(loop, "batched", jobs=jobs, batch=batch, workers=batched_workers,
                                     window_s=timeout_s, pg_pid=pg_pid))
        if single_window_s > 0:
            out.append(await measure(loop, "single", jobs=jobs, batch=1, workers=single_workers,
                                     window_s=single_window_s, pg_pid=pg_pid))
    return out


async def main(args: dict[str, Any]) -> None:
    samples = await run(**args)
    sys.stdout.write(json.dumps({"samples": [asdict(s) for s in samples],
                                 "sqlite": sqlite3.sqlite_version}) + "\n")


if __name__ == "__main__":
    asyncio.run(main(json.loads(sys.argv[1])))
