"""What a write transaction changed, and the rule that puts every change in the event log: one base for
both drivers' transactions, so the rule the stream depends on is written once.

A transaction's log rows (its events, then the ``changes`` row) are held until just before COMMIT and
written there, together, by the driver's ``write_log``. The stream reads the log by id and never looks
below what it has read, so ids must be in commit order; on PostgreSQL several daemons write at once,
and a transaction that took its ids early could commit after one that took larger ids later. Written
last, under a lock held to the COMMIT, they cannot (tgdaemon/store/postgres/core.py). So an event's id
is known only after commit: ``events`` holds the written rows, with their ids, from then on.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from tgdaemon.store.api import CHANGES_KIND
from tgdaemon.timeutil import now


class TxLog:
    """Touched accounts and quotas, and the log rows, as the stream reads them after commit. A driver's
    transaction adds ``write_log``, the statement that writes them."""

    def __init__(self) -> None:
        self.accounts: set[int] = set()
        self.quotas: set[int] = set()
        self.events: list[dict[str, Any]] = []  # the rows written, with their ids: filled just before COMMIT
        self.pending: list[dict[str, Any]] = []  # the rows to write: each with its own ``at``, no id yet

    def touch(self, account_id: int) -> None:
        """Mark an account as changed, so its new state is published after commit."""
        self.accounts.add(account_id)

    def touch_quota(self, quota_id: int) -> None:
        self.quotas.add(quota_id)

    async def event(self, kind: str, message: str, *, account_id: int | None = None,
                    task_id: int | None = None, quota_id: int | None = None,
                    data: dict[str, Any] | None = None) -> None:
        """Append to the audit trail (written at commit); the caller must keep secrets out of ``message``
        and ``data``."""
        self.add_event(kind, message, account_id=account_id, task_id=task_id, quota_id=quota_id, data=data)

    def add_event(self, kind: str, message: str, *, account_id: int | None = None, task_id: int | None = None,
                  quota_id: int | None = None, data: dict[str, Any] | None = None) -> None:
        """``event`` for a driver's synchronous code (a transaction run whole on the writer's thread)."""
        self._add(now(), kind, message, account_id, task_id, quota_id, data)

    async def events_many(self, events: list[dict[str, Any]]) -> None:
        """Many events, in this order (``kind``, ``message``, optional ``account_id``, ``task_id``,
        ``quota_id``, ``data``)."""
        at = now()
        for e in events:
            self._add(at, e["kind"], e["message"], e.get("account_id"), e.get("task_id"), e.get("quota_id"),
                      e.get("data"))

    def _add(self, at: float, kind: str, message: str, account_id: int | None, task_id: int | None,
             quota_id: int | None, data: dict[str, Any] | None) -> None:
        self.pending.append({"at": at, "kind": kind, "account_id": account_id, "task_id": task_id,
                             "quota_id": quota_id, "message": message, "data": data or {}})
        if account_id is not None:
            self.touch(account_id)

    async def write_log(self, rows: Sequence[dict[str, Any]]) -> Sequence[int]:
        """The driver's statement: insert ``rows`` (never empty), in their order; their ids, ascending."""
        raise NotImplementedError

    def take_log(self) -> list[dict[str, Any]]:
        """Just before COMMIT: the accounts and quotas touched that none of this transaction's events names
        become one ``changes`` row, so the log holds every change (a lease taking a lock, a report) at one
        row per commit, not one per object; then every row to write, in order (none: nothing to write)."""
        accounts = sorted(self.accounts - {e["account_id"] for e in self.pending})
        quotas = sorted(self.quotas - {e["quota_id"] for e in self.pending})
        if accounts or quotas:
            self._add(now(), CHANGES_KIND, "", None, None, None, {"accounts": accounts, "quotas": quotas})
        rows, self.pending = self.pending, []
        return rows

    def logged(self, rows: Sequence[dict[str, Any]], ids: Sequence[int]) -> None:
        """``rows`` (from ``take_log``) were written with these ids."""
        if len(ids) != len(rows):
            raise RuntimeError(f"wrote {len(ids)} of {len(rows)} log rows")
        self.events += [{"id": event_id, **row} for event_id, row in zip(ids, rows, strict=True)]

    async def log_changes(self) -> None:
        """``take_log``, then every row written in one go by the driver's ``write_log``."""
        if rows := self.take_log():
            self.logged(rows, await self.write_log(rows))
