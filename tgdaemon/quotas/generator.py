"""Generation (design 5.2): due quotas become pending tasks, each with an account reserved.

Posts snapshots are refreshed first, outside the generating transaction,
because a Telegram call must never hold the store's write lock; a quota whose
snapshot could not be refreshed is skipped this round with its error
recorded. The generating transaction itself is ``Store.generate``.
"""

from __future__ import annotations

import asyncio
import logging

from tgdaemon.classify import ErrorClass
from tgdaemon.config import Config
from tgdaemon.gateway.base import AccountRef, Gateway
from tgdaemon.quotas.leases import Leases, utc_day
from tgdaemon.quotas.probe import Probes
from tgdaemon.store import Generated, Generation, Store
from tgdaemon.timeutil import now

log = logging.getLogger(__name__)
NO_PROBE = "waiting for a posts snapshot: no probe account is ready"


class Generator:
    def __init__(self, cfg: Config, store: Store, gateway: Gateway, probes: Probes, leases: Leases) -> None:
        self.cfg = cfg.quotas
        self.store = store
        self.gateway = gateway
        self.probes = probes
        self.leases = leases
        self.wake = asyncio.Event()

    async def run(self) -> None:
        while True:
            await self.tick()
            self.wake.clear()
            try:
                await asyncio.wait_for(self.wake.wait(), self.cfg.generate_interval_seconds)
            except TimeoutError:
                pass

    async def tick(self) -> Generated:
        stale_before = now() - self.cfg.posts_snapshot_ttl_hours * 3600
        for quota in await self.store.stale_snapshots(stale_before, self.cfg.snapshots_per_tick):
            await self.refresh_posts(quota.id, quota.target, quota.last_n_posts)
        made = await self.store.generate(Generation(
            max_tasks=self.cfg.max_tasks_per_tick, lock_seconds=self.leases.lock_seconds(self.cfg.lease_seconds),
            daily_cap=self.cfg.daily_cap, day=utc_day(), stale_before=now() - self.cfg.posts_snapshot_ttl_hours * 3600,
            local=self.cfg.local_concurrency > 0))
        if made.tasks:
            self.leases.wake_local.set()
        return made

    async def refresh_posts(self, quota_id: int, target: str, n: int) -> None:
        """The channel's newest ``n`` post ids, read by a probe; a target error fails the inspection."""
        async def newest(account: AccountRef) -> list[int]:
            return await self.gateway.last_post_ids(account, await self.gateway.resolve_channel(account, target), n)

        read = await self.probes.read(f"posts:{quota_id}", newest)
        if read is None:
            await self.store.postpone_quota(quota_id, NO_PROBE, self.cfg.retry_seconds)
        elif read.error is None:
            await self.store.record_posts(quota_id, read.value or [])
        elif read.error.kind is ErrorClass.TARGET:
            await self.store.record_inspection(quota_id, ok=False, error=read.error.code)
        else:  # the probe's own trouble (it now cools down or is disabled): another probe, next round
            own = read.error.kind in (ErrorClass.WAIT, ErrorClass.SPAM_LIMITED, ErrorClass.DEAD_ACCOUNT)
            await self.store.postpone_quota(quota_id, f"posts snapshot failed: {read.error.code}",
                                            0 if own else self.cfg.retry_seconds)
