"""The event log as the stream's source, on both drivers (design 3.1): a commit that touched what none of its
events names adds one ``changes`` row before COMMIT; ids follow commit order; the audit trail never shows
those rows; retention records how far it pruned; new accounts are a change like any other; the stream's
Hub follows either driver's log."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from typing import Any

import pytest

from store import backdoor
from tgdaemon.lifecycle.daemon import change_publisher
from tgdaemon.store import Store, Tx
from tgdaemon.store.api import CHANGES_KIND, EVENTS_PRUNED_THROUGH
from tgdaemon.stream import Hub, Position, Subscription, derive

DAY = 86400.0


async def seed(store: Store, n: int, first: int = 1) -> None:
    async with store.tx() as tx:
        await store.insert_accounts(tx, ({"phone": f"+1555{i:07d}", "tg_user_id": 1000 + i, "label": f"acc-{i}",
                                          "is_probe": 0, "profile_json": "{}"} for i in range(first, first + n)))


async def add_quota(store: Store, name: str) -> int:
    return await store.add_quota(name=name, target="@tgfleet_news", action="channel_stats", last_n_posts=0,
                                 quantity=10, orders=None, interval_seconds=60, expires_at=time.time() + 3600)


def hooked(store: Store) -> list[Tx]:
    """The transactions the commit hook is given, from now on."""
    published: list[Tx] = []

    async def hook(tx: Tx) -> None:
        published.append(tx)

    store.on_commit = hook
    return published


async def test_what_no_event_names_is_one_sorted_changes_row_written_last(store: Store) -> None:
    await seed(store, 5)
    head = await store.last_event_id()
    published = hooked(store)
    async with store.tx() as tx:
        for account_id in (4, 2, 5, 1):
            tx.touch(account_id)
        for quota_id in (9, 7, 6):
            tx.touch_quota(quota_id)
        await tx.event("test.named", "names account 1", account_id=1)
        await tx.events_many([{"kind": "test.many", "message": "names 5 and quota 6", "account_id": 5,
                               "quota_id": 6}])
        await tx.event("test.quota", "names quota 9 only", quota_id=9)
        await tx.event("test.other", "names account 3, not touched before", account_id=3)
    [committed] = published
    *audit, changes = committed.events
    assert [e["kind"] for e in audit] == ["test.named", "test.many", "test.quota", "test.other"]
    assert {k: changes[k] for k in ("kind", "message", "account_id", "task_id", "quota_id", "data")} == {
        "kind": CHANGES_KIND, "message": "", "account_id": None, "task_id": None, "quota_id": None,
        "data": {"accounts": [2, 4], "quotas": [7]}}
    assert committed.accounts == {1, 2, 3, 4, 5} and committed.quotas == {6, 7, 9}
    assert changes["id"] == await store.last_event_id() > audit[-1]["id"]
    logged = await store.events_after(head, 100)
    assert [e["id"] for e in logged] == [e["id"] for e in committed.events]  # the hook was told what the log holds
    assert (logged[-1]["kind"], logged[-1]["data"], logged[-1]["message"]) == (CHANGES_KIND, changes["data"], "")
    stored = await backdoor.row(store, "events", id=changes["id"])  # as stored, not only as it reads back
    assert (stored["kind"], json.loads(stored["data_json"])) == (CHANGES_KIND, {"accounts": [2, 4], "quotas": [7]})
    assert (stored["account_id"], stored["task_id"], stored["quota_id"]) == (None, None, None)


async def test_a_commit_whose_events_name_all_it_touched_or_that_touched_nothing_adds_no_row(store: Store) -> None:
    await seed(store, 2)
    head = await store.last_event_id()
    published = hooked(store)
    async with store.tx() as tx:
        tx.touch(1)
        tx.touch_quota(3)
        await tx.event("test.a", "account 1", account_id=1)
        await tx.event("test.q", "quota 3", quota_id=3)
    async with store.tx() as tx:  # a meta key is no object of the stream's
        await tx.set_meta("k", "v")
    assert [e["kind"] for e in await store.events_after(head, 100)] == ["test.a", "test.q"]
    assert [[e["kind"] for e in tx.events] for tx in published] == [["test.a", "test.q"]]  # nothing, no call


async def test_new_accounts_are_touched_and_logged_by_their_ids(store: Store) -> None:
    await seed(store, 3)
    head = await store.last_event_id()
    published = hooked(store)
    await seed(store, 2, first=4)
    [committed] = published
    assert committed.accounts == {4, 5}, "the ids the insert gave, not the ones before"
    [row] = await store.events_after(head, 100)
    assert (row["kind"], row["data"]) == (CHANGES_KIND, {"accounts": [4, 5], "quotas": []})
    assert [a["id"] for a in await store.accounts_by_id(None, committed.accounts)] == [4, 5]


async def test_the_audit_trail_leaves_the_changes_rows_out_and_counts_its_limit_without_them(store: Store) -> None:
    await seed(store, 3)
    async with store.tx() as tx:
        await tx.event("test.first", "one", account_id=1)
    async with store.tx() as tx:
        tx.touch(2)
    async with store.tx() as tx:
        await tx.event("test.second", "two", account_id=1)
        tx.touch(3)  # with a changes row of the same commit
    async with store.tx() as tx:
        tx.touch_quota(1)
    kinds = [e["kind"] for e in await store.events_after(0, 100)]
    assert kinds == [CHANGES_KIND, "test.first", CHANGES_KIND, "test.second", CHANGES_KIND, CHANGES_KIND]
    assert [e["kind"] for e in await store.recent_events()] == ["test.second", "test.first"]
    assert [e["kind"] for e in await store.recent_events(limit=1)] == ["test.second"]
    assert [e["kind"] for e in await store.recent_events(account_id=1, limit=1)] == ["test.second"]
    assert await store.recent_events(account_id=3) == []  # touched, named by no audit event


async def test_last_event_id_is_zero_for_an_empty_log_then_the_newest_id(store: Store) -> None:
    assert await store.last_event_id() == 0
    async with store.tx() as tx:
        await tx.event("test.one", "one")
        await tx.events_many([{"kind": "test.many", "message": str(i)} for i in range(3)])
    assert await store.last_event_id() == tx.events[-1]["id"] == max(e["id"] for e in await store.events_after(0, 9))


async def test_ids_follow_commit_order_under_concurrent_writers(store: Store) -> None:
    """The stream reads the log by id and never looks below what it has read: a row committed later must
    never have a smaller id than one committed earlier."""
    await seed(store, 30)
    head = await store.last_event_id()
    published = hooked(store)

    async def write(i: int) -> None:
        async with store.tx() as tx:
            await tx.event("test.w", f"writer {i}", account_id=i)
            await asyncio.sleep(0)  # let the others queue up behind this one
            tx.touch(i % 30 + 1)
            await tx.events_many([{"kind": "test.w2", "message": f"writer {i} again"}])

    await asyncio.gather(*(write(i) for i in range(1, 31)))
    in_commit_order = [e["id"] for tx in published for e in tx.events]
    assert len(published) == 30 and in_commit_order == sorted(in_commit_order)
    assert len(set(in_commit_order)) == len(in_commit_order)
    assert [e["id"] for e in await store.events_after(head, 1000)] == in_commit_order


async def test_pruning_records_the_highest_id_it_deleted_in_the_same_transaction(store: Store) -> None:
    old, young, future = time.time() - 40 * DAY, time.time(), time.time() + DAY
    ids = await backdoor.insert_many(store, "events", [
        {"at": at, "kind": kind, "message": "x"} for at, kind in
        [(old, "old"), (future, "future"), (old, "old"), (old, "old"), (young, "young"), (old, "old")]])
    assert await store.get_meta(EVENTS_PRUNED_THROUGH) is None
    before = time.time() - 30 * DAY

    first = await store.prune_events(before, 2, time.time())  # the oldest, and the future one stepped over
    assert first.deleted == 1 and await store.get_meta(EVENTS_PRUNED_THROUGH) == str(ids[0])
    second = await store.prune_events(before, 3, time.time())
    assert second.deleted == 2 and await store.get_meta(EVENTS_PRUNED_THROUGH) == str(ids[3])
    nothing = await store.prune_events(before, 3, time.time())  # the young one stops it: no DELETE
    assert nothing.deleted == 0 and await store.get_meta(EVENTS_PRUNED_THROUGH) == str(ids[3])
    assert [r["kind"] for r in await backdoor.rows(store, "events")] == ["future", "young", "old"]

    await backdoor.update(store, "events", {"kind": "young"}, at=old)
    await backdoor.update(store, "events", {"kind": "future"}, at=old)
    everything = await store.prune_events(before, 10, time.time())
    assert everything.deleted == 3 and await store.get_meta(EVENTS_PRUNED_THROUGH) == str(ids[-1])
    assert await store.last_event_id() == 0  # the log is empty, and says so; the meta key says where it ended
    async with store.tx() as tx:
        await tx.event("test.after", "after pruning everything")
    assert tx.events[0]["id"] > ids[-1], "an id is never given twice: a cursor from before cannot be mistaken"


async def test_a_batch_that_deletes_nothing_leaves_the_record_alone(store: Store) -> None:
    await backdoor.insert_many(store, "events", [{"at": time.time(), "kind": "young", "message": "x"}] * 2)
    async with store.tx() as tx:
        await tx.set_meta(EVENTS_PRUNED_THROUGH, "1")  # as a copied database may hold it
    assert (await store.prune_events(time.time() - DAY, 10, time.time())).deleted == 0
    assert await store.get_meta(EVENTS_PRUNED_THROUGH) == "1"


async def test_a_changes_row_derives_the_states_it_names_read_outside_any_transaction(store: Store) -> None:
    await seed(store, 3)
    q1, q2 = await add_quota(store, "one"), await add_quota(store, "two")
    head = await store.last_event_id()
    async with store.tx() as tx:
        assert await store.take_lock(tx, 2, "test", 60)
        tx.touch_quota(q2)
        tx.touch_quota(q1)
    rows = await store.events_after(head, 10)
    [position] = await derive(store, rows, head)
    items: list[dict[str, Any]] = [json.loads(i) for i in position.items]
    assert [(d["kind"], d["data"]["id"]) for d in items] == [("account", 2), ("quota", q1), ("quota", q2)]
    assert items[0]["data"] == (await store.accounts_by_id(None, [2]))[0] and items[0]["data"]["state"] == "busy"
    assert [d["data"] for d in items[1:]] == [await store.quota(q1), await store.quota(q2)]
    assert {d["seq"] for d in items} == {rows[0]["id"]} and {d["prev"] for d in items} == {head}


async def test_quotas_by_id_reads_outside_a_transaction_or_in_one(store: Store) -> None:
    q1, q2 = await add_quota(store, "one"), await add_quota(store, "two")
    views = sorted(await store.quotas_by_id(None, iter([q2, q1, 999])), key=lambda v: v["id"])
    assert views == [await store.quota(q1), await store.quota(q2)]  # an unknown id is left out
    assert await store.quotas_by_id(None, []) == []
    async with store.tx() as tx:  # on the transaction's own connection
        assert await store.quotas_by_id(tx, {q1}) == [await store.quota(q1)]


async def positions(sub: Subscription, n: int) -> list[Position]:
    got: list[Position] = []
    for _ in range(20):  # bounded in count and in time
        got += await asyncio.wait_for(sub.next_batch(), 10)
        if len(got) >= n:
            return got
    raise AssertionError(f"only {len(got)} of {n} positions")


async def test_the_hub_follows_the_log_across_the_id_a_rolled_back_transaction_took(store: Store) -> None:
    """On PostgreSQL an identity value a rolled-back transaction took is never given again: the log has a
    gap there (on SQLite none). The stream crosses it, reading the rows after it from the log, with every
    delta's ``prev`` naming the row before. (A transaction that fails before its end takes no id: its log
    rows are written just before COMMIT.)"""
    await seed(store, 3)
    hub = await Hub.open(store, queue_size=1000, replay_size=1000)
    store.on_commit = change_publisher(hub)
    sub = hub.subscribe()
    follow = asyncio.create_task(hub.run())
    try:
        await store.disable_account(1, "before")
        with pytest.raises(RuntimeError, match="boom"):
            async with store.tx() as tx:
                await tx.event("test.lost", "rolled back before its end", account_id=2)
                raise RuntimeError("boom")
        async with backdoor.log_writes_fail(store, "test.lost"):
            with pytest.raises(backdoor.INJECTED_ERRORS):
                async with store.tx() as tx:
                    await tx.event("test.lost", "rolled back as its log rows are written", account_id=2)
        async with store.tx() as tx:
            assert await store.take_lock(tx, 2, "test", 60)  # named by no event: a changes row
        await store.disable_account(3, "after")
        got = await positions(sub, 3)
    finally:
        follow.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await follow
    rows = await store.events_after(sub.start_seq, 100)
    assert [r["kind"] for r in rows] == ["account.disabled", CHANGES_KIND, "account.disabled"]
    if store.kind == "postgresql":
        assert rows[1]["id"] > rows[0]["id"] + 1, "the rolled-back transaction's id is a gap in the log"
    assert [p.seq for p in got] == [r["id"] for r in rows]
    deltas = [[json.loads(i) for i in p.items] for p in got]
    assert [[(d["kind"], d["data"]["id"]) for d in p] for p in deltas] == [
        [("account", 1), ("event", rows[0]["id"])], [("account", 2)], [("account", 3), ("event", rows[2]["id"])]]
    assert [{d["prev"] for d in p} for p in deltas] == [{sub.start_seq}, {rows[0]["id"]}, {rows[1]["id"]}]
    assert deltas[1][0]["data"]["state"] == "busy" and deltas[2][0]["data"]["state"] == "disabled"
