"""The tasks view (issue 15) on PostgreSQL: the SQLite twin's (tgdaemon/store/sqlite/tasksview.py) reads and
retries; attempts, counts and pulse are written by the statement triggers of migration 0007."""

from __future__ import annotations

from collections import Counter
from typing import Any

from tgdaemon.errors import NotFound
from tgdaemon.store import taskrules
from tgdaemon.store.api import LaneCount, PulseCount, TaskFilter, TaskRetry
from tgdaemon.store.postgres.core import PostgresCore, Record
from tgdaemon.store.postgres.locks import take_locks
from tgdaemon.store.rules import holder
from tgdaemon.timeutil import now

ACCOUNT = ("a.label, a.is_active, a.is_probe, a.disabled_at, a.cooldown_until, a.cooldown_reason,"
           " l.holder AS lock_holder")
LOCK = "LEFT JOIN account_locks l ON l.account_id = t.account_id AND l.expires_at > $1"
SETUP = (f"SELECT 'setup' AS kind, t.id, t.account_id, t.task_type, NULL::text AS executor, t.status, t.attempts,"
         f" t.retry_at, t.last_error_code, t.last_error, t.created_at, t.updated_at, t.result_json::text, {ACCOUNT}"
         f" FROM account_tasks t JOIN accounts a ON a.id = t.account_id {LOCK}")
PULLED = (f"SELECT 'pulled' AS kind, t.id, t.account_id, t.action AS task_type, t.executor, t.status,"
          f" t.lease_count AS attempts, NULL::float8 AS retry_at, t.error_code AS last_error_code,"
          f" t.result_json ->> 'error' AS last_error, t.created_at,"
          f" COALESCE(t.reported_at, t.leased_at, t.created_at) AS updated_at, NULL::text AS result_json,"
          f" t.subject_id, t.post_id, t.lease_expires_at, {ACCOUNT}"
          f" FROM tasks t JOIN accounts a ON a.id = t.account_id {LOCK}")
PULLED_CANDIDATES = ("SELECT t.id, t.status, t.account_id, t.subject_id, a.disabled_at, a.is_active, a.executor,"
                     " q.id AS q_id, q.paused AS q_paused, q.expires_at AS q_expires_at,"
                     " q.quantity_left AS q_quantity_left, q.orders_left AS q_orders_left, q.per_call AS q_per_call,"
                     " q.inspection_ok AS q_inspection_ok FROM tasks t JOIN accounts a ON a.id = t.account_id"
                     " LEFT JOIN quotas q ON t.subject_type = 'quota' AND q.id = t.subject_id")


def _where(kind: str, f: TaskFilter, args: list[Any]) -> str | None:
    """The filter as SQL over ``t``, its values appended to ``args``; None when no task of this kind can match."""
    def arg(value: Any) -> str:
        args.append(value)
        return f"${len(args)}"

    if f.ids is not None:
        ids = sorted({i for k, i in f.ids if k == kind})
        return f" WHERE t.id = ANY({arg(ids)}::bigint[])" if ids else None
    if f.kind is not None and f.kind != kind or f.executor is not None and kind == "setup":
        return None
    where: list[str] = []
    if f.status is not None:
        where.append(f"t.status = {arg(f.status)}")
    if f.types is not None:
        where.append(f"t.{'task_type' if kind == 'setup' else 'action'} = ANY({arg(list(f.types))}::text[])")
    if f.executor is not None:
        where.append(f"COALESCE(t.executor, '') = {arg(f.executor)}")
    if f.account_id is not None:
        where.append(f"t.account_id = {arg(f.account_id)}")
    return " WHERE " + " AND ".join(where) if where else ""


class TasksViewStore(PostgresCore):
    async def list_tasks(self, f: TaskFilter, limit: int = 1000) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for kind, select, order in (("setup", SETUP, " ORDER BY t.account_id, t.id"),
                                    ("pulled", PULLED, " ORDER BY t.id DESC")):
            args: list[Any] = [now()]
            where = _where(kind, f, args)
            if where is not None:
                args.append(limit)
                out += [dict(r) for r in await self.read(select + where + order + f" LIMIT ${len(args)}", *args)]
        return out

    async def get_task(self, kind: str, task_id: int) -> dict[str, Any]:
        rows = await self.list_tasks(TaskFilter(ids=((kind, task_id),)), 1)
        if not rows:
            raise NotFound(f"task {kind}:{task_id}: no such task")
        return rows[0]

    async def task_attempts(self, kind: str, task_id: int) -> list[dict[str, Any]]:
        await self.get_task(kind, task_id)
        return [dict(r) for r in await self.read(
            "SELECT * FROM task_attempts WHERE kind = $1 AND task_id = $2 ORDER BY id", kind, task_id)]

    async def lane_counts(self) -> list[LaneCount]:
        return [LaneCount(r[0], r[1], r[2], int(r[3])) for r in await self.read(
            "SELECT kind, lane, status, SUM(n) FROM lane_counts GROUP BY kind, lane, status HAVING SUM(n) <> 0"
            " ORDER BY kind, lane, status")]

    async def pulse(self, since: float) -> list[PulseCount]:
        return [PulseCount(int(r[0]), r[1], r[2], r[3], int(r[4])) for r in await self.read(
            "SELECT minute, kind, lane, outcome, SUM(n) FROM pulse_counts WHERE minute >= $1"
            " GROUP BY minute, kind, lane, outcome HAVING SUM(n) <> 0 ORDER BY minute, kind, lane, outcome",
            since)]

    async def retry_tasks(self, f: TaskFilter, *, dry_run: bool = False,
                          pulled_window: float = 600.0) -> TaskRetry:
        tally = taskrules.RetryTally()
        # Setup: the retryable ones by id, in batches; the others only counted (and the first few named).
        args: list[Any] = []
        where = _where("setup", f, args)
        if where is not None:
            rows = await self.read(f"SELECT t.id, t.status FROM account_tasks t{where} ORDER BY t.id", *args)
            due = [r["id"] for r in tally.split("setup", rows, lambda r: taskrules.setup_refusal(r["status"]))]
            tally.retried += len(due) if dry_run else await self._retry_setup(due)
        args = []
        where = _where("pulled", f, args)
        if where is not None:
            rows = await self.read(f"{PULLED_CANDIDATES}{where} ORDER BY t.id", *args)
            open_rows = await self.read("SELECT account_id, subject_id FROM tasks WHERE status IN ('pending', 'leased')")
            decide = taskrules.PulledRetry(now(), [r[0] for r in open_rows], Counter(r[1] for r in open_rows))
            due_rows = tally.split("pulled", rows, decide.refusal)
            tally.retried += len(due_rows) if dry_run else await self._retry_pulled(due_rows, pulled_window)
        return tally.result(dry_run)

    async def _retry_setup(self, ids: list[int]) -> int:
        done = 0
        for start in range(0, len(ids), taskrules.BATCH):
            async with self.tx() as tx:
                rows = await tx.fetch(
                    "UPDATE account_tasks SET status = 'retry', retry_at = NULL, attempts = 0, updated_at = $1"
                    " WHERE id = ANY($2::bigint[]) AND status IN ('failed', 'retry') RETURNING account_id",
                    now(), ids[start:start + taskrules.BATCH])
                for r in rows:
                    tx.touch(r[0])
                if rows:
                    await taskrules.log_retry(tx, "setup", len(rows))
                done += len(rows)
        return done

    async def _retry_pulled(self, rows: list[Record], window: float) -> int:
        done = 0
        for start in range(0, len(rows), taskrules.BATCH):
            batch = rows[start:start + taskrules.BATCH]
            async with self.tx() as tx:
                at = now()
                back = await tx.fetch(
                    "UPDATE tasks t SET status = 'pending', lease_token = NULL, leased_by = NULL, leased_at = NULL,"
                    " lease_count = 0, error_code = NULL, result_json = NULL, reported_at = NULL,"
                    " lease_expires_at = $1, executor = a.executor FROM accounts a"
                    " WHERE a.id = t.account_id AND t.id = ANY($2::bigint[]) AND t.status = 'failed'"
                    " RETURNING t.id, t.account_id, t.subject_id", at + window, [r["id"] for r in batch])
                await take_locks(tx, [(r["account_id"], holder(r["id"])) for r in back], window, must=False)
                for r in back:
                    tx.touch(r["account_id"])
                    tx.touch_quota(r["subject_id"])
                if back:
                    await taskrules.log_retry(tx, "pulled", len(back))
                done += len(back)
        return done
