"""The control API's nodes: ``GET /v1/nodes``, the nodes in ``status``, and pinning accounts to a node.

A real daemon in this process, over its real socket, once on the data dir's
SQLite file and once on a PostgreSQL database. The other nodes a pin may name
are registered in the same store as any daemon registers itself
(``register_node``): one then stops cleanly (``stop_node``), the other never
heartbeats again, so it goes dead as a killed daemon's row does.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import msgspec
import pgtest
import pytest

from tgdaemon import __version__, wire
from tgdaemon.control.client import ControlClient
from tgdaemon.errors import ApiError
from tgdaemon.lifecycle.daemon import Daemon
from tgdaemon.store.api import NodeSpec

DEAD_AFTER = 1.0  # the test's nodes.dead_after_seconds: a node that stops heartbeating is dead this soon
WAIT_SECONDS = 15.0


@pytest.fixture(params=pgtest.STORES)
async def node_daemon(request: pytest.FixtureRequest,
                      daemon_factory: Callable[..., Any]) -> AsyncIterator[tuple[Daemon, ControlClient]]:
    with pgtest.store_url(request.param, request) as url:
        store = {"url": url} if url else {}
        async with daemon_factory(store=store, daemon={"node_name": "alpha"},
                                  nodes={"heartbeat_seconds": 0.25, "dead_after_seconds": DEAD_AFTER,
                                         "lease_seconds": 1.5}) as pair:
            yield pair


async def raw(daemon: Daemon, method: str, path: str, **kwargs: Any) -> tuple[int, Any]:
    """A request ControlClient would never send (a bad body, the wrong content type)."""
    async with aiohttp.ClientSession(connector=aiohttp.UnixConnector(path=str(daemon.runtime.socket_path)),
                                     timeout=aiohttp.ClientTimeout(total=10)) as http, \
            http.request(method, f"http://tgdaemon/v1{path}", **kwargs) as resp:
        return resp.status, json.loads(await resp.read())


async def other_node(daemon: Daemon, name: str) -> NodeSpec:
    """Another daemon's row, registered as a daemon registers itself."""
    spec = NodeSpec(name=name, incarnation=f"{name}-1", host="elsewhere", pid=4242, version=__version__,
                    http="10.0.0.9:8780", max_accounts=0)
    cfg = daemon.cfg.nodes
    assert await daemon.runtime.store.register_node(spec, dead_after=cfg.dead_after_seconds,
                                                    lease_seconds=cfg.lease_seconds) is not None
    return spec


async def nodes_until(client: ControlClient, check: Callable[[dict[str, Any]], bool], what: str) -> dict[str, Any]:
    """``GET /v1/nodes`` until ``check(answer)``; bounded in count and time."""
    for _ in range(int(WAIT_SECONDS / 0.1)):
        answer = await client.request("GET", "/nodes")
        if check(answer):
            return answer
        await asyncio.sleep(0.1)
    pytest.fail(f"GET /v1/nodes never showed {what}: {answer}", pytrace=False)


async def test_the_node_lists_itself_alive_and_leader_and_status_names_it(
        node_daemon: tuple[Daemon, ControlClient]) -> None:
    daemon, client = node_daemon
    answer = await nodes_until(client, lambda a: any(n["leader"] and n["accounts"] for n in a["nodes"]),
                               "the node leading and owning accounts")
    typed = msgspec.convert(answer, wire.NodeList)
    assert json.loads(msgspec.json.encode(typed)) == answer  # nothing lost on the way into the struct
    [me] = typed.nodes
    assert (answer["node"], me.name, me.alive, me.leader, me.stopped_at) == ("alpha", "alpha", True, True, None)
    assert (me.pid, me.version) == (os.getpid(), __version__)
    assert me.http == daemon.runtime.http_bound
    owned = [a for a in await client.all_accounts() if a["owner"] == "alpha"]
    assert me.accounts == len(owned) > 0
    assert me.heartbeat_at <= typed.at <= me.owned_until

    status = await client.call("GET", "/status", wire.Status)
    assert status.node == "alpha" and [n.name for n in status.nodes] == ["alpha"]
    assert status.nodes[0].leader and status.nodes[0].alive


async def test_pin_and_unpin_show_in_the_account_and_name_a_dead_node_in_the_answer(
        node_daemon: tuple[Daemon, ControlClient]) -> None:
    daemon, client = node_daemon
    pinned = await client.request("POST", "/accounts/pin", body={"ids": [3, 4, 4], "node": "alpha"})
    assert pinned == {"changed": 2, "node": "alpha", "note": None}
    assert [(await client.account(i))["pinned_node"] for i in (3, 4, 5)] == ["alpha", "alpha", None]
    again = await client.request("POST", "/accounts/pin", body={"ids": [3], "node": "alpha"})
    assert again["changed"] == 0  # already pinned there: nothing changed

    gone = await other_node(daemon, "gone")
    await other_node(daemon, "stalled")
    await daemon.runtime.store.stop_node(gone.name, gone.incarnation)
    await nodes_until(client, lambda a: {n["name"]: n["alive"] for n in a["nodes"]} == {
        "alpha": True, "gone": False, "stalled": False}, "gone stopped and stalled dead")
    to_stopped = await client.request("POST", "/accounts/pin", body={"ids": [5], "node": "gone"})
    assert to_stopped["changed"] == 1 and to_stopped["node"] == "gone"
    assert "gone is stopped" in to_stopped["note"] and "unpin" in to_stopped["note"]
    to_dead = await client.request("POST", "/accounts/pin", body={"ids": [6], "node": "stalled"})
    assert "stalled is dead" in to_dead["note"]
    assert (await client.account(6))["pinned_node"] == "stalled"

    unpinned = await client.request("POST", "/accounts/unpin", body={"ids": [3, 5, 6, 7]})
    assert unpinned == {"changed": 3, "node": None, "note": None}  # 7 was not pinned
    assert [(await client.account(i))["pinned_node"] for i in (3, 4, 5, 6)] == [None, "alpha", None, None]


async def test_a_pin_to_no_such_node_or_account_changes_nothing(node_daemon: tuple[Daemon, ControlClient]) -> None:
    daemon, client = node_daemon
    with pytest.raises(ApiError) as caught:
        await client.request("POST", "/accounts/pin", body={"ids": [1, 2], "node": "alpah"})
    assert caught.value.status == 404 and caught.value.code == "not_found"
    text = str(caught.value)
    assert "node 'alpah': no such node" in text and "alpha" in text and "\n" not in text
    with pytest.raises(ApiError) as missing:
        await client.request("POST", "/accounts/pin", body={"ids": [1, 99999], "node": "alpha"})
    assert missing.value.status == 404 and "account 99999" in str(missing.value)
    with pytest.raises(ApiError) as missing_unpin:
        await client.request("POST", "/accounts/unpin", body={"ids": [99999]})
    assert missing_unpin.value.status == 404
    assert [(await client.account(i))["pinned_node"] for i in (1, 2)] == [None, None]  # no half-done pin


@pytest.mark.parametrize(("path", "body", "field"), [
    ("/accounts/pin", {"node": "alpha"}, "ids"),
    ("/accounts/pin", {"ids": [], "node": "alpha"}, "ids"),
    ("/accounts/pin", {"ids": [0], "node": "alpha"}, "ids[0]"),
    ("/accounts/pin", {"ids": ["1"], "node": "alpha"}, "ids[0]"),
    ("/accounts/pin", {"ids": [1]}, "node"),
    ("/accounts/pin", {"ids": [1], "node": ""}, "node"),
    ("/accounts/pin", {"ids": [1], "node": None}, "node"),
    ("/accounts/pin", {"ids": [1], "node": "alpha", "extra": 1}, "extra"),
    ("/accounts/unpin", {}, "ids"),
    ("/accounts/unpin", {"ids": [1], "node": "alpha"}, "node"),
    ("/accounts/unpin", [1, 2], "body"),
])
async def test_bad_bodies_are_400_naming_the_field(running_daemon: tuple[Daemon, ControlClient], path: str,
                                                   body: Any, field: str) -> None:
    daemon, _ = running_daemon
    status, answer = await raw(daemon, "POST", path, json=body)
    assert status == 400 and answer["error"]["code"] == "invalid_body", answer
    assert field in answer["error"]["message"] and "\n" not in answer["error"]["message"]


async def test_not_json_is_415_and_a_post_to_the_list_is_405(running_daemon: tuple[Daemon, ControlClient]) -> None:
    daemon, _ = running_daemon
    status, answer = await raw(daemon, "POST", "/accounts/pin", data="ids=1&node=x")
    assert status == 415 and answer["error"]["code"] == "unsupported_media_type"
    status, answer = await raw(daemon, "POST", "/nodes", json={})
    assert status == 405 and answer["error"]["code"] == "method_not_allowed", answer
