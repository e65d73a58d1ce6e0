"""The simulator's own world (tgdaemon/gateway/simulator.py), as the SQLite twin keeps it
(tgdaemon/store/sqlite/sim.py), for several daemons on one database.

An open must be atomic across processes: it locks the account's ``sim_profiles`` row FOR UPDATE (made
first, NULL, when missing), so two processes opening one account take turns, and the second sees the
first's connection. It then locks the account's open connections too, so a ping of one of them in flight
is waited for and a timed-out verdict is never made on a stale read. A ping takes only the rows no one
holds (SKIP LOCKED): it never waits, so opens and pings cannot wait for each other in a cycle; a ping
that skipped a row neither refreshes nor closes it (the next one does, well within the server timeout).
Times are the database's clock, so hosts with skewed clocks agree on a timeout.
"""

from __future__ import annotations

from collections.abc import Callable

from asyncpg import Record

from tgdaemon.store import simrules
from tgdaemon.store.api import SimConnection
from tgdaemon.store.postgres.core import PostgresCore, Tx

COLUMNS = "id, tg_user_id, node, pid, opened_at, last_seen_at, closed_at, closed_why"
DB_NOW = "SELECT extract(epoch from clock_timestamp())::float8"


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


class SimStore(PostgresCore):
    async def sim_profile(self, tg_user_id: int) -> str | None:
        profile: str | None = await self.read_val("SELECT profile_json FROM sim_profiles WHERE tg_user_id = $1",
                                                  tg_user_id)
        return profile

    async def sim_save_profile(self, tg_user_id: int, profile: str) -> None:
        async with self.tx() as tx:
            await tx.execute("INSERT INTO sim_profiles (tg_user_id, profile_json) VALUES ($1, $2::jsonb) ON CONFLICT"
                             " (tg_user_id) DO UPDATE SET profile_json = excluded.profile_json", tg_user_id, profile)

    async def sim_open(self, tg_user_id: int, node: str, pid: int, live_pids: Callable[[list[int]], set[int]],
                       server_timeout: float) -> SimConnection | int:
        """Open a connection (its id) unless another live one of the account exists: then that one.
        Live: not closed, its pid in ``live_pids(...)``, seen within ``server_timeout``."""
        lock = "SELECT 1 FROM sim_profiles WHERE tg_user_id = $1 FOR UPDATE"
        async with self.tx() as tx:
            if await tx.fetchval(lock, tg_user_id) is None:  # the account's first open: its row, then its lock
                await tx.execute("INSERT INTO sim_profiles (tg_user_id) VALUES ($1) ON CONFLICT DO NOTHING",
                                 tg_user_id)
                await tx.fetchval(lock, tg_user_id)
            open_now = [connection(r) for r in await tx.fetch(
                f"SELECT {COLUMNS} FROM sim_connections WHERE tg_user_id = $1 AND closed_at IS NULL ORDER BY id"
                " FOR UPDATE", tg_user_id)]
            at = float(await tx.fetchval(DB_NOW))  # after the locks: a wait for them is not counted as idle
            verdict = simrules.judge_open(open_now, at, server_timeout, live_pids)
            await _time_out(tx, verdict.timed_out, server_timeout)
            if verdict.gone:
                await tx.execute("UPDATE sim_connections SET closed_at = $1, closed_why = $2"
                                 " WHERE id = ANY($3::bigint[])", at, simrules.GONE, verdict.gone)
            await tx.execute("DELETE FROM sim_connections WHERE tg_user_id = $1 AND closed_at < $2",
                             tg_user_id, at - simrules.KEEP_CLOSED_SECONDS)
            if verdict.live is not None:  # the refused attempt is on the record too: a test sees the overlap
                await _insert(tx, tg_user_id, node, pid, at, simrules.DUPLICATE)
                return verdict.live
            return await _insert(tx, tg_user_id, node, pid, at, None)

    async def sim_close(self, connection_id: int, why: str) -> None:
        async with self.tx() as tx:
            await tx.execute(f"UPDATE sim_connections SET closed_at = ({DB_NOW}), closed_why = $1 WHERE id = $2"
                             " AND closed_at IS NULL", why, connection_id)

    async def sim_keepalive(self, connection_ids: list[int], server_timeout: float) -> list[int]:
        """Pings: the given connections are seen now; returns those the server had closed (timed out)."""
        if not connection_ids:
            return []
        async with self.tx() as tx:
            at = float(await tx.fetchval(DB_NOW))
            found = [(r[0], r[1], r[2]) for r in await tx.fetch(
                "SELECT id, last_seen_at, closed_at FROM sim_connections WHERE id = ANY($1::bigint[])"
                " FOR UPDATE SKIP LOCKED", connection_ids)]
            locked = {row[0] for row in found}
            busy = {r[0] for r in await tx.fetch(  # there, but held by another transaction (an open)
                "SELECT id FROM sim_connections WHERE id = ANY($1::bigint[])", connection_ids)} - locked
            verdict = simrules.judge_ping(connection_ids, found, busy, at, server_timeout)
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
