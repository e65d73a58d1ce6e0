"""What the simulated Telegram's processes share through the store: connections, and the profiles behind them.

Several daemons on one store run one simulated world (design 9). The accounts and channels follow from the
seed, the same in every process; what changes lives in the store, under the server's rules
(tgdaemon/store/simrules.py):

* a **connection** opens on an account's first call in this process, and again after it was closed: by
  ``forget`` or ``close``, after ``idle_seconds`` without a call, by the server (no ping for
  ``server_timeout``), or with the process (its pid gone: ``kill -9`` included). Opening while another
  live connection of the account exists raises ``AuthKeyDuplicatedError``, as Telegram answers a second
  connection on one auth key; the classification takes the account for dead, so an overlap is seen.
* the account's **profile** is read from the store when its connection opens and written through on
  every change; while it is connected here, no other process can change it.
* a connection **closes** in this process at once, whatever the store: ``forget`` while the store is away
  (a node that fences itself lets go of every client then) does disconnect. The server's record of it is
  closed as soon as the store takes it: then, or with the next ping round or open. Until then the record
  shows it open, as the server would a client that vanished without a word, and this process's own next
  open of the account writes the close first, so it never finds itself holding the account.
* a **ping** of every open connection, every third of ``server_timeout``, in one batch, keeps them seen.
  A call costs no store round trip: this process trusts a connection until ``server_timeout`` after the
  last ping it sent that the server answered (its own steady clock; the server saw the ping later
  still), so it never calls through a connection the server may have closed.

A holder's liveness is ``os.kill(pid, 0)``: every process of one simulated world runs on one host.

Opens and saves are group-committed (tgdaemon/groupcommit.py): those that arrive while a batch is being written
go in the next one, one transaction for many accounts, each caller still answered only once its own is written.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from telethon import errors

from tgdaemon.errors import StoreError
from tgdaemon.groupcommit import GroupCommit
from tgdaemon.store import Store
from tgdaemon.store.api import SimConnection
from tgdaemon.timeutil import steady

log = logging.getLogger(__name__)
IDLE_CHECK_MAX_SECONDS = 30.0


def running(pids: list[int]) -> set[int]:
    """The pids among ``pids`` of processes that exist (another user's too). A zombie exists until reaped."""
    alive = set()
    for pid in pids:
        if pid <= 0:  # 0 and -n would name process groups
            continue
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            continue
        except PermissionError:
            pass
        alive.add(pid)
    return alive


@dataclass(slots=True)
class Link:
    """This process's connection of one account."""

    id: int  # its sim_connections record
    seen: float  # steady time the last ping the server answered (or the open) was sent
    used: float  # steady time of the last call
    broken: bool = False  # a write through it failed: opened anew (the profile read again) at the next call


class SharedWorld:
    def __init__(self, store: Store, *, node: str, pid: int, server_timeout: float, idle_seconds: float,
                 live_pids: Callable[[list[int]], set[int]] = running) -> None:
        self.store = store
        self.node = node
        self.pid = pid
        self.server_timeout = server_timeout
        self.idle_seconds = idle_seconds
        self.live_pids = live_pids
        self._links: dict[int, Link] = {}  # by tg_user_id
        # Connections closed here that the record does not show closed yet: id -> (tg_user_id, why).
        self._unrecorded: dict[int, tuple[int, str]] = {}
        self._locks: dict[int, asyncio.Lock] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._opens = GroupCommit(self._open_many, "simulator opens")
        self._saves = GroupCommit(self._save_many, "simulator saves")
        self._abandoned: set[asyncio.Future[SimConnection | int | Exception]] = set()  # opens nobody waits for

    def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._every(self.server_timeout / 3, self.ping), name="simulator pings"),
            asyncio.create_task(self._every(min(IDLE_CHECK_MAX_SECONDS, self.idle_seconds / 2), self.reap_idle),
                                name="simulator idle disconnect"),
        ]

    async def _every(self, seconds: float, step: Callable[[], Awaitable[object]]) -> None:
        while True:
            await asyncio.sleep(seconds)
            try:
                await step()
            except Exception as exc:  # the store away, say: the next round tries again
                log.warning("simulator: %s failed: %s", getattr(step, "__name__", "a step"), exc)

    def connected(self, tg_user_id: int) -> bool:
        """Whether a call may go out on this process's connection now (and it counts as used)."""
        link = self._links.get(tg_user_id)
        if link is None or link.broken:
            return False
        at = steady()
        if at - link.seen >= self.server_timeout:
            return False
        link.used = at
        return True

    async def connect(self, tg_user_id: int, allowed: Callable[[], None],
                      install: Callable[[str | None], None]) -> None:
        """The account's connection, opened when there is none: ``allowed()`` is asked first (it raises
        when this process may no longer act as the account), ``install`` gets the stored profile."""
        if self.connected(tg_user_id):
            return
        async with self._locks.setdefault(tg_user_id, asyncio.Lock()):
            if self.connected(tg_user_id):
                return
            allowed()
            if (stale := self._links.pop(tg_user_id, None)) is not None:
                # Timed out as this process counts (or broken): the server may not have closed it yet.
                self._unrecorded[stale.id] = (tg_user_id, "reconnect")
            await self._record_closes(tg_user_id)  # its own earlier connection is not a second holder
            sent = steady()
            opened = await self._open(tg_user_id)
            if isinstance(opened, SimConnection):
                log.info("simulator: account %s is connected by %s (pid %s): AUTH_KEY_DUPLICATED", tg_user_id,
                         opened.node, opened.pid)
                raise errors.AuthKeyDuplicatedError(request=None)
            try:
                install(await self.store.sim_profile(tg_user_id))
            except BaseException:
                self._unrecorded[opened] = (tg_user_id, "error")
                with contextlib.suppress(Exception):
                    await self._record_closes(tg_user_id)
                raise
            self._links[tg_user_id] = Link(opened, sent, steady())

    async def _open(self, tg_user_id: int) -> SimConnection | int:
        """The open, in a batch with others. A caller cancelled meanwhile leaves its open to finish; the connection
        it made is then closed on the record ("error"), as a cancelled transaction would have made none."""
        opening = asyncio.ensure_future(self._opens(tg_user_id))
        try:
            opened = await asyncio.shield(opening)
        except asyncio.CancelledError:
            self._abandoned.add(opening)
            opening.add_done_callback(lambda done: self._drop(tg_user_id, done))
            raise
        if isinstance(opened, Exception):
            raise opened
        return opened

    def _drop(self, tg_user_id: int, opening: asyncio.Future[SimConnection | int | Exception]) -> None:
        self._abandoned.discard(opening)
        if not opening.cancelled() and opening.exception() is None and isinstance(opened := opening.result(), int):
            self._unrecorded[opened] = (tg_user_id, "error")

    async def _open_many(self, tg_user_ids: list[int]) -> list[SimConnection | int | Exception]:
        return await self.store.sim_open_many(tg_user_ids, self.node, self.pid, self.live_pids, self.server_timeout)

    async def _save_many(self, profiles: list[tuple[int, str]]) -> list[Exception | None]:
        return await self.store.sim_save_profiles(profiles)

    async def save(self, tg_user_id: int, profile: str) -> None:
        """Write a changed profile through; the change is the server's only once this returns."""
        if not self.connected(tg_user_id):  # closed meanwhile (forgotten, timed out): the answer never came
            raise errors.RpcCallFailError(request=None)
        try:
            if (failed := await self._saves((tg_user_id, profile))) is not None:
                raise failed
        except BaseException:
            if (link := self._links.get(tg_user_id)) is not None:
                link.broken = True  # what this process holds may differ from the store's: read it again
            raise

    async def close(self, tg_user_id: int, why: str) -> None:
        """Disconnected now; on the record now, or later when the store is away (see the module's docstring)."""
        async with self._locks.setdefault(tg_user_id, asyncio.Lock()):
            if (link := self._links.pop(tg_user_id, None)) is not None:
                self._unrecorded[link.id] = (tg_user_id, why)
                with contextlib.suppress(StoreError, TimeoutError):
                    await self._record_closes(tg_user_id)

    async def _record_closes(self, tg_user_id: int | None = None) -> None:
        """The closes the record does not have yet (of one account, or all), one batch per reason; raises when
        the store is away."""
        by_why: dict[str, list[int]] = {}
        for connection_id, (uid, why) in self._unrecorded.items():
            if tg_user_id is None or uid == tg_user_id:
                by_why.setdefault(why, []).append(connection_id)
        for why, ids in by_why.items():
            await self.store.sim_close(ids, why)
            for connection_id in ids:
                self._unrecorded.pop(connection_id, None)

    async def ping(self) -> None:
        """One batch of pings; a connection the server closed is let go (the next call opens anew). The closes
        the store could not take before go first."""
        await self._record_closes()
        links = [(uid, link) for uid, link in self._links.items() if not link.broken]
        if not links:
            return
        sent = steady()
        closed = set(await self.store.sim_keepalive([link.id for _, link in links], self.server_timeout))
        for uid, link in links:
            if self._links.get(uid) is not link:
                continue  # closed or opened anew meanwhile
            if link.id in closed:
                del self._links[uid]
            else:
                link.seen = sent

    async def reap_idle(self) -> int:
        """Close the connections idle for ``idle_seconds``, in one batch; how many."""
        cutoff = steady() - self.idle_seconds
        idle = [(uid, link) for uid, link in self._links.items() if link.used < cutoff]
        for uid, link in idle:
            del self._links[uid]
            self._unrecorded[link.id] = (uid, "idle")
        await self._record_closes()
        return len(idle)

    async def stop(self) -> None:
        """At shutdown: the background work ends, and every connection closes (one batch)."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, *self._abandoned, return_exceptions=True)
        links, self._links = self._links, {}
        self._unrecorded.update((link.id, (uid, "closed")) for uid, link in links.items())
        await self._record_closes()
