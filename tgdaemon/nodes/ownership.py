"""This node's accounts: taken when the balancer assigns them here, kept in the gate, let go on a move.

The database is the truth (``owned_accounts``); the gate is what this process acts on, so every change the database shows is made to the gate at once: a new account or a new epoch opens
it, an account that is no longer this node's (its lease ran out while this node could not renew) is
dropped and its client let go, and a disabled one's client is let go (it stays owned: it may be enabled
again). An account the balancer assigned elsewhere is released in order (design 9, "Release on move"):
the gate closes for it at once, the work under way as it gets a bounded time to end, its client is let
go, and only then is the ownership given up in the database, so the next owner never connects it while
this one still does. A release and a reading of the database's list never interleave (one lock), so a
list read before a release cannot put the released account back into the gate.

A heartbeat reads the whole list only when the database's digest of it (count and checksum,
``owned_digest``: one aggregate in the database) differs from the digest of the list last applied, or
once every ``FULL_EVERY`` heartbeats whatever it says: at 100,000 accounts the whole list held the event
loop for most of a second, every heartbeat, to find nothing new.
"""

from __future__ import annotations

import asyncio
import logging

from tgdaemon.errors import StoreDisconnected
from tgdaemon.gateway.base import Gateway
from tgdaemon.nodes.gate import NodeGate
from tgdaemon.store.api import OwnedAccount, Store
from tgdaemon.store.nodes import owned_digest

log = logging.getLogger(__name__)
ACQUIRE_BATCH = 2000  # accounts taken in one transaction at most
ACQUIRE_BATCHES = 5  # transactions per heartbeat at most: 10,000 accounts
START_BATCHES = 1000  # at start, before any work: every account assigned here (2 million), however long it takes
FULL_EVERY = 15  # heartbeats between whole reads even while the digest is unchanged (30 s by default)


class Ownership:
    def __init__(self, store: Store, gateway: Gateway, gate: NodeGate, name: str, incarnation: str, *,
                 max_accounts: int, release_wait: float, takeover_grace: float = 0.0) -> None:
        self.store = store
        self.gateway = gateway
        self.gate = gate
        self.name = name
        self.incarnation = incarnation
        self.max_accounts = max_accounts
        self.release_wait = release_wait
        self.takeover_grace = takeover_grace  # past a lease that was not let go of (nodes.takeover_grace_seconds)
        self._lock = asyncio.Lock()
        self._disabled: set[int] = set()
        self._releasing: set[int] = set()
        self._releases: set[asyncio.Task[None]] = set()
        self._failed: BaseException | None = None
        self._applied: tuple[int, int] | None = None  # the digest of the list last applied; None: read it all
        self._unread = 0  # heartbeats since the last whole read

    @property
    def count(self) -> int:
        return len(self.gate.owned())

    async def acquire(self, batches: int = ACQUIRE_BATCHES) -> int:
        """The accounts assigned here that no live lease holds become this node's (up to its cap), in
        transactions of bounded size, at most ``batches`` of them (a heartbeat must stay short)."""
        taken = 0
        for _ in range(batches):
            limit = ACQUIRE_BATCH
            if self.max_accounts:
                limit = min(limit, self.max_accounts - self.count - taken)
            if limit <= 0:
                break
            batch = len(await self.store.acquire_accounts(self.name, self.incarnation, limit,
                                                            grace=self.takeover_grace))
            taken += batch
            if batch < limit:
                break
        if taken:
            log.info("node %s took %d accounts", self.name, taken)
        return taken

    async def refresh(self) -> None:
        """The gate made what the database says this node owns; releases started for the moved ones."""
        async with self._lock:
            if self._applied is not None and self._unread < FULL_EVERY:
                if await self.store.owned_digest(self.name) == self._applied:
                    self._unread += 1
                    return
            owned = await self.store.owned_accounts(self.name)
            let_go = self._apply(owned)
            self._applied, self._unread = (None if self.gate.fenced else owned_digest(owned, self.name)), 0
        if let_go:
            await self.gateway.let_go(let_go)

    def _apply(self, owned: list[OwnedAccount]) -> list[int]:
        if self.gate.fenced:
            return []  # fenced while reading: nothing is opened from a list that may be stale by now
        before = self.gate.owned()
        seen: set[int] = set()
        moving: list[OwnedAccount] = []
        let_go: list[int] = []
        for account in owned:
            seen.add(account.id)
            if account.id in self._releasing:
                continue
            self.gate.own(account.id, account.epoch)
            if account.assigned != self.name:
                self.gate.close(account.id)  # no new call from now on
                moving.append(account)
            if account.disabled and account.id in before and account.id not in self._disabled:
                let_go.append(account.id)
        self._disabled = {account.id for account in owned if account.disabled}
        lost = [account_id for account_id in before if account_id not in seen and account_id not in self._releasing]
        if lost:
            log.warning("node %s: %d accounts are no longer its own (their lease ran out); letting them go",
                        self.name, len(lost))
            self.gate.drop(lost)
            let_go.extend(lost)
        if moving:
            self._releasing.update(account.id for account in moving)
            task = asyncio.create_task(self._release(moving), name=f"node release of {len(moving)}")
            self._releases.add(task)
            task.add_done_callback(self._released)
        return let_go

    async def _release(self, accounts: list[OwnedAccount]) -> None:
        ids = [account.id for account in accounts]
        try:
            busy = await self.gate.settled(ids, self.release_wait)
            if busy:
                log.warning("node %s: work as %d moving accounts was still under way after %g s; letting them go",
                            self.name, len(busy), self.release_wait)
            await self.gateway.let_go(ids)
            async with self._lock:
                released = await self.store.release_accounts(self.name, [(a.id, a.epoch) for a in accounts])
                self.gate.drop(ids)
            log.info("node %s released %d accounts to other nodes", self.name, released)
        except StoreDisconnected:
            pass  # still this node's in the database, closed in the gate: the next heartbeat tries again
        finally:
            self._releasing.difference_update(ids)
            self._applied = None  # released or not, the next heartbeat reads it all again

    def _released(self, task: asyncio.Task[None]) -> None:
        self._releases.discard(task)
        if not task.cancelled() and task.exception() is not None and self._failed is None:
            self._failed = task.exception()

    def check(self) -> None:
        """A release that failed for another reason than the database is a bug: the daemon stops on it."""
        if self._failed is not None:
            raise RuntimeError(f"releasing accounts failed: {self._failed!r}")

    def fence(self) -> list[int]:
        """Closed for every account, nothing owned in the gate: the accounts whose clients must go now."""
        self._disabled.clear()
        self._applied = None
        return self.gate.fence()

    async def stop(self) -> list[int]:
        """No more releases (the node's stop releases everything at once): the accounts to let go of."""
        for task in self._releases:
            task.cancel()
        if self._releases:
            await asyncio.gather(*self._releases, return_exceptions=True)
        return self.fence()
