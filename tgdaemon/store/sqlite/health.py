"""Account health: a check's finding recorded on the account, and the accounts a scheduled check takes next.

The detail is stored as the compact JSON text msgspec writes (key order kept), so the listing's JSON, built
by SQLite, carries it byte for byte as ``views.account_view`` decodes and re-encodes it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgspec

from tgdaemon.store import rules
from tgdaemon.store.api import ProbeAccount
from tgdaemon.store.api import Tx as ApiTx
from tgdaemon.store.sqlite.core import StoreCore, own
from tgdaemon.store.sqlite.setup import current_epochs
from tgdaemon.timeutil import now


class HealthStore(StoreCore):
    async def record_health(self, tx: ApiTx, account_id: int, health: str | None, detail: Mapping[str, Any],
                            at: float, *, epoch: int | None = None) -> bool:
        db = own(tx)
        if epoch is not None and not await current_epochs(db, [(account_id, epoch)]):
            return False
        rows = list(await db.fetchall("SELECT health FROM accounts WHERE id = ?", (account_id,)))
        if not rows:
            return False
        before = rows[0][0]
        await db.execute("UPDATE accounts SET health = COALESCE(?, health), health_checked_at = ?, health_detail = ?"
                         " WHERE id = ?", (health, at, msgspec.json.encode(dict(detail)).decode(), account_id))
        if (event := rules.health_event(before, health)) is not None:
            await db.event(event["kind"], event["message"], account_id=account_id, data=event["data"])
        db.touch(account_id)
        return True

    async def health_due(self, before: float, limit: int, owner: str | None = None) -> list[ProbeAccount]:
        return [ProbeAccount(r["id"], r["tg_user_id"], r["phone"], r["owner_epoch"]) for r in await self.read(
            "SELECT a.id, a.tg_user_id, a.phone, a.owner_epoch FROM accounts a WHERE a.is_active = 1"
            " AND a.disabled_at IS NULL AND (a.cooldown_until IS NULL OR a.cooldown_until <= :now)"
            " AND (a.health_checked_at IS NULL OR a.health_checked_at < :before)"
            " AND NOT EXISTS (SELECT 1 FROM account_locks l WHERE l.account_id = a.id AND l.expires_at > :now)"
            + ("" if owner is None else " AND a.owner = :owner")
            + " ORDER BY COALESCE(a.health_checked_at, 0), a.id LIMIT :limit",
            {"now": now(), "before": before, "owner": owner, "limit": limit})]
