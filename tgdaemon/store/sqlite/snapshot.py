"""Reads for the stream's snapshot: the quotas a keyset page at a time, in id order (``id > after``).

A snapshot of a big fleet is read page by page so that neither the daemon nor
one statement ever holds the whole list; the accounts' pages are the listing's
own (``list_accounts_json`` by id), as JSON made by the database.
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
