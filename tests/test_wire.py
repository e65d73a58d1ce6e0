"""The control API's wire types (tgdaemon.wire) against what the daemon really sends.

Each answer is read twice from a real daemon: as plain JSON and decoded into its
wire type. Re-encoding the typed one must give the same JSON, so no field is
lost on the way into a struct (the admin commands' ``--json`` prints the typed
value). The stream's frames, spliced by hand to bound their size, must decode as
the frame types; and the structs encode the store's views to the same bytes.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import aiohttp
import msgspec
import pytest

from tgdaemon import wire
from tgdaemon.display import STATE_STYLE
from tgdaemon.errors import TgfleetError
from tgdaemon.store import Store
from tgdaemon.store.api import NodeSpec
from tgdaemon.stream import batch_frames, derive
from tgdaemon.timeutil import iso
from tgtui import model

FRAME_TIMEOUT = 10.0


def same_json(typed: Any, raw: Any) -> None:
    assert json.loads(msgspec.json.encode(typed)) == raw


async def test_every_answer_decodes_into_its_wire_type_and_loses_nothing(running_daemon: Any) -> None:
    daemon, client = running_daemon
    quota = await client.request("POST", "/quotas", body={
        "name": "wire", "target": "@tgfleet_news", "action": "post_stats", "quantity": 10,
        "expires_in_seconds": 3600})
    same_json(msgspec.convert(quota, wire.Quota), quota)
    added = await client.request("POST", "/providers", body={"name": "wire-test"})
    same_json(msgspec.convert(added, wire.ProviderAdded), added)
    changed = await client.request("POST", "/accounts/4/disable", body={"reason": "wire test"})
    same_json(msgspec.convert(changed, wire.AccountChange), changed)
    await client.request("POST", "/setup/dispatch")
    for method, path, params, type_ in (
            ("GET", "/status", None, wire.Status),
            ("GET", "/accounts", {"limit": 1000}, wire.AccountPage),
            ("GET", "/accounts", {"limit": 3}, wire.AccountPage),  # with a next cursor
            ("GET", "/accounts/4", None, wire.Account),
            ("GET", "/events", {"limit": 1000}, wire.EventList),
            ("GET", "/quotas", None, wire.QuotaList),
            ("GET", "/tasks", None, wire.TaskList),
            ("GET", "/tasks", {"status": "done", "queue": "fast"}, wire.TaskList),
            ("GET", "/pulse", None, wire.Pulse),
            ("GET", "/providers", None, wire.ProviderList),
            ("GET", "/nodes", None, wire.NodeList)):
        raw = await client.request(method, path, params=params)
        same_json(msgspec.convert(raw, type_), raw)  # one answer: the daemon works on between two calls
        assert isinstance(await client.call(method, path, type_, params=params), type_)
    status = await client.call("GET", "/status", wire.Status)
    assert isinstance(status.simulator, wire.SimulatorStatus) and status.simulator.accounts == 50
    assert list(status.accounts) == list(wire.STATES)
    assert status.node == daemon.cfg.node_name() and [n.name for n in status.nodes] == [status.node]  # SQLite: one
    pinned = await client.request("POST", "/accounts/pin", body={"ids": [5], "node": status.node})
    same_json(msgspec.convert(pinned, wire.Pinned), pinned)
    account = await client.call("GET", "/accounts/5", wire.Account)
    assert (account.owner, account.pinned_node) == (status.node, status.node)


async def test_an_answer_that_does_not_fit_is_one_line_naming_the_route(running_daemon: Any) -> None:
    _, client = running_daemon
    with pytest.raises(TgfleetError) as caught:
        await client.call("GET", "/status", wire.AccountPage)
    text = str(caught.value)
    assert "GET /v1/status" in text and "does not fit" in text and "accounts" in text and "\n" not in text


async def test_the_stream_frames_decode_as_the_frame_types(running_daemon: Any) -> None:
    daemon, client = running_daemon
    connector = aiohttp.UnixConnector(path=str(daemon.runtime.socket_path))
    async with aiohttp.ClientSession(connector=connector) as http, http.ws_connect("http://tgdaemon/v1/watch") as ws:
        first = msgspec.json.decode((await asyncio.wait_for(ws.receive(), FRAME_TIMEOUT)).data, type=wire.Frames)
        assert isinstance(first, wire.Snapshot) and first.status.stream.epoch == first.epoch
        accounts, last = list(first.accounts), first
        for _ in range(10):  # the snapshot comes a page at a time: every page decodes as a Snapshot too
            if not last.more:
                break
            last = msgspec.json.decode((await asyncio.wait_for(ws.receive(), FRAME_TIMEOUT)).data,
                                       type=wire.Frames)
            assert isinstance(last, wire.SnapshotPart)
            accounts += last.accounts
        assert not last.more and len(accounts) == 50
        await client.request("POST", "/accounts/7/disable", body={"reason": "frames"})
        raw = (await asyncio.wait_for(ws.receive(), FRAME_TIMEOUT)).data
        frame = msgspec.json.decode(raw, type=wire.Frames)
        delta = frame.items[0] if isinstance(frame, wire.Deltas) else frame
        assert isinstance(delta, wire.Delta) and delta.kind == "account" and delta.seq > first.seq
        account = msgspec.convert(delta.data, wire.Account)
        assert (account.id, account.state, account.disabled_reason) == (7, "disabled", "frames")


async def test_log_rows_become_frames_of_the_wire_types(store: Store) -> None:
    """The hub's deltas, derived from the event log, decode as ``wire.Delta`` and ``wire.Deltas``."""
    async with store.tx() as tx:
        await store.insert_accounts(tx, [{"phone": None, "tg_user_id": 2, "label": "two", "is_probe": 0,
                                          "profile_json": "{}"}])
    await store.disable_account(1, "x")
    rows = await store.events_after(0, 10)
    positions = await derive(store, rows, 0)
    assert [p.seq for p in positions] == [r["id"] for r in rows]
    last = msgspec.json.decode(positions[-1].items[-1], type=wire.Delta[wire.Event])
    assert last.data.kind == "account.disabled" and last.seq == rows[-1]["id"] and last.prev == rows[-2]["id"]
    [both] = batch_frames(positions)
    decoded = msgspec.json.decode(both, type=wire.Frames)
    assert isinstance(decoded, wire.Deltas) and [d.seq for d in decoded.items][-1] == rows[-1]["id"]
    assert {d.kind for d in decoded.items} == {"account", "event"}


async def test_the_structs_encode_the_stores_views_to_the_same_bytes(store: Store) -> None:
    async with store.tx() as tx:
        await store.insert_accounts(tx, [
            {"phone": "+15550000001", "tg_user_id": 1, "label": "one", "is_probe": 0, "first_name": "A",
             "last_name": "B", "profile_json": "{}"},
            {"phone": None, "tg_user_id": 2, "label": "two", "is_probe": 1, "first_name": "", "last_name": "",
             "profile_json": "{}"}])
        await tx.event("test.event", "with data", account_id=1, data={"n": 1, "nested": {"x": [1, 2]}})
    await store.disable_account(2, "a reason")
    await store.add_quota(name="q", target="@chan", action="channel_stats", last_n_posts=5, quantity=None, orders=3,
                          interval_seconds=60, expires_at=time.time() + 600)
    await store.add_provider("prov", "0" * 64)
    encode = msgspec.json.encode
    accounts, _ = await store.list_accounts(limit=10)
    for rows, type_ in ((accounts, wire.Account), (await store.recent_events(limit=10), wire.Event),
                        (await store.quotas(), wire.Quota), (await store.list_providers(), wire.Provider)):
        assert rows
        assert encode(msgspec.convert(rows, list[type_])) == encode(rows)


def test_absent_and_null_stay_apart() -> None:
    """A field only one case of an answer has is absent in the other, as the dicts had it, never null."""
    cases = [(wire.Imported, {"source": "a", "ok": True, "account_id": 1, "label": "a", "phone_masked": None}),
             (wire.Imported, {"source": "b", "ok": False, "error": "check failed: AUTH_KEY_UNREGISTERED"}),
             (wire.LoginStep, {"status": "password_needed"})]
    for type_, raw in cases:
        assert json.loads(msgspec.json.encode(msgspec.convert(raw, type_))) == raw


def test_the_account_states_are_written_once() -> None:
    from tgdaemon import store

    assert store.STATES is wire.STATES and model.STATES is wire.STATES
    assert list(STATE_STYLE) == list(wire.STATES)  # every state has its colour, in the CLI and the dashboard


async def test_a_stores_node_is_shown_with_iso_times(store: Store) -> None:
    spec = NodeSpec(name="n1", incarnation="i1", host="h", pid=7, version="v", http="127.0.0.1:1", max_accounts=3)
    assert await store.register_node(spec, dead_after=10, lease_seconds=15) is not None
    [info] = await store.list_nodes(10)
    node = wire.node_of(info)
    assert (node.name, node.host, node.pid, node.http, node.max_accounts, node.alive) == (
        "n1", "h", 7, "127.0.0.1:1", 3, True)
    assert node.heartbeat_at == iso(info.heartbeat_at) and node.owned_until == iso(info.owned_until)
    assert node.stopped_at is None
    await store.stop_node("n1", "i1")
    [stopped] = [wire.node_of(n) for n in await store.list_nodes(10)]
    assert not stopped.alive and stopped.stopped_at is not None and stopped.stopped_at >= stopped.started_at
