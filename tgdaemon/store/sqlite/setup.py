"""Setup tasks: dispatch, claim, finish, recover, retry; and what a task's outcome does to its account.

Eligibility is decided in SQL. A claim takes the account's lock and marks the
task running in the same transaction; a finish records the result, applies
the outcome to the account and releases the lock in one transaction too, so
a crash between the two leaves a running task whose lock will expire, never a
half-recorded one.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from tgdaemon.store import rules
from tgdaemon.store.api import AccountEffect, ClaimedTask, SetupOutcome
from tgdaemon.store.sqlite.core import Tx
from tgdaemon.store.sqlite.locks import release_lock, release_locks, take_locks
from tgdaemon.store.sqlite.sessions import SessionStore
from tgdaemon.timeutil import now

ACCOUNT_SHOULD_CONVERGE = "a.is_active = 1 AND a.disabled_at IS NULL AND a.is_probe = 0"
ACCOUNT_CAN_WORK = f"{ACCOUNT_SHOULD_CONVERGE} AND (a.cooldown_until IS NULL OR a.cooldown_until <= :now)"
# What a task put back to retry because its run was cut short records (its attempt: outcome interrupted).
INTERRUPTED = f"last_error_code = '{rules.INTERRUPTED_CODE}', last_error = '{rules.INTERRUPTED_ERROR}'"
LOCK_FREE = "NOT EXISTS (SELECT 1 FROM account_locks l WHERE l.account_id = a.id AND l.expires_at > :now)"


async def current_epochs(tx: Tx, pairs: Iterable[tuple[int, int]]) -> set[tuple[int, int]]:
    """Of these (account, ownership epoch) pairs, those whose epoch is still the account's: one read for a
    batch. A write for an account made under an older epoch is a former owner's, and changes nothing."""
    pairs = set(pairs)
    if not pairs:
        return set()
    rows = await tx.fetchall("SELECT id, owner_epoch FROM accounts WHERE id IN (SELECT value FROM json_each(?))",
                             (json.dumps(sorted({a for a, _ in pairs})),))
    return pairs & {(r[0], r[1]) for r in rows}


async def apply_account_effect(tx: Tx, account_id: int, effect: AccountEffect, *, epoch: int | None = None) -> bool:
    """The one place that turns an outcome into account state, for setup tasks and quota reports alike.
    ``epoch``: only while it is still the account's ownership epoch (False, nothing done, when not)."""
    if epoch is not None and not await current_epochs(tx, [(account_id, epoch)]):
        return False
    at = now()
    if effect.ok:
        await tx.execute("UPDATE accounts SET last_ok_at = ?, last_error_code = NULL WHERE id = ?", (at, account_id))
    if effect.name is not None:
        await tx.execute("UPDATE accounts SET first_name = ?, last_name = ? WHERE id = ?", (*effect.name, account_id))
    elif effect.error_code:
        await tx.execute("UPDATE accounts SET last_error_code = ? WHERE id = ?", (effect.error_code, account_id))
    if effect.cooldown_until is not None:
        cur = await tx.execute(  # with its length: clockstep's start-up clamp bounds a cooldown by it
            "UPDATE accounts SET cooldown_until = ?, cooldown_reason = ?, cooldown_seconds = ? WHERE id = ?"
            " AND (cooldown_until IS NULL OR cooldown_until < ?)",
            (effect.cooldown_until, effect.cooldown_reason, max(0.0, effect.cooldown_until - at), account_id,
             effect.cooldown_until))
        if cur.rowcount:
            await tx.event("account.cooldown", f"cooldown {effect.cooldown_until - at:.0f} s: {effect.cooldown_reason}",
                           account_id=account_id,
                           data={"reason": effect.cooldown_reason, "seconds": round(effect.cooldown_until - at)})
    if effect.disable_reason is not None:
        cur = await tx.execute("UPDATE accounts SET disabled_at = ?, disabled_reason = ? WHERE id = ?"
                               " AND disabled_at IS NULL", (at, effect.disable_reason, account_id))
        if cur.rowcount:
            await tx.event("account.disabled", f"disabled: {effect.disable_reason}", account_id=account_id,
                           data={"reason": effect.disable_reason, "automatic": True})
    tx.touch(account_id)
    return True


async def claim(tx: Tx, groups: Sequence[tuple[Sequence[str], int]], lock_seconds: float,
                owner: str | None) -> list[list[ClaimedTask]]:
    """claim_setup for each (types, limit) in turn, in the caller's transaction: a group never takes an account
    one before it took (as if that one's locks were taken already); their writes in one statement each."""
    at = now()  # in the transaction: a clock step is followed at its start
    taken: set[int] = set()
    out = [await _pick(tx, list(types), limit, owner, at, taken) if limit > 0 and types else []
           for types, limit in groups]
    claimed = [t for group in out for t in group]
    if not claimed:
        return out
    # One statement per kind for the whole batch: the writer's round trips are the scheduler's cost.
    await take_locks(tx, [(t.account_id, t.holder) for t in claimed], lock_seconds)
    await tx.conn.executemany(
        "UPDATE account_tasks SET status = 'running', attempts = ?, started_at = ?, updated_at = ?"
        " WHERE id = ?", [(t.attempts, t.started_at, at, t.id) for t in claimed])
    await tx.events_many([{"kind": "setup.started", "message": f"{t.task_type}: attempt {t.attempts}",
                           "account_id": t.account_id, "task_id": t.id, "data": {"task_type": t.task_type}}
                          for t in claimed])
    return out


async def _pick(tx: Tx, types: list[str], limit: int, owner: str | None, at: float,
                taken: set[int]) -> list[ClaimedTask]:
    """One ordered, limited read per type along the account_tasks_due index, instead of sorting every eligible
    task of every type (NULL retry_at sorts first: never tried): ``limit`` of each type, and as many more as
    the accounts taken before in the transaction, are enough (rules.pick_setup)."""
    owned = "" if owner is None else " AND a.owner = :owner"
    per_type = [
        "SELECT * FROM (SELECT t.id, t.account_id, t.task_type, t.payload_json, t.attempts, t.result_json,"
        " t.started_at, t.retry_at, a.tg_user_id, a.phone, a.profile_json, a.owner_epoch"
        " FROM account_tasks t JOIN accounts a ON a.id = t.account_id"
        f" WHERE t.task_type = :t{i} AND t.status IN ('pending', 'retry')"
        f" AND (t.retry_at IS NULL OR t.retry_at <= :now) AND {ACCOUNT_CAN_WORK} AND {LOCK_FREE}{owned}"
        " ORDER BY t.retry_at, t.id LIMIT :limit)" for i in range(len(types))]
    params: dict[str, Any] = {"now": at, "limit": limit + len(taken), "owner": owner,
                              **{f"t{i}": t for i, t in enumerate(types)}}
    rows = sorted(await tx.fetchall(" UNION ALL ".join(per_type), params), key=lambda r: (r["retry_at"] or 0, r["id"]))
    return rules.pick_setup(rows, limit, at, taken)


async def finish(tx: Tx, items: list[tuple[ClaimedTask, SetupOutcome]]) -> None:
    """finish_setup_many, in the caller's transaction."""
    at = now()
    current = await current_epochs(tx, [(t.account_id, t.epoch) for t, _ in items])
    items = [(t, o) for t, o in items if (t.account_id, t.epoch) in current]
    await tx.conn.executemany(
        "UPDATE account_tasks SET status = ?, retry_at = ?, last_error_code = ?, last_error = ?,"
        " result_json = ?, attempts = attempts - ?, updated_at = ? WHERE id = ? AND status = 'running'",
        [(o.status, o.retry_at, o.effect.error_code, o.error, json.dumps({**t.result, **o.result}),
          int(o.refund_attempt), at, t.id) for t, o in items])
    # The common case, ok (and named: update_name), one statement for the batch; the rest one by one.
    await tx.conn.executemany(
        "UPDATE accounts SET last_ok_at = ?, last_error_code = NULL, first_name = COALESCE(?, first_name),"
        " last_name = COALESCE(?, last_name) WHERE id = ?",
        [(at, *(o.effect.name or (None, None)), t.account_id) for t, o in items if rules.only_ok(o.effect)])
    for task, outcome in items:
        if not rules.only_ok(outcome.effect):
            await apply_account_effect(tx, task.account_id, outcome.effect)
    await release_locks(tx, [(t.account_id, t.holder) for t, _ in items])
    events = rules.setup_outcome_events(items)
    await tx.events_many(events)


class SetupStore(SessionStore):
    async def recover_setup(self, owner: str | None = None) -> int:
        """At start-up, under the data-dir lock: tasks a dead daemon left running go back to retry. ``owner``:
        only those of the accounts this node owns (after the database came back: the others' are theirs)."""
        async with self.tx() as tx:
            rows = list(await tx.fetchall(
                "SELECT id, account_id, task_type FROM account_tasks WHERE status = 'running'"
                + ("" if owner is None else " AND account_id IN (SELECT id FROM accounts WHERE owner = ?)"),
                () if owner is None else (owner,)))
            at = now()
            for row in rows:
                await tx.execute(f"UPDATE account_tasks SET status = 'retry', retry_at = ?, updated_at = ?, {INTERRUPTED}"
                                 " WHERE id = ?", (at, at, row["id"]))
                await release_lock(tx, row["account_id"], f"setup:{row['id']}")
                await tx.event("setup.recovered", f"{row['task_type']}: was running when the daemon stopped; retry",
                               account_id=row["account_id"], task_id=row["id"])
            return len(rows)

    async def dispatch_setup(self, required: Mapping[str, dict[str, Any]]) -> tuple[int, int]:
        """Create the required tasks (type → payload) for every account that should converge.

        Returns (tasks created, tasks due now). The unique key makes it idempotent. The accounts that lack one
        are found on the reader, in windows of ids; their tasks are created on the writer in bounded
        transactions (``rules.dispatch_batches``), type by type within one, accounts by id. A fleet with nothing
        to create costs the reads only; the dispatch event, with the total, is in the last transaction.
        """
        payloads = [(task_type, json.dumps(payload)) for task_type, payload in required.items()]
        chunks = rules.dispatch_batches(await self._missing_setup(list(required)), len(payloads))
        insert = ("INSERT OR IGNORE INTO account_tasks (account_id, task_type, payload_json, status, created_at,"
                  " updated_at) SELECT a.id, r.column1, r.column2, 'pending', ?, ?"
                  f" FROM (VALUES {', '.join(['(?, ?)'] * len(payloads))}) r"
                  " CROSS JOIN json_each(?) j CROSS JOIN accounts a ON a.id = j.value"
                  f" WHERE {ACCOUNT_SHOULD_CONVERGE}")
        created = 0
        for n, chunk in enumerate(chunks, 1):
            async with self.tx() as tx:
                at = now()
                [(top,)] = await tx.fetchall("SELECT COALESCE(MAX(id), 0) FROM account_tasks")
                created += (await tx.execute(insert, [at, at, *(v for pair in payloads for v in pair),
                                                      json.dumps(chunk)])).rowcount
                # the accounts that got a task: the new rows' (NOT INDEXED: by rowid, not a walk of an index)
                for row in await tx.fetchall("SELECT DISTINCT account_id FROM account_tasks NOT INDEXED WHERE id > ?",
                                             (top,)):
                    tx.touch(row[0])
                if n == len(chunks) and created:
                    await tx.event("setup.dispatched", f"dispatch created {created} setup tasks",
                                   data={"created": created})
        due = next(iter(await self.read(
            f"SELECT COUNT(*) FROM account_tasks t JOIN accounts a ON a.id = t.account_id"
            f" WHERE t.status IN ('pending', 'retry') AND (t.retry_at IS NULL OR t.retry_at <= :now)"
            f" AND {ACCOUNT_CAN_WORK} AND {LOCK_FREE}", {"now": now()})))[0]
        return created, due

    async def _missing_setup(self, task_types: list[str]) -> list[int]:
        """The accounts that should converge and lack one of these tasks, in id order: one read per window of
        ``rules.FIND_WINDOW`` ids."""
        if not task_types:
            return []
        top = next(iter(await self.read("SELECT COALESCE(MAX(id), 0) FROM accounts")))[0]
        types = json.dumps(task_types)
        missing: list[int] = []
        for low in range(0, top, rules.FIND_WINDOW):
            missing += [r[0] for r in await self.read(
                "SELECT a.id FROM accounts a WHERE a.id > ? AND a.id <= ? AND " + ACCOUNT_SHOULD_CONVERGE
                + " AND (SELECT COUNT(*) FROM account_tasks t WHERE t.account_id = a.id"
                " AND t.task_type IN (SELECT value FROM json_each(?))) < ? ORDER BY a.id",
                (low, low + rules.FIND_WINDOW, types, len(task_types)))]
        return missing

    async def claim_setup(self, task_types: Iterable[str], limit: int, lock_seconds: float, *,
                          owner: str | None = None) -> list[ClaimedTask]:
        """Up to ``limit`` eligible tasks of these types, at most one per account, each with its lock taken
        and the account's ownership epoch; ``owner``: of the accounts this node owns only."""
        async with self.tx() as tx:
            [claimed] = await claim(tx, [(list(task_types), limit)], lock_seconds, owner)
            return claimed

    async def finish_setup(self, task: ClaimedTask, outcome: SetupOutcome) -> None:
        await self.finish_setup_many([(task, outcome)])

    async def finish_setup_many(self, items: list[tuple[ClaimedTask, SetupOutcome]]) -> None:
        """Record outcomes, apply them to their accounts and release the locks: one transaction for all. A task
        claimed under an ownership epoch that is no longer its account's changes nothing: its account has
        another owner since, which put the task back to retry and may be running it again."""
        async with self.tx() as tx:
            await finish(tx, items)

    async def finish_and_claim_setup(self, items: list[tuple[ClaimedTask, SetupOutcome]],
                                     claims: Sequence[tuple[Sequence[str], int]], lock_seconds: float, *,
                                     owner: str | None = None) -> list[list[ClaimedTask]]:
        async with self.tx() as tx:
            await finish(tx, items)
            return await claim(tx, claims, lock_seconds, owner)

    async def retry_account_setup(self, account_id: int) -> int:
        """The operator's retry: failed and waiting tasks are due now, with their attempts reset; cooldowns stay."""
        await self.get_account(account_id)
        async with self.tx() as tx:
            cur = await tx.execute(
                "UPDATE account_tasks SET status = 'retry', retry_at = NULL, attempts = 0, updated_at = ?"
                " WHERE account_id = ? AND status IN ('failed', 'retry')", (now(), account_id))
            await tx.event("setup.retry_requested", f"operator retry: {cur.rowcount} setup tasks due now",
                           account_id=account_id, data={"tasks": cur.rowcount})
            return cur.rowcount

    async def setup_tasks(self, *, account_id: int | None = None, status: str | None = None,
                          limit: int = 1000) -> list[dict[str, Any]]:
        """Setup tasks with what their account and lock look like now (for ``blocked_by``)."""
        where: list[str] = []
        params: dict[str, Any] = {"now": now(), "limit": limit}
        if account_id is not None:
            where.append("t.account_id = :account_id")
            params["account_id"] = account_id
        if status is not None:
            where.append("t.status = :status")
            params["status"] = status
        rows = await self.read(
            "SELECT t.*, a.label, a.is_active, a.is_probe, a.disabled_at, a.cooldown_until, a.cooldown_reason,"
            " l.holder AS lock_holder FROM account_tasks t JOIN accounts a ON a.id = t.account_id"
            " LEFT JOIN account_locks l ON l.account_id = t.account_id AND l.expires_at > :now"
            + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY t.account_id, t.id LIMIT :limit",
            params)
        return [dict(r) for r in rows]
