"""The tasks view's rules above the drivers (issue 15): which matched task an operator's retry makes due, and
why not the others. Both drivers read the candidates with what these need and write what they decide."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

from tgdaemon.store.api import REFUSALS_SHOWN, Row

SETUP_RETRYABLE = ("failed", "retry")
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
