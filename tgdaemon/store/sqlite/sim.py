"""The simulator's own world (tgdaemon/gateway/simulator.py): its accounts' profiles and connections.

Only the simulator reads these tables; they let daemons on one store share one simulated Telegram. The
server's rules are tgdaemon/store/simrules.py. An open is in one write transaction, and SQLite has one
writer: two opens of one account are one after the other, so the second sees the first's connection.
A closed connection's record goes a day after it closed, when its account next opens one (one index
lookup, in the same transaction): the record stays small without a retention pass of its own.

The batch forms (``sim_open_many``, ``sim_save_profiles``) write many accounts in one transaction, set by
set: a transaction here is a commit to the disk, and the simulated fleet opens and saves thousands a second.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Sequence

from tgdaemon.store import simrules
from tgdaemon.store.api import SimConnection
from tgdaemon.store.sqlite.core import StoreCore, Tx
from tgdaemon.timeutil import now

COLUMNS = "id, tg_user_id, node, pid, opened_at, last_seen_at, closed_at, closed_why"
INSERT_ROWS = 128  # 7 parameters a row: under the 999 older SQLite builds allow in one statement


def connection(row: sqlite3.Row) -> SimConnection:
    return SimConnection(row["id"], row["tg_user_id"], row["node"], row["pid"], row["opened_at"],
                         row["last_seen_at"], row["closed_at"], row["closed_why"])


class SimStore(StoreCore):
    async def sim_profile(self, tg_user_id: int) -> str | None:
        rows = list(await self.read("SELECT profile_json FROM sim_profiles WHERE tg_user_id = ?", (tg_user_id,)))
        return rows[0][0] if rows else None

    async def sim_save_profile(self, tg_user_id: int, profile: str) -> None:
        await self.sim_save_profiles([(tg_user_id, profile)])

    async def sim_save_profiles(self, profiles: Sequence[tuple[int, str]]) -> list[Exception | None]:
        """All in one transaction, in order (an account twice: the later one stays); a failure raises."""
        async with self.tx() as tx:
            await tx.conn.executemany(
                "INSERT INTO sim_profiles (tg_user_id, profile_json) VALUES (?, ?) ON CONFLICT"
                " (tg_user_id) DO UPDATE SET profile_json = excluded.profile_json", profiles)
        return [None] * len(profiles)

    async def sim_open(self, tg_user_id: int, node: str, pid: int, live_pids: Callable[[list[int]], set[int]],
                       server_timeout: float) -> SimConnection | int:
        """Open a connection (its id) unless another live one of the account exists: then that one.
        Live: not closed, its pid in ``live_pids(...)``, seen within ``server_timeout``."""
        [opened] = await self.sim_open_many([tg_user_id], node, pid, live_pids, server_timeout)
        if isinstance(opened, Exception):
            raise opened
        return opened

    async def sim_open_many(self, tg_user_ids: Sequence[int], node: str, pid: int,
                            live_pids: Callable[[list[int]], set[int]],
                            server_timeout: float) -> list[SimConnection | int | Exception]:
        """The opens in one transaction, as if one after the other: an account named twice is opened in a
        second round, which sees the first's connection. A failure raises (none of them happened)."""
        results: dict[int, SimConnection | int] = {}
        async with self.tx() as tx:
            at = now()
            pending = list(enumerate(tg_user_ids))
            while pending:
                batch: dict[int, int] = {}  # tg_user_id -> its position, each account once a round
                later = []
                for i, uid in pending:
                    if uid in batch:
                        later.append((i, uid))
                    else:
                        batch[uid] = i
                pending = later
                await self._open_round(tx, batch, node, pid, live_pids, server_timeout, at, results)
        return [results[i] for i in range(len(tg_user_ids))]

    async def _open_round(self, tx: Tx, batch: dict[int, int], node: str, pid: int,
                          live_pids: Callable[[list[int]], set[int]], server_timeout: float, at: float,
                          results: dict[int, SimConnection | int]) -> None:
        uids = json.dumps(sorted(batch))
        open_now: dict[int, list[SimConnection]] = {}
        for r in await tx.fetchall(f"SELECT {COLUMNS} FROM sim_connections WHERE tg_user_id IN"
                                   " (SELECT value FROM json_each(?)) AND closed_at IS NULL ORDER BY id", (uids,)):
            open_now.setdefault(r["tg_user_id"], []).append(connection(r))
        timed_out: list[int] = []
        gone: list[int] = []
        rows: list[tuple[int, str | None]] = []  # (tg_user_id, closed_why) of the records to insert
        for uid in batch:
            verdict = simrules.judge_open(open_now.get(uid, []), at, server_timeout, live_pids)
            timed_out += verdict.timed_out
            gone += verdict.gone
            if verdict.live is not None:  # the refused attempt is on the record too: a test sees the overlap
                results[batch[uid]] = verdict.live
                rows.append((uid, simrules.DUPLICATE))
            else:
                rows.append((uid, None))
        if timed_out:
            await tx.execute("UPDATE sim_connections SET closed_at = last_seen_at + ?, closed_why = ?"
                             " WHERE id IN (SELECT value FROM json_each(?))",
                             (server_timeout, simrules.TIMEOUT, json.dumps(timed_out)))
        if gone:
            await tx.execute("UPDATE sim_connections SET closed_at = ?, closed_why = ?"
                             " WHERE id IN (SELECT value FROM json_each(?))", (at, simrules.GONE, json.dumps(gone)))
        await tx.execute("DELETE FROM sim_connections WHERE tg_user_id IN (SELECT value FROM json_each(?))"
                         " AND closed_at < ?", (uids, at - simrules.KEEP_CLOSED_SECONDS))
        for start in range(0, len(rows), INSERT_ROWS):
            chunk = rows[start:start + INSERT_ROWS]
            inserted = await tx.fetchall(
                "INSERT INTO sim_connections (tg_user_id, node, pid, opened_at, last_seen_at, closed_at, closed_why)"
                " VALUES " + ", ".join(["(?, ?, ?, ?, ?, ?, ?)"] * len(chunk)) + " RETURNING id, tg_user_id",
                [v for uid, why in chunk for v in (uid, node, pid, at, at, at if why else None, why)])
            for r in inserted:
                results.setdefault(batch[r["tg_user_id"]], int(r["id"]))  # a refused one keeps the live one

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
