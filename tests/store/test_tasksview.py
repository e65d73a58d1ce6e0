"""The tasks view's store (issue 15, migrations SQLite 0016 / PostgreSQL 0007) on both drivers: an attempt row for
every finished attempt however it ended (setup finish, recovery, report, the reaper), pruned with its task; the
lanes' counters and the pulse equal what the rows say; the unified listing and its filters; the operator's
retry of setup and pulled tasks, its dry run and its refusals."""

from __future__ import annotations

import json
import time
from collections import Counter
from typing import Any

import pytest

from store import backdoor
from store.test_setup import seed
from store.world import World, world
from tgdaemon.errors import NotFound
from tgdaemon.store import AccountEffect, SetupOutcome, Store, TaskFilter
from tgdaemon.store.api import SETUP_ATTEMPTS_KEPT

LOCK = 600.0
TYPES = {"update_name": {}, "ensure_2fa": {}}


async def real_lanes(store: Store) -> dict[tuple[str, str, str], int]:
    out: Counter[tuple[str, str, str]] = Counter()
    for r in await backdoor.rows(store, "account_tasks"):
        out["setup", r["task_type"], r["status"]] += 1
    for r in await backdoor.rows(store, "tasks"):
        out["pulled", r["executor"] or "", r["status"]] += 1
    return dict(out)


async def assert_counters(store: Store, *, pruned: bool = False) -> None:
    """The lanes' counters are the rows' counts; the pulse's sum is the attempts' count (all within the hour),
    unless attempts were pruned since: the pulse counts what ended, which pruning does not undo."""
    assert {(c.kind, c.lane, c.status): c.n for c in await store.lane_counts()} == await real_lanes(store)
    if pruned:
        return
    attempts = await backdoor.rows(store, "task_attempts")
    pulse = Counter()
    for p in await store.pulse(time.time() - 3600):
        pulse[p.kind, p.lane, p.outcome] += p.n
    real = Counter((a["kind"], a["task_type"] if a["kind"] == "setup" else a["executor"], a["outcome"])
                   for a in attempts)
    assert dict(pulse) == dict(real)


async def finish(store: Store, task: Any, status: str, code: str | None = None) -> None:
    await store.finish_setup(task, SetupOutcome(status, AccountEffect(ok=status == "done", error_code=code),
                                                retry_at=time.time() - 1 if status == "retry" else None,
                                                error=None if code is None else f"because {code}"))


async def test_every_setup_attempt_is_recorded_as_it_ended(store: Store) -> None:
    await seed(store, 3)
    await store.dispatch_setup(TYPES)
    claimed = await store.claim_setup(["update_name"], 10, LOCK)
    assert len(claimed) == 3
    by_account = {t.account_id: t for t in claimed}
    await finish(store, by_account[1], "done")
    await finish(store, by_account[2], "retry", "RPC_CALL_FAIL")
    await finish(store, by_account[3], "failed", "AUTH_KEY_UNREGISTERED")
    [again] = await store.claim_setup(["update_name"], 10, LOCK)  # account 2's retry is due
    assert again.account_id == 2
    assert await store.recover_setup() == 1  # the daemon stopped while it ran
    rows = await backdoor.rows(store, "task_attempts")
    assert [(r["kind"], r["account_id"], r["attempt"], r["task_type"], r["outcome"], r["error_code"])
            for r in rows] == [("setup", 1, 1, "update_name", "done", None),
                               ("setup", 2, 1, "update_name", "retry", "RPC_CALL_FAIL"),
                               ("setup", 3, 1, "update_name", "failed", "AUTH_KEY_UNREGISTERED"),
                               ("setup", 2, 2, "update_name", "interrupted", "INTERRUPTED")]
    assert rows[1]["error"] == "because RPC_CALL_FAIL"
    assert all(r["started_at"] is not None and r["started_at"] <= r["ended_at"] <= time.time() for r in rows)
    task = await store.get_task("setup", again.id)
    assert (task["status"], task["last_error_code"]) == ("retry", "INTERRUPTED")
    history = await store.task_attempts("setup", again.id)
    assert [(a["attempt"], a["outcome"]) for a in history] == [(1, "retry"), (2, "interrupted")]
    await assert_counters(store)


async def test_a_setup_task_keeps_its_last_attempts_only_and_loses_them_with_its_account(store: Store) -> None:
    await seed(store, 1)
    await store.dispatch_setup({"update_name": {}})
    for _ in range(SETUP_ATTEMPTS_KEPT + 3):
        [task] = await store.claim_setup(["update_name"], 1, LOCK)
        await finish(store, task, "retry", "RPC_CALL_FAIL")
    history = await store.task_attempts("setup", task.id)
    assert [a["attempt"] for a in history] == list(range(4, SETUP_ATTEMPTS_KEPT + 4))
    await backdoor.delete(store, "account_tasks", id=task.id)
    assert await backdoor.count(store, "task_attempts") == 0
    await assert_counters(store, pruned=True)


async def test_pulled_attempts_done_failed_and_expired_and_pruned_with_their_task(store: Store) -> None:
    w = await world(store, workers=3, max_leases=2)
    for _ in range(3):
        await w.add_quota()
    await w.tick()
    first, second, third = sorted(await w.pull(), key=lambda t: t.task_id)
    assert await w.done(first) == "applied"
    assert await w.fail(second, "CHANNEL_PRIVATE") == "applied"
    await w.expire(third.task_id)
    await w.leases.reap()  # back to pending: its first lease expired
    [third_again] = await w.pull()
    await w.expire(third_again.task_id)
    await w.leases.reap()  # its second: failed for good
    rows = await backdoor.rows(store, "task_attempts")
    assert [(r["task_id"], r["attempt"], r["executor"], r["outcome"], r["error_code"]) for r in rows] == [
        (first.task_id, 1, "local", "done", None), (second.task_id, 1, "local", "failed", "CHANNEL_PRIVATE"),
        (third.task_id, 1, "local", "expired", "LEASE_EXPIRED"), (third.task_id, 2, "local", "expired",
                                                                    "LEASE_EXPIRED")]
    assert rows[1]["error"] == "from the test"
    assert all(r["started_at"] is not None and r["task_type"] == "channel_stats" for r in rows)
    assert (await store.get_task("pulled", third.task_id))["status"] == "failed"
    await assert_counters(store)
    # Retention prunes a finished task with its history.
    await backdoor.update(store, "tasks", {"id": first.task_id}, reported_at=time.time() - 40 * 86400)
    batch = await store.prune_tasks(time.time() - 30 * 86400, 100, None, time.time())
    assert batch.deleted == 1
    assert [r["task_id"] for r in await backdoor.rows(store, "task_attempts", kind="pulled")] == [
        second.task_id, third.task_id, third.task_id]
    with pytest.raises(NotFound, match=f"task pulled:{first.task_id}: no such task"):
        await store.task_attempts("pulled", first.task_id)
    await assert_counters(store, pruned=True)


async def test_the_listing_filters_both_kinds(store: Store) -> None:
    w = await world(store, workers=2)
    await store.dispatch_setup(TYPES)
    [claimed] = [t for t in await store.claim_setup(["update_name"], 10, LOCK) if t.account_id == 2]
    await finish(store, claimed, "failed", "AUTH_KEY_UNREGISTERED")
    await w.add_quota()
    await w.tick()
    leased = await w.pull()
    assert await w.fail(leased[0], "CHANNEL_PRIVATE") == "applied"
    everything = await store.list_tasks(TaskFilter())
    assert Counter(t["kind"] for t in everything) == {"setup": 4, "pulled": 1}  # account 1: the probe
    failed = await store.list_tasks(TaskFilter(status="failed"))
    assert sorted((t["kind"], t["id"]) for t in failed) == sorted([("setup", claimed.id),
                                                                   ("pulled", leased[0].task_id)])
    [pulled] = [t for t in failed if t["kind"] == "pulled"]
    assert (pulled["executor"], pulled["task_type"], pulled["last_error_code"], pulled["attempts"],
            pulled["last_error"]) == ("local", "channel_stats", "CHANNEL_PRIVATE", 1, "from the test")
    assert {t["kind"] for t in await store.list_tasks(TaskFilter(kind="setup"))} == {"setup"}
    assert {t["task_type"] for t in await store.list_tasks(TaskFilter(types=("ensure_2fa",)))} == {"ensure_2fa"}
    assert {t["kind"] for t in await store.list_tasks(TaskFilter(executor="local"))} == {"pulled"}
    assert await store.list_tasks(TaskFilter(executor="nobody")) == []
    assert {t["account_id"] for t in await store.list_tasks(TaskFilter(account_id=2, kind="setup"))} == {2}
    assert len(await store.list_tasks(TaskFilter(kind="setup"), limit=2)) == 2
    assert [t["id"] for t in await store.list_tasks(TaskFilter(ids=(("setup", claimed.id),)))] == [claimed.id]
    with pytest.raises(NotFound, match="task setup:9999: no such task"):
        await store.get_task("setup", 9999)
    await assert_counters(store)


async def test_retry_of_setup_tasks_by_filter_dry_run_first(store: Store) -> None:
    await seed(store, 3)
    await store.dispatch_setup(TYPES)
    claimed = await store.claim_setup(["update_name", "ensure_2fa"], 10, LOCK)
    for t in claimed:
        await finish(store, t, "failed" if t.account_id < 3 else "done", "X" if t.account_id < 3 else None)
    failed = TaskFilter(kind="setup", status="failed")
    dry = await store.retry_tasks(failed, dry_run=True)
    assert (dry.matched, dry.retried, dry.refused_count, dry.dry_run) == (2, 2, 0, True)
    assert await backdoor.count(store, "account_tasks", status="failed") == 2  # nothing written
    done = await store.retry_tasks(failed)
    assert (done.matched, done.retried) == (2, 2)
    rows = await backdoor.rows(store, "account_tasks", status="retry")
    assert sorted(r["account_id"] for r in rows) == [1, 2]
    assert all((r["attempts"], r["retry_at"]) == (0, None) for r in rows)
    assert any(e["kind"] == "tasks.retry_requested" for e in await store.recent_events())
    # By ids: a done one is named with its reason.
    done_task = next(t for t in claimed if t.account_id == 3)
    out = await store.retry_tasks(TaskFilter(ids=(("setup", done_task.id), ("setup", rows[0]["id"]))))
    assert (out.matched, out.retried, out.refused_count) == (2, 1, 1)
    assert out.refused == [("setup", done_task.id, "done: only a failed or waiting setup task is retried")]
    await assert_counters(store)


async def pulled_failures(w: World) -> tuple[int, list[int]]:
    """One quota's two failed tasks (two rounds, one task each), of different accounts."""
    qid = await w.add_quota()
    await w.tick()
    await w.due(qid)
    await w.tick()
    tasks = sorted(await w.pull(), key=lambda t: t.task_id)
    for t in tasks:
        assert await w.fail(t, "RPC_CALL_FAIL") == "applied"
    return qid, [t.task_id for t in tasks]


async def test_retry_of_a_failed_pulled_task_back_to_pending_while_its_quota_is_active(store: Store) -> None:
    w = await world(store, workers=2)
    qid, (a, b) = await pulled_failures(w)
    await w.set_quota(qid, paused=1)
    out = await store.retry_tasks(TaskFilter(kind="pulled", status="failed"))
    assert (out.matched, out.retried, out.refused_count) == (2, 0, 2)
    assert {why for _, _, why in out.refused} == {f"quota {qid} is paused"}
    await w.set_quota(qid, paused=0)
    dry = await store.retry_tasks(TaskFilter(kind="pulled", status="failed"), dry_run=True)
    assert (dry.retried, await backdoor.count(store, "tasks", status="failed")) == (2, 2)
    out = await store.retry_tasks(TaskFilter(ids=(("pulled", a),)), pulled_window=LOCK)
    assert (out.matched, out.retried) == (1, 1)
    row = await w.task(a)
    assert (row["status"], row["lease_count"], row["error_code"], row["reported_at"]) == ("pending", 0, None, None)
    assert (await w.lock(row["account_id"]))["holder"] == f"quota:{a}"
    [leased] = await w.pull()  # it is pulled again like a new one
    assert leased.task_id == a
    assert await w.done(leased) == "applied"
    history = await store.task_attempts("pulled", a)
    assert [(h["attempt"], h["outcome"]) for h in history] == [(1, "failed"), (1, "done")]
    # A task of an account with another open task waits: retried one at a time per account.
    await w.due(qid)
    await w.tick()
    [open_one] = [t for t in await w.tasks(status="pending")]
    other = await backdoor.rows(store, "tasks", account_id=open_one["account_id"], status="failed")
    if other:
        out = await store.retry_tasks(TaskFilter(ids=(("pulled", other[0]["id"]),)))
        assert out.refused == [("pulled", other[0]["id"], f"account {open_one['account_id']} has another open task")]
    out = await store.retry_tasks(TaskFilter(ids=(("pulled", open_one["id"]),)))
    assert out.refused == [("pulled", open_one["id"], "pending: only a failed pulled task is retried")]
    await assert_counters(store)


async def test_a_reassigned_account_moves_its_pending_task_to_the_new_lane(store: Store) -> None:
    w = await world(store, workers=1)
    await store.add_provider("acme", "h" * 64)
    await w.add_quota()
    await w.tick()
    [pending] = await w.tasks(status="pending")
    assert pending["executor"] == "local"
    await store.assign_accounts([pending["account_id"]], "acme")
    assert (await w.task(pending["id"]))["executor"] == "acme"
    assert [t["id"] for t in await store.list_tasks(TaskFilter(executor="acme"))] == [pending["id"]]
    await assert_counters(store)


async def test_the_pulse_counts_attempts_per_minute(store: Store) -> None:
    await seed(store, 2)
    await store.dispatch_setup({"update_name": {}})
    for t in await store.claim_setup(["update_name"], 10, LOCK):
        await finish(store, t, "done" if t.account_id == 1 else "failed", None if t.account_id == 1 else "X")
    minute = int(time.time() // 60 * 60)
    got = {(p.kind, p.lane, p.outcome): p.n for p in await store.pulse(minute - 60) if p.minute >= minute - 60}
    assert got == {("setup", "update_name", "done"): 1, ("setup", "update_name", "failed"): 1}
    assert await store.pulse(time.time() + 120) == []
    json.dumps([p.minute for p in await store.pulse(0)])  # plain ints
