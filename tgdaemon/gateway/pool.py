"""One ``TelegramClient`` per account, connected lazily, at most ``max_connected`` at once.

Never two clients on one account: a second live connection on the same auth
key gets the key revoked by Telegram. Creation is serialised per account, the
client is kept for the daemon's life, and only its connection comes and goes:
least recently used first when the limit is reached, and after
``idle_seconds`` without a call. A client with a call in flight is never
disconnected.

Before each connect the gateway's ``prepare`` sees the client: it may refuse the connect (the account's
proxy is dead) or hand back a client built anew (its proxy changed since), so an account's address only
ever changes between two connections, never under one. ``retire`` asks for that next connection soon: the
client is disconnected as soon as no call of it is in flight (at once, at its next call, or at the next
reap, whichever comes first).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable

from telethon import TelegramClient

log = logging.getLogger(__name__)


class ClientPool:
    def __init__(self, make: Callable[[int], Awaitable[TelegramClient]], *, max_connected: int,
                 idle_seconds: float, connect_timeout: float, check: Callable[[int], None] = lambda _: None,
                 seconds_left: Callable[[], float] = lambda: math.inf,
                 prepare: Callable[[int, TelegramClient], Awaitable[TelegramClient]] | None = None) -> None:
        self._make = make
        self._prepare = prepare
        self._check = check  # raises when this process may not act as the account now (its node's gate)
        self._seconds_left = seconds_left  # until the node fences itself
        self.max_connected = max_connected
        self.idle_seconds = idle_seconds
        self.connect_timeout = connect_timeout
        self._clients: OrderedDict[int, TelegramClient] = OrderedDict()  # least recently used first
        self._last_used: dict[int, float] = {}
        self._in_flight: dict[int, int] = {}
        self._locks: dict[int, asyncio.Lock] = {}
        self._retiring: set[int] = set()  # disconnect once idle (reap_idle), whatever idle_seconds says

    def connected(self) -> int:
        return sum(1 for c in self._clients.values() if c.is_connected())

    @contextlib.asynccontextmanager
    async def use(self, account_id: int) -> AsyncIterator[TelegramClient]:
        """The account's client, connected, for the duration of one call.

        The gate is asked on entry and again just before connecting (the lock may have been waited for):
        a client is never connected for an account its node is letting go of."""
        self._check(account_id)
        lock = self._locks.setdefault(account_id, asyncio.Lock())
        async with lock:
            self._check(account_id)
            client = self._clients.get(account_id)
            if client is None:
                client = self._clients[account_id] = await self._make(account_id)
            elif account_id in self._retiring and not self._in_flight.get(account_id):
                await self._disconnect(account_id, "retired")  # its calls are done: the next connects anew
            self._clients.move_to_end(account_id)
            self._in_flight[account_id] = self._in_flight.get(account_id, 0) + 1
            try:
                if not client.is_connected():
                    await self._make_room()
                    self._check(account_id)
                    self._retiring.discard(account_id)
                    if self._prepare is not None:
                        client = self._clients[account_id] = await self._prepare(account_id, client)
                    # Never past the node's fence: a connect begun just before it would outlive the lease (the
                    # fence's let-go waits for this lock), and the next owner would connect beside it.
                    await asyncio.wait_for(client.connect(), min(self.connect_timeout, self._seconds_left()))
            except BaseException:
                self._done(account_id)
                # A connect cut short can leave the sender up without InitConnection sent: start over next time.
                with contextlib.suppress(Exception):
                    await asyncio.shield(client.disconnect())
                raise
        try:
            yield client
        finally:
            self._done(account_id)

    def _done(self, account_id: int) -> None:
        self._in_flight[account_id] -= 1
        self._last_used[account_id] = time.monotonic()

    async def _make_room(self) -> None:
        connected = [aid for aid, c in self._clients.items() if c.is_connected() and not self._in_flight.get(aid)]
        excess = self.connected() - (self.max_connected - 1)
        for account_id in connected[:max(0, excess)]:
            await self._disconnect(account_id, "least recently used")

    async def retire(self, account_id: int) -> None:
        """The account's next call should connect anew (its proxy changed): disconnect it now if no call of
        it is in flight, else at the first reap after they end. Nothing in flight is cut short."""
        client = self._clients.get(account_id)
        if client is None or not client.is_connected():
            return
        if self._in_flight.get(account_id):
            self._retiring.add(account_id)
            return
        async with self._locks.setdefault(account_id, asyncio.Lock()):
            if not self._in_flight.get(account_id):
                await self._disconnect(account_id, "retired")

    async def reap_idle(self) -> int:
        """Disconnect clients idle for longer than ``idle_seconds``, and retired ones with no call in flight;
        returns how many."""
        cutoff = time.monotonic() - self.idle_seconds
        idle = [aid for aid, c in self._clients.items()
                if c.is_connected() and not self._in_flight.get(aid)
                and (self._last_used.get(aid, 0) < cutoff or aid in self._retiring)]
        self._retiring.difference_update(idle)
        for account_id in idle:
            await self._disconnect(account_id, "idle")
        return len(idle)

    async def forget(self, account_id: int) -> None:
        """Drop an account's client (disabled, its session replaced, or its node letting it go). Under the
        account's lock: a connect under way finishes first, then is undone, rather than outliving this."""
        async with self._locks.setdefault(account_id, asyncio.Lock()):
            await self._disconnect(account_id, "forgotten")
            self._clients.pop(account_id, None)

    async def _disconnect(self, account_id: int, why: str) -> None:
        client = self._clients.get(account_id)
        if client is not None and client.is_connected():
            log.debug("account %s: disconnecting (%s)", account_id, why)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(client.disconnect(), 5)

    async def close(self) -> None:
        await asyncio.gather(*(self._disconnect(aid, "shutdown") for aid in list(self._clients)))
        self._clients.clear()
