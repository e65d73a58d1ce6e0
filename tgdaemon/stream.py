"""The live stream: ordered deltas after a snapshot, in the manner of a Kubernetes list+watch.

Every delta carries a sequence number and the full new state of its object,
so applying one twice is harmless: a client that loaded a snapshot while
changes were committing converges by applying the deltas queued since it
subscribed. A delta (``wire.Delta``) is encoded once and shared by every
subscriber. A subscriber that falls behind by more than its queue holds is not allowed to
grow without bound: its queue is dropped and it is told to resync.
"""

from __future__ import annotations

import asyncio
import secrets
from collections import deque
from collections.abc import Iterable
from typing import Any, Literal

import msgspec

from tgdaemon.wire import Account, Delta, DeltaKind, Event, Frame, Quota

DeltaData = Account | Quota | Event
_encoder = msgspec.json.Encoder()


class Lagged(Exception):
    """The subscriber fell further behind than its queue holds; it must load a new snapshot."""


class Subscription:
    """One client's bounded queue of encoded deltas."""

    def __init__(self, hub: "Hub", max_queue: int) -> None:
        self._hub = hub
        self._max = max_queue
        self._queue: deque[bytes] = deque()
        self._ready = asyncio.Event()
        self.lagged = False
        self.start_seq = hub.seq

    def offer(self, encoded: bytes) -> None:
        if self.lagged:
            return
        if len(self._queue) >= self._max:
            self._queue.clear()
            self.lagged = True
        else:
            self._queue.append(encoded)
        self._ready.set()

    async def next_batch(self, max_items: int = 1000) -> list[bytes]:
        """Wait for deltas and take up to ``max_items``; raises Lagged once the queue overflowed."""
        while not self._queue and not self.lagged:
            self._ready.clear()
            await self._ready.wait()
        if self.lagged:
            raise Lagged
        n = min(max_items, len(self._queue))
        return [self._queue.popleft() for _ in range(n)]

    def close(self) -> None:
        self._hub._subs.discard(self)


class Hub:
    def __init__(self, *, queue_size: int, replay_size: int) -> None:
        # Sequence numbers restart with the daemon; the epoch tells a reconnecting
        # client that its ``since`` belongs to an earlier run.
        self.epoch = secrets.token_hex(6)
        self.seq = 0
        self.queue_size = queue_size
        self._replay: deque[tuple[int, bytes]] = deque(maxlen=replay_size)
        self._subs: set[Subscription] = set()

    @property
    def subscribers(self) -> int:
        return len(self._subs)

    def publish(self, kind: DeltaKind, data: DeltaData, op: Literal["upsert"] = "upsert") -> int:
        self.seq += 1
        encoded = _encoder.encode(Delta(seq=self.seq, kind=kind, op=op, data=data))
        self._replay.append((self.seq, encoded))
        for sub in self._subs:
            sub.offer(encoded)
        return self.seq

    def publish_many(self, kind: DeltaKind, items: Iterable[DeltaData]) -> None:
        for item in items:
            self.publish(kind, item)

    def subscribe(self) -> Subscription:
        sub = Subscription(self, self.queue_size)
        self._subs.add(sub)
        return sub

    def replay_since(self, epoch: str, seq: int) -> list[bytes] | None:
        """Deltas after ``seq`` if the replay buffer still holds them all, else None (snapshot needed)."""
        if epoch != self.epoch:
            return None
        if seq == self.seq:
            return []
        if seq > self.seq or not self._replay or self._replay[0][0] > seq + 1:
            return None
        return [encoded for s, encoded in self._replay if s > seq]


MAX_FRAME = 1024 * 1024  # bytes; well under the 4 MiB aiohttp clients accept by default
_DELTAS_HEAD = b'{"type":"deltas","items":['
_DELTAS_TAIL = b"]}"
_MORE = (b',"more":false}', b',"more":true}')


def batch_frames(items: list[bytes], limit: int = MAX_FRAME) -> list[bytes]:
    """Deltas in as few frames as fit under ``limit``, without decoding them again.

    A frame of one delta is the delta itself; several share a ``deltas`` frame.
    A single delta is never split (one object's state is a few KB).
    """
    frames: list[bytes] = []
    group: list[bytes] = []
    size = len(_DELTAS_HEAD) + len(_DELTAS_TAIL)
    for item in items:
        if group and size + len(item) + 1 > limit:
            frames.append(_deltas(group))
            group, size = [], len(_DELTAS_HEAD) + len(_DELTAS_TAIL)
        group.append(item)
        size += len(item) + 1
    if group:
        frames.append(_deltas(group))
    return frames


def _deltas(group: list[bytes]) -> bytes:
    return group[0] if len(group) == 1 else _DELTAS_HEAD + b",".join(group) + _DELTAS_TAIL


def snapshot_frames(head: dict[str, Any], lists: dict[str, list[Any]], limit: int = MAX_FRAME) -> list[bytes]:
    """A snapshot as frames under ``limit``: a 50,000-account fleet is tens of MB, too much for one frame.

    The first frame is ``{"type": "snapshot", **head, <lists>, "more"}``, the
    others ``{"type": "snapshot_part", <lists>, "more"}``; every frame carries
    every list (maybe empty) and the items continue in order across frames.
    The snapshot is complete at the frame whose ``more`` is false; nothing
    else is sent on the socket in between.
    """
    first = _encoder.encode({"type": "snapshot", **head})[:-1] + b","
    part = b'{"type":"snapshot_part",'
    names = list(lists)
    encoded = [(i, _encoder.encode(item)) for i, name in enumerate(names) for item in lists[name]]
    frames: list[bytes] = []
    prefix = first
    fixed = sum(len(name) + 6 for name in names) + len(_MORE[1])  # "name":[], per list, and the tail
    current: list[list[bytes]] = [[] for _ in names]
    size = len(prefix) + fixed
    for i, item in encoded:
        if size + len(item) + 1 > limit and any(current):
            frames.append(_snapshot_frame(prefix, names, current, more=True))
            prefix, current = part, [[] for _ in names]
            size = len(prefix) + fixed
        current[i].append(item)
        size += len(item) + 1
    frames.append(_snapshot_frame(prefix, names, current, more=False))
    return frames


def _snapshot_frame(prefix: bytes, names: list[str], lists: list[list[bytes]], *, more: bool) -> bytes:
    body = b",".join(b'"' + name.encode() + b'":[' + b",".join(items) + b"]" for name, items in zip(names, lists))
    return prefix + body + _MORE[more]


def encode(frame: Frame) -> bytes:
    return _encoder.encode(frame)
