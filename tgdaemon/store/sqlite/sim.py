"""The simulator's own world (tgdaemon/gateway/simulator.py): its accounts' profiles and connections.

Only the simulator reads these tables; they let daemons on one store share one simulated Telegram. The
server's rules are tgdaemon/store/simrules.py. An open is one write transaction, and SQLite has one
writer: two opens of one account are one after the other, so the second sees the first's connection.
A closed connection's record goes a day after it closed, when its account next opens one (one index
lookup, in the same transaction): the record stays small without a retention pass of its own.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable

from tgdaemon.store import simrules
from tgdaemon.store.api import SimConnection
from tgdaemon.store.sqlite.core import StoreCore, Tx
from tgdaemon.timeutil import now

COLUMNS = "id, tg_user_id, node, pid, opened_at, last_seen_at, closed_at, closed_why"


def connection(row: sqlite3.Row) -> SimConnection:
    return SimConnection(row["id"], row["tg_user_id"], row["node"], row["pid"], row["opened_at"],
                         row["last_seen_at"], row["closed_at"], row["closed_why"])


async def _insert(tx: Tx, tg_user_id: int, node: str, pid: int, at: float, closed_why: str | None) -> int:
    cur = await tx.execute(
        "INSERT INTO sim_connections (tg_user_id, node, pid, opened_at, last_seen_at, closed_at, closed_why)"
        " VALUES (?, ?, ?, ?, ?, ?, ?)", (tg_user_id, node, pid, at, at, at if closed_why else None, closed_why))
    return int(cur.lastrowid or 0)


class SimStore(StoreCore):
    async def sim_profile(self, tg_user_id: int) -> str | None:
        rows = list(await self.read("SELECT profile_json FROM sim_profiles WHERE tg_user_id = ?", (tg_user_id,)))
        return rows[0][0] if rows else None

    async def sim_save_profile(self, tg_user_id: int, profile: str) -> None:
        async with self.tx() as tx:
            await tx.execute("INSERT INTO sim_profiles (tg_user_id, profile_json) VALUES (?, ?) ON CONFLICT"
                             " (tg_user_id) DO UPDATE SET profile_json = excluded.profile_json", (tg_user_id, profile))

    async def sim_open(self, tg_user_id: int, node: str, pid: int, live_pids: Callable[[list[int]], set[int]],
                       server_timeout: float) -> SimConnection | int:
        """Open a connection (its id) unless another live one of the account exists: then that one.
        Live: not closed, its pid in ``live_pids(...)``, seen within ``server_timeout``."""
        async with self.tx() as tx:
            at = now()
            open_now = [connection(r) for r in await tx.fetchall(
                f"SELECT {COLUMNS} FROM sim_connections WHERE tg_user_id = ? AND closed_at IS NULL ORDER BY id",
                (tg_user_id,))]
            verdict = simrules.judge_open(open_now, at, server_timeout, live_pids)
            if verdict.timed_out:
                await tx.execute("UPDATE sim_connections SET closed_at = last_seen_at + ?, closed_why = ?"
                                 " WHERE id IN (SELECT value FROM json_each(?))",
                                 (server_timeout, simrules.TIMEOUT, json.dumps(verdict.timed_out)))
            if verdict.gone:
                await tx.execute("UPDATE sim_connections SET closed_at = ?, closed_why = ?"
                                 " WHERE id IN (SELECT value FROM json_each(?))",
                                 (at, simrules.GONE, json.dumps(verdict.gone)))
            await tx.execute("DELETE FROM sim_connections WHERE tg_user_id = ? AND closed_at < ?",
                             (tg_user_id, at - simrules.KEEP_CLOSED_SECONDS))
            if verdict.live is not None:  # the refused attempt is on the record too: a test sees the overlap
                await _insert(tx, tg_user_id, node, pid, at, simrules.DUPLICATE)
                return verdict.live
            return await _insert(tx, tg_user_id, node, pid, at, None)

    async def sim_close(self, connection_ids: list[int], why: str) -> None:
        if not connection_ids:
            return
        async with self.tx() as tx:
            await tx.execute("UPDATE sim_connections SET closed_at = ?, closed_why = ?"
                             " WHERE id IN (SELECT value FROM json_each(?)) AND closed_at IS NULL",
                             (now(), why, json.dumps(connection_ids)))

    async def sim_keepalive(self, connection_ids: list[int], server_timeout: float) -> list[int]:
        """Pings: the given connections are seen now; returns those the server had closed (timed out)."""
        if not connection_ids:
            return []
        ids = json.dumps(connection_ids)
        async with self.tx() as tx:
            at = now()
            found = [(r[0], r[1], r[2]) for r in await tx.fetchall(
                "SELECT id, last_seen_at, closed_at FROM sim_connections WHERE id IN (SELECT value FROM json_each(?))",
                (ids,))]
            verdict = simrules.judge_ping(connection_ids, found, at, server_timeout)
            if verdict.timed_out:
                await tx.execute("UPDATE sim_connections SET closed_at = last_seen_at + ?, closed_why = ?"
                                 " WHERE id IN (SELECT value FROM json_each(?))",
                                 (server_timeout, simrules.TIMEOUT, json.dumps(verdict.timed_out)))
            if verdict.seen:
                await tx.execute("UPDATE sim_connections SET last_seen_at = ?"
                                 " WHERE id IN (SELECT value FROM json_each(?))", (at, json.dumps(verdict.seen)))
            return verdict.closed

    async def sim_connections(self, tg_user_id: int | None = None) -> list[SimConnection]:
        if tg_user_id is None:
            rows = await self.read(f"SELECT {COLUMNS} FROM sim_connections ORDER BY id")
        else:
            rows = await self.read(f"SELECT {COLUMNS} FROM sim_connections WHERE tg_user_id = ? ORDER BY id",
                                   (tg_user_id,))
        return [connection(r) for r in rows]
