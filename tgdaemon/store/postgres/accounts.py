"""Accounts as the APIs see them: derived state, masked phone, setup progress (SQLite twin: same rules).

The state is derived in SQL (disabled > inactive > cooldown > busy > ready) so that filtering and
sorting by it never loads rows to filter them in Python. Text sorts byte by byte (COLLATE "C"), as in
SQLite, whatever the database's locale, so pages come in the same order on both stores.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from tgdaemon.errors import NotFound
from tgdaemon.store.api import CHANGES_KIND, AccountFilter, BulkAccount, chunked
from tgdaemon.store.api import Tx as ApiTx
from tgdaemon.store.postgres.core import Params, PostgresCore, own, retried
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

# {now}: the parameter holding the time the state is derived at.
STATE_SQL = """CASE
    WHEN a.disabled_at IS NOT NULL THEN 'disabled'
    WHEN a.is_active = 0 THEN 'inactive'
    WHEN a.cooldown_until > {now} THEN 'cooldown'
    WHEN EXISTS (SELECT 1 FROM account_locks l WHERE l.account_id = a.id AND l.expires_at > {now}) THEN 'busy'
    ELSE 'ready' END"""

VIEW_SQL = f"""SELECT a.id, a.label, a.phone, a.first_name, a.last_name, a.is_probe, a.is_active, a.executor,
    a.cooldown_until, a.cooldown_reason, a.disabled_at, a.disabled_reason,
    a.last_error_code, a.last_ok_at, a.owner, a.pinned_node, a.health, a.health_checked_at, a.health_detail,
    {STATE_SQL} AS state,
    (SELECT COUNT(*) FROM account_tasks t WHERE t.account_id = a.id AND t.status = 'done') AS setup_done,
    (SELECT COUNT(*) FROM account_tasks t WHERE t.account_id = a.id) AS setup_total,
    a.proxy_id, p.scheme AS proxy_scheme, p.host AS proxy_host, p.port AS proxy_port
    FROM accounts a LEFT JOIN proxies p ON p.id = a.proxy_id"""

# Sort keys the API accepts, the never-NULL expression each sorts by (row-value comparisons with NULL
# would drop rows from keyset pages), and the type its cursor value must have.
SORT_SQL = {
    "id": ("id", int),
    "label": ('label COLLATE "C"', str),
    "state": ('state COLLATE "C"', str),
    "cooldown": ("COALESCE(cooldown_until, 0)", float),
    "error": ("COALESCE(last_error_code, '') COLLATE \"C\"", str),
    "setup": ("setup_done", int),
    "executor": ('executor COLLATE "C"', str),
}
NOT_OURS = "cursor: not a cursor this daemon issued"


def _json_text(value: str) -> str:
    """A text value as JSON, ``null`` for NULL: to_json escapes as msgspec does (short escapes for
    \\b \\f \\n \\r \\t, ``\\u00xx`` for the other control characters, nothing else)."""
    return f"coalesce(to_json({value})::text, 'null')"


def _iso(col: str) -> str:
    """``timeutil.iso`` in SQL: the whole second below, ISO 8601 UTC with a Z."""
    return _json_text(f"""to_char(to_timestamp(floor({col})) AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"')""")


# ``views.mask_phone`` in SQL.
MASK_SQL = """CASE WHEN v.phone IS NULL OR v.phone = '' THEN NULL
    WHEN char_length(v.phone) <= 6 THEN repeat('*', char_length(v.phone))
    ELSE left(v.phone, 4) || repeat('*', char_length(v.phone) - 6) || right(v.phone, 2) END"""

# ``views.shown_proxy`` of the account's proxy in SQL; NULL without one.
SHOWN_PROXY_SQL = ("CASE WHEN v.proxy_scheme IS NULL THEN NULL ELSE v.proxy_scheme || '://' || CASE WHEN"
                   " strpos(v.proxy_host, ':') > 0 THEN '[' || v.proxy_host || ']' ELSE v.proxy_host END || ':'"
                   " || v.proxy_port END")

# One account of the view ``v`` as the bytes msgspec gives its ``wire.Account`` (``views.account_view``,
# field by field, in its order), built by the server: a listing of 100,000 is then 100,000 short texts to
# decode, not 1,900,000 values, dicts and structs on the event loop. The conformance suite holds the two
# to the same bytes (tests/store/test_accounts.py). {strip}: the parameter holding ``views.NAME_STRIP``.
ACCOUNT_JSON_SQL = f"""'{{"id":' || v.id || ',"label":' || {_json_text('v.label')}
    || ',"phone_masked":' || {_json_text(MASK_SQL)}
    || ',"name":' || {_json_text("btrim(v.first_name || ' ' || v.last_name, {strip})")}
    || ',"state":' || {_json_text('v.state')}
    || ',"is_probe":' || CASE WHEN v.is_probe <> 0 THEN 'true' ELSE 'false' END
    || ',"is_active":' || CASE WHEN v.is_active <> 0 THEN 'true' ELSE 'false' END
    || ',"executor":' || {_json_text('v.executor')} || ',"cooldown_until":' || {_iso('v.cooldown_until')}
    || ',"cooldown_reason":' || {_json_text('v.cooldown_reason')} || ',"disabled_at":' || {_iso('v.disabled_at')}
    || ',"disabled_reason":' || {_json_text('v.disabled_reason')}
    || ',"setup":{{"done":' || v.setup_done || ',"total":' || v.setup_total
    || '}},"last_error_code":' || {_json_text('v.last_error_code')} || ',"last_ok_at":' || {_iso('v.last_ok_at')}
    || ',"owner":' || {_json_text('v.owner')} || ',"pinned_node":' || {_json_text('v.pinned_node')}
    || ',"health":' || {_json_text('v.health')} || ',"health_checked_at":' || {_iso('v.health_checked_at')}
    || ',"health_detail":' || coalesce(v.health_detail, 'null')
    || ',"proxy_id":' || coalesce(v.proxy_id::text, 'null') || ',"proxy":' || {_json_text(SHOWN_PROXY_SQL)} || '}}'"""


def _cursor_value(value: Any, kind: type) -> Any:
    """A cursor's sort value as its column's type: SQLite compares any two values, PostgreSQL refuses."""
    if isinstance(value, bool) or not (isinstance(value, str) if kind is str else
                                       isinstance(value, int) or (kind is float and isinstance(value, float))):
        raise ValueError(NOT_OURS)
    return float(value) if kind is float else value


class AccountStore(PostgresCore):
    async def insert_accounts(self, tx: ApiTx, rows: Iterable[dict[str, Any]]) -> None:
        """Many accounts in one statement, in the order given (ids follow it)."""
        db = own(tx)
        rows = list(rows)
        if not rows:
            return
        inserted = await db.fetch(
            "INSERT INTO accounts (phone, tg_user_id, label, is_probe, first_name, last_name, executor, profile_json,"
            " created_at) SELECT p, u, l, b, f, n, 'local', j::jsonb, $8 FROM unnest($1::text[], $2::bigint[],"
            " $3::text[], $4::integer[], $5::text[], $6::text[], $7::text[]) WITH ORDINALITY AS r(p, u, l, b, f, n, j, o)"
            " ORDER BY o RETURNING id",
            [r["phone"] for r in rows], [r["tg_user_id"] for r in rows], [r["label"] for r in rows],
            [int(r["is_probe"]) for r in rows], [r.get("first_name", "") for r in rows],
            [r.get("last_name", "") for r in rows], [r["profile_json"] for r in rows], now())
        for row in inserted:
            db.touch(row[0])  # new accounts are changes a stream client must see

    async def count_accounts(self) -> int:
        return int(await self.read_val("SELECT COUNT(*) FROM accounts"))

    async def tg_user_ids(self) -> set[int]:
        """Every account's Telegram user id: what tells which simulated world a data dir was seeded with."""
        return {r[0] for r in await self.read("SELECT tg_user_id FROM accounts WHERE tg_user_id IS NOT NULL")}

    async def list_accounts(self, *, state: str | None = None, q: str | None = None, sort: str = "id",
                            desc: bool = False, limit: int = 100, after: str | None = None,
                            health: str | None = None) -> tuple[list[dict[str, Any]], str | None]:
        """One keyset page; returns the rows and the cursor of the next page (None at the end)."""
        sql, p = self._page_sql(lambda p: "*", state, q, sort, desc, limit, after, health)
        rows = await self.read(sql, *p.values)
        nxt = encode_cursor(rows[-1]["sort_value"], rows[-1]["id"]) if len(rows) == limit else None
        return [account_view(r) for r in rows], nxt

    async def list_accounts_json(self, *, state: str | None = None, q: str | None = None, sort: str = "id",
                                 desc: bool = False, limit: int = 100, after: str | None = None,
                                 health: str | None = None) -> tuple[list[bytes], str | None]:
        """``list_accounts``'s page with each account already encoded, as ``wire.Account`` encodes."""
        sql, p = self._page_sql(lambda p: ACCOUNT_JSON_SQL.replace("{strip}", p(NAME_STRIP)) + ", v.id", state, q,
                                sort, desc, limit, after, health)
        rows = await self.read(sql, *p.values)
        nxt = encode_cursor(rows[-1][2], rows[-1][1]) if len(rows) == limit else None
        return [r[0].encode() for r in rows], nxt

    @staticmethod
    def _page_sql(select: Callable[[Params], str], state: str | None, q: str | None, sort: str, desc: bool,
                  limit: int, after: str | None, health: str | None = None) -> tuple[str, Params]:
        """The statement of one keyset page of the view ``v``: ``select`` (given the parameters, to add its
        own), then its sort value."""
        key, kind = SORT_SQL[sort]
        p = Params(now())
        columns = select(p)
        where = AccountStore._filter_sql(AccountFilter(state, q, health), p)
        if after:
            value, account_id = decode_cursor(after)
            where.append(f"({key}, id) {'<' if desc else '>'} ({p(_cursor_value(value, kind))}, {p(account_id)})")
        order = "DESC" if desc else "ASC"
        return (f"WITH v AS ({VIEW_SQL.format(now='$1')}) SELECT {columns}, {key} AS sort_value FROM v"
                f"{' WHERE ' + ' AND '.join(where) if where else ''}"
                f" ORDER BY {key} {order}, id {order} LIMIT {p(limit)}"), p

    @staticmethod
    def _filter_sql(where: AccountFilter, p: Params) -> list[str]:
        """The conditions on the view ``v`` of GET /accounts' filter, their values added to ``p`` (whose $1 is
        the time): one meaning for a listing and a bulk action."""
        conditions = []
        if where.state:
            conditions.append(f"state = {p(where.state)}")
        if where.health:
            conditions.append("health IS NULL" if where.health == UNCHECKED else f"health = {p(where.health)}")
        if q := where.q:
            # ILIKE in the "C" collation: case ignored for ASCII letters only, as SQLite's LIKE does.
            pattern = "%" + q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
            like = p(pattern)
            label = 'label COLLATE "C"'
            conditions.append(f"({label} ILIKE {like} ESCAPE '\\' OR phone ILIKE {like} ESCAPE '\\'"
                              f" OR id::text = {p(q)})")
        return conditions

    async def bulk_targets(self, ids: Sequence[int] | None = None,
                           where: AccountFilter | None = None) -> list[BulkAccount]:
        """The accounts a bulk action names: these ids (NotFound for one that is no account), else those
        GET /accounts' filter ``where`` lists (all of them without one), in id order; both: the ids it lists."""
        if ids is not None:
            await self._known(ids)
        p = Params(now())
        conditions = self._filter_sql(where or AccountFilter(), p)
        if ids is not None:
            conditions.append(f"id = ANY({p(list(ids))}::bigint[])")
        rows = await self.read(
            f"WITH v AS ({VIEW_SQL.format(now='$1')}) SELECT id, label, disabled_at, executor, (SELECT COUNT(*)"
            " FROM account_tasks t WHERE t.account_id = v.id AND t.status IN ('failed', 'retry')) AS retryable"
            f" FROM v{' WHERE ' + ' AND '.join(conditions) if conditions else ''} ORDER BY id", *p.values)
        return [BulkAccount(r[0], r[1], r[2] is not None, r[3], int(r[4])) for r in rows]

    async def accounts_by_id(self, tx: ApiTx | None, ids: Iterable[int]) -> list[dict[str, Any]]:
        """Views of these accounts; inside a transaction pass it, to read what it wrote."""
        ids = sorted(ids)
        if not ids:
            return []
        sql = f"{VIEW_SQL.format(now='$1')} WHERE a.id = ANY($2::bigint[]) ORDER BY a.id"
        rows = await (own(tx).fetch(sql, now(), ids) if tx else self.read(sql, now(), ids))
        return [account_view(r) for r in rows]

    async def get_account(self, account_id: int) -> dict[str, Any]:
        found = await self.accounts_by_id(None, [account_id])
        if not found:
            raise NotFound(f"account {account_id}: no such account")
        return found[0]

    async def account_counts(self) -> dict[str, int]:
        rows = await self.read(
            f"SELECT state, COUNT(*) FROM (SELECT {STATE_SQL.format(now='$1')} AS state FROM accounts a) s"
            " GROUP BY state", now())
        counts = dict.fromkeys(STATES, 0)
        counts.update({r[0]: r[1] for r in rows})
        return counts

    async def cooldowns_by_reason(self) -> list[tuple[str | None, int]]:
        rows = await self.read("SELECT cooldown_reason, COUNT(*) FROM accounts WHERE cooldown_until > $1"
                               ' AND disabled_at IS NULL GROUP BY cooldown_reason ORDER BY cooldown_reason COLLATE "C" NULLS FIRST',
                               now())
        return [(r[0], r[1]) for r in rows]

    async def tasks_finished_since(self, at: float) -> int:
        """Setup tasks done or failed and pulled tasks reported since the second ``at`` falls in: the
        dashboard's tasks per minute, summed from the per-second counters (migration 0005), not counted."""
        return int(await self.read_val("SELECT COALESCE(SUM(n), 0) FROM finished_counts WHERE second >= $1",
                                       math.floor(at)))

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
            changed += await self._disable_chunk(list(chunk), reason)
        return changed

    @retried
    async def _disable_chunk(self, chunk: list[int], reason: str) -> list[int]:
        async with self.tx() as tx:
            done = sorted(r[0] for r in await tx.fetch(
                "UPDATE accounts SET disabled_at = $1, disabled_reason = $2 WHERE id = ANY($3::bigint[])"
                " AND disabled_at IS NULL RETURNING id", now(), reason, chunk))
            await tx.events_many([{"kind": "account.disabled", "message": f"disabled: {reason}",
                                   "account_id": account_id, "data": {"reason": reason}} for account_id in done])
        return done

    async def enable_accounts(self, ids: Sequence[int]) -> list[int]:
        """Enable those disabled; the ids that changed."""
        await self._known(ids)
        changed: list[int] = []
        for chunk in chunked(sorted(set(ids))):
            changed += await self._enable_chunk(list(chunk))
        return changed

    @retried
    async def _enable_chunk(self, chunk: list[int]) -> list[int]:
        """The rows are locked (in id order) before their reasons are read: what the event says was, was."""
        async with self.tx() as tx:
            was = [(r[0], r[1]) for r in await tx.fetch(
                "SELECT id, disabled_reason FROM accounts WHERE id = ANY($1::bigint[]) AND disabled_at IS NOT NULL"
                " ORDER BY id FOR UPDATE", chunk)]
            await tx.execute("UPDATE accounts SET disabled_at = NULL, disabled_reason = NULL"
                             " WHERE id = ANY($1::bigint[])", [i for i, _ in was])
            await tx.events_many([{"kind": "account.enabled", "message": f"enabled (was: {reason})",
                                   "account_id": account_id} for account_id, reason in was])
        return [i for i, _ in was]

    async def _known(self, ids: Sequence[int]) -> None:
        """NotFound for the lowest id that is no account: checked before a bulk action writes anything."""
        found = {r[0] for r in await self.read("SELECT id FROM accounts WHERE id = ANY($1::bigint[])", list(ids))}
        if missing := set(ids) - found:
            raise NotFound(f"account {min(missing)}: no such account")

    async def events_after(self, after_id: int, limit: int) -> list[dict[str, Any]]:
        """The audit trail after ``after_id``, oldest first: the durable source a stream resumes from."""
        rows = await self.read("SELECT * FROM events WHERE id > $1 ORDER BY id LIMIT $2", after_id, limit)
        return [event_view(r) for r in rows]

    async def last_event_id(self) -> int:
        return int(await self.read_val("SELECT COALESCE(MAX(id), 0) FROM events"))

    async def recent_events(self, *, account_id: int | None = None, limit: int = 100) -> list[dict[str, Any]]:
        """The audit trail, newest first; the stream's ``changes`` rows are not part of it (index events_audit)."""
        if account_id is None:
            rows = await self.read(f"SELECT * FROM events WHERE kind <> '{CHANGES_KIND}' ORDER BY id DESC LIMIT $1",
                                   limit)
        else:
            rows = await self.read(f"SELECT * FROM events WHERE kind <> '{CHANGES_KIND}' AND account_id = $1"
                                   " ORDER BY id DESC LIMIT $2", account_id, limit)
        return [event_view(r) for r in rows]
