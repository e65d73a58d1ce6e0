"""ClientPool through the real gateway: real TelegramClients over scripted senders (tests/tgscript.py).

At most ``max_connected`` connected, least recently used disconnected first, a
client with a call in flight never disconnected, never two clients for one
account, idle clients reaped.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from typing import Any

import pytest
import tgscript as ts
from telethon.tl import functions

from tgdaemon.classify import ErrorClass, classify
from tgdaemon.gateway.base import AccountRef
from tgdaemon.store import NewAccount, SessionData, Store


async def add_accounts(store: Store, n: int) -> list[int]:
    return [await store.add_account(
        NewAccount(phone=f"+1555000{i:04d}", tg_user_id=1000 + i, label=f"acc{i}", is_probe=False),
        SessionData(dc_id=2, server=ts.DC_IPS[2], port=443, auth_key=os.urandom(256)), how="import")
        for i in range(1, n + 1)]


def expect_me(gw: ts.ScriptedGateway, account_id: int, times: int = 1) -> ts.ScriptedSender:
    sender = gw.sender(account_id)
    for _ in range(times):
        sender.expect(functions.users.GetUsersRequest, [sender.me])
    return sender


def connected(gw: ts.ScriptedGateway) -> set[int]:
    return {aid for aid, s in gw.senders.items() if s.is_connected()}


async def wait_until(predicate: Callable[[], bool], timeout: float = 1.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.005)


class Gate:
    """An answer that waits for ``open()``: a call held in flight."""

    def __init__(self, answer: Any) -> None:
        self.answer = answer
        self.event = asyncio.Event()
        self.entered = asyncio.Event()

    async def __call__(self, request: Any) -> Any:
        self.entered.set()
        await self.event.wait()
        return self.answer

    def open(self) -> None:
        self.event.set()


async def test_least_recently_used_is_disconnected(store: Store, gateways: Any) -> None:
    a, b, c = await add_accounts(store, 3)
    gw = await gateways(max_connected=2)
    for aid in (a, b, c):
        expect_me(gw, aid)
    await gw.get_me(AccountRef(a))
    await gw.get_me(AccountRef(b))
    assert connected(gw) == {a, b}
    await gw.get_me(AccountRef(c))
    assert connected(gw) == {b, c} and gw.pool.connected() == 2
    assert gw.sender(a).disconnects == 1

    # b used again: c becomes the least recently used; a comes back on its same client, re-initialised
    expect_me(gw, b)
    await gw.get_me(AccountRef(b))
    expect_me(gw, a)
    await gw.get_me(AccountRef(a))
    assert connected(gw) == {a, b}
    assert gw.sender(c).disconnects == 1
    assert len(gw.clients[a]) == 1 and gw.sender(a).connects == 2 and len(gw.sender(a).init_requests) == 2
    for aid in (a, b, c):
        gw.sender(aid).assert_done()


async def test_connected_never_exceeds_the_limit_in_sequence(store: Store, gateways: Any) -> None:
    ids = await add_accounts(store, 5)
    gw = await gateways(max_connected=2)
    for round_ in range(2):
        for aid in ids:
            expect_me(gw, aid)
            await gw.get_me(AccountRef(aid))
            assert gw.pool.connected() <= 2
    assert all(len(gw.clients[aid]) == 1 for aid in ids)


async def test_client_with_call_in_flight_is_never_disconnected(store: Store, gateways: Any) -> None:
    a, b, c = await add_accounts(store, 3)
    gw = await gateways(max_connected=2, call_timeout_seconds=5.0)
    gate = Gate([gw.sender(a).me])
    gw.sender(a).expect(functions.users.GetUsersRequest, gate)
    expect_me(gw, b)
    expect_me(gw, c)

    slow = asyncio.create_task(gw.get_me(AccountRef(a)))
    await asyncio.wait_for(gate.entered.wait(), 1.0)
    await gw.get_me(AccountRef(b))
    await gw.get_me(AccountRef(c))  # a is the least recently used, but busy: b goes
    assert connected(gw) == {a, c}
    assert gw.sender(a).disconnects == 0 and gw.sender(b).disconnects == 1

    gate.open()
    me = await asyncio.wait_for(slow, 1.0)
    assert me.user_id == gw.sender(a).me.id


async def test_all_busy_connects_anyway_then_shrinks(store: Store, gateways: Any) -> None:
    """Nothing idle to disconnect: the limit gives way rather than cut a call; the next connect restores it."""
    a, b, c, d = await add_accounts(store, 4)
    gw = await gateways(max_connected=2, call_timeout_seconds=5.0)
    gates = {aid: Gate([gw.sender(aid).me]) for aid in (a, b, c)}
    for aid, gate in gates.items():
        gw.sender(aid).expect(functions.users.GetUsersRequest, gate)
    tasks = [asyncio.create_task(gw.get_me(AccountRef(aid))) for aid in (a, b, c)]
    for gate in gates.values():
        await asyncio.wait_for(gate.entered.wait(), 1.0)
    assert connected(gw) == {a, b, c}
    assert all(gw.sender(aid).disconnects == 0 for aid in (a, b, c))
    for gate in gates.values():
        gate.open()
    await asyncio.wait_for(asyncio.gather(*tasks), 1.0)

    expect_me(gw, d)
    await gw.get_me(AccountRef(d))
    assert gw.pool.connected() == 2 and d in connected(gw)


async def test_one_client_per_account_under_concurrency(store: Store, gateways: Any) -> None:
    [a] = await add_accounts(store, 1)
    gw = await gateways()
    sender = expect_me(gw, a, times=10)
    results = await asyncio.gather(*(gw.get_me(AccountRef(a)) for _ in range(10)))
    assert {r.user_id for r in results} == {sender.me.id}
    assert len(gw.clients[a]) == 1
    assert sender.connects == 1 and len(sender.init_requests) == 1
    assert len(sender.calls_of(functions.users.GetUsersRequest)) == 10
    sender.assert_done()


async def test_one_client_per_account_under_concurrency_with_slow_connect(store: Store, gateways: Any) -> None:
    """Many callers arrive while the first connect is still in its handshake."""
    [a, b] = await add_accounts(store, 2)
    gw = await gateways(max_connected=1)
    gate = Gate(ts.tl_config())
    for aid in (a, b):
        gw.sender(aid).handshake[functions.help.GetConfigRequest] = gate
        expect_me(gw, aid, times=5)
    calls = [gw.get_me(AccountRef(aid)) for _ in range(5) for aid in (a, b)]
    task = asyncio.gather(*calls)
    await asyncio.wait_for(gate.entered.wait(), 1.0)
    await asyncio.sleep(0.02)
    gate.open()
    await asyncio.wait_for(task, 2.0)
    assert len(gw.clients[a]) == 1 and len(gw.clients[b]) == 1
    for aid in (a, b):
        gw.sender(aid).assert_done()


async def test_reap_idle_disconnects_idle_clients_only(store: Store, gateways: Any) -> None:
    a, b = await add_accounts(store, 2)
    gw = await gateways(call_timeout_seconds=5.0)
    gw.pool.idle_seconds = 0.05
    expect_me(gw, a)
    gate = Gate([gw.sender(b).me])
    gw.sender(b).expect(functions.users.GetUsersRequest, gate)

    await gw.get_me(AccountRef(a))
    busy = asyncio.create_task(gw.get_me(AccountRef(b)))
    await asyncio.wait_for(gate.entered.wait(), 1.0)
    assert await gw.pool.reap_idle() == 0  # a was used just now
    await asyncio.sleep(0.1)
    assert await gw.pool.reap_idle() == 1
    assert connected(gw) == {b}  # b is idle by the clock, but its call is in flight
    gate.open()
    await asyncio.wait_for(busy, 1.0)

    await asyncio.sleep(0.1)
    assert await gw.pool.reap_idle() == 1
    assert connected(gw) == set()
    # and a reaped client comes back on use
    expect_me(gw, a)
    await gw.get_me(AccountRef(a))
    assert connected(gw) == {a} and len(gw.clients[a]) == 1


async def test_gateway_reaper_runs(store: Store, gateways: Any) -> None:
    [a] = await add_accounts(store, 1)
    gw = await gateways(idle_disconnect_seconds=0.1)
    expect_me(gw, a)
    await gw.get_me(AccountRef(a))
    assert connected(gw) == {a}
    await wait_until(lambda: not gw.sender(a).is_connected(), timeout=1.0)


async def test_forget_drops_the_client(store: Store, gateways: Any) -> None:
    [a] = await add_accounts(store, 1)
    gw = await gateways()
    expect_me(gw, a)
    await gw.get_me(AccountRef(a))
    first = gw.sender(a)
    await gw.forget(a)  # what the daemon calls when the account is disabled
    assert not first.is_connected()
    # the next use makes a new client, its session reloaded from the store
    second = gw.next_sender(a)
    expect_me(gw, a)
    await gw.get_me(AccountRef(a))
    assert len(gw.clients[a]) == 2 and second.connects == 1 and first.connects == 1
    second.assert_done()


async def test_connect_timeout_is_transient(store: Store, gateways: Any) -> None:
    [a] = await add_accounts(store, 1)
    gw = await gateways(connect_timeout_seconds=0.2)
    gw.sender(a).handshake[functions.help.GetConfigRequest] = ts.NEVER
    started = time.monotonic()
    with pytest.raises(TimeoutError) as info:
        await gw.get_me(AccountRef(a))
    assert time.monotonic() - started < 1.0
    assert (classify(info.value).kind, classify(info.value).code) == (ErrorClass.TRANSIENT, "TIMEOUT")


async def test_connect_timeout_leaves_no_half_connected_client(store: Store, gateways: Any) -> None:
    [a] = await add_accounts(store, 1)
    gw = await gateways(connect_timeout_seconds=0.2)
    sender = gw.sender(a)
    sender.handshake[functions.help.GetConfigRequest] = ts.NEVER
    with pytest.raises(TimeoutError):
        await gw.get_me(AccountRef(a))
    del sender.handshake[functions.help.GetConfigRequest]
    expect_me(gw, a)
    try:
        await gw.get_me(AccountRef(a))
        # the call must go out on an initialised connection: a second InitConnection before it
        assert len(sender.init_requests) == 2
    finally:
        sender.script.clear()
