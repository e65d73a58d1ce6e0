"""The tasks view's rules above the drivers (issue 15): which matched task an operator's retry makes due, and
why not the others. Both drivers read the candidates with what these need and write what they decide."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, TypeVar

from tgdaemon.store.api import REFUSALS_SHOWN, Row, TaskRetry, Tx

SETUP_RETRYABLE = ("failed", "retry")
R = TypeVar("R")
BATCH = 5000  # tasks made due per transaction: the writer is held a few ms at a time, not for a whole fleet


def setup_refusal(status: str) -> str | None:
    if status in SETUP_RETRYABLE:
        return None
    return f"{status}: only a failed or waiting setup task is retried"


class PulledRetry:
    """Decides failed pulled tasks one after the other, as if the ones before were already pending again: two
    failed tasks of one account, or more than a quota has room for, are not all made open at once."""

    def __init__(self, at: float, open_accounts: Iterable[int], open_per_quota: Mapping[int, int]) -> None:
        self.at = at
        self.open_accounts = set(open_accounts)
        self.open_per_quota = Counter(open_per_quota)

    def refusal(self, r: Row | dict[str, Any]) -> str | None:
        """Why this one stays failed, or None (then counted as open from now on). ``r``: the task's status,
        account_id, subject_id, the account's disabled_at and is_active, the quota's (q_ prefixed) paused,
        expires_at, quantity_left, orders_left, per_call, inspection_ok (q_id None: the quota is gone)."""
        if r["status"] != "failed":
            return f"{r['status']}: only a failed pulled task is retried"
        quota = r["subject_id"]
        if r["q_id"] is None:
            return f"quota {quota} no longer exists"
        if r["q_paused"]:
            return f"quota {quota} is paused"
        if r["q_expires_at"] <= self.at:
            return f"quota {quota} has expired"
        left = r["q_quantity_left"] if r["q_quantity_left"] is not None else r["q_orders_left"]
        if not left:
            return f"quota {quota} is used up"
        if r["q_inspection_ok"] != 1:
            return f"quota {quota} has not passed its inspection"
        if r["disabled_at"] is not None or not r["is_active"]:
            return f"account {r['account_id']} is disabled"
        if r["account_id"] in self.open_accounts:
            return f"account {r['account_id']} has another open task"
        per = r["q_per_call"] if r["q_quantity_left"] is not None else 1
        if self.open_per_quota[quota] * per >= left:  # generation's own guard (ELIGIBLE in the drivers)
            return f"quota {quota} has no room for another open task"
        self.open_accounts.add(r["account_id"])
        self.open_per_quota[quota] += 1
        return None


def note(refused: list[tuple[str, int, str]], one: tuple[str, int, str]) -> None:
    """Name a refusal, up to REFUSALS_SHOWN of them (the rest are only counted)."""
    if len(refused) < REFUSALS_SHOWN:
        refused.append(one)


class RetryTally:
    """One ``retry_tasks`` answer as both drivers make it: the tasks matched, those made due, and the refusals
    (named up to REFUSALS_SHOWN, all counted)."""

    def __init__(self) -> None:
        self.matched = self.retried = self.refused_count = 0
        self.refused: list[tuple[str, int, str]] = []

    def split(self, kind: str, rows: Sequence[R], why: Callable[[R], str | None]) -> list[R]:
        """The rows to make due; the others are tallied with ``why`` they are not."""
        self.matched += len(rows)
        due = []
        for r in rows:
            if (reason := why(r)) is None:
                due.append(r)
            else:
                self.refused_count += 1
                note(self.refused, (kind, r["id"], reason))  # type: ignore[index]
        return due

    def result(self, dry_run: bool) -> TaskRetry:
        return TaskRetry(matched=self.matched, retried=self.retried, refused=self.refused,
                         refused_count=self.refused_count, dry_run=dry_run)


async def log_retry(tx: Tx, kind: str, n: int) -> None:
    """The log row of one retry batch, the same on both drivers."""
    said = "setup tasks due now" if kind == "setup" else "pulled tasks pending again"
    await tx.event("tasks.retry_requested", f"operator retry: {n} {said}", data={"kind": kind, "tasks": n})
