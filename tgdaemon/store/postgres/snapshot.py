"""Reads for the stream's snapshot, a page at a time: the SQLite twin (tgdaemon/store/sqlite/snapshot.py) says
why."""

from __future__ import annotations

from typing import Any

from tgdaemon.store.postgres.core import PostgresCore
from tgdaemon.store.postgres.quotas import QUOTA_VIEW
from tgdaemon.store.views import quota_view


class SnapshotStore(PostgresCore):
    async def quotas_after(self, after_id: int, limit: int) -> list[dict[str, Any]]:
        return [quota_view(r) for r in await self.read(QUOTA_VIEW + " WHERE q.id > $1 ORDER BY q.id LIMIT $2",
                                                       after_id, limit)]
