"""The store's deadlines and the wall clock (design 10): moved with a step seen while running, clamped at
start. The rules, and why, are in the SQLite twin (tgdaemon/store/sqlite/clock.py); times are epoch
seconds here too, so both are plain arithmetic on the same columns.
"""

from __future__ import annotations

from dataclasses import asdict

from tgdaemon.store.api import Maxima
from tgdaemon.store.postgres.core import PostgresCore, Tx, named
from tgdaemon.timeutil import now

WAITING_SETUP = "('pending', 'retry')"
OPEN_TASK = "('pending', 'leased')"


async def shift_deadlines(tx: Tx, step: float) -> dict[str, int]:
    """Move by ``step`` every deadline that is ahead on either side of the step; rows moved per kind. One
    passed on both sides stays as it is; one that a step back would put ahead again moves too: what was
    due stays due."""
    at = now()
    before = min(at, at - step)  # at - step: "now" on the clock before the step
    quotas = [r[0] for r in await tx.fetch(
        "UPDATE quotas SET next_run_at = next_run_at + $1 WHERE next_run_at > $2 RETURNING id", step, before)]
    snapshots = await tx.execute(  # the start of a TTL, not a deadline: its age is kept
        "UPDATE quotas SET posts_fetched_at = posts_fetched_at + $1 WHERE posts_fetched_at IS NOT NULL", step)
    accounts = [r[0] for r in await tx.fetch(
        "UPDATE accounts SET cooldown_until = cooldown_until + $1 WHERE cooldown_until > $2 RETURNING id",
        step, before)]
    locks = await tx.execute(
        "UPDATE account_locks SET expires_at = expires_at + $1 WHERE expires_at > $2", step, before)
    tasks = await tx.execute(
        "UPDATE tasks SET lease_expires_at = lease_expires_at + $1"
        f" WHERE status IN {OPEN_TASK} AND lease_expires_at > $2", step, before)
    retries = await tx.execute(
        "UPDATE account_tasks SET retry_at = retry_at + $1"
        f" WHERE status IN {WAITING_SETUP} AND retry_at > $2", step, before)
    for quota_id in quotas:
        tx.touch_quota(quota_id)
    for account_id in accounts:
        tx.touch(account_id)
    return {"quotas": len(quotas), "snapshots": snapshots, "cooldowns": len(accounts),
            "locks": locks, "tasks": tasks, "setup_retries": retries}


class ClockStore(PostgresCore):
    async def clamp_deadlines(self, m: Maxima) -> dict[str, int]:
        """At start-up: bound every deadline by its own length from now (see the SQLite twin's doc); rows
        changed per kind, with one event when any changed. A normal restart changes nothing."""
        async with self.tx() as tx:
            p = {"at": now(), **asdict(m)}
            cooldown_max = ("COALESCE(cooldown_seconds, CASE WHEN cooldown_reason = 'pace' THEN :pace::float8"
                            " ELSE :cooldown::float8 END)")
            lock_max = ("CASE WHEN holder LIKE 'setup:%' THEN :setup_lock::float8 WHEN holder LIKE 'probe:%'"
                        " THEN :probe_lock::float8 ELSE :quota_lock::float8 END")
            hold_max = "CASE status WHEN 'leased' THEN :lease::float8 ELSE :reservation::float8 END"

            async def run(sql: str) -> int:
                return await tx.execute(*_args(sql, p))

            quotas = [r[0] for r in await tx.fetch(*_args(
                "UPDATE quotas SET next_run_at = :at"
                " WHERE next_run_at > :at + GREATEST(interval_seconds, :quota_retry::float8) RETURNING id", p))]
            snapshots = await run(  # fetched "in the future": refreshed at the next round
                "UPDATE quotas SET posts_fetched_at = :at - :snapshot_ttl::float8 WHERE posts_fetched_at > :at")
            retries = await run(  # the index finds those beyond the backoff; few have a longer cooldown
                "UPDATE account_tasks SET retry_at = :at"
                f" WHERE status IN {WAITING_SETUP} AND retry_at > :at + :backoff::float8"
                " AND retry_at > :at + GREATEST(:backoff::float8, (SELECT CASE WHEN"
                f" cooldown_until IS NULL THEN 0 ELSE {cooldown_max} END FROM accounts a"
                " WHERE a.id = account_tasks.account_id))")
            accounts = [r[0] for r in await tx.fetch(*_args(
                f"UPDATE accounts SET cooldown_until = :at WHERE cooldown_until > :at + {cooldown_max} RETURNING id",
                p))]
            locks = await run(
                f"UPDATE account_locks SET expires_at = :at + {lock_max} WHERE expires_at > :at + {lock_max}")
            tasks = await run(
                f"UPDATE tasks SET lease_expires_at = :at + {hold_max}"
                f" WHERE status IN {OPEN_TASK} AND lease_expires_at > :at + {hold_max}")
            changed = {"quotas": len(quotas), "snapshots": snapshots, "cooldowns": len(accounts),
                       "locks": locks, "tasks": tasks, "setup_retries": retries}
            for quota_id in quotas:
                tx.touch_quota(quota_id)
            for account_id in accounts:
                tx.touch(account_id)
            if any(changed.values()):
                await tx.event("clock.clamped", f"{sum(changed.values())} stored times lay further ahead than their"
                               " own length (the clock was set back while the daemon was down): bounded",
                               data=changed)
            return changed


def _args(sql: str, params: dict[str, float]) -> tuple[str, ...]:
    text, values = named(sql, params)
    return (text, *values)
