"""Pruning history ([retention]): old events, old finished pulled tasks, old days of usage.

Each call deletes at most one batch in its own short transaction. The rows to
delete are found first on the reader connection, outside the write lock; the
write transaction only deletes those ids, re-checking in the DELETE itself
that each is still prunable, so the writer is held for the deletion alone
(a few milliseconds per thousand rows), never for a scan.

What is never pruned, and why:

* a **done** task of a **live** quota whose post is still in the quota's posts
  snapshot: it is the record that this account has read this post, which
  generation reads to never use the same account for the same post twice
  (``PulledStore._used_for_posts``). Live means not expired and something
  left to do, the conditions no operation can undo: an expired or used-up
  quota never makes a task again, and a post that left the snapshot (the
  channel's last N posts) is never picked again. Failed tasks free their pair,
  so they go when old enough.
* the newest task: new task ids are ``MAX(id) + 1``, and ids must never be
  reused (measurements and events name tasks by id).
* open tasks (pending, leased), setup tasks (``account_tasks``: convergence
  state, not history), measurements (the product's output), and today's usage.

Events go from the oldest end, in id order, stopping at the first one that
is not old enough, so the audit trail keeps no holes in its middle; only an
event stamped in the future by a clock that was ahead is stepped over (kept
until it is old by its own stamp). The highest id a batch deleted is kept in
``meta`` (``EVENTS_PRUNED_THROUGH``), in the same transaction: a stream client
whose cursor lies below it missed rows and gets a snapshot instead.
"""

from __future__ import annotations

import json
import time

from tgdaemon.store.api import EVENTS_PRUNED_THROUGH, Batch
from tgdaemon.store.sqlite.core import StoreCore

# A done task that a live quota still needs; ``t`` is the task row. Used to select and to re-check.
NEEDED = """(t.status = 'done' AND t.subject_type = 'quota' AND t.post_id IS NOT NULL AND EXISTS (
    SELECT 1 FROM quotas q WHERE q.id = t.subject_id AND q.expires_at > :now
    AND (q.quantity_left > 0 OR q.orders_left > 0)
    AND EXISTS (SELECT 1 FROM json_each(q.posts_json) p WHERE p.value = t.post_id)))"""




class RetentionStore(StoreCore):
    async def _delete(self, sql: str, params: dict[str, object],
                      meta: tuple[str, str] | None = None) -> tuple[int, float]:
        """One DELETE (and a ``meta`` key set with it) in its own transaction; (rows deleted, seconds the
        writer was held)."""
        async with self.tx() as tx:
            started = time.perf_counter()
            cur = await tx.execute(sql, params)
            deleted = cur.rowcount
            if meta is not None and deleted:
                await tx.set_meta(*meta)
        return deleted, time.perf_counter() - started

    async def prune_events(self, before: float, limit: int, at: float) -> Batch:
        """The oldest events, in id order, up to the first one at or after ``before``: at most ``limit``
        looked at. One stamped in the future (a clock that was ahead) neither stops the scan nor goes:
        it would otherwise hold back all pruning behind it until the clock caught up with it."""
        rows = list(await self.read("SELECT id, at FROM events ORDER BY id LIMIT ?", (limit,)))
        span = next((i for i, row in enumerate(rows) if before <= row["at"] <= at), len(rows))
        old = [row["id"] for row in rows[:span] if row["at"] < before]
        if not old:  # the same scan again would find the same: this round is done
            return Batch(0, 0, 0.0)
        # old[-1] only grows from batch to batch: what is left below it is a stepped-over future event.
        deleted, held = await self._delete("DELETE FROM events WHERE id BETWEEN :first AND :last AND at < :before",
                                           {"first": old[0], "last": old[-1], "before": before},
                                           meta=(EVENTS_PRUNED_THROUGH, str(old[-1])))
        return Batch(deleted, span, held)  # fewer than the limit: a young event (or the end) was reached

    async def prune_tasks(self, before: float, limit: int, cursor: tuple[float, int] | None,
                          at: float) -> Batch:
        """Finished tasks reported before ``before``, at most ``limit`` scanned from ``cursor`` on (in
        report order), minus those a live quota still needs (see the module's doc). Kept ones are
        stepped over by the cursor (returned, unchanged when nothing was left to scan), so kept tasks
        are not read again batch after batch."""
        r, i = cursor if cursor is not None else (float("-inf"), 0)
        rows = list(await self.read(
            f"SELECT t.id, t.reported_at, {NEEDED} AS needed FROM tasks t INDEXED BY tasks_reported"
            " WHERE t.reported_at IS NOT NULL AND t.reported_at < :before AND (t.reported_at, t.id) > (:r, :i)"
            " AND t.id < (SELECT MAX(id) FROM tasks) ORDER BY t.reported_at, t.id LIMIT :limit",
            {"before": before, "r": r, "i": i, "limit": limit, "now": at}))
        if not rows:
            return Batch(0, 0, 0.0, cursor)
        nxt = (rows[-1]["reported_at"], rows[-1]["id"])
        ids = [row["id"] for row in rows if not row["needed"]]
        if not ids:
            return Batch(0, len(rows), 0.0, nxt)
        deleted, held = await self._delete(
            "DELETE FROM tasks AS t NOT INDEXED WHERE t.id IN (SELECT value FROM json_each(:ids))"
            " AND t.status IN ('done', 'failed') AND t.reported_at < :before"
            f" AND t.id < (SELECT MAX(id) FROM tasks) AND NOT {NEEDED}",
            {"ids": json.dumps(ids), "before": before, "now": at})
        return Batch(deleted, len(rows), held, nxt)

    async def prune_usage(self, before_day: str, limit: int) -> Batch:
        """Daily-cap rows of days before ``before_day`` (UTC, YYYY-MM-DD): only today's counts."""
        rows = [r[0] for r in await self.read("SELECT rowid FROM usage INDEXED BY usage_day WHERE day < ?"
                                              " ORDER BY day LIMIT ?", (before_day, limit))]
        if not rows:
            return Batch(0, 0, 0.0)
        deleted, held = await self._delete(
            "DELETE FROM usage WHERE rowid IN (SELECT value FROM json_each(:ids)) AND day < :day",
            {"ids": json.dumps(rows), "day": before_day})
        return Batch(deleted, len(rows), held)
