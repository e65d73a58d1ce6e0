"""The simulator's own world (tgdaemon/gateway/simulator.py), as the SQLite twin keeps it
(tgdaemon/store/sqlite/sim.py), for several daemons on one database.

An open must be atomic across processes: it locks the account's ``sim_profiles`` row FOR UPDATE (made
first, NULL, when missing), so two processes opening one account take turns and the second sees the
first's connection. It then locks the account's open connection (every open closes all the others, so
there is at most one): a ping of it in flight is waited for, and no timeout is judged on a stale read.
No deadlock: an open waits for nothing more once it holds that row (pruning its old records skips
locked ones), nor does a close, and a ping (its own process's rows) waits only for those: every wait
ends at a transaction that is not waiting. A process stopped in the middle of one of these (SIGSTOP)
keeps its locks: the others give up after LOCK_TIMEOUT with TimeoutError, as a connection attempt that
timed out. Times are the database's clock, so hosts with skewed clocks agree.

The batch of opens (``sim_open_many``) takes one transaction per account here: one holding an account's rows
while it waits for another's could deadlock with a ping (which locks connections in id order), and a process
stopped holding one account must not time out the others. A batch of saves locks profile rows only, in
account order: one transaction (``sim_save_profiles``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from typing import TypeVar

import asyncpg
from asyncpg import Record

from tgdaemon.store import simrules
from tgdaemon.store.api import SimConnection
from tgdaemon.store.postgres.core import PostgresCore, Tx

COLUMNS = "id, tg_user_id, node, pid, opened_at, last_seen_at, closed_at, closed_why"
DB_NOW = "SELECT extract(epoch from clock_timestamp())::float8"
# A process stopped in the middle of a write (SIGSTOP, a stalled host) keeps its row locks: the others wait
# this long for them, then give up as a connection attempt or a ping that timed out, and their writer is free.
LOCK_TIMEOUT = "2s"
SAVE = ("INSERT INTO sim_profiles (tg_user_id, profile_json) VALUES ($1, $2::jsonb) ON CONFLICT (tg_user_id)"
        " DO UPDATE SET profile_json = excluded.profile_json")
T = TypeVar("T")


def connection(row: Record) -> SimConnection:
    return SimConnection(row["id"], row["tg_user_id"], row["node"], row["pid"], row["opened_at"],
                         row["last_seen_at"], row["closed_at"], row["closed_why"])


async def _insert(tx: Tx, tg_user_id: int, node: str, pid: int, at: float, closed_why: str | None) -> int:
    return int(await tx.fetchval(
        "INSERT INTO sim_connections (tg_user_id, node, pid, opened_at, last_seen_at, closed_at, closed_why)"
        " VALUES ($1, $2, $3, $4, $4, $5, $6) RETURNING id",
        tg_user_id, node, pid, at, at if closed_why else None, closed_why))


async def _time_out(tx: Tx, ids: list[int], server_timeout: float) -> None:
    if ids:
        await tx.execute("UPDATE sim_connections SET closed_at = last_seen_at + $1, closed_why = $2"
                         " WHERE id = ANY($3::bigint[])", server_timeout, simrules.TIMEOUT, ids)


async def _outcome(step: Awaitable[T]) -> T | Exception:
    """One account's write of a batch: its result, or what kept it from happening (the others go on)."""
    try:
        return await step
    except Exception as exc:
        return exc


class SimStore(PostgresCore):
    @asynccontextmanager
    async def _sim_tx(self) -> AsyncIterator[Tx]:
        try:
            async with self.tx() as tx:
                await tx.execute(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'")
                yield tx
        except asyncpg.exceptions.LockNotAvailableError:
            raise TimeoutError(f"the simulated server: another process has been in the middle of a write of"
                               f" this account for {LOCK_TIMEOUT} (stopped?)") from None

    async def sim_profile(self, tg_user_id: int) -> str | None:
        profile: str | None = await self.read_val("SELECT profile_json FROM sim_profiles WHERE tg_user_id = $1",
                                                  tg_user_id)
        return profile

    async def sim_save_profile(self, tg_user_id: int, profile: str) -> None:
        async with self._sim_tx() as tx:
            await tx.execute(SAVE, tg_user_id, profile)

    async def sim_save_profiles(self, profiles: Sequence[tuple[int, str]]) -> list[Exception | None]:
        """One transaction, in account order (two batches lock alike; a later save of an account stays); should
        a row be held (a process stopped in the middle of an open), each save in a transaction of its own, so
        that only that account's times out."""
        try:
            async with self._sim_tx() as tx:
                await tx.executemany(SAVE, sorted(profiles, key=lambda p: p[0]))
        except TimeoutError:
            return [await _outcome(self.sim_save_profile(tg_user_id, profile)) for tg_user_id, profile in profiles]
        return [None] * len(profiles)

    async def sim_open_many(self, tg_user_ids: Sequence[int], node: str, pid: int,
                            live_pids: Callable[[list[int]], set[int]],
                            server_timeout: float) -> list[SimConnection | int | Exception]:
        return [await _outcome(self.sim_open(tg_user_id, node, pid, live_pids, server_timeout))
                for tg_user_id in tg_user_ids]

    async def sim_open(self, tg_user_id: int, node: str, pid: int, live_pids: Callable[[list[int]], set[int]],
                       server_timeout: float) -> SimConnection | int:
        """Open a connection (its id) unless another live one of the account exists: then that one.
        Live: not closed, its pid in ``live_pids(...)``, seen within ``server_timeout``."""
        lock = "SELECT 1 FROM sim_profiles WHERE tg_user_id = $1 FOR UPDATE"
        async with self._sim_tx() as tx:
            if await tx.fetchval(lock, tg_user_id) is None:  # the account's first open: its row, then its lock
                await tx.execute("INSERT INTO sim_profiles (tg_user_id) VALUES ($1) ON CONFLICT DO NOTHING",
                                 tg_user_id)
                await tx.fetchval(lock, tg_user_id)
            open_now = [connection(r) for r in await tx.fetch(
                f"SELECT {COLUMNS} FROM sim_connections WHERE tg_user_id = $1 AND closed_at IS NULL ORDER BY id"
                " FOR UPDATE", tg_user_id)]
            at = float(await tx.fetchval(DB_NOW))  # after the locks: judged on what holds now
            verdict = simrules.judge_open(open_now, at, server_timeout, live_pids)
            await _time_out(tx, verdict.timed_out, server_timeout)
            if verdict.gone:
                await tx.execute("UPDATE sim_connections SET closed_at = $1, closed_why = $2"
                                 " WHERE id = ANY($3::bigint[])", at, simrules.GONE, verdict.gone)
            await tx.execute(  # SKIP LOCKED: once it holds the account's open row, an open waits for nothing
                "DELETE FROM sim_connections WHERE id IN (SELECT id FROM sim_connections WHERE tg_user_id = $1"
                " AND closed_at < $2 FOR UPDATE SKIP LOCKED)", tg_user_id, at - simrules.KEEP_CLOSED_SECONDS)
            if verdict.live is not None:  # the refused attempt is on the record too: a test sees the overlap
                await _insert(tx, tg_user_id, node, pid, at, simrules.DUPLICATE)
                return verdict.live
            return await _insert(tx, tg_user_id, node, pid, at, None)

    async def sim_close(self, connection_ids: list[int], why: str) -> None:
        if not connection_ids:
            return
        async with self._sim_tx() as tx:
            ids = [r[0] for r in await tx.fetch("SELECT id FROM sim_connections WHERE id = ANY($1::bigint[])"
                                                " AND closed_at IS NULL ORDER BY id FOR UPDATE", connection_ids)]
            if ids:  # the time after the locks: an open that was judging one of them has seen it open
                await tx.execute(f"UPDATE sim_connections SET closed_at = ({DB_NOW}), closed_why = $1"
                                 " WHERE id = ANY($2::bigint[]) AND closed_at IS NULL", why, ids)

    async def sim_keepalive(self, connection_ids: list[int], server_timeout: float) -> list[int]:
        """Pings: the given connections are seen now; returns those the server had closed (timed out)."""
        if not connection_ids:
            return []
        async with self._sim_tx() as tx:
            found = [(r[0], r[1], r[2]) for r in await tx.fetch(
                "SELECT id, last_seen_at, closed_at FROM sim_connections WHERE id = ANY($1::bigint[]) ORDER BY id"
                " FOR UPDATE", connection_ids)]
            at = float(await tx.fetchval(DB_NOW))  # after the locks: an open that held one has decided by now
            verdict = simrules.judge_ping(connection_ids, found, at, server_timeout)
            await _time_out(tx, verdict.timed_out, server_timeout)
            if verdict.seen:
                await tx.execute("UPDATE sim_connections SET last_seen_at = $1 WHERE id = ANY($2::bigint[])",
                                 at, verdict.seen)
            return verdict.closed

    async def sim_connections(self, tg_user_id: int | None = None) -> list[SimConnection]:
        if tg_user_id is None:
            rows = await self.read(f"SELECT {COLUMNS} FROM sim_connections ORDER BY id")
        else:
            rows = await self.read(f"SELECT {COLUMNS} FROM sim_connections WHERE tg_user_id = $1 ORDER BY id",
                                   tg_user_id)
        return [connection(r) for r in rows]
