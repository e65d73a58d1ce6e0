"""Bulk actions on both drivers: the accounts a filter names are the ones GET /accounts lists with it, and a
disable, enable, retry or pause of thousands runs in transactions of BULK_ROWS (never one per row), with each
changed account's event and delta as a single action's, and nothing written when an id is unknown."""

from __future__ import annotations

import math
import time

import pytest

from store import backdoor
from store.test_accounts import seed, seed_varied
from store.test_quotas import add
from tgdaemon.errors import Conflict, NotFound
from tgdaemon.store import STATES, Store, Tx
from tgdaemon.store.api import BULK_ROWS, AccountFilter

MANY = 2 * BULK_ROWS + 37  # three transactions, the last one short


async def listed(store: Store, **query: str | None) -> list[int]:
    rows, _ = await store.list_accounts(limit=10_000, **query)  # type: ignore[arg-type]
    return [r["id"] for r in rows]


async def test_a_filter_names_the_accounts_the_listing_shows_with_it(store: Store) -> None:
    model = await seed_varied(store)
    await backdoor.update(store, "accounts", {"id": 3}, health="limited")
    queries: list[dict[str, str | None]] = [{}, {"q": "alpha"}, {"q": "a_b"}, {"q": "7"}, {"health": "limited"},
                                            {"health": "unchecked"}, *({"state": s} for s in STATES),
                                            {"state": "ready", "q": "beta"}]
    for query in queries:
        targets = await store.bulk_targets(where=AccountFilter(**query))
        assert [t.id for t in targets] == sorted(await listed(store, **query)), query
    by_id = {t.id: t for t in await store.bulk_targets()}
    assert len(by_id) == len(model)
    for m in model:
        assert (by_id[m["id"]].label, by_id[m["id"]].disabled, by_id[m["id"]].executor) == (
            m["label"], m["disabled"], m["executor"])
    # ids and a filter together: the ids among those the filter lists
    ready = await listed(store, state="ready")
    assert [t.id for t in await store.bulk_targets([1, 2, 3, 4, 5, 6], AccountFilter(state="ready"))] == [
        i for i in range(1, 7) if i in ready]


async def test_unknown_ids_are_refused_before_anything_is_written(store: Store) -> None:
    await seed(store, 3)
    before = await store.events_after(0, 100)
    for call in (store.bulk_targets([1, 99, 7]), store.disable_accounts([1, 99, 7], "r"),
                 store.enable_accounts([2, 99]), store.retry_accounts_setup([3, 99])):
        with pytest.raises(NotFound, match="^account 7: no such account$|^account 99: no such account$"):
            await call
    assert [a["state"] for a in (await store.list_accounts())[0]] == ["ready"] * 3
    assert await store.events_after(0, 100) == before


async def test_disable_and_enable_of_thousands_commit_in_batches_with_an_event_and_delta_each(store: Store) -> None:
    await seed(store, MANY, probes=False)
    await store.disable_account(5, "earlier")
    commits: list[tuple[set[int], list[str]]] = []

    async def hook(tx: Tx) -> None:
        commits.append((set(tx.accounts), [e["kind"] for e in tx.events]))

    store.on_commit = hook
    everyone = list(range(1, MANY + 1))
    changed = await store.disable_accounts([*everyone, 7], "bulk test")  # a repeated id counts once
    assert changed == [i for i in everyone if i != 5]
    assert len(commits) == math.ceil(MANY / BULK_ROWS)  # batched: not one transaction, nor one per row
    assert set().union(*(touched for touched, _ in commits)) == set(changed)
    assert sum(len(kinds) for _, kinds in commits) == len(changed)
    assert all(set(kinds) == {"account.disabled"} for _, kinds in commits)
    accounts = {a["id"]: a for a in (await store.list_accounts(limit=10_000))[0]}
    assert {a["state"] for a in accounts.values()} == {"disabled"}
    assert accounts[5]["disabled_reason"] == "earlier" and accounts[6]["disabled_reason"] == "bulk test"
    [event] = await store.recent_events(account_id=6)
    assert (event["kind"], event["message"], event["data"]) == ("account.disabled", "disabled: bulk test",
                                                                 {"reason": "bulk test"})

    commits.clear()
    assert await store.disable_accounts(everyone, "again") == []
    assert commits == []  # nothing changed: nothing published
    assert await store.enable_accounts([5, 6, 6]) == [5, 6]
    assert [e["message"] for e in await store.recent_events(account_id=5, limit=1)] == ["enabled (was: earlier)"]
    assert [e["message"] for e in await store.recent_events(account_id=6, limit=1)] == ["enabled (was: bulk test)"]
    assert await store.enable_accounts([5, 6]) == []
    assert commits == [({5, 6}, ["account.enabled", "account.enabled"])]
    assert await store.enable_account(7) is True and await store.enable_account(7) is False


async def test_retry_of_many_makes_each_accounts_failed_and_waiting_tasks_due(store: Store) -> None:
    await seed(store, 4, probes=False)
    await store.dispatch_setup({"ensure_2fa": {}, "update_name": {}})
    await backdoor.update(store, "account_tasks", {"account_id": 1}, status="failed", attempts=3)
    await backdoor.update(store, "account_tasks", {"account_id": 2, "task_type": "update_name"}, status="retry",
                          attempts=1, retry_at=time.time() + 3600)
    await backdoor.update(store, "account_tasks", {"account_id": 3}, status="done")
    targets = {t.id: t.retryable for t in await store.bulk_targets([1, 2, 3, 4])}
    assert targets == {1: 2, 2: 1, 3: 0, 4: 0}  # what a dry run counts
    assert await store.retry_accounts_setup([1, 2, 3, 4]) == {1: 2, 2: 1}
    rows = await backdoor.rows(store, "account_tasks")
    assert {(r["account_id"], r["status"], r["attempts"]) for r in rows if r["account_id"] in (1, 2)} == {
        (1, "retry", 0), (2, "retry", 0), (2, "pending", 0)}
    requested = [e for e in await store.recent_events() if e["kind"] == "setup.retry_requested"]
    assert sorted((e["account_id"], e["data"]["tasks"]) for e in requested) == [(1, 2), (2, 1)]  # none for 3, 4
    assert await store.retry_account_setup(3) == 0


async def test_pausing_many_quotas_refuses_the_expired_ones_and_changes_the_rest(store: Store) -> None:
    running, paused, gone, other = [await add(store, n) for n in ("r", "p", "x", "o")]
    await store.set_quota_paused(paused, True)
    await backdoor.update(store, "quotas", {"id": gone}, expires_at=time.time() - 60)
    published: list[set[int]] = []

    async def hook(tx: Tx) -> None:
        published.append(set(tx.quotas))

    store.on_commit = hook
    done = await store.set_quotas_paused([running, paused, gone, other], True)
    assert done.changed == [running, other]
    [(refused, why)] = done.refused
    assert refused == gone and why.startswith(f"quota {gone} expired at ") and why.endswith("nothing to pause")
    assert published == [{running, other}]
    assert {q["id"]: q["paused"] for q in await store.quotas()} == {running: True, paused: True, gone: False,
                                                                     other: True}
    kinds = [(e["kind"], e["quota_id"]) for e in await store.events_after(0, 100) if e["kind"] == "quota.paused"]
    assert kinds == [("quota.paused", paused), ("quota.paused", running), ("quota.paused", other)]
    resumed = await store.set_quotas_paused([running, paused], False)
    assert (resumed.changed, resumed.refused) == ([running, paused], [])
    with pytest.raises(NotFound, match=f"^quota {other + 10}: no such quota$"):
        await store.set_quotas_paused([running, other + 10], True)
    assert (await store.quota(running))["paused"] is False  # the refused call changed nothing
    with pytest.raises(Conflict, match="there is nothing to resume"):
        await store.set_quota_paused(gone, False)
