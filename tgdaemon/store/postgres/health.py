"""Account health (SQLite twin: same rules): a check's finding recorded on the account, and the accounts a
scheduled check takes next. The detail is kept as the compact JSON text msgspec writes, in a text column, so
the listing's JSON, built by the server, splices it in byte for byte."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgspec

from tgdaemon.store import rules
from tgdaemon.store.api import ProbeAccount
from tgdaemon.store.api import Tx as ApiTx
from tgdaemon.store.postgres.core import PostgresCore, own
from tgdaemon.store.postgres.setup import current_epochs
from tgdaemon.timeutil import now


class HealthStore(PostgresCore):
    async def record_health(self, tx: ApiTx, account_id: int, health: str | None, detail: Mapping[str, Any],
                            at: float, *, epoch: int | None = None) -> bool:
        db = own(tx)
        if epoch is not None and not await current_epochs(db, [(account_id, epoch)]):
            return False
        row = await db.fetchrow("SELECT health FROM accounts WHERE id = $1 FOR UPDATE", account_id)
        if row is None:
            return False
        before = row["health"]
        await db.execute("UPDATE accounts SET health = COALESCE($1, health), health_checked_at = $2,"
                         " health_detail = $3 WHERE id = $4",
                         health, at, msgspec.json.encode(dict(detail)).decode(), account_id)
        if (event := rules.health_event(before, health)) is not None:
            await db.event(event["kind"], event["message"], account_id=account_id, data=event["data"])
        db.touch(account_id)
        return True

    async def health_due(self, before: float, limit: int, owner: str | None = None) -> list[ProbeAccount]:
        return [ProbeAccount(r["id"], r["tg_user_id"], r["phone"], r["owner_epoch"]) for r in await self.read(
            "SELECT a.id, a.tg_user_id, a.phone, a.owner_epoch FROM accounts a WHERE a.is_active = 1"
            " AND a.disabled_at IS NULL AND (a.cooldown_until IS NULL OR a.cooldown_until <= $1)"
            " AND (a.health_checked_at IS NULL OR a.health_checked_at < $2)"
            " AND NOT EXISTS (SELECT 1 FROM account_locks l WHERE l.account_id = a.id AND l.expires_at > $1)"
            + ("" if owner is None else " AND a.owner = $4")
            + " ORDER BY COALESCE(a.health_checked_at, 0), a.id LIMIT $3",
            now(), before, limit, *(() if owner is None else (owner,)))]
