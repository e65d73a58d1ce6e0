"""Retention on both drivers (issue 10 item 8): old history is pruned in small batches, nothing a live quota
still reads goes, and the counters that replaced COUNT(*) equal COUNT(*) after real work.

The real ``Generator``, ``Leases`` and ``Retention``; "old" is made by writing old times into the rows
(tests/store/backdoor.py), never by waiting.
"""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

import pytest

from store import backdoor
from store.world import READ_ALREADY, TARGET, World, world
from tgdaemon import clockstep, config, timeutil
from tgdaemon.quotas.leases import utc_day
from tgdaemon.retention import Retention
from tgdaemon.store import Store

DAY = 86400.0


def retention(store: Store, **keys: Any) -> Retention:
    cfg = config.load(None, env={}, overrides={"retention": keys})
    return Retention(cfg.retention, store)


async def finished_task(w: World, qid: int, *, post: int | None, account: int, status: str, age_days: float,
                        action: str = "post_stats") -> int:
    """A finished task as a report leaves it, reported ``age_days`` ago."""
    at = time.time() - age_days * DAY
    task_id = await backdoor.insert(w.store, "tasks", subject_type="quota", subject_id=qid, account_id=account,
                                    action=action, target=TARGET, post_id=post, status=status, created_at=at,
                                    reported_at=at)
    assert task_id is not None
    return task_id


async def events(store: Store, kind: str, at: float, n: int) -> None:
    await backdoor.insert_many(store, "events", [{"at": at, "kind": kind, "message": "x"}] * n)


async def task_ids(store: Store) -> set[int]:
    return {r["id"] for r in await backdoor.rows(store, "tasks")}


async def test_prunes_only_what_is_old_enough_in_batches_and_keeps_measurements(store: Store) -> None:
    old_at, new_at = time.time() - 40 * DAY, time.time() - 1 * DAY
    await events(store, "old", old_at, 4)
    await events(store, "future", time.time() + DAY, 1)
    await events(store, "old", old_at, 3)
    await events(store, "new", new_at, 2)
    await events(store, "old-after-new", old_at, 1)
    w = await world(store, workers=2)  # after those: its accounts are a young `changes` row of the log
    a, b = w.workers
    channel = await w.add_quota()
    await backdoor.insert_many(store, "usage", [
        {"account_id": account, "day": day, "used": 3} for account, day in [
            (a, utc_day(time.time() - 30 * DAY)), (b, utc_day(time.time() - 20 * DAY)), (a, utc_day()),
            (b, utc_day(time.time() - 3 * DAY))]])
    await backdoor.insert(store, "account_tasks", account_id=a, task_type="update_name", status="done",
                          created_at=old_at, updated_at=old_at)
    old = [await finished_task(w, channel, post=None, account=a, status=s, age_days=20, action="channel_stats")
           for s in ("done", "failed", "done", "done", "failed")]
    young = await finished_task(w, channel, post=None, account=a, status="done", age_days=2, action="channel_stats")
    await backdoor.insert(store, "measurements", quota_id=channel, task_id=old[0], observed_at=old_at, subscribers=10)
    open_task = await backdoor.insert(store, "tasks", subject_type="quota", subject_id=channel, account_id=b,
                                      action="channel_stats", target="@x", status="pending", created_at=old_at,
                                      lease_expires_at=time.time() + 60)
    newest_old = await finished_task(w, channel, post=None, account=a, status="done", age_days=20,
                                     action="channel_stats")

    pruned = await retention(store, events_days=30, finished_tasks_days=14, batch_size=2).prune()
    shown = pruned.view()

    kinds = [r["kind"] for r in await backdoor.rows(store, "events")]
    # The 7 old ones, from the oldest end; the old one after the new ones waits for them (no holes);
    # one stamped in the future (a clock that was ahead) is stepped over, and kept.
    assert kinds == ["future", "new", "new", "old-after-new", "changes", "quota.added", "quota.inspected"]
    assert pruned.events == 7
    left = await task_ids(store)
    assert not left & set(old), "finished tasks older than 14 days are gone"
    assert {young, open_task, newest_old} <= left, "young, open and the newest task stay"
    assert pruned.tasks == 5
    # 2 rows looked at a batch: the 4 old events in 2, the 3 behind the future one 1 at a time (it
    # fills half of every look), the 5 tasks in 3, the 2 usage rows in 1.
    assert shown["batches"] == 2 + 3 + 3 + 1
    assert 0 < shown["median_batch_ms"] <= shown["longest_batch_ms"]
    days = sorted(r["day"] for r in await backdoor.rows(store, "usage"))
    assert days == sorted([utc_day(), utc_day(time.time() - 3 * DAY)]) and pruned.usage == 2
    assert await backdoor.count(store, "measurements") == 1, "measurements are the product's output: kept"
    assert await backdoor.count(store, "account_tasks") == 1, "setup tasks are convergence state: kept"

    again = await retention(store, events_days=30, finished_tasks_days=14, batch_size=2).prune()
    assert (again.events, again.tasks, again.usage, again.holds_ms) == (0, 0, 0, [])
    forever = await retention(store, events_days=0, finished_tasks_days=0, batch_size=2).prune()
    assert forever.holds_ms == []


async def test_a_post_quota_never_reuses_an_account_for_a_post_after_pruning(store: Store) -> None:
    """The done tasks a live quota reads to pick accounts survive pruning; everything else old goes."""
    w = await world(store, workers=3)
    a, b, c = w.workers
    posts = await w.add_quota(action="post_stats", posts=[7, 8])
    dead = await w.add_quota(action="post_stats", posts=[7])
    await w.set_quota(dead, expires_at=time.time() - 1)
    used_up = await w.add_quota(action="post_stats", orders=1, posts=[7])
    await w.set_quota(used_up, orders_left=0)
    kept = [await finished_task(w, posts, post=7, account=a, status="done", age_days=60),
            await finished_task(w, posts, post=8, account=c, status="done", age_days=60)]
    gone = [await finished_task(w, posts, post=7, account=b, status="failed", age_days=60),  # frees its pair
            await finished_task(w, posts, post=99, account=b, status="done", age_days=60),  # left the snapshot
            await finished_task(w, dead, post=7, account=a, status="done", age_days=60),
            await finished_task(w, used_up, post=7, account=a, status="done", age_days=60)]
    await finished_task(w, dead, post=7, account=c, status="done", age_days=0)  # the newest: always kept

    pruned = await retention(store, finished_tasks_days=14, batch_size=1).prune()

    left = await task_ids(store)
    assert set(kept) <= left and not set(gone) & left and pruned.tasks == len(gone)
    # Post 7 was read by a, and that record survived: the next runs of post 7 go to b and c, never to a
    # (first in least-recently-used order), and then no account is left for post 7.
    await backdoor.update(store, "accounts", {}, last_used_at=None)
    seen: list[int] = []
    for _ in range(2):
        await w.due(posts)
        await w.set_quota(posts, cursor=0)
        assert (await w.tick()).tasks == 1
        [task] = await w.pull()
        assert task.post_id == 7
        seen.append(task.account_id)
        assert await w.done(task) == "applied"
    assert a not in seen and sorted(seen) == sorted([b, c])
    await w.due(posts)
    await w.set_quota(posts, cursor=0)
    made = await w.tick()
    assert made.tasks == 0 and (await w.quota(posts))["last_error"] == READ_ALREADY


async def test_kept_tasks_are_not_read_every_round_but_go_at_the_daily_rescan_once_their_quota_ends(
        store: Store) -> None:
    w = await world(store, workers=2)
    a, b = w.workers
    qid = await w.add_quota(action="post_stats", posts=[7])
    needed = await finished_task(w, qid, post=7, account=a, status="done", age_days=30)
    r = retention(store, finished_tasks_days=14, events_days=0)
    await finished_task(w, qid, post=7, account=b, status="done", age_days=0)  # the newest: always kept
    assert (await r.prune()).tasks == 0
    await w.set_quota(qid, expires_at=time.time() - 1)
    behind = await finished_task(w, qid, post=7, account=a, status="failed", age_days=40)  # before the cursor
    ahead = await finished_task(w, qid, post=7, account=b, status="failed", age_days=20)  # after it
    await finished_task(w, qid, post=7, account=b, status="done", age_days=0)
    second = await r.prune()  # goes on from where the last round stopped
    left = await task_ids(store)
    assert second.tasks == 1 and ahead not in left and {needed, behind} <= left
    r._rescan_at = 0.0  # a day later: from the start again
    third = await r.prune()
    left = await task_ids(store)
    assert third.tasks == 2 and not {needed, behind} & left


async def test_the_measurement_counter_equals_count_after_reports(store: Store) -> None:
    w = await world(store, workers=2)
    qid = await w.add_quota(action="post_stats", posts=[5, 6])
    other = await w.add_quota()
    for round_ in range(2):
        await w.due(qid, other)
        assert (await w.tick()).tasks == 2
        first, second = await w.pull()
        assert await w.done(first) == "applied"
        assert await (w.done(second) if round_ == 0 else w.fail(second, "RPC_CALL_FAIL")) == "applied"
    for q in await store.quotas():
        assert q["measurements"] == await backdoor.count(store, "measurements", quota_id=q["id"])
    assert sum(q["measurements"] for q in await store.quotas()) == 3
    assert (await store.database_stats())["rows"]["measurements"] == 3


async def test_row_counts_equal_count_after_real_work(store: Store) -> None:
    """task_counts and status's row counts come from trigger-kept counters: they equal COUNT(*)."""
    w = await world(store, workers=4)
    qid = await w.add_quota(action="post_stats", posts=[1, 2, 3])
    await w.add_quota()
    await w.tick()
    tasks = await w.pull(limit=1)
    await w.done(tasks[0])
    await w.due(qid)
    await w.tick()
    await backdoor.update(store, "tasks", {"status": "pending"}, lease_expires_at=0)
    await w.leases.reap()
    await retention(store, finished_tasks_days=0.0000001, events_days=0.0000001, batch_size=1).prune()
    by_status = dict(Counter(r["status"] for r in await backdoor.rows(store, "tasks")))
    assert (await store.task_counts())["pulled"] == by_status and sum(by_status.values()) >= 1
    await store.dispatch_setup({"update_name": {}, "ensure_2fa": {}})
    assert (await store.task_counts())["setup"] == {"pending": 2 * len(w.workers)}
    stats = await store.database_stats()
    for table in ("accounts", "quotas", "tasks", "events", "account_tasks"):
        assert stats["rows"][table] == await backdoor.count(store, table), table


async def test_prune_usage_goes_by_day_in_batches(store: Store) -> None:
    w = await world(store, workers=2)
    a, b = w.workers
    await backdoor.insert_many(store, "usage", [{"account_id": account, "day": day, "used": 1} for account, day in [
        (a, "2024-01-01"), (b, "2024-01-01"), (a, "2024-01-02"), (a, "2024-01-03")]])
    first = await store.prune_usage("2024-01-03", 2)
    assert (first.deleted, first.scanned) == (2, 2)
    second = await store.prune_usage("2024-01-03", 2)
    assert (second.deleted, second.scanned) == (1, 1)  # fewer than the limit: the end
    assert (await store.prune_usage("2024-01-03", 2)).scanned == 0
    assert [(r["account_id"], r["day"]) for r in await backdoor.rows(store, "usage")] == [(a, "2024-01-03")]


async def test_a_forward_step_of_the_clock_does_not_make_young_history_old(store: Store) -> None:
    """A wrong forward step (a bad RTC, a mistyped date -s) followed by the daemon moves deadlines, and
    must not make pruning delete a day-old history as if it were 40 days old: that could never be undone."""
    clock = clockstep.ClockSteps()
    store.clock = clock
    await events(store, "young", time.time() - 1 * DAY, 3)
    timeutil.step_wall_clock(40 * DAY)
    try:
        async with store.tx():  # the step is followed at the start of the next write
            pass
        assert clock.forward == pytest.approx(40 * DAY, abs=5)
        pruned = await Retention(retention(store, events_days=30).cfg, store, clock.vouched_now).prune()
        assert pruned.events == 0
        assert await backdoor.count(store, "events", kind="young") == 3
        # Without the vouched clock the same round would have deleted them.
        assert (await Retention(retention(store, events_days=30).cfg, store).prune()).events == 3
    finally:
        timeutil.step_wall_clock(-40 * DAY)
