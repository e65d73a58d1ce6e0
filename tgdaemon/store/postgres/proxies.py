"""Proxies (issue 14), PostgreSQL's twin of the SQLite driver's (same rules, tgdaemon/store/proxyrules.py).

Several daemons may change proxies at once here: a proxy row is locked (FOR UPDATE to remove it or record
its check, FOR SHARE to give it to accounts), so a removal and an assignment never cross, and the second
of two adds of one proxy finds the first's row. A transaction PostgreSQL rolls back to break a deadlock with
another node's (a check's hold and a report, each locking accounts in their own order) runs again.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from tgdaemon.errors import Conflict, NotFound
from tgdaemon.store import proxyrules
from tgdaemon.store.api import NewProxy, ProxyCheck, ProxyChecked, ProxyTarget
from tgdaemon.store.postgres.core import PostgresCore, Tx, retried
from tgdaemon.store.views import proxy_view, shown_proxy
from tgdaemon.timeutil import now

VIEW = ("SELECT p.*, (SELECT count(*) FROM accounts a WHERE a.proxy_id = p.id) AS accounts,"
        " (SELECT count(*) FROM accounts a WHERE a.proxy_id = p.id AND a.cooldown_reason = 'proxy'"
        " AND a.cooldown_until > $1) AS held FROM proxies p")
# An account's 'proxy' cooldown ends (its proxy answers again, or it has another one now); others stay.
LIFT = ("cooldown_until = CASE WHEN cooldown_reason = 'proxy' THEN NULL ELSE cooldown_until END,"
        " cooldown_seconds = CASE WHEN cooldown_reason = 'proxy' THEN NULL ELSE cooldown_seconds END,"
        " cooldown_reason = CASE WHEN cooldown_reason = 'proxy' THEN NULL ELSE cooldown_reason END")
TARGETS = ("SELECT p.id, p.scheme, p.host, p.port, p.username, p.state, s.secret FROM proxies p"
           " LEFT JOIN proxy_secrets s ON s.proxy_id = p.id")


class ProxyStore(PostgresCore):
    @retried
    async def add_proxy(self, proxy: NewProxy) -> dict[str, Any]:
        async with self.tx() as tx:
            proxy_id = await tx.fetchval(
                "INSERT INTO proxies (scheme, host, port, username, label, created_at) VALUES ($1, $2, $3, $4, $5, $6)"
                " ON CONFLICT (scheme, host, port, username) DO NOTHING RETURNING id",
                proxy.scheme, proxy.host, proxy.port, proxy.username, proxy.label, now())
            if proxy_id is None:
                found = await tx.fetchrow("SELECT * FROM proxies WHERE scheme = $1 AND host = $2 AND port = $3"
                                          " AND username = $4", proxy.scheme, proxy.host, proxy.port, proxy.username)
                assert found is not None
                raise Conflict(proxyrules.already(found))
            if proxy.secret:
                await tx.execute("INSERT INTO proxy_secrets (proxy_id, secret) VALUES ($1, $2)", proxy_id, proxy.secret)
            await tx.events_many([proxyrules.added_event(proxy_id, shown_proxy(proxy.scheme, proxy.host, proxy.port),
                                                         proxy.label)])
            return await self._view(tx, proxy_id)

    async def _view(self, tx: Tx | None, proxy_id: int, lock: str = "") -> dict[str, Any]:
        sql = f"{VIEW} WHERE p.id = $2{lock}"
        row = await (tx.fetchrow(sql, now(), proxy_id) if tx is not None else self.read_row(sql, now(), proxy_id))
        if row is None:
            raise NotFound(f"proxy {proxy_id}: no such proxy")
        return proxy_view(row)

    async def list_proxies(self) -> list[dict[str, Any]]:
        return [proxy_view(r) for r in await self.read(f"{VIEW} ORDER BY p.id", now())]

    async def get_proxy(self, proxy_id: int) -> dict[str, Any]:
        return await self._view(None, proxy_id)

    @retried
    async def remove_proxy(self, proxy_id: int, *, force: bool = False) -> tuple[dict[str, Any], list[int]]:
        async with self.tx() as tx:
            removed = await self._view(tx, proxy_id, " FOR UPDATE OF p")
            users = [r[0] for r in await tx.fetch("SELECT id FROM accounts WHERE proxy_id = $1 ORDER BY id", proxy_id)]
            if users and not force:
                raise Conflict(proxyrules.in_use(proxy_id, removed["url"], users))
            if users:
                await tx.execute(f"UPDATE accounts SET proxy_id = NULL, {LIFT} WHERE proxy_id = $1", proxy_id)
            await tx.execute("DELETE FROM proxies WHERE id = $1", proxy_id)  # its secret goes with it (cascade)
            await tx.events_many(proxyrules.removed_events(proxy_id, removed["url"], users))
            return removed, users

    @retried
    async def set_account_proxy(self, ids: Sequence[int], proxy_id: int | None) -> list[int]:
        wanted = sorted(set(ids))
        async with self.tx() as tx:
            url = "" if proxy_id is None else (await self._view(tx, proxy_id, " FOR SHARE OF p"))["url"]
            rows = await tx.fetch("SELECT id, proxy_id FROM accounts WHERE id = ANY($1::bigint[]) FOR UPDATE", wanted)
            if missing := sorted(set(wanted) - {r[0] for r in rows}):
                raise NotFound(proxyrules.no_such_accounts(missing))
            was = {r[0]: r[1] for r in rows}
            changed = sorted(a for a, old in was.items() if old != proxy_id)
            if changed:
                await tx.execute(f"UPDATE accounts SET proxy_id = $1, {LIFT} WHERE id = ANY($2::bigint[])",
                                 proxy_id, changed)
                await tx.events_many(proxyrules.set_events(changed, was, proxy_id, url))
            return changed

    async def proxy_targets(self, ids: Sequence[int] | None = None) -> list[ProxyTarget]:
        if ids is None:
            rows = await self.read(TARGETS + " ORDER BY p.id")
        else:
            wanted = sorted(set(ids))
            rows = await self.read(TARGETS + " WHERE p.id = ANY($1::bigint[]) ORDER BY p.id", wanted)
            if missing := sorted(set(wanted) - {r["id"] for r in rows}):
                raise NotFound(f"proxy {missing[0]}: no such proxy")
        return [ProxyTarget(r["id"], r["scheme"], r["host"], r["port"], r["username"], r["secret"] or "", r["state"])
                for r in rows]

    @retried
    async def record_proxy_check(self, proxy_id: int, check: ProxyCheck, *, hold_until: float) -> ProxyChecked:
        async with self.tx() as tx:
            proxy = await tx.fetchrow("SELECT * FROM proxies WHERE id = $1 FOR UPDATE", proxy_id)
            if proxy is None:
                raise NotFound(f"proxy {proxy_id}: no such proxy")
            at = now()
            await tx.execute("UPDATE proxies SET state = $1, latency_ms = $2, checked_at = $3, last_error = $4"
                             " WHERE id = $5", check.state, check.latency_ms, check.at, check.error, proxy_id)
            waiting = {r[0] for r in await tx.fetch(
                "SELECT id FROM accounts WHERE proxy_id = $1 AND cooldown_reason = 'proxy' AND cooldown_until > $2",
                proxy_id, at)}
            held: list[int] = []
            released: list[int] = []
            if check.state == "dead":  # as apply_account_effect does: a longer cooldown stands
                held = [r[0] for r in await tx.fetch(
                    "UPDATE accounts SET cooldown_until = $1, cooldown_reason = 'proxy', cooldown_seconds = $2"
                    " WHERE proxy_id = $3 AND disabled_at IS NULL AND (cooldown_until IS NULL OR cooldown_until < $1)"
                    " RETURNING id", hold_until, max(0.0, hold_until - at), proxy_id)]
                for account_id in held:
                    tx.touch(account_id)
            elif waiting:
                released = sorted(waiting)
                await tx.execute(f"UPDATE accounts SET {LIFT} WHERE id = ANY($1::bigint[])", released)
            await tx.events_many(proxyrules.check_events(proxy, check, sorted(set(held) - waiting), released,
                                                         hold_until - at))
            return ProxyChecked(proxy["state"], len(held), len(released))
