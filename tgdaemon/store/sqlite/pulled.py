"""Pulled tasks (design 5.2–5.5): generation from due quotas, fenced leases, idempotent reports, the reaper.

Every step is a few set-based statements in one transaction, whatever the
batch size, because a pull or a report of 100 tasks has to cost about what
one costs. A task's account is reserved by the one account lock (holder
``quota:<task id>``) from generation until the report: the reservation spends
no pacing and no daily cap; a success commits both, a failure or a given-up
lease only lets the lock go.
"""

from __future__ import annotations

import json
import sqlite3
from collections import Counter
from typing import Any

import msgspec

from tgdaemon.errors import NotFound
from tgdaemon.store import rules
from tgdaemon.store.api import Finish, Generated, Generation, LeaseAsk, QuotaRef, Reaped
from tgdaemon.store.rules import holder
from tgdaemon.store.sqlite.core import StoreCore, Tx
from tgdaemon.store.sqlite.locks import (
    RELEASE_LOCK,
    TAKE_LOCK,
    release_locks,
    take_locks,
)
from tgdaemon.store.sqlite.setup import (
    ACCOUNT_CAN_WORK,
    LOCK_FREE,
    apply_account_effect,
)
from tgdaemon.timeutil import now

OPEN = "('pending', 'leased')"
# Design 5.1, plus one guard: open tasks count against what is left, so a
# short interval never makes more tasks than the quota has left to do.
ELIGIBLE = f"""q.paused = 0 AND q.inspection_ok = 1 AND q.expires_at > :now
    AND (q.next_run_at IS NULL OR q.next_run_at <= :now)
    AND (q.quantity_left > 0 OR q.orders_left > 0)
    AND (SELECT COUNT(*) FROM tasks t WHERE t.subject_type = 'quota' AND t.subject_id = q.id AND t.status IN {OPEN})
        * CASE WHEN q.quantity_left IS NULL THEN 1 ELSE q.per_call END < COALESCE(q.quantity_left, q.orders_left)"""
SNAPSHOT_FRESH = "(q.action != 'post_stats' OR q.posts_fetched_at > :stale_before)"
TASK_COLUMNS = ("id, lease_token, account_id, action, target, post_id, subject_type, subject_id,"
                " lease_expires_at")
# One run of asks (same executor, lease, lock and owner: rules.lease_runs) in one statement. The partial index
# is named because the planner, without statistics, sorted every pending task instead (2 ms per pull at 10,000).
# ``reserved``: whether the task's own reservation was still live; ``epoch``: the account's ownership epoch.
LEASE = ("UPDATE tasks SET status = 'leased', lease_token = lower(hex(randomblob(16))), leased_by = :ex,"
         " executor = :ex, leased_at = :now, lease_expires_at = :exp, lease_count = lease_count + 1 WHERE id IN ("
         " SELECT t.id FROM tasks t INDEXED BY tasks_pending JOIN accounts a ON a.id = t.account_id"
         " WHERE t.status = 'pending' AND a.executor = :ex AND a.is_active = 1 AND a.disabled_at IS NULL"
         " AND (a.cooldown_until IS NULL OR a.cooldown_until <= :now)"
         " AND NOT EXISTS (SELECT 1 FROM account_locks l WHERE l.account_id = t.account_id"
         " AND l.expires_at > :now AND l.holder != 'quota:' || t.id){owner}"
         f" ORDER BY t.id LIMIT :limit) RETURNING {TASK_COLUMNS}, (SELECT l.expires_at > :now"
         " FROM account_locks l WHERE l.account_id = tasks.account_id AND l.holder = 'quota:' || tasks.id)"
         " AS reserved, (SELECT a.owner_epoch FROM accounts a WHERE a.id = tasks.account_id) AS epoch")
LEASE_ANY, LEASE_OWNED = LEASE.replace("{owner}", ""), LEASE.replace("{owner}", " AND a.owner = :owner")
TASK_ROWS = ("SELECT t.id, t.status, t.lease_token, t.leased_by, t.lease_expires_at, t.account_id, t.subject_id,"
             " t.post_id, a.executor, a.owner_epoch FROM tasks t JOIN accounts a ON a.id = t.account_id"
             " WHERE t.id IN (SELECT value FROM json_each(?))")


def _text(value: Any) -> str:
    """JSON text for a column, in C (json.dumps was microseconds a value, twice a report)."""
    return _encoder.encode(value).decode()


_encoder = msgspec.json.Encoder()


def _take_locks(conn: sqlite3.Connection, locks: list[tuple[int, str]], seconds: float, at: float) -> None:
    """locks.take_locks(must=True, touch=False), on the writer's thread: the locks were just seen free or the
    holder's own, in this transaction."""
    cur = conn.executemany(TAKE_LOCK, [(account_id, holder, at + seconds, at) for account_id, holder in locks])
    if cur.rowcount != len(locks):
        raise RuntimeError(f"took {cur.rowcount} of {len(locks)} locks that were free in this transaction")


def _tasks(conn: sqlite3.Connection, ids: list[int]) -> dict[int, sqlite3.Row]:
    rows = conn.execute(TASK_ROWS, (json.dumps(sorted(set(ids))),)).fetchall()
    return {r["id"]: r for r in rows}


class PulledStore(StoreCore):
    # --- generation ------------------------------------------------------------------------------------------------

    async def stale_snapshots(self, stale_before: float, limit: int) -> list[QuotaRef]:
        """Due post quotas whose posts snapshot is missing or older than the TTL: refreshed before generation."""
        return [QuotaRef(r["id"], r["target"], r["last_n_posts"]) for r in await self.read(
            f"SELECT q.id, q.target, q.last_n_posts FROM quotas q WHERE {ELIGIBLE} AND q.action = 'post_stats'"
            " AND (q.posts_fetched_at IS NULL OR q.posts_fetched_at <= :stale_before)"
            " ORDER BY COALESCE(q.next_run_at, 0), q.id LIMIT :limit",
            {"now": now(), "stale_before": stale_before, "limit": limit})]

    async def record_posts(self, quota_id: int, post_ids: list[int]) -> None:
        """A fresh snapshot; the cursor starts again at the newest post."""
        async with self.tx() as tx:
            await tx.execute("UPDATE quotas SET posts_json = ?, posts_fetched_at = ?, cursor = 0 WHERE id = ?",
                             (json.dumps(post_ids), now(), quota_id))
            tx.touch_quota(quota_id)

    async def postpone_quota(self, quota_id: int, error: str, seconds: float) -> None:
        """A run that could not happen (refresh failed, no probe): say why, and try again later."""
        async with self.tx() as tx:
            await tx.execute("UPDATE quotas SET last_error = ?, next_run_at = ? WHERE id = ?",
                             (error, now() + seconds, quota_id))
            tx.touch_quota(quota_id)

    async def generate(self, g: Generation) -> Generated:
        """One round of design 5.2 in one transaction: pick posts, reserve accounts, create tasks,
        advance cursors and ``next_run_at`` together, so a restart never makes the same run twice.
        ``leader_epoch``: only while it is still the fleet's leadership, or two leaders would both generate."""
        async with self.tx() as tx:
            at = now()  # in the transaction: a clock step is followed at its start
            if g.leader_epoch is not None and not list(await tx.fetchall(
                    "SELECT 1 FROM leadership WHERE name = 'fleet' AND epoch = ? AND expires_at > ?",
                    (g.leader_epoch, at))):  # the leadership's clock is the database's (Store.db_now: now())
                return Generated()  # no longer the fleet's leader: another node generates now
            quotas = list(await tx.fetchall(
                f"SELECT q.id, q.action, q.target, q.posts_json, q.cursor, q.interval_seconds, q.last_error"
                f" FROM quotas q WHERE {ELIGIBLE} AND {SNAPSHOT_FRESH}"
                " ORDER BY COALESCE(q.next_run_at, 0), q.id LIMIT :limit",
                {"now": at, "stale_before": g.stale_before, "limit": g.max_tasks}))
            if not quotas:
                return Generated()
            picks: list[tuple[sqlite3.Row, int | None, int]] = []  # (quota, post id, next cursor)
            empty: list[sqlite3.Row] = []
            for q in quotas:
                if q["action"] != "post_stats":
                    picks.append((q, None, q["cursor"]))
                    continue
                posts = json.loads(q["posts_json"] or "[]")
                if not posts:
                    empty.append(q)
                    continue
                index = q["cursor"] % len(posts)
                picks.append((q, posts[index], (index + 1) % len(posts)))
            accounts = [r[0] for r in await tx.fetchall(
                f"SELECT a.id FROM accounts a WHERE {ACCOUNT_CAN_WORK} AND {LOCK_FREE}"
                " AND (a.executor = 'local' AND :local OR a.executor IN"
                " (SELECT name FROM providers WHERE revoked_at IS NULL))"
                f" AND NOT EXISTS (SELECT 1 FROM tasks t WHERE t.account_id = a.id AND t.status IN {OPEN})"
                " AND NOT EXISTS (SELECT 1 FROM usage u WHERE u.account_id = a.id AND u.day = :day"
                " AND u.used >= :cap) ORDER BY COALESCE(a.last_used_at, 0), a.id",
                {"now": at, "local": int(g.local), "day": g.day, "cap": g.daily_cap})]
            used = await self._used_for_posts(tx, [(q["id"], post) for q, post, _ in picks if post is not None])
            chosen = rules.assign(picks, accounts, used)
            first = next(iter(await tx.fetchall("SELECT COALESCE(MAX(id), 0) + 1 FROM tasks")))[0]
            made = [(first + i, q, post, cursor, account) for i, (q, post, cursor, account) in enumerate(chosen)]
            await tx.conn.executemany(
                "INSERT INTO tasks (id, subject_type, subject_id, account_id, action, target, post_id, status,"
                " lease_expires_at, created_at, executor) VALUES (?, 'quota', ?, ?, ?, ?, ?, 'pending', ?, ?,"
                " (SELECT executor FROM accounts WHERE id = ?))",
                [(tid, q["id"], account, q["action"], q["target"], post, at + g.lock_seconds, at, account)
                 for tid, q, post, _, account in made])
            await take_locks(tx, [(account, holder(tid)) for tid, _, _, _, account in made], g.lock_seconds)
            await tx.conn.executemany("UPDATE accounts SET last_used_at = ? WHERE id = ?",
                                      [(at, account) for *_, account in made])
            await tx.conn.executemany(
                "UPDATE quotas SET cursor = ?, next_run_at = ?, last_error = NULL WHERE id = ?",
                [(cursor, at + q["interval_seconds"], q["id"]) for _, q, _, cursor, _ in made])
            served = {q["id"] for _, q, *_ in made}
            # A post every free account has already read finds no account by waiting: move on to the next
            # post an interval later, instead of staying due, stuck on that post and first in every round.
            exhausted = [(q, cursor) for q, post, cursor in picks if q["id"] not in served and post is not None
                         and accounts and all((q["id"], post, a) in used for a in accounts)]
            await tx.conn.executemany("UPDATE quotas SET cursor = ? WHERE id = ?",
                                      [(cursor, q["id"]) for q, cursor in exhausted])
            await self._note(tx, [q for q, _ in exhausted], "every free account has read this post already", at)
            moved_on = {q["id"] for q, _ in exhausted}
            starved = [q for q, *_ in picks if q["id"] not in served and q["id"] not in moved_on]
            await self._note(tx, starved, "no account is free for this run", None)
            await self._note(tx, empty, "the channel shows no posts", at)
            for _, q, *_ in made:
                tx.touch_quota(q["id"])
            return Generated(tasks=len(made), no_account=len(starved) + len(exhausted), empty=len(empty))

    async def _used_for_posts(self, tx: Tx, pairs: list[tuple[int, int]]) -> set[tuple[int, int, int]]:
        """(quota, post, account) already taken for the posts about to be picked (a failed task frees its pair).
        CROSS JOIN keeps the pairs outside, so each is one index search; the other way round the
        planner read every task ever made (5.6 s at 100,000 finished tasks, under the write lock)."""
        if not pairs:
            return set()
        rows = await tx.fetchall(
            "SELECT t.subject_id, t.post_id, t.account_id FROM json_each(?) j CROSS JOIN tasks t"
            " ON t.subject_type = 'quota' AND t.subject_id = json_extract(j.value, '$[0]')"
            " AND t.post_id = json_extract(j.value, '$[1]') WHERE t.status != 'failed'", (json.dumps(pairs),))
        return {(r[0], r[1], r[2]) for r in rows}

    async def _note(self, tx: Tx, quotas: list[sqlite3.Row], error: str, at: float | None) -> None:
        """Say why a due quota made no task; ``at`` also pushes its next run back by its interval."""
        changed = [q for q in quotas if q["last_error"] != error or at is not None]
        await tx.conn.executemany(
            "UPDATE quotas SET last_error = ?, next_run_at = COALESCE(?, next_run_at) WHERE id = ?",
            [(error, None if at is None else at + q["interval_seconds"], q["id"]) for q in changed])
        for q in changed:
            tx.touch_quota(q["id"])

    # --- leases ----------------------------------------------------------------------------------------------------

    async def lease_tasks(self, asks: list[LeaseAsk]) -> list[list[dict[str, Any]]]:
        """For each ask, pending tasks of the executor's accounts (``owner``: of those this node owns), oldest
        first, leased with a fresh token each and the account's ownership ``epoch``; all asks in one transaction
        (group commit) run whole on the writer's thread, one statement per run of asks (``rules.lease_runs``:
        sixteen providers' pulls of one task each are one statement, not sixteen)."""
        return await self.write(lambda tx, conn: self._lease(tx, conn, asks))

    def _lease(self, tx: Tx, conn: sqlite3.Connection, asks: list[LeaseAsk]) -> list[list[dict[str, Any]]]:
        at = now()  # in the transaction: a clock step is followed at its start
        out: list[list[dict[str, Any]]] = [[] for _ in asks]
        for run in rules.lease_runs(asks):
            first = asks[run[0]]
            rows = conn.execute(LEASE_ANY if first.owner is None else LEASE_OWNED, {
                "ex": first.executor, "exp": at + first.lease_seconds, "now": at,
                "limit": sum(asks[n].limit for n in run), "owner": first.owner}).fetchall()
            tasks = sorted((dict(r) for r in rows), key=lambda r: r["id"])
            _take_locks(conn, [(t["account_id"], holder(t["id"])) for t in tasks], first.lock_seconds, at)
            for t in tasks:  # a renewed reservation changes nothing anyone sees; a lapsed one retaken does
                if not t.pop("reserved"):
                    tx.touch(t["account_id"])
            start = 0
            for n in run:  # in ask order, each the oldest of what the asks before it left
                out[n] = tasks[start:start + asks[n].limit]
                start += asks[n].limit
        return out

    async def extend_leases(self, executor: str, leases: list[tuple[int, str]], lease_seconds: float,
                            lock_seconds: float) -> list[tuple[str, float | None]]:
        """(outcome, new expiry) per lease; only live leases of this executor are extended."""
        return await self.write(lambda tx, conn: self._extend(conn, executor, leases, lease_seconds, lock_seconds))

    def _extend(self, conn: sqlite3.Connection, executor: str, leases: list[tuple[int, str]], lease_seconds: float,
                lock_seconds: float) -> list[tuple[str, float | None]]:
        at = now()  # in the transaction: a clock step is followed at its start
        rows = _tasks(conn, [tid for tid, _ in leases])
        out: list[tuple[str, float | None]] = []
        live: dict[int, sqlite3.Row] = {}
        for tid, token in leases:
            outcome = rules.outcome(rows.get(tid), executor, token, at)
            if outcome == "applied":
                live[tid] = rows[tid]
            out.append((outcome, at + lease_seconds if outcome == "applied" else None))
        conn.executemany("UPDATE tasks SET lease_expires_at = ? WHERE id = ?",
                         [(at + lease_seconds, tid) for tid in live])
        # a live lease: the reservation is only renewed
        _take_locks(conn, [(r["account_id"], holder(tid)) for tid, r in live.items()], lock_seconds, at)
        return out

    # --- reports ---------------------------------------------------------------------------------------------------

    async def finish_tasks(self, items: list[Finish], *, pace_seconds: float, day: str,
                           retry_seconds: float) -> list[str]:
        """Apply reports in one transaction; the outcome of each, in order. A task reported twice in
        one batch is applied once: the second is a duplicate. A report with an ``epoch`` (the local
        executor's) applies only while it is still the account's ownership epoch (else ``stale_lease``).
        Reading the tasks and applying the successes run whole on the writer's thread; failures, rarer and
        each applied by the one account policy (setup.apply_account_effect), follow in the same transaction."""
        if all(i.ok for i in items):
            outcomes, _, _ = await self.write(lambda tx, conn: self._apply(tx, conn, items, pace_seconds, day))
            return outcomes
        async with self.tx() as tx:
            outcomes, failed, at = await tx.run(lambda conn: self._apply(tx, conn, items, pace_seconds, day))
            await self._roll_back_claims(tx, failed, at, retry_seconds)
            return outcomes

    def _apply(self, tx: Tx, conn: sqlite3.Connection, items: list[Finish], pace: float,
               day: str) -> tuple[list[str], list[tuple[Finish, sqlite3.Row]], float]:
        """The outcomes, the successes committed; the failures to roll back, and the time it judged them at."""
        at = now()  # in the transaction: a clock step is followed at its start
        rows = _tasks(conn, [i.task_id for i in items])
        outcomes: list[str] = []
        applied: list[tuple[Finish, sqlite3.Row]] = []
        seen: set[int] = set()
        for item in items:
            row = rows.get(item.task_id)
            outcome = rules.outcome(row, item.executor, item.lease_token, at, item.epoch)
            if outcome == "applied" and item.task_id in seen:
                outcome = "duplicate"
            outcomes.append(outcome)
            if outcome == "applied" and row is not None:
                seen.add(item.task_id)
                applied.append((item, row))
        self._commit_claims(tx, conn, [(i, r) for i, r in applied if i.ok], at, pace, day)
        return outcomes, [(i, r) for i, r in applied if not i.ok], at

    def _commit_claims(self, tx: Tx, conn: sqlite3.Connection, done: list[tuple[Finish, sqlite3.Row]], at: float,
                       pace: float, day: str) -> None:
        """Success: task done, pacing and the daily cap consumed, the lock let go, the quota's counter
        decremented (never below 0) and the observation stored with its quota's measurement counter
        moved by the same number, all in the caller's transaction."""
        if not done:
            return
        conn.executemany(
            "UPDATE tasks SET status = 'done', result_json = ?, reported_at = ?, lease_expires_at = NULL WHERE id = ?",
            [(_text(i.observation), at, i.task_id) for i, _ in done])
        conn.executemany(
            "INSERT INTO usage (account_id, day, used) VALUES (?, ?, 1)"
            " ON CONFLICT (account_id, day) DO UPDATE SET used = used + 1", [(r["account_id"], day) for _, r in done])
        conn.executemany(
            "UPDATE accounts SET last_ok_at = :at, last_error_code = NULL,"
            " cooldown_until = CASE WHEN :pace > 0 AND COALESCE(cooldown_until, 0) < :at + :pace"
            " THEN :at + :pace ELSE cooldown_until END,"
            " cooldown_reason = CASE WHEN :pace > 0 AND COALESCE(cooldown_until, 0) < :at + :pace"
            " THEN 'pace' ELSE cooldown_reason END,"
            " cooldown_seconds = CASE WHEN :pace > 0 AND COALESCE(cooldown_until, 0) < :at + :pace"
            " THEN :pace ELSE cooldown_seconds END WHERE id = :id",
            [{"at": at, "pace": pace, "id": r["account_id"]} for _, r in done])
        conn.executemany(RELEASE_LOCK, [(r["account_id"], holder(r["id"])) for _, r in done])  # locks.release_locks
        for _, r in done:
            tx.touch(r["account_id"])
        per_quota = Counter(r["subject_id"] for _, r in done)
        quotas = conn.execute("SELECT id, name, quantity_left, orders_left, per_call FROM quotas"
                              " WHERE id IN (SELECT value FROM json_each(?))", (json.dumps(sorted(per_quota)),))
        updates = []
        for q in quotas.fetchall():
            n = per_quota[q["id"]]
            quantity = None if q["quantity_left"] is None else max(0, q["quantity_left"] - q["per_call"] * n)
            orders = q["orders_left"] if quantity is not None else max(0, (q["orders_left"] or 0) - n)
            updates.append((quantity, orders, n, q["id"]))
            tx.touch_quota(q["id"])
            before = q["quantity_left"] if quantity is not None else q["orders_left"]
            if (quantity if quantity is not None else orders) == 0 and before:  # only on the move to 0
                tx.add_event("quota.used_up", f"quota {q['name']}: used up", quota_id=q["id"])
        conn.executemany("UPDATE quotas SET quantity_left = ?, orders_left = ?, last_error = NULL,"
                         " measurements_count = measurements_count + ? WHERE id = ?", updates)
        conn.executemany(
            "INSERT INTO measurements (quota_id, task_id, post_id, observed_at, views, forwards, replies, reactions,"
            " subscribers, data_json) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [(r["subject_id"], r["id"], r["post_id"], at, o.get("views"), o.get("forwards"), o.get("replies"),
              o.get("reactions"), o.get("subscribers"),
              _text({k: v for k, v in o.items() if k in ("title", "reactions_by_emoji")}))
             for o, r in ((i.observation, r) for i, r in done)])

    async def _roll_back_claims(self, tx: Tx, failed: list[tuple[Finish, sqlite3.Row]], at: float,
                                retry_seconds: float) -> None:
        """Failure: task failed, the lock let go, the error applied to the account by the one policy;
        a target error fails the quota's inspection, a transient one makes the quota wait. A wait or a
        dead session is the account's own: the quota goes on with other accounts at its interval."""
        await tx.conn.executemany(
            "UPDATE tasks SET status = 'failed', error_code = ?, result_json = ?, reported_at = ?,"
            " lease_expires_at = NULL WHERE id = ?",
            [(i.error_code, json.dumps({"error": i.error} if i.error else {}), at, i.task_id) for i, _ in failed])
        await release_locks(tx, [(r["account_id"], holder(r["id"])) for _, r in failed])
        for item, row in failed:
            if item.effect is not None:
                await apply_account_effect(tx, row["account_id"], item.effect)
            if item.target_failed:
                await tx.execute("UPDATE quotas SET inspection_ok = 0, inspection_error = ?, inspection_at = ?,"
                                 " last_error = ? WHERE id = ?", (item.error_code, at, item.error_code, row["subject_id"]))
            else:
                await tx.execute("UPDATE quotas SET last_error = ?, next_run_at = CASE WHEN ? THEN"
                                 " MAX(COALESCE(next_run_at, 0), ?) ELSE next_run_at END WHERE id = ?",
                                 (item.error_code, int(item.retry_quota), at + retry_seconds, row["subject_id"]))
            await tx.event("task.failed", f"quota task {row['id']} failed: {item.error_code}",
                           account_id=row["account_id"], task_id=row["id"], quota_id=row["subject_id"],
                           data={"code": item.error_code, "target": item.target_failed})
            tx.touch_quota(row["subject_id"])

    # --- the reaper ------------------------------------------------------------------------------------------------

    async def reap_leases(self, max_leases: int, lock_seconds: float) -> Reaped:
        """Expired leases go back to pending with their reservation renewed, or fail after ``max_leases``;
        pending tasks nobody pulled within their window fail too. Failing lets the account go."""
        async with self.tx() as tx:
            at = now()  # in the transaction: a clock step is followed at its start
            rows = list(await tx.fetchall(
                "SELECT id, status, lease_count, account_id, subject_id FROM tasks"
                f" WHERE status IN {OPEN} AND lease_expires_at <= ?", (at,)))
            if not rows:
                return Reaped()
            back = [r for r in rows if r["status"] == "leased" and r["lease_count"] < max_leases]
            gone = [(r, "LEASE_EXPIRED" if r["status"] == "leased" else "NOT_PULLED")
                    for r in rows if not (r["status"] == "leased" and r["lease_count"] < max_leases)]
            await tx.conn.executemany(
                "UPDATE tasks SET status = 'pending', lease_token = NULL, leased_by = NULL, lease_expires_at = ?"
                " WHERE id = ?", [(at + lock_seconds, r["id"]) for r in back])
            await take_locks(tx, [(r["account_id"], holder(r["id"])) for r in back], lock_seconds, must=False)
            await tx.conn.executemany(
                "UPDATE tasks SET status = 'failed', error_code = ?, reported_at = ?, lease_expires_at = NULL,"
                " lease_token = NULL WHERE id = ?", [(code, at, r["id"]) for r, code in gone])
            await release_locks(tx, [(r["account_id"], holder(r["id"])) for r, _ in gone])
            for r, code in gone:
                await tx.event("task.expired", f"quota task {r['id']}: {code.lower().replace('_', ' ')}",
                               account_id=r["account_id"], task_id=r["id"], quota_id=r["subject_id"],
                               data={"code": code, "leases": r["lease_count"]})
            return Reaped(returned=len(back), failed=sum(c == "LEASE_EXPIRED" for _, c in gone),
                          unpulled=sum(c == "NOT_PULLED" for _, c in gone))

    # --- operators -------------------------------------------------------------------------------------------------

    async def assign_accounts(self, ids: list[int], executor: str) -> int:
        """Give accounts to an executor; how many changed. A task already leased stays with its
        holder until reported or expired; pending ones go to the new executor at its next pull."""
        async with self.tx() as tx:
            found = {r[0] for r in await tx.fetchall(
                "SELECT id FROM accounts WHERE id IN (SELECT value FROM json_each(?))", (json.dumps(ids),))}
            if missing := sorted(set(ids) - found):
                raise NotFound(f"account {missing[0]}: no such account")
            cur = await tx.execute(
                "UPDATE accounts SET executor = ? WHERE id IN (SELECT value FROM json_each(?)) AND executor != ?",
                (executor, json.dumps(ids), executor))
            await tx.execute(  # a pending task goes with its account (its lane: the tasks view's queue)
                "UPDATE tasks SET executor = ? WHERE account_id IN (SELECT value FROM json_each(?))"
                " AND status = 'pending' AND executor IS NOT ?", (executor, json.dumps(ids), executor))
            for account_id in ids:
                tx.touch(account_id)
            if cur.rowcount:
                await tx.event("accounts.assigned", f"{cur.rowcount} account(s) assigned to {executor}",
                               data={"executor": executor, "accounts": len(ids)})
            return cur.rowcount

    async def account_ref(self, account_id: int) -> tuple[int | None, str | None]:
        """(Telegram user id, phone): what a gateway needs besides the id."""
        rows = list(await self.read("SELECT tg_user_id, phone FROM accounts WHERE id = ?", (account_id,)))
        if not rows:
            raise NotFound(f"account {account_id}: no such account")
        return rows[0][0], rows[0][1]


