"""Work across nodes: a provider pulling from two nodes and reporting to either, and an action taken
through one node seen in another node's stream and carried out by the account's owner."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp

from multinode.harness import (
    Connection,
    NodeFleet,
    ProviderClient,
    books,
    quiesced,
    wait_for,
)
from multinode.test_ownership import settled

POSTS = ("@tgfleet_news", "@tgfleet_markets", "@tgfleet_weather", "@tgfleet_sports")
STREAM_WAIT = 10.0  # a change through another node is in this node's stream well within this


async def test_a_provider_pulling_from_two_nodes_gets_each_task_once_and_its_reports_count_anywhere(
        node_fleet: Any) -> None:
    fleet: NodeFleet = node_fleet()
    n1, n2, n3 = await fleet.start_all(3)
    await settled(fleet, {"n1", "n2", "n3"}, "n1")
    token = await fleet.provider_token("n1", "acme")
    accounts = [a for a in await _accounts(fleet, "n2") if not a["is_probe"]]
    await fleet.assign("n3", [a["id"] for a in accounts], "acme")
    quotas = [await fleet.add_quota("n2", name=f"posts {t}", target=t, action="post_stats", last_n_posts=5,
                                    quantity=8) for t in POSTS]
    quotas.append(await fleet.add_quota("n3", name="subs", target="@tgfleet_news", action="channel_stats", orders=8))

    async with aiohttp.ClientSession() as http:
        p = ProviderClient(http, token)
        pulls = {"n1": 0, "n2": 0}
        deadline = time.monotonic() + 60
        for i in range(1200):  # bounded: about 40 tasks come at about 5 a second
            source, sink = (n1, n2) if i % 2 == 0 else (n2, n1)
            # both pull at the same moment: SKIP LOCKED must hand a task to one of them only
            got_a, got_b = await asyncio.gather(p.pull(source, limit=3), p.pull(sink, limit=3))
            pulls[source.name] += len(got_a)
            pulls[sink.name] += len(got_b)
            got = got_a + got_b
            if got:  # every report to the node it was NOT pulled from
                assert await p.report(sink, got_a) == ["applied"] * len(got_a)
                assert await p.report(source, got_b) == ["applied"] * len(got_b)
            left = fleet.sql("SELECT COALESCE(sum(COALESCE(quantity_left, orders_left)), 0) FROM quotas")[0][0]
            if left == 0 or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.05)
        assert left == 0, f"{left} observations left; pulled {len(p.pulled)} tasks"
        again = await p.report(n3, [{"task_id": tid, **p.tasks[tid]} for tid in sorted(p.applied)[:3]])
        assert again == ["duplicate"] * 3  # the same reports to a third node change nothing twice

    assert p.pulled_twice() == {}, p.pulled_twice()  # no task leased twice
    assert len(p.applied) == 40 and pulls["n1"] > 0 and pulls["n2"] > 0, pulls
    assert all(pulled != reported for pulled, reported in p.sent_to.values())
    await quiesced(fleet, "n1")
    # every report answered `applied` is durable: its task is done with that result, measured once
    rows = {tid: (status, json.loads(result) if isinstance(result, str) else result, measured)
            for tid, status, result, measured in fleet.sql(
                "SELECT t.id, t.status, t.result_json, (SELECT count(*) FROM measurements m WHERE m.task_id = t.id)"
                " FROM tasks t")}
    for tid, sent in p.applied.items():
        status, result, measured = rows[tid]
        assert status == "done" and measured == 1, (tid, rows[tid])
        assert all(result.get(k) == v for k, v in sent.items()), (tid, result, sent)
    for quota, total, left, done, measurements, counted, measured_tasks in books(fleet):
        assert total - left == done == measurements == counted == measured_tasks, (quota, total, left, done,
                                                                                   measurements, counted)


async def _accounts(fleet: NodeFleet, via: str) -> list[dict[str, Any]]:
    async with fleet.nodes[via].client() as c:
        return await c.all_accounts()


@contextlib.asynccontextmanager
async def watching(fleet: NodeFleet, via: str) -> AsyncIterator[tuple[asyncio.Queue[dict[str, Any]], dict[str, Any]]]:
    """Node ``via``'s stream, read into a queue by a task of its own; (queue of deltas, the snapshot)."""
    queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    first: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
    client = fleet.nodes[via].client(timeout=3600)

    async def read() -> None:
        async for msg in client.watch():
            if not first.done():
                first.set_result(msg)
            else:
                queue.put_nowait(msg)

    reader = asyncio.create_task(read())
    try:
        snapshot = await asyncio.wait_for(asyncio.shield(first), STREAM_WAIT)
        assert snapshot["type"] == "snapshot", snapshot
        yield queue, snapshot
    finally:
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await reader
        await client.close()


async def until(queue: asyncio.Queue[dict[str, Any]], want: Any, what: str,
                seen: list[dict[str, Any]]) -> dict[str, Any]:
    """The first message from the stream ``want(msg)`` accepts, within STREAM_WAIT (bounded in count too)."""
    deadline = time.monotonic() + STREAM_WAIT
    for _ in range(100_000):
        try:
            msg = await asyncio.wait_for(queue.get(), max(0.01, deadline - time.monotonic()))
        except TimeoutError:
            break
        seen.append(msg)
        if want(msg):
            return msg
    raise AssertionError(f"{what}: not in the stream within {STREAM_WAIT:.0f} s; last: {seen[-5:]}")


def event_of(kind: str, account: int) -> Any:
    return lambda m: m.get("kind") == "event" and m["data"]["kind"] == kind and m["data"]["account_id"] == account


async def test_a_disable_through_one_node_is_in_another_nodes_stream_and_the_owner_lets_go(node_fleet: Any) -> None:
    fleet: NodeFleet = node_fleet()
    await fleet.start_all(3)
    owners = await settled(fleet, {"n1", "n2", "n3"}, "n1")
    # n3's accounts are connected by n3: quotas served by the local executors make them call
    for target in POSTS:
        await fleet.add_quota("n1", name=f"subs {target}", target=target, action="channel_stats", quantity=1000)
    mine = {aid for aid, owner in owners.items() if owner == "n3"}

    async def connected() -> list[Connection] | None:
        held = {c.account_id: c for c in fleet.open_connections() if c.node == "n3" and c.account_id in mine}
        return [held[aid] for aid in sorted(held)[:2]] if len(held) >= 2 else None
    held = await wait_for(connected, "two of n3's accounts connected by n3", timeout=30)
    first, second = (c.account_id for c in held)

    async def let_go(c: Connection) -> Connection | None:
        return next((x for x in fleet.connections() if x.id == c.id and x.closed_at is not None), None)

    async with watching(fleet, "n1") as (stream, snapshot):
        seen: list[dict[str, Any]] = []
        # through n2, an account n3 owns: n1's stream shows it, and n3 lets go of its client
        await fleet.api("n2", "POST", f"/accounts/{first}/disable", body={"reason": "through n2"})
        delta = await until(stream, lambda m: m.get("kind") == "account" and m["data"]["id"] == first
                            and m["data"]["state"] == "disabled", f"account {first} disabled (done through n2)", seen)
        assert delta["data"]["disabled_reason"] == "through n2" and delta["data"]["owner"] == "n3"
        closed = [await wait_for(lambda: let_go(held[0]), f"account {first}'s connection closed by n3", timeout=10)]
        # then another through n1, and the first enabled through n2: all in n1's stream, in that order
        await fleet.api("n1", "POST", f"/accounts/{second}/disable", body={"reason": "through n1"})
        await fleet.api("n2", "POST", f"/accounts/{first}/enable", body={})
        await until(stream, event_of("account.enabled", first), f"account {first} enabled", seen)
        events = [(m["data"]["kind"], m["data"]["account_id"], m["seq"]) for m in seen if m.get("kind") == "event"
                  and m["data"]["kind"] in ("account.disabled", "account.enabled")]
        assert [e[:2] for e in events] == [("account.disabled", first), ("account.disabled", second),
                                           ("account.enabled", first)], events
        seqs = [m["seq"] for m in seen if "seq" in m]
        assert seqs == sorted(seqs) and seqs[0] > snapshot["seq"], seqs  # in the log's order, after the snapshot

    # the owner (n3) let go of both clients, though neither disable was done through it; it keeps owning
    # them (they may be enabled again: the first was)
    closed.append(await wait_for(lambda: let_go(held[1]), f"account {second}'s connection closed by n3", timeout=10))
    assert all(c.node == "n3" for c in closed), closed
    assert not [c for c in fleet.open_connections() if c.account_id == second]
    owners = await fleet.owners("n1")
    assert owners[first] == owners[second] == "n3"
    assert fleet.overlaps() == []
