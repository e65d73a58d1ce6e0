"""The live stream: a snapshot, then ordered deltas, in the manner of a Kubernetes list+watch.

Its source is the store's event log (design 3.1). Every committed change is a
row there: an audit event, or the one ``changes`` row a transaction adds for
what it touched and no event of it names. A row's id is the stream's sequence
number, so a client's cursor means the same thing to every daemon run (and, in
a fleet, to every daemon on the database): a client that saw the log up to N
gets the rows after N, for as long as retention keeps them.

The ``Hub`` follows the log. ``committed`` wakes it (the commit hook in this
process; for several daemons, the store's LISTEN/NOTIFY handler, ``Store.listen``,
calling the same; and its own poll of the log's head once a second), it
reads the rows after its cursor with ``events_after`` (the rows this process
just committed are handed over by the hook, not read back), and turns each row into
a ``Position``: the full current state of every account and quota the row
names, then the event itself (a ``changes`` row has none). A delta carries
its row's id as ``seq`` and the id of the row before as ``prev``; the deltas
of one row share them, and a row whose objects are all gone still yields one
``mark`` delta, so ``prev`` always names the position a client last got.
State is read after the commit, never older than the row: applying a delta
twice, or a newer state early, is harmless, and the client converges.

With nobody subscribed the Hub reads nothing: it only moves its cursor; a
client that comes later resumes from the log itself. The loss of the database
and its return reach every subscriber at once as a ``store`` frame of its own
(``store_changed``), between positions. A subscriber that falls
behind by more than its queue holds is dropped and told to resync, so memory
stays bounded whatever the client does.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections import deque
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from typing import Any

import msgspec

from tgdaemon.errors import StoreDisconnected, StoreUnavailable
from tgdaemon.store import Store
from tgdaemon.store.api import CHANGES_KIND, EVENTS_PRUNED_THROUGH, STREAM_EPOCH
from tgdaemon.wire import StoreChanged, StoreStatus

_encoder = msgspec.json.Encoder()
FOLLOW_ROWS = 1000  # log rows per read while following or catching up
POLL_SECONDS = 1.0  # the log's head is read this often whatever the wakes say: the safety net


@dataclass(frozen=True, slots=True)
class Position:
    """One log row's deltas, encoded once and shared by every subscriber."""

    seq: int
    items: list[bytes]
    notice: bool = False  # not a log row: a frame of its own (``store``), never inside a ``deltas`` one


def _delta(seq: int, prev: int, kind: str, data: bytes) -> bytes:
    return b'{"type":"delta","seq":%d,"prev":%d,"kind":"%s","op":"upsert","data":%s}' % (
        seq, prev, kind.encode(), data)


def _named(row: dict[str, Any]) -> tuple[list[int], list[int]]:
    """The accounts and quotas a log row says changed."""
    if row["kind"] == CHANGES_KIND:
        return list(row["data"].get("accounts", ())), list(row["data"].get("quotas", ()))
    return ([row["account_id"]] if row["account_id"] is not None else [],
            [row["quota_id"]] if row["quota_id"] is not None else [])


async def derive(store: Store, rows: list[dict[str, Any]], prev: int) -> list[Position]:
    """The positions of these log rows (in id order, the first after ``prev``): the states they name,
    read now in one query per kind, each encoded once, then the event."""
    named = [_named(row) for row in rows]
    account_ids = {i for accounts, _ in named for i in accounts}
    quota_ids = {i for _, quotas in named for i in quotas}
    account_views = await store.accounts_by_id(None, account_ids) if account_ids else []
    quota_views = await store.quotas_by_id(None, quota_ids) if quota_ids else []
    accounts = {v["id"]: _encoder.encode(v) for v in account_views}
    quotas = {v["id"]: _encoder.encode(v) for v in quota_views}
    out: list[Position] = []
    for row, (row_accounts, row_quotas) in zip(rows, named):
        seq = row["id"]
        items = [_delta(seq, prev, "account", accounts[i]) for i in row_accounts if i in accounts]
        items += [_delta(seq, prev, "quota", quotas[i]) for i in row_quotas if i in quotas]
        if row["kind"] != CHANGES_KIND:
            items.append(_delta(seq, prev, "event", _encoder.encode(row)))
        out.append(Position(seq, items or [_delta(seq, prev, "mark", b"{}")]))
        prev = seq
    return out


class Lagged(Exception):
    """The subscriber fell further behind than its queue holds; it must load a new snapshot."""


class Subscription:
    """One client's bounded queue of positions, counted in deltas."""

    def __init__(self, hub: Hub, max_items: int) -> None:
        self._hub = hub
        self._max = max_items
        self._queue: deque[Position] = deque()
        self._items = 0
        self._ready = asyncio.Event()
        self.lagged = False
        self.start_seq = hub.seq  # everything after it comes through this queue
        self.floor = hub.seq  # positions up to here are not queued (a client resuming ahead of the hub)

    @property
    def queued(self) -> int:
        return self._items

    def offer(self, position: Position) -> None:
        if self.lagged or position.seq <= self.floor:
            return
        if self._items + len(position.items) > self._max:
            self._queue.clear()
            self._items = 0
            self.lagged = True
        else:
            self._queue.append(position)
            self._items += len(position.items)
        self._ready.set()

    def notice(self, frame: bytes) -> None:
        """A frame for this client now, whatever its cursor (one that lagged gets a snapshot, which says it too)."""
        if self.lagged:
            return
        self._queue.append(Position(self._hub.seq, [frame], notice=True))
        self._items += 1
        self._ready.set()

    async def next_batch(self, max_items: int = 1000) -> list[Position]:
        """Wait for positions and take whole ones, about ``max_items`` deltas; raises Lagged once the queue
        overflowed."""
        while not self._queue and not self.lagged:
            self._ready.clear()
            await self._ready.wait()
        if self.lagged:
            raise Lagged
        out: list[Position] = []
        taken = 0
        while self._queue and (not out or taken + len(self._queue[0].items) <= max_items):
            position = self._queue.popleft()
            out.append(position)
            taken += len(position.items)
        self._items -= taken
        return out

    def close(self) -> None:
        self._hub._subs.discard(self)


class Hub:
    def __init__(self, store: Store, epoch: str, head: int, *, queue_size: int, replay_size: int) -> None:
        """``head``: the log's last id when the daemon started; ``replay_size``: how many log rows behind a
        reconnecting client may be and still be sent only what it missed (further behind, a snapshot is
        the smaller answer)."""
        self.store = store
        self._catching_up: asyncio.Task[None] | None = None  # held: a task nobody holds may be collected
        self.epoch = epoch
        self.seq = head  # the last log row published (or passed over with nobody subscribed)
        self.queue_size = queue_size
        self.replay_size = replay_size
        self._head = head  # the highest id known committed
        self._handed: deque[dict[str, Any]] = deque()  # rows this process committed, as event views
        self._wake = asyncio.Event()
        self._subs: set[Subscription] = set()

    @classmethod
    async def open(cls, store: Store, *, queue_size: int, replay_size: int) -> Hub:
        """At the log's head (a log that retention emptied still ends where it was pruned); the epoch names
        the database and is made on its first start."""
        epoch = await store.get_meta(STREAM_EPOCH)
        if epoch is None:  # two nodes first started at once on one database both get here: one epoch wins
            async with store.tx() as tx:
                epoch = await tx.setdefault_meta(STREAM_EPOCH, secrets.token_hex(8))
        head = max(await store.last_event_id(), int(await store.get_meta(EVENTS_PRUNED_THROUGH) or 0))
        return cls(store, epoch, head, queue_size=queue_size, replay_size=replay_size)

    @property
    def subscribers(self) -> int:
        return len(self._subs)

    def subscribe(self) -> Subscription:
        sub = Subscription(self, self.queue_size)
        self._subs.add(sub)
        return sub

    def committed(self, upto: int, rows: Iterable[dict[str, Any]] = ()) -> None:
        """The log holds rows up to ``upto``: read them. Cheap and synchronous: the commit hook calls it,
        handing over the rows it committed (event views), which saves reading them back while they
        are the very next ones; any others (a gap, another daemon's) are read from the log."""
        self._head = max(self._head, upto)
        if self._subs:
            self._handed.extend(rows)
            while len(self._handed) > FOLLOW_ROWS:  # the follower is far behind: it reads the log instead
                self._handed.popleft()
        self._wake.set()

    def store_changed(self, store: StoreStatus) -> None:
        """The database was lost or is back (the store watch's ``on_change``): every subscriber is told."""
        frame = _encoder.encode(StoreChanged(store=store))
        for sub in self._subs:
            sub.notice(frame)
        if store.down is None:  # a commit whose answer the loss cut off never told the hook: find the head
            self._catching_up = asyncio.get_running_loop().create_task(self._catch_up())

    async def _catch_up(self) -> None:
        with contextlib.suppress(StoreUnavailable):  # lost again: the next return tries again
            self.committed(await self.store.last_event_id())

    def publish(self, position: Position) -> None:
        self.seq = position.seq
        for sub in self._subs:
            sub.offer(position)

    async def run(self) -> None:
        """Follow the log for as long as the daemon runs. The database lost ends it (the daemon runs it
        again once it is back, ``StoreWatch.keep``) with its wake still set: nothing is lost, the cursor has
        not moved, and the log is read from there. Besides its wakes it reads the log's head every
        ``POLL_SECONDS``: a commit no wake announced (another daemon's, while the store's listener was
        reconnecting) is read a second later at most."""
        loop = asyncio.get_running_loop()
        polled = loop.time()
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout_at(polled + POLL_SECONDS):
                    await self._wake.wait()
            self._wake.clear()
            try:
                if loop.time() >= polled + POLL_SECONDS:
                    polled = loop.time()
                    self._head = max(self._head, await self.store.last_event_id())
                await self._follow()
            except StoreDisconnected:
                self._wake.set()
                raise

    async def _follow(self) -> None:
        while self.seq < self._head:
            if not self._subs:
                self.seq = self._head
                self._handed.clear()
                return
            rows = self._next_handed() or await self.store.events_after(self.seq, FOLLOW_ROWS)
            if not rows:
                return  # not visible yet: the next wake reads again
            for position in await derive(self.store, rows, self.seq):
                self.publish(position)

    def _next_handed(self) -> list[dict[str, Any]]:
        """The handed-over rows that continue the log right after ``seq``, without a hole."""
        while self._handed and self._handed[0]["id"] <= self.seq:
            self._handed.popleft()
        rows: list[dict[str, Any]] = []
        while self._handed and self._handed[0]["id"] == self.seq + 1 + len(rows):
            rows.append(self._handed.popleft())
        return rows

    async def resumable(self, epoch: str, seq: int) -> bool:
        """Whether a client that saw this log up to ``seq`` can be sent just the rows after it."""
        if epoch != self.epoch or seq < int(await self.store.get_meta(EVENTS_PRUNED_THROUGH) or 0):
            return False  # another database's cursor, or retention deleted rows it has not seen
        if seq > self.seq:  # ahead of this hub: only a row of this log that this hub has not read yet
            rows = await self.store.events_after(seq - 1, 1)
            return bool(rows) and rows[0]["id"] == seq
        return self.seq - seq <= self.replay_size

    async def replay(self, after: int, upto: int) -> AsyncIterator[list[Position]]:
        """The positions after ``after`` up to ``upto``, derived again from the log, a batch at a time."""
        while after < upto:
            rows = [row for row in await self.store.events_after(after, FOLLOW_ROWS) if row["id"] <= upto]
            if not rows:
                return
            yield await derive(self.store, rows, after)
            after = rows[-1]["id"]


MAX_FRAME = 1024 * 1024  # bytes; well under the 4 MiB aiohttp clients accept by default
_DELTAS_HEAD = b'{"type":"deltas","items":['
_DELTAS_TAIL = (b"]}", b'],"more":true}')
_MORE = (b',"more":false}', b',"more":true}')


def batch_frames(positions: Iterable[Position], limit: int = MAX_FRAME) -> list[bytes]:
    """Positions in as few frames as fit under ``limit``, without decoding them again.

    A frame of one delta is the delta itself; several share a ``deltas`` frame.
    A position is never split between frames while it fits in one; one that
    does not (a commit that touched 10,000 accounts) goes over several, each
    but its last marked ``"more": true``, and the client applies it once its
    last frame is in. So a client that loses the connection never holds half
    a position, and resuming from the last ``seq`` it applied loses nothing.
    """
    frames: list[bytes] = []
    group: list[bytes] = []
    fixed = len(_DELTAS_HEAD) + len(_DELTAS_TAIL[1])
    size = fixed
    for position in positions:
        if position.notice:
            if group:
                frames.append(_deltas(group, more=False))
                group, size = [], fixed
            frames += position.items
            continue
        need = sum(len(item) + 1 for item in position.items)
        if group and size + need > limit:
            frames.append(_deltas(group, more=False))
            group, size = [], fixed
        if fixed + need <= limit:
            group += position.items
            size += need
            continue
        for item in position.items:  # bigger than a frame: split, the client reassembles
            if group and size + len(item) + 1 > limit:
                frames.append(_deltas(group, more=True))
                group, size = [], fixed
            group.append(item)
            size += len(item) + 1
    if group:
        frames.append(_deltas(group, more=False))
    return frames


def _deltas(group: list[bytes], *, more: bool) -> bytes:
    if len(group) == 1 and not more:
        return group[0]
    return _DELTAS_HEAD + b",".join(group) + _DELTAS_TAIL[more]


def snapshot_frames(head: dict[str, Any] | None, lists: dict[str, list[Any]], limit: int = MAX_FRAME, *,
                    more: bool = False) -> list[bytes]:
    """One piece of a snapshot as frames under ``limit``: a snapshot is sent as it is read, a page at a time.

    The first piece is given the ``head`` and its first frame is ``{"type":
    "snapshot", **head, <lists>, "more"}``; every other frame is
    ``{"type": "snapshot_part", <lists>, "more"}``. Every frame carries every
    list (maybe empty) and the items continue in order across frames. ``more``
    says whether pieces follow this one: the snapshot is complete at the frame
    whose ``more`` is false, and nothing else is sent on the socket in between.
    A whole snapshot in hand is one piece with a head and ``more`` false.
    """
    first = _encoder.encode({"type": "snapshot", **head})[:-1] + b"," if head is not None else None
    part = b'{"type":"snapshot_part",'
    names = list(lists)
    prefix = first or part
    whole = prefix + b",".join(b'"%s":%s' % (name.encode(), _encoder.encode(lists[name])) for name in names)
    if len(whole) + len(_MORE[more]) <= limit:  # a page of rows is one frame: encoded in one call, not row by row
        return [whole + _MORE[more]]
    frames: list[bytes] = []
    fixed = sum(len(name) + 6 for name in names) + len(_MORE[1])  # "name":[], per list, and the tail
    current: list[list[bytes]] = [[] for _ in names]
    size = len(prefix) + fixed
    for i, name in enumerate(names):
        for item in map(_encoder.encode, lists[name]):
            if size + len(item) + 1 > limit and any(current):
                frames.append(_snapshot_frame(prefix, names, current, more=True))
                prefix, current = part, [[] for _ in names]
                size = len(prefix) + fixed
            current[i].append(item)
            size += len(item) + 1
    frames.append(_snapshot_frame(prefix, names, current, more=more))
    return frames


def _snapshot_frame(prefix: bytes, names: list[str], lists: list[list[bytes]], *, more: bool) -> bytes:
    body = b",".join(b'"' + name.encode() + b'":[' + b",".join(items) + b"]" for name, items in zip(names, lists))
    return prefix + body + _MORE[more]


def encode(message: dict[str, Any] | msgspec.Struct) -> bytes:
    return _encoder.encode(message)
