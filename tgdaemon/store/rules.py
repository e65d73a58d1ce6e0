"""Rules that are not storage, written once above the drivers: fencing, and picking accounts for a round.

The drivers read what these need in one statement and apply what they decide
in another; the conformance suite (tests/store/) runs both drivers through them.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, TypeVar

from tgdaemon.store.api import (
    AccountEffect,
    ClaimedTask,
    Device,
    LeaseAsk,
    Row,
    SetupOutcome,
)

R = TypeVar("R", bound=Row)  # whichever row type the driver reads: it comes back as it went in
# Dispatch: a transaction creates at most this many setup tasks (about 15 ms of the one writer's time, so that
# pulls, reports and claims get it in between), and a read finding the accounts that lack one looks at this
# many account ids (so that it does not hold a reader long either).
DISPATCH_ROWS = 4096
FIND_WINDOW = 20_000
# A setup task put back to retry because its run was cut short (the daemon stopped, the account changed owner)
# says so as its last error: its attempt is recorded with the outcome ``interrupted`` (migration 0016 / 0007).
INTERRUPTED_CODE = "INTERRUPTED"
INTERRUPTED_ERROR = "the daemon stopped, or the account changed owner, while it ran"


def holder(task_id: int) -> str:
    return f"quota:{task_id}"


def lease_runs(asks: Sequence[LeaseAsk]) -> list[list[int]]:
    """The asks (by index) that one statement serves together, in the order to serve them: an executor's
    consecutive asks with the same lease, lock and owner. Another executor's asks between them change nothing
    (their tasks are other accounts'), so the statement's tasks, oldest first, split in ask order are
    what the asks would get one after another."""
    runs: list[list[int]] = []
    latest: dict[str, list[int]] = {}  # executor -> its latest run
    for n, ask in enumerate(asks):
        run = latest.get(ask.executor)
        if run is None or (asks[run[0]].lease_seconds, asks[run[0]].lock_seconds, asks[run[0]].owner) != (
                ask.lease_seconds, ask.lock_seconds, ask.owner):
            run = latest[ask.executor] = []
            runs.append(run)
        run.append(n)
    return runs


def outcome(row: Row | None, executor: str, token: str, at: float, epoch: int | None = None) -> str:
    """Fencing: a report or an extension applies only to a live lease of this executor with this token.
    Another executor's task does not exist for this one. ``epoch`` (the local executor's reports): the
    lease also had to be taken under the account's ownership epoch as it still is (``row["owner_epoch"]``);
    a node that lost the account meanwhile holds a stale lease, whatever its token."""
    if row is None or (row["leased_by"] or row["executor"]) != executor:
        return "not_found"
    if row["status"] in ("done", "failed"):
        return "duplicate" if row["lease_token"] == token else "stale_lease"
    if row["status"] != "leased" or row["lease_token"] != token or row["lease_expires_at"] <= at:
        return "stale_lease"
    if epoch is not None and row["owner_epoch"] != epoch:
        return "stale_lease"
    return "applied"


def only_ok(effect: AccountEffect) -> bool:
    """An outcome that marks its account ok, and names it maybe, and nothing else: nearly every outcome, so the
    drivers write these for a whole batch in one statement rather than through ``apply_account_effect``."""
    return (effect.ok and effect.error_code is None and effect.cooldown_until is None
            and effect.cooldown_reason is None and effect.disable_reason is None)


def assign(picks: Sequence[tuple[R, int | None, int]], accounts: list[int],
           used: set[tuple[int, int, int]]) -> list[tuple[R, int | None, int, int]]:
    """Least recently used account first, each account once per round, never one already used for
    the same (quota, post). A channel_stats run has no post, so any free account will do."""
    free = list(accounts)
    taken: set[int] = set()
    out: list[tuple[R, int | None, int, int]] = []
    start = 0
    for q, post, cursor in picks:
        while start < len(free) and free[start] in taken:
            start += 1
        for i in range(start, len(free)):
            account = free[i]
            if account not in taken and (post is None or (q["id"], post, account) not in used):
                taken.add(account)
                out.append((q, post, cursor, account))
                break
    return out


def pick_setup(rows: Sequence[Row], limit: int, at: float, taken: set[int] | None = None) -> list[ClaimedTask]:
    """From the candidates in claim order, at most ``limit`` tasks and at most one per account (every account
    here has a free lock), none of the accounts ``taken`` (by a claim before this one in the transaction, added
    to it here), each as its attempt sees it, with the account's ownership epoch that fences its finish.

    The first ``limit + len(taken)`` candidates of each type are enough: a task is one of an account's, and a
    type holds one task an account, so one behind those comes after ``limit`` distinct accounts not taken."""
    claimed: list[ClaimedTask] = []
    seen = set() if taken is None else taken
    for r in rows:
        if len(claimed) == limit or r["account_id"] in seen:
            continue
        seen.add(r["account_id"])
        claimed.append(ClaimedTask(
            r["id"], r["account_id"], r["task_type"], json.loads(r["payload_json"]), r["attempts"] + 1,
            json.loads(r["result_json"] or "{}"), r["started_at"] or at, r["tg_user_id"], r["phone"],
            json.loads(r["profile_json"] or "{}"), resumed=r["started_at"] is not None, epoch=r["owner_epoch"]))
    return claimed


def dispatch_batches(accounts: list[int], types: int) -> list[list[int]]:
    """The accounts that lack a setup task, by transaction: at most ``DISPATCH_ROWS`` tasks in one, and all of
    an account's in the same one (it changes once)."""
    per_tx = max(1, DISPATCH_ROWS // max(1, types))
    return [accounts[i:i + per_tx] for i in range(0, len(accounts), per_tx)]


def setup_outcome_events(items: Sequence[tuple[ClaimedTask, SetupOutcome]]) -> list[dict[str, Any]]:
    """The log rows of a batch of setup outcomes: the same on both drivers, as the stream reads them."""
    events: list[dict[str, Any]] = []
    for task, outcome in items:
        skipped = outcome.result.get("meta", {}).get("skipped")
        detail = outcome.effect.error_code or ("skipped" if skipped else "")
        events.append({"kind": f"setup.{outcome.status}", "account_id": task.account_id, "task_id": task.id,
                       "message": f"{task.task_type}: {outcome.status}" + (f" ({detail})" if detail else ""),
                       "data": {"task_type": task.task_type, "error_code": outcome.effect.error_code,
                                "retry_at": outcome.retry_at}})
    return events


def device_event(device: Device, replace: bool) -> tuple[str, dict[str, Any]]:
    """The audit line of ``set_device``: the fields it set, by name only (never a value: the api_hash is one)."""
    given = device.given()
    if replace and not given:
        return "device reset to the [telegram] defaults", {"fields": [], "reset": True}
    said = ", ".join(given)
    return (f"device {'replaced' if replace else 'set'}: {said}"
            + (" (the rest back to the [telegram] defaults)" if replace else ""), {"fields": given, "reset": replace})


def health_event(before: str | None, health: str | None) -> dict[str, Any] | None:
    """The log row of a health check's finding (kind, message, data), the same on both drivers: only when
    the check found a health and it is not the one before."""
    if health is None or health == before:
        return None
    return {"kind": "account.health", "message": f"health: {before or 'unchecked'} -> {health}",
            "data": {"health": health, "was": before}}
