"""Pulled quota tasks on both drivers (design 5 and 6): eligibility, account selection, posts snapshots, the
round-robin cursor, reserve claims, counters, failures through the one policy, idempotent and fenced
reports, leases and the reaper, two providers pulling at once. See world.py for the services used."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from telethon import errors

from store import backdoor
from store.conftest import Database
from store.world import (
    NO_ACCOUNT,
    NO_POSTS,
    READ_ALREADY,
    TARGET,
    WRONG_TOKEN,
    World,
    close_to,
    newest_posts,
    world,
)
from tgdaemon.gateway.base import AccountRef, Channel
from tgdaemon.gateway.simulator import Simulator
from tgdaemon.quotas.leases import utc_day
from tgdaemon.quotas.messages import Done, ExtendRequest, Lease, LeasedTask, Observation
from tgdaemon.store import AccountEffect, Store


@pytest.fixture
async def w(store: Store) -> World:
    """The usual world: one probe (account 1), two workers (2 and 3), local executor on, no pacing."""
    return await world(store)


# --- 5.1 eligibility -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("kind", "change", "makes"), [
    ("orders", {}, 1),
    ("quantity", {}, 1),
    ("orders", {"next_run_at": None}, 1),
    ("orders", {"next_run_at": -1.0}, 1),  # times: seconds from now
    ("orders", {"expires_at": -1.0}, 0),
    ("quantity", {"quantity_left": 0}, 0),
    ("orders", {"orders_left": 0}, 0),
    ("orders", {"inspection_ok": 0}, 0),
    ("orders", {"inspection_ok": None}, 0),
    ("orders", {"paused": 1}, 0),
    ("orders", {"next_run_at": 600.0}, 0),
], ids=lambda v: repr(v) if isinstance(v, dict) else None)
async def test_eligibility(w: World, kind: str, change: dict[str, Any], makes: int) -> None:
    """Each rule of design 5.1 on its own decides whether a quota makes a task."""
    qid = await w.add_quota(**{kind: 5})
    times = ("next_run_at", "expires_at")
    await w.set_quota(qid, **{k: time.time() + v if k in times and v is not None else v for k, v in change.items()})
    made = await w.tick()
    assert made.tasks == makes
    assert len(await w.tasks(subject_id=qid)) == makes


async def test_open_tasks_count_against_what_is_left(store: Store) -> None:
    """A short interval must never make more open tasks than the quota has left to do."""
    w = await world(store, workers=4)
    one_order = await w.add_quota(orders=1)
    four_by_two = await w.add_quota(quantity=4)
    await w.set_quota(four_by_two, per_call=2)
    assert (await w.tick()).tasks == 2
    await w.due(one_order, four_by_two)
    made = await w.tick()  # 1 open x 1 covers the order; 1 open x 2 leaves room for one more
    assert made.tasks == 1
    assert len(await w.tasks(subject_id=four_by_two)) == 2
    await w.due(one_order, four_by_two)
    assert (await w.tick()).tasks == 0


# --- 5.2 account selection -------------------------------------------------------------------------------------------

Change = Callable[[World, int], Awaitable[Any]]


async def _lock(w: World, aid: int, seconds: float) -> None:
    async with w.store.tx() as tx:
        assert await w.store.take_lock(tx, aid, "setup:7", seconds)


async def _cool(w: World, aid: int, seconds: float) -> None:
    async with w.store.tx() as tx:
        await w.store.apply_account_effect(tx, aid, AccountEffect(cooldown_until=time.time() + seconds,
                                                                  cooldown_reason="FLOOD_WAIT"))


async def _used(w: World, aid: int, day: str | None, used: int) -> None:
    await backdoor.insert(w.store, "usage", account_id=aid, day=day or utc_day(), used=used)


SELECTION: list[tuple[str, Change | None, int]] = [
    ("free", None, 1),
    ("inactive", lambda w, a: w.set_account(a, is_active=0), 0),
    ("disabled", lambda w, a: w.store.disable_account(a, "X"), 0),
    ("probe", lambda w, a: w.set_account(a, is_probe=1), 0),
    ("cooling down", lambda w, a: _cool(w, a, 600), 0),
    ("cooled down", lambda w, a: _cool(w, a, -1), 1),
    ("locked", lambda w, a: _lock(w, a, 600), 0),
    ("lock expired", lambda w, a: _lock(w, a, -1), 1),  # an expired lock is free
    ("at the daily cap", lambda w, a: _used(w, a, None, 2), 0),
    ("under the daily cap", lambda w, a: _used(w, a, None, 1), 1),
    ("capped yesterday", lambda w, a: _used(w, a, "2000-01-01", 2), 1),  # yesterday's use does not count
]


@pytest.mark.parametrize(("change", "makes"), [pytest.param(c, m, id=name) for name, c, m in SELECTION])
async def test_account_selection(store: Store, change: Change | None, makes: int) -> None:
    """The only worker is chosen exactly when it is active, enabled, not a probe, not cooling down,
    its lock is free and it is under today's cap."""
    w = await world(store, workers=1, daily_cap=2)
    [worker] = w.workers
    if change:
        await change(w, worker)
    qid = await w.add_quota()
    assert (await w.tick()).tasks == makes
    if not makes:
        assert (await w.quota(qid))["last_error"] == NO_ACCOUNT


async def test_least_recently_used_first(store: Store) -> None:
    """Work spreads over the fleet: never-used accounts first, then the one idle the longest."""
    w = await world(store, workers=3)
    a, b, c = w.workers
    at = time.time()
    await w.set_account(a, last_used_at=at - 10)
    await w.set_account(c, last_used_at=at - 100)
    qids = [await w.add_quota() for _ in range(3)]
    assert (await w.tick()).tasks == 3
    chosen = {r["subject_id"]: r["account_id"] for r in await w.tasks()}
    assert [chosen[q] for q in qids] == [b, c, a]
    for x in (a, b, c):
        assert close_to((await w.account(x))["last_used_at"], time.time())


async def test_one_open_task_per_account(w: World) -> None:
    """An account with an open task is not reserved again until that task is reported."""
    await w.set_account(w.workers[1], is_active=0)
    first, second = await w.add_quota(), await w.add_quota()
    assert (await w.tick()).tasks == 1
    starved = await w.quota(second)
    assert starved["last_error"] == NO_ACCOUNT and starved["next_run_at"] <= time.time()  # still due
    [task] = await w.pull()
    assert task.subject_id == first
    assert await w.done(task) == "applied"
    assert (await w.tick()).tasks == 1
    [task] = await w.pull()
    assert task.subject_id == second and task.account_id == w.workers[0]
    assert (await w.quota(second))["last_error"] is None


async def test_an_account_is_used_once_per_post_but_channel_stats_reuse_accounts(w: World) -> None:
    """Design 5.2: never the same account twice for one (quota, post); a channel read has no post to repeat."""
    a, b = w.workers
    posts = await w.add_quota(action="post_stats", posts=[7])
    assert await w.pull() == []  # nothing before generation
    assert (await w.tick()).tasks == 1
    [first] = await w.pull()
    assert (first.post_id, first.account_id) == (7, a)
    assert await w.done(first) == "applied"
    await w.set_account(a, last_used_at=None)  # a is now least recently used
    await w.due(posts)
    assert (await w.tick()).tasks == 1
    [second] = await w.pull()
    assert (second.post_id, second.account_id) == (7, b)
    assert await w.done(second) == "applied"
    await w.due(posts)
    made = await w.tick()
    assert (made.tasks, made.no_account) == (0, 1)
    assert (await w.quota(posts))["last_error"] == READ_ALREADY

    channel = await w.add_quota()
    await w.set_account(b, is_active=0)
    for _ in range(2):
        await w.due(channel)
        assert (await w.tick()).tasks == 1
        [task] = await w.pull()
        assert task.subject_id == channel and task.account_id == a
        assert await w.done(task) == "applied"


async def test_a_post_every_free_account_has_read_moves_on_and_blocks_no_other_quota(store: Store) -> None:
    """Regression: such a quota used to stay due with its cursor stuck, first in every round, so with a small
    max_tasks_per_tick the quotas behind it never ran. Now it moves on to its next post an interval later."""
    w = await world(store, workers=1, max_tasks_per_tick=1)
    posts = await w.add_quota(action="post_stats", posts=[7, 8], interval=300)
    assert (await w.tick()).tasks == 1
    [task] = await w.pull()
    assert await w.done(task) == "applied" and task.post_id == 7
    await w.set_quota(posts, next_run_at=time.time() - 100, cursor=0)
    channel = await w.add_quota()  # due too, but later than the post quota
    made = await w.tick()
    assert (made.tasks, made.no_account) == (0, 1)
    q = await w.quota(posts)
    assert q["cursor"] == 1 and q["last_error"] == READ_ALREADY and close_to(q["next_run_at"], time.time() + 300)
    assert (await w.tick()).tasks == 1
    [task] = await w.pull()
    assert task.subject_id == channel
    assert await w.done(task) == "applied"
    await w.due(posts)
    assert (await w.tick()).tasks == 1
    [task] = await w.pull()
    assert (task.subject_id, task.post_id) == (posts, 8)


async def test_a_busy_fleet_keeps_the_quota_due(w: World) -> None:
    """No free account at all is not a reason to skip the post: the quota stays due, on the same post."""
    qid = await w.add_quota(action="post_stats", posts=[7, 8])
    for worker in w.workers:
        await w.set_account(worker, cooldown_until=time.time() + 600)
    assert (await w.tick()).tasks == 0
    q = await w.quota(qid)
    assert q["cursor"] == 0 and q["last_error"] == NO_ACCOUNT and q["next_run_at"] <= time.time()


async def test_executor_served_only_when_local_is_on_or_the_provider_not_revoked(store: Store) -> None:
    """Reserving an account nobody will pull for would only starve the quota."""
    w = await world(store, workers=1, local_concurrency=0)
    [worker] = w.workers
    qid = await w.add_quota()
    assert (await w.tick()).tasks == 0  # assigned to local, and local is off
    await store.add_provider("acme", "hash-acme")
    assert await store.assign_accounts([worker], "acme") == 1
    assert (await w.tick()).tasks == 1
    assert await w.pull("local") == []
    [task] = await w.pull("acme")
    assert await w.done(task, "acme") == "applied"
    await store.revoke_provider("acme")
    await w.due(qid)
    assert (await w.tick()).tasks == 0
    assert (await w.quota(qid))["last_error"] == NO_ACCOUNT


# --- 5.2 posts snapshots ---------------------------------------------------------------------------------------------

async def test_snapshot_is_fetched_when_missing(w: World) -> None:
    """A post quota without a snapshot gets one from a probe first, then its first task is the newest post."""
    qid = await w.add_quota(action="post_stats", last_n_posts=4)
    assert (await w.tick()).tasks == 1
    q = await w.quota(qid)
    snapshot = json.loads(q["posts_json"])
    assert snapshot == await newest_posts(w.sim, 4) and len(snapshot) == 4
    assert close_to(q["posts_fetched_at"], time.time())
    [task] = await w.pull()
    assert task.post_id == snapshot[0] and q["cursor"] == 1


@pytest.mark.parametrize(("age_hours", "refreshed"), [(25.0, True), (1.0, False)])
async def test_snapshot_is_refreshed_only_when_older_than_the_ttl(w: World, age_hours: float,
                                                                 refreshed: bool) -> None:
    """The TTL (24 h by default) keeps probes from reading the channel on every run."""
    qid = await w.add_quota(action="post_stats", posts=[999])
    await w.set_quota(qid, posts_fetched_at=time.time() - age_hours * 3600)
    assert (await w.tick()).tasks == 1
    [task] = await w.pull()
    snapshot = json.loads((await w.quota(qid))["posts_json"])
    if refreshed:
        assert snapshot == await newest_posts(w.sim, 5) and task.post_id == snapshot[0]
    else:
        assert snapshot == [999] and task.post_id == 999


async def test_stale_snapshots_are_the_due_post_quotas_missing_or_older_than_the_ttl(w: World) -> None:
    fresh = await w.add_quota(action="post_stats", posts=[1])
    old = await w.add_quota(action="post_stats", posts=[1], last_n_posts=7)
    missing = await w.add_quota(action="post_stats")
    later = await w.add_quota(action="post_stats")
    await w.add_quota()  # a channel read has no snapshot
    await w.set_quota(old, posts_fetched_at=time.time() - 7200)
    await w.set_quota(later, next_run_at=time.time() + 600)  # not due: refreshed when it is
    stale = await w.store.stale_snapshots(time.time() - 3600, 10)
    assert [(r.id, r.target, r.last_n_posts) for r in stale] == [(old, TARGET, 7), (missing, TARGET, 5)]
    assert [r.id for r in await w.store.stale_snapshots(time.time() - 3600, 1)] == [old]
    assert [r.id for r in await w.store.stale_snapshots(time.time() + 1, 10)] == [fresh, old, missing]


class NoPosts(Simulator):
    async def last_post_ids(self, account: AccountRef, channel: Channel, n: int) -> list[int]:
        return []


class Flooding(Simulator):
    async def last_post_ids(self, account: AccountRef, channel: Channel, n: int) -> list[int]:
        raise errors.FloodWaitError(request=None, capture=120)


class Failing(Simulator):
    async def last_post_ids(self, account: AccountRef, channel: Channel, n: int) -> list[int]:
        raise errors.RpcCallFailError(request=None)


class Private(Simulator):
    async def last_post_ids(self, account: AccountRef, channel: Channel, n: int) -> list[int]:
        raise errors.ChannelPrivateError(request=None)


async def test_an_empty_snapshot_skips_the_run(store: Store) -> None:
    """No posts: no task, the reason shown, and the next try an interval later (not at every tick)."""
    w = await world(store, sim_cls=NoPosts)
    qid = await w.add_quota(action="post_stats", interval=300)
    made = await w.tick()
    assert (made.tasks, made.empty) == (0, 1)
    q = await w.quota(qid)
    assert q["last_error"] == NO_POSTS and close_to(q["next_run_at"], time.time() + 300)
    assert json.loads(q["posts_json"]) == [] and q["posts_fetched_at"] is not None
    assert (await w.tick()).tasks == 0


async def test_a_probe_flood_during_refresh_cools_the_probe_and_another_tries_next_round(store: Store) -> None:
    """A flood wait is the probe's own: it cools down and is let go; the quota says why and stays due,
    so the next round's least recently used probe tries (not retry_seconds later)."""
    w = await world(store, sim_cls=Flooding, retry_seconds=900)
    qid = await w.add_quota(action="post_stats")
    assert (await w.tick()).tasks == 0
    q = await w.quota(qid)
    assert "FLOOD_WAIT" in q["last_error"] and close_to(q["next_run_at"], time.time())
    assert q["posts_json"] is None and q["inspection_ok"] == 1
    probe = await w.account(1)
    assert probe["cooldown_reason"] == "FLOOD_WAIT" and close_to(probe["cooldown_until"], time.time() + 120)
    assert await w.lock(1) is None
    assert await w.tasks() == []


async def test_a_transient_refresh_failure_postpones_the_quota(store: Store) -> None:
    """Telegram failing (not the probe): the quota waits retry_seconds and says why; the probe is untouched."""
    w = await world(store, sim_cls=Failing, retry_seconds=900)
    qid = await w.add_quota(action="post_stats")
    assert (await w.tick()).tasks == 0
    q = await w.quota(qid)
    assert "RPC_CALL_FAIL" in q["last_error"] and close_to(q["next_run_at"], time.time() + 900)
    probe = await w.account(1)
    assert probe["cooldown_until"] is None and await w.lock(1) is None


async def test_a_target_error_during_refresh_fails_the_inspection(store: Store) -> None:
    """A channel that went private will not come back by retrying: the quota stops."""
    w = await world(store, sim_cls=Private)
    qid = await w.add_quota(action="post_stats")
    assert (await w.tick()).tasks == 0
    q = await w.quota(qid)
    assert q["inspection_ok"] == 0 and q["inspection_error"] == "CHANNEL_PRIVATE"
    assert (await w.account(1))["cooldown_until"] is None  # not the probe's fault
    await w.due(qid)
    assert (await w.tick()).tasks == 0


# --- 5.2 cursor, next_run_at, batch size -----------------------------------------------------------------------------

async def test_round_robin_cursor_wraps(store: Store) -> None:
    """Posts are picked in snapshot order and the cursor wraps to 0."""
    w = await world(store, workers=4)
    qid = await w.add_quota(action="post_stats", posts=[30, 20, 10])
    cursors = []
    for _ in range(4):
        await w.due(qid)
        assert (await w.tick()).tasks == 1
        cursors.append((await w.quota(qid))["cursor"])
    picked = [r["post_id"] for r in await w.tasks()]
    assert picked == [30, 20, 10, 30]
    assert cursors == [1, 2, 0, 1]


async def test_generate_twice_makes_one_task_until_next_run(w: World) -> None:
    """next_run_at moves with the task insert: a second round right away makes nothing."""
    qid = await w.add_quota(interval=120)
    assert (await w.tick()).tasks == 1
    assert close_to((await w.quota(qid))["next_run_at"], time.time() + 120)
    assert (await w.tick()).tasks == 0
    await w.set_quota(qid, next_run_at=time.time() - 1)
    assert (await w.tick()).tasks == 1


async def test_cursor_and_task_are_one_transaction(w: World) -> None:
    """If advancing the quota fails, the task and its reservation are not there either."""
    qid = await w.add_quota(action="post_stats", posts=[5, 4])
    async with backdoor.cursor_updates_fail(w.store):
        with pytest.raises(backdoor.INJECTED_ERRORS):
            await w.tick()
    assert await w.tasks() == []
    assert await backdoor.rows(w.store, "account_locks") == []
    assert (await w.quota(qid))["cursor"] == 0
    assert (await w.tick()).tasks == 1


async def test_a_restart_never_makes_the_same_run_twice(database: Database) -> None:
    """Cursor and next_run_at are in the database with the task: a reopened store carries on after it."""
    async with database.opened() as store:
        w = await world(store)
        qid = await w.add_quota(action="post_stats", posts=[9, 8, 7])
        assert (await w.tick()).tasks == 1
    async with database.opened() as store:
        w = await world(store, seed=False)
        assert (await w.tick()).tasks == 0
        q = await w.quota(qid)
        assert q["cursor"] == 1 and q["next_run_at"] > time.time()
        await w.due(qid)
        assert (await w.tick()).tasks == 1
        assert [r["post_id"] for r in await w.tasks()] == [9, 8]


async def test_max_tasks_per_tick(store: Store) -> None:
    """One round makes at most max_tasks_per_tick tasks, however many quotas are due; the rest wait their turn."""
    w = await world(store, workers=6, max_tasks_per_tick=2)
    qids = [await w.add_quota() for _ in range(5)]
    assert [(await w.tick()).tasks for _ in range(4)] == [2, 2, 1, 0]
    assert {r["subject_id"] for r in await w.tasks()} == set(qids)


# --- 5.3 claims --------------------------------------------------------------------------------------------------------

async def test_reserve_then_commit(store: Store) -> None:
    """Generation only reserves (the lock); a success consumes pacing and the daily cap and lets the lock go."""
    w = await world(store, workers=1, pace_seconds=90)
    [worker] = w.workers
    qid = await w.add_quota(action="post_stats", quantity=10, posts=[3])
    assert (await w.tick()).tasks == 1
    [row] = await w.tasks()
    lock = await w.lock(worker)
    assert lock is not None and lock["holder"] == f"quota:{row['id']}" and lock["expires_at"] > time.time()
    assert await backdoor.rows(store, "usage") == []
    assert (await w.account(worker))["cooldown_until"] is None

    [task] = await w.pull()
    assert (await w.lock(worker))["holder"] == f"quota:{task.task_id}"  # type: ignore[index]
    assert await w.done(task, views=123) == "applied"
    account = await w.account(worker)
    assert account["cooldown_reason"] == "pace" and close_to(account["cooldown_until"], time.time() + 90)
    usage = await backdoor.row(store, "usage", account_id=worker)
    assert (usage["day"], usage["used"]) == (utc_day(), 1)
    assert await w.lock(worker) is None
    done = await w.task(task.task_id)
    assert done["status"] == "done" and json.loads(done["result_json"]) == {"views": 123}
    m = await backdoor.row(store, "measurements", quota_id=qid)
    assert (m["task_id"], m["post_id"], m["views"]) == (task.task_id, 3, 123)
    assert (await w.quota(qid))["quantity_left"] == 9


async def test_reserve_then_rollback(w: World) -> None:
    """A failure lets the lock go and consumes nothing: no usage, no pacing, no decrement, no measurement."""
    qid = await w.add_quota(quantity=10)
    assert (await w.tick()).tasks == 1
    [task] = await w.pull()
    assert await w.fail(task, "RPC_CALL_FAIL") == "applied"
    assert await w.lock(task.account_id) is None
    assert await backdoor.rows(w.store, "usage") == []
    assert await backdoor.rows(w.store, "measurements") == []
    assert (await w.account(task.account_id))["cooldown_until"] is None
    failed = await w.task(task.task_id)
    assert (failed["status"], failed["error_code"]) == ("failed", "RPC_CALL_FAIL")
    assert (await w.quota(qid))["quantity_left"] == 10


# --- 5.5 counters --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("kind", "left", "per_call", "after"), [
    ("quantity", 10, 3, 7),
    ("quantity", 2, 3, 0),  # clamped at 0
    ("orders", 4, 3, 3),  # an order is one, whatever per_call says
    ("orders", 1, 1, 0),
])
async def test_counters(w: World, kind: str, left: int, per_call: int, after: int) -> None:
    """A success takes per_call off quantity_left, or one off orders_left; never below 0; used up says so."""
    qid = await w.add_quota(**{kind: left})
    await w.set_quota(qid, per_call=per_call)
    assert (await w.tick()).tasks == 1
    [task] = await w.pull()
    assert await w.done(task) == "applied"
    q = await w.quota(qid)
    assert q[f"{kind}_left"] == after
    assert q["orders_left" if kind == "quantity" else "quantity_left"] is None
    used_up = await backdoor.rows(w.store, "events", kind="quota.used_up", quota_id=qid)
    assert len(used_up) == (1 if after == 0 else 0)
    if after == 0:
        await w.due(qid)
        assert (await w.tick()).tasks == 0


# --- 6: failures through the one policy --------------------------------------------------------------------------

async def test_flood_wait_report_cools_the_account(store: Store) -> None:
    """FLOOD_WAIT_120 from a provider cools the account down as it would in a setup task."""
    w = await world(store, retry_seconds=900)
    qid = await w.add_quota(interval=60)
    await w.tick()
    [task] = await w.pull()
    assert await w.fail(task, "FLOOD_WAIT_120") == "applied"
    assert close_to((await w.quota(qid))["next_run_at"], time.time() + 60)  # the quota goes on with others
    account = await w.account(task.account_id)
    assert account["cooldown_reason"] == "FLOOD_WAIT" and close_to(account["cooldown_until"], time.time() + 120)
    assert account["disabled_at"] is None
    assert (await w.task(task.task_id))["error_code"] == "FLOOD_WAIT_120"
    assert (await w.quota(qid))["inspection_ok"] == 1


async def test_dead_account_report_disables_it(w: World) -> None:
    """A dead session must never be reserved again."""
    qid = await w.add_quota()
    await w.tick()
    [task] = await w.pull()
    assert await w.fail(task, "AUTH_KEY_UNREGISTERED") == "applied"
    account = await w.account(task.account_id)
    assert account["disabled_at"] is not None and account["disabled_reason"] == "AUTH_KEY_UNREGISTERED"
    await w.due(qid)
    assert (await w.tick()).tasks == 1
    [again] = await w.pull()
    assert again.account_id != task.account_id


async def test_target_report_fails_the_inspection(w: World) -> None:
    """The channel is the problem, not the account: the quota stops, the account stays usable."""
    qid = await w.add_quota()
    await w.tick()
    [task] = await w.pull()
    assert await w.fail(task, "CHANNEL_PRIVATE") == "applied"
    q = await w.quota(qid)
    assert q["inspection_ok"] == 0 and q["inspection_error"] == "CHANNEL_PRIVATE"
    account = await w.account(task.account_id)
    assert account["cooldown_until"] is None and account["disabled_at"] is None
    await w.due(qid)
    assert (await w.tick()).tasks == 0


async def test_transient_report_retries_the_quota_later(store: Store) -> None:
    """An unknown or transient code pushes the quota's next run by retry_seconds; the account is left alone."""
    w = await world(store, retry_seconds=900)
    qid = await w.add_quota(interval=60)
    await w.tick()
    [task] = await w.pull()
    assert await w.fail(task, "RPC_CALL_FAIL") == "applied"
    q = await w.quota(qid)
    assert close_to(q["next_run_at"], time.time() + 900) and q["last_error"] == "RPC_CALL_FAIL"
    assert q["inspection_ok"] == 1
    account = await w.account(task.account_id)
    assert account["cooldown_until"] is None and account["disabled_at"] is None


# --- 5.5 idempotent reports ----------------------------------------------------------------------------------------

async def test_report_outcomes(store: Store) -> None:
    """Reports are fenced by token and executor, and a repeat never counts twice."""
    w = await world(store, workers=2)
    await store.add_provider("acme", "hash-acme")
    await store.assign_accounts([w.workers[1]], "acme")
    qid = await w.add_quota(quantity=10)
    other = await w.add_quota(quantity=10)
    assert (await w.tick()).tasks == 2
    [mine] = await w.pull()
    [theirs] = await w.pull("acme")

    assert await w.done(mine, token=WRONG_TOKEN) == "stale_lease"
    assert (await w.task(mine.task_id))["status"] == "leased"
    assert await w.done(theirs) == "not_found"  # another executor's task, even with its token
    assert (await w.task(theirs.task_id))["status"] == "leased"

    results = await w.leases.report("local", [
        Done(task_id=mine.task_id, lease_token=mine.lease_token, result=Observation(views=1)),
        Done(task_id=mine.task_id, lease_token=mine.lease_token, result=Observation(views=1)),
        Done(task_id=999_999, lease_token=mine.lease_token, result=Observation(views=1)),
    ])
    assert [r.outcome for r in results] == ["applied", "duplicate", "not_found"]
    assert await w.done(mine) == "duplicate"
    assert await w.fail(mine, "RPC_CALL_FAIL") == "duplicate"
    assert await w.done(mine, token=WRONG_TOKEN) == "stale_lease"
    assert (await w.quota(qid))["quantity_left"] == 9
    assert (await w.task(mine.task_id))["status"] == "done"
    assert len(await backdoor.rows(store, "measurements")) == 1
    assert (await backdoor.row(store, "usage"))["used"] == 1
    assert await w.done(theirs, "acme") == "applied"
    assert (await w.quota(other))["quantity_left"] == 9


# --- 5.4 leases and the reaper ---------------------------------------------------------------------------------------

async def test_an_expired_lease_returns_to_pending(w: World) -> None:
    """The task goes back with its reservation renewed; the old lease's late report changes nothing."""
    qid = await w.add_quota(quantity=5)
    await w.tick()
    [task] = await w.pull()
    await w.expire(task.task_id)
    reaped = await w.leases.reap()
    assert (reaped.returned, reaped.failed, reaped.unpulled) == (1, 0, 0)
    row = await w.task(task.task_id)
    assert row["status"] == "pending" and row["lease_token"] is None and row["leased_by"] is None
    lock_seconds = w.leases.lock_seconds(w.cfg.quotas.lease_seconds)
    assert close_to(row["lease_expires_at"], time.time() + lock_seconds)
    lock = await w.lock(task.account_id)
    assert lock is not None and lock["holder"] == f"quota:{task.task_id}"
    assert close_to(lock["expires_at"], time.time() + lock_seconds)
    assert w.leases.wake_local.is_set()

    assert await w.done(task) == "stale_lease"
    [again] = await w.pull()
    assert again.task_id == task.task_id and again.lease_token != task.lease_token
    assert (await w.task(task.task_id))["lease_count"] == 2
    assert await w.done(task) == "stale_lease"
    assert await w.done(again) == "applied"
    assert (await w.quota(qid))["quantity_left"] == 4


async def test_after_max_leases_the_task_fails_and_lets_the_account_go(store: Store) -> None:
    """A task nobody manages to finish must not hold its account forever."""
    w = await world(store, max_leases=2)
    qid = await w.add_quota(quantity=5)
    await w.tick()
    for _ in range(2):
        [task] = await w.pull()
        await w.expire(task.task_id)
        await w.leases.reap()
    row = await w.task(task.task_id)
    assert (row["status"], row["error_code"], row["lease_count"]) == ("failed", "LEASE_EXPIRED", 2)
    assert await w.lock(task.account_id) is None
    assert await backdoor.rows(store, "usage") == []
    assert (await w.quota(qid))["quantity_left"] == 5
    assert await backdoor.rows(store, "events", kind="task.expired", task_id=task.task_id)
    assert await w.done(task) == "stale_lease"
    assert await w.pull() == []
    assert w.leases.metrics.expired.labels("failed")._value.get() == 1


async def test_a_task_nobody_pulls_fails_as_not_pulled(store: Store) -> None:
    """A reservation is for the lease window only: unpulled, the account is given back."""
    w = await world(store, local_concurrency=0)
    await store.add_provider("acme", "hash-acme")
    await store.assign_accounts(w.workers, "acme")
    await w.add_quota()
    await w.tick()
    [row] = await w.tasks()
    assert await w.lock(row["account_id"]) is not None
    await w.expire(row["id"])
    reaped = await w.leases.reap()
    assert (reaped.returned, reaped.failed, reaped.unpulled) == (0, 0, 1)
    row = await w.task(row["id"])
    assert (row["status"], row["error_code"]) == ("failed", "NOT_PULLED")
    assert await w.lock(row["account_id"]) is None
    assert await w.pull("acme") == []


async def test_extend_keeps_a_lease_alive_and_is_fenced(store: Store) -> None:
    """Only the live lease of the right executor and token is extended; an expired one is not revived."""
    w = await world(store)
    await store.add_provider("acme", "hash-acme")
    await w.add_quota()
    await w.tick()
    [task] = await w.pull()
    ask = ExtendRequest(leases=[Lease(task_id=task.task_id, lease_token=task.lease_token),
                                Lease(task_id=task.task_id, lease_token=WRONG_TOKEN),
                                Lease(task_id=999_999, lease_token=task.lease_token)], lease_seconds=600)
    results = await w.leases.extend("local", ask)
    assert [r.outcome for r in results] == ["applied", "stale_lease", "not_found"]
    assert results[0].lease_expires_at is not None and results[1].lease_expires_at is None
    row = await w.task(task.task_id)
    assert close_to(row["lease_expires_at"], time.time() + 600)
    lock = await w.lock(task.account_id)
    assert lock is not None and close_to(lock["expires_at"], time.time() + w.leases.lock_seconds(600))
    assert (await w.leases.reap()).returned == 0
    [other] = await w.leases.extend("acme", ExtendRequest(leases=ask.leases[:1]))
    assert other.outcome == "not_found"

    await w.expire(task.task_id)
    [late] = await w.leases.extend("local", ExtendRequest(leases=ask.leases[:1]))
    assert late.outcome == "stale_lease"
    assert (await w.task(task.task_id))["lease_expires_at"] < time.time()
    assert await w.done(task) == "stale_lease"  # an expired lease cannot report either


# --- two providers -------------------------------------------------------------------------------------------------

async def two_providers(store: Store) -> tuple[World, dict[str, list[int]]]:
    """Eight workers split between providers ``p-one`` and ``p-two``, eight quotas, one task each generated."""
    w = await world(store, workers=8, local_concurrency=0)
    split = {"p-one": w.workers[:4], "p-two": w.workers[4:]}
    for name, ids in split.items():
        await store.add_provider(name, f"hash-{name}")
        await store.assign_accounts(ids, name)
    for _ in range(8):
        await w.add_quota()
    assert (await w.tick()).tasks == 8
    return w, split


async def pull_many(w: World, names: list[str]) -> dict[str, list[LeasedTask]]:
    """Many concurrent small pulls, interleaved between executors."""
    results = await asyncio.gather(*(w.pull(name, limit=1 + i % 3) for i, name in enumerate(names)))
    got: dict[str, list[LeasedTask]] = {}
    for name, tasks in zip(names, results, strict=True):
        got.setdefault(name, []).extend(tasks)
    return got


async def test_two_providers_never_get_the_same_task(store: Store) -> None:
    """Concurrent pulls: every task goes to exactly one provider, the one its account is assigned to."""
    w, split = await two_providers(store)
    got = await pull_many(w, ["p-one", "p-two"] * 10)
    one, two = ({t.task_id for t in got[name]} for name in ("p-one", "p-two"))
    assert one.isdisjoint(two)
    assert len(one) == len(got["p-one"]) and len(two) == len(got["p-two"])
    assert len(one | two) == 8
    for name, tasks in got.items():
        assert {t.account_id for t in tasks} <= set(split[name])
        for t in tasks:
            assert (await w.task(t.task_id))["leased_by"] == name


async def test_reassigned_accounts_never_give_a_task_to_both(store: Store) -> None:
    """Accounts moved to another provider: a live lease stays with its holder (and only it can report);
    once given up, the task goes to the new owner alone."""
    w, split = await two_providers(store)
    first = await w.pull("p-one")
    assert {t.account_id for t in first} == set(split["p-one"])
    assert await store.assign_accounts(w.workers, "p-two") == 4

    got = await pull_many(w, ["p-one", "p-two"] * 5)
    assert got.get("p-one", []) == []
    assert {t.account_id for t in got["p-two"]} == set(split["p-two"])
    assert {t.task_id for t in got["p-two"]}.isdisjoint({t.task_id for t in first})

    for t in first:
        await w.expire(t.task_id)
    assert (await w.leases.reap()).returned == 4
    again = await pull_many(w, ["p-one", "p-two"] * 5)
    assert again.get("p-one", []) == []
    assert {t.task_id for t in again["p-two"]} == {t.task_id for t in first}
    for t in first:
        assert await w.done(t, "p-one") == "not_found"  # p-two holds those leases now
    for t in again["p-two"]:
        assert await w.done(t, "p-two") == "applied"
