"""What status reads is counters, not counts (issue 13, migrations SQLite 0014 / PostgreSQL 0005): on both
drivers the counters equal the real counts after a mix of real writes (setup dispatched, claimed and
finished every way, retried; quotas generated, pulled, reported, reaped; rows written by hand, moved in
time and pruned by the real retention) and again after a restart and more of the same."""

from __future__ import annotations

import math
import time
from collections import Counter

from store import backdoor
from store.conftest import Database
from store.world import World, world
from tgdaemon import config
from tgdaemon.retention import Retention
from tgdaemon.store import AccountEffect, SetupOutcome, Store

DAY = 86400.0
LOCK = 600.0


async def real_counts(store: Store) -> dict[str, int]:
    """Every counter status reads, counted the slow way."""
    out: dict[str, int] = {name: await backdoor.count(store, name) for name in ("events", "accounts", "quotas")}
    for table in ("tasks", "account_tasks"):
        for status, n in Counter(r["status"] for r in await backdoor.rows(store, table)).items():
            out[f"{table}.{status}"] = n
    return out


async def real_finished_since(store: Store, second: int) -> int:
    """Setup tasks done or failed and pulled tasks reported, at or after the whole ``second``."""
    setup = [r for r in await backdoor.rows(store, "account_tasks")
             if r["status"] in ("done", "failed") and r["updated_at"] >= second]
    pulled = [r for r in await backdoor.rows(store, "tasks") if r["reported_at"] is not None
              and r["reported_at"] >= second]
    return len(setup) + len(pulled)


async def assert_counters_are_counts(store: Store, moments: list[float]) -> None:
    kept = {r["name"]: r["n"] for r in await backdoor.rows(store, "row_counts", order="name")}
    real = await real_counts(store)
    assert {k: v for k, v in kept.items() if v} == {k: v for k, v in real.items() if v}
    stats = await store.database_stats()
    for table in ("accounts", "quotas", "tasks", "events", "account_tasks", "measurements"):
        assert stats["rows"][table] == await backdoor.count(store, table), table
    assert sum(q["measurements"] for q in await store.quotas()) == await backdoor.count(store, "measurements")
    now = time.time()
    for at in [now - 3000, now - 600, now - 60, now - 1, now + 1, now + 60, *moments]:
        assert await store.tasks_finished_since(at) == await real_finished_since(store, math.floor(at)), at


async def setup_round(store: Store, accounts: list[int]) -> None:
    """Dispatch, then claims finished done, failed and retried; one account's tasks all retried again."""
    await store.dispatch_setup({"update_name": {}, "ensure_2fa": {}, "privacy_phone_hidden": {}})
    outcomes = ["done", "failed", "retry"]
    for i, task in enumerate(await store.claim_setup(["update_name", "ensure_2fa"], 100, LOCK)):
        status = outcomes[i % 3]
        await store.finish_setup(task, SetupOutcome(status, AccountEffect(ok=status == "done"),
                                                    retry_at=time.time() - 1 if status == "retry" else None))
    await store.retry_account_setup(accounts[0])  # done and failed back to retry: counted no more


async def quota_round(w: World, qid: int, other: int) -> None:
    await w.due(qid, other)
    await w.tick()
    tasks = await w.pull()
    for i, task in enumerate(tasks):
        assert await (w.done(task) if i % 2 == 0 else w.fail(task, "RPC_CALL_FAIL")) == "applied"
    await w.due(qid, other)
    await w.tick()
    await backdoor.update(w.store, "tasks", {"status": "pending"}, lease_expires_at=0)
    await w.leases.reap()


async def test_every_counter_equals_the_real_count_after_writes_pruning_and_a_restart(
        store: Store, database: Database) -> None:
    # The oldest of the log first: retention prunes events from the lowest id up to the first young one.
    await backdoor.insert_many(store, "events", [{"at": time.time() - 40 * DAY, "kind": "old", "message": "x"}] * 5)
    w = await world(store, workers=4)
    qid = await w.add_quota(action="post_stats", posts=[1, 2, 3])
    other = await w.add_quota()
    await setup_round(store, w.workers)
    await quota_round(w, qid, other)
    now = time.time()
    for age in (20 * DAY, 2 * DAY, 1800.0, 90.0, 30.0, 0.5):  # rows finished long ago and a moment ago
        for status in ("done", "failed"):
            await backdoor.insert(store, "tasks", subject_type="quota", subject_id=other, account_id=w.workers[1],
                                  action="channel_stats", target="@x", status=status, created_at=now - age,
                                  reported_at=now - age)
    moved = await backdoor.insert(store, "tasks", subject_type="quota", subject_id=other, account_id=w.workers[2],
                                  action="channel_stats", target="@x", status="done", created_at=now,
                                  reported_at=now - 45)
    await backdoor.update(store, "tasks", {"id": moved}, reported_at=now - 5.5)  # reported again, later
    await backdoor.update(store, "account_tasks", {"account_id": w.workers[3], "status": "done"},
                          updated_at=now - 70.25)
    await assert_counters_are_counts(store, [now - 45, now - 5.5, now - 70.25, now - 30])

    cfg = config.load(None, env={}, overrides={"retention": {"finished_tasks_days": 1, "events_days": 30,
                                                               "batch_size": 2}})
    pruned = await Retention(cfg.retention, store).prune()
    assert pruned.tasks >= 2 and pruned.events == 5
    await assert_counters_are_counts(store, [now - 2 * DAY, now - 1800])

    async with database.opened() as again:  # a restart: the counters are in the database, not the process
        await assert_counters_are_counts(again, [now - 90])
        w2 = await world(again, workers=4, seed=False)  # the same accounts, on the reopened store
        await setup_round(again, w2.workers)
        await quota_round(w2, qid, other)
        assert await again.tasks_finished_since(time.time() - 60) > 0
        await assert_counters_are_counts(again, [now - 90, now - 0.5])
