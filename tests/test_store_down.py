"""The PostgreSQL server lost under a running daemon, and back: the daemon waits, says so, and goes on.

A private server of this module's own (stopping the session's would stop every other test's database):
a real daemon subprocess on it, providers pulling and reporting over HTTP, setup running, and the
dashboard (Pilot) watching. The server is stopped for a few seconds, then started again on the same data
directory. What must hold: the daemon process stays; while down, status says so, the provider gets 503s
(never a 500, never a request past its timeout), the dashboard shows it, the log has no traceback and
a bounded number of lines; once back, work goes on, and every report the provider heard `applied` is
in the database exactly once, with counters to match.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pgtest
import pytest
from daemon_proc import DaemonProc, Fleet, fleet
from textual.pilot import Pilot

from tgdaemon.control.client import ControlClient
from tgtui.app import FleetApp
from tgtui.widgets.header import FleetHeader, OfflineBanner

ACCOUNTS = 60
QUOTAS = 20
WORKERS = 3
DOWN_SECONDS = 4.0  # longer than a few probes, shorter than the leases (so some reports come back stale, some not)
WAIT_SECONDS = 30.0  # any one wait below: the longest wait between probes is 10 s
REQUEST_TIMEOUT = 10.0  # no request may take longer, down or not
CONFIG = """
[quotas]
generate_interval_seconds = 0.2
pace_seconds = 0
local_concurrency = 0
reaper_interval_seconds = 0.5
lease_seconds = 6
daily_cap = 1000000
[setup]
enabled = true
dispatch_interval_seconds = 1
[setup.queues]
fast_concurrency = 2
[setup.profile]
first_name = "Store"
last_name = "Down"
[simulator]
probe_fraction = 0.05
dead_fraction = 0.0
flood_wait_rate = 0.0
peer_flood_rate = 0.0
transient_rate = 0.0
"""
SLOW_SIM = {"TGFLEET_SIMULATOR__LATENCY_MIN_MS": "20", "TGFLEET_SIMULATOR__LATENCY_MAX_MS": "40"}


@pytest.fixture(scope="module")
def restartable() -> Iterator[pgtest.Restartable]:
    with pgtest.restartable_server() as server:
        yield server


@dataclass
class Provider:
    """Pulls and reports; a refused report is sent again until it is answered, as a provider must."""

    http: aiohttp.ClientSession
    base: str
    token: str
    applied: list[int] = field(default_factory=list)  # task ids, in the order the daemon said `applied`
    outcomes: dict[int, list[str]] = field(default_factory=dict)  # task id -> every outcome it was answered
    refused: set[int] = field(default_factory=set)  # tasks whose report got a 503 at least once
    statuses: list[int] = field(default_factory=list)
    bodies_5xx: list[tuple[Any, str | None]] = field(default_factory=list)  # (body, Retry-After)
    timeouts: int = 0

    async def post(self, route: str, body: Any) -> tuple[int, Any]:
        try:
            async with self.http.post(f"{self.base}/api/provider/telegram/tasks/{route}", json=body,
                                      headers={"Authorization": f"Bearer {self.token}"}) as resp:
                self.statuses.append(resp.status)
                answer = await resp.json(content_type=None)
                if resp.status >= 500:
                    self.bodies_5xx.append((answer, resp.headers.get("Retry-After")))
                return resp.status, answer
        except TimeoutError:
            self.timeouts += 1
            return 0, None

    async def report(self, reports: list[dict[str, Any]]) -> None:
        for _ in range(int(2 * WAIT_SECONDS / 0.2)):  # until answered (bounded)
            status, answer = await self.post("report", reports)
            if status == 200:
                for result in answer["results"]:
                    self.outcomes.setdefault(result["task_id"], []).append(result["outcome"])
                    if result["outcome"] == "applied":
                        self.applied.append(result["task_id"])
                return
            self.refused.update(r["task_id"] for r in reports)
            await asyncio.sleep(0.2)
        pytest.fail(f"a report was not answered within {2 * WAIT_SECONDS:.0f} s", pytrace=False)

    async def work(self, stop: asyncio.Event, until: float) -> None:
        for _ in range(100_000):
            if stop.is_set() or time.monotonic() > until:
                return
            status, body = await self.post("pull", {"limit": 10})
            if status != 200:
                await asyncio.sleep(0.2)
                continue
            reports = [{"status": "done", "task_id": t["task_id"], "lease_token": t["lease_token"],
                        "result": {"subscribers": 1000 + t["task_id"], "title": "Markets"}} for t in body["tasks"]]
            if reports:
                await self.report(reports)
            else:
                await asyncio.sleep(0.02)


async def prepare(daemon: DaemonProc) -> tuple[str, str]:
    """A provider owning every worker account, and channel_stats quotas for it; (http address, token)."""
    async with ControlClient(daemon.socket_path, timeout=30) as control:
        token = (await control.request("POST", "/providers", body={"name": "p1"}))["token"]
        ids = [a["id"] for a in await control.all_accounts() if not a["is_probe"]]
        await control.request("POST", "/accounts/assign", body={"ids": ids, "executor": "p1"})
        for i in range(QUOTAS):
            await control.request("POST", "/quotas", body={
                "name": f"subs {i}", "target": "@tgfleet_markets", "action": "channel_stats", "orders": 1_000_000,
                "interval_seconds": 1, "expires_in_seconds": 86400})
        return (await control.status())["http"], token


async def until(pilot: Pilot[None], check: Any, what: str, daemon: DaemonProc, load: asyncio.Future[Any],
                seconds: float = WAIT_SECONDS) -> None:
    """Let everything run (the app, the providers) until ``check()`` holds; bounded."""
    for _ in range(int(seconds / 0.1) + 1):
        if check():
            return
        assert daemon.returncode is None, f"the daemon exited ({daemon.returncode}):\n{daemon.log()[-4000:]}"
        if load.done():
            pytest.fail(f"the providers stopped ({load.exception()!r}) before {what}\n--- daemon log:\n"
                        f"{daemon.log()[-4000:]}", pytrace=False)
        await pilot.pause(0.1)
    pytest.fail(f"not within {seconds:.0f} s: {what}\n--- daemon log:\n{daemon.log()[-4000:]}", pytrace=False)


def status_json(fl: Fleet) -> dict[str, Any]:
    done = fl.cli("status", "--socket", str(fl.socket_path), "--json")
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr + fl.daemons[-1].log()[-4000:]
    return json.loads(done.stdout)


def applied_counter(metrics: str) -> float:
    found = re.search(r'^tgfleet_reports_total\{outcome="applied",status="done"\} (\S+)$', metrics, re.M)
    return float(found.group(1)) if found else 0.0


def invariants(server: pgtest.PgServer, database: str, provider_applied: list[int], refused: set[int],
               outcomes: dict[int, list[str]]) -> None:
    """Read straight from the database once the daemon has stopped."""
    def one(sql: str) -> Any:
        return server.query(database, sql)[0][0]

    done = {r[0]: r[1] for r in server.query(database, "SELECT t.id, (SELECT count(*) FROM measurements m"
                                                        " WHERE m.task_id = t.id) FROM tasks t WHERE t.status = 'done'")}
    assert len(provider_applied) == len(set(provider_applied)), "a task was answered `applied` twice"
    lost = [t for t in provider_applied if t not in done]
    assert not lost, f"{len(lost)} reports answered `applied` are not done in the database: {lost[:10]}"
    assert all(n == 1 for n in done.values()), "a done task has other than one measurement"
    # Done without the provider hearing `applied`: only a report whose answer was lost with the database
    # (it committed, then the connection went): its retry was answered `duplicate`.
    unheard = set(done) - set(provider_applied)
    assert all(t in refused and "duplicate" in outcomes.get(t, []) for t in unheard), sorted(unheard)[:10]
    assert one("SELECT count(*) FROM measurements") == len(done)
    assert one("SELECT COALESCE(SUM(used), 0) FROM usage") == len(done)
    for quota, total, left, finished in server.query(database, "SELECT id, quantity_total, orders_left, (SELECT"
                                                     " count(*) FROM tasks t WHERE t.subject_id = q.id AND t.status ="
                                                     " 'done') FROM quotas q"):
        assert left == total - finished, (quota, total, left, finished)
    assert one("SELECT count(*) FROM (SELECT account_id FROM tasks WHERE status IN ('pending', 'leased')"
               " GROUP BY account_id HAVING count(*) > 1) x") == 0, "an account holds two open tasks"
    assert one("SELECT count(*) FROM account_tasks WHERE status = 'running'") == 0


async def test_the_database_lost_and_back_under_load(restartable: pgtest.Restartable) -> None:
    admin = restartable.admin
    database = admin.create()
    with fleet(store=admin.url(database)) as fl:
        fl.config.write_text(CONFIG)
        daemon = fl.start(accounts=ACCOUNTS, env=SLOW_SIM)
        await daemon.await_ready()
        http_at, token = await prepare(daemon)
        app = FleetApp(fl.socket_path)
        timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT)
        async with app.run_test(size=(160, 40)) as pilot, aiohttp.ClientSession(timeout=timeout) as http:
            header, banner = app.screen.query_one(FleetHeader), app.screen.query_one(OfflineBanner)
            providers = [Provider(http, f"http://{http_at}", token) for _ in range(WORKERS)]
            stop = asyncio.Event()
            load = asyncio.gather(*(p.work(stop, time.monotonic() + 6 * WAIT_SECONDS) for p in providers))
            try:
                def applied() -> int:
                    return sum(len(p.applied) for p in providers)

                await until(pilot, lambda: applied() >= 30 and app.model.accounts, "30 reports applied", daemon,
                            load)
                setup_before = status_json(fl)["tasks"]["setup"].get("done", 0)

                await asyncio.to_thread(restartable.stop)
                await until(pilot, lambda: "the database cannot be reached" in daemon.log(), "the line saying so",
                            daemon, load)
                down = await asyncio.to_thread(status_json, fl)
                assert down["store"]["down"] and database in down["store"]["down"] and down["store"]["down_since"]
                assert down["accounts"] and sum(down["accounts"].values()) == ACCOUNTS  # from memory
                said = fl.cli("status", "--socket", str(fl.socket_path), env={"COLUMNS": "400"})
                assert said.returncode == 0 and "store DOWN" in said.stdout, said.stdout + said.stderr
                refused = fl.cli("accounts", "list", "--socket", str(fl.socket_path))
                assert refused.returncode != 0 and "Traceback" not in refused.stderr
                assert "the database cannot be reached" in refused.stderr and len(refused.stderr.splitlines()) == 1
                async with http.get(f"http://{http_at}/healthz") as resp:
                    assert resp.status == 503 and resp.headers["Retry-After"].isdigit()
                    health = await resp.json()
                    assert health["ok"] is False and database in health["store_down"]
                await until(pilot, lambda: app.model.store_down is not None and banner.display
                            and "store down:" in str(banner.content) and "store DOWN" in str(header.content),
                            "the dashboard showing the store down", daemon, load)
                applied_while_down = applied()
                await pilot.pause(DOWN_SECONDS)
                assert daemon.returncode is None

                await asyncio.to_thread(restartable.start)
                await until(pilot, lambda: "the database is back after" in daemon.log(), "the line saying it is back",
                            daemon, load)
                assert (await asyncio.to_thread(status_json, fl))["store"]["down"] is None
                await until(pilot, lambda: applied() >= applied_while_down + 30, "30 more reports applied", daemon, load)
                await until(pilot, lambda: app.model.store_down is None and not banner.display,
                            "the dashboard showing the store back", daemon, load)
                await until(pilot, lambda: status_json(fl)["tasks"]["setup"].get("done", 0) > setup_before,
                            "setup going on", daemon, load)
                async with http.get(f"http://{http_at}/healthz") as resp:
                    assert resp.status == 200 and (await resp.json())["ok"] is True
            finally:
                stop.set()  # each provider ends at its next round, its last report answered
                ended = await asyncio.wait_for(asyncio.gather(load, return_exceptions=True), 3 * WAIT_SECONDS)
            assert not isinstance(ended[0], BaseException), f"{ended[0]!r}\n{daemon.log()[-4000:]}"
            async with http.get(f"http://{http_at}/metrics") as resp:
                counted = applied_counter(await resp.text())
        code = await daemon.astop()
        log = daemon.log()
    try:
        assert code == 0, log[-4000:]
        assert "Traceback" not in log, log[-4000:]
        assert log.count("the database cannot be reached") == 1 and log.count("the database is back after") == 1, \
            log[-4000:]
        outage = log[log.index("the database cannot be reached"):log.index("the database is back after")]
        assert len(outage.splitlines()) <= 10, outage  # no line per attempt, per request, per side task
        assert not [line for line in log.splitlines() if " ERROR " in line], log[-4000:]
        statuses = [s for p in providers for s in p.statuses]
        assert 503 in statuses and 500 not in statuses, [b for p in providers for b in p.bodies_5xx][:3]
        assert all(body["error"]["code"] == "store_unavailable" and retry and retry.isdigit()
                   for p in providers for body, retry in p.bodies_5xx), [p.bodies_5xx[:2] for p in providers]
        assert sum(p.timeouts for p in providers) == 0, "a request took longer than its timeout"
        provider_applied = [t for p in providers for t in p.applied]
        assert counted == len(provider_applied), (counted, len(provider_applied))
        outcomes: dict[int, list[str]] = {}
        for p in providers:
            for task, said_ in p.outcomes.items():
                outcomes.setdefault(task, []).extend(said_)
        invariants(admin, database, provider_applied, set().union(*(p.refused for p in providers)), outcomes)
    finally:
        admin.drop(database)


async def test_a_stop_while_the_database_is_down_is_a_prompt_clean_exit(restartable: pgtest.Restartable) -> None:
    """SIGTERM while the daemon waits for its database: it does not wait for it to stop."""
    admin = restartable.admin
    database = admin.create()
    try:
        with fleet(store=admin.url(database)) as fl:
            daemon = fl.start(accounts=10)
            await daemon.await_ready()
            await asyncio.to_thread(restartable.stop)
            try:
                for _ in range(int(WAIT_SECONDS / 0.1)):  # a side task's next write finds it gone (bounded)
                    if "the database cannot be reached" in daemon.log():
                        break
                    await asyncio.sleep(0.1)
                assert "the database cannot be reached" in daemon.log(), daemon.log()[-3000:]
                assert await daemon.astop() == 0, daemon.log()[-3000:]
            finally:
                await asyncio.to_thread(restartable.start)
            log = daemon.log()
            assert "Traceback" not in log and "tgdaemon stopped" in log, log[-3000:]
            assert not [line for line in log.splitlines() if " ERROR " in line], log[-3000:]
    finally:
        admin.drop(database)
