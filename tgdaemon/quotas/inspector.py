"""Inspection: before a quota makes any task, a probe account checks its target is a public channel.

A target problem (private, no such username, expired invite) fails the
inspection with its code, for good; anything else about the probe account (a
wait, a dead session, a transient error) is applied to that account by the
one policy, and the quota waits for the next round, saying why. It runs on every node, each with the
probes it owns (reading twice is harmless, recording is idempotent).
"""

from __future__ import annotations

import asyncio
import logging

from tgdaemon.classify import ErrorClass
from tgdaemon.gateway.base import Gateway
from tgdaemon.quotas.probe import Probes
from tgdaemon.store import Store

log = logging.getLogger(__name__)
INTERVAL_SECONDS = 2.0
NO_PROBE = "waiting for inspection: no probe account is ready (add one with --probe)"


class Inspector:
    def __init__(self, store: Store, gateway: Gateway, probes: Probes) -> None:
        self.store = store
        self.gateway = gateway
        self.probes = probes
        self.wake = asyncio.Event()

    async def run(self) -> None:
        while True:
            await self.inspect_pending()
            self.wake.clear()
            try:
                await asyncio.wait_for(self.wake.wait(), INTERVAL_SECONDS)
            except TimeoutError:
                pass

    async def inspect_pending(self) -> int:
        """One round: each uninspected quota gets a probe account, while there are probes ready."""
        done = 0
        for quota in await self.store.uninspected_quotas():
            target = quota.target
            read = await self.probes.read(f"inspect:{quota.id}",
                                          lambda account: self.gateway.resolve_channel(account, target))
            if read is None:
                if await self.probes.none_in_fleet():  # else another node's probe inspects it
                    await self.store.record_inspection(quota.id, ok=None, error=NO_PROBE)
            elif read.error is None and read.value is not None:
                await self.store.record_inspection(quota.id, ok=True, peer_id=read.value.peer_id,
                                                   title=read.value.title)
                done += 1
            elif read.error is not None and read.error.kind is ErrorClass.TARGET:
                await self.store.record_inspection(quota.id, ok=False, error=read.error.code)
                done += 1
            elif read.error is not None:
                await self.store.record_inspection(
                    quota.id, ok=None,
                    error=f"waiting for inspection: probe account {read.account_id} got {read.error.code}")
        return done
