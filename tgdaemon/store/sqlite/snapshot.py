"""Reads for the stream's snapshot: a list a page at a time, in id order (keyset pages, ``id > after``).

A snapshot of a big fleet is read page by page so that neither the daemon nor
one statement ever holds the whole list. The accounts' pages come as JSON
text made by SQLite (``json_object``), one object per account, exactly as
``views.account_view`` shows it: tgdaemon/store/snapshot.py says why.
"""

from __future__ import annotations

from typing import Any

from tgdaemon.store.snapshot import STRIPPED
from tgdaemon.store.sqlite.accounts import STATE_SQL
from tgdaemon.store.sqlite.core import StoreCore
from tgdaemon.store.sqlite.quotas import QUOTA_VIEW
from tgdaemon.store.views import quota_view
from tgdaemon.timeutil import now


def _iso(column: str) -> str:
    """``timeutil.iso``: the whole second at or below, as 2026-01-15T12:00:00Z (NULL stays NULL)."""
    whole = f"(CAST({column} AS INTEGER) - ({column} < CAST({column} AS INTEGER)))"
    return f"strftime('%Y-%m-%dT%H:%M:%SZ', {whole}, 'unixepoch')"


def _stars(length: str) -> str:
    return f"replace(hex(zeroblob({length})), '00', '*')"


def _bool(column: str) -> str:
    return f"json(CASE WHEN {column} THEN 'true' ELSE 'false' END)"


MASKED_PHONE = f"""CASE WHEN a.phone IS NULL OR a.phone = '' THEN NULL
    WHEN length(a.phone) <= 6 THEN {_stars('length(a.phone)')}
    ELSE substr(a.phone, 1, 4) || {_stars('length(a.phone) - 6')} || substr(a.phone, -2) END"""

ACCOUNT_JSON = f"""SELECT a.id, json_object('id', a.id, 'label', a.label, 'phone_masked', {MASKED_PHONE},
    'name', trim(a.first_name || ' ' || a.last_name, :stripped), 'state', {STATE_SQL},
    'is_probe', {_bool('a.is_probe')}, 'is_active', {_bool('a.is_active')}, 'executor', a.executor,
    'cooldown_until', {_iso('a.cooldown_until')}, 'cooldown_reason', a.cooldown_reason,
    'disabled_at', {_iso('a.disabled_at')}, 'disabled_reason', a.disabled_reason,
    'setup', json_object(
        'done', (SELECT COUNT(*) FROM account_tasks t WHERE t.account_id = a.id AND t.status = 'done'),
        'total', (SELECT COUNT(*) FROM account_tasks t WHERE t.account_id = a.id)),
    'last_error_code', a.last_error_code, 'last_ok_at', {_iso('a.last_ok_at')}, 'owner', a.owner,
    'pinned_node', a.pinned_node)
    FROM accounts a WHERE a.id > :after ORDER BY a.id LIMIT :limit"""


class SnapshotStore(StoreCore):
    async def account_json_after(self, after_id: int, limit: int) -> list[tuple[int, str]]:
        rows = await self.read(ACCOUNT_JSON, {"now": now(), "after": after_id, "limit": limit, "stripped": STRIPPED})
        return [(r[0], r[1]) for r in rows]

    async def quotas_after(self, after_id: int, limit: int) -> list[dict[str, Any]]:
        return [quota_view(r) for r in await self.read(QUOTA_VIEW + " WHERE q.id > ? ORDER BY q.id LIMIT ?",
                                                       (after_id, limit))]
