"""The dashboard's picture of the fleet, kept apart from any widget.

It applies the stream: a snapshot replaces everything; a delta upserts one
object. Widgets ask it what changed since they last drew (``take_dirty``),
so a burst of deltas costs one repaint, not one per delta.
"""

from __future__ import annotations

import time
from collections import deque
from datetime import datetime
from typing import Any

STATES = ("ready", "busy", "cooldown", "disabled", "inactive")


def parse_time(value: str | None) -> float | None:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp() if value else None


def effective_state(account: dict[str, Any], now: float) -> str:
    """The daemon's state, except that a cooldown that has run out reads as ready without a delta."""
    if account["state"] == "cooldown":
        until = parse_time(account.get("cooldown_until"))
        if until is not None and until <= now:
            return "ready"
    return account["state"]


class FleetModel:
    def __init__(self, max_events: int = 500) -> None:
        self.accounts: dict[int, dict[str, Any]] = {}
        self.events: deque[dict[str, Any]] = deque(maxlen=max_events)
        self.status: dict[str, Any] = {}
        self.epoch: str | None = None
        self.seq = 0
        self.dirty: set[int] = set()
        self.reloaded = False
        self.status_at = time.monotonic()

    @property
    def since(self) -> str | None:
        return f"{self.epoch}:{self.seq}" if self.epoch else None

    def apply(self, msg: dict[str, Any]) -> bool:
        """Apply one stream message; False when a gap shows the client must reconnect for a resync."""
        kind = msg.get("type")
        if kind == "snapshot":
            self.epoch, self.seq = msg["epoch"], msg["seq"]
            self.status = msg["status"]
            self.status_at = time.monotonic()
            self.accounts = {a["id"]: a for a in msg["accounts"]}
            self.events.clear()
            self.events.extend(msg["events"])
            self.reloaded = True
            return True
        if kind != "delta":
            return True  # "resync": a snapshot follows on the same socket
        if msg["seq"] <= self.seq:
            return True  # already reflected in the snapshot
        if msg["seq"] != self.seq + 1:
            return False
        self.seq = msg["seq"]
        data = msg["data"]
        if msg["kind"] == "account":
            self.accounts[data["id"]] = data
            self.dirty.add(data["id"])
        elif msg["kind"] == "event":
            self.events.append(data)
        return True

    def take_dirty(self) -> tuple[bool, set[int]]:
        """(whether everything must be redrawn, the ids changed since the last call)."""
        reloaded, dirty = self.reloaded, self.dirty
        self.reloaded, self.dirty = False, set()
        return reloaded, dirty

    def counts(self, now: float) -> dict[str, int]:
        out = dict.fromkeys(STATES, 0)
        for account in self.accounts.values():
            out[effective_state(account, now)] += 1
        return out
