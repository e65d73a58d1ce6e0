"""Pruning history ([retention]): old events, old finished pulled tasks, old days of usage.

The rules, and what is never pruned and why, are the SQLite twin's (tgdaemon/store/sqlite/retention.py):
each call deletes at most one batch in its own short transaction; the rows are found first by a read
outside the write lock, and the DELETE re-checks that each is still prunable. A batch of events keeps the
highest id it deleted in ``meta`` (``EVENTS_PRUNED_THROUGH``), in the same transaction: a stream cursor
below it cannot be resumed. The newest task is kept here too, though an identity never hands an id out
twice: the two stores prune the same rows.
"""

from __future__ import annotations

import time
from typing import Any

from tgdaemon.store.api import EVENTS_PRUNED_THROUGH, Batch
from tgdaemon.store.postgres.core import LOG_LOCK, PostgresCore

# A done task that a live quota still needs; ``t`` is the task row, $1 the time. To select and to re-check.
NEEDED = """(t.status = 'done' AND t.subject_type = 'quota' AND t.post_id IS NOT NULL AND EXISTS (
    SELECT 1 FROM quotas q WHERE q.id = t.subject_id AND q.expires_at > $1
    AND (q.quantity_left > 0 OR q.orders_left > 0) AND q.posts_json @> to_jsonb(t.post_id)))"""


class RetentionStore(PostgresCore):
    async def _delete(self, sql: str, *args: Any, meta: tuple[str, str] | None = None) -> tuple[int, float]:
        """One DELETE (and a ``meta`` key set with it, when it deleted rows) in its own transaction; (rows
        deleted, seconds the writer was held)."""
        async with self.tx() as tx:
            started = time.perf_counter()
            deleted = await tx.execute(sql, *args)
            if meta is not None and deleted:
                await tx.set_meta(*meta)
        return deleted, time.perf_counter() - started

    async def prune_events(self, before: float, limit: int, at: float) -> Batch:
        """The oldest events, in id order, up to the first one at or after ``before``: at most ``limit``
        looked at. One stamped in the future (a clock that was ahead) neither stops the scan nor goes."""
        rows = await self.read("SELECT id, at FROM events ORDER BY id LIMIT $1", limit)
        span = next((i for i, row in enumerate(rows) if before <= row["at"] <= at), len(rows))
        old = [row["id"] for row in rows[:span] if row["at"] < before]
        if not old:  # the same scan again would find the same: this round is done
            return Batch(0, 0, 0.0)
        # old[-1] only grows from batch to batch: what is left below it is a stepped-over future event.
        # Under the log's lock, taken before the count of events is (its trigger): the transaction may write
        # a log row after it (a clock step's), and every writer of the log takes the two in that order.
        deleted, held = await self._delete(
            "DELETE FROM events WHERE id BETWEEN $1 AND $2 AND at < $3"
            f" AND (SELECT pg_advisory_xact_lock({LOG_LOCK}) IS NOT NULL)",
            old[0], old[-1], before, meta=(EVENTS_PRUNED_THROUGH, str(old[-1])))
        return Batch(deleted, span, held)  # fewer than the limit: a young event (or the end) was reached

    async def prune_tasks(self, before: float, limit: int, cursor: tuple[float, int] | None,
                          at: float) -> Batch:
        """Finished tasks reported before ``before``, at most ``limit`` scanned from ``cursor`` on (in
        report order), minus those a live quota still needs; kept ones are stepped over by the cursor."""
        r, i = cursor if cursor is not None else (float("-inf"), 0)
        rows = await self.read(
            f"SELECT t.id, t.reported_at, {NEEDED} AS needed FROM tasks t"
            " WHERE t.reported_at IS NOT NULL AND t.reported_at < $2 AND (t.reported_at, t.id) > ($3, $4)"
            " AND t.id < (SELECT MAX(id) FROM tasks) ORDER BY t.reported_at, t.id LIMIT $5",
            at, before, r, i, limit)
        if not rows:
            return Batch(0, 0, 0.0, cursor)
        nxt = (rows[-1]["reported_at"], rows[-1]["id"])
        ids = [row["id"] for row in rows if not row["needed"]]
        if not ids:
            return Batch(0, len(rows), 0.0, nxt)
        deleted, held = await self._delete(
            "DELETE FROM tasks t WHERE t.id = ANY($2::bigint[]) AND t.status IN ('done', 'failed')"
            f" AND t.reported_at < $3 AND t.id < (SELECT MAX(id) FROM tasks) AND NOT {NEEDED}", at, ids, before)
        return Batch(deleted, len(rows), held, nxt)

    async def prune_usage(self, before_day: str, limit: int) -> Batch:
        """Daily-cap rows of days before ``before_day`` (UTC, YYYY-MM-DD): only today's counts."""
        rows = await self.read('SELECT account_id, day FROM usage WHERE day < $1 ORDER BY day COLLATE "C" LIMIT $2',
                               before_day, limit)
        if not rows:
            return Batch(0, 0, 0.0)
        deleted, held = await self._delete(
            "DELETE FROM usage u USING unnest($1::bigint[], $2::text[]) AS r(a, d)"
            " WHERE u.account_id = r.a AND u.day = r.d AND u.day < $3",
            [row["account_id"] for row in rows], [row["day"] for row in rows], before_day)
        return Batch(deleted, len(rows), held)
