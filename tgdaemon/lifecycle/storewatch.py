"""Whether the database can be reached, decided in one place, and the retrying while it cannot.

A store on a server (PostgreSQL) can lose it while the daemon runs: a restart, a failover, the network.
That is no reason to stop the daemon (a disk that cannot be written is, and still does: ``on_failure``).
The store tells of it through its ``on_down`` hook: the first operation that finds the server gone,
and the first transaction that succeeds again. Here that becomes what the rest of the daemon acts on:

- ``up``, an event the side tasks wait on: ``keep`` runs a side task's loop, and one that the lost
  database ended starts again once it is back (each loop keeps its state in its object, so a restart
  is its next round; setup's recovers the tasks it had running, which go back to retry as after a stop);
- the HTTP routes answer 503 at once while ``down`` (``refuse_while_down``), so no request waits on the
  database: the only thing that touches it meanwhile is the probe, an empty transaction at intervals
  that double from ``first`` to ``longest`` seconds, whose success ends the outage;
- what the operator sees: one WARNING line when the database goes, a reminder at most once per
  ``remind`` seconds, one INFO line when it is back (with how long it was gone); ``status``, ``/healthz``
  and the stream (``on_change``) read ``down``.

A SQLite store is never down: a file is not out of reach, and its errors are failures.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterator

from aiohttp import web

from tgdaemon.display import duration
from tgdaemon.errors import StoreDisconnected
from tgdaemon.httpjson import Handler
from tgdaemon.runtime import RUNTIME
from tgdaemon.store import Store
from tgdaemon.timeutil import iso, now
from tgdaemon.wire import StoreStatus

log = logging.getLogger(__name__)
FIRST_SECONDS = 0.5
LONGEST_SECONDS = 10.0
REMIND_SECONDS = 60.0
# Routes that answer while the database is down, from memory: the rest are refused with a 503.
ANSWER_WHILE_DOWN = frozenset({"/healthz", "/v1/status", "/v1/watch"})
CONTROL = "/v1/"  # the control API's: refused after its own peer check (on TCP they are not found, down or not)


def _length(seconds: float) -> str:
    return f"{seconds:.1f} s" if seconds < 60 else duration(seconds)


def backoff(first: float, longest: float) -> Iterator[float]:
    """The waits between probes: doubling from ``first``, never longer than ``longest``."""
    wait = first
    while True:
        yield wait
        wait = min(wait * 2, longest)


class StoreWatch:
    def __init__(self, store: Store, *, first: float = FIRST_SECONDS, longest: float = LONGEST_SECONDS,
                 remind: float = REMIND_SECONDS, clock: Callable[[], float] = time.monotonic) -> None:
        self.store = store
        self.first = first
        self.longest = longest
        self.remind = remind
        self.clock = clock
        self.up = asyncio.Event()
        self.up.set()
        self.down: str | None = None
        self.down_since: float | None = None  # wall clock, for status
        self.probes = 0  # made since the database was lost (the reminder says how many)
        self.on_change: Callable[[StoreStatus], None] | None = None
        self._lost = asyncio.Event()
        self._since = 0.0  # on ``clock``
        self._said = 0.0

    def attach(self) -> None:
        """From now on the store's ``on_down`` is this watch's (and a store already down is down here too)."""
        self.store.on_down = self.changed
        if self.store.down is not None:
            self.changed(self.store.down)

    def changed(self, why: str | None) -> None:
        """The store's ``on_down``: ``why`` when it lost its database, None when a transaction succeeded again."""
        if why is not None:
            if self.down is not None:
                return
            self.down, self.down_since, self._since = why, now(), self.clock()
            self._said, self.probes = self._since, 0
            self.up.clear()
            self._lost.set()
            log.warning("the database cannot be reached (%s); taking no work until it is back, trying again"
                        " every %g s to %g s", why, self.first, self.longest)
        else:
            if self.down is None:
                return
            gone = self.clock() - self._since
            self.down = self.down_since = None
            self.up.set()
            log.info("the database is back after %s; taking work again", _length(gone))
        if self.on_change is not None:
            self.on_change(self.status())

    def status(self) -> StoreStatus:
        return StoreStatus(kind=self.store.kind, url=self.store.url, down=self.down, down_since=iso(self.down_since))

    async def run(self) -> None:
        """The side task: while the database is down, probe it, waiting longer each time up to ``longest``."""
        while True:
            await self._lost.wait()
            for wait in backoff(self.first, self.longest):
                if self.down is None:
                    break
                await asyncio.sleep(wait)
                await self.probe()
                self._reminder(wait)
            self._lost.clear()

    async def probe(self) -> None:
        """An empty transaction: its commit is what clears the store's ``down`` (and so this watch's)."""
        self.probes += 1
        with contextlib.suppress(StoreDisconnected):
            async with self.store.tx():
                pass

    def _reminder(self, wait: float) -> None:
        at = self.clock()
        if self.down is not None and at - self._said >= self.remind:
            self._said = at
            log.warning("the database is still out of reach after %s and %d attempts (%s); trying again every"
                        " %g s", _length(at - self._since), self.probes, self.down, wait)

    async def keep(self, loop: Callable[[], Awaitable[None]]) -> None:
        """A side task's ``loop`` for as long as it runs; when the lost database ends it, again once it is back.
        Any other end is the loop's own, as before: the daemon stops on it."""
        while True:
            try:
                await loop()
                return
            except StoreDisconnected:
                await self.up.wait()


async def _refuse(request: web.Request) -> None:
    """A 503 at once (``errors_middleware`` adds Retry-After) rather than a request that waits on the database.
    The body is read first (at most ``MAX_BODY``): an answer sent while the client still writes it would end
    in a reset connection on the client's side rather than in the 503."""
    down = request.config_dict[RUNTIME].storewatch.down
    if down is not None and request.path not in ANSWER_WHILE_DOWN:
        await request.read()
        raise StoreDisconnected(f"the database cannot be reached ({down}); the daemon is retrying, try again later")


@web.middleware
async def refuse_while_down(request: web.Request, handler: Handler) -> web.StreamResponse:
    """The application's: the provider API, /metrics; not the control API's routes."""
    if not request.path.startswith(CONTROL):
        await _refuse(request)
    return await handler(request)


@web.middleware
async def refuse_control_while_down(request: web.Request, handler: Handler) -> web.StreamResponse:
    """The control API's, once its peer check has passed."""
    await _refuse(request)
    return await handler(request)
