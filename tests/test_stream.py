"""The live stream from the event log: the Tx's ``changes`` rows, positions and frames, and /v1/watch of a real
daemon (in-process, and as a subprocess restarted under a client) through ControlClient.watch."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from conftest import FLEET_SIZE
from daemon_proc import fleet

from tgdaemon.control.client import ControlClient
from tgdaemon.errors import DaemonNotRunning
from tgdaemon.lifecycle.daemon import change_publisher
from tgdaemon.store import AccountEffect, Store
from tgdaemon.store.api import CHANGES_KIND, EVENTS_PRUNED_THROUGH, STREAM_EPOCH
from tgdaemon.stream import (
    Hub,
    Lagged,
    Position,
    batch_frames,
    derive,
    encode,
    snapshot_frames,
)
from tgdaemon.wire import StoreStatus
from tgtui.model import FleetModel

MSG_TIMEOUT = 10.0
Msg = dict[str, Any]


async def nxt(stream: AsyncIterator[Msg]) -> Msg:
    return await asyncio.wait_for(stream.__anext__(), MSG_TIMEOUT)


async def until(stream: AsyncIterator[Msg], done: Callable[[Msg], bool], limit: int = 5000) -> list[Msg]:
    """Messages up to and including the first for which ``done`` is true (bounded in count and time)."""
    got: list[Msg] = []
    for _ in range(limit):
        got.append(await nxt(stream))
        if done(got[-1]):
            return got
    raise AssertionError(f"not seen in {limit} messages: {got[-5:]}")


def is_event(kind: str, account_id: int | None = None) -> Callable[[Msg], bool]:
    return lambda m: (m.get("kind") == "event" and m["data"]["kind"] == kind
                      and (account_id is None or m["data"]["account_id"] == account_id))


def account_deltas(msgs: list[Msg], account_id: int) -> list[Msg]:
    return [m for m in msgs if m.get("kind") == "account" and m["data"]["id"] == account_id]


async def seed(store: Store, n: int = 3) -> None:
    async with store.tx() as tx:
        await store.insert_accounts(tx, ({"phone": f"+1555000{i:04d}", "tg_user_id": 1000 + i, "label": f"a{i}",
                                          "is_probe": 0, "profile_json": "{}"} for i in range(n)))


async def log_rows(store: Store, after: int = 0) -> list[Msg]:
    return await store.events_after(after, 10_000)


def position(seq: int, n: int = 1, pad: int = 0) -> Position:
    return Position(seq, [encode({"type": "delta", "seq": seq, "prev": seq - 1, "kind": "account", "op": "upsert",
                                  "data": {"id": i, "pad": "x" * pad}}) for i in range(n)])


# --- the log: every change is a row ------------------------------------------------------------

async def test_a_commit_logs_what_no_event_of_it_names_in_one_changes_row(store: Store) -> None:
    await seed(store)
    [seeded] = await log_rows(store)  # new accounts are a change too
    assert seeded["kind"] == CHANGES_KIND and seeded["data"] == {"accounts": [1, 2, 3], "quotas": []}
    quota = await store.add_quota(name="q", target="@tgfleet_news", action="channel_stats", last_n_posts=0,
                                  quantity=10, orders=None, interval_seconds=60, expires_at=time.time() + 3600)
    after = seeded["id"]
    assert [r["kind"] for r in await log_rows(store, after)] == ["quota.added"]  # it names what it touched
    after = (await log_rows(store))[-1]["id"]

    async with store.tx() as tx:  # a lock taken and a quota touched, no event: one compact row
        assert await store.take_lock(tx, 2, "test", 60)
        await store.take_lock(tx, 1, "test", 60)
        tx.touch_quota(quota)
    async with store.tx() as tx:  # an event names account 3; account 1 it does not
        await store.apply_account_effect(tx, 3, AccountEffect(cooldown_until=time.time() + 600,
                                                              cooldown_reason="flood"))
        await store.release_lock(tx, 1, "test")
    async with store.tx() as tx:  # everything touched is named by an event: no extra row
        await store.apply_account_effect(tx, 2, AccountEffect(disable_reason="banned"))
    async with store.tx() as tx:  # nothing touched: nothing written
        await tx.set_meta("x", "y")
    rows = await log_rows(store, after)
    assert [(r["kind"], r["account_id"], r["data"]) for r in rows] == [
        (CHANGES_KIND, None, {"accounts": [1, 2], "quotas": [quota]}),
        ("account.cooldown", 3, {"reason": "flood", "seconds": 600}),
        (CHANGES_KIND, None, {"accounts": [1], "quotas": []}),
        ("account.disabled", 2, {"reason": "banned", "automatic": True}),
    ]
    assert [r["id"] for r in rows] == sorted(r["id"] for r in rows)
    assert await store.last_event_id() == rows[-1]["id"]
    audit = await store.recent_events(limit=100)  # the audit trail does not show them
    assert [e["kind"] for e in audit] == ["account.disabled", "account.cooldown", "quota.added"]


async def test_derive_gives_each_row_its_states_then_its_event(store: Store) -> None:
    await seed(store)
    async with store.tx() as tx:
        await store.take_lock(tx, 1, "test", 60)
        await store.apply_account_effect(tx, 2, AccountEffect(cooldown_until=time.time() + 600,
                                                              cooldown_reason="flood"))
    async with store.tx() as tx:
        tx.touch(999)  # an account that does not exist: its row still yields a position, a mark
    rows = await log_rows(store)
    positions = await derive(store, rows, prev=0)
    assert [p.seq for p in positions] == [r["id"] for r in rows]
    decoded = [[json.loads(i) for i in p.items] for p in positions]
    seeded, cooldown, changes, missing = decoded
    assert [(d["kind"], d["data"]["id"]) for d in seeded] == [("account", 1), ("account", 2), ("account", 3)]
    assert [d["kind"] for d in cooldown] == ["account", "event"]  # the state, then the event that says why
    assert cooldown[0]["data"] == (await store.accounts_by_id(None, [2]))[0]
    assert cooldown[0]["data"]["state"] == "cooldown" and cooldown[1]["data"]["kind"] == "account.cooldown"
    assert [(d["kind"], d["data"]["id"], d["data"]["state"]) for d in changes] == [("account", 1, "busy")]
    assert missing == [{"type": "delta", "seq": rows[3]["id"], "prev": rows[2]["id"], "kind": "mark",
                        "op": "upsert", "data": {}}]
    prevs = [d["prev"] for p in decoded for d in p]  # every delta names the row before its own
    assert prevs == [0, 0, 0, rows[0]["id"], rows[0]["id"], rows[1]["id"], rows[2]["id"]]


async def test_the_hub_follows_the_log_in_id_order_and_reads_nothing_for_nobody(store: Store) -> None:
    await seed(store)
    hub = await Hub.open(store, queue_size=1000, replay_size=1000)
    assert hub.seq == await store.last_event_id() and len(hub.epoch) == 16
    assert (await Hub.open(store, queue_size=1000, replay_size=1000)).epoch == hub.epoch  # the database's own
    store.on_commit = change_publisher(hub)
    follow = asyncio.create_task(hub.run())
    try:
        async with store.tx() as tx:  # nobody subscribed: the cursor moves, no position is made
            await store.take_lock(tx, 1, "test", 60)
        for _ in range(200):
            if hub.seq == await store.last_event_id():
                break
            await asyncio.sleep(0.01)
        assert hub.seq == await store.last_event_id()
        sub = hub.subscribe()
        assert sub.start_seq == hub.seq
        # A second follower of the same log that is only told how far it grew, as a LISTEN/NOTIFY
        # handler would tell it (another daemon's commits): it reads the rows back from the log.
        other = Hub(store, hub.epoch, hub.seq, queue_size=1000, replay_size=1000)
        other_sub = other.subscribe()
        other_follow = asyncio.create_task(other.run())
        writers = [asyncio.create_task(store.disable_account(i, f"r{i}")) for i in (1, 2, 3)]
        await asyncio.gather(*writers)
        other.committed(await store.last_event_id())
        got, read_back = await three(sub), await three(other_sub)
        other_follow.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await other_follow
        rows = await log_rows(store, sub.start_seq)
        assert [p.seq for p in got] == [r["id"] for r in rows]  # one position per row, in id order
        assert [[json.loads(i)["kind"] for i in p.items] for p in got] == [["account", "event"]] * 3
        assert [json.loads(p.items[-1])["data"] for p in got] == rows
        assert got == read_back  # the rows handed over by the commit hook give the very same deltas
        assert hub.seq == rows[-1]["id"] == other.seq and sub.queued == 0
    finally:
        follow.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await follow


async def three(sub: Any) -> list[Position]:
    got: list[Position] = []
    for _ in range(20):
        got += await asyncio.wait_for(sub.next_batch(), MSG_TIMEOUT)
        if len(got) >= 3:
            return got
    raise AssertionError(f"only {len(got)} positions")


async def test_resumable_only_within_this_log_and_its_retention(store: Store) -> None:
    await seed(store)
    for i in (1, 2):
        await store.disable_account(i, "x")
    hub = await Hub.open(store, queue_size=1000, replay_size=2)
    head = hub.seq
    assert await hub.resumable(hub.epoch, head) and await hub.resumable(hub.epoch, head - 2)
    assert not await hub.resumable(hub.epoch, head - 3)  # further behind than replay_size: a snapshot is smaller
    assert not await hub.resumable("0123456789abcdef", head)  # another database's cursor
    assert not await hub.resumable(hub.epoch, head + 5)  # no such row in this log
    replayed = [p async for batch in hub.replay(head - 2, head) for p in batch]
    assert [p.seq for p in replayed] == [r["id"] for r in await log_rows(store, head - 2)]

    first = (await log_rows(store))[0]["id"]
    batch = await store.prune_events(before=time.time() + 10, limit=1, at=time.time() + 10)
    assert batch.deleted == 1 and await store.get_meta(EVENTS_PRUNED_THROUGH) == str(first)
    wide = Hub(store, hub.epoch, head, queue_size=1000, replay_size=1000)
    assert not await wide.resumable(hub.epoch, first - 1)  # the row after it was pruned
    assert await wide.resumable(hub.epoch, first)  # everything after it is still there
    assert await store.get_meta(STREAM_EPOCH) == hub.epoch


# --- subscriptions and frames -------------------------------------------------------------------

async def test_a_subscription_is_bounded_in_deltas_and_lags_instead_of_growing(store: Store) -> None:
    hub = await Hub.open(store, queue_size=10, replay_size=10)
    slow, fast = hub.subscribe(), hub.subscribe()
    got: list[int] = []
    for seq in range(1, 40):
        hub.publish(position(seq, n=3))
        assert slow.queued <= 10 and fast.queued <= 10
        if seq % 2 == 0:
            got += [p.seq for p in await fast.next_batch()]
    got += [p.seq for p in await fast.next_batch(max_items=1)]  # whole positions, at least one
    assert got == list(range(1, 40)) and not fast.lagged
    assert slow.lagged and slow.queued == 0
    for _ in range(2):  # it stays lagged: it must resubscribe and load a snapshot
        with pytest.raises(Lagged):
            await asyncio.wait_for(slow.next_batch(), MSG_TIMEOUT)
    ahead = hub.subscribe()
    ahead.floor = hub.seq + 2  # a client that resumed ahead of the hub gets nothing twice
    for seq in range(hub.seq + 1, hub.seq + 4):
        hub.publish(position(seq))
    assert [p.seq for p in await ahead.next_batch()] == [hub.seq]
    for sub in (slow, fast, ahead):
        sub.close()
    assert hub.subscribers == 0


async def test_lagged_wakes_a_waiting_subscriber(store: Store) -> None:
    hub = await Hub.open(store, queue_size=2, replay_size=4)
    sub = hub.subscribe()
    waiter = asyncio.create_task(sub.next_batch())
    await asyncio.sleep(0)
    assert not waiter.done()
    hub.publish(position(1, n=3))  # more deltas than the queue holds, before the waiter ever runs
    with pytest.raises(Lagged):
        await asyncio.wait_for(waiter, MSG_TIMEOUT)


def test_frames_keep_a_row_whole_and_split_only_a_row_bigger_than_a_frame() -> None:
    positions = [position(seq, n=seq % 4 + 1, pad=200) for seq in range(1, 60)]
    positions += [position(60, n=40, pad=200), position(61, n=2)]
    frames = batch_frames(positions, limit=3000)
    assert len(frames) > 5 and all(len(f) <= 3000 for f in frames)
    decoded = [json.loads(f) for f in frames]
    items = [d["items"] if d["type"] == "deltas" else [d] for d in decoded]
    assert [(i["seq"], i["data"]["id"]) for group in items for i in group] == [
        (p.seq, i) for p in positions for i in range(len(p.items))]  # everything, in order
    for seq in (*range(1, 60), 61):  # a row that fits in a frame is never split
        assert sum(any(i["seq"] == seq for i in group) for group in items) == 1
    big = [d.get("more", False) for d, group in zip(decoded, items) if any(i["seq"] == 60 for i in group)]
    assert len(big) > 1 and big == [True] * (len(big) - 1) + [False]  # the client waits for its last frame
    assert sum(d.get("more", False) for d in decoded) == len(big) - 1
    [one] = batch_frames([position(1)])
    assert one == position(1).items[0]  # a lone delta is the frame itself
    assert batch_frames([]) == []


def test_snapshot_frames_split_every_list_in_order() -> None:
    head = {"epoch": "ab12", "seq": 7, "status": {"ok": True}}
    lists = {"accounts": [{"id": i, "label": f"a{i}" * 5} for i in range(500)],
             "quotas": [{"id": 1}], "events": [{"id": i, "message": 'q"uote'} for i in range(40)]}
    frames = snapshot_frames(head, lists, limit=1500)
    assert len(frames) > 3 and all(len(f) <= 1500 for f in frames)
    decoded = [json.loads(f) for f in frames]
    assert decoded[0]["type"] == "snapshot" and {k: decoded[0][k] for k in head} == head
    assert all(d["type"] == "snapshot_part" and set(d) == {"type", *lists, "more"} for d in decoded[1:])
    assert [d["more"] for d in decoded] == [True] * (len(frames) - 1) + [False]
    for name, items in lists.items():
        assert [x for d in decoded for x in d[name]] == items
    [single] = snapshot_frames(head, lists)
    assert json.loads(single) == {"type": "snapshot", **head, **lists, "more": False}
    assert json.loads(encode({"type": "resync"})) == {"type": "resync"}


# --- /v1/watch of a real daemon -----------------------------------------------------------------

async def test_snapshot_then_deltas_whose_seq_is_the_event_id(running_daemon) -> None:
    daemon, client = running_daemon
    store = daemon.runtime.store
    async with contextlib.aclosing(client.watch()) as stream:
        snap = await nxt(stream)
        assert snap["type"] == "snapshot" and snap["epoch"] == daemon.runtime.hub.epoch
        seq = snap["seq"]
        assert seq == await store.last_event_id()
        assert sorted(a["id"] for a in snap["accounts"]) == list(range(1, FLEET_SIZE + 1))
        assert any(e["kind"] == "fleet.seeded" for e in snap["events"])
        assert all(e["id"] <= seq for e in snap["events"])

        await client.disable(3, "stream test")
        account, event = await nxt(stream), await nxt(stream)
        [row] = await log_rows(store, seq)
        assert (account["seq"], account["prev"], event["seq"], event["prev"]) == (row["id"], seq, row["id"], seq)
        assert account["kind"] == "account" and account["op"] == "upsert"
        assert account["data"] == await client.account(3)  # a delta carries the full new state
        assert account["data"]["state"] == "disabled" and account["data"]["disabled_reason"] == "stream test"
        assert event["data"] == row and event["data"]["kind"] == "account.disabled"

        assert (await client.disable(3, "again"))["changed"] is False  # a no-op writes and publishes nothing
        await client.enable(3)
        account, event = await nxt(stream), await nxt(stream)
        assert (account["seq"], account["prev"], account["data"]["state"]) == (row["id"] + 1, row["id"], "ready")
        assert (event["seq"], event["data"]["kind"]) == (row["id"] + 1, "account.enabled")


async def test_every_kind_of_change_reaches_the_stream(daemon_factory) -> None:
    async with daemon_factory(quotas={"generate_interval_seconds": 0.2, "pace_seconds": 30}) as (daemon, client):
        store = daemon.runtime.store
        async with contextlib.aclosing(client.watch()) as stream:
            await nxt(stream)
            async with store.tx() as tx:  # a lock taken, no event: busy
                await store.take_lock(tx, 4, "test", 60)
            [busy] = account_deltas(await until(stream, lambda m: m.get("kind") == "account"), 4)
            assert busy["data"]["state"] == "busy"
            async with store.tx() as tx:  # and released: ready
                await store.release_lock(tx, 4, "test")
            [ready] = account_deltas(await until(stream, lambda m: m.get("kind") == "account"), 4)
            assert ready["data"]["state"] == "ready" and ready["seq"] > busy["seq"]
            async with store.tx() as tx:
                await store.apply_account_effect(tx, 5, AccountEffect(cooldown_until=time.time() + 600,
                                                                      cooldown_reason="flood"))
            got = await until(stream, is_event("account.cooldown", 5))
            assert account_deltas(got, 5)[-1]["data"]["state"] == "cooldown"
            assert account_deltas(got, 5)[-1]["data"]["cooldown_reason"] == "flood"
            await client.disable(6, "by hand")
            got = await until(stream, is_event("account.disabled", 6))
            assert account_deltas(got, 6)[-1]["data"]["state"] == "disabled"

            # A quota worked by the local executor: inspection, reservations, reports, counters, pace.
            quota = await client.request("POST", "/quotas", body={
                "name": "news", "target": "@tgfleet_news", "action": "channel_stats", "quantity": 3,
                "interval_seconds": 1, "expires_in_seconds": 3600})
            got = await until(stream, lambda m: m.get("kind") == "quota" and m["data"]["quantity_left"] == 0)
            lefts = [m["data"]["quantity_left"] for m in got if m.get("kind") == "quota"]
            assert lefts[0] == 3 and lefts[-1] == 0 and lefts == sorted(lefts, reverse=True)
            assert got[-1]["data"]["id"] == quota["id"] and got[-1]["data"]["measurements"] == 3
            paced = [m for m in got if m.get("kind") == "account" and m["data"]["cooldown_reason"] == "pace"]
            assert paced and all(m["data"]["state"] == "cooldown" for m in paced)
            seqs = [m["seq"] for m in got]
            assert seqs == sorted(seqs)  # in event-log order


async def test_deltas_follow_the_event_log_order_under_concurrent_writes(running_daemon) -> None:
    daemon, client = running_daemon
    store = daemon.runtime.store
    async with contextlib.aclosing(client.watch()) as stream:
        start = (await nxt(stream))["seq"]
        await asyncio.gather(*(client.disable(i, f"burst {i}") for i in range(10, 30)),
                             *(store.disable_account(i, "in-process") for i in range(30, 40)))
        rows = await log_rows(store, start)
        expected = [json.loads(i) for p in await derive(store, rows, start) for i in p.items]
        got = [await nxt(stream) for _ in expected]
    def key(m: Msg) -> tuple[Any, ...]:
        return (m["seq"], m["prev"], m["kind"], m["data"]["id"])

    assert [key(m) for m in got] == [key(m) for m in expected]  # the log's order, row by row
    assert [m["seq"] for m in got] == sorted(m["seq"] for m in got)
    assert {m["data"]["account_id"] for m in got if m["kind"] == "event"} >= set(range(10, 40))
    model = FleetModel(clock=time.time)  # the dashboard's model takes it whole, without a gap
    model.apply({"type": "snapshot", "epoch": "e", "seq": start, "status": {}, "accounts": [], "events": []})
    assert all(model.apply(m) for m in got) and model.seq == rows[-1]["id"]
    assert {i for i, a in model.accounts.items() if a["state"] == "disabled"} >= set(range(10, 40))


async def test_since_replays_the_missed_rows_from_the_log(running_daemon) -> None:
    daemon, client = running_daemon
    store = daemon.runtime.store
    async with contextlib.aclosing(client.watch()) as stream:
        snap = await nxt(stream)
        epoch, seq = snap["epoch"], snap["seq"]
    await client.disable(5, "while away")
    await client.disable(6, "while away")
    rows = await log_rows(store, seq)
    assert len(rows) == 2

    async with contextlib.aclosing(client.watch(since=f"{epoch}:{seq}")) as stream:
        resumed = await nxt(stream)
        assert resumed["type"] == "resumed" and (resumed["epoch"], resumed["seq"]) == (epoch, seq)
        assert resumed["status"]["stream"]["epoch"] == epoch
        missed = [await nxt(stream) for _ in range(4)]
        assert [m["type"] for m in missed] == ["delta"] * 4  # no snapshot
        assert [m["seq"] for m in missed] == [rows[0]["id"]] * 2 + [rows[1]["id"]] * 2
        assert [(m["kind"], m["data"]["id"] if m["kind"] == "account" else m["data"]["account_id"])
                for m in missed] == [("account", 5), ("event", 5), ("account", 6), ("event", 6)]
        assert missed[0]["prev"] == seq
        await client.enable(5)
        live = await nxt(stream)
        assert live["seq"] == rows[1]["id"] + 1 and live["prev"] == rows[1]["id"] and live["data"]["id"] == 5

    current = await store.last_event_id()
    async with contextlib.aclosing(client.watch(since=f"{epoch}:{current}")) as stream:
        assert (await nxt(stream))["type"] == "resumed"  # said even when nothing was missed: the stream is live
        await client.enable(6)
        first = await nxt(stream)
        assert first["type"] == "delta" and first["seq"] == current + 1 and first["prev"] == current


@pytest.mark.parametrize("since", ["deadbeef00000000:1", "{epoch}:999999", "ffffffffffff:0", "pruned"])
async def test_an_unusable_since_gets_a_snapshot(running_daemon, since: str) -> None:
    daemon, client = running_daemon
    store, hub = daemon.runtime.store, daemon.runtime.hub
    await client.disable(8, "x")
    if since == "pruned":  # retention took the rows after this cursor: it cannot be resumed
        cursor = await store.last_event_id()
        await client.disable(9, "y")
        while (await store.prune_events(before=time.time() + 10, limit=1000, at=time.time() + 10)).deleted:
            pass
        assert int(await store.get_meta(EVENTS_PRUNED_THROUGH) or 0) > cursor
        since = f"{hub.epoch}:{cursor}"
    async with contextlib.aclosing(client.watch(since=since.format(epoch=hub.epoch))) as stream:
        snap = await nxt(stream)
        assert snap["type"] == "snapshot" and snap["epoch"] == hub.epoch
        pruned = int(await store.get_meta(EVENTS_PRUNED_THROUGH) or 0)  # the head, even of a log pruned empty
        assert snap["seq"] == max(await store.last_event_id(), pruned) == hub.seq
        assert len(snap["accounts"]) == FLEET_SIZE
        assert next(a for a in snap["accounts"] if a["id"] == 8)["state"] == "disabled"


async def test_slow_client_gets_resync_then_a_fresh_snapshot(daemon_factory) -> None:
    async with daemon_factory(daemon={"stream_queue_size": 100, "stream_replay_size": 100}) as (daemon, client):
        hub, store = daemon.runtime.hub, daemon.runtime.store
        async with contextlib.aclosing(client.watch()) as stream:
            start = (await nxt(stream))["seq"]
            # The client stops reading; commits go on (ten accounts touched each) until the socket is
            # full, the server-side queue has taken the rest, and the daemon gives up on the client.
            for _ in range(3000):
                async with store.tx() as tx:  # a renewal: each round a changes row naming the ten
                    for i in range(1, 11):
                        assert await store.take_lock(tx, i, "test", 60)
                await asyncio.sleep(0)
                assert all(sub.queued <= 100 for sub in hub._subs)
                if any(sub.lagged for sub in hub._subs):
                    break
            else:
                pytest.fail("the server never noticed that the client fell behind")
            last = await store.last_event_id()

            # Now it reads: whatever was already on the wire, in order, then resync and a new snapshot.
            expected = start
            for _ in range(10 * (last - start) + 10):
                msg = await nxt(stream)
                if msg["type"] != "delta":
                    break
                assert msg["seq"] in (expected, expected + 1)
                expected = msg["seq"]
            else:
                pytest.fail("no resync after falling behind")
            assert msg == {"type": "resync", "reason": msg["reason"]}
            snap2 = await nxt(stream)
            assert snap2["type"] == "snapshot" and snap2["seq"] > start and len(snap2["accounts"]) == FLEET_SIZE
            assert hub.subscribers == 1  # the lagged subscription was dropped, not kept growing

            await client.disable(12, "after resync")
            got = await until(stream, is_event("account.disabled", 12))
            assert all(m["seq"] > snap2["seq"] for m in got)
            assert account_deltas(got, 12)[-1]["data"]["state"] == "disabled"


async def test_closed_watch_releases_its_subscription(running_daemon) -> None:
    daemon, client = running_daemon
    hub = daemon.runtime.hub
    async with contextlib.aclosing(client.watch()) as stream:
        await nxt(stream)
        assert hub.subscribers == 1
    for _ in range(200):  # the server notices the close asynchronously; bounded wait, no timing assertion
        if hub.subscribers == 0:
            break
        await asyncio.sleep(0.02)
    assert hub.subscribers == 0


async def test_daemon_stop_ends_the_watch_with_daemon_not_running(daemon_factory) -> None:
    async with daemon_factory() as (daemon, client), contextlib.aclosing(client.watch()) as stream:
        assert (await nxt(stream))["type"] == "snapshot"
        daemon.stop()
        with pytest.raises(DaemonNotRunning):
            await nxt(stream)


async def test_a_client_resumes_across_a_daemon_restart_without_a_snapshot(daemon_store: str | None) -> None:
    """A real daemon subprocess, the stream over its Unix socket, on each store (the data dir's SQLite file,
    a PostgreSQL database): the dashboard's model keeps its cursor through a restart and is sent only
    what changed after it, read back from the store's event log."""
    with fleet(store=daemon_store) as f:
        first = await f.start(accounts=FLEET_SIZE).await_ready()
        model = FleetModel(clock=time.time)
        async with ControlClient(f.socket_path, timeout=10) as client:
            assert (await client.status())["store"]["kind"] == ("postgresql" if daemon_store else "sqlite")
            async with contextlib.aclosing(client.watch()) as stream:
                snap = await nxt(stream)
                assert model.apply(snap)
                await client.disable(3, "before the restart")
                for msg in await until(stream, is_event("account.disabled", 3)):
                    assert model.apply(msg)
            cursor = model.since
            assert cursor == f"{snap['epoch']}:{msg['seq']}"
        assert await first.astop() == 0

        await f.start(accounts=None).await_ready()
        async with ControlClient(f.socket_path, timeout=10) as client:
            await client.disable(4, "after the restart")
            assert (await client.status())["stream"]["epoch"] == snap["epoch"]  # the database's, not the run's
            async with contextlib.aclosing(client.watch(since=cursor)) as stream:
                resumed = await nxt(stream)
                got = await until(stream, is_event("account.disabled", 4))
        assert resumed["type"] == "resumed" and model.apply(resumed)  # the new run's status, no snapshot
        assert model.status["pid"] == resumed["status"]["pid"] != snap["status"]["pid"]
        assert all(m["type"] == "delta" for m in got)
        assert got[0]["prev"] == msg["seq"] and all(m["seq"] > msg["seq"] for m in got)
        assert [m["seq"] for m in got] == sorted(m["seq"] for m in got)
        assert not [m for m in got if m["kind"] == "event" and m["data"]["account_id"] == 3]  # nothing twice
        assert all(model.apply(m) for m in got)
        assert model.accounts[4]["state"] == "disabled" and model.accounts[3]["state"] == "disabled"
        assert model.since == f"{snap['epoch']}:{got[-1]['seq']}"


async def test_a_hub_finds_the_head_when_the_database_is_back(store: Store) -> None:
    """A commit whose answer the loss cut off never reached the commit hook: when the database is back,
    the hub reads where the log ends, so a quiet fleet's dashboard still gets that change."""
    await seed(store)
    hub = await Hub.open(store, queue_size=1000, replay_size=1000)
    sub = hub.subscribe()
    follow = asyncio.create_task(hub.run())
    try:
        await store.disable_account(1, "committed, unannounced")  # no commit hook: as if its answer was lost
        hub.store_changed(StoreStatus(kind=store.kind, url=store.url, down=None, down_since=None))
        got: list[Position] = []
        for _ in range(20):
            got += [p for p in await asyncio.wait_for(sub.next_batch(), MSG_TIMEOUT) if not p.notice]
            if got:
                break
        [position] = got
        assert position.seq == await store.last_event_id()
        assert json.loads(position.items[-1])["data"]["kind"] == "account.disabled"
    finally:
        follow.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await follow
