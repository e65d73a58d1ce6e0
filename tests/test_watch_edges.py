"""The control stream's edges, over the real Unix socket with a stock aiohttp client (max_msg_size 4 MiB).

A malformed ``since`` is a 400 with a JSON body before any upgrade, and leaves
no socket registered; a big fleet's snapshot and a long replay (one log row
naming 16,000 accounts) arrive as frames of at most 1 MiB that the dashboard's
client puts back together. The snapshot is read and sent a page at a time: a
client that stops reading holds the daemon at a few pages, and what changes
meanwhile reaches it as deltas that continue the snapshot's position.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import os
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from tgdaemon.control import watch
from tgdaemon.control.client import ControlClient
from tgdaemon.control.watch import SOCKETS
from tgdaemon.lifecycle.daemon import Daemon
from tgdaemon.stream import MAX_FRAME, snapshot_frames
from tgtui.model import FleetModel

MSG_TIMEOUT = 20.0
BIG_FLEET = 16_000  # accounts: their snapshot is over 4 MiB, the default limit of an aiohttp client


def watch_sockets(daemon: Daemon) -> set[Any]:
    assert daemon.app is not None
    for resource in daemon.app.router.resources():
        sub = resource.get_info().get("app")
        if sub is not None and SOCKETS in sub:
            return sub[SOCKETS]
    raise AssertionError("no control application")


@contextlib.asynccontextmanager
async def stock_session(client: ControlClient) -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(connector=aiohttp.UnixConnector(path=str(client.socket_path))) as http:
        yield http


async def frames(ws: aiohttp.ClientWebSocketResponse, until: Any) -> list[bytes]:
    """Raw frames until ``until(decoded)`` is true; fails on a frame the stock client could not take."""
    out: list[bytes] = []
    for _ in range(10_000):
        msg = await asyncio.wait_for(ws.receive(), MSG_TIMEOUT)
        assert msg.type == aiohttp.WSMsgType.BINARY, (msg.type, msg.data, msg.extra)
        out.append(msg.data)
        if until(json.loads(msg.data)):
            return out
    raise AssertionError("the stream did not finish")


@pytest.mark.parametrize("since", ["x:\u00b2", "{epoch}:\u00b2", "{epoch}:\u0663", "garbage", "{epoch}:-1",
                                   "{epoch}:", "{epoch}:1:2", "{epoch}:" + "9" * 40, "EPOCH:1", " {epoch}:1"])
async def test_malformed_since_is_a_400_before_the_upgrade(running_daemon, caplog, since: str) -> None:
    daemon, client = running_daemon
    caplog.set_level(logging.INFO)
    upgrade = {"Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Version": "13",
               "Sec-WebSocket-Key": base64.b64encode(os.urandom(16)).decode()}
    async with stock_session(client) as http:
        async with http.get("http://tgdaemon/v1/watch", params={"since": since.format(epoch=daemon.runtime.hub.epoch)},
                            headers=upgrade) as resp:
            assert resp.status == 400
            assert resp.content_type == "application/json"
            body = await resp.json()
        assert body["error"]["code"] == "invalid_query" and "since" in body["error"]["message"]
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await http.ws_connect("http://tgdaemon/v1/watch", params={"since": since.format(epoch="ab")})
        assert refused.value.status == 400
    assert watch_sockets(daemon) == set() and daemon.runtime.hub.subscribers == 0
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info], caplog.text
    assert (await client.status())["stream"]["subscribers"] == 0  # the daemon serves on


async def test_sockets_are_unregistered_when_the_snapshot_fails_and_when_the_client_leaves(
        running_daemon, monkeypatch) -> None:
    daemon, client = running_daemon
    sockets = watch_sockets(daemon)
    async with contextlib.aclosing(client.watch()) as stream:
        assert (await asyncio.wait_for(stream.__anext__(), MSG_TIMEOUT))["type"] == "snapshot"
        assert len(sockets) == 1
    await _until_empty(sockets)

    async def broken() -> dict[str, Any]:
        raise RuntimeError("status cannot be read")

    monkeypatch.setattr(daemon.runtime, "status", broken)  # the snapshot's first read fails
    async with stock_session(client) as http, http.ws_connect("http://tgdaemon/v1/watch") as ws:
        msg = await asyncio.wait_for(ws.receive(), MSG_TIMEOUT)
        assert msg.type == aiohttp.WSMsgType.CLOSE and msg.data == 1011
    await _until_empty(sockets)
    assert daemon.runtime.hub.subscribers == 0

    async with stock_session(client) as http, http.get("http://tgdaemon/v1/watch") as resp:
        assert resp.status == 400  # not a WebSocket request: prepare refuses it
    assert sockets == set()


async def _until_empty(sockets: set[Any]) -> None:
    for _ in range(250):  # the server sees the close asynchronously: a bounded wait, no timing assertion
        if not sockets:
            return
        await asyncio.sleep(0.02)
    assert sockets == set()


async def test_a_big_fleet_snapshot_comes_in_frames_under_1_mib(daemon_factory) -> None:
    async with daemon_factory(simulator={"accounts": BIG_FLEET}) as (daemon, client):
        async with stock_session(client) as http, http.ws_connect("http://tgdaemon/v1/watch") as ws:
            got = await frames(ws, lambda d: d["type"] in ("snapshot", "snapshot_part") and not d["more"])
        assert len(got) > 4 and max(map(len, got)) <= MAX_FRAME
        decoded = [json.loads(f) for f in got]
        assert decoded[0]["type"] == "snapshot" and decoded[0]["seq"] == daemon.runtime.hub.seq
        assert [d["type"] for d in decoded[1:]] == ["snapshot_part"] * (len(got) - 1)
        ids = [a["id"] for d in decoded for a in d["accounts"]]
        assert ids == list(range(1, BIG_FLEET + 1))
        assert sum(len(f) for f in got) > 4 * 1024 * 1024  # one frame would have been over the client's limit

        async with contextlib.aclosing(client.watch()) as stream:  # the dashboard's client assembles it
            snap = await asyncio.wait_for(stream.__anext__(), MSG_TIMEOUT)
            model = FleetModel(clock=lambda: 0.0)
            assert model.apply(snap) and len(model.accounts) == BIG_FLEET and "more" not in snap
            assert any(e["kind"] == "fleet.seeded" for e in snap["events"])
            await client.disable(7, "after a split snapshot")
            delta = await asyncio.wait_for(stream.__anext__(), MSG_TIMEOUT)
            assert model.apply(delta) and model.accounts[7]["state"] == "disabled"


async def test_a_long_replay_comes_in_deltas_frames_under_1_mib(daemon_factory) -> None:
    async with daemon_factory(simulator={"accounts": BIG_FLEET}) as (daemon, client):
        hub, store = daemon.runtime.hub, daemon.runtime.store
        first = await store.last_event_id()
        # One store transaction touching every account: one log row naming them (a dispatch is cut into
        # transactions of rules.DISPATCH_ROWS tasks since issue 13, so it no longer is one).
        node = (await client.status())["node"]
        await client.request("POST", "/accounts/pin", body={"ids": list(range(1, BIG_FLEET + 1)), "node": node})
        last = await store.last_event_id()
        assert last - first == 2  # the pin event, and the changes row with the 16,000 accounts
        async with stock_session(client) as http, \
                http.ws_connect("http://tgdaemon/v1/watch", params={"since": f"{hub.epoch}:{first}"}) as ws:
            got = await frames(ws, lambda d: d["type"] != "resumed" and not d.get("more")
                               and _items(d)[-1]["seq"] >= last)
        assert json.loads(got.pop(0))["type"] == "resumed"
        assert len(got) > 4 and max(map(len, got)) <= MAX_FRAME
        assert sum(len(f) for f in got) > 4 * 1024 * 1024  # one frame would have been over the client's limit
        decoded = [json.loads(f) for f in got]
        items = [item for d in decoded for item in _items(d)]
        assert decoded[0]["type"] == "delta" and decoded[0]["data"]["kind"] == "accounts.pinned"
        assert [d.get("more", False) for d in decoded[1:]] == [True] * (len(got) - 2) + [False]  # one row, split
        [_, changes] = await store.events_after(first, 10)
        assert len(changes["data"]["accounts"]) == BIG_FLEET  # every account, pinned
        assert [i["data"]["id"] for i in items if i["kind"] == "account"] == changes["data"]["accounts"]
        assert [i["seq"] for i in items] == sorted(i["seq"] for i in items)  # a replay, not a snapshot, in order
        assert {i["seq"] for i in items} == {first + 1, last} and all(i["type"] == "delta" for i in items)

        async with contextlib.aclosing(client.watch(since=f"{hub.epoch}:{first}")) as stream:
            model = FleetModel(clock=lambda: 0.0)  # the dashboard's client hands the split row over whole
            model.apply({"type": "snapshot", "epoch": hub.epoch, "seq": first, "status": {}, "accounts": [],
                         "events": []})
            for _ in range(len(items) + 1):  # "resumed", then the deltas
                assert model.apply(await asyncio.wait_for(stream.__anext__(), MSG_TIMEOUT))
            assert model.seq == last and len(model.accounts) == len(changes["data"]["accounts"])


def _items(frame: dict[str, Any]) -> list[dict[str, Any]]:
    assert frame["type"] in ("delta", "deltas"), frame["type"]
    return frame["items"] if frame["type"] == "deltas" else [frame]


async def test_the_snapshot_is_read_a_page_at_a_time_and_changes_meanwhile_come_as_deltas(
        daemon_factory, monkeypatch) -> None:
    page = 200  # small pages: the socket's buffers hold a few of them, far from the whole fleet
    monkeypatch.setattr(watch, "SNAPSHOT_PAGE", page)
    async with daemon_factory(simulator={"accounts": BIG_FLEET}) as (daemon, client):
        store = daemon.runtime.store
        read: list[int] = []  # the rows of each accounts page the daemon read, as it reads them
        reading = store.list_accounts_json

        async def counted(**kw: Any) -> tuple[list[bytes], str | None]:
            rows, cursor = await reading(**kw)
            read.append(len(rows))
            return rows, cursor

        monkeypatch.setattr(store, "list_accounts_json", counted)
        late = BIG_FLEET - 1  # in one of the last pages
        async with stock_session(client) as http, http.ws_connect("http://tgdaemon/v1/watch") as ws:
            got = await frames(ws, lambda d: bool(d["accounts"]))  # the head, then the first page of accounts
            head = json.loads(got[0])
            assert head["type"] == "snapshot" and json.loads(got[-1])["more"]
            for _ in range(25):  # the client reads nothing more: give the daemon every chance to run ahead
                await asyncio.sleep(0.02)
            assert 0 < sum(read) < BIG_FLEET / 2 and max(read) == page  # held back by the socket, not done
            await client.disable(3, "its page is sent")
            await client.disable(late, "its page is not read yet")
            got += await frames(ws, lambda d: d["type"] == "snapshot_part" and not d["more"])
            assert sum(read) == BIG_FLEET and max(map(len, got)) <= MAX_FRAME
            snapshot = {a["id"]: a for f in got for a in json.loads(f)["accounts"]}
            assert list(snapshot) == list(range(1, BIG_FLEET + 1))
            assert snapshot[3]["state"] == "ready" and snapshot[late]["state"] == "disabled"  # a newer state early

            deltas = await frames(ws, lambda d: any(i["kind"] == "account" and i["data"]["id"] == late
                                                    for i in _items(d)))
        model = FleetModel(clock=lambda: 0.0)
        for frame in got:
            assert model.apply(json.loads(frame))
            done = frame is got[-1]
            assert (model.loading is None) == done and (model.since is None) != done  # no resuming from half
        assert model.seq == head["seq"] and len(model.accounts) == BIG_FLEET
        items = [item for frame in deltas for item in _items(json.loads(frame))]
        assert items[0]["prev"] == head["seq"]  # the deltas continue exactly where the snapshot stands
        assert all(model.apply(item) for item in items)
        assert model.accounts[3]["state"] == model.accounts[late]["state"] == "disabled"
        assert model.accounts[late]["disabled_reason"] == "its page is not read yet"


def test_snapshot_frames_of_pieces_carry_the_head_once_and_end_once() -> None:
    head = {"epoch": "e", "seq": 9, "status": {}}
    pieces = [{"accounts": [], "quotas": [], "events": [{"id": 1}]},
              {"accounts": [{"id": n, "pad": "x" * 300} for n in range(1, 11)], "quotas": [], "events": []},
              {"accounts": [{"id": 11}], "quotas": [], "events": []}]
    frames = [f for n, piece in enumerate(pieces)
              for f in snapshot_frames(head if n == 0 else None, piece, limit=1200, more=n < len(pieces) - 1)]
    decoded = [json.loads(f) for f in frames]
    assert all(len(f) <= 1200 for f in frames) and len(frames) > len(pieces)  # the middle piece is split too
    assert [d["type"] for d in decoded] == ["snapshot"] + ["snapshot_part"] * (len(frames) - 1)
    assert {k: decoded[0][k] for k in head} == head and all("seq" not in d for d in decoded[1:])
    assert [d["more"] for d in decoded] == [True] * (len(frames) - 1) + [False]
    assert [a["id"] for d in decoded for a in d["accounts"]] == list(range(1, 12))
    assert all(set(d) - {"type", "more", *head} == {"accounts", "quotas", "events"} for d in decoded)
