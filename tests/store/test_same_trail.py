"""One fleet's day, played on the test's store and on a reference SQLite store side by side: every commit must
tell the hook the same accounts, quotas and events (the stream's deltas come from exactly that), and the
fleet must end in the same state. On the sqlite parameter this is SQLite against itself; on postgresql it
is the whole of the two drivers' observable behaviour, compared step by step."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from store.world import World, world
from tgdaemon.store import AccountEffect, SetupOutcome, Store, Tx
from tgdaemon.store.sqlite import SQLiteStore

Commit = tuple[list[int], list[int], list[tuple[Any, ...]]]
# What a view shows that depends on the moment it was written (world.py names quotas by the clock too): left
# out of the comparison.
MOMENTS = {"cooldown_until", "disabled_at", "last_ok_at", "next_run_at", "expires_at", "created_at", "inspected_at",
           "name"}


def _event(e: dict[str, Any]) -> tuple[Any, ...]:
    data = {k: v for k, v in e["data"].items() if not isinstance(v, float)}  # retry_at and kin: moments
    return e["id"], e["kind"], e["account_id"], e["task_id"], e["quota_id"], data


def _timeless(view: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in view.items() if k not in MOMENTS}


async def day(store: Store) -> tuple[list[Commit], dict[str, Any]]:
    commits: list[Commit] = []

    async def hook(tx: Tx) -> None:
        commits.append((sorted(tx.accounts), sorted(tx.quotas), [_event(e) for e in tx.events]))

    w: World = await world(store, workers=6, probes=2, pace_seconds=30)
    store.on_commit = hook
    await store.add_provider("acme", "hash-acme")
    await store.assign_accounts(w.workers[3:], "acme")
    await store.dispatch_setup({"update_name": {}, "ensure_2fa": {}})
    claimed = sorted(await store.claim_setup(["update_name", "ensure_2fa"], 4, 600), key=lambda t: t.id)
    ends = [SetupOutcome("done", AccountEffect(ok=True, name=("Ann", "Lee"))),
            SetupOutcome("retry", AccountEffect(error_code="RPC_CALL_FAIL"), retry_at=time.time() + 60),
            SetupOutcome("failed", AccountEffect(disable_reason="USER_DEACTIVATED", error_code="USER_DEACTIVATED"))]
    assert len(claimed) == 4  # the last one is left running, for the recovery
    await store.finish_setup_many(list(zip(claimed[:-1], ends, strict=False)))
    counted = await w.add_quota(quantity=3)
    posts = await w.add_quota(action="post_stats", posts=[7, 8, 9])
    for _ in range(3):  # five tasks: three for the local accounts, two for acme's
        await w.add_quota(orders=1)
    await w.tick()
    local, acme = await w.pull(), await w.pull("acme")
    outcomes = [await w.done(local[0]), await w.fail(local[1], "FLOOD_WAIT_60"),
                await w.fail(acme[0], "CHANNEL_PRIVATE", "acme"), await w.done(local[0])]
    await w.expire(acme[1].task_id)
    await w.leases.reap()
    await w.due(counted, posts)
    await w.tick()
    outcomes += [await w.done(t) for t in await w.pull()] + [await w.done(t, "acme") for t in await w.pull("acme")]
    await store.recover_setup()
    await store.disable_account(w.workers[0], "operator")
    await store.enable_account(w.workers[0])
    await store.retry_account_setup(w.workers[1])
    await store.revoke_provider("acme")
    await store.set_quota_paused(posts, True)
    store.on_commit = None
    accounts, _ = await store.list_accounts(limit=1000)
    return commits, {
        "outcomes": outcomes,
        "accounts": [_timeless(a) for a in accounts],
        "quotas": [_timeless(q) for q in await store.quotas()],
        "setup": [(t["account_id"], t["task_type"], t["status"], t["attempts"], t["lock_holder"])
                  for t in await store.setup_tasks()],
        "counts": (await store.account_counts(), await store.task_counts(),
                   (await store.database_stats())["rows"]),
        "trail": [_event(e) for e in await store.events_after(0, 1000)],
    }


async def test_the_same_day_gives_the_same_deltas_and_the_same_fleet(store: Store, tmp_path: Path) -> None:
    reference = await SQLiteStore.open(tmp_path / "reference.sqlite3")
    try:
        expected_commits, expected = await day(reference)
    finally:
        await reference.close()
    commits, got = await day(store)
    assert len(expected_commits) > 20 and len(expected["trail"]) > 20  # the day did happen
    for i, (want, have) in enumerate(zip(expected_commits, commits, strict=False)):
        assert have == want, f"commit {i}"
    assert len(commits) == len(expected_commits)
    for key, want in expected.items():
        assert got[key] == want, key
