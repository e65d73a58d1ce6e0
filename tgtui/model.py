"""The dashboard's picture of the fleet, kept apart from any widget.

The stream worker applies every message here as it arrives (a dict upsert,
cheap); the screens repaint on a timer and ask only whether anything changed
since they last drew (the ``*_rev`` counters). So a burst of a thousand deltas
costs one repaint, not a thousand, and no widget holds state of its own.
A snapshot comes in frames (a page of rows each) and its rows go in as each
frame arrives, so a big fleet's table fills while the rest is on its way;
``loading`` says how far it has got.
"""

from __future__ import annotations

from bisect import bisect_right
from collections import Counter, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from operator import itemgetter
from typing import Any

from tgdaemon.wire import STATES, quota_state

Clock = Callable[[], float]
MAX_CHANGES = 100_000  # account changes kept for accounts_changed (a few MB)


def parse_time(value: str | None) -> float | None:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp() if value else None


def effective_state(account: dict[str, Any], now: float) -> str:
    """The daemon's state, except that a cooldown that has run out reads as ready without a delta."""
    if account["state"] == "cooldown":
        until = account.get("_until")
        if until is not None and until <= now:
            return "ready"
    return account["state"]


def heartbeat_age(node: dict[str, Any], now: float) -> float:
    """Seconds since the node's last heartbeat, as of now (see ``FleetModel.set_nodes``)."""
    return max(0.0, float(node["_heartbeat_age"]) + now - float(node["_fetched"]))


def quota_is_open(quota: dict[str, Any], now: float) -> bool:
    """Still to be worked on: not paused, not expired, something left, inspection not failed."""
    left = quota["quantity_left"] if quota.get("quantity_left") is not None else quota.get("orders_left")
    return (quota_state(quota["paused"], parse_time(quota.get("expires_at")), left, now) == "active"
            and quota.get("inspection_ok") is not False)


@dataclass(frozen=True)
class Pulse:
    """``GET /v1/pulse``: per queue, tasks done and failed in each of the last ``minutes`` minutes, oldest
    first, the current (unfinished) minute last; ``at`` is the daemon's now."""

    at: float
    minutes: int
    queues: dict[str, tuple[list[int], list[int]]]  # queue -> (done, failed)


def parse_pulse(answer: dict[str, Any]) -> Pulse:
    """The answer checked as it is read: a series of another length than ``minutes`` is the daemon's
    mistake, named here rather than drawn as a chart that lies about its time axis."""
    minutes = int(answer["minutes"])
    queues = {}
    for name, counts in answer["queues"].items():
        done, failed = [int(n) for n in counts["done"]], [int(n) for n in counts["failed"]]
        if len(done) != minutes or len(failed) != minutes:
            raise ValueError(f"pulse of queue {name!r}: {len(done)} done and {len(failed)} failed counts"
                             f" for {minutes} minutes")
        queues[name] = (done, failed)
    return Pulse(parse_time(answer["at"]) or 0.0, minutes, queues)


def views_gained(measurements: Iterable[dict[str, Any]]) -> list[tuple[float, float]]:
    """(when, views) of each measurement: the views it found added to its post since that post's one before.

    Not the running total: the first pass over ten posts would draw a ramp of
    posts being counted, not of views growing.
    """
    latest: dict[Any, int] = {}
    out: list[tuple[float, float]] = []
    for m in measurements:
        if m.get("views") is None:
            continue
        before = latest.get(m.get("post_id"))
        latest[m.get("post_id")] = m["views"]
        out.append((parse_time(m.get("observed_at")) or 0.0, float(m["views"] - before) if before is not None else 0.0))
    return out


@dataclass
class Loading:
    """A snapshot on its way: how many accounts it brought so far, of how many the daemon counted, and the
    rows the model held before it that it has not named yet."""

    expected: int
    stale_accounts: set[int]
    stale_quotas: set[int]
    accounts: int = 0


class FleetModel:
    def __init__(self, clock: Clock, max_events: int = 2000) -> None:
        self.clock = clock
        self.accounts: dict[int, dict[str, Any]] = {}  # by id; changed only through _put_account, _drop_account
        self._states: Counter[str] = Counter()  # the accounts by the daemon's state
        self._cooling: dict[int, float] = {}  # the accounts in cooldown: when it ends
        self.quotas: dict[int, dict[str, Any]] = {}
        self.events: deque[dict[str, Any]] = deque(maxlen=max_events)
        self.views: dict[int, list[float]] = {}  # quota id -> total views after each measurement
        self.nodes: dict[str, dict[str, Any]] = {}  # by name, as GET /v1/nodes last listed them
        self.proxies: dict[int, dict[str, Any]] = {}  # by id, as GET /v1/proxies last listed them
        self.status: dict[str, Any] = {}
        self.store: dict[str, Any] = {}  # the daemon's store: its ``down`` says why it cannot reach it
        self.status_at = clock()
        self.epoch: str | None = None
        self.seq = 0  # the last event-log id applied: the cursor a reconnect resumes from
        self.in_row = False  # deltas of row ``seq`` are being applied (False: it came whole in the snapshot)
        self.accounts_rev = self.quotas_rev = self.events_rev = self.nodes_rev = 0
        # The accounts each delta changed, by accounts_rev, for a view to take in only those (``accounts_changed``);
        # a snapshot's frame starts it again: what came before is not known row by row.
        self._changes: list[tuple[int, int]] = []  # (accounts_rev after the delta, account id)
        self._changes_from = 0  # accounts_changed(since) knows every change made after this revision
        self.proxies_rev = 0
        self.loading: Loading | None = None  # a snapshot whose last frame has not come yet
        self.pulse: Pulse | None = None  # GET /v1/pulse as last fetched (not in the stream: counts per minute)
        self.pulse_error: str | None = None  # why the last fetch failed (a daemon without the route)
        self.pulse_rev = 0

    @property
    def since(self) -> str | None:
        """None while a snapshot is coming: resuming from its ``seq`` would skip the rows it had still to send."""
        return f"{self.epoch}:{self.seq}" if self.epoch and self.loading is None else None

    def set_status(self, status: dict[str, Any]) -> None:
        self.status, self.status_at = status, self.clock()
        self.store = status.get("store", {})

    @property
    def store_down(self) -> str | None:
        down: str | None = self.store.get("down")
        return down

    @property
    def node(self) -> str | None:
        """The node the dashboard is connected to (its daemon answers on the socket)."""
        name: str | None = self.status.get("node") or None
        return name

    def set_nodes(self, answer: dict[str, Any]) -> None:
        """Each node's heartbeat age is taken against the database's time of the listing (``at``), the clock the
        heartbeats were written by, then runs on with this clock: a host's skew does not show as a dead node."""
        at, fetched = parse_time(answer["at"]) or 0.0, self.clock()
        nodes = {}
        for node in answer["nodes"]:
            node["_heartbeat_age"] = at - (parse_time(node["heartbeat_at"]) or at)
            node["_fetched"] = fetched
            nodes[node["name"]] = node
        self.nodes = nodes
        self.nodes_rev += 1

    def set_proxies(self, proxies: Iterable[dict[str, Any]]) -> None:
        """The accounts' own proxies (not in the stream: the health checker's findings come every few
        minutes, and the app asks for the list every few seconds)."""
        listed = {p["id"]: p for p in proxies}
        if listed != self.proxies:
            self.proxies = listed
            self.proxies_rev += 1

    def set_pulse(self, answer: dict[str, Any] | None, error: str | None = None) -> None:
        """The daemon's tasks done and failed per minute and queue, or why they could not be had (the last
        counts stay shown under the complaint)."""
        if answer is not None:
            self.pulse = parse_pulse(answer)
        self.pulse_error = error
        self.pulse_rev += 1

    def uptime(self) -> float:
        return float(self.status.get("uptime_seconds", 0.0)) + max(0.0, self.clock() - self.status_at)

    def apply(self, msg: dict[str, Any]) -> bool:
        """Apply one stream message; False when a gap shows the client must reconnect for a resync."""
        kind = msg.get("type")
        if kind == "snapshot":
            self.epoch, self.seq, self.in_row = msg["epoch"], msg["seq"], False
            self.set_status(msg["status"])
            self.loading = Loading(sum(self.status.get("accounts", {}).values()), set(self.accounts), set(self.quotas))
            self.events.clear()
            self.events_rev += 1
            self._load(self.loading, msg)
            return True
        if kind == "snapshot_part":
            if self.loading is not None:  # else a part of a snapshot whose start this model never saw
                self._load(self.loading, msg)
            return True
        if kind == "resumed":  # a reconnect with since: the deltas after our seq follow, no snapshot
            self.set_status(msg["status"])
            return True
        if kind == "store":  # the daemon lost its database, or has it back: between deltas, or before a snapshot
            self.store = msg["store"]
            return True
        if kind != "delta":
            return True  # "resync": a snapshot follows on the same socket
        seq = msg["seq"]  # the event-log row it comes from: the deltas of one row share it
        if seq < self.seq or (seq == self.seq and not self.in_row):
            return True  # already reflected in the snapshot
        if seq > self.seq:
            if msg.get("prev", seq - 1) != self.seq:
                return False  # a row is missing: reconnect for a replay or a snapshot
            self.seq, self.in_row = seq, True
        data = msg["data"]
        if msg["kind"] == "account":
            self._put_account(data)
            self.accounts_rev += 1
            self._changes.append((self.accounts_rev, data["id"]))
            if len(self._changes) > MAX_CHANGES:
                self._changes_from = self._changes[len(self._changes) // 2][0]
                del self._changes[:len(self._changes) // 2 + 1]
        elif msg["kind"] == "quota":
            self.quotas[data["id"]] = data
            self.quotas_rev += 1
        elif msg["kind"] == "event":
            self.events.append(data)
            self.events_rev += 1
        return True

    def _load(self, loading: Loading, msg: dict[str, Any]) -> None:
        """A snapshot's frame: its rows go in at once (the table fills as frames come); at its last frame the rows
        it did not name are dropped (a snapshot after a resync, or from another database, replaces the rows)."""
        accounts, quotas, events = msg.get("accounts", ()), msg.get("quotas", ()), msg.get("events", ())
        for account in accounts:
            self._put_account(account)
        for quota in quotas:
            self.quotas[quota["id"]] = quota
        if loading.stale_accounts:
            loading.stale_accounts.difference_update(a["id"] for a in accounts)
        if loading.stale_quotas:
            loading.stale_quotas.difference_update(q["id"] for q in quotas)
        self.events.extend(events)
        loading.accounts += len(accounts)
        done = not msg.get("more")
        if done:
            for account_id in loading.stale_accounts:
                self._drop_account(account_id)
            for quota_id in loading.stale_quotas:
                del self.quotas[quota_id]
            self.loading = None
        if accounts or done:
            self.accounts_rev += 1
            self._changes.clear()
            self._changes_from = self.accounts_rev
        if quotas or done:
            self.quotas_rev += 1
        if events:
            self.events_rev += 1

    def set_views(self, quota_id: int, measurements: Iterable[dict[str, Any]]) -> None:
        """The views each measurement added (``views_gained``), for the quotas view's sparkline."""
        self.views[quota_id] = [gained for _, gained in views_gained(measurements)]
        self.quotas_rev += 1

    def _put_account(self, account: dict[str, Any]) -> None:
        """Once per row of a snapshot (100,000 of them) and per delta: written out, not in calls to the others."""
        account_id, state = account["id"], account["state"]
        old = self.accounts.get(account_id)
        if old is not None:
            self._states[old["state"]] -= 1
            self._cooling.pop(account_id, None)
        # parsed once per row here, not once per draw
        until = account["_until"] = parse_time(account["cooldown_until"]) if account.get("cooldown_until") else None
        self.accounts[account_id] = account
        self._states[state] += 1
        if until is not None and state == "cooldown":
            self._cooling[account_id] = until

    def accounts_changed(self, since: int) -> list[dict[str, Any]] | None:
        """The accounts (as held now) that deltas changed after revision ``since``; None when that is not known
        (a snapshot came since, or the changes are older than the ones kept)."""
        if since < self._changes_from or since > self.accounts_rev:
            return None
        start = bisect_right(self._changes, since, key=itemgetter(0))
        ids = dict.fromkeys(account_id for _, account_id in self._changes[start:])
        return [self.accounts[i] for i in ids]

    def _drop_account(self, account_id: int) -> None:
        old = self.accounts.pop(account_id, None)
        if old is not None:
            self._states[old["state"]] -= 1
            self._cooling.pop(account_id, None)

    def counts(self, now: float) -> dict[str, int]:
        """Accounts by ``effective_state``: kept by state as deltas come, so a repaint counts only the cooldowns
        that may have run out, not every account (100,000 of them took 25 ms, four times a second)."""
        out = dict.fromkeys(STATES, 0)
        out.update(self._states)
        ran_out = sum(until <= now for until in self._cooling.values())
        out["cooldown"] -= ran_out
        out["ready"] += ran_out
        return out

    def open_quotas(self, now: float) -> int:
        return sum(quota_is_open(q, now) for q in self.quotas.values())
