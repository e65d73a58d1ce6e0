"""Generation (design 5.2): due quotas become pending tasks, each with an account reserved.

Posts snapshots are refreshed first, outside the generating transaction,
because a Telegram call must never hold the store's write lock; a quota whose
snapshot could not be refreshed is skipped this round with its error
recorded. The generating transaction itself is ``Store.generate``.

Several nodes (design 9): snapshots are refreshed on every node with its own probes (``run_refresh``:
recording is idempotent), generation runs on the leader only (``run_generate``), fenced by its epoch.
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

    async def run_generate(self, leader_epoch: int | None) -> None:
        """The leader's side task: due quotas become tasks every interval (sooner once snapshots are fresh)."""
        while True:
            await self.generate(leader_epoch)
            self.wake.clear()
            try:
                await asyncio.wait_for(self.wake.wait(), self.cfg.generate_interval_seconds)
            except TimeoutError:
                pass

    async def run_refresh(self) -> None:
        """Every node's side task: stale posts snapshots read with this node's probes."""
        while True:
            if await self.refresh():
                self.wake.set()  # generation need not wait for its next interval
            await asyncio.sleep(self.cfg.generate_interval_seconds)

    async def tick(self) -> Generated:
        """Both steps, as one daemon on its own makes them."""
        await self.refresh()
        return await self.generate(None)

    async def refresh(self) -> int:
        """The stale snapshots refreshed (one round, at most ``snapshots_per_tick``); how many were looked at."""
        stale_before = now() - self.cfg.posts_snapshot_ttl_hours * 3600
        stale = await self.store.stale_snapshots(stale_before, self.cfg.snapshots_per_tick)
        for quota in stale:
            await self.refresh_posts(quota.id, quota.target, quota.last_n_posts)
        return len(stale)

    async def generate(self, leader_epoch: int | None) -> Generated:
        made = await self.store.generate(Generation(
            max_tasks=self.cfg.max_tasks_per_tick, lock_seconds=self.leases.lock_seconds(self.cfg.lease_seconds),
            daily_cap=self.cfg.daily_cap, day=utc_day(), stale_before=now() - self.cfg.posts_snapshot_ttl_hours * 3600,
            local=self.cfg.local_concurrency > 0, leader_epoch=leader_epoch))
        if made.tasks:
            self.leases.wake_local.set()
        return made

    async def refresh_posts(self, quota_id: int, target: str, n: int) -> None:
        """The channel's newest ``n`` post ids, read by a probe; a target error fails the inspection."""
        async def newest(account: AccountRef) -> list[int]:
            return await self.gateway.last_post_ids(account, await self.gateway.resolve_channel(account, target), n)

        read = await self.probes.read(f"posts:{quota_id}", newest)
        if read is None:
            if await self.probes.none_in_fleet():  # else another node's probe reads it
                await self.store.postpone_quota(quota_id, NO_PROBE, self.cfg.retry_seconds)
        elif read.error is None:
            await self.store.record_posts(quota_id, read.value or [])
        elif read.error.kind is ErrorClass.TARGET:
            await self.store.record_inspection(quota_id, ok=False, error=read.error.code)
        else:  # the probe's own trouble (it now cools down or is disabled): another probe, next round
            own = read.error.kind in (ErrorClass.WAIT, ErrorClass.SPAM_LIMITED, ErrorClass.DEAD_ACCOUNT,
                                      ErrorClass.PROXY)
            await self.store.postpone_quota(quota_id, f"posts snapshot failed: {read.error.code}",
                                            0 if own else self.cfg.retry_seconds)
