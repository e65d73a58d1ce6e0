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
import json
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


TASK_TYPES = (("ensure_2fa", "fast"), ("update_name", "fast"), ("privacy_phone_hidden", "fast"),
              ("set_photo_jpg", "media"), ("story_video", "media"))
SETUP_ERRORS = {"failed": ("MEDIA_FILE_MISSING", "the configured file /srv/media/avatar.jpg does not exist"),
                "retry": ("FLOOD_WAIT_420", "a wait of 420 s")}


def seeded_tasks(seed: int = SEED) -> dict[str, Any]:
    """``GET /v1/tasks`` of a fleet mid-setup: setup tasks of every status, a few pulled ones, the counts."""
    rng = random.Random(seed)
    tasks = []
    for n in range(1, 31):
        task_type, queue = TASK_TYPES[n % len(TASK_TYPES)]
        status = rng.choice(("done", "done", "done", "failed", "retry", "pending", "running"))
        code, error = SETUP_ERRORS.get(status, (None, None))
        account = rng.randint(1, 60)
        tasks.append({
            "key": f"setup:{n}", "kind": "setup", "id": n, "account_id": account, "label": f"ops-{account:03d}",
            "task_type": task_type, "queue": queue, "status": status, "attempts": 0 if status == "pending" else
            rng.randint(1, 4), "retry_at": iso(NOW + 300) if status == "retry" else None,
            "last_error_code": code, "last_error": error,
            "blocked_by": f"retry_at {iso(NOW + 300)}" if status == "retry" else
            "queue full" if status == "pending" and n % 2 else None, "result": {},
            "created_at": iso(NOW - 7200), "updated_at": iso(NOW - rng.randint(5, 5000))})
    for n in range(1, 7):
        status = ("done", "failed", "leased", "pending", "done", "failed")[n - 1]
        executor = "local" if n % 2 else "prov-a"
        tasks.append({
            "key": f"pulled:{n}", "kind": "pulled", "id": n, "account_id": n * 7, "label": f"ops-{n * 7:03d}",
            "task_type": "post_stats", "queue": f"pulled:{executor}", "status": status, "attempts": 1,
            "retry_at": None, "last_error_code": "CHANNEL_PRIVATE" if status == "failed" else None,
            "last_error": None, "blocked_by": "waits for provider prov-a to pull it" if status == "pending" else None,
            "result": {}, "created_at": iso(NOW - 600), "updated_at": iso(NOW - 60 * n), "executor": executor,
            "quota_id": 1, "post_id": 100 + n})
    counts: dict[str, dict[str, int]] = {"fast": {}, "media": {}}
    for t in tasks:
        by_status = counts.setdefault(t["queue"], {})
        by_status[t["status"]] = by_status.get(t["status"], 0) + 1
    counts["fast"]["done"] += 48_120  # the fleet's, not only the listed ones
    return {"tasks": tasks, "counts": counts}


def seeded_task_detail(key: str) -> dict[str, Any]:
    """``GET /v1/tasks/KIND/ID``: the listed task and three attempts on two nodes."""
    task = next(t for t in seeded_tasks()["tasks"] if t["key"] == key)
    attempts = [{"attempt": n, "started_at": iso(NOW - 4000 + n * 900), "ended_at": iso(NOW - 3990 + n * 900),
                 "seconds": 10.25, "node": NODE_NAMES[n % 2], "executor": None,
                 "outcome": "retry" if n < 3 else "failed", "error_code": "MEDIA_FILE_MISSING",
                 "error": "the configured file /srv/media/avatar.jpg does not exist"} for n in (1, 2, 3)]
    return {"task": task, "attempts": attempts, "attempts_kept": 20}


def seeded_pulse(seed: int = SEED) -> dict[str, Any]:
    """``GET /v1/pulse?minutes=60``: a busy fast queue with a burst of failures, a slower media queue, a
    provider's pulled queue that ramps up, and one that did nothing."""
    rng = random.Random(seed)
    fast = [20 + rng.randint(0, 12) + (15 if 30 <= m < 40 else 0) for m in range(60)]
    fast_failed = [rng.randint(4, 9) if 34 <= m < 38 else int(rng.random() < 0.1) for m in range(60)]
    media = [rng.randint(0, 3) for _ in range(60)]
    pulled = [m // 6 for m in range(60)]
    return {"at": iso(NOW - 4), "minutes": 60, "queues": {
        "media": {"done": media, "failed": [int(m == 50) for m in range(60)]},
        "fast": {"done": fast[:-1] + [7], "failed": fast_failed},
        "pulled:prov-a": {"done": [0] * 60, "failed": [0] * 60},
        "pulled:local": {"done": pulled, "failed": [0] * 60}}}


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

    async def _send(self, method: str, path: str, params: dict[str, Any] | None, body: dict[str, Any] | None,
                    timeout: float | None = None) -> bytes:
        """The tasks view's routes, as recorded; anything else is not."""
        if method == "GET" and path == "/tasks":
            return json.dumps(seeded_tasks()).encode()
        if method == "GET" and path.startswith("/tasks/"):
            return json.dumps(seeded_task_detail(":".join(path.split("/")[2:4]))).encode()
        return await super()._send(method, path, params, body, timeout)

    async def pulse(self, minutes: int = 60) -> dict[str, Any]:
        return seeded_pulse()


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


DETAIL_TASK_TYPES = ("ensure_2fa", "update_name", "privacy_phone_hidden", "privacy_last_seen_everybody",
                     "set_photo_jpg", "story_image", "story_video", "terminate_other_sessions")


class RecordingWithDetail(Recording):
    """The same fleet, and what an account's detail asks the control API (``call``): its own device, its setup
    tasks (one failed with the account's last error) and its recent events. Account 7 is in a cooldown,
    frozen by Telegram, on a proxy of its own."""

    def __init__(self) -> None:
        super().__init__()
        account = self.snapshot["accounts"][6]
        assert account["id"] == 7 and account["state"] == "cooldown"
        account["health_detail"] = {"sessions": 2, "frozen_since": iso(NOW - 86400 * 3),
                                    "frozen_until": iso(NOW + 86400 * 27)}
        account["proxy"] = "socks5://203.0.113.7:1080"

    async def _send(self, method: str, path: str, params: dict[str, Any] | None, body: dict[str, Any] | None,
                    timeout: float | None = None) -> bytes:
        fields = ("api_id", "api_hash_masked", "device_model", "system_version", "app_version", "lang_code",
                  "system_lang_code")
        if path.endswith("/device"):
            own = dict.fromkeys(fields) | {"api_id": 611335, "api_hash_masked": "b184…", "device_model": "Pixel 7"}
            return json.dumps({"account_id": 7, "own": own, "default": dict.fromkeys(fields),
                               "effective": own}).encode()
        if path == "/tasks":
            tasks = []
            for n, task_type in enumerate(DETAIL_TASK_TYPES):
                status = "done" if n < 3 else "failed" if n == 4 else "pending"
                tasks.append({
                    "key": f"setup:{70 + n}", "kind": "setup", "created_at": iso(NOW - 86400),
                    "id": 70 + n, "account_id": 7, "label": "ops-007", "task_type": task_type,
                    "queue": "media" if task_type.startswith(("story", "set_photo")) else "fast", "status": status,
                    "attempts": 1 if status == "done" else 3 if n == 4 else 0,
                    "retry_at": iso(NOW + 400) if n == 4 else None,
                    "last_error_code": "FLOOD_WAIT_420" if n == 4 else None,
                    "last_error": "A wait of 420 seconds is required (caused by UploadProfilePhotoRequest)" if n == 4
                    else None,
                    "blocked_by": "account in cooldown" if status == "pending" else None, "result": {},
                    "updated_at": iso(NOW - 20 if n == 4 else NOW - 7200 + n * 300)})
            return json.dumps({"tasks": tasks}).encode()
        if path == "/events":
            kinds = (("account.cooldown", "cooldown: FLOOD_WAIT_420 for 420 s (set_photo_jpg)", 20),
                     ("task.failed", "set_photo_jpg failed: FLOOD_WAIT_420", 21),
                     ("health.checked", "frozen since 2026-01-12", 3600),
                     ("task.done", "update_name done", 6600))
            return json.dumps({"events": [
                {"id": 900 - n, "at": iso(NOW - ago), "kind": kind, "account_id": 7, "task_id": None,
                 "quota_id": None, "message": message, "data": {}}
                for n, (kind, message, ago) in enumerate(kinds)]}).encode()
        raise self._not_running()  # the polls of what this recording has not (proxies): as if offline


@pytest.fixture
def app(monkeypatch: pytest.MonkeyPatch) -> FleetApp:
    monkeypatch.setenv("TZ", "UTC")  # event times are shown in local time
    time.tzset()
    return FleetApp(Path("/nonexistent/tgdaemon.sock"), clock=lambda: NOW, client=Recording())


def loaded(*keys: str) -> Callable[[Pilot[None]], Any]:
    async def run_before(pilot: Pilot[None]) -> None:
        app = pilot.app
        assert isinstance(app, FleetApp)
        for _ in range(500):
            if app.model.accounts and len(app.model.views) >= 2 and app.model.nodes:
                break
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
    assert snap_compare(app, terminal_size=(80, 24), run_before=loaded("tab", "tab", "tab"))


def test_nodes_view(app: FleetApp, snap_compare: Any) -> None:
    assert snap_compare(app, terminal_size=(100, 12), run_before=loaded("left_square_bracket"))


@pytest.mark.parametrize("size", [(120, 12), (80, 24), (160, 45)], ids=["120x12", "80x24", "160x45"])
def test_proxies_view(monkeypatch: pytest.MonkeyPatch, snap_compare: Any, size: tuple[int, int]) -> None:
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    app = FleetApp(Path("/nonexistent/tgdaemon.sock"), clock=lambda: NOW, client=RecordingWithProxies())

    async def run_before(pilot: Pilot[None]) -> None:
        for _ in range(500):
            if app.model.accounts and app.model.proxies and app.model.nodes:
                break
            await pilot.pause(0.01)
        await pilot.press("P")
        await pilot.pause()
        app.repaint()
        await pilot.pause()

    assert snap_compare(app, terminal_size=size, run_before=run_before)


def tasks_loaded(*keys: str) -> Callable[[Pilot[None]], Any]:
    """The tasks view (``T``) once its first poll is in, then ``keys``; a detail once its attempts are in."""
    from tgtui.screens.tasks import TaskDetailScreen, TasksScreen

    async def run_before(pilot: Pilot[None]) -> None:
        app = pilot.app
        assert isinstance(app, FleetApp)
        for _ in range(500):
            if app.model.accounts:
                break
            await pilot.pause(0.01)
        await pilot.press("T")
        for _ in range(500):
            if isinstance(app.screen, TasksScreen) and app.screen.tasks:
                break
            await pilot.pause(0.01)
        app.repaint()
        await pilot.pause()
        await pilot.press(*keys)
        for _ in range(500):
            if not (isinstance(app.screen, TaskDetailScreen) and app.screen.detail is None):
                break
            await pilot.pause(0.01)
        await pilot.pause()

    return run_before



def detail_app(monkeypatch: pytest.MonkeyPatch) -> FleetApp:
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    return FleetApp(Path("/nonexistent/tgdaemon.sock"), clock=lambda: NOW, client=RecordingWithDetail())


def opened(open_: Callable[[FleetApp], None], ready: Callable[[FleetApp], bool]) -> Callable[[Pilot[None]], Any]:
    async def run_before(pilot: Pilot[None]) -> None:
        app = pilot.app
        assert isinstance(app, FleetApp)
        for _ in range(500):
            if app.model.accounts and len(app.model.views) >= 2 and app.model.nodes:
                break
            await pilot.pause(0.01)
        app.repaint()  # the view under the detail, drawn with every row before it is covered
        await pilot.pause()
        open_(app)
        for _ in range(500):
            if ready(app):
                break
            await pilot.pause(0.01)
        await pilot.pause()

    return run_before


@pytest.mark.parametrize("size", [(160, 45), (80, 24)])
def test_tasks_view(app: FleetApp, snap_compare: Any, size: tuple[int, int]) -> None:
    assert snap_compare(app, terminal_size=size, run_before=tasks_loaded("space", "j", "j"))


@pytest.mark.parametrize("size", [(160, 45), (80, 24)])
def test_task_detail(app: FleetApp, snap_compare: Any, size: tuple[int, int]) -> None:
    assert snap_compare(app, terminal_size=size, run_before=tasks_loaded("slash", *"status:failed kind:setup", "enter",
                                                                                "enter"))


def _account_ready(app: FleetApp) -> bool:
    from textual.widgets import DataTable
    return bool(app.screen.query(DataTable)) and app.screen.query_one("#events", DataTable).row_count == 4


def _quota_ready(app: FleetApp) -> bool:
    from textual.widgets import DataTable
    return bool(app.screen.query(DataTable)) and app.screen.query_one("#measurements", DataTable).row_count > 0


@pytest.mark.parametrize("size", [(80, 24), (160, 45)], ids=["80x24", "160x45"])
def test_account_detail(monkeypatch: pytest.MonkeyPatch, snap_compare: Any, size: tuple[int, int]) -> None:
    """A cooled-down, frozen account: state and why first, its last error with the failed task's message,
    every time in full with how long ago; nothing cut at 80x24."""
    assert snap_compare(detail_app(monkeypatch), terminal_size=size,
                        run_before=opened(lambda app: app.open_account(7), _account_ready))


@pytest.mark.parametrize("size", [(80, 24), (160, 45)], ids=["80x24", "160x45"])
def test_quota_detail(monkeypatch: pytest.MonkeyPatch, snap_compare: Any, size: tuple[int, int]) -> None:
    """A post quota: its progress bar with left/total, and its views chart with a scale and a time axis."""
    assert snap_compare(detail_app(monkeypatch), terminal_size=size,
                        run_before=opened(lambda app: app.open_quota(1), _quota_ready))


@pytest.mark.parametrize("size", [(80, 24), (160, 45)], ids=["80x24", "160x45"])
def test_pulse_view(app: FleetApp, snap_compare: Any, size: tuple[int, int]) -> None:
    """Tasks per minute and queue over the hour, with labelled axes; a queue that did nothing is one line."""
    def ready(app: FleetApp) -> bool:
        if app.model.pulse is None:
            return False
        app.repaint()
        return True

    assert snap_compare(app, terminal_size=size, run_before=opened(lambda app: app.switch_mode("pulse"), ready))


# Every list view at 80x24, the smallest terminal the dashboard is laid out for: the columns that go are the
# ones meant to go first, and no title is cut by the sort arrow.

def test_quotas_view_80x24(app: FleetApp, snap_compare: Any) -> None:
    assert snap_compare(app, terminal_size=(80, 24), run_before=loaded("tab"))


def test_nodes_view_80x24(app: FleetApp, snap_compare: Any) -> None:
    assert snap_compare(app, terminal_size=(80, 24), run_before=loaded("left_square_bracket"))


def test_accounts_view_80x24_sorted_by_cooldown_descending(app: FleetApp, snap_compare: Any) -> None:
    """The sorted column takes the room for its arrow from the others; the command prompt sorted it."""
    assert snap_compare(app, terminal_size=(80, 24),
                        run_before=loaded("colon", *"sort cooldown!", "enter", "g"))


# And at 160x45, the size the README's tmux session uses.

@pytest.mark.parametrize("keys", [(), ("tab",), ("tab", "tab", "tab"), ("left_square_bracket",)],
                         ids=["accounts", "quotas", "events", "nodes"])
def test_list_view_160x45(app: FleetApp, snap_compare: Any, keys: tuple[str, ...]) -> None:
    assert snap_compare(app, terminal_size=(160, 45), run_before=loaded(*keys))


