"""Hearing of every daemon's commits to the event log: LISTEN on a connection of its own.

Every transaction that writes log rows NOTIFYs the log's channel with its last id (core.py); this
connection hears them all and hands each id to the callbacks (the stream's ``Hub.committed``), but for
those its own writer sent: the commit hook has told of them already, with the rows, and a notification
that overtook the hook would make the stream read back from the database what the hook hands over.
Not the writer, which is busy in transactions, nor a pool connection, which the pool resets (UNLISTEN)
when it takes it back.

A notification sent while the connection is down is lost, so each time it starts listening (at first and
after every reconnection) it reads the log's last id and hands that over too: whatever committed
meanwhile is read from the log like the rest. A lost connection is seen at once when the server ends it
(its termination listener) and, on a network that drops it silently, by a ping every ``PING_SECONDS``
that gets no answer; then it connects again, waiting ever longer between tries (up to ``MAX_BACKOFF``)
while the server is away. The other way round, a listening session whose daemon stopped reading (a
process stopped or a machine paused, its socket still open) holds back PostgreSQL's notification queue,
which every daemon's commits write to, and a full queue fails those commits: so the server ends the
session once it has been idle for ``IDLE_SECONDS`` (``idle_session_timeout``, PostgreSQL 14 and later),
which the pings keep from happening to a daemon that runs. That covers a quiet fleet only: once the
notifications fill the socket's buffers the session waits on ClientWrite, which is not idle, and stays
until ended by hand (docs: the queue, 8 GB by default, takes hours to fill even at thousands of commits
a second). It logs nothing: the daemon hears of a lost database from the store's own
``on_down``, and the stream's poll of the log's head covers the seconds this one needs to return.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

import asyncpg

from tgdaemon.bounded import bounded

MIN_BACKOFF = 0.1  # seconds before the first reconnection attempt; doubled after each failed one
MAX_BACKOFF = 5.0
PING_SECONDS = 5.0  # how often an idle listening connection is asked whether it is still there
IDLE_SECONDS = 30  # the server ends a listening session this long without a ping (the daemon stalled)
CLOSE_SECONDS = 0.5
HEAD = "SELECT COALESCE(MAX(id), 0) FROM events"


class Listener:
    """One LISTEN connection and the task that keeps it; started by the first ``add``, ended by ``close``."""

    def __init__(self, connect: Callable[[], Awaitable[asyncpg.Connection]], channel: str,
                 own: Callable[[], int | None]) -> None:
        """``own``: the server pid of this store's writer now (None while it has none)."""
        self._connect = connect
        self._channel = channel
        self._own = own
        self._callbacks: list[Callable[[int], None]] = []
        self._task: asyncio.Task[None] | None = None
        self._first_try = asyncio.Event()  # the first connection attempt is over, whatever its outcome
        self.conn: asyncpg.Connection | None = None  # while listening (tests end its session)
        self.sessions = 0  # how many times it has started listening

    async def add(self, callback: Callable[[int], None]) -> None:
        """From now on ``callback(last id)`` for every commit to the log; returns once the first connection
        was tried (listening, unless the server is away: then it keeps trying in the background)."""
        self._callbacks.append(callback)
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._keep(), name="store listener")
        await self._first_try.wait()

    def _tell(self, last_id: int) -> None:
        for callback in self._callbacks:
            callback(last_id)

    def _notified(self, _conn: object, pid: int, _channel: str, payload: str) -> None:
        if pid == self._own():
            return
        if payload.isdigit():  # another program's NOTIFY on the channel is no id: not ours to read
            self._tell(int(payload))

    async def _keep(self) -> None:
        backoff = MIN_BACKOFF
        while True:
            try:
                await self._listen()
                backoff = MIN_BACKOFF  # it listened: the next loss is tried again at once
            except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError, asyncpg.InternalClientError):
                pass  # away, or lost while starting: try again after a while
            finally:
                self._first_try.set()
                if self.conn is not None:
                    self.conn.terminate()
                    self.conn = None
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, MAX_BACKOFF)

    async def _listen(self) -> None:
        """One session: connect, LISTEN, hand over the head, then hear notifications until the connection
        is gone."""
        self.conn = conn = await self._connect()
        lost = asyncio.Event()
        conn.add_termination_listener(lambda _conn: lost.set())
        if conn.get_server_version().major >= 14:
            await conn.execute(f"SET idle_session_timeout = '{IDLE_SECONDS}s'")
        await conn.add_listener(self._channel, self._notified)
        head = await conn.fetchval(HEAD)  # after LISTEN: a commit from here on is heard
        self.sessions += 1
        self._first_try.set()
        self._tell(int(head))
        while not conn.is_closed():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(PING_SECONDS):
                    await lost.wait()
            if lost.is_set() or conn.is_closed():
                return
            async with asyncio.timeout(PING_SECONDS):
                await conn.fetchval("SELECT 1")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await bounded("stopping the store listener", self._task, CLOSE_SECONDS)
            self._task = None
        if self.conn is not None:
            if not await bounded("closing the listening connection", self.conn.close(), CLOSE_SECONDS):
                self.conn.terminate()
            self.conn = None
