"""Inspection: before a quota makes any task, a probe account checks its target is a public channel.

A target problem (private, no such username, expired invite) fails the
inspection with its code, for good; anything else about the probe account (a
wait, a dead session, a transient error) is applied to that account by the
one policy, and the quota waits for the next round, saying why.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3

from tgdaemon.classify import ErrorClass, classify
from tgdaemon.config import Config
from tgdaemon.gateway.base import AccountRef, Gateway
from tgdaemon.policy import account_effect
from tgdaemon.store import Store
from tgdaemon.store.locks import release_lock, take_lock
from tgdaemon.store.setup import apply_account_effect
from tgdaemon.timeutil import now

log = logging.getLogger(__name__)
INTERVAL_SECONDS = 2.0
LOCK_SECONDS = 120.0
NO_PROBE = "waiting for inspection: no probe account is ready (add one with --probe)"


class Inspector:
    def __init__(self, cfg: Config, store: Store, gateway: Gateway) -> None:
        self.cfg = cfg
        self.store = store
        self.gateway = gateway
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
            probes = await self.store.probe_accounts()
            if not probes:
                await self.store.record_inspection(quota["id"], ok=None, error=NO_PROBE)
                continue
            await self._inspect(quota["id"], quota["target"], probes[0])
            done += 1
        return done

    async def _inspect(self, quota_id: int, target: str, probe: sqlite3.Row) -> None:
        account = AccountRef(probe["id"], probe["tg_user_id"], probe["phone"])
        holder = f"inspect:{quota_id}"
        async with self.store.tx() as tx:
            if not await take_lock(tx, account.id, holder, LOCK_SECONDS):
                return  # taken in the meantime: next round
            await tx.execute("UPDATE accounts SET last_used_at = ? WHERE id = ?", (now(), account.id))
        try:
            channel = await self.gateway.resolve_channel(account, target)
        except Exception as exc:
            error = classify(exc)
            async with self.store.tx() as tx:
                await apply_account_effect(tx, account.id, account_effect(error, self.cfg.limits, now()))
                await release_lock(tx, account.id, holder)
            if error.kind is ErrorClass.TARGET:
                await self.store.record_inspection(quota_id, ok=False, error=error.code)
            else:
                await self.store.record_inspection(
                    quota_id, ok=None, error=f"waiting for inspection: probe account {account.id} got {error.code}")
            return
        async with self.store.tx() as tx:
            await release_lock(tx, account.id, holder)
        await self.store.record_inspection(quota_id, ok=True, peer_id=channel.peer_id, title=channel.title)
