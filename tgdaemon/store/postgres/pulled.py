"""Pulled tasks (design 5.2–5.5) on PostgreSQL: generation, fenced leases, idempotent reports, the reaper.

The rules are the SQLite twin's (tgdaemon/store/sqlite/pulled.py), statement for statement where the
dialects allow; what PostgreSQL changes is how a batch travels:

- every batch is one statement over ``unnest`` arrays (or ``= ANY``), never one per task: a lease
  and the renewal of its reservations are one statement, for a pull of 100 or for the pulls of one
  executor that group commit gathered; the reports of a batch and everything their successes commit
  (usage, pacing, locks, measurements, counters) are one statement of data-modifying CTEs. A pull or a
  report of 100 costs what one does: BEGIN, a statement or two, COMMIT;
- a lease picks its tasks ``FOR UPDATE SKIP LOCKED``: a task another transaction is leasing is passed
  over, never waited for nor given twice;
- a report or an extension is fenced by the statement that applies it (``UPDATE … WHERE lease_token =
  … AND status = 'leased' AND lease_expires_at > now … RETURNING``); only the reports it did not apply
  are read again, and ``rules.outcome`` says why (duplicate, stale lease, not found) from that read.

A task's account is reserved by the one account lock (holder ``quota:<task id>``) from generation until
the report, exactly as on SQLite.
"""

from __future__ import annotations

import json
from typing import Any

import msgspec

from tgdaemon.errors import NotFound
from tgdaemon.store import rules
from tgdaemon.store.api import Finish, Generated, Generation, LeaseAsk, QuotaRef, Reaped
from tgdaemon.store.postgres.core import PostgresCore, Record, Tx, retried
from tgdaemon.store.postgres.locks import release_locks, take_locks
from tgdaemon.store.postgres.setup import (
    ACCOUNT_CAN_WORK,
    LOCK_FREE,
    apply_account_effect,
)
from tgdaemon.store.rules import holder
from tgdaemon.timeutil import now

OPEN = "('pending', 'leased')"
# Design 5.1, plus one guard: open tasks count against what is left, so a short interval never makes
# more tasks than the quota has left to do. $1 is the time eligibility is decided at.
ELIGIBLE = f"""q.paused = 0 AND q.inspection_ok = 1 AND q.expires_at > $1
    AND (q.next_run_at IS NULL OR q.next_run_at <= $1)
    AND (q.quantity_left > 0 OR q.orders_left > 0)
    AND (SELECT COUNT(*) FROM tasks t WHERE t.subject_type = 'quota' AND t.subject_id = q.id AND t.status IN {OPEN})
        * CASE WHEN q.quantity_left IS NULL THEN 1 ELSE q.per_call END < COALESCE(q.quantity_left, q.orders_left)"""
SNAPSHOT_FRESH = "(q.action != 'post_stats' OR q.posts_fetched_at > $2)"  # $2: stale_before
DUE_ORDER = " ORDER BY COALESCE(q.next_run_at, 0), q.id LIMIT $3"

FREE_ACCOUNTS = (
    f"SELECT a.id FROM accounts a WHERE {ACCOUNT_CAN_WORK.format(now='$1')} AND {LOCK_FREE.format(now='$1')}"
    " AND (a.executor = 'local' AND $2::boolean OR a.executor IN (SELECT name FROM providers WHERE revoked_at IS NULL))"
    f" AND NOT EXISTS (SELECT 1 FROM tasks t WHERE t.account_id = a.id AND t.status IN {OPEN})"
    " AND NOT EXISTS (SELECT 1 FROM usage u WHERE u.account_id = a.id AND u.day = $3 AND u.used >= $4)"
    " ORDER BY COALESCE(a.last_used_at, 0), a.id")

# Leases for one run of asks (same executor, lease and lock): the candidates are locked as they are
# picked (SKIP LOCKED: one being leased elsewhere is neither waited for nor given twice) and their
# accounts' reservations renewed for the lease, the upsert of locks.take_locks, in the same statement.
# ``reserved``: whether the task's own reservation was still live, read before this statement; ``epoch``: the
# account's ownership epoch, which fences the local executor's report. The picked ids reach the UPDATE as an
# array, so it finds them by the primary key: joined to the pick instead, a pull of 100 read every task row
# (a sequential scan and a hash, 6 ms at 10,000 tasks, where this is 2). $1 executor, $2 lease expiry, $3 now,
# $4 how many, $5 lock expiry, $6 the owner whose accounts only are served (NULL: any).
LEASE = (
    "WITH picked AS MATERIALIZED (SELECT t.id, a.owner_epoch AS epoch, (SELECT l.expires_at > $3"
    " FROM account_locks l WHERE l.account_id = t.account_id AND l.holder = 'quota:' || t.id) AS reserved"
    " FROM tasks t JOIN accounts a ON a.id = t.account_id"
    " WHERE t.status = 'pending' AND a.executor = $1 AND a.is_active = 1 AND a.disabled_at IS NULL"
    " AND (a.cooldown_until IS NULL OR a.cooldown_until <= $3)"
    " AND NOT EXISTS (SELECT 1 FROM account_locks l WHERE l.account_id = t.account_id"
    " AND l.expires_at > $3 AND l.holder != 'quota:' || t.id) AND ($6::text IS NULL OR a.owner = $6)"
    " ORDER BY t.id LIMIT $4 FOR UPDATE OF t SKIP LOCKED),"
    " leased AS (UPDATE tasks SET status = 'leased', lease_token = replace(gen_random_uuid()::text, '-', ''),"
    " leased_by = $1, executor = $1, leased_at = $3, lease_expires_at = $2, lease_count = lease_count + 1"
    " WHERE id = ANY (ARRAY(SELECT id FROM picked))"
    " RETURNING id, lease_token, account_id, action, target, post_id, subject_type, subject_id, lease_expires_at),"
    " locked AS (INSERT INTO account_locks (account_id, holder, expires_at)"
    " SELECT account_id, 'quota:' || id, $5 FROM leased"
    " ON CONFLICT (account_id) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at"
    " WHERE account_locks.expires_at <= $3 OR account_locks.holder = excluded.holder RETURNING 1)"
    " SELECT leased.*, picked.reserved, picked.epoch, (SELECT COUNT(*) FROM locked) AS locked"
    " FROM leased JOIN picked USING (id)")

# A batch of reports in one statement. ``r``: a report applies only to a live lease of its executor with
# its token; the same task twice in one batch: the first report that matches is the one applied
# (DISTINCT ON keeps it), as on SQLite. leased_by is always set on a leased task (LEASE sets both), so
# it alone names the lease's executor. The successes among those applied (``done``) then commit their
# claims: usage, pacing (the accounts' SET reads each row as it was, as SQLite's does: a cooldown
# already longer is kept), the reservation let go, the observation stored, and each quota's counters
# moved, never below 0, with the values they had (locked as read, so "before" is the row this statement
# changes: a quota used up by this batch says so once). Failures are rolled back afterwards, one by one.
# A report with an epoch (the local executor's) applies only while its account's ownership epoch is still
# that one: the account row is locked FOR SHARE by the check, so no acquisition moves it before COMMIT.
# $1 the reports, one JSON document (the Finish items, in order: ``ord`` from 1) encoded in C, where an array per
# column had the driver check every element for a nested array (a tenth of a batched report's CPU); what goes in
# a measurement (the counts, and of the rest only the title and the reactions by emoji) is picked out here, as
# on SQLite; $2 now, $3 the day, $4 the pace.
REPORT = (
    "WITH r AS (SELECT DISTINCT ON (id, token, executor) * FROM (SELECT f.ord, f.task_id AS id, f.lease_token AS token,"
    " f.executor, f.ok, CASE WHEN f.ok THEN f.observation WHEN f.error <> '' THEN jsonb_build_object('error', f.error)"
    " ELSE '{}'::jsonb END AS result, f.error_code AS code, (f.observation ->> 'views')::bigint AS views,"
    " (f.observation ->> 'forwards')::bigint AS forwards, (f.observation ->> 'replies')::bigint AS replies,"
    " (f.observation ->> 'reactions')::bigint AS reactions, (f.observation ->> 'subscribers')::bigint AS subscribers,"
    " jsonb_strip_nulls(jsonb_build_object('title', f.observation -> 'title', 'reactions_by_emoji',"
    " f.observation -> 'reactions_by_emoji')) AS data, f.epoch"
    " FROM ROWS FROM (jsonb_to_recordset($1::jsonb) AS (task_id bigint, lease_token text, executor text, ok boolean,"
    " observation jsonb, error_code text, error text, epoch bigint)) WITH ORDINALITY AS f(task_id, lease_token,"
    " executor, ok, observation, error_code, error, epoch, ord)) d ORDER BY id, token, executor, ord),"
    " fenced AS (UPDATE tasks t SET status = CASE WHEN r.ok THEN 'done' ELSE 'failed' END,"
    " error_code = CASE WHEN r.ok THEN t.error_code ELSE r.code END,"
    " result_json = r.result, reported_at = $2, lease_expires_at = NULL FROM r"
    " WHERE t.id = r.id AND t.lease_token = r.token AND t.leased_by = r.executor AND t.status = 'leased'"
    " AND t.lease_expires_at > $2 AND (r.epoch IS NULL OR t.account_id IN (SELECT a.id FROM accounts a"
    " WHERE a.id = t.account_id AND a.owner_epoch = r.epoch FOR SHARE))"
    " RETURNING r.*, t.account_id, t.subject_id, t.post_id),"
    " done AS (SELECT * FROM fenced WHERE ok),"
    " used AS (INSERT INTO usage (account_id, day, used) SELECT account_id, $3::text, COUNT(*) FROM done"
    " GROUP BY account_id ON CONFLICT (account_id, day) DO UPDATE SET used = usage.used + excluded.used),"
    " paced AS (UPDATE accounts SET last_ok_at = k.at, last_error_code = NULL,"
    " cooldown_until = CASE WHEN k.pace > 0 AND COALESCE(cooldown_until, 0) < k.at + k.pace"
    " THEN k.at + k.pace ELSE cooldown_until END,"
    " cooldown_reason = CASE WHEN k.pace > 0 AND COALESCE(cooldown_until, 0) < k.at + k.pace"
    " THEN 'pace' ELSE cooldown_reason END,"
    " cooldown_seconds = CASE WHEN k.pace > 0 AND COALESCE(cooldown_until, 0) < k.at + k.pace"
    " THEN k.pace ELSE cooldown_seconds END FROM (SELECT $2::float8 AS at, $4::float8 AS pace) k"
    " WHERE id IN (SELECT account_id FROM done)),"
    " released AS (DELETE FROM account_locks l USING done d"
    " WHERE l.account_id = d.account_id AND l.holder = 'quota:' || d.id),"
    " measured AS (INSERT INTO measurements (quota_id, task_id, post_id, observed_at, views, forwards, replies,"
    " reactions, subscribers, data_json) SELECT subject_id, id, post_id, $2, views, forwards, replies, reactions,"
    " subscribers, data FROM done ORDER BY ord),"
    " counted AS (UPDATE quotas q SET"
    " quantity_left = CASE WHEN o.quantity_left IS NULL THEN NULL"
    " ELSE GREATEST(0, o.quantity_left - o.per_call * o.n) END,"
    " orders_left = CASE WHEN o.quantity_left IS NULL THEN GREATEST(0, COALESCE(o.orders_left, 0) - o.n)"
    " ELSE o.orders_left END,"
    " last_error = NULL, measurements_count = q.measurements_count + o.n"
    " FROM (SELECT p.id, p.name, p.quantity_left, p.orders_left, p.per_call, c.n FROM quotas p"
    " JOIN (SELECT subject_id, COUNT(*) AS n FROM done GROUP BY subject_id) c ON c.subject_id = p.id"
    " FOR UPDATE OF p) o WHERE q.id = o.id"
    " RETURNING o.id, o.name, o.quantity_left AS quantity_before, o.orders_left AS orders_before,"
    " q.quantity_left, q.orders_left)"
    " SELECT ord, ok, id, account_id, subject_id, NULL::text AS name, NULL::bigint AS quantity_before,"
    " NULL::bigint AS orders_before, NULL::bigint AS quantity_left, NULL::bigint AS orders_left FROM fenced"
    " UNION ALL SELECT NULL, NULL, id, NULL, NULL, name, quantity_before, orders_before, quantity_left, orders_left"
    " FROM counted")

FENCE_EXTENSIONS = (
    "UPDATE tasks t SET lease_expires_at = $1 FROM unnest($2::bigint[], $3::text[]) AS r(id, token)"
    " WHERE t.id = r.id AND t.lease_token = r.token AND t.leased_by = $4 AND t.status = 'leased'"
    " AND t.lease_expires_at > $5 RETURNING t.id, t.lease_token, t.account_id")


_encoder = msgspec.json.Encoder()  # REPORT's $1: the Finish items as they are, one C call for a batch


class PulledStore(PostgresCore):
    # --- generation ------------------------------------------------------------------------------------------------

    async def stale_snapshots(self, stale_before: float, limit: int) -> list[QuotaRef]:
        """Due post quotas whose posts snapshot is missing or older than the TTL: refreshed before generation."""
        return [QuotaRef(r["id"], r["target"], r["last_n_posts"]) for r in await self.read(
            f"SELECT q.id, q.target, q.last_n_posts FROM quotas q WHERE {ELIGIBLE} AND q.action = 'post_stats'"
            " AND (q.posts_fetched_at IS NULL OR q.posts_fetched_at <= $2)" + DUE_ORDER,
            now(), stale_before, limit)]

    async def record_posts(self, quota_id: int, post_ids: list[int]) -> None:
        """A fresh snapshot; the cursor starts again at the newest post."""
        async with self.tx() as tx:
            await tx.execute(
                "UPDATE quotas SET posts_json = $1::jsonb, posts_fetched_at = $2, cursor = 0 WHERE id = $3",
                json.dumps(post_ids), now(), quota_id)
            tx.touch_quota(quota_id)

    async def postpone_quota(self, quota_id: int, error: str, seconds: float) -> None:
        """A run that could not happen (refresh failed, no probe): say why, and try again later."""
        async with self.tx() as tx:
            await tx.execute("UPDATE quotas SET last_error = $1, next_run_at = $2 WHERE id = $3",
                             error, now() + seconds, quota_id)
            tx.touch_quota(quota_id)

    @retried
    async def generate(self, g: Generation) -> Generated:
        """One round of design 5.2 in one transaction: pick posts, reserve accounts, create tasks,
        advance cursors and ``next_run_at`` together, so a restart never makes the same run twice.
        ``leader_epoch``: only while it is still the fleet's leadership, or two leaders would both generate.
        The row is locked FOR SHARE: a node taking the leadership over waits until this round has committed."""
        async with self.tx() as tx:
            at = now()  # in the transaction: a clock step is followed at its start
            if g.leader_epoch is not None and await tx.fetchval(
                    "SELECT 1 FROM leadership WHERE name = 'fleet' AND epoch = $1"
                    " AND expires_at > extract(epoch from clock_timestamp()) FOR SHARE", g.leader_epoch) is None:
                return Generated()  # no longer the fleet's leader: another node generates now
            quotas = await tx.fetch(
                "SELECT q.id, q.action, q.target, q.posts_json, q.cursor, q.interval_seconds, q.last_error"
                f" FROM quotas q WHERE {ELIGIBLE} AND {SNAPSHOT_FRESH}" + DUE_ORDER, at, g.stale_before, g.max_tasks)
            if not quotas:
                return Generated()
            picks: list[tuple[Record, int | None, int]] = []  # (quota, post id, next cursor)
            empty: list[Record] = []
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
            accounts = [r[0] for r in await tx.fetch(FREE_ACCOUNTS, at, g.local, g.day, g.daily_cap)]
            used = await self._used_for_posts(tx, [(q["id"], post) for q, post, _ in picks if post is not None])
            chosen = rules.assign(picks, accounts, used)
            made: list[tuple[int, Record, int | None, int, int]] = []  # (task id, quota, post, cursor, account)
            if chosen:
                ids = {r["subject_id"]: r["id"] for r in await tx.fetch(
                    "INSERT INTO tasks (subject_type, subject_id, account_id, action, target, post_id, status,"
                    " lease_expires_at, created_at, executor) SELECT 'quota', s, a, act, tg, p, 'pending', $6, $7,"
                    " (SELECT executor FROM accounts WHERE id = a)"
                    " FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::text[], $5::bigint[]) WITH ORDINALITY"
                    " AS n(s, a, act, tg, p, o) ORDER BY o RETURNING id, subject_id",
                    [q["id"] for q, *_ in chosen], [account for *_, account in chosen],
                    [q["action"] for q, *_ in chosen], [q["target"] for q, *_ in chosen],
                    [post for _, post, _, _ in chosen], at + g.lock_seconds, at)}
                made = [(ids[q["id"]], q, post, cursor, account) for q, post, cursor, account in chosen]
            await take_locks(tx, [(account, holder(tid)) for tid, _, _, _, account in made], g.lock_seconds)
            if made:
                await tx.execute("UPDATE accounts SET last_used_at = $1 WHERE id = ANY($2::bigint[])",
                                 at, [account for *_, account in made])
            served = {q["id"] for _, q, *_ in made}
            # A post every free account has already read finds no account by waiting: move on to the next
            # post an interval later, instead of staying due, stuck on that post and first in every round.
            exhausted = [(q, cursor) for q, post, cursor in picks if q["id"] not in served and post is not None
                         and accounts and all((q["id"], post, a) in used for a in accounts)]
            if made:
                await tx.execute(
                    "UPDATE quotas q SET cursor = c.cursor, next_run_at = c.next, last_error = NULL"
                    " FROM unnest($1::bigint[], $2::integer[], $3::float8[]) AS c(id, cursor, next) WHERE q.id = c.id",
                    [q["id"] for _, q, *_ in made], [cursor for _, _, _, cursor, _ in made],
                    [at + q["interval_seconds"] for _, q, *_ in made])
            if exhausted:
                await tx.execute(
                    "UPDATE quotas q SET cursor = c.cursor FROM unnest($1::bigint[], $2::integer[]) AS c(id, cursor)"
                    " WHERE q.id = c.id", [q["id"] for q, _ in exhausted], [cursor for _, cursor in exhausted])
            await self._note(tx, [q for q, _ in exhausted], "every free account has read this post already", at)
            moved_on = {q["id"] for q, _ in exhausted}
            starved = [q for q, *_ in picks if q["id"] not in served and q["id"] not in moved_on]
            await self._note(tx, starved, "no account is free for this run", None)
            await self._note(tx, empty, "the channel shows no posts", at)
            for _, q, *_ in made:
                tx.touch_quota(q["id"])
            return Generated(tasks=len(made), no_account=len(starved) + len(exhausted), empty=len(empty))

    async def _used_for_posts(self, tx: Tx, pairs: list[tuple[int, int]]) -> set[tuple[int, int, int]]:
        """(quota, post, account) already taken for the posts about to be picked (a failed task frees its
        pair): one statement for every pair, which the planner joins to tasks_subject."""
        if not pairs:
            return set()
        rows = await tx.fetch(
            "SELECT t.subject_id, t.post_id, t.account_id FROM unnest($1::bigint[], $2::bigint[]) AS p(quota, post)"
            " JOIN tasks t ON t.subject_type = 'quota' AND t.subject_id = p.quota AND t.post_id = p.post"
            " WHERE t.status != 'failed'", [q for q, _ in pairs], [post for _, post in pairs])
        return {(r[0], r[1], r[2]) for r in rows}

    async def _note(self, tx: Tx, quotas: list[Record], error: str, at: float | None) -> None:
        """Say why a due quota made no task; ``at`` also pushes its next run back by its interval."""
        changed = [q for q in quotas if q["last_error"] != error or at is not None]
        if not changed:
            return
        await tx.execute(
            "UPDATE quotas q SET last_error = $1, next_run_at = COALESCE(c.next, q.next_run_at)"
            " FROM unnest($2::bigint[], $3::float8[]) AS c(id, next) WHERE q.id = c.id",
            error, [q["id"] for q in changed], [None if at is None else at + q["interval_seconds"] for q in changed])
        for q in changed:
            tx.touch_quota(q["id"])

    # --- leases ----------------------------------------------------------------------------------------------------

    @retried
    async def lease_tasks(self, asks: list[LeaseAsk]) -> list[list[dict[str, Any]]]:
        """For each ask, pending tasks of the executor's accounts, oldest first, leased with a fresh
        token each; all asks in one transaction (group commit), one statement per run of asks that
        ``rules.lease_runs`` finds (sixteen providers' pulls of one task each: one statement, not sixteen).

        Sorts are off for this transaction (none of its statements needs one): the planner, misjudging
        how many pending tasks pass the account conditions (no statistics yet, or statistics from before
        a round of generation), otherwise joins and sorts every pending task to return the first few
        (30 ms per pull at 10,000); without sorts it walks tasks_pending in id order and stops at the
        limit, which is what SQLite's INDEXED BY makes its planner do."""
        out: list[list[dict[str, Any]]] = [[] for _ in asks]
        async with self.setting_tx(local="enable_sort = off") as tx:
            at = now()  # in the transaction: a clock step is followed at its start
            for run in rules.lease_runs(asks):
                first = asks[run[0]]
                rows = await tx.fetch(LEASE, first.executor, at + first.lease_seconds, at,
                                      sum(asks[n].limit for n in run), at + first.lock_seconds, first.owner)
                tasks = sorted((dict(r) for r in rows), key=lambda r: r["id"])
                if tasks and tasks[0]["locked"] != len(tasks):
                    raise RuntimeError(f"took {tasks[0]['locked']} of {len(tasks)} locks that were free"
                                       " in this transaction")
                for t in tasks:  # a renewed reservation changes nothing anyone sees; a lapsed one retaken does
                    del t["locked"]
                    if not t.pop("reserved"):
                        tx.touch(t["account_id"])
                start = 0
                for n in run:  # in ask order, each the oldest of what the asks before it left
                    out[n] = tasks[start:start + asks[n].limit]
                    start += asks[n].limit
        return out

    @retried
    async def extend_leases(self, executor: str, leases: list[tuple[int, str]], lease_seconds: float,
                            lock_seconds: float) -> list[tuple[str, float | None]]:
        """(outcome, new expiry) per lease; only live leases of this executor are extended."""
        async with self.tx() as tx:
            at = now()  # in the transaction: a clock step is followed at its start
            until = at + lease_seconds
            extended = await tx.fetch(FENCE_EXTENSIONS, until, [tid for tid, _ in leases],
                                      [token for _, token in leases], executor, at)
            applied = {(r["id"], r["lease_token"]) for r in extended}
            rows = await self._tasks(tx, [tid for tid, token in leases if (tid, token) not in applied])
            out: list[tuple[str, float | None]] = []
            for tid, token in leases:
                outcome = "applied" if (tid, token) in applied else rules.outcome(rows.get(tid), executor, token, at)
                out.append((outcome, until if outcome == "applied" else None))
            await take_locks(tx, [(r["account_id"], holder(r["id"])) for r in extended], lock_seconds,
                             touch=False)  # a live lease: the reservation is only renewed
            return out

    async def _tasks(self, tx: Tx, ids: list[int]) -> dict[int, Record]:
        if not ids:
            return {}
        rows = await tx.fetch(
            "SELECT t.id, t.status, t.lease_token, t.leased_by, t.lease_expires_at, t.account_id, t.subject_id,"
            " t.post_id, a.executor, a.owner_epoch FROM tasks t JOIN accounts a ON a.id = t.account_id"
            " WHERE t.id = ANY($1::bigint[])", sorted(set(ids)))
        return {r["id"]: r for r in rows}

    # --- reports ---------------------------------------------------------------------------------------------------

    @retried
    async def finish_tasks(self, items: list[Finish], *, pace_seconds: float, day: str,
                           retry_seconds: float) -> list[str]:
        """Apply reports in one transaction; the outcome of each, in order. A task reported twice in
        one batch is applied once: the second is a duplicate. Successes are one statement (REPORT). A report
        with an ``epoch`` (the local executor's) applies only while it is its account's epoch (else stale_lease)."""
        async with self.tx() as tx:
            at = now()  # in the transaction: a clock step is followed at its start
            rows = await tx.fetch(REPORT, _encoder.encode(items).decode(), at, day, pace_seconds)
            applied = {r["ord"] - 1: r for r in rows if r["ord"] is not None}
            # What the others met, read after the fence: a task it applied reads as done (or failed) with
            # that report's token, which is what a second report of it in this batch is judged by.
            others = await self._tasks(tx, [i.task_id for n, i in enumerate(items) if n not in applied])
            outcomes = ["applied" if n in applied else rules.outcome(others.get(i.task_id), i.executor,
                                                                     i.lease_token, at, i.epoch)
                        for n, i in enumerate(items)]
            for n in sorted(applied):
                if items[n].ok:  # its reservation let go
                    tx.touch(applied[n]["account_id"])
            for q in sorted((r for r in rows if r["ord"] is None), key=lambda r: r["id"]):
                tx.touch_quota(q["id"])
                left, before = ((q["quantity_left"], q["quantity_before"]) if q["quantity_left"] is not None
                                else (q["orders_left"], q["orders_before"]))
                if left == 0 and before:  # only on the move to 0
                    await tx.event("quota.used_up", f"quota {q['name']}: used up", quota_id=q["id"])
            await self._roll_back_claims(tx, [(items[n], applied[n]) for n in sorted(applied) if not items[n].ok],
                                         at, retry_seconds)
            return outcomes

    async def _roll_back_claims(self, tx: Tx, failed: list[tuple[Finish, Record]], at: float,
                                retry_seconds: float) -> None:
        """Failure (the task already marked failed by the fence): the lock let go, the error applied to
        the account by the one policy; a target error fails the quota's inspection, a transient one makes
        the quota wait. A wait or a dead session is the account's own: the quota goes on with other
        accounts at its interval. One report after another, as on SQLite, so events keep their order."""
        await release_locks(tx, [(r["account_id"], holder(r["id"])) for _, r in failed])
        for item, row in failed:
            if item.effect is not None:
                await apply_account_effect(tx, row["account_id"], item.effect)
            if item.target_failed:
                await tx.execute("UPDATE quotas SET inspection_ok = 0, inspection_error = $1, inspection_at = $2,"
                                 " last_error = $1 WHERE id = $3", item.error_code, at, row["subject_id"])
            else:
                await tx.execute("UPDATE quotas SET last_error = $1, next_run_at = CASE WHEN $2 THEN"
                                 " GREATEST(COALESCE(next_run_at, 0), $3) ELSE next_run_at END WHERE id = $4",
                                 item.error_code, item.retry_quota, at + retry_seconds, row["subject_id"])
            await tx.event("task.failed", f"quota task {row['id']} failed: {item.error_code}",
                           account_id=row["account_id"], task_id=row["id"], quota_id=row["subject_id"],
                           data={"code": item.error_code, "target": item.target_failed})
            tx.touch_quota(row["subject_id"])

    # --- the reaper ------------------------------------------------------------------------------------------------

    @retried
    async def reap_leases(self, max_leases: int, lock_seconds: float) -> Reaped:
        """Expired leases go back to pending with their reservation renewed, or fail after ``max_leases``;
        pending tasks nobody pulled within their window fail too. Failing lets the account go. A task
        another transaction holds (a report being applied) is left to it: SKIP LOCKED."""
        async with self.tx() as tx:
            at = now()  # in the transaction: a clock step is followed at its start
            rows = await tx.fetch(  # in the order SQLite reads them (its tasks_status index): events alike
                "SELECT id, status, lease_count, account_id, subject_id FROM tasks"
                f" WHERE status IN {OPEN} AND lease_expires_at <= $1 ORDER BY status, lease_expires_at, id"
                " FOR UPDATE SKIP LOCKED", at)
            if not rows:
                return Reaped()
            back = [r for r in rows if r["status"] == "leased" and r["lease_count"] < max_leases]
            gone = [(r, "LEASE_EXPIRED" if r["status"] == "leased" else "NOT_PULLED")
                    for r in rows if not (r["status"] == "leased" and r["lease_count"] < max_leases)]
            if back:
                await tx.execute(
                    "UPDATE tasks SET status = 'pending', lease_token = NULL, leased_by = NULL, lease_expires_at = $1"
                    " WHERE id = ANY($2::bigint[])", at + lock_seconds, [r["id"] for r in back])
            await take_locks(tx, [(r["account_id"], holder(r["id"])) for r in back], lock_seconds, must=False)
            if gone:
                await tx.execute(
                    "UPDATE tasks t SET status = 'failed', error_code = c.code, reported_at = $1,"
                    " lease_expires_at = NULL, lease_token = NULL FROM unnest($2::bigint[], $3::text[]) AS c(id, code)"
                    " WHERE t.id = c.id", at, [r["id"] for r, _ in gone], [code for _, code in gone])
            await release_locks(tx, [(r["account_id"], holder(r["id"])) for r, _ in gone])
            await tx.events_many([{"kind": "task.expired", "message": f"quota task {r['id']}: "
                                   + code.lower().replace("_", " "), "account_id": r["account_id"],
                                   "task_id": r["id"], "quota_id": r["subject_id"],
                                   "data": {"code": code, "leases": r["lease_count"]}} for r, code in gone])
            return Reaped(returned=len(back), failed=sum(c == "LEASE_EXPIRED" for _, c in gone),
                          unpulled=sum(c == "NOT_PULLED" for _, c in gone))

    # --- operators -------------------------------------------------------------------------------------------------

    async def assign_accounts(self, ids: list[int], executor: str) -> int:
        """Give accounts to an executor; how many changed. A task already leased stays with its
        holder until reported or expired; pending ones go to the new executor at its next pull."""
        async with self.tx() as tx:
            found = {r[0] for r in await tx.fetch("SELECT id FROM accounts WHERE id = ANY($1::bigint[])", ids)}
            if missing := sorted(set(ids) - found):
                raise NotFound(f"account {missing[0]}: no such account")
            changed = await tx.execute(
                "UPDATE accounts SET executor = $1 WHERE id = ANY($2::bigint[]) AND executor != $1", executor, ids)
            await tx.execute(  # a pending task goes with its account (its lane: the tasks view's queue)
                "UPDATE tasks SET executor = $1 WHERE account_id = ANY($2::bigint[]) AND status = 'pending'"
                " AND executor IS DISTINCT FROM $1", executor, ids)
            for account_id in ids:
                tx.touch(account_id)
            if changed:
                await tx.event("accounts.assigned", f"{changed} account(s) assigned to {executor}",
                               data={"executor": executor, "accounts": len(ids)})
            return changed

    async def account_ref(self, account_id: int) -> tuple[int | None, str | None]:
        """(Telegram user id, phone): what a gateway needs besides the id."""
        row = await self.read_row("SELECT tg_user_id, phone FROM accounts WHERE id = $1", account_id)
        if row is None:
            raise NotFound(f"account {account_id}: no such account")
        return row[0], row[1]
