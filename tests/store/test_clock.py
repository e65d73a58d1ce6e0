"""Clock steps on both drivers (design 10): a step followed while running moves every stored deadline by it
(each keeps the length it had left, a passed one stays passed), a forward step fails no live lease, and at
start-up every deadline further ahead than its own length is bounded by it.

The wall clock is stepped with the one seam, ``timeutil.step_wall_clock``, as ``date -s`` would; the steady
clock the detector compares it with is left alone, as it is by a real step.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from store import backdoor
from store.world import SLACK, make_cfg, world
from tgdaemon import clockstep, timeutil
from tgdaemon.quotas.leases import Leases
from tgdaemon.store import Reaped, Store
from tgdaemon.timeutil import now

STEP = 600.0


@pytest.fixture
def step_clock() -> Iterator[Callable[[float], None]]:
    """Step the wall clock; it is stepped back to true time when the test ends."""
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
    await w.set_account(b, cooldown_until=at + 50, cooldown_reason="pace")
    await w.set_account(c, cooldown_until=at - 30, cooldown_reason="pace")
    await backdoor.insert(store, "account_tasks", account_id=c, task_type="update_name", payload_json="{}",
                          status="retry", retry_at=at + 300, created_at=at, updated_at=at)
    await backdoor.update(store, "quotas", {}, posts_fetched_at=at - 100)  # a TTL's start keeps its age

    async def deadlines() -> dict[str, float]:
        quota = await w.quota(qid)
        lock = await w.lock(task.account_id)
        assert lock is not None
        return {"next_run": ahead(quota["next_run_at"]), "snapshot": ahead(quota["posts_fetched_at"]),
                "lease": ahead((await w.task(task.task_id))["lease_expires_at"]), "lock": ahead(lock["expires_at"]),
                "cooldown": ahead((await w.account(b))["cooldown_until"]),
                "retry": ahead((await backdoor.row(store, "account_tasks"))["retry_at"])}

    before = await deadlines()
    step_clock(step)
    async with store.tx():  # any write transaction follows the step first
        pass
    after = await deadlines()
    assert all(abs(after[k] - before[k]) < SLACK for k in before), (before, after)
    assert ahead((await w.account(c))["cooldown_until"]) < 0  # passed before the step, still passed
    [event] = await backdoor.rows(store, "events", kind="clock.step")
    assert str(int(step)) in event["message"]
    async with store.tx():  # followed once: the next transaction moves nothing again
        pass
    assert len(await backdoor.rows(store, "events", kind="clock.step")) == 1


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


async def test_shift_deadlines_counts_what_it_moved(store: Store) -> None:
    """Joined to the caller's transaction; a deadline passed on both sides of the step is left alone."""
    w = await world(store, workers=2)
    qid = await w.add_quota(action="post_stats", posts=[1])
    assert (await w.tick()).tasks == 1
    a, b = w.workers
    at = now()
    await w.set_account(b, cooldown_until=at + 100)
    await w.set_account(1, cooldown_until=at - 5000)
    await backdoor.insert(store, "account_tasks", account_id=b, task_type="update_name", payload_json="{}",
                          status="retry", retry_at=at + 300, created_at=at, updated_at=at)
    async with store.tx() as tx:
        moved = await store.shift_deadlines(tx, 1000.0)
    assert moved == {"quotas": 1, "snapshots": 1, "cooldowns": 1, "locks": 1, "tasks": 1, "setup_retries": 1}
    assert abs(ahead((await w.quota(qid))["next_run_at"]) - (60 + 1000)) < SLACK
    assert abs(ahead((await w.account(b))["cooldown_until"]) - 1100) < SLACK
    assert ahead((await w.account(1))["cooldown_until"]) < -3000


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
    await backdoor.update(store, "quotas", {}, next_run_at=far, posts_fetched_at=far)
    await backdoor.update(store, "tasks", {}, lease_expires_at=far)
    await backdoor.update(store, "account_locks", {}, expires_at=far)
    await w.set_account(b, cooldown_until=far, cooldown_reason="pace", cooldown_seconds=60)
    await w.set_account(c, cooldown_until=now() + 3000, cooldown_reason="FLOOD_WAIT",
                        cooldown_seconds=3600)  # within its length: stays
    await backdoor.insert(store, "account_tasks", account_id=d, task_type="update_name", payload_json="{}",
                          status="retry", retry_at=far, created_at=0, updated_at=0)

    await clockstep.start(cfg, store)  # no offset recorded on this boot: nothing to measure a step by

    assert ahead((await w.quota(qid))["next_run_at"]) <= 0
    assert ahead((await w.quota(qid))["posts_fetched_at"]) <= -cfg.quotas.posts_snapshot_ttl_hours * 3600  # stale
    assert ahead((await w.account(b))["cooldown_until"]) <= 0
    assert abs(ahead((await w.account(c))["cooldown_until"]) - 3000) < SLACK
    assert ahead((await backdoor.row(store, "account_tasks", account_id=d))["retry_at"]) <= 0
    assert ahead((await w.task(task.task_id))["lease_expires_at"]) <= 600 + SLACK
    lease_lock = Leases(cfg, store).lock_seconds(600)
    assert ahead((await w.lock(task.account_id))["expires_at"]) <= lease_lock + SLACK  # type: ignore[index]
    [clamped] = await backdoor.rows(store, "events", kind="clock.clamped")
    assert clamped["data_json"]
    assert await w.done(task) == "applied"  # the lease still holds
    assert (await w.tick()).tasks == 1  # and the quota, due, runs again


async def test_a_normal_restart_clamps_nothing(store: Store) -> None:
    cfg = make_cfg()
    w = await world(store, workers=1)
    await w.add_quota()
    assert (await w.tick()).tasks == 1
    await w.pull()  # a live lease and its lock, a quota's next run: all within their lengths
    assert set((await store.clamp_deadlines(clockstep.maxima(cfg))).values()) == {0}
    assert await backdoor.rows(store, "events", kind="clock.clamped") == []


async def test_an_unreadable_clock_record_is_taken_for_a_reboot(store: Store) -> None:
    """A hand-edited or foreign ``meta`` row does not stop the start: nothing is measured, the bound applies."""
    async with store.tx() as tx:
        await store.set_meta(tx, clockstep.META_KEY, "[not json")
    clock = await clockstep.start(make_cfg(), store)
    assert abs(clock.offset - (now() - timeutil.steady())) < SLACK
    assert "offset" in (await store.get_meta(clockstep.META_KEY) or "")
