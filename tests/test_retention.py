"""Retention (issue 10 item 8): old history is pruned in small batches, and nothing that reads it breaks.

Real SQLite files and the real services (``Generator``, ``Leases``, ``Retention``); "old" is made by
writing old times into the rows, never by waiting. The counters that replaced COUNT(*) are checked
against COUNT(*) after real work.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest
from daemon_proc import isolated_env, run_cli
from test_pulled import READ_ALREADY, World, world

from tgdaemon import clockstep, config, timeutil
from tgdaemon.quotas.leases import utc_day
from tgdaemon.retention import HOLD_TARGET_S, Retention
from tgdaemon.store import Store
from tgdaemon.store.sqlite import SQLiteStore, migrate

DAY = 86400.0
WAIT = 10.0  # seconds a test waits at most for the daemon's own retention task


def retention(store: Store, **keys: Any) -> Retention:
    cfg = config.load(None, env={}, overrides={"retention": keys})
    return Retention(cfg.retention, store)


async def count(store: Store, table: str, where: str = "1") -> int:
    return next(iter(await store.read(f"SELECT COUNT(*) FROM {table} WHERE {where}")))[0]


async def finished_task(w: World, qid: int, *, post: int | None, account: int, status: str, age_days: float,
                        action: str = "post_stats") -> int:
    """A finished task as a report leaves it, reported ``age_days`` ago."""
    async with w.store.tx() as tx:
        cur = await tx.execute(
            "INSERT INTO tasks (subject_type, subject_id, account_id, action, target, post_id, status, created_at,"
            " reported_at) VALUES ('quota', ?, ?, ?, '@tgfleet_news', ?, ?, ?, ?)",
            (qid, account, action, post, status, time.time() - age_days * DAY, time.time() - age_days * DAY))
        return int(cur.lastrowid or 0)


async def test_prunes_only_what_is_old_enough_in_batches_and_keeps_measurements(store: Store) -> None:
    old_at, new_at = time.time() - 40 * DAY, time.time() - 1 * DAY
    async with store.tx() as tx:
        await tx.conn.executemany(
            "INSERT INTO events (at, kind, message) VALUES (?, 'old', 'x')", [(old_at,)] * 4)
        await tx.execute("INSERT INTO events (at, kind, message) VALUES (?, 'future', 'x')", (time.time() + DAY,))
        await tx.conn.executemany(
            "INSERT INTO events (at, kind, message) VALUES (?, 'old', 'x')", [(old_at,)] * 3)
        await tx.conn.executemany(
            "INSERT INTO events (at, kind, message) VALUES (?, 'new', 'x')", [(new_at,)] * 2)
        await tx.execute("INSERT INTO events (at, kind, message) VALUES (?, 'old-after-new', 'x')", (old_at,))
    w = await world(store, workers=2)  # after those: its accounts are a young `changes` row of the log
    a, b = w.workers
    channel = await w.add_quota()
    async with store.tx() as tx:
        await tx.conn.executemany(
            "INSERT INTO usage (account_id, day, used) VALUES (?, ?, 3)",
            [(a, utc_day(time.time() - 30 * DAY)), (b, utc_day(time.time() - 20 * DAY)), (a, utc_day()),
             (b, utc_day(time.time() - 3 * DAY))])
        await tx.execute("INSERT INTO account_tasks (account_id, task_type, status, created_at, updated_at)"
                         " VALUES (?, 'update_name', 'done', ?, ?)", (a, old_at, old_at))
    old = [await finished_task(w, channel, post=None, account=a, status=s, age_days=20, action="channel_stats")
           for s in ("done", "failed", "done", "done", "failed")]
    young = await finished_task(w, channel, post=None, account=a, status="done", age_days=2, action="channel_stats")
    async with store.tx() as tx:
        await tx.execute("INSERT INTO measurements (quota_id, task_id, observed_at, subscribers)"
                         " VALUES (?, ?, ?, 10)", (channel, old[0], old_at))
        cur = await tx.execute(
            "INSERT INTO tasks (subject_type, subject_id, account_id, action, target, status, created_at,"
            " lease_expires_at) VALUES ('quota', ?, ?, 'channel_stats', '@x', 'pending', ?, ?)",
            (channel, b, old_at, time.time() + 60))
        open_task = int(cur.lastrowid or 0)
    newest_old = await finished_task(w, channel, post=None, account=a, status="done", age_days=20,
                                     action="channel_stats")

    pruned = await retention(store, events_days=30, finished_tasks_days=14, batch_size=2).prune()
    shown = pruned.view()

    kinds = [r[0] for r in await store.read("SELECT kind FROM events ORDER BY id")]
    # The 7 old ones, from the oldest end; the old one after the new ones waits for them (no holes);
    # one stamped in the future (a clock that was ahead) is stepped over, and kept.
    assert kinds == ["future", "new", "new", "old-after-new", "changes", "quota.added", "quota.inspected"]
    assert pruned.events == 7
    left = {r[0] for r in await store.read("SELECT id FROM tasks")}
    assert not left & set(old), "finished tasks older than 14 days are gone"
    assert {young, open_task, newest_old} <= left, "young, open and the newest task stay"
    assert pruned.tasks == 5
    # 2 rows looked at a batch: the 4 old events in 2, the 3 behind the future one 1 at a time (it
    # fills half of every look), the 5 tasks in 3, the 2 usage rows in 1.
    assert shown["batches"] == 2 + 3 + 3 + 1
    assert 0 < shown["median_batch_ms"] <= shown["longest_batch_ms"]
    days = sorted(r[0] for r in await store.read("SELECT day FROM usage"))
    assert days == sorted([utc_day(), utc_day(time.time() - 3 * DAY)]) and pruned.usage == 2
    assert await count(store, "measurements") == 1, "measurements are the product's output: kept"
    assert await count(store, "account_tasks") == 1, "setup tasks are convergence state: kept"

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
    await w.sql("UPDATE quotas SET expires_at = ? WHERE id = ?", (time.time() - 1, dead))
    used_up = await w.add_quota(action="post_stats", orders=1, posts=[7])
    await w.sql("UPDATE quotas SET orders_left = 0 WHERE id = ?", (used_up,))
    kept = [await finished_task(w, posts, post=7, account=a, status="done", age_days=60),
            await finished_task(w, posts, post=8, account=c, status="done", age_days=60)]
    gone = [await finished_task(w, posts, post=7, account=b, status="failed", age_days=60),  # frees its pair
            await finished_task(w, posts, post=99, account=b, status="done", age_days=60),  # left the snapshot
            await finished_task(w, dead, post=7, account=a, status="done", age_days=60),
            await finished_task(w, used_up, post=7, account=a, status="done", age_days=60)]
    await finished_task(w, dead, post=7, account=c, status="done", age_days=0)  # the newest: always kept

    pruned = await retention(store, finished_tasks_days=14, batch_size=1).prune()

    left = {r[0] for r in await store.read("SELECT id FROM tasks")}
    assert set(kept) <= left and not set(gone) & left and pruned.tasks == len(gone)
    # Post 7 was read by a, and that record survived: the next runs of post 7 go to b and c, never to a
    # (first in least-recently-used order), and then no account is left for post 7.
    await w.sql("UPDATE accounts SET last_used_at = NULL")
    await w.sql("UPDATE quotas SET cursor = 0 WHERE id = ?", (posts,))
    seen: list[int] = []
    for _ in range(2):
        await w.due(posts)
        await w.sql("UPDATE quotas SET cursor = 0 WHERE id = ?", (posts,))
        assert (await w.tick()).tasks == 1
        [task] = await w.pull()
        assert task.post_id == 7
        seen.append(task.account_id)
        assert await w.done(task) == "applied"
    assert a not in seen and sorted(seen) == sorted([b, c])
    await w.due(posts)
    await w.sql("UPDATE quotas SET cursor = 0 WHERE id = ?", (posts,))
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
    await w.sql("UPDATE quotas SET expires_at = ? WHERE id = ?", (time.time() - 1, qid))
    behind = await finished_task(w, qid, post=7, account=a, status="failed", age_days=40)  # before the cursor
    ahead = await finished_task(w, qid, post=7, account=b, status="failed", age_days=20)  # after it
    await finished_task(w, qid, post=7, account=b, status="done", age_days=0)
    second = await r.prune()  # goes on from where the last round stopped
    left = {row[0] for row in await store.read("SELECT id FROM tasks")}
    assert second.tasks == 1 and ahead not in left and {needed, behind} <= left
    r._rescan_at = 0.0  # a day later: from the start again
    third = await r.prune()
    left = {row[0] for row in await store.read("SELECT id FROM tasks")}
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
        assert q["measurements"] == await count(store, "measurements", f"quota_id = {q['id']}")
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
    await w.sql("UPDATE tasks SET lease_expires_at = 0 WHERE status = 'pending'")
    await w.leases.reap()
    await retention(store, finished_tasks_days=0.0000001, events_days=0.0000001, batch_size=1).prune()
    by_status = {r[0]: r[1] for r in await store.read("SELECT status, COUNT(*) FROM tasks GROUP BY status")}
    assert (await store.task_counts())["pulled"] == by_status and sum(by_status.values()) >= 1
    stats = await store.database_stats()
    for table in ("accounts", "quotas", "tasks", "events", "account_tasks"):
        assert stats["rows"][table] == await count(store, table), table
    assert stats["file_bytes"] > 0 and stats["wal_bytes"] > 0


async def test_migration_backfills_the_counters(tmp_path: Path) -> None:
    path = tmp_path / "v8.sqlite3"
    assert migrate.upgrade(path, target=8) == 8
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("INSERT INTO accounts (id, created_at) VALUES (1, 0)")
    conn.execute("INSERT INTO quotas (id, name, target, action, interval_seconds, expires_at, created_at)"
                 " VALUES (4, 'q', '@x', 'post_stats', 60, 0, 0)")
    conn.executemany("INSERT INTO measurements (quota_id, observed_at) VALUES (4, ?)", [(i,) for i in range(3)])
    conn.executemany("INSERT INTO events (at, kind, message) VALUES (0, 'k', 'm')", [()] * 5)
    conn.executemany("INSERT INTO tasks (subject_type, subject_id, account_id, action, target, status, created_at)"
                     " VALUES ('quota', 4, 1, 'post_stats', '@x', ?, 0)", [("done",), ("done",), ("pending",)])
    conn.execute("INSERT INTO account_tasks (account_id, task_type, status, created_at, updated_at)"
                 " VALUES (1, 'update_name', 'retry', 0, 0)")
    conn.close()
    migrate.upgrade(path)
    s = await SQLiteStore.open(path)
    try:
        assert (await s.quota(4))["measurements"] == 3
        assert await s.task_counts() == {"setup": {"retry": 1}, "pulled": {"done": 2, "pending": 1}}
        assert (await s.database_stats())["rows"] == {"accounts": 1, "account_tasks": 1, "quotas": 1, "tasks": 3,
                                                      "events": 5, "measurements": 3}
    finally:
        await s.close()


async def test_the_daemon_prunes_on_its_own_and_status_shows_the_database(daemon_factory: Any,
                                                                          tmp_path: Path) -> None:
    async with daemon_factory(retention={"interval_seconds": 0.1, "events_days": 1}) as (daemon, client):
        store = daemon.runtime.store
        async with store.tx() as tx:  # the start-up's events too: events go from the oldest end only
            await tx.execute("UPDATE events SET at = ?", (time.time() - 3 * DAY,))
            await tx.conn.executemany("INSERT INTO events (at, kind, message) VALUES (?, 'ancient', 'x')",
                                      [(time.time() - 3 * DAY,)] * 5)
        deadline = time.monotonic() + WAIT
        while await count(store, "events", "kind = 'ancient'") and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert await count(store, "events", "kind = 'ancient'") == 0
        status = await client.status()
        db = status["database"]
        assert db["file_bytes"] > 0 and db["path"].endswith("tgfleet.sqlite3")
        assert db["rows"]["accounts"] == 50 and db["rows"]["events"] == await count(store, "events")
        assert status["retention"]["events_days"] == 1 and status["retention"]["last_run"] is not None
        shown = await asyncio.to_thread(run_cli, "status", "--socket", str(daemon.cfg.socket_path()),
                                        env=isolated_env(tmp_path))
        assert shown.returncode == 0, shown.stderr
        [db_line] = [line for line in shown.stdout.splitlines() if line.startswith("database ")]
        assert " KiB + WAL " in db_line and "accounts 50" in db_line and "events " in db_line
        assert "retention  keeps events 1 d  finished tasks 14 d; last run " in shown.stdout


def test_the_batch_size_follows_the_hold_time_within_its_bounds(tmp_path: Path) -> None:
    """A batch that held the writer too long makes the next one smaller in proportion; a quick one doubles
    it; never above batch_size, never below a floor that still makes progress."""
    r = Retention(config.load(None, env={}, overrides={"retention": {"batch_size": 1000}}).retention,
                  None)  # type: ignore[arg-type]  # sizing touches no store
    assert r._next_size(400, HOLD_TARGET_S * 4) == 100
    assert r._next_size(400, HOLD_TARGET_S / 4) == 800
    assert r._next_size(800, HOLD_TARGET_S / 4) == 1000
    assert r._next_size(400, HOLD_TARGET_S * 0.75) == 400
    assert r._next_size(20, HOLD_TARGET_S * 100) == 10


async def test_a_forward_step_of_the_clock_does_not_make_young_history_old(store: Store) -> None:
    """A wrong forward step (a bad RTC, a mistyped date -s) followed by the daemon moves deadlines, and
    must not make pruning delete a day-old history as if it were 40 days old: that could never be undone."""
    clock = clockstep.ClockSteps()
    store.clock = clock
    async with store.tx() as tx:
        await tx.conn.executemany("INSERT INTO events (at, kind, message) VALUES (?, 'young', 'x')",
                                  [(time.time() - 1 * DAY,)] * 3)
    timeutil.step_wall_clock(40 * DAY)
    try:
        async with store.tx():  # the step is followed at the start of the next write
            pass
        assert clock.forward == pytest.approx(40 * DAY, abs=5)
        pruned = await Retention(retention(store, events_days=30).cfg, store, clock.vouched_now).prune()
        assert pruned.events == 0
        assert await count(store, "events", "kind = 'young'") == 3
        # Without the vouched clock the same round would have deleted them.
        assert (await Retention(retention(store, events_days=30).cfg, store).prune()).events == 3
    finally:
        timeutil.step_wall_clock(-40 * DAY)
