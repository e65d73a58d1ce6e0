"""Accounts as the APIs see them: derived state, masked phone, setup progress.

The state is derived in SQL (disabled > inactive > cooldown > busy > ready) so
that filtering and sorting by it never loads rows to filter them in Python.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from typing import Any

from tgdaemon.errors import NotFound
from tgdaemon.store.api import CHANGES_KIND, AccountFilter, BulkAccount, chunked
from tgdaemon.store.api import Tx as ApiTx
from tgdaemon.store.sqlite.core import StoreCore, own
from tgdaemon.store.views import (
    NAME_STRIP,
    STATES,
    UNCHECKED,
    account_view,
    decode_cursor,
    encode_cursor,
    event_view,
)
from tgdaemon.timeutil import now

STATE_SQL = """CASE
    WHEN a.disabled_at IS NOT NULL THEN 'disabled'
    WHEN a.is_active = 0 THEN 'inactive'
    WHEN a.cooldown_until > :now THEN 'cooldown'
    WHEN EXISTS (SELECT 1 FROM account_locks l WHERE l.account_id = a.id AND l.expires_at > :now) THEN 'busy'
    ELSE 'ready' END"""

VIEW_SQL = f"""SELECT a.id, a.label, a.phone, a.first_name, a.last_name, a.is_probe, a.is_active, a.executor,
    a.cooldown_until, a.cooldown_reason, a.disabled_at, a.disabled_reason,
    a.last_error_code, a.last_ok_at, a.owner, a.pinned_node, a.health, a.health_checked_at, a.health_detail,
    {STATE_SQL} AS state,
    (SELECT COUNT(*) FROM account_tasks t WHERE t.account_id = a.id AND t.status = 'done') AS setup_done,
    (SELECT COUNT(*) FROM account_tasks t WHERE t.account_id = a.id) AS setup_total,
    a.proxy_id, p.scheme AS proxy_scheme, p.host AS proxy_host, p.port AS proxy_port
    FROM accounts a LEFT JOIN proxies p ON p.id = a.proxy_id"""

# Sort keys the API accepts, and the never-NULL expression each sorts by
# (row-value comparisons with NULL would drop rows from keyset pages).
SORT_SQL = {
    "id": "id",
    "label": "label",
    "state": "state",
    "cooldown": "COALESCE(cooldown_until, 0)",
    "error": "COALESCE(last_error_code, '')",
    "setup": "setup_done",
    "executor": "executor",
}


def _iso(col: str) -> str:
    """``timeutil.iso`` in SQL: the whole second below (a floor, as ``ts // 1``), ISO 8601 UTC with a Z."""
    return (f"strftime('%Y-%m-%dT%H:%M:%SZ', CAST({col} AS INTEGER) - ({col} < CAST({col} AS INTEGER)),"
            " 'unixepoch')")


def _stars(n: str) -> str:
    return f"replace(hex(zeroblob({n})), '00', '*')"


# ``views.mask_phone`` in SQL.
MASK_SQL = f"""CASE WHEN v.phone IS NULL OR v.phone = '' THEN NULL
    WHEN length(v.phone) <= 6 THEN {_stars('length(v.phone)')}
    ELSE substr(v.phone, 1, 4) || {_stars('length(v.phone) - 6')} || substr(v.phone, -2) END"""

# ``views.shown_proxy`` of the account's proxy in SQL; NULL without one.
SHOWN_PROXY_SQL = ("CASE WHEN v.proxy_scheme IS NULL THEN NULL ELSE v.proxy_scheme || '://' || CASE WHEN"
                   " instr(v.proxy_host, ':') > 0 THEN '[' || v.proxy_host || ']' ELSE v.proxy_host END || ':'"
                   " || v.proxy_port END")

# One account of the view ``v`` as the bytes msgspec gives its ``wire.Account`` (``views.account_view``,
# field by field, in its order): a listing of 100,000 builds its JSON in SQLite, on the reader's thread and
# without the GIL, instead of 100,000 dicts, structs and an encoding on the event loop. The conformance
# suite holds the two to the same bytes (tests/store/test_accounts.py). :strip is ``views.NAME_STRIP``.
ACCOUNT_JSON_SQL = f"""CAST(json_object('id', v.id, 'label', v.label, 'phone_masked', {MASK_SQL},
    'name', trim(v.first_name || ' ' || v.last_name, :strip), 'state', v.state,
    'is_probe', json(CASE WHEN v.is_probe THEN 'true' ELSE 'false' END),
    'is_active', json(CASE WHEN v.is_active THEN 'true' ELSE 'false' END),
    'executor', v.executor, 'cooldown_until', {_iso('v.cooldown_until')}, 'cooldown_reason', v.cooldown_reason,
    'disabled_at', {_iso('v.disabled_at')}, 'disabled_reason', v.disabled_reason,
    'setup', json_object('done', v.setup_done, 'total', v.setup_total), 'last_error_code', v.last_error_code,
    'last_ok_at', {_iso('v.last_ok_at')}, 'owner', v.owner, 'pinned_node', v.pinned_node,
    'health', v.health, 'health_checked_at', {_iso('v.health_checked_at')},
    'health_detail', json(v.health_detail), 'proxy_id', v.proxy_id, 'proxy', {SHOWN_PROXY_SQL}) AS BLOB)"""


class AccountStore(StoreCore):
    async def insert_accounts(self, tx: ApiTx, rows: Iterable[dict[str, Any]]) -> None:
        db = own(tx)
        created = now()
        await db.conn.executemany(
            "INSERT INTO accounts (phone, tg_user_id, label, is_probe, first_name, last_name, executor, profile_json,"
            " created_at) VALUES (:phone, :tg_user_id, :label, :is_probe, :first_name, :last_name, 'local',"
            " :profile_json, :created_at)",
            [{"first_name": "", "last_name": "", **row, "created_at": created} for row in rows],
        )
        for row in await db.fetchall("SELECT id FROM accounts WHERE created_at = ?", (created,)):
            db.touch(row[0])  # new accounts are changes a stream client must see

    async def count_accounts(self) -> int:
        return next(iter(await self.read("SELECT COUNT(*) FROM accounts")))[0]

    async def tg_user_ids(self) -> set[int]:
        """Every account's Telegram user id: what tells which simulated world a data dir was seeded with."""
        return {r[0] for r in await self.read("SELECT tg_user_id FROM accounts WHERE tg_user_id IS NOT NULL")}

    async def list_accounts(self, *, state: str | None = None, q: str | None = None, sort: str = "id",
                            desc: bool = False, limit: int = 100, after: str | None = None,
                            health: str | None = None) -> tuple[list[dict[str, Any]], str | None]:
        """One keyset page; returns the rows and the cursor of the next page (None at the end)."""
        sql, params = self._page_sql("*", state, q, sort, desc, limit, after, health)
        rows = list(await self.read(sql, params))
        nxt = encode_cursor(rows[-1]["sort_value"], rows[-1]["id"]) if len(rows) == limit else None
        return [account_view(r) for r in rows], nxt

    async def list_accounts_json(self, *, state: str | None = None, q: str | None = None, sort: str = "id",
                                 desc: bool = False, limit: int = 100, after: str | None = None,
                                 health: str | None = None) -> tuple[list[bytes], str | None]:
        """``list_accounts``'s page with each account already encoded, as ``wire.Account`` encodes."""
        sql, params = self._page_sql(f"{ACCOUNT_JSON_SQL}, v.id", state, q, sort, desc, limit, after, health)
        params["strip"] = NAME_STRIP
        rows = list(await self.read(sql, params))
        nxt = encode_cursor(rows[-1][2], rows[-1][1]) if len(rows) == limit else None
        return [r[0] for r in rows], nxt

    @staticmethod
    def _page_sql(select: str, state: str | None, q: str | None, sort: str, desc: bool, limit: int,
                  after: str | None, health: str | None = None) -> tuple[str, dict[str, Any]]:
        """The statement of one keyset page of the view ``v``: ``select``, then its sort value."""
        key = SORT_SQL[sort]
        params: dict[str, Any] = {"now": now(), "limit": limit}
        where = AccountStore._filter_sql(AccountFilter(state, q, health), params)
        if after:
            params["c_value"], params["c_id"] = decode_cursor(after)
            where.append(f"({key}, id) {'<' if desc else '>'} (:c_value, :c_id)")
        order = "DESC" if desc else "ASC"
        return (f"WITH v AS ({VIEW_SQL}) SELECT {select}, {key} AS sort_value FROM v"
                f"{' WHERE ' + ' AND '.join(where) if where else ''}"
                f" ORDER BY {key} {order}, id {order} LIMIT :limit"), params

    @staticmethod
    def _filter_sql(where: AccountFilter, params: dict[str, Any]) -> list[str]:
        """The conditions on the view ``v`` of GET /accounts' filter, its parameters added to ``params``: one
        meaning for a listing and a bulk action."""
        conditions: list[str] = []
        if where.state:
            conditions.append("state = :state")
            params["state"] = where.state
        if where.health:
            conditions.append("health IS NULL" if where.health == UNCHECKED else "health = :health")
            params["health"] = where.health
        if q := where.q:
            conditions.append("(label LIKE :q ESCAPE '\\' OR phone LIKE :q ESCAPE '\\' OR CAST(id AS TEXT) = :qraw)")
            params["q"] = "%" + q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
            params["qraw"] = q
        return conditions

    async def bulk_targets(self, ids: Sequence[int] | None = None,
                           where: AccountFilter | None = None) -> list[BulkAccount]:
        """The accounts a bulk action names: these ids (NotFound for one that is no account), else those
        GET /accounts' filter ``where`` lists (all of them without one), in id order; both: the ids it lists."""
        if ids is not None:
            await self._known(ids)
        params: dict[str, Any] = {"now": now()}
        conditions = self._filter_sql(where or AccountFilter(), params)
        if ids is not None:
            conditions.append("id IN (SELECT value FROM json_each(:ids))")
            params["ids"] = json.dumps(list(ids))
        rows = await self.read(
            f"WITH v AS ({VIEW_SQL}) SELECT id, label, disabled_at, executor, (SELECT COUNT(*) FROM account_tasks t"
            " WHERE t.account_id = v.id AND t.status IN ('failed', 'retry')) AS retryable FROM v"
            f"{' WHERE ' + ' AND '.join(conditions) if conditions else ''} ORDER BY id", params)
        return [BulkAccount(r[0], r[1], r[2] is not None, r[3], r[4]) for r in rows]

    async def accounts_by_id(self, tx: ApiTx | None, ids: Iterable[int]) -> list[dict[str, Any]]:
        """Views of these accounts; inside a transaction pass it, to read what it wrote."""
        ids = sorted(ids)
        if not ids:
            return []
        # One JSON array, not one bound parameter per id: binding 10,000 named parameters costs seconds.
        params = {"now": now(), "ids": json.dumps(ids)}
        sql = f"{VIEW_SQL} WHERE a.id IN (SELECT value FROM json_each(:ids))"
        rows = await (own(tx).fetchall(sql, params) if tx else self.read(sql, params))
        return [account_view(r) for r in rows]

    async def get_account(self, account_id: int) -> dict[str, Any]:
        found = await self.accounts_by_id(None, [account_id])
        if not found:
            raise NotFound(f"account {account_id}: no such account")
        return found[0]

    async def account_counts(self) -> dict[str, int]:
        rows = await self.read(
            f"SELECT state, COUNT(*) FROM (SELECT {STATE_SQL} AS state FROM accounts a) GROUP BY state",
            {"now": now()},
        )
        counts = dict.fromkeys(STATES, 0)
        counts.update({r[0]: r[1] for r in rows})
        return counts

    async def cooldowns_by_reason(self) -> list[tuple[str | None, int]]:
        rows = await self.read("SELECT cooldown_reason, COUNT(*) FROM accounts WHERE cooldown_until > ?"
                               " AND disabled_at IS NULL GROUP BY cooldown_reason ORDER BY 1", (now(),))
        return [(r[0], r[1]) for r in rows]

    async def tasks_finished_since(self, at: float) -> int:
        """Setup tasks done or failed and pulled tasks reported since the second ``at`` falls in: the
        dashboard's tasks per minute, summed from the per-second counters (migration 0014), not counted."""
        rows = await self.read("SELECT COALESCE(SUM(n), 0) FROM finished_counts WHERE second >= ?", (math.floor(at),))
        return int(next(iter(rows))[0])

    async def disable_account(self, account_id: int, reason: str) -> bool:
        """Disable with a reason; False when it already was (the reason is then left as it was)."""
        return bool(await self.disable_accounts([account_id], reason))

    async def enable_account(self, account_id: int) -> bool:
        return bool(await self.enable_accounts([account_id]))

    async def disable_accounts(self, ids: Sequence[int], reason: str) -> list[int]:
        """Disable with a reason those not disabled yet (the others keep theirs); the ids that changed."""
        await self._known(ids)
        changed: list[int] = []
        for chunk in chunked(sorted(set(ids))):
            async with self.tx() as tx:
                rows = await tx.fetchall(
                    "UPDATE accounts SET disabled_at = ?, disabled_reason = ? WHERE id IN (SELECT value FROM"
                    " json_each(?)) AND disabled_at IS NULL RETURNING id", (now(), reason, json.dumps(list(chunk))))
                done = sorted(r[0] for r in rows)
                await tx.events_many([{"kind": "account.disabled", "message": f"disabled: {reason}",
                                       "account_id": account_id, "data": {"reason": reason}} for account_id in done])
            changed += done
        return changed

    async def enable_accounts(self, ids: Sequence[int]) -> list[int]:
        """Enable those disabled; the ids that changed."""
        await self._known(ids)
        changed: list[int] = []
        for chunk in chunked(sorted(set(ids))):
            async with self.tx() as tx:
                chunk_ids = json.dumps(list(chunk))
                was = [(r[0], r[1]) for r in await tx.fetchall(
                    "SELECT id, disabled_reason FROM accounts WHERE id IN (SELECT value FROM json_each(?))"
                    " AND disabled_at IS NOT NULL ORDER BY id", (chunk_ids,))]
                await tx.execute("UPDATE accounts SET disabled_at = NULL, disabled_reason = NULL"
                                 " WHERE id IN (SELECT value FROM json_each(?))", (json.dumps([i for i, _ in was]),))
                await tx.events_many([{"kind": "account.enabled", "message": f"enabled (was: {reason})",
                                       "account_id": account_id} for account_id, reason in was])
            changed += [i for i, _ in was]
        return changed

    async def _known(self, ids: Sequence[int]) -> None:
        """NotFound for the lowest id that is no account: checked before a bulk action writes anything."""
        found = {r[0] for r in await self.read("SELECT id FROM accounts WHERE id IN (SELECT value FROM json_each(?))",
                                               (json.dumps(list(ids)),))}
        if missing := set(ids) - found:
            raise NotFound(f"account {min(missing)}: no such account")

    async def events_after(self, after_id: int, limit: int) -> list[dict[str, Any]]:
        """The audit trail after ``after_id``, oldest first: the durable source a stream resumes from."""
        rows = await self.read("SELECT * FROM events WHERE id > ? ORDER BY id LIMIT ?", (after_id, limit))
        return [event_view(r) for r in rows]

    async def last_event_id(self) -> int:
        return int(next(iter(await self.read("SELECT COALESCE(MAX(id), 0) FROM events")))[0])

    async def recent_events(self, *, account_id: int | None = None, limit: int = 100) -> list[dict[str, Any]]:
        """The audit trail, newest first; the stream's ``changes`` rows are not part of it (index events_audit)."""
        sql = f"SELECT * FROM events WHERE kind != '{CHANGES_KIND}'"
        params: list[Any] = []
        if account_id is not None:
            sql += " AND account_id = ?"
            params.append(account_id)
        rows = await self.read(sql + " ORDER BY id DESC LIMIT ?", [*params, limit])
        return [event_view(r) for r in rows]
