"""The tasks view (issue 15): setup and pulled tasks in one listing, their attempts, the lanes' counts, the pulse
and the operator's retry. Attempts, counts and pulse are written by the triggers of migration 0016; here they
are only read, and a retry is a few set-based statements per batch of ids."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

from tgdaemon.errors import NotFound
from tgdaemon.store import taskrules
from tgdaemon.store.api import LaneCount, PulseCount, TaskFilter, TaskRetry
from tgdaemon.store.rules import holder
from tgdaemon.store.sqlite.core import StoreCore
from tgdaemon.store.sqlite.locks import take_locks
from tgdaemon.timeutil import now

ACCOUNT = ("a.label, a.is_active, a.is_probe, a.disabled_at, a.cooldown_until, a.cooldown_reason,"
           " l.holder AS lock_holder")
LOCK = "LEFT JOIN account_locks l ON l.account_id = t.account_id AND l.expires_at > :now"
SETUP = (f"SELECT 'setup' AS kind, t.id, t.account_id, t.task_type, NULL AS executor, t.status, t.attempts,"
         f" t.retry_at, t.last_error_code, t.last_error, t.created_at, t.updated_at, t.result_json, {ACCOUNT}"
         f" FROM account_tasks t JOIN accounts a ON a.id = t.account_id {LOCK}")
PULLED = (f"SELECT 'pulled' AS kind, t.id, t.account_id, t.action AS task_type, t.executor, t.status,"
          f" t.lease_count AS attempts, NULL AS retry_at, t.error_code AS last_error_code,"
          f" json_extract(t.result_json, '$.error') AS last_error, t.created_at,"
          f" COALESCE(t.reported_at, t.leased_at, t.created_at) AS updated_at, NULL AS result_json,"
          f" t.subject_id, t.post_id, t.lease_expires_at, {ACCOUNT}"
          f" FROM tasks t JOIN accounts a ON a.id = t.account_id {LOCK}")
# What a pulled retry decides by (taskrules.PulledRetry).
PULLED_CANDIDATES = ("SELECT t.id, t.status, t.account_id, t.subject_id, a.disabled_at, a.is_active, a.executor,"
                     " q.id AS q_id, q.paused AS q_paused, q.expires_at AS q_expires_at,"
                     " q.quantity_left AS q_quantity_left, q.orders_left AS q_orders_left, q.per_call AS q_per_call,"
                     " q.inspection_ok AS q_inspection_ok FROM tasks t JOIN accounts a ON a.id = t.account_id"
                     " LEFT JOIN quotas q ON t.subject_type = 'quota' AND q.id = t.subject_id")


def _where(kind: str, f: TaskFilter, params: dict[str, Any]) -> str | None:
    """The filter as SQL over ``t`` (the kind's table); None when no task of this kind can match."""
    if f.ids is not None:
        ids = sorted({i for k, i in f.ids if k == kind})
        if not ids:
            return None
        params["ids"] = json.dumps(ids)
        return " WHERE t.id IN (SELECT value FROM json_each(:ids))"
    if f.kind is not None and f.kind != kind or f.executor is not None and kind == "setup":
        return None
    where: list[str] = []
    if f.status is not None:
        where.append("t.status = :status")
        params["status"] = f.status
    if f.types is not None:
        where.append(f"t.{'task_type' if kind == 'setup' else 'action'} IN (SELECT value FROM json_each(:types))")
        params["types"] = json.dumps(list(f.types))
    if f.executor is not None:
        where.append("COALESCE(t.executor, '') = :executor")
        params["executor"] = f.executor
    if f.account_id is not None:
        where.append("t.account_id = :account_id")
        params["account_id"] = f.account_id
    return " WHERE " + " AND ".join(where) if where else ""


class TasksViewStore(StoreCore):
    async def list_tasks(self, f: TaskFilter, limit: int = 1000) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for kind, select, order in (("setup", SETUP, " ORDER BY t.account_id, t.id"),
                                    ("pulled", PULLED, " ORDER BY t.id DESC")):
            params: dict[str, Any] = {"now": now(), "limit": limit}
            where = _where(kind, f, params)
            if where is not None:
                out += [dict(r) for r in await self.read(select + where + order + " LIMIT :limit", params)]
        return out

    async def get_task(self, kind: str, task_id: int) -> dict[str, Any]:
        rows = await self.list_tasks(TaskFilter(ids=((kind, task_id),)), 1)
        if not rows:
            raise NotFound(f"task {kind}:{task_id}: no such task")
        return rows[0]

    async def task_attempts(self, kind: str, task_id: int) -> list[dict[str, Any]]:
        await self.get_task(kind, task_id)
        return [dict(r) for r in await self.read(
            "SELECT * FROM task_attempts WHERE kind = ? AND task_id = ? ORDER BY id", (kind, task_id))]

    async def lane_counts(self) -> list[LaneCount]:
        return [LaneCount(r[0], r[1], r[2], r[3]) for r in await self.read(
            "SELECT kind, lane, status, SUM(n) FROM lane_counts GROUP BY kind, lane, status HAVING SUM(n) <> 0"
            " ORDER BY kind, lane, status")]

    async def pulse(self, since: float) -> list[PulseCount]:
        return [PulseCount(r[0], r[1], r[2], r[3], r[4]) for r in await self.read(
            "SELECT minute, kind, lane, outcome, SUM(n) FROM pulse_counts WHERE minute >= ?"
            " GROUP BY minute, kind, lane, outcome HAVING SUM(n) <> 0 ORDER BY minute, kind, lane, outcome",
            (since,))]

    async def retry_tasks(self, f: TaskFilter, *, dry_run: bool = False,
                          pulled_window: float = 600.0) -> TaskRetry:
        tally = taskrules.RetryTally()
        # Setup: the retryable ones by id, in batches; the others only counted (and the first few named).
        params: dict[str, Any] = {}
        where = _where("setup", f, params)
        if where is not None:
            rows = list(await self.read(f"SELECT t.id, t.status FROM account_tasks t{where} ORDER BY t.id", params))
            due = [r["id"] for r in tally.split("setup", rows, lambda r: taskrules.setup_refusal(r["status"]))]
            tally.retried += len(due) if dry_run else await self._retry_setup(due)
        params = {}
        where = _where("pulled", f, params)
        if where is not None:
            rows = list(await self.read(f"{PULLED_CANDIDATES}{where} ORDER BY t.id", params))
            open_rows = list(await self.read(
                "SELECT account_id, subject_id FROM tasks WHERE status IN ('pending', 'leased')"))
            decide = taskrules.PulledRetry(now(), [r[0] for r in open_rows], Counter(r[1] for r in open_rows))
            due_rows = tally.split("pulled", rows, decide.refusal)
            tally.retried += len(due_rows) if dry_run else await self._retry_pulled(due_rows, pulled_window)
        return tally.result(dry_run)

    async def _retry_setup(self, ids: list[int]) -> int:
        done = 0
        for start in range(0, len(ids), taskrules.BATCH):
            async with self.tx() as tx:
                at = now()
                rows = list(await tx.fetchall(
                    "UPDATE account_tasks SET status = 'retry', retry_at = NULL, attempts = 0, updated_at = ?"
                    " WHERE id IN (SELECT value FROM json_each(?)) AND status IN ('failed', 'retry')"
                    " RETURNING account_id", (at, json.dumps(ids[start:start + taskrules.BATCH]))))
                for r in rows:
                    tx.touch(r[0])
                if rows:
                    await taskrules.log_retry(tx, "setup", len(rows))
                done += len(rows)
        return done

    async def _retry_pulled(self, rows: list[Any], window: float) -> int:
        done = 0
        for start in range(0, len(rows), taskrules.BATCH):
            batch = rows[start:start + taskrules.BATCH]
            async with self.tx() as tx:
                at = now()
                back = list(await tx.fetchall(
                    "UPDATE tasks SET status = 'pending', lease_token = NULL, leased_by = NULL, leased_at = NULL,"
                    " lease_count = 0, error_code = NULL, result_json = NULL, reported_at = NULL,"
                    " lease_expires_at = :until, executor = (SELECT a.executor FROM accounts a"
                    " WHERE a.id = tasks.account_id) WHERE id IN (SELECT value FROM json_each(:ids))"
                    " AND status = 'failed' RETURNING id, account_id, subject_id",
                    {"until": at + window, "ids": json.dumps([r["id"] for r in batch])}))
                # The account's reservation again, where it is free (else the lease takes it when it is).
                await take_locks(tx, [(r["account_id"], holder(r["id"])) for r in back], window, must=False)
                for r in back:
                    tx.touch(r["account_id"])
                    tx.touch_quota(r["subject_id"])
                if back:
                    await taskrules.log_retry(tx, "pulled", len(back))
                done += len(back)
        return done

