"""Reads for the stream's snapshot: a list a page at a time, in id order.

A snapshot of a big fleet is read in keyset pages (``id > after``) so that
neither the daemon nor one statement ever holds the whole list; the accounts'
pages are ``list_accounts`` sorted by id, whose cursor is the same keyset.
"""

from __future__ import annotations

from typing import Any

from tgdaemon.store.sqlite.core import StoreCore
from tgdaemon.store.sqlite.quotas import QUOTA_VIEW
from tgdaemon.store.views import quota_view


class SnapshotStore(StoreCore):
    async def quotas_after(self, after_id: int, limit: int) -> list[dict[str, Any]]:
        return [quota_view(r) for r in await self.read(QUOTA_VIEW + " WHERE q.id > ? ORDER BY q.id LIMIT ?",
                                                       (after_id, limit))]
