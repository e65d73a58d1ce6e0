"""What a write transaction changed, and the rule that puts every change in the event log: one base for
both drivers' transactions, so the rule the stream depends on is written once."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from tgdaemon.store.api import CHANGES_KIND


class TxLog:
    """Touched accounts and quotas, and the events written, as the stream reads them after commit. A driver's
    transaction adds the statements: ``event`` writes one row and hands it to ``recorded``."""

    def __init__(self) -> None:
        self.accounts: set[int] = set()
        self.quotas: set[int] = set()
        self.events: list[dict[str, Any]] = []

    def touch(self, account_id: int) -> None:
        """Mark an account as changed, so its new state is published after commit."""
        self.accounts.add(account_id)

    def touch_quota(self, quota_id: int) -> None:
        self.quotas.add(quota_id)

    async def event(self, kind: str, message: str, *, account_id: int | None = None,
                    task_id: int | None = None, quota_id: int | None = None,
                    data: dict[str, Any] | None = None) -> None:
        raise NotImplementedError  # the driver's statement

    def recorded(self, ids: Iterable[int], events: list[dict[str, Any]], at: float) -> None:
        """Events a statement wrote (``ids`` in any order, one per event, ascending with ``events``): into
        the transaction's list for the stream, their accounts touched."""
        ids = sorted(ids)
        if len(ids) != len(events):
            raise RuntimeError(f"wrote {len(ids)} of {len(events)} events")
        for event_id, e in zip(ids, events, strict=True):
            self.events.append({"id": event_id, "at": at, "kind": e["kind"], "account_id": e.get("account_id"),
                                "task_id": e.get("task_id"), "quota_id": e.get("quota_id"),
                                "message": e["message"], "data": e.get("data") or {}})
            if e.get("account_id") is not None:
                self.touch(e["account_id"])

    async def log_changes(self) -> None:
        """Before COMMIT: the accounts and quotas touched that none of this transaction's events names, as
        one ``changes`` row, so the log holds every change (a lease taking a lock, a report) at one row
        per commit, not one per object."""
        accounts = sorted(self.accounts - {e["account_id"] for e in self.events})
        quotas = sorted(self.quotas - {e["quota_id"] for e in self.events})
        if accounts or quotas:
            await self.event(CHANGES_KIND, "", data={"accounts": accounts, "quotas": quotas})
