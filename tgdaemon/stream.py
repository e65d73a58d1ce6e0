"""The live stream: ordered deltas after a snapshot, in the manner of a Kubernetes list+watch.

Every delta carries a sequence number and the full new state of its object,
so applying one twice is harmless: a client that loaded a snapshot while
changes were committing converges by applying the deltas queued since it
subscribed. A delta is encoded once and shared by every subscriber. A
subscriber that falls behind by more than its queue holds is not allowed to
grow without bound: its queue is dropped and it is told to resync.
"""

from __future__ import annotations

import asyncio
import secrets
from collections import deque
from collections.abc import Iterable
from typing import Any

import msgspec

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

    def publish(self, kind: str, data: dict[str, Any], op: str = "upsert") -> int:
        self.seq += 1
        encoded = _encoder.encode({"type": "delta", "seq": self.seq, "kind": kind, "op": op, "data": data})
        self._replay.append((self.seq, encoded))
        for sub in self._subs:
            sub.offer(encoded)
        return self.seq

    def publish_many(self, kind: str, items: Iterable[dict[str, Any]]) -> None:
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


def batch_frame(items: list[bytes]) -> bytes:
    """Several deltas in one WebSocket frame, without decoding them again."""
    if len(items) == 1:
        return items[0]
    return b'{"type":"deltas","items":[' + b",".join(items) + b"]}"


def encode(message: dict[str, Any]) -> bytes:
    return _encoder.encode(message)
