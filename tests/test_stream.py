"""The live stream: the Hub on its own, and /v1/watch of a real daemon through ControlClient.watch."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from conftest import FLEET_SIZE

from tgdaemon.errors import DaemonNotRunning
from tgdaemon.stream import Hub, Lagged, batch_frames, encode, snapshot_frames

MSG_TIMEOUT = 5.0


async def nxt(stream: AsyncIterator[dict[str, Any]]) -> dict[str, Any]:
    return await asyncio.wait_for(stream.__anext__(), MSG_TIMEOUT)


def seqs(frames: list[bytes]) -> list[int]:
    return [json.loads(f)["seq"] for f in frames]


# --- Hub ---------------------------------------------------------------------------------------

async def test_hub_delivers_in_order_and_batches() -> None:
    hub = Hub(queue_size=10, replay_size=10)
    sub = hub.subscribe()
    assert hub.subscribers == 1 and sub.start_seq == 0
    for i in range(7):
        assert hub.publish("account", {"id": i}) == i + 1
    assert seqs(await sub.next_batch(max_items=3)) == [1, 2, 3]
    assert seqs(await sub.next_batch()) == [4, 5, 6, 7]
    first = json.loads((await asyncio.wait_for(_publish_later(hub, sub), MSG_TIMEOUT))[0])
    assert first == {"type": "delta", "seq": 8, "kind": "event", "op": "upsert", "data": {"n": 1}}
    sub.close()
    assert hub.subscribers == 0
    hub.publish("account", {"id": 0})
    assert not sub._queue  # a closed subscription gets nothing more


async def _publish_later(hub: Hub, sub) -> list[bytes]:
    """next_batch waits for a publish that happens after it started waiting."""
    waiter = asyncio.create_task(sub.next_batch())
    await asyncio.sleep(0)
    assert not waiter.done()
    hub.publish("event", {"n": 1})
    return await waiter


async def test_overflowing_subscriber_gets_lagged_and_hub_stays_bounded() -> None:
    hub = Hub(queue_size=5, replay_size=8)
    slow, fast = hub.subscribe(), hub.subscribe()
    got_fast: list[int] = []
    for i in range(200):
        hub.publish("account", {"id": i})
        assert len(slow._queue) <= 5 and len(fast._queue) <= 5
        assert len(hub._replay) <= 8
        if i % 3 == 2:  # the fast one keeps up
            got_fast += seqs(await fast.next_batch())
    got_fast += seqs(await fast.next_batch())
    assert got_fast == list(range(1, 201)) and not fast.lagged
    assert slow.lagged
    with pytest.raises(Lagged):
        await asyncio.wait_for(slow.next_batch(), MSG_TIMEOUT)
    with pytest.raises(Lagged):  # it stays lagged: it must resubscribe and load a snapshot
        await asyncio.wait_for(slow.next_batch(), MSG_TIMEOUT)
    assert len(slow._queue) == 0


async def test_lagged_wakes_a_waiting_subscriber() -> None:
    hub = Hub(queue_size=2, replay_size=4)
    sub = hub.subscribe()
    waiter = asyncio.create_task(sub.next_batch())
    await asyncio.sleep(0)
    assert not waiter.done()
    for i in range(3):  # the third overflows a queue of two before the waiter ever runs
        hub.publish("account", {"id": i})
    with pytest.raises(Lagged):
        await asyncio.wait_for(waiter, MSG_TIMEOUT)
    assert len(sub._queue) == 0


def test_replay_since() -> None:
    hub = Hub(queue_size=100, replay_size=5)
    assert hub.replay_since(hub.epoch, 0) == []
    for i in range(3):
        hub.publish("account", {"id": i})
    assert seqs(hub.replay_since(hub.epoch, 0)) == [1, 2, 3]
    assert seqs(hub.replay_since(hub.epoch, 2)) == [3]
    assert hub.replay_since(hub.epoch, 3) == []
    assert hub.replay_since(hub.epoch, 4) is None          # from the future
    assert hub.replay_since("other-epoch", 1) is None      # from an earlier run
    for i in range(7):
        hub.publish("account", {"id": i})
    # the buffer now holds 6..10: seq 5 is covered exactly, seq 4 no longer is
    assert seqs(hub.replay_since(hub.epoch, 5)) == [6, 7, 8, 9, 10]
    assert hub.replay_since(hub.epoch, 4) is None
    assert hub.replay_since(hub.epoch, 0) is None
    assert Hub(queue_size=100, replay_size=5).epoch != hub.epoch


def test_batch_frame_is_valid_json() -> None:
    hub = Hub(queue_size=100, replay_size=100)
    sub = hub.subscribe()
    for i in range(3):
        hub.publish("account", {"id": i, "label": 'quote " and \\ backslash'})
    frames = list(sub._queue)
    [one] = batch_frames(frames)
    batch = json.loads(one)
    assert batch["type"] == "deltas" and [d["seq"] for d in batch["items"]] == [1, 2, 3]
    assert batch["items"][0]["data"]["label"] == 'quote " and \\ backslash'
    assert batch_frames(frames[:1]) == [frames[0]]
    assert batch_frames([]) == []


def test_batch_frames_stay_under_the_limit_and_keep_the_order() -> None:
    hub = Hub(queue_size=1000, replay_size=1000)
    sub = hub.subscribe()
    for i in range(300):
        hub.publish("account", {"id": i, "pad": "x" * (i % 50)})
    items = list(sub._queue)
    frames = batch_frames(items, limit=2000)
    assert len(frames) > 1 and all(len(f) <= 2000 for f in frames)
    got = []
    for frame in frames:
        data = json.loads(frame)
        got += [d["seq"] for d in data["items"]] if data["type"] == "deltas" else [data["seq"]]
    assert got == list(range(1, 301))


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


# --- /v1/watch ---------------------------------------------------------------------------------

async def test_snapshot_then_ordered_deltas(running_daemon) -> None:
    daemon, client = running_daemon
    async with contextlib.aclosing(client.watch()) as stream:
        snap = await nxt(stream)
        assert snap["type"] == "snapshot"
        assert snap["epoch"] == daemon.runtime.hub.epoch
        seq = snap["seq"]
        assert isinstance(seq, int) and seq == daemon.runtime.hub.seq
        assert sorted(a["id"] for a in snap["accounts"]) == list(range(1, FLEET_SIZE + 1))
        assert snap["status"]["accounts"]["ready"] + snap["status"]["accounts"]["disabled"] <= FLEET_SIZE
        assert any(e["kind"] == "fleet.seeded" for e in snap["events"])

        await client.disable(3, "stream test")
        account, event = await nxt(stream), await nxt(stream)
        assert account["type"] == "delta" and account["seq"] == seq + 1
        assert account["kind"] == "account" and account["op"] == "upsert"
        assert account["data"]["id"] == 3 and account["data"]["state"] == "disabled"
        assert account["data"]["disabled_reason"] == "stream test"
        assert account["data"] == await client.account(3)  # a delta carries the full new state
        assert event["seq"] == seq + 2 and event["kind"] == "event"
        assert event["data"]["kind"] == "account.disabled" and event["data"]["account_id"] == 3

        assert (await client.disable(3, "again"))["changed"] is False  # a no-op publishes nothing
        await client.enable(3)
        account, event = await nxt(stream), await nxt(stream)
        assert (account["seq"], account["data"]["id"], account["data"]["state"]) == (seq + 3, 3, "ready")
        assert (event["seq"], event["data"]["kind"]) == (seq + 4, "account.enabled")


async def test_since_replays_only_missed_deltas(running_daemon) -> None:
    daemon, client = running_daemon
    async with contextlib.aclosing(client.watch()) as stream:
        snap = await nxt(stream)
        epoch, seq = snap["epoch"], snap["seq"]
    await client.disable(5, "while away")
    await client.disable(6, "while away")
    assert daemon.runtime.hub.seq == seq + 4

    async with contextlib.aclosing(client.watch(since=f"{epoch}:{seq}")) as stream:
        missed = [await nxt(stream) for _ in range(4)]
        assert [m["type"] for m in missed] == ["delta"] * 4      # no snapshot
        assert [m["seq"] for m in missed] == [seq + 1, seq + 2, seq + 3, seq + 4]
        assert [(m["kind"], m["data"]["id"] if m["kind"] == "account" else m["data"]["account_id"])
                for m in missed] == [("account", 5), ("event", 5), ("account", 6), ("event", 6)]
        await client.enable(5)
        live = await nxt(stream)
        assert live["seq"] == seq + 5 and live["data"]["id"] == 5  # then live, without a gap

    current = daemon.runtime.hub.seq
    async with contextlib.aclosing(client.watch(since=f"{epoch}:{current}")) as stream:
        await client.enable(6)
        first = await nxt(stream)
        assert first["type"] == "delta" and first["seq"] == current + 1


@pytest.mark.parametrize("since", ["deadbeef0000:1", "{epoch}:999999", "ffffffffffff:0"])
async def test_unusable_since_gets_a_snapshot(running_daemon, since: str) -> None:
    daemon, client = running_daemon
    await client.disable(8, "x")
    hub = daemon.runtime.hub
    async with contextlib.aclosing(client.watch(since=since.format(epoch=hub.epoch))) as stream:
        snap = await nxt(stream)
        assert snap["type"] == "snapshot" and snap["epoch"] == hub.epoch and snap["seq"] == hub.seq
        assert len(snap["accounts"]) == FLEET_SIZE
        assert next(a for a in snap["accounts"] if a["id"] == 8)["state"] == "disabled"


async def test_slow_client_gets_resync_then_a_fresh_snapshot(daemon_factory) -> None:
    async with daemon_factory(daemon={"stream_queue_size": 100, "stream_replay_size": 100}) as (daemon, client):
        hub = daemon.runtime.hub
        async with contextlib.aclosing(client.watch()) as stream:
            snap = await nxt(stream)
            start = snap["seq"]
            # The client stops reading; the daemon keeps publishing (big deltas, so the socket
            # fills up and the server-side queue has to take the rest) until it gives up on the client.
            pad = "x" * 4096
            for _ in range(400):
                for _ in range(50):
                    hub.publish("account", {"id": 1, "pad": pad})
                for _ in range(3):
                    await asyncio.sleep(0)
                assert all(len(sub._queue) <= 100 for sub in hub._subs)
                if any(sub.lagged for sub in hub._subs):
                    break
            else:
                pytest.fail("the server never noticed that the client fell behind")
            final = hub.seq

            # Now it reads: whatever was already on the wire, in order, then resync and a new snapshot.
            expected = start + 1
            for _ in range(final - start + 1):
                msg = await nxt(stream)
                if msg["type"] != "delta":
                    break
                assert msg["seq"] == expected
                expected += 1
            else:
                pytest.fail("no resync after falling behind")
            assert msg == {"type": "resync", "reason": msg["reason"]}
            snap2 = await nxt(stream)
            assert snap2["type"] == "snapshot" and snap2["seq"] == final == hub.seq
            assert len(snap2["accounts"]) == FLEET_SIZE
            assert hub.subscribers == 1  # the lagged subscription was dropped, not kept growing

            await client.disable(2, "after resync")
            delta = await nxt(stream)
            assert delta["seq"] == final + 1 and delta["data"]["state"] == "disabled"


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
