"""Reads for the stream's snapshot, a page at a time: the SQLite twin (tgdaemon/store/sqlite/snapshot.py) says
why; here the accounts' JSON is ``json_build_object``'s (its text puts a space around each colon: the same
values)."""

from __future__ import annotations

from typing import Any

from tgdaemon.store.postgres.accounts import STATE_SQL
from tgdaemon.store.postgres.core import PostgresCore
from tgdaemon.store.postgres.quotas import QUOTA_VIEW
from tgdaemon.store.snapshot import STRIPPED
from tgdaemon.store.views import quota_view
from tgdaemon.timeutil import now


def _iso(column: str) -> str:
    """``timeutil.iso``: the whole second at or below, as 2026-01-15T12:00:00Z (NULL stays NULL)."""
    return f"""to_char(to_timestamp(floor({column})) AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"')"""


MASKED_PHONE = """CASE WHEN a.phone IS NULL OR a.phone = '' THEN NULL
    WHEN length(a.phone) <= 6 THEN repeat('*', length(a.phone))
    ELSE left(a.phone, 4) || repeat('*', length(a.phone) - 6) || right(a.phone, 2) END"""

# $1: now, for the state; $2: after this id; $3: how many; $4: what the name is trimmed of.
ACCOUNT_JSON = f"""SELECT a.id, json_build_object('id', a.id, 'label', a.label, 'phone_masked', {MASKED_PHONE},
    'name', btrim(a.first_name || ' ' || a.last_name, $4), 'state', {STATE_SQL.format(now='$1')},
    'is_probe', a.is_probe <> 0, 'is_active', a.is_active <> 0, 'executor', a.executor,
    'cooldown_until', {_iso('a.cooldown_until')}, 'cooldown_reason', a.cooldown_reason,
    'disabled_at', {_iso('a.disabled_at')}, 'disabled_reason', a.disabled_reason,
    'setup', json_build_object(
        'done', (SELECT COUNT(*) FROM account_tasks t WHERE t.account_id = a.id AND t.status = 'done'),
        'total', (SELECT COUNT(*) FROM account_tasks t WHERE t.account_id = a.id)),
    'last_error_code', a.last_error_code, 'last_ok_at', {_iso('a.last_ok_at')}, 'owner', a.owner,
    'pinned_node', a.pinned_node)::text
    FROM accounts a WHERE a.id > $2 ORDER BY a.id LIMIT $3"""


class SnapshotStore(PostgresCore):
    async def account_json_after(self, after_id: int, limit: int) -> list[tuple[int, str]]:
        return [(r[0], r[1]) for r in await self.read(ACCOUNT_JSON, now(), after_id, limit, STRIPPED)]

    async def quotas_after(self, after_id: int, limit: int) -> list[dict[str, Any]]:
        return [quota_view(r) for r in await self.read(QUOTA_VIEW + " WHERE q.id > $1 ORDER BY q.id LIMIT $2",
                                                       after_id, limit)]
