"""Nodes, account ownership and the fleet's leadership on PostgreSQL (design 9), the SQLite twin's rules.

Several daemons write these rows at once, so each statement is safe against the others by itself:
- times are the database's clock (``clock_timestamp()``, read once per transaction), so hosts with
  skewed clocks agree on heartbeats, leases and liveness;
- a renewal writes its own node row and, only when it may take it (free, expired or its own), the
  leadership row: a node that sees another's live term reads it and leaves it, so renewals of different
  nodes never wait for each other;
- acquisition locks the accounts it takes (``FOR UPDATE SKIP LOCKED``) and re-checks each one's owner
  under the lock, so two nodes never both take one account; a row another transaction holds is left
  for the next heartbeat instead of waited for.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from asyncpg import Record

from tgdaemon.errors import NotFound
from tgdaemon.store import nodes
from tgdaemon.store.api import Assignment, NodeInfo, NodeSpec, OwnedAccount, Renewal
from tgdaemon.store.postgres.core import PostgresCore, Tx, named, retried
from tgdaemon.store.postgres.locks import release_locks
from tgdaemon.store.postgres.setup import INTERRUPTED
from tgdaemon.timeutil import now, steady

NOW = "extract(epoch FROM clock_timestamp())::float8"
NODE_SQL = """SELECT n.*, (SELECT count(*) FROM accounts a WHERE a.owner = n.name) AS accounts,
    EXISTS (SELECT 1 FROM leadership l WHERE l.node = n.name AND l.expires_at > {now}) AS leader, {now} AS at
    FROM nodes n"""
OWNED = "a.id, a.owner_epoch AS epoch, a.assigned_node, a.disabled_at IS NOT NULL AS disabled"
PRIOR_DONE = "NOT EXISTS (SELECT 1 FROM nodes WHERE name = $1 AND prior_until <> 0)"  # the earlier incarnation's let go
# Taken: assigned here and owned by no node whose lease still runs. Re-checked on the row's newest version
# once locked (a correlated subquery, not a join: a join would keep the owner read before the wait).
ACQUIRE = f"""WITH picked AS (
    SELECT a.id FROM accounts a WHERE a.assigned_node = :me AND (a.owner IS NULL OR NOT EXISTS (
        SELECT 1 FROM nodes n WHERE n.name = a.owner AND n.owned_until + :grace > :now))
    ORDER BY a.id LIMIT :limit FOR UPDATE OF a SKIP LOCKED)
UPDATE accounts a SET owner = :me, owner_epoch = a.owner_epoch + 1 FROM picked WHERE a.id = picked.id
RETURNING {OWNED}"""
MOVE = """WITH picked AS (
    SELECT a.id FROM accounts a WHERE a.pinned_node IS NULL AND {where}
    ORDER BY a.id LIMIT :n FOR UPDATE OF a SKIP LOCKED)
UPDATE accounts a SET assigned_node = :dst FROM picked WHERE a.id = picked.id"""


def _bound(sql: str, params: Mapping[str, Any]) -> list[Any]:
    """A ``:name`` statement as the arguments of ``fetch``/``execute``: its ``$n`` text, then its values."""
    text, values = named(sql, params)
    return [text, *values]


def _owned(rows: Iterable[Record]) -> list[OwnedAccount]:
    return sorted((OwnedAccount(r["id"], r["epoch"], r["assigned_node"], bool(r["disabled"])) for r in rows),
                  key=lambda o: o.id)


async def _now(tx: Tx) -> float:
    return float(await tx.fetchval(f"SELECT {NOW}"))


async def _lead(tx: Tx, name: str, at: float, lease_seconds: float) -> int | None:
    """Take or renew the fleet's leadership (the SQLite twin's rules). Another node's live term is only
    read: the conditional UPDATE locks the row only when it takes it."""
    held = await tx.fetchrow("SELECT node, epoch, expires_at FROM leadership WHERE name = $1", nodes.LEADERSHIP)
    params = {"me": name, "now": at, "until": at + lease_seconds, "name": nodes.LEADERSHIP}
    if held is None:
        epoch = await tx.fetchval(*_bound("INSERT INTO leadership (name, node, epoch, expires_at) VALUES"
                                          " (:name, :me, 1, :until) ON CONFLICT (name) DO NOTHING RETURNING epoch",
                                          params))
    elif held["node"] != name and held["expires_at"] > at:
        return None
    else:
        epoch = await tx.fetchval(*_bound(
            "UPDATE leadership SET epoch = epoch + (CASE WHEN node = :me AND expires_at > :now THEN 0 ELSE 1 END),"
            " node = :me, expires_at = :until WHERE name = :name AND (node = :me OR expires_at <= :now)"
            " RETURNING epoch", params))
    if epoch is None:
        return None
    if held is None or epoch != held["epoch"]:
        await tx.event("node.leader", f"node {name} leads the fleet (epoch {epoch})",
                       data={"node": name, "epoch": epoch})
    return int(epoch)


async def _recover(tx: Tx, ids: list[int]) -> None:
    """A new owner's first act (the SQLite twin's): running setup tasks back to retry, locks released, and
    the local executor's leases ended now: the reaper hands them out again with their reservation renewed, as
    after a crash (the old owner's report of one is refused by its epoch meanwhile)."""
    at = now()
    running = sorted(await tx.fetch(
        f"UPDATE account_tasks SET status = 'retry', retry_at = $1, updated_at = $1, {INTERRUPTED}"
        " WHERE status = 'running'"
        " AND account_id = ANY($2::bigint[]) RETURNING id, account_id, task_type", at, ids), key=lambda r: r["id"])
    await release_locks(tx, [(r["account_id"], f"setup:{r['id']}") for r in running])
    await tx.events_many([{"kind": "setup.recovered", "account_id": r["account_id"], "task_id": r["id"],
                           "message": f"{r['task_type']}: was running when the daemon stopped; retry"}
                          for r in running])
    await tx.execute("UPDATE tasks SET lease_expires_at = $1"
                     " WHERE status = 'leased' AND leased_by = 'local' AND account_id = ANY($2::bigint[])", at, ids)


class NodeStore(PostgresCore):
    async def db_now(self) -> float:
        return float(await self.read_val(f"SELECT {NOW}"))

    async def register_node(self, spec: NodeSpec, *, dead_after: float, lease_seconds: float) -> NodeInfo | None:
        values = {"name": spec.name, "inc": spec.incarnation, "host": spec.host, "pid": spec.pid,
                  "version": spec.version, "http": spec.http, "max": spec.max_accounts}
        async with self.tx() as tx:
            at = await _now(tx)
            values.update(now=at, until=at + lease_seconds, prior=0.0)
            fresh = await tx.fetchval(*_bound(
                "INSERT INTO nodes (name, incarnation, host, pid, version, http, max_accounts, started_at,"
                " heartbeat_at, owned_until, stopped_at, prior_until) VALUES (:name, :inc, :host, :pid, :version,"
                " :http, :max, :now, :now, :until, NULL, :prior) ON CONFLICT (name) DO NOTHING RETURNING true", values))
            if not fresh:  # the name has a row: locked, so two incarnations starting at once do not both take it
                old = await tx.fetchrow("SELECT * FROM nodes WHERE name = $1 FOR UPDATE", spec.name)
                assert old is not None, "a nodes row is never deleted"
                if old["incarnation"] != spec.incarnation and nodes.alive(old, at, dead_after):
                    return None
                if old["incarnation"] != spec.incarnation:  # its leader work: a new term
                    await tx.execute("UPDATE leadership SET expires_at = 0 WHERE node = $1", spec.name)
                values["prior"] = nodes.prior_until(old, spec.incarnation)
                await tx.execute(*_bound(
                    "UPDATE nodes SET incarnation = :inc, host = :host, pid = :pid, version = :version, http = :http,"
                    " max_accounts = :max, started_at = :now, heartbeat_at = :now, owned_until = :until,"
                    " stopped_at = NULL, prior_until = :prior WHERE name = :name", values))
            await tx.event("node.started", f"node {spec.name} started on {spec.host} (pid {spec.pid})",
                           data={"node": spec.name, "host": spec.host, "pid": spec.pid, "version": spec.version})
            row = await tx.fetchrow(f"{NODE_SQL.format(now='$1::float8')} WHERE n.name = $2", at, spec.name)
            assert row is not None
            return nodes.node_info(row, at=at, dead_after=dead_after)

    async def renew_node(self, name: str, incarnation: str, *, lease_seconds: float, lead: bool) -> Renewal:
        async with self.tx() as tx:
            sent = steady()  # before the database reads its clock: the lease it grants ends later than ours
            at = await _now(tx)
            if not await tx.execute("UPDATE nodes SET heartbeat_at = $1, owned_until = $2 WHERE name = $3"
                                    " AND incarnation = $4 AND stopped_at IS NULL",
                                    at, at + lease_seconds, name, incarnation):
                return Renewal(held=False, at=at, owned_until=at, leader_epoch=None, sent=sent)
            epoch = await _lead(tx, name, at, lease_seconds) if lead else None
            return Renewal(held=True, at=at, owned_until=at + lease_seconds, leader_epoch=epoch, sent=sent)

    async def stop_node(self, name: str, incarnation: str) -> int:
        async with self.tx() as tx:
            at = await _now(tx)
            # Until the earlier incarnation's lease ends, every account owned under the name is still its
            # (this one acquires none before): they stay owned, until then, for the next owner to wait for.
            prior = await tx.fetchval(
                "UPDATE nodes SET stopped_at = $1, owned_until = greatest($1, prior_until),"
                " prior_until = CASE WHEN prior_until > $1 THEN prior_until ELSE 0 END"
                " WHERE name = $2 AND incarnation = $3 AND stopped_at IS NULL RETURNING prior_until",
                at, name, incarnation)
            if prior is None:
                return 0
            released = [] if prior else [r[0] for r in await tx.fetch(
                "UPDATE accounts SET owner = NULL WHERE owner = $1 RETURNING id", name)]
            for account_id in released:
                tx.touch(account_id)
            await tx.execute("UPDATE leadership SET expires_at = 0 WHERE node = $1", name)
            await tx.event("node.stopped", f"node {name} stopped; {len(released)} account(s) released",
                           data={"node": name, "released": len(released)})
            return len(released)

    async def list_nodes(self, dead_after: float) -> list[NodeInfo]:
        rows = await self.read(f"WITH t AS (SELECT {NOW} AS now) {NODE_SQL.format(now='(SELECT now FROM t)')}"
                               " ORDER BY n.name")
        return [nodes.node_info(r, at=r["at"], dead_after=dead_after) for r in rows]

    @retried
    async def acquire_accounts(self, name: str, incarnation: str, limit: int, *,
                               grace: float = 0.0) -> list[OwnedAccount]:
        async with self.tx() as tx:
            at = await _now(tx)
            me = await tx.fetchrow("SELECT owned_until, prior_until FROM nodes WHERE name = $1 AND incarnation = $2"
                                   " AND stopped_at IS NULL FOR SHARE", name, incarnation)
            if me is None or me["owned_until"] <= at or me["prior_until"] > at:
                return []
            if me["prior_until"]:  # the earlier incarnation's lease has ended: what it owned is free
                for (account_id,) in await tx.fetch("UPDATE accounts SET owner = NULL WHERE owner = $1 RETURNING id",
                                                    name):
                    tx.touch(account_id)
                await tx.execute("UPDATE nodes SET prior_until = 0 WHERE name = $1", name)
            acquired = _owned(await tx.fetch(*_bound(ACQUIRE, {"me": name, "now": at, "limit": limit, "grace": grace})))
            if acquired:
                await _recover(tx, [a.id for a in acquired])
            for a in acquired:
                tx.touch(a.id)
            return acquired

    async def owned_accounts(self, name: str) -> list[OwnedAccount]:
        """What this incarnation owns: nothing while the name's earlier incarnation's are not released yet."""
        return _owned(await self.read(
            f"SELECT {OWNED} FROM accounts a WHERE a.owner = $1"
            f" AND {PRIOR_DONE} ORDER BY a.id", name))

    async def owned_digest(self, name: str) -> tuple[int, int]:
        r = await self.read_row(nodes.owned_digest_sql("$1", f"a.owner = $1 AND {PRIOR_DONE}"), name)
        assert r is not None  # an aggregate has one row
        return int(r["n"]), int(r["s"])

    @retried
    async def release_accounts(self, name: str, owned: list[tuple[int, int]]) -> int:
        if not owned:
            return 0
        async with self.tx() as tx:
            released = [r[0] for r in await tx.fetch(
                "UPDATE accounts a SET owner = NULL FROM unnest($2::bigint[], $3::bigint[]) AS r(id, epoch)"
                " WHERE a.id = r.id AND a.owner_epoch = r.epoch AND a.owner = $1 RETURNING a.id",
                name, [i for i, _ in owned], [e for _, e in owned])]
            for account_id in released:
                tx.touch(account_id)
            return len(released)

    async def assignment(self, live: list[str]) -> Assignment:
        rows = await self.read("SELECT assigned_node, pinned_node, count(*) FROM accounts"
                               " GROUP BY assigned_node, pinned_node")
        return nodes.assignment(((r[0], r[1], int(r[2])) for r in rows), live)

    @retried
    async def move_accounts(self, leader_epoch: int, src: str | None, dst: str, n: int, live: list[str]) -> int:
        if n <= 0 or src == dst:
            return 0
        async with self.tx() as tx:
            at = await _now(tx)
            # FOR SHARE: the term cannot end (be taken over) between this check and the commit.
            if await tx.fetchval("SELECT 1 FROM leadership WHERE name = $1 AND epoch = $2 AND expires_at > $3"
                                 " FOR SHARE", nodes.LEADERSHIP, leader_epoch, at) is None:
                return 0
            where = ("(a.assigned_node IS NULL OR a.assigned_node <> ALL(:live::text[]))" if src is None
                     else "a.assigned_node = :src")
            moved = await tx.execute(*_bound(MOVE.format(where=where), {"dst": dst, "n": n, "live": live, "src": src}))
            if moved:
                await tx.event("accounts.moved", f"{moved} account(s) moved from {src or 'no live node'} to {dst}",
                               data={"from": src, "to": dst, "accounts": moved})
            return moved

    async def pin_accounts(self, ids: list[int], node: str | None) -> int:
        async with self.tx() as tx:
            found = {r[0] for r in await tx.fetch("SELECT id FROM accounts WHERE id = ANY($1::bigint[])", ids)}
            if missing := sorted(set(ids) - found):
                raise NotFound(f"account {missing[0]}: no such account")
            if node is None:
                rows = await tx.fetch("UPDATE accounts SET pinned_node = NULL WHERE pinned_node IS NOT NULL"
                                      " AND id = ANY($1::bigint[]) RETURNING id", ids)
            else:
                rows = await tx.fetch("UPDATE accounts SET pinned_node = $2, assigned_node = $2"
                                      " WHERE (pinned_node IS DISTINCT FROM $2 OR assigned_node IS DISTINCT FROM $2)"
                                      " AND id = ANY($1::bigint[]) RETURNING id", ids, node)
            for (account_id,) in rows:
                tx.touch(account_id)
            if rows:
                what = f"pinned to {node}" if node is not None else "unpinned"
                await tx.event("accounts.pinned", f"{len(rows)} account(s) {what}",
                               data={"node": node, "accounts": len(rows)})
            return len(rows)
