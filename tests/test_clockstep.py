"""Clock steps (design 10, issue 10 item 6): a step of the wall clock stalls nothing for longer than the thing's
own length, and a forward step fails no lease that is still being worked within its length.

The wall clock is stepped with the one seam, ``timeutil.step_wall_clock``, as ``date -s`` would step the host's;
the steady clock the detector compares it with is left alone, as it is by a real step. An in-process daemon
over its real socket and HTTP port; what the store does with a step (on both drivers) is in
tests/store/test_clock.py.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import aiohttp
import pytest
from test_quotas import until

from tgdaemon import timeutil
from tgdaemon.store import Reaped
from tgdaemon.timeutil import now

STEP = 600.0
SLACK = 5.0  # seconds of tolerance when comparing a stored time with "now + x"
WAIT_SECONDS = 15.0
FAST = {"generate_interval_seconds": 0.1, "reaper_interval_seconds": 0.1}
QUIET_SIM = {"latency_min_ms": 0, "latency_max_ms": 0, "dead_fraction": 0, "flood_wait_rate": 0,
             "peer_flood_rate": 0, "transient_rate": 0}


@pytest.fixture
def step_clock() -> Iterator[Callable[[float], None]]:
    """Step the wall clock; it is stepped back to true time when the test ends (after its daemon stopped)."""
    total = 0.0

    def step(seconds: float) -> None:
        nonlocal total
        timeutil.step_wall_clock(seconds)
        total += seconds

    yield step
    timeutil.step_wall_clock(-total)


def ahead(value: float | None) -> float:
    """How far a stored time lies ahead of now (negative: passed)."""
    assert value is not None
    return value - now()


# --- while running: the detector moves the deadlines ----------------------------------------------------------------

async def test_a_backward_step_keeps_generating_and_pacing_ends_within_its_length(
        daemon_factory: Any, step_clock: Callable[[float], None]) -> None:
    """The incident: stepped back 600 s while quotas run. Generation goes on within the quota's interval
    and every pace cooldown ends within pace_seconds (they were all 570 s ahead before)."""
    pace = 30.0
    async with daemon_factory(quotas={**FAST, "pace_seconds": pace}, simulator=QUIET_SIM) as (daemon, client):
        store = daemon.runtime.store
        quota = await client.request("POST", "/quotas", body={
            "name": "subs", "target": "@tgfleet_news", "action": "channel_stats", "orders": 100_000,
            "interval_seconds": 1, "expires_in_seconds": 86400})

        async def done_tasks() -> int:
            return next(iter(await store.read("SELECT COUNT(*) FROM tasks WHERE status = 'done'")))[0]

        await until(lambda: _at_least(done_tasks, 2), WAIT_SECONDS)
        step_clock(-STEP)
        made = await done_tasks()
        await until(lambda: _at_least(done_tasks, made + 3), WAIT_SECONDS)  # stalled for 600 s before
        assert await _clock_event(store)

        [q] = await store.read("SELECT next_run_at, interval_seconds FROM quotas WHERE id = ?", (quota["id"],))
        assert ahead(q["next_run_at"]) <= q["interval_seconds"] + SLACK
        paced = [r[0] for r in await store.read("SELECT cooldown_until FROM accounts WHERE cooldown_until > ?",
                                                (now(),))]
        assert paced and max(ahead(t) for t in paced) <= pace + SLACK


async def test_a_forward_step_over_http_leaves_the_providers_lease_alone(
        daemon_factory: Any, step_clock: Callable[[float], None]) -> None:
    """A provider holds a lease; the clock jumps 600 s forward; its report within the lease is applied."""
    async with daemon_factory(quotas={**FAST, "local_concurrency": 0, "lease_seconds": 60},
                              simulator=QUIET_SIM) as (daemon, client), aiohttp.ClientSession() as http:
        store = daemon.runtime.store
        token = (await client.request("POST", "/providers", body={"name": "acme"}))["token"]
        workers = [r[0] for r in await store.read("SELECT id FROM accounts WHERE is_probe = 0")]
        await client.request("POST", "/accounts/assign", body={"ids": workers, "executor": "acme"})
        await client.request("POST", "/quotas", body={
            "name": "subs", "target": "@tgfleet_news", "action": "channel_stats", "orders": 10,
            "interval_seconds": 3600, "expires_in_seconds": 86400})
        base, headers = f"http://{daemon.runtime.http_bound}/api/provider/telegram/tasks", {
            "Authorization": f"Bearer {token}"}

        async def pulled() -> list[dict[str, Any]]:
            async with http.post(f"{base}/pull", json={"limit": 1}, headers=headers) as resp:
                assert resp.status == 200
                return (await resp.json())["tasks"]

        [task] = await until(pulled, WAIT_SECONDS)
        step_clock(STEP)
        for _ in range(3):  # passes of the reaper, besides its side task's: each follows the step first
            assert await daemon.runtime.leases.reap() == Reaped()
        async with http.post(f"{base}/report", headers=headers, json={
                "status": "done", "task_id": task["task_id"], "lease_token": task["lease_token"],
                "result": {"subscribers": 7}}) as resp:
            assert resp.status == 200
            assert (await resp.json())["results"] == [{"task_id": task["task_id"], "outcome": "applied"}]
        assert not list(await store.read("SELECT * FROM events WHERE kind = 'task.expired'"))
        assert await _clock_event(store)


# --- while down: measured on the same boot, bounded after a reboot -------------------------------------------------

async def test_a_step_while_down_on_the_same_boot_is_followed_at_start(
        daemon_factory: Any, step_clock: Callable[[float], None]) -> None:
    """Stopped, the clock set back 600 s, started again: a 1 h flood wait keeps its hour (not clamped,
    not 600 s longer) and a quota's next run keeps its place within its interval."""
    async with daemon_factory(simulator=QUIET_SIM) as (daemon, client):
        store = daemon.runtime.store
        at = now()
        async with store.tx() as tx:
            await tx.execute("UPDATE accounts SET cooldown_until = ?, cooldown_reason = 'FLOOD_WAIT',"
                             " cooldown_seconds = 3600 WHERE id = 5", (at + 3000,))
    step_clock(-STEP)
    async with daemon_factory(simulator=QUIET_SIM) as (daemon, client):
        store = daemon.runtime.store
        [a] = await store.read("SELECT cooldown_until FROM accounts WHERE id = 5")
        assert abs(ahead(a[0]) - 3000) < SLACK
        [event] = await store.read("SELECT message FROM events WHERE kind = 'clock.step'")
        assert f"-{int(STEP)}" in event[0]


async def _at_least(count: Callable[[], Any], n: int) -> bool:
    return await count() >= n


async def _clock_event(store: Any) -> bool:
    return bool(list(await store.read("SELECT 1 FROM events WHERE kind = 'clock.step'")))


def test_the_steady_clock_ignores_the_seam(step_clock: Callable[[float], None]) -> None:
    """The seam steps the wall clock only, as a real step does: the detector has something to compare."""
    wall, steady = now(), timeutil.steady()
    step_clock(-STEP)
    assert now() < wall and timeutil.steady() >= steady
    assert abs(time.time() - STEP - now()) < SLACK
