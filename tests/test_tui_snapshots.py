"""Snapshot tests of the main views (pytest-textual-snapshot), with a fixed clock and a seeded fleet.

A screenshot is only comparable if nothing in it moves: countdowns, uptime and
event times all come from the clock. A real daemon stamps everything with the
real time, so here (and only here) the control API is replaced by a recording:
a stream snapshot built from a seeded generator in the daemon's own shapes.
The Pilot tests in test_tui.py cover the real daemon. Update with
``pytest tests/test_tui_snapshots.py --snapshot-update`` and look at the SVGs.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from textual.pilot import Pilot

from tgdaemon.control.client import ControlClient
from tgtui.app import FleetApp

NOW = datetime(2026, 1, 15, 12, 0, tzinfo=UTC).timestamp()
SEED = 6
NODE_NAMES = ("node-a", "node-b")
STATES = ("ready",) * 6 + ("busy", "cooldown", "cooldown", "disabled", "inactive")
HEALTHS = (None, "ok", "ok", "ok", "limited", "ok", "ok", "frozen", "ok", "dead")  # by id, not from rng
ERRORS = {"cooldown": ("FLOOD_WAIT_420", "PEER_FLOOD"), "disabled": ("AUTH_KEY_UNREGISTERED", "USER_DEACTIVATED_BAN")}


def iso(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def seeded_nodes() -> dict[str, Any]:
    """``GET /v1/nodes`` of a fleet of three: two alive (one leads), one killed a minute ago."""
    def node(name: str, pid: int, beat: float, alive: bool, leader: bool, accounts: int) -> dict[str, Any]:
        return {"name": name, "host": f"host-{name[-1]}", "pid": pid, "version": "0.1.0",
                "http": f"10.0.0.{pid % 10}:8780", "max_accounts": 40 if name == "node-b" else 0,
                "started_at": iso(NOW - 7200), "heartbeat_at": iso(NOW - beat), "owned_until": iso(NOW - beat + 15),
                "stopped_at": None, "alive": alive, "leader": leader, "accounts": accounts}

    return {"node": "node-a", "at": iso(NOW), "nodes": [
        node("node-a", 4101, 1, True, False, 30), node("node-b", 4202, 2, True, True, 29),
        node("node-c", 4303, 64, False, False, 0)]}


def seeded_fleet(seed: int = SEED) -> tuple[dict[str, Any], dict[int, list[dict[str, Any]]]]:
    """A stream snapshot and the measurements of its quotas, as the daemon would send them."""
    rng = random.Random(seed)
    accounts = []
    for i in range(1, 61):
        state = rng.choice(STATES)
        code = rng.choice(ERRORS[state]) if state in ERRORS else None
        total = 0 if i % 17 == 0 else 8
        accounts.append({
            "id": i, "label": f"ops-{i:03d}", "phone_masked": f"+447*****{rng.randint(10, 99)}", "name": "",
            "state": state, "is_probe": i % 17 == 0, "is_active": state != "inactive",
            "executor": rng.choice(("local", "local", "prov-a")),
            "cooldown_until": iso(NOW + rng.randint(20, 9000)) if state == "cooldown" else None,
            "cooldown_reason": code if state == "cooldown" else None,
            "disabled_at": iso(NOW - 3600) if state == "disabled" else None,
            "disabled_reason": code if state == "disabled" else None,
            "setup": {"done": min(total, rng.randint(2, 9)), "total": total},
            "last_error_code": code, "last_ok_at": iso(NOW - rng.randint(1, 600)),
            # not from rng: the draws of every other field stay as they were
            "owner": None if i == 5 else NODE_NAMES[i % 2], "pinned_node": "node-c" if i == 5 else
            NODE_NAMES[i % 2] if i % 7 == 0 else None,
            "health": HEALTHS[i % len(HEALTHS)], "health_checked_at": None if i % 5 == 1 else iso(NOW - 3600),
            "health_detail": None if i % 5 == 1 else {"sessions": i % 4},
        })
    quotas, measurements = [], {}
    for qid, (name, target, action, total, left) in enumerate((
            ("news-daily", "@tgfleet_news", "post_stats", 500, 320), ("markets", "@tgfleet_markets", "post_stats",
                                                                      200, 15),
            ("weather-subs", "@tgfleet_weather", "channel_stats", 48, 48), ("typo", "@tgfleet_nope", "channel_stats",
                                                                            10, 10)), start=1):
        failed = name == "typo"
        views, series = rng.randint(900, 2000), []
        for step in range(30 if action == "post_stats" else 0):
            views += rng.randint(0, 120)
            series.append({"observed_at": iso(NOW - (30 - step) * 300), "post_id": 100 + step % 5, "views": views,
                           "forwards": rng.randint(0, 9), "replies": rng.randint(0, 5), "reactions": rng.randint(0, 30),
                           "subscribers": None, "task_id": step + 1})
        measurements[qid] = series
        quotas.append({
            "id": qid, "name": name, "action": action, "target": target, "last_n_posts": 5, "quantity_total": total,
            "quantity_left": left, "orders_left": None, "per_call": 1, "interval_seconds": 3600.0,
            "next_run_at": iso(NOW + 600 * qid), "expires_at": iso(NOW + 86400 * (qid + 1)), "paused": qid == 3,
            "inspection_ok": not failed, "inspection_error": "USERNAME_NOT_OCCUPIED" if failed else None,
            "inspected_at": iso(NOW - 7200), "peer_id": None if failed else 1000 + qid,
            "title": None if failed else name.title(), "last_error": None, "measurements": len(series),
            "created_at": iso(NOW - 86400),
        })
    kinds = ("account.cooldown", "account.disabled", "setup.dispatched", "quota.inspected", "account.enabled")
    events = [{"id": n, "at": iso(NOW - (40 - n) * 37), "kind": (kind := rng.choice(kinds)),
               "account_id": rng.randint(1, 60) if kind.startswith("account") else None,
               "task_id": None, "quota_id": rng.randint(1, 4) if kind.startswith("quota") else None,
               "message": f"{kind.split('.')[1]}: seeded event {n}", "data": {}} for n in range(1, 41)]
    status = {"version": "0.1.0", "uptime_seconds": 3723.0, "gateway": "simulator", "tasks_per_minute": 42,
              "node": "node-a"}
    return {"type": "snapshot", "epoch": "seeded", "seq": 40, "status": status, "accounts": accounts,
            "quotas": quotas, "events": events}, measurements


class Recording(ControlClient):
    """The control API as recorded: the stream sends its snapshot and then stays quiet."""

    def __init__(self) -> None:
        super().__init__("/nonexistent/tgdaemon.sock")
        self.snapshot, self.recorded = seeded_fleet()

    async def watch(self, since: str | None = None, *, parts: bool = False) -> AsyncIterator[dict[str, Any]]:
        yield self.snapshot
        await asyncio.Event().wait()

    async def status(self) -> dict[str, Any]:
        return self.snapshot["status"]

    async def measurements(self, quota_id: int) -> list[dict[str, Any]]:
        return self.recorded[quota_id]

    async def nodes(self) -> dict[str, Any]:
        return seeded_nodes()


def seeded_proxies() -> list[dict[str, Any]]:
    """``GET /v1/proxies`` of four proxies, one of each state; the dead one holds its accounts."""
    def proxy(pid: int, url: str, label: str, state: str, latency: float | None, checked: float | None,
              accounts: int, held: int = 0, error: str | None = None) -> dict[str, Any]:
        return {"id": pid, "url": url, "label": label, "state": state, "latency_ms": latency,
                "checked_at": None if checked is None else iso(NOW - checked), "last_error": error,
                "created_at": iso(NOW - 86400), "accounts": accounts, "held": held}

    return [proxy(1, "socks5://203.0.113.7:1080", "frankfurt", "ok", 84.0, 40, 20),
            proxy(2, "http://198.51.100.23:3128", "amsterdam", "slow", 2210.5, 40, 12),
            proxy(3, "socks5://[2001:db8::17]:1080", "", "dead", None, 40, 3, 3,
                  "Username and password authentication failure"),
            proxy(4, "mtproxy://mt.example.net:443", "mt", "unchecked", None, None, 0)]


class RecordingWithProxies(Recording):
    """The same fleet, some of whose accounts have proxies of their own."""

    def __init__(self) -> None:
        super().__init__()
        by_id = {p["id"]: p["url"] for p in seeded_proxies()}
        for account in self.snapshot["accounts"]:
            account["proxy_id"] = (account["id"] % 4) or None
            account["proxy"] = by_id.get(account["proxy_id"])

    async def proxies(self) -> list[dict[str, Any]]:
        return seeded_proxies()


@pytest.fixture
def app(monkeypatch: pytest.MonkeyPatch) -> FleetApp:
    monkeypatch.setenv("TZ", "UTC")  # event times are shown in local time
    time.tzset()
    return FleetApp(Path("/nonexistent/tgdaemon.sock"), clock=lambda: NOW, client=Recording())


def loaded(*keys: str) -> Callable[[Pilot[None]], Any]:
    async def run_before(pilot: Pilot[None]) -> None:
        app = pilot.app
        assert isinstance(app, FleetApp)
        while not app.model.accounts or len(app.model.views) < 2 or not app.model.nodes:
            await pilot.pause(0.01)
        app.repaint()
        await pilot.press(*keys)
        await pilot.pause()

    return run_before


def test_accounts_view(app: FleetApp, snap_compare: Any) -> None:
    assert snap_compare(app, terminal_size=(80, 24), run_before=loaded("j", "j", "space", "j"))


def test_accounts_view_wide_sorted_by_cooldown(app: FleetApp, snap_compare: Any) -> None:
    assert snap_compare(app, terminal_size=(140, 30), run_before=loaded("s", "s", "s", "s", "S"))


def test_quotas_view(app: FleetApp, snap_compare: Any) -> None:
    assert snap_compare(app, terminal_size=(120, 16), run_before=loaded("tab"))


def test_events_view(app: FleetApp, snap_compare: Any) -> None:
    assert snap_compare(app, terminal_size=(80, 24), run_before=loaded("tab", "tab"))


def test_nodes_view(app: FleetApp, snap_compare: Any) -> None:
    assert snap_compare(app, terminal_size=(100, 12), run_before=loaded("left_square_bracket"))


def test_proxies_view(monkeypatch: pytest.MonkeyPatch, snap_compare: Any) -> None:
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    app = FleetApp(Path("/nonexistent/tgdaemon.sock"), clock=lambda: NOW, client=RecordingWithProxies())

    async def run_before(pilot: Pilot[None]) -> None:
        while not app.model.accounts or not app.model.proxies or not app.model.nodes:
            await pilot.pause(0.01)
        await pilot.press("P")
        await pilot.pause()
        app.repaint()
        await pilot.pause()

    assert snap_compare(app, terminal_size=(120, 12), run_before=run_before)


# Every list view at 80x24, the smallest terminal the dashboard is laid out for: the columns that go are the
# ones meant to go first, and no title is cut by the sort arrow.

def test_quotas_view_80x24(app: FleetApp, snap_compare: Any) -> None:
    assert snap_compare(app, terminal_size=(80, 24), run_before=loaded("tab"))


def test_nodes_view_80x24(app: FleetApp, snap_compare: Any) -> None:
    assert snap_compare(app, terminal_size=(80, 24), run_before=loaded("left_square_bracket"))


def test_proxies_view_80x24(monkeypatch: pytest.MonkeyPatch, snap_compare: Any) -> None:
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    app = FleetApp(Path("/nonexistent/tgdaemon.sock"), clock=lambda: NOW, client=RecordingWithProxies())

    async def run_before(pilot: Pilot[None]) -> None:
        while not app.model.accounts or not app.model.proxies or not app.model.nodes:
            await pilot.pause(0.01)
        await pilot.press("P")
        await pilot.pause()
        app.repaint()
        await pilot.pause()

    assert snap_compare(app, terminal_size=(80, 24), run_before=run_before)


def test_accounts_view_80x24_sorted_by_cooldown_descending(app: FleetApp, snap_compare: Any) -> None:
    """The sorted column takes the room for its arrow from the others; the command prompt sorted it."""
    assert snap_compare(app, terminal_size=(80, 24),
                        run_before=loaded("colon", *"sort cooldown!", "enter", "g"))
