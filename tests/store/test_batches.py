"""The pulled-task operations called directly, many items to a call, as group commit calls them (design 5.2 to
5.5), on both drivers: each ask and each report of a batch gets its own answer, in order, and the batch is
one transaction; what a batch tells the commit hook (the stream's deltas) is the same on both."""

from __future__ import annotations

import re
import time

from store import backdoor
from store.world import SLACK, World, close_to, world
from tgdaemon.quotas.leases import utc_day
from tgdaemon.store import (
    AccountEffect,
    Finish,
    Generation,
    LeaseAsk,
    Reaped,
    Store,
    Tx,
)

TOKEN = re.compile(r"[0-9a-f]{32}")
TASK_KEYS = {"id", "lease_token", "account_id", "action", "target", "post_id", "subject_type", "subject_id",
             "lease_expires_at", "epoch"}  # epoch: the account's ownership epoch, fencing the local executor


def generation(**over: object) -> Generation:
    fields: dict[str, object] = {"max_tasks": 100, "lock_seconds": 90.0, "daily_cap": 100, "day": utc_day(),
                                 "stale_before": time.time() - 86400, "local": True, **over}
    return Generation(**fields)  # type: ignore[arg-type]


async def split_world(store: Store, n: int = 6) -> World:
    """``n`` workers, the first half assigned to ``p-one``, the rest to ``p-two``; a task for each."""
    w = await world(store, workers=n, local_concurrency=0)
    for name, ids in (("p-one", w.workers[:n // 2]), ("p-two", w.workers[n // 2:])):
        await store.add_provider(name, f"hash-{name}")
        await store.assign_accounts(ids, name)
    for _ in range(n):
        await w.add_quota()
    assert (await store.generate(generation(local=False))).tasks == n
    return w


async def test_one_lease_call_serves_each_ask_in_turn(store: Store) -> None:
    w = await split_world(store)
    one = {r["id"] for r in await w.tasks() if r["account_id"] in w.workers[:3]}
    out = await store.lease_tasks([LeaseAsk("p-one", 2, 60, 90), LeaseAsk("p-two", 10, 60, 90),
                                   LeaseAsk("p-one", 10, 60, 90), LeaseAsk("nobody", 5, 60, 90)])
    assert [len(x) for x in out] == [2, 3, 1, 0]
    assert [t["id"] for t in out[0]] == sorted(one)[:2] and [t["id"] for t in out[2]] == sorted(one)[2:]
    leased = [t for ask in out for t in ask]
    assert len({t["lease_token"] for t in leased}) == 6 and all(TOKEN.fullmatch(t["lease_token"]) for t in leased)
    for t in leased:
        assert set(t) == TASK_KEYS
        assert (t["action"], t["subject_type"], t["post_id"]) == ("channel_stats", "quota", None)
        assert close_to(t["lease_expires_at"], time.time() + 60)
        row = await w.task(t["id"])
        assert (row["status"], row["leased_by"], row["lease_count"]) == (
            "leased", "p-one" if t["account_id"] in w.workers[:3] else "p-two", 1)
        lock = await w.lock(t["account_id"])
        assert lock is not None and close_to(lock["expires_at"], time.time() + 90)
    assert await store.lease_tasks([LeaseAsk("p-one", 10, 60, 90)]) == [[]]


async def test_a_lease_tells_the_hook_only_of_reservations_that_had_lapsed(store: Store) -> None:
    """A pending task's account is reserved already: leasing it changes no state anyone sees, unless the
    reservation had run out (the account looked free) and the lease takes the lock again."""
    w = await split_world(store, 2)
    lapsed = w.workers[1]
    await backdoor.update(store, "account_locks", {"account_id": lapsed}, expires_at=time.time() - 1)
    touched: list[set[int]] = []

    async def hook(tx: Tx) -> None:
        touched.append(set(tx.accounts))

    store.on_commit = hook
    out = await store.lease_tasks([LeaseAsk("p-one", 10, 60, 90), LeaseAsk("p-two", 10, 60, 90)])
    assert [len(x) for x in out] == [1, 1]
    assert touched == [{lapsed}]


async def test_one_report_call_applies_each_report_once_in_order(store: Store) -> None:
    w = await world(store, workers=3)
    qid = await w.add_quota(quantity=10)
    other = await w.add_quota(orders=2)
    await w.add_quota()
    assert (await w.tick()).tasks == 3
    [leased] = await store.lease_tasks([LeaseAsk("local", 10, 60, 90)])
    by_quota = {t["subject_id"]: t for t in leased}
    a, b = by_quota[qid], by_quota[other]
    c = next(t for t in leased if t["subject_id"] not in (qid, other))
    items = [
        Finish("local", a["id"], a["lease_token"], ok=True, observation={"views": 5, "title": "x"}),
        Finish("local", b["id"], b["lease_token"], ok=False, error_code="FLOOD_WAIT_60", error="wait",
               effect=AccountEffect(cooldown_until=time.time() + 60, cooldown_reason="FLOOD_WAIT",
                                    error_code="FLOOD_WAIT_60")),
        Finish("local", a["id"], a["lease_token"], ok=True, observation={"views": 6}),  # the same task again
        Finish("local", c["id"], "f" * 32, ok=True),  # a stale token
        Finish("acme", c["id"], c["lease_token"], ok=True),  # another executor's task
        Finish("local", 999_999, "f" * 32, ok=True),
    ]
    outcomes = await store.finish_tasks(items, pace_seconds=30, day=utc_day(), retry_seconds=600)
    assert outcomes == ["applied", "applied", "duplicate", "stale_lease", "not_found", "not_found"]
    assert (await w.quota(qid))["quantity_left"] == 9 and (await w.quota(other))["orders_left"] == 2
    done = await w.task(a["id"])
    assert done["status"] == "done" and close_to(done["reported_at"], time.time())
    [m] = await backdoor.rows(store, "measurements")
    assert (m["quota_id"], m["task_id"], m["views"]) == (qid, a["id"], 5)
    failed = await w.task(b["id"])
    assert (failed["status"], failed["error_code"]) == ("failed", "FLOOD_WAIT_60")
    assert (await store.get_account(b["account_id"]))["cooldown_reason"] == "FLOOD_WAIT"
    assert (await store.get_account(a["account_id"]))["cooldown_reason"] == "pace"
    assert (await w.task(c["id"]))["status"] == "leased"
    [event] = [e for e in await store.events_after(0, 100) if e["kind"] == "task.failed"]
    assert (event["task_id"], event["quota_id"], event["data"]) == (b["id"], other, {"code": "FLOOD_WAIT_60",
                                                                                     "target": False})


async def test_successes_for_one_quota_in_one_call_count_each(store: Store) -> None:
    w = await world(store, workers=3)
    qid = await w.add_quota(quantity=2, interval=0)
    assert [(await w.tick()).tasks for _ in range(3)] == [1, 1, 0]  # as many open tasks as calls left
    [leased] = await store.lease_tasks([LeaseAsk("local", 10, 60, 90)])
    items = [Finish("local", t["id"], t["lease_token"], ok=True, observation={"views": 1}) for t in leased]
    assert await store.finish_tasks(items, pace_seconds=0, day=utc_day(), retry_seconds=600) == ["applied"] * 2
    q = await store.quota(qid)
    assert (q["quantity_left"], q["measurements"]) == (0, 2)
    assert len(await backdoor.rows(store, "events", kind="quota.used_up")) == 1  # once, on the move to 0
    assert [(r["used"]) for r in await backdoor.rows(store, "usage")] == [1, 1]


async def test_extending_renews_the_lease_and_the_reservation(store: Store) -> None:
    w = await world(store, workers=2)
    await w.add_quota()
    await w.add_quota()
    await w.tick()
    [leased] = await store.lease_tasks([LeaseAsk("local", 10, 60, 90)])
    first, second = leased
    out = await store.extend_leases("local", [(first["id"], first["lease_token"]), (second["id"], "0" * 32),
                                              (first["id"], first["lease_token"])], 600, 700)
    assert [o for o, _ in out] == ["applied", "stale_lease", "applied"]
    assert close_to(out[0][1], time.time() + 600) and out[1][1] is None
    assert close_to((await w.task(first["id"]))["lease_expires_at"], time.time() + 600)
    assert close_to((await w.lock(first["account_id"]))["expires_at"], time.time() + 700)  # type: ignore[index]
    assert close_to((await w.task(second["id"]))["lease_expires_at"], time.time() + 60)


async def test_the_reaper_sorts_what_ran_out(store: Store) -> None:
    w = await world(store, workers=4, local_concurrency=0)
    await store.add_provider("acme", "hash-acme")
    await store.assign_accounts(w.workers, "acme")
    for _ in range(4):
        await w.add_quota()
    assert (await store.generate(generation(local=False))).tasks == 4
    [leased] = await store.lease_tasks([LeaseAsk("acme", 3, 60, 90)])
    back, spent, live = leased
    unpulled = next(r for r in await w.tasks(status="pending"))
    await backdoor.update(store, "tasks", {"id": spent["id"]}, lease_count=3)
    for t in (back, spent):
        await w.expire(t["id"])
    await w.expire(unpulled["id"])
    async with store.tx() as tx:  # the returned task's account was taken meanwhile: its holder keeps it
        await store.release_lock(tx, back["account_id"], f"quota:{back['id']}")
        assert await store.take_lock(tx, back["account_id"], "setup:77", 600)
    assert await store.reap_leases(3, 90) == Reaped(returned=1, failed=1, unpulled=1)
    row = await w.task(back["id"])
    assert (row["status"], row["lease_token"], row["leased_by"]) == ("pending", None, None)
    assert close_to(row["lease_expires_at"], time.time() + 90)
    assert (await w.lock(back["account_id"]))["holder"] == "setup:77"  # type: ignore[index]
    assert [(r["status"], r["error_code"]) for r in [await w.task(spent["id"]), await w.task(unpulled["id"])]] == [
        ("failed", "LEASE_EXPIRED"), ("failed", "NOT_PULLED")]
    assert await w.lock(spent["account_id"]) is None and await w.lock(unpulled["account_id"]) is None
    assert (await w.task(live["id"]))["status"] == "leased"
    expired = [e for e in await store.events_after(0, 100) if e["kind"] == "task.expired"]
    assert sorted((e["task_id"], e["data"]["code"]) for e in expired) == sorted(
        [(spent["id"], "LEASE_EXPIRED"), (unpulled["id"], "NOT_PULLED")])
    assert await store.reap_leases(3, 90) == Reaped()


async def test_generation_follows_its_parameters(store: Store) -> None:
    w = await world(store, workers=2)
    a, b = w.workers
    await backdoor.insert(store, "usage", account_id=a, day="2031-05-01", used=3)
    channel = await w.add_quota()
    stale = await w.add_quota(action="post_stats", posts=[4])
    await w.set_quota(stale, posts_fetched_at=time.time() - 7200)
    assert (await store.generate(generation(local=False))).tasks == 0  # every account is local's
    made = await store.generate(generation(day="2031-05-01", daily_cap=3, stale_before=time.time() - 3600))
    assert (made.tasks, made.no_account, made.empty) == (1, 0, 0)  # the stale snapshot waits for its refresh
    [task] = await w.tasks()
    assert (task["subject_id"], task["account_id"]) == (channel, b)  # a is at its cap on that day
    assert close_to(task["lease_expires_at"], time.time() + 90)
    assert close_to((await w.lock(b))["expires_at"], time.time() + 90)  # type: ignore[index]
    assert abs((await w.quota(channel))["next_run_at"] - time.time() - 60) < SLACK
    made = await store.generate(generation(stale_before=time.time() - 10_000))
    assert made.tasks == 1 and (await w.tasks(subject_id=stale))[0]["account_id"] == a
    assert (await store.generate(generation(max_tasks=0))).tasks == 0
