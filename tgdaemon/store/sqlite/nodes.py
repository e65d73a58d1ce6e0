"""Nodes, account ownership and the fleet's leadership on SQLite (design 9).

Exactly one node runs on a SQLite store (the data dir lock sees to it), through the same rows and rules
as a fleet on PostgreSQL, with one difference the lock allows: a new incarnation takes its name over at
once (``register_node``), never waiting for the one before it to be seen dead nor for its lease to end
(``nodes.prior_until`` stays 0 here). The database's clock is
this host's. Each method is one transaction under the one writer, so nothing here races with another node.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable

from tgdaemon.errors import NotFound
from tgdaemon.store import nodes
from tgdaemon.store.api import Assignment, NodeInfo, NodeSpec, OwnedAccount, Renewal
from tgdaemon.store.sqlite.core import StoreCore, Tx
from tgdaemon.store.sqlite.locks import release_locks
from tgdaemon.store.sqlite.setup import INTERRUPTED
from tgdaemon.timeutil import now, steady

NODE_SQL = """SELECT n.*, (SELECT COUNT(*) FROM accounts a WHERE a.owner = n.name) AS accounts,
    EXISTS (SELECT 1 FROM leadership l WHERE l.node = n.name AND l.expires_at > :now) AS leader FROM nodes n"""
OWNED = "id, owner_epoch AS epoch, assigned_node, disabled_at IS NOT NULL AS disabled"


def _owned(rows: Iterable[sqlite3.Row]) -> list[OwnedAccount]:
    return sorted((OwnedAccount(r["id"], r["epoch"], r["assigned_node"], bool(r["disabled"])) for r in rows),
                  key=lambda o: o.id)


async def _lead(tx: Tx, name: str, at: float, lease_seconds: float) -> int | None:
    """Take or renew the fleet's leadership: free, expired or already this node's. A new term (another
    holder, or this one after its term lapsed) has a new epoch, so leader work fenced by the old one
    (a stalled earlier incarnation's) is refused."""
    params = {"me": name, "now": at, "until": at + lease_seconds, "name": nodes.LEADERSHIP}
    held = next(iter(await tx.fetchall("SELECT node, epoch, expires_at FROM leadership WHERE name = ?",
                                       (nodes.LEADERSHIP,))), None)
    if held is None:
        rows = list(await tx.fetchall("INSERT INTO leadership (name, node, epoch, expires_at)"
                                      " VALUES (:name, :me, 1, :until) ON CONFLICT (name) DO NOTHING RETURNING epoch",
                                      params))
    elif held["node"] != name and held["expires_at"] > at:
        return None
    else:
        rows = list(await tx.fetchall(
            "UPDATE leadership SET epoch = epoch + (CASE WHEN node = :me AND expires_at > :now THEN 0 ELSE 1 END),"
            " node = :me, expires_at = :until WHERE name = :name AND (node = :me OR expires_at <= :now)"
            " RETURNING epoch", params))
    if not rows:
        return None
    epoch = int(rows[0]["epoch"])
    if held is None or epoch != held["epoch"]:
        await tx.event("node.leader", f"node {name} leads the fleet (epoch {epoch})",
                       data={"node": name, "epoch": epoch})
    return epoch


async def _recover(tx: Tx, ids: list[int]) -> None:
    """A new owner's first act: what the old one left running goes back to retry (as recover_setup does)
    and its local executor's leases end now: the reaper hands them out again with their reservation renewed,
    as after a crash (a late report of the old owner is refused by its epoch)."""
    at = now()
    running = sorted(await tx.fetchall(
        f"UPDATE account_tasks SET status = 'retry', retry_at = :now, updated_at = :now, {INTERRUPTED}"
        " WHERE status = 'running'"
        " AND account_id IN (SELECT value FROM json_each(:ids)) RETURNING id, account_id, task_type",
        {"now": at, "ids": json.dumps(ids)}), key=lambda r: r["id"])
    await release_locks(tx, [(r["account_id"], f"setup:{r['id']}") for r in running])
    await tx.events_many([{"kind": "setup.recovered", "account_id": r["account_id"], "task_id": r["id"],
                           "message": f"{r['task_type']}: was running when the daemon stopped; retry"}
                          for r in running])
    await tx.execute(
        "UPDATE tasks SET lease_expires_at = ? WHERE status = 'leased' AND leased_by = 'local'"
        " AND account_id IN (SELECT value FROM json_each(?))", (at, json.dumps(ids)))


class NodeStore(StoreCore):
    async def db_now(self) -> float:
        return now()

    async def register_node(self, spec: NodeSpec, *, dead_after: float, lease_seconds: float) -> NodeInfo | None:
        async with self.tx() as tx:
            at = now()
            old = next(iter(await tx.fetchall("SELECT incarnation FROM nodes WHERE name = ?", (spec.name,))), None)
            if old is not None and old["incarnation"] != spec.incarnation:
                # One daemon per SQLite store: the data dir lock it holds proves the earlier incarnation gone,
                # even one whose heartbeat looks recent (kill -9). So no wait for its heartbeat to age nor for
                # its lease to end: what it owned is free now, and its leader work (a new term) too.
                await tx.execute("UPDATE leadership SET expires_at = 0 WHERE node = ?", (spec.name,))
                for (account_id,) in await tx.fetchall("UPDATE accounts SET owner = NULL WHERE owner = ?"
                                                       " RETURNING id", (spec.name,)):
                    tx.touch(account_id)
            await tx.execute(
                "INSERT INTO nodes (name, incarnation, host, pid, version, http, max_accounts, started_at,"
                " heartbeat_at, owned_until, stopped_at, prior_until)"
                " VALUES (:name, :inc, :host, :pid, :version, :http, :max, :now, :now, :until, NULL, 0)"
                " ON CONFLICT (name) DO UPDATE SET incarnation = excluded.incarnation, host = excluded.host,"
                " pid = excluded.pid, version = excluded.version, http = excluded.http,"
                " max_accounts = excluded.max_accounts, started_at = excluded.started_at,"
                " heartbeat_at = excluded.heartbeat_at, owned_until = excluded.owned_until, stopped_at = NULL,"
                " prior_until = 0",
                {"name": spec.name, "inc": spec.incarnation, "host": spec.host, "pid": spec.pid,
                 "version": spec.version, "http": spec.http, "max": spec.max_accounts, "now": at,
                 "until": at + lease_seconds})
            await tx.event("node.started", f"node {spec.name} started on {spec.host} (pid {spec.pid})",
                           data={"node": spec.name, "host": spec.host, "pid": spec.pid, "version": spec.version})
            [row] = await tx.fetchall(f"{NODE_SQL} WHERE n.name = :name", {"name": spec.name, "now": at})
            return nodes.node_info(row, at=at, dead_after=dead_after)

    async def renew_node(self, name: str, incarnation: str, *, lease_seconds: float, lead: bool) -> Renewal:
        async with self.tx() as tx:
            sent = steady()  # before the database reads its clock: the lease it grants ends later than ours
            at = now()
            cur = await tx.execute("UPDATE nodes SET heartbeat_at = ?, owned_until = ? WHERE name = ?"
                                   " AND incarnation = ? AND stopped_at IS NULL",
                                   (at, at + lease_seconds, name, incarnation))
            if not cur.rowcount:
                return Renewal(held=False, at=at, owned_until=at, leader_epoch=None, sent=sent)
            epoch = await _lead(tx, name, at, lease_seconds) if lead else None
            return Renewal(held=True, at=at, owned_until=at + lease_seconds, leader_epoch=epoch, sent=sent)

    async def stop_node(self, name: str, incarnation: str) -> int:
        async with self.tx() as tx:
            at = now()
            cur = await tx.execute("UPDATE nodes SET stopped_at = ?, owned_until = ?"
                                   " WHERE name = ? AND incarnation = ? AND stopped_at IS NULL",
                                   (at, at, name, incarnation))
            if not cur.rowcount:
                return 0
            released = [r[0] for r in await tx.fetchall(
                "UPDATE accounts SET owner = NULL WHERE owner = ? RETURNING id", (name,))]
            for account_id in released:
                tx.touch(account_id)
            await tx.execute("UPDATE leadership SET expires_at = 0 WHERE node = ?", (name,))
            await tx.event("node.stopped", f"node {name} stopped; {len(released)} account(s) released",
                           data={"node": name, "released": len(released)})
            return len(released)

    async def list_nodes(self, dead_after: float) -> list[NodeInfo]:
        at = now()
        rows = await self.read(f"{NODE_SQL} ORDER BY n.name", {"now": at})
        return [nodes.node_info(r, at=at, dead_after=dead_after) for r in rows]

    async def acquire_accounts(self, name: str, incarnation: str, limit: int, *,
                               grace: float = 0.0) -> list[OwnedAccount]:
        async with self.tx() as tx:
            at = now()
            me = next(iter(await tx.fetchall(
                "SELECT owned_until FROM nodes WHERE name = ? AND incarnation = ? AND stopped_at IS NULL",
                (name, incarnation))), None)
            if me is None or me["owned_until"] <= at:
                return []
            acquired = _owned(await tx.fetchall(
                "UPDATE accounts SET owner = :me, owner_epoch = owner_epoch + 1 WHERE id IN ("
                " SELECT a.id FROM accounts a WHERE a.assigned_node = :me AND (a.owner IS NULL OR NOT EXISTS ("
                "  SELECT 1 FROM nodes n WHERE n.name = a.owner AND n.owned_until + :grace > :now))"
                f" ORDER BY a.id LIMIT :limit) RETURNING {OWNED}", {"me": name, "now": at, "limit": limit,
                                                                   "grace": grace}))
            if acquired:
                await _recover(tx, [a.id for a in acquired])
            for a in acquired:
                tx.touch(a.id)
            return acquired

    async def owned_accounts(self, name: str) -> list[OwnedAccount]:
        return _owned(await self.read(f"SELECT {OWNED} FROM accounts WHERE owner = ? ORDER BY id", (name,)))

    async def owned_digest(self, name: str) -> tuple[int, int]:
        r = next(iter(await self.read(nodes.owned_digest_sql(":me", "a.owner = :me"), {"me": name})))
        return int(r["n"]), int(r["s"])

    async def release_accounts(self, name: str, owned: list[tuple[int, int]]) -> int:
        if not owned:
            return 0
        async with self.tx() as tx:
            released = [r[0] for r in await tx.fetchall(
                "UPDATE accounts SET owner = NULL WHERE owner = ? AND (id, owner_epoch) IN ("
                " SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]') FROM json_each(?)) RETURNING id",
                (name, json.dumps(owned)))]
            for account_id in released:
                tx.touch(account_id)
            return len(released)

    async def assignment(self, live: list[str]) -> Assignment:
        rows = await self.read("SELECT assigned_node, pinned_node, COUNT(*) FROM accounts"
                               " GROUP BY assigned_node, pinned_node")
        return nodes.assignment(((r[0], r[1], int(r[2])) for r in rows), live)

    async def move_accounts(self, leader_epoch: int, src: str | None, dst: str, n: int, live: list[str]) -> int:
        if n <= 0 or src == dst:
            return 0
        async with self.tx() as tx:
            at = now()
            if not list(await tx.fetchall(
                    "SELECT 1 FROM leadership WHERE name = ? AND epoch = ? AND expires_at > ?",
                    (nodes.LEADERSHIP, leader_epoch, at))):
                return 0
            where = ("(assigned_node IS NULL OR assigned_node NOT IN (SELECT value FROM json_each(:live)))"
                     if src is None else "assigned_node = :src")
            cur = await tx.execute(
                f"UPDATE accounts SET assigned_node = :dst WHERE id IN (SELECT id FROM accounts"
                f" WHERE pinned_node IS NULL AND {where} ORDER BY id LIMIT :n)",
                {"dst": dst, "src": src, "live": json.dumps(live), "n": n})
            if cur.rowcount:
                await tx.event("accounts.moved", f"{cur.rowcount} account(s) moved from {src or 'no live node'}"
                               f" to {dst}", data={"from": src, "to": dst, "accounts": cur.rowcount})
            return cur.rowcount

    async def pin_accounts(self, ids: list[int], node: str | None) -> int:
        async with self.tx() as tx:
            found = {r[0] for r in await tx.fetchall(
                "SELECT id FROM accounts WHERE id IN (SELECT value FROM json_each(?))", (json.dumps(ids),))}
            if missing := sorted(set(ids) - found):
                raise NotFound(f"account {missing[0]}: no such account")
            if node is None:
                changed = [r[0] for r in await tx.fetchall(
                    "UPDATE accounts SET pinned_node = NULL WHERE pinned_node IS NOT NULL"
                    " AND id IN (SELECT value FROM json_each(?)) RETURNING id", (json.dumps(ids),))]
            else:
                changed = [r[0] for r in await tx.fetchall(
                    "UPDATE accounts SET pinned_node = :node, assigned_node = :node"
                    " WHERE (pinned_node IS NOT :node OR assigned_node IS NOT :node)"
                    " AND id IN (SELECT value FROM json_each(:ids)) RETURNING id",
                    {"node": node, "ids": json.dumps(ids)})]
            for account_id in changed:
                tx.touch(account_id)
            if changed:
                what = f"pinned to {node}" if node is not None else "unpinned"
                await tx.event("accounts.pinned", f"{len(changed)} account(s) {what}",
                               data={"node": node, "accounts": len(changed)})
            return len(changed)
