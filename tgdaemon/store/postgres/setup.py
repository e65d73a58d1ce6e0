"""Setup tasks: dispatch, claim, finish, recover, retry; and what a task's outcome does to its account.

The rules are SQLite's (tgdaemon/store/sqlite/setup.py); here every batch is one statement over
``unnest`` arrays, and a claim takes the tasks it chose ``FOR UPDATE SKIP LOCKED``: a task another
transaction is claiming is passed over, not waited for.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from tgdaemon.store import rules
from tgdaemon.store.api import AccountEffect, ClaimedTask, SetupOutcome
from tgdaemon.store.postgres.core import Params, Tx, retried
from tgdaemon.store.postgres.locks import release_locks
from tgdaemon.store.postgres.sessions import SessionStore
from tgdaemon.timeutil import now

# {now}: the parameter holding the time eligibility is decided at; ``a`` is the account.
ACCOUNT_SHOULD_CONVERGE = "a.is_active = 1 AND a.disabled_at IS NULL AND a.is_probe = 0"
ACCOUNT_CAN_WORK = ACCOUNT_SHOULD_CONVERGE + " AND (a.cooldown_until IS NULL OR a.cooldown_until <= {now})"
LOCK_FREE = "NOT EXISTS (SELECT 1 FROM account_locks l WHERE l.account_id = a.id AND l.expires_at > {now})"
# What a task put back to retry because its run was cut short records (its attempt: outcome interrupted).
INTERRUPTED = f"last_error_code = '{rules.INTERRUPTED_CODE}', last_error = '{rules.INTERRUPTED_ERROR}'"
DUE = "t.status IN ('pending', 'retry') AND (t.retry_at IS NULL OR t.retry_at <= {now})"


def _json(value: Any) -> str:
    return json.dumps(value)


def fence_columns(items: list[tuple[Any, ...]]) -> list[list[Any]]:
    """The columns of (task, account, epoch, …) rows (at least one), in account order, for a statement that
    joins them to their accounts FOR SHARE: where the join is driven by them, the locks are taken in id order,
    as current_epochs takes them. Not an ORDER BY in the statement: with sorts off (the claim) the planner
    then walks every account by its primary key and compares each with every item (100 ms at 2,000)."""
    return [list(column) for column in zip(*sorted(items, key=lambda i: (i[1], i[0])), strict=True)]


async def current_epochs(tx: Tx, pairs: Iterable[tuple[int, int]]) -> set[tuple[int, int]]:
    """Of these (account, ownership epoch) pairs, those whose epoch is still the account's: one statement for
    a batch. The rows are locked FOR SHARE (in id order), so no other node's acquisition moves an epoch until
    this transaction ends: what it writes for them is written under the epoch it checked."""
    pairs = set(pairs)
    if not pairs:
        return set()
    rows = await tx.fetch("SELECT id, owner_epoch FROM accounts WHERE id = ANY($1::bigint[]) ORDER BY id FOR SHARE",
                          sorted({a for a, _ in pairs}))
    return pairs & {(r[0], r[1]) for r in rows}


async def apply_account_effect(tx: Tx, account_id: int, effect: AccountEffect, *, epoch: int | None = None) -> bool:
    """The one place that turns an outcome into account state, for setup tasks and quota reports alike.
    ``epoch``: only while it is still the account's ownership epoch (False, nothing done, when not)."""
    if epoch is not None and not await current_epochs(tx, [(account_id, epoch)]):
        return False
    at = now()
    if effect.ok:
        await tx.execute("UPDATE accounts SET last_ok_at = $1, last_error_code = NULL WHERE id = $2", at, account_id)
    if effect.name is not None:
        await tx.execute("UPDATE accounts SET first_name = $1, last_name = $2 WHERE id = $3", *effect.name, account_id)
    elif effect.error_code:
        await tx.execute("UPDATE accounts SET last_error_code = $1 WHERE id = $2", effect.error_code, account_id)
    if effect.cooldown_until is not None:
        changed = await tx.execute(  # with its length: clockstep's start-up clamp bounds a cooldown by it
            "UPDATE accounts SET cooldown_until = $1, cooldown_reason = $2, cooldown_seconds = $3 WHERE id = $4"
            " AND (cooldown_until IS NULL OR cooldown_until < $1)",
            effect.cooldown_until, effect.cooldown_reason, max(0.0, effect.cooldown_until - at), account_id)
        if changed:
            await tx.event("account.cooldown", f"cooldown {effect.cooldown_until - at:.0f} s: {effect.cooldown_reason}",
                           account_id=account_id,
                           data={"reason": effect.cooldown_reason, "seconds": round(effect.cooldown_until - at)})
    if effect.disable_reason is not None:
        changed = await tx.execute("UPDATE accounts SET disabled_at = $1, disabled_reason = $2 WHERE id = $3"
                                   " AND disabled_at IS NULL", at, effect.disable_reason, account_id)
        if changed:
            await tx.event("account.disabled", f"disabled: {effect.disable_reason}", account_id=account_id,
                           data={"reason": effect.disable_reason, "automatic": True})
    tx.touch(account_id)
    return True


async def claim(tx: Tx, types: list[str], limit: int, lock_seconds: float,
                owner: str | None) -> list[ClaimedTask]:
    """claim_setup, in the caller's transaction.

    The epoch is read without a lock: an acquisition that moves it after this read also puts the task
    back to retry, and the finish, fenced by the epoch, then changes nothing."""
    if not types:
        return []
    at = now()  # in the transaction: a clock step is followed at its start
    # Without it the planner may read every due task of a type through a BitmapOr and sort them (56-62 ms
    # a media claim at 80,000 tasks, bench stores' diagnosis) instead of walking the index to the limit.
    await tx.execute("SET LOCAL enable_sort = off")
    # One ordered, limited read per type along the account_tasks_due index (NULL retry_at first:
    # never tried), instead of sorting every eligible task of every type; ``limit`` of each is enough
    # (rules.pick_setup).
    rows = sorted(await tx.fetch((
        "SELECT c.* FROM unnest($2::text[]) AS ty(task_type) CROSS JOIN LATERAL ("
        " SELECT t.id, t.account_id, t.task_type, t.payload_json, t.attempts, t.result_json, t.started_at,"
        " t.retry_at, a.tg_user_id, a.phone, a.profile_json, a.owner_epoch"
        " FROM account_tasks t JOIN accounts a ON a.id = t.account_id"
        f" WHERE t.task_type = ty.task_type AND {DUE} AND {ACCOUNT_CAN_WORK} AND {LOCK_FREE}"
        + ("" if owner is None else " AND a.owner = $4")
        + " ORDER BY t.retry_at NULLS FIRST, t.id LIMIT $3) c").format(now="$1"),
        at, types, limit, *(() if owner is None else (owner,))),
        key=lambda r: (r["retry_at"] or 0, r["id"]))
    claimed = rules.pick_setup(rows, limit, at)
    if not claimed:
        return []
    # One statement for the whole batch (the writer's round trips are the scheduler's cost): the
    # chosen tasks marked running, their accounts' locks taken; their events go with the log's rows,
    # at COMMIT (tgdaemon/store/txlog.py). Only the chosen tasks are locked (SKIP LOCKED: one another
    # transaction is claiming is passed over) and the
    # UPDATE checks again that each still waits; the candidates above are not locked, which would
    # cost a write to every row read. The chosen tasks' accounts are locked FOR SHARE and must still
    # have the epoch (and owner) read above: an acquisition by another node either committed first
    # (the task is passed over) or waits for this commit and then finds the task running, which it
    # puts back to retry. Without the lock a task claimed under a stale epoch could stay running.
    events = [{"kind": "setup.started", "message": f"{t.task_type}: attempt {t.attempts}",
               "account_id": t.account_id, "task_id": t.id, "data": {"task_type": t.task_type}}
              for t in claimed]
    row = await tx.fetchrow(
        "WITH c AS (SELECT id FROM account_tasks WHERE id = ANY($2::bigint[]) FOR UPDATE SKIP LOCKED),"
        " owned AS (SELECT e.t FROM unnest($7::bigint[], $8::bigint[], $9::bigint[]) AS e(t, a, ep)"
        " JOIN accounts a ON a.id = e.a WHERE a.owner_epoch = e.ep AND ($10::text IS NULL OR a.owner = $10)"
        " FOR SHARE OF a),"
        " up AS (UPDATE account_tasks t SET status = 'running', attempts = u.n, started_at = u.s,"
        " updated_at = $1 FROM c, unnest($2::bigint[], $3::integer[], $4::float8[], $5::text[]) AS u(id, n, s, h)"
        " WHERE t.id = c.id AND t.id = u.id AND t.status IN ('pending', 'retry')"
        " AND t.id IN (SELECT t FROM owned) RETURNING t.id, t.account_id, u.h),"
        " lk AS (INSERT INTO account_locks (account_id, holder, expires_at) SELECT account_id, h, $6 FROM up"
        " ON CONFLICT (account_id) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at"
        " WHERE account_locks.expires_at <= $1 OR account_locks.holder = excluded.holder RETURNING account_id)"
        " SELECT array(SELECT id FROM up) AS started, (SELECT count(*) FROM lk) AS locked",
        at, [t.id for t in claimed], [t.attempts for t in claimed], [t.started_at for t in claimed],
        [t.holder for t in claimed], at + lock_seconds,
        *fence_columns([(t.id, t.account_id, t.epoch) for t in claimed]), owner)
    assert row is not None
    started = set(row["started"])  # all of them, unless another node claimed or acquired meanwhile
    claimed = [t for t in claimed if t.id in started]
    if row["locked"] != len(claimed):
        raise RuntimeError(f"took {row['locked']} of {len(claimed)} locks that were free in this transaction")
    for t in claimed:
        tx.touch(t.account_id)
    await tx.events_many([e for e in events if e["task_id"] in started])
    return claimed


async def finish(tx: Tx, items: list[tuple[ClaimedTask, SetupOutcome]]) -> None:
    """finish_setup_many, in the caller's transaction.

    The fence is the ``cur`` CTE: the batch's accounts locked FOR SHARE where their epoch is still the
    task's, so no acquisition moves it before COMMIT; everything else in the statement is filtered by it."""
    if not items:
        return
    at = now()
    # The common case, ok (and named: update_name), in the batch's one statement below.
    if not all(rules.only_ok(o.effect) for _, o in items):
        # Effects first (their events come before the tasks' own, as on SQLite): so is their fence.
        current = await current_epochs(tx, [(t.account_id, t.epoch) for t, _ in items])
        items = [(t, o) for t, o in items if (t.account_id, t.epoch) in current]
        for task, outcome in items:
            if not rules.only_ok(outcome.effect):
                await apply_account_effect(tx, task.account_id, outcome.effect)
        if not items:
            return
    # The same task twice in one batch: the first outcome counts (SQLite's second UPDATE finds it
    # no longer running).
    first = list({t.id: (t, o) for t, o in reversed(items)}.values())[::-1]
    events = rules.setup_outcome_events(items)
    # One statement: the fence, the outcomes recorded, the plain successes applied, the locks let go (the
    # events go with the log's rows, at COMMIT).
    row = await tx.fetchrow(
        "WITH cur AS (SELECT k.t, k.a, k.plain, k.first, k.last FROM unnest($9::bigint[], $10::bigint[],"
        " $11::bigint[], $12::boolean[], $13::text[], $14::text[]) AS k(t, a, ep, plain, first, last)"
        " JOIN accounts a ON a.id = k.a WHERE a.owner_epoch = k.ep FOR SHARE OF a),"
        " up AS (UPDATE account_tasks t SET status = u.status, retry_at = u.retry_at, last_error_code = u.code,"
        " last_error = u.error, result_json = u.result::jsonb, attempts = t.attempts - u.refund,"
        " updated_at = $1 FROM unnest($2::bigint[], $3::text[], $4::float8[], $5::text[], $6::text[],"
        " $7::text[], $8::integer[]) AS u(id, status, retry_at, code, error, result, refund)"
        " WHERE t.id = u.id AND t.status = 'running' AND u.id IN (SELECT t FROM cur) RETURNING t.id),"
        " ok AS (UPDATE accounts ac SET last_ok_at = $1, last_error_code = NULL,"
        " first_name = COALESCE(cur.first, ac.first_name), last_name = COALESCE(cur.last, ac.last_name)"
        " FROM cur WHERE ac.id = cur.a AND cur.plain RETURNING ac.id),"
        " rel AS (DELETE FROM account_locks l USING cur WHERE l.account_id = cur.a"
        " AND l.holder = 'setup:' || cur.t RETURNING l.account_id)"
        " SELECT array(SELECT t FROM cur) AS current",
        at, [t.id for t, _ in first], [o.status for _, o in first], [o.retry_at for _, o in first],
        [o.effect.error_code for _, o in first], [o.error for _, o in first],
        [_json({**t.result, **o.result}) for t, o in first], [int(o.refund_attempt) for _, o in first],
        *fence_columns([(t.id, t.account_id, t.epoch, rules.only_ok(o.effect),
                         *(o.effect.name or (None, None))) for t, o in items]))
    assert row is not None
    current = set(row["current"])
    for task, _ in items:  # their locks were let go
        if task.id in current:
            tx.touch(task.account_id)
    await tx.events_many([e for e in events if e["task_id"] in current])


class SetupStore(SessionStore):
    async def recover_setup(self, owner: str | None = None) -> int:
        """At start-up, under the data-dir lock: tasks a dead daemon left running go back to retry. ``owner``:
        only those of the accounts this node owns (after the database came back: the others' are theirs)."""
        async with self.tx() as tx:
            at = now()
            rows = sorted(await tx.fetch(
                f"UPDATE account_tasks SET status = 'retry', retry_at = $1, updated_at = $1, {INTERRUPTED}"
                " WHERE status = 'running'" + ("" if owner is None else " AND account_id IN (SELECT id FROM accounts WHERE owner = $2)")
                + " RETURNING id, account_id, task_type", at, *(() if owner is None else (owner,))),
                key=lambda r: r["id"])
            await release_locks(tx, [(r["account_id"], f"setup:{r['id']}") for r in rows])
            await tx.events_many([{"kind": "setup.recovered", "account_id": r["account_id"], "task_id": r["id"],
                                   "message": f"{r['task_type']}: was running when the daemon stopped; retry"}
                                  for r in rows])
            return len(rows)

    async def dispatch_setup(self, required: Mapping[str, dict[str, Any]]) -> tuple[int, int]:
        """Create the required tasks (type → payload) for every account that should converge.

        Returns (tasks created, tasks due now). The unique key makes it idempotent. As on SQLite: the accounts
        that lack one found on the read pool, their tasks made in bounded transactions
        (``rules.dispatch_batches``), ids type by type within one, accounts by id (claims break ties by id).
        """
        types = list(required)
        payloads = [_json(p) for p in required.values()]
        chunks = rules.dispatch_batches(await self._missing_setup(types), len(types))
        created = 0
        for n, chunk in enumerate(chunks, 1):
            async with self.tx() as tx:
                rows = await tx.fetch(
                    "INSERT INTO account_tasks (account_id, task_type, payload_json, status, created_at, updated_at)"
                    " SELECT a.id, r.t, r.p::jsonb, 'pending', $3, $3 FROM unnest($1::text[], $2::text[])"
                    " WITH ORDINALITY AS r(t, p, o) CROSS JOIN accounts a WHERE a.id = ANY($4::bigint[])"
                    f" AND {ACCOUNT_SHOULD_CONVERGE} ORDER BY r.o, a.id"
                    " ON CONFLICT (account_id, task_type) DO NOTHING RETURNING account_id",
                    types, payloads, now(), chunk)
                created += len(rows)
                for account_id in {r[0] for r in rows}:
                    tx.touch(account_id)
                if n == len(chunks) and created:
                    await tx.event("setup.dispatched", f"dispatch created {created} setup tasks",
                                   data={"created": created})
        due = int(await self.read_val(
            "SELECT COUNT(*) FROM account_tasks t JOIN accounts a ON a.id = t.account_id"
            f" WHERE {DUE} AND {ACCOUNT_CAN_WORK} AND {LOCK_FREE}".format(now="$1"), now()))
        return created, due

    async def _missing_setup(self, task_types: list[str]) -> list[int]:
        """The accounts that should converge and lack one of these tasks, in id order: one read per window of
        ``rules.FIND_WINDOW`` ids."""
        if not task_types:
            return []
        top = int(await self.read_val("SELECT COALESCE(MAX(id), 0) FROM accounts"))
        missing: list[int] = []
        for low in range(0, top, rules.FIND_WINDOW):
            missing += [r[0] for r in await self.read(
                f"SELECT a.id FROM accounts a WHERE a.id > $1 AND a.id <= $2 AND {ACCOUNT_SHOULD_CONVERGE}"
                " AND (SELECT COUNT(*) FROM account_tasks t WHERE t.account_id = a.id"
                " AND t.task_type = ANY($3::text[])) < $4 ORDER BY a.id",
                low, low + rules.FIND_WINDOW, task_types, len(task_types))]
        return missing

    @retried
    async def claim_setup(self, task_types: Iterable[str], limit: int, lock_seconds: float, *,
                          owner: str | None = None) -> list[ClaimedTask]:
        """Up to ``limit`` eligible tasks of these types, at most one per account, each with its lock taken
        and the account's ownership epoch; ``owner``: of the accounts this node owns only."""
        types = list(task_types)
        if not types:
            return []
        async with self.tx() as tx:
            return await claim(tx, types, limit, lock_seconds, owner)

    async def finish_setup(self, task: ClaimedTask, outcome: SetupOutcome) -> None:
        await self.finish_setup_many([(task, outcome)])

    @retried
    async def finish_setup_many(self, items: list[tuple[ClaimedTask, SetupOutcome]]) -> None:
        """Record outcomes, apply them to their accounts and release the locks: one transaction for all. A task
        claimed under an ownership epoch that is no longer its account's changes nothing: its account has
        another owner since, which put the task back to retry and may be running it again."""
        if items:
            async with self.tx() as tx:
                await finish(tx, items)

    @retried
    async def finish_and_claim_setup(self, items: list[tuple[ClaimedTask, SetupOutcome]],
                                     claims: Sequence[tuple[Sequence[str], int]], lock_seconds: float, *,
                                     owner: str | None = None) -> list[list[ClaimedTask]]:
        async with self.tx() as tx:
            await finish(tx, items)
            return [await claim(tx, list(types), limit, lock_seconds, owner) if limit > 0 else []
                    for types, limit in claims]

    async def retry_account_setup(self, account_id: int) -> int:
        """The operator's retry: failed and waiting tasks are due now, with their attempts reset; cooldowns stay."""
        await self.get_account(account_id)
        async with self.tx() as tx:
            n = await tx.execute(
                "UPDATE account_tasks SET status = 'retry', retry_at = NULL, attempts = 0, updated_at = $1"
                " WHERE account_id = $2 AND status IN ('failed', 'retry')", now(), account_id)
            await tx.event("setup.retry_requested", f"operator retry: {n} setup tasks due now",
                           account_id=account_id, data={"tasks": n})
            return n

    async def setup_tasks(self, *, account_id: int | None = None, status: str | None = None,
                          limit: int = 1000) -> list[dict[str, Any]]:
        """Setup tasks with what their account and lock look like now (for ``blocked_by``)."""
        p = Params(now())
        where = []
        if account_id is not None:
            where.append(f"t.account_id = {p(account_id)}")
        if status is not None:
            where.append(f"t.status = {p(status)}")
        rows = await self.read(
            "SELECT t.*, a.label, a.is_active, a.is_probe, a.disabled_at, a.cooldown_until, a.cooldown_reason,"
            " l.holder AS lock_holder FROM account_tasks t JOIN accounts a ON a.id = t.account_id"
            " LEFT JOIN account_locks l ON l.account_id = t.account_id AND l.expires_at > $1"
            + (" WHERE " + " AND ".join(where) if where else "") + f" ORDER BY t.account_id, t.id LIMIT {p(limit)}",
            *p.values)
        return [dict(r) for r in rows]
