"""The store's deadlines and the wall clock (design 10): moved with a step seen while running, clamped at start.

Every deadline is a wall-clock time: a quota's next run, an account's cooldown,
a lock, a task's lease or reservation, a setup task's retry. A step of the wall
clock by X puts each of them X further away (back: work stalls for X) or X
nearer (forward: live leases expire). ``shift_deadlines`` moves them by X
too, so each keeps exactly the length it had left. A step while the daemon
was down cannot always be measured (after a reboot); ``clamp_deadlines`` then
bounds each by its own length: a wait (next run, cooldown, retry) ending further ahead than
it can last is due now, a hold (lock, lease, reservation) lasts at most its
own length from now, so whoever is working on it keeps it.
"""

from __future__ import annotations

from dataclasses import asdict

from tgdaemon.store.api import Maxima
from tgdaemon.store.sqlite.core import StoreCore, Tx
from tgdaemon.timeutil import now

WAITING_SETUP = "('pending', 'retry')"
OPEN_TASK = "('pending', 'leased')"




async def shift_deadlines(tx: Tx, step: float) -> dict[str, int]:
    """Move by ``step`` every deadline that is ahead on either side of the step; rows moved per kind. One
    passed on both sides stays as it is; one that a step back would put ahead again moves too: what was
    due stays due."""
    at = now()
    params = {"step": step, "before": min(at, at - step)}  # at - step: "now" on the clock before the step
    quotas = [r[0] for r in await tx.fetchall(
        "UPDATE quotas SET next_run_at = next_run_at + :step WHERE next_run_at > :before RETURNING id", params)]
    snapshots = await tx.execute(  # the start of a TTL, not a deadline: its age is kept
        "UPDATE quotas SET posts_fetched_at = posts_fetched_at + :step WHERE posts_fetched_at IS NOT NULL", params)
    accounts = [r[0] for r in await tx.fetchall(
        "UPDATE accounts SET cooldown_until = cooldown_until + :step WHERE cooldown_until > :before RETURNING id",
        params)]
    locks = await tx.execute(
        "UPDATE account_locks SET expires_at = expires_at + :step WHERE expires_at > :before", params)
    tasks = await tx.execute(
        "UPDATE tasks SET lease_expires_at = lease_expires_at + :step"
        f" WHERE status IN {OPEN_TASK} AND lease_expires_at > :before", params)
    retries = await tx.execute(
        "UPDATE account_tasks SET retry_at = retry_at + :step"
        f" WHERE status IN {WAITING_SETUP} AND retry_at > :before", params)
    for quota_id in quotas:
        tx.touch_quota(quota_id)
    for account_id in accounts:
        tx.touch(account_id)
    return {"quotas": len(quotas), "snapshots": snapshots.rowcount, "cooldowns": len(accounts),
            "locks": locks.rowcount, "tasks": tasks.rowcount, "setup_retries": retries.rowcount}


class ClockStore(StoreCore):
    async def clamp_deadlines(self, m: Maxima) -> dict[str, int]:
        """At start-up: bound every deadline by its own length from now (see the module's doc); rows
        changed per kind, with one event when any changed. A normal restart changes nothing."""
        async with self.tx() as tx:
            at = now()
            p = {"at": at, **asdict(m)}
            cooldown_max = ("COALESCE(cooldown_seconds, CASE WHEN cooldown_reason = 'pace' THEN :pace"
                            " ELSE :cooldown END)")
            lock_max = ("CASE WHEN holder LIKE 'setup:%' THEN :setup_lock WHEN holder LIKE 'probe:%'"
                        " THEN :probe_lock ELSE :quota_lock END")
            hold_max = "CASE status WHEN 'leased' THEN :lease ELSE :reservation END"
            quotas = [r[0] for r in await tx.fetchall(
                "UPDATE quotas SET next_run_at = :at"
                " WHERE next_run_at > :at + MAX(interval_seconds, :quota_retry) RETURNING id", p)]
            snapshots = await tx.execute(  # fetched "in the future": refreshed at the next round
                "UPDATE quotas SET posts_fetched_at = :at - :snapshot_ttl WHERE posts_fetched_at > :at", p)
            retries = await tx.execute(  # the index finds those beyond the backoff; few have a longer cooldown
                "UPDATE account_tasks SET retry_at = :at"
                f" WHERE status IN {WAITING_SETUP} AND retry_at > :at + :backoff"
                " AND retry_at > :at + MAX(:backoff, (SELECT CASE WHEN"
                f" cooldown_until IS NULL THEN 0 ELSE {cooldown_max} END FROM accounts a"
                " WHERE a.id = account_tasks.account_id))", p)
            accounts = [r[0] for r in await tx.fetchall(
                f"UPDATE accounts SET cooldown_until = :at WHERE cooldown_until > :at + {cooldown_max} RETURNING id",
                p)]
            locks = await tx.execute(
                f"UPDATE account_locks SET expires_at = :at + {lock_max} WHERE expires_at > :at + {lock_max}", p)
            tasks = await tx.execute(
                f"UPDATE tasks SET lease_expires_at = :at + {hold_max}"
                f" WHERE status IN {OPEN_TASK} AND lease_expires_at > :at + {hold_max}", p)
            changed = {"quotas": len(quotas), "snapshots": snapshots.rowcount, "cooldowns": len(accounts),
                       "locks": locks.rowcount, "tasks": tasks.rowcount, "setup_retries": retries.rowcount}
            for quota_id in quotas:
                tx.touch_quota(quota_id)
            for account_id in accounts:
                tx.touch(account_id)
            if any(changed.values()):
                await tx.event("clock.clamped", f"{sum(changed.values())} stored times lay further ahead than their"
                               " own length (the clock was set back while the daemon was down): bounded",
                               data=changed)
            return changed
