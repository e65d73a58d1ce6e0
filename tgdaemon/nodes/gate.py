"""The node's gate: the accounts this process may act as right now, and the work under way as each.

An account passes while the database says this node owns it (``own``), it is not being let go
(``close``), and the node's own steady clock (it counts a suspend) has not reached ``fence_at``: the last successful
renewal's send time plus the lease, less two heartbeats (design 9, "Self-fencing"). So a process that
can no longer renew (the database out of reach, the event loop stalled) stops passing calls on its own
clock, before its lease can run out in the database and another node connect the account; nothing has
to run for that to hold, the next call simply finds the time passed.

``working`` counts the units of work under way as an account (a setup task, a local task, a probe's
read), so a release can wait for them to end before it disconnects the client and hands the account on.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager

from tgdaemon.timeutil import steady


class NodeGate:
    def __init__(self, clock: Callable[[], float] = steady) -> None:
        self._clock = clock
        self._owned: dict[int, int] = {}  # account id -> the epoch it is owned under
        self._closing: set[int] = set()
        self._inside: dict[int, int] = {}
        self._left = asyncio.Event()  # set whenever some account's work count falls to zero
        self.fence_at = -math.inf  # closed until the first renewal

    # --- the Gate protocol (tgdaemon.gateway.gate)
    def allows(self, account_id: int) -> bool:
        return account_id in self._owned and account_id not in self._closing and self._clock() < self.fence_at

    def epoch(self, account_id: int) -> int | None:
        return self._owned.get(account_id)

    def seconds_left(self) -> float:
        return self.fence_at - self._clock()

    @contextmanager
    def working(self, account_id: int) -> Iterator[None]:
        self._inside[account_id] = self._inside.get(account_id, 0) + 1
        try:
            yield
        finally:
            left = self._inside[account_id] - 1
            if left:
                self._inside[account_id] = left
            else:
                del self._inside[account_id]
                self._left.set()

    # --- what the node tells it
    @property
    def fenced(self) -> bool:
        return self._clock() >= self.fence_at

    def renewed(self, sent_at: float, lease_seconds: float, heartbeat_seconds: float) -> None:
        """A renewal sent at ``sent_at`` (this clock) succeeded: the gate stays open until its margin ends."""
        self.fence_at = max(self.fence_at, sent_at + lease_seconds - 2 * heartbeat_seconds)

    def fence(self) -> list[int]:
        """Closed for every account until the next renewal, and nothing owned: the accounts it held."""
        self.fence_at = -math.inf
        held = sorted(self._owned)
        self._owned.clear()
        self._closing.clear()
        return held

    def own(self, account_id: int, epoch: int) -> None:
        self._owned[account_id] = epoch
        self._closing.discard(account_id)

    def close(self, account_id: int) -> None:
        """No new call as the account (it is being let go); its epoch stays for the writes still to come."""
        if account_id in self._owned:
            self._closing.add(account_id)

    def drop(self, ids: Iterable[int]) -> None:
        for account_id in ids:
            self._owned.pop(account_id, None)
            self._closing.discard(account_id)

    def owned(self) -> dict[int, int]:
        return dict(self._owned)

    def closing(self, account_id: int) -> bool:
        return account_id in self._closing

    def busy(self, ids: Iterable[int]) -> list[int]:
        return [account_id for account_id in ids if account_id in self._inside]

    async def settled(self, ids: Iterable[int], timeout: float) -> list[int]:
        """Until no work is under way as any of ``ids``, for at most ``timeout`` seconds; those still busy."""
        wanted = list(ids)
        deadline = self._clock() + timeout
        while self.busy(wanted) and (left := deadline - self._clock()) > 0:
            self._left.clear()
            try:
                await asyncio.wait_for(self._left.wait(), left)
            except TimeoutError:
                break
        return self.busy(wanted)
