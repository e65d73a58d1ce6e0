"""Proxies (issue 14): a proxy of their own for accounts, its health, and the 'proxy' cooldown of the accounts
behind a dead one.

The secret part of a proxy (a password, an MTProxy secret) is written to ``proxy_secrets`` and read back
only by ``proxy_targets`` (the health checker) and ``client_params`` (the gateway); no view reads it. A
dead proxy's accounts wait in the one cooldown every part of the daemon already honours
(``cooldown_until``, reason ``proxy``): claims, generation and the derived state all skip them, and the
health checker's next finding either extends the wait or ends it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from tgdaemon.errors import Conflict, NotFound
from tgdaemon.store import proxyrules
from tgdaemon.store.api import NewProxy, ProxyCheck, ProxyChecked, ProxyTarget
from tgdaemon.store.sqlite.core import StoreCore, Tx
from tgdaemon.store.views import proxy_view, shown_proxy
from tgdaemon.timeutil import now

VIEW = ("SELECT p.*, (SELECT COUNT(*) FROM accounts a WHERE a.proxy_id = p.id) AS accounts,"
        " (SELECT COUNT(*) FROM accounts a WHERE a.proxy_id = p.id AND a.cooldown_reason = 'proxy'"
        " AND a.cooldown_until > :now) AS held FROM proxies p")
# An account's 'proxy' cooldown ends (its proxy answers again, or it has another one now); others stay.
LIFT = ("cooldown_until = CASE WHEN cooldown_reason = 'proxy' THEN NULL ELSE cooldown_until END,"
        " cooldown_seconds = CASE WHEN cooldown_reason = 'proxy' THEN NULL ELSE cooldown_seconds END,"
        " cooldown_reason = CASE WHEN cooldown_reason = 'proxy' THEN NULL ELSE cooldown_reason END")
TARGETS = ("SELECT p.id, p.scheme, p.host, p.port, p.username, p.state, s.secret FROM proxies p"
           " LEFT JOIN proxy_secrets s ON s.proxy_id = p.id")


class ProxyStore(StoreCore):
    async def add_proxy(self, proxy: NewProxy) -> dict[str, Any]:
        async with self.tx() as tx:
            found = list(await tx.fetchall(
                "SELECT * FROM proxies WHERE scheme = ? AND host = ? AND port = ? AND username = ?",
                (proxy.scheme, proxy.host, proxy.port, proxy.username)))
            if found:
                raise Conflict(proxyrules.already(found[0]))
            cur = await tx.execute(
                "INSERT INTO proxies (scheme, host, port, username, label, created_at) VALUES (?, ?, ?, ?, ?, ?)",
                (proxy.scheme, proxy.host, proxy.port, proxy.username, proxy.label, now()))
            proxy_id = int(cur.lastrowid or 0)
            if proxy.secret:
                await tx.execute("INSERT INTO proxy_secrets (proxy_id, secret) VALUES (?, ?)", (proxy_id, proxy.secret))
            await tx.events_many([proxyrules.added_event(proxy_id, shown_proxy(proxy.scheme, proxy.host, proxy.port),
                                                         proxy.label)])
            return await self._view(tx, proxy_id)

    async def _view(self, tx: Tx | None, proxy_id: int) -> dict[str, Any]:
        sql, params = f"{VIEW} WHERE p.id = :id", {"now": now(), "id": proxy_id}
        rows = list(await (tx.fetchall(sql, params) if tx is not None else self.read(sql, params)))
        if not rows:
            raise NotFound(f"proxy {proxy_id}: no such proxy")
        return proxy_view(rows[0])

    async def list_proxies(self) -> list[dict[str, Any]]:
        return [proxy_view(r) for r in await self.read(f"{VIEW} ORDER BY p.id", {"now": now()})]

    async def get_proxy(self, proxy_id: int) -> dict[str, Any]:
        return await self._view(None, proxy_id)

    async def remove_proxy(self, proxy_id: int, *, force: bool = False) -> tuple[dict[str, Any], list[int]]:
        async with self.tx() as tx:
            removed = await self._view(tx, proxy_id)
            users = [r[0] for r in await tx.fetchall("SELECT id FROM accounts WHERE proxy_id = ? ORDER BY id",
                                                     (proxy_id,))]
            if users and not force:
                raise Conflict(proxyrules.in_use(proxy_id, removed["url"], users))
            if users:
                await tx.execute(f"UPDATE accounts SET proxy_id = NULL, {LIFT} WHERE proxy_id = ?", (proxy_id,))
            await tx.execute("DELETE FROM proxies WHERE id = ?", (proxy_id,))  # its secret goes with it (cascade)
            await tx.events_many(proxyrules.removed_events(proxy_id, removed["url"], users))
            return removed, users

    async def set_account_proxy(self, ids: Sequence[int], proxy_id: int | None) -> list[int]:
        wanted = sorted(set(ids))
        async with self.tx() as tx:
            url = "" if proxy_id is None else (await self._view(tx, proxy_id))["url"]
            rows = list(await tx.fetchall("SELECT id, proxy_id FROM accounts WHERE id IN"
                                          " (SELECT value FROM json_each(?))", (json.dumps(wanted),)))
            if missing := sorted(set(wanted) - {r[0] for r in rows}):
                raise NotFound(proxyrules.no_such_accounts(missing))
            was = {r[0]: r[1] for r in rows}
            changed = sorted(a for a, old in was.items() if old != proxy_id)
            if changed:
                await tx.execute(f"UPDATE accounts SET proxy_id = ?, {LIFT} WHERE id IN (SELECT value FROM json_each(?))",
                                 (proxy_id, json.dumps(changed)))
                await tx.events_many(proxyrules.set_events(changed, was, proxy_id, url))
            return changed

    async def proxy_targets(self, ids: Sequence[int] | None = None) -> list[ProxyTarget]:
        if ids is None:
            rows = list(await self.read(TARGETS + " ORDER BY p.id"))
        else:
            wanted = sorted(set(ids))
            rows = list(await self.read(TARGETS + " WHERE p.id IN (SELECT value FROM json_each(?)) ORDER BY p.id",
                                        (json.dumps(wanted),)))
            if missing := sorted(set(wanted) - {r["id"] for r in rows}):
                raise NotFound(f"proxy {missing[0]}: no such proxy")
        return [ProxyTarget(r["id"], r["scheme"], r["host"], r["port"], r["username"], r["secret"] or "", r["state"])
                for r in rows]

    async def record_proxy_check(self, proxy_id: int, check: ProxyCheck, *, hold_until: float) -> ProxyChecked:
        async with self.tx() as tx:
            rows = list(await tx.fetchall("SELECT * FROM proxies WHERE id = ?", (proxy_id,)))
            if not rows:
                raise NotFound(f"proxy {proxy_id}: no such proxy")
            proxy, at = rows[0], now()
            await tx.execute("UPDATE proxies SET state = ?, latency_ms = ?, checked_at = ?, last_error = ? WHERE id = ?",
                             (check.state, check.latency_ms, check.at, check.error, proxy_id))
            waiting = {r[0] for r in await tx.fetchall(
                "SELECT id FROM accounts WHERE proxy_id = ? AND cooldown_reason = 'proxy' AND cooldown_until > ?",
                (proxy_id, at))}
            held: list[int] = []
            released: list[int] = []
            if check.state == "dead":  # as apply_account_effect does: a longer cooldown stands
                held = [r[0] for r in await tx.fetchall(
                    "UPDATE accounts SET cooldown_until = :until, cooldown_reason = 'proxy', cooldown_seconds = :len"
                    " WHERE proxy_id = :id AND disabled_at IS NULL AND (cooldown_until IS NULL OR cooldown_until < :until)"
                    " RETURNING id", {"until": hold_until, "len": max(0.0, hold_until - at), "id": proxy_id})]
                for account_id in held:
                    tx.touch(account_id)
            elif waiting:
                released = sorted(waiting)
                await tx.execute(f"UPDATE accounts SET {LIFT} WHERE id IN (SELECT value FROM json_each(?))",
                                 (json.dumps(released),))
            await tx.events_many(proxyrules.check_events(proxy, check, sorted(set(held) - waiting), released,
                                                         hold_until - at))
            return ProxyChecked(proxy["state"], len(held), len(released))
