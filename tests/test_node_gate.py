"""The node's gate (tgdaemon/nodes/gate.py) and the real Telethon gateway asking it.

The gateway is tests/tgscript.py's: real TelegramClients whose network layer is a scripted responder, on
a real SQLite store; so "nothing was sent" is read from what the client would have put on the wire.
"""

from __future__ import annotations

import asyncio
import os

import pytest
import tgscript as ts
from conftest import GatewayFactory
from telethon.tl import functions

from tgdaemon.errors import NotOwned
from tgdaemon.gateway.base import AccountRef, Channel
from tgdaemon.nodes.gate import NodeGate
from tgdaemon.store import NewAccount, SessionData, Store
from tgdaemon.store.api import NodeSpec
from tgdaemon.timeutil import steady

CHANNEL = Channel(peer_id=777000, access_hash=0x5EC2E7, title="News", username="news")


async def add_account(store: Store, n: int = 1) -> int:
    return await store.add_account(
        NewAccount(phone=f"+1555000{n:04d}", tg_user_id=1000 + n, label=f"acc{n}", is_probe=False),
        SessionData(dc_id=2, server=ts.DC_IPS[2], port=443, auth_key=os.urandom(256)), how="import")


def open_gate() -> NodeGate:
    gate = NodeGate()
    gate.renewed(steady(), lease_seconds=60, heartbeat_seconds=1)
    return gate


async def test_a_call_as_an_account_the_node_does_not_own_sends_nothing(store: Store, gateways: GatewayFactory) -> None:
    account_id = await add_account(store)
    gw = await gateways()
    gw.gate = gate = open_gate()
    sender = gw.sender(account_id)
    with pytest.raises(NotOwned, match=f"account {account_id}: this node does not own the account"):
        await gw.get_me(AccountRef(account_id))
    assert gw.clients == {} and sender.connects == 0 and sender.requests == []

    gate.own(account_id, 1)
    sender.expect(functions.users.GetUsersRequest, [sender.me])
    await gw.get_me(AccountRef(account_id))
    assert sender.is_connected() and len(sender.calls) == 1

    gate.close(account_id)  # being let go: no new call from now on, its epoch kept for the last writes
    with pytest.raises(NotOwned):
        await gw.get_me(AccountRef(account_id))
    assert len(sender.calls) == 1 and gate.epoch(account_id) == 1
    await gw.let_go([account_id])
    assert not sender.is_connected() and gw.pool.connected() == 0
    sender.assert_done()


async def test_past_fence_at_no_call_passes_whatever_is_owned(store: Store, gateways: GatewayFactory) -> None:
    account_id = await add_account(store)
    gw = await gateways()
    clock = [100.0]
    gw.gate = gate = NodeGate(clock=lambda: clock[0])
    gate.own(account_id, 3)
    gate.renewed(100.0, lease_seconds=3, heartbeat_seconds=1)  # open until 101: lease less two heartbeats
    assert gate.fence_at == 101.0 and gate.allows(account_id)
    clock[0] = 101.0  # no renewal since: closed on this clock alone, before the lease ends at 103
    with pytest.raises(NotOwned):
        await gw.get_me(AccountRef(account_id))
    assert gw.sender(account_id).requests == []
    gate.renewed(100.5, lease_seconds=3, heartbeat_seconds=1)  # a renewal sent at 100.5 came back
    assert gate.allows(account_id)
    assert gate.fence() == [account_id] and not gate.allows(account_id) and gate.epoch(account_id) is None


async def test_session_writes_carry_the_gates_epoch_and_a_stale_one_writes_nothing(
        store: Store, gateways: GatewayFactory) -> None:
    account_id = await add_account(store)
    spec = NodeSpec("n", "inc", "host", os.getpid(), "test", None, 0)
    assert await store.register_node(spec, dead_after=10, lease_seconds=60) is not None
    assert await store.pin_accounts([account_id], "n") == 1  # assigned here
    [owned] = await store.acquire_accounts("n", "inc", 10)
    gw = await gateways(request_retries=1)
    gw.gate = gate = open_gate()
    gate.own(account_id, owned.epoch)

    async def migrate(dc: int) -> bytes:
        """A DC migration: Telethon makes a new auth key, and the session writes it (spawned)."""
        sender = gw.sender(account_id)
        sender.new_auth_key = key = os.urandom(256)
        sender.expect(functions.channels.GetFullChannelRequest, ts.rpc_error(303, f"USER_MIGRATE_{dc}"))
        if dc == 4:  # Telethon keeps help.getConfig on the class: asked once
            sender.expect(functions.help.GetConfigRequest, ts.tl_config())
        sender.expect(functions.channels.GetFullChannelRequest, ts.channel_full(ts.channel(), 5))
        await gw.channel_stats(AccountRef(account_id), CHANNEL)
        await gw.flush()
        sender.assert_done()
        return key

    key = await migrate(4)
    assert (await store.load_session(account_id)).auth_key == key  # under the epoch it is owned under

    # The account moved on behind this gateway's back (released, taken again: a new epoch) while its gate
    # still says the old one: what the client writes now is refused by the store.
    assert await store.release_accounts("n", [(account_id, owned.epoch)]) == 1
    [again] = await store.acquire_accounts("n", "inc", 10)
    assert again.epoch == owned.epoch + 1
    await gw.let_go([account_id])
    gw.next_sender(account_id)
    before = await store.load_session(account_id)
    assert await migrate(5) != before.auth_key
    assert await store.load_session(account_id) == before


async def test_a_release_waits_for_the_work_under_way_as_the_account() -> None:
    gate = open_gate()
    gate.own(1, 1)
    gate.own(2, 1)
    done = asyncio.Event()

    async def task() -> None:
        with gate.working(1):
            await done.wait()

    job = asyncio.create_task(task())
    await asyncio.sleep(0)
    assert gate.busy([1, 2]) == [1]
    assert await gate.settled([2], timeout=5) == []  # another account's work is not waited for
    assert await gate.settled([1], timeout=0.05) == [1]  # bounded: still busy when the time is up
    waiting = asyncio.create_task(gate.settled([1], timeout=5))
    await asyncio.sleep(0)
    done.set()
    assert await waiting == [] and gate.busy([1]) == []
    await job


async def test_a_connect_begun_just_before_the_fence_is_cut_off_at_the_fence(
        store: Store, gateways: GatewayFactory) -> None:
    """The fence's let-go waits for the account's lock, which a connect holds: a slow connect begun a moment
    before the fence would hold the wire up for connect_timeout past it, beside the next owner's. It is cut
    off at the fence instead, and the client is down when the call gives up."""
    account_id = await add_account(store)
    gw = await gateways(connect_timeout_seconds=600.0)
    gw.gate = gate = NodeGate()
    gate.own(account_id, 1)
    gate.renewed(steady(), lease_seconds=2.5, heartbeat_seconds=1)  # fences 0.5 s from now
    sender = gw.sender(account_id)
    sender.handshake[functions.help.GetConfigRequest] = ts.NEVER  # the server never finishes the handshake
    call = asyncio.create_task(gw.get_me(AccountRef(account_id)))
    await asyncio.wait([call], timeout=30)  # bounded: a connect still hanging here is the failure
    try:
        assert call.done(), "the connect outlived the fence"
        assert isinstance(call.exception(), TimeoutError)
        assert gate.fenced and not sender.is_connected() and sender.calls == []
    finally:
        call.cancel()
        await asyncio.gather(call, return_exceptions=True)
