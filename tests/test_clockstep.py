"""Clock steps (design 10, issue 10 item 6): a step of the wall clock stalls nothing for longer than the thing's
own length, and a forward step fails no lease that is still being worked within its length.

The wall clock is stepped with the one seam, ``timeutil.step_wall_clock``, as ``date -s`` would step the host's;
the steady clock the detector compares it with is left alone, as it is by a real step. Real SQLite stores, the
real ``Generator``/``Leases`` on the simulator, and an in-process daemon over its real socket and HTTP port.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import aiohttp
import pytest
from test_pulled import SLACK, make_cfg, world
from test_quotas import until

from tgdaemon import clockstep, timeutil
from tgdaemon.quotas.leases import Leases
from tgdaemon.store import Reaped, Store
from tgdaemon.timeutil import now

STEP = 600.0
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

@pytest.mark.parametrize("step", [-STEP, STEP])
async def test_a_step_keeps_every_deadline_its_remaining_length(store: Store, step: float,
                                                                 step_clock: Callable[[float], None]) -> None:
    """Each kind of deadline still ahead keeps the length it had left; one already passed stays passed."""
    store.clock = clockstep.ClockSteps()
    w = await world(store, workers=3)
    qid = await w.add_quota(interval=60)
    assert (await w.tick()).tasks == 1
    [task] = await w.pull()  # a leased task and its lock
    a, b, c = w.workers
    at = now()
    await w.sql("UPDATE accounts SET cooldown_until = ?, cooldown_reason = 'pace' WHERE id = ?", (at + 50, b))
    await w.sql("UPDATE accounts SET cooldown_until = ?, cooldown_reason = 'pace' WHERE id = ?", (at - 30, c))
    await w.sql("INSERT INTO account_tasks (account_id, task_type, payload_json, status, retry_at, created_at,"
                " updated_at) VALUES (?, 'update_name', '{}', 'retry', ?, ?, ?)", (c, at + 300, at, at))
    await w.sql("UPDATE quotas SET posts_fetched_at = ?", (at - 100,))  # a TTL's start keeps its age
    before = {"next_run": ahead((await w.quota(qid))["next_run_at"]),
              "snapshot": ahead((await w.quota(qid))["posts_fetched_at"]),
              "lease": ahead((await w.task(task.task_id))["lease_expires_at"]),
              "lock": ahead((await w.lock(task.account_id))["expires_at"]),  # type: ignore[index]
              "cooldown": ahead((await w.account(b))["cooldown_until"]),
              "retry": ahead((await w.one("SELECT retry_at FROM account_tasks"))[0])}

    step_clock(step)
    async with store.tx():  # any write transaction follows the step first
        pass

    after = {"next_run": ahead((await w.quota(qid))["next_run_at"]),
             "snapshot": ahead((await w.quota(qid))["posts_fetched_at"]),
             "lease": ahead((await w.task(task.task_id))["lease_expires_at"]),
             "lock": ahead((await w.lock(task.account_id))["expires_at"]),  # type: ignore[index]
             "cooldown": ahead((await w.account(b))["cooldown_until"]),
             "retry": ahead((await w.one("SELECT retry_at FROM account_tasks"))[0])}
    assert all(abs(after[k] - before[k]) < SLACK for k in before), (before, after)
    assert ahead((await w.account(c))["cooldown_until"]) < 0  # passed before the step, still passed
    [event] = await w.rows("SELECT * FROM events WHERE kind = 'clock.step'")
    assert str(int(step)) in event["message"]
    async with store.tx():  # followed once: the next transaction moves nothing again
        pass
    assert len(await w.rows("SELECT * FROM events WHERE kind = 'clock.step'")) == 1


@pytest.mark.parametrize("reaper_first", [True, False])
async def test_a_forward_step_fails_no_lease_still_within_its_length(store: Store, reaper_first: bool,
                                                                    step_clock: Callable[[float], None]) -> None:
    """Stepped forward by ten times the lease: the reaper returns nothing and the report is applied,
    whichever of the two is the first to write after the step."""
    store.clock = clockstep.ClockSteps()
    w = await world(store, lease_seconds=60)
    qid = await w.add_quota(quantity=5)
    assert (await w.tick()).tasks == 1
    [task] = await w.pull()

    step_clock(STEP)
    if reaper_first:
        assert await w.leases.reap() == Reaped()  # the reaper's own transaction follows the step first
    assert await w.done(task) == "applied"
    assert await w.leases.reap() == Reaped()
    assert (await w.task(task.task_id))["status"] == "done"
    assert (await w.quota(qid))["quantity_left"] == 4


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


async def test_start_up_bounds_deadlines_further_ahead_than_their_length(store: Store) -> None:
    """A data dir whose times were written 10 days ahead (a reboot, then the clock set right): every wait is
    due and every hold lasts at most its own length; deadlines within their length are left alone."""
    cfg = make_cfg(lease_seconds=60, max_lease_seconds=600, pace_seconds=60)
    w = await world(store, workers=4)
    qid = await w.add_quota(interval=60)
    assert (await w.tick()).tasks == 1
    [task] = await w.pull()
    a, b, c, d = w.workers
    far = now() + 10 * 86400
    await w.sql("UPDATE quotas SET next_run_at = ?, posts_fetched_at = ?", (far, far))
    await w.sql("UPDATE tasks SET lease_expires_at = ?", (far,))
    await w.sql("UPDATE account_locks SET expires_at = ?", (far,))
    await w.sql("UPDATE accounts SET cooldown_until = ?, cooldown_reason = 'pace', cooldown_seconds = 60"
                " WHERE id = ?", (far, b))
    await w.sql("UPDATE accounts SET cooldown_until = ?, cooldown_reason = 'FLOOD_WAIT', cooldown_seconds = 3600"
                " WHERE id = ?", (now() + 3000, c))  # within its length: stays
    await w.sql("INSERT INTO account_tasks (account_id, task_type, payload_json, status, retry_at, created_at,"
                " updated_at) VALUES (?, 'update_name', '{}', 'retry', ?, 0, 0)", (d, far))

    await clockstep.start(cfg, store)  # no offset recorded on this boot: nothing to measure a step by

    assert ahead((await w.quota(qid))["next_run_at"]) <= 0
    assert ahead((await w.quota(qid))["posts_fetched_at"]) <= -cfg.quotas.posts_snapshot_ttl_hours * 3600  # stale
    assert ahead((await w.account(b))["cooldown_until"]) <= 0
    assert abs(ahead((await w.account(c))["cooldown_until"]) - 3000) < SLACK
    assert ahead((await w.one("SELECT retry_at FROM account_tasks WHERE account_id = ?", (d,)))[0]) <= 0
    assert ahead((await w.task(task.task_id))["lease_expires_at"]) <= 600 + SLACK
    lease_lock = Leases(cfg, store).lock_seconds(600)
    assert ahead((await w.lock(task.account_id))["expires_at"]) <= lease_lock + SLACK  # type: ignore[index]
    assert (await w.one("SELECT data_json FROM events WHERE kind = 'clock.clamped'"))[0]
    assert await w.done(task) == "applied"  # the lease still holds
    assert (await w.tick()).tasks == 1  # and the quota, due, runs again


async def _at_least(count: Callable[[], Any], n: int) -> bool:
    return await count() >= n


async def _clock_event(store: Store) -> bool:
    return bool(list(await store.read("SELECT 1 FROM events WHERE kind = 'clock.step'")))


def test_the_steady_clock_ignores_the_seam(step_clock: Callable[[float], None]) -> None:
    """The seam steps the wall clock only, as a real step does: the detector has something to compare."""
    wall, steady = now(), timeutil.steady()
    step_clock(-STEP)
    assert now() < wall and timeutil.steady() >= steady
    assert abs(time.time() - STEP - now()) < SLACK


async def test_an_unreadable_clock_record_is_taken_for_a_reboot(store: Store) -> None:
    """A hand-edited or foreign ``meta`` row does not stop the start: nothing is measured, the bound applies."""
    async with store.tx() as tx:
        await store.set_meta(tx, clockstep.META_KEY, "[not json")
    clock = await clockstep.start(make_cfg(), store)
    assert abs(clock.offset - (now() - timeutil.steady())) < SLACK
    assert "offset" in (await store.get_meta(clockstep.META_KEY) or "")
