"""An account's Telegram traffic goes through its own proxy and no other (issue 14).

Two ways, because the scripted responder (tests/tgscript.py) replaces Telethon's network layer whole and
opens no socket:

* with the scripted responder, the real gateway's real TelegramClient hands each account's connection
  Telethon's own ``Connection`` object, which names the proxy it would dial: each account's is its own,
  a changed proxy makes a new client at the next connection (never under a call in flight), and a dead
  proxy is never dialled;
* with nothing scripted: the real gateway's real clients, on sessions whose "data centre" is a TCP server on
  127.0.0.1, really connect through real SOCKS5 and HTTP CONNECT proxies on 127.0.0.1 (tests/proxyserver.py),
  each of which records the connections it relayed, with the user it authenticated: each account's
  connection is in its own proxy's record, with its own credentials, and in no other's. (No MTProto server
  answers there, so the calls end in a timeout: the routing is what is checked.)
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import tgscript as ts
from conftest import GatewayFactory
from proxyserver import HttpConnectServer, Relayed, Servers, Socks5Server, TcpTarget
from telethon.tl import functions

from tgdaemon.classify import ErrorClass, ProxyDead, classify
from tgdaemon.config import Config, ProxiesConfig
from tgdaemon.gateway.base import AccountRef
from tgdaemon.gateway.telegram import TelethonGateway
from tgdaemon.policy import account_effect
from tgdaemon.setup.scheduler import SetupScheduler
from tgdaemon.store import (
    ClaimedTask,
    NewAccount,
    NewProxy,
    ProxyCheck,
    SessionData,
    Store,
)

PASSWORD = "Rt5-alice-Secret"
HTTP_PASSWORD = "Rt6-bob-Secret"


async def account(store: Store, n: int, proxy: int | None, server: str = ts.DC_IPS[2], port: int = 443) -> int:
    return await store.add_account(NewAccount(f"+1555000{n:04d}", 1000 + n, f"acc{n}", False, proxy_id=proxy),
                                   SessionData(2, server, port, os.urandom(256)), how="import")


async def proxies(store: Store, socks_port: int = 1080, http_port: int = 3128) -> tuple[int, int]:
    socks = await store.add_proxy(NewProxy("socks5", "127.0.0.1", socks_port, "alice", PASSWORD))
    http = await store.add_proxy(NewProxy("http", "127.0.0.1", http_port, "bob", HTTP_PASSWORD))
    return socks["id"], http["id"]


# --- the connection each client is given (scripted responder) ---------------------------------------------------

async def test_each_account_is_handed_a_connection_through_its_own_proxy(store: Store,
                                                                         gateways: GatewayFactory) -> None:
    socks, http = await proxies(store)
    a, b, c = await account(store, 1, socks), await account(store, 2, http), await account(store, 3, None)
    gw = await gateways()
    for account_id in (a, b, c):
        sender = gw.sender(account_id)
        sender.expect(functions.users.GetUsersRequest, [sender.me])
        await gw.get_me(AccountRef(account_id))
    assert gw.sender(a).connection._proxy == {"proxy_type": "socks5", "addr": "127.0.0.1", "port": 1080,
                                              "username": "alice", "password": PASSWORD, "rdns": True}
    assert gw.sender(b).connection._proxy == {"proxy_type": "http", "addr": "127.0.0.1", "port": 3128,
                                              "username": "bob", "password": HTTP_PASSWORD, "rdns": True}
    assert gw.sender(c).connection._proxy is None  # no proxy of its own, no global one: straight out


async def test_a_changed_proxy_takes_effect_at_the_next_connection_never_under_a_call(
        store: Store, gateways: GatewayFactory) -> None:
    socks, http = await proxies(store)
    a = await account(store, 1, socks)
    gw = await gateways()
    first = gw.sender(a)
    release = asyncio.Event()

    async def slow(request: object) -> object:
        await release.wait()
        return [first.me]

    first.expect(functions.users.GetUsersRequest, slow)
    call = asyncio.ensure_future(gw.get_me(AccountRef(a)))
    for _ in range(200):  # until the call is in flight on its connection
        if first.calls:
            break
        await asyncio.sleep(0.01)
    assert first.calls and first.is_connected()
    assert await store.set_account_proxy([a], http) == [a]
    await gw.retire(a)  # the operator's change: this node lets the connection go once idle
    assert first.is_connected() and not call.done()  # the call in flight is not cut short
    release.set()
    await call
    second = gw.next_sender(a)
    second.expect(functions.users.GetUsersRequest, [second.me])
    await gw.get_me(AccountRef(a))  # the next call: the old connection goes, a new one comes
    assert not first.is_connected() and (first.connects, first.disconnects) == (1, 1)
    assert len(gw.clients[a]) == 2  # a new client, on the same session, through the new proxy
    assert gw.clients[a][1].session is gw.clients[a][0].session
    assert second.connection._proxy["proxy_type"] == "http" and second.connection._proxy["username"] == "bob"
    assert first.connection._proxy["username"] == "alice"

    assert await store.set_account_proxy([a], None) == [a]  # no call at all this time: the reaper lets it go
    await gw.retire(a)
    assert not second.is_connected()  # nothing in flight: at once
    third = gw.next_sender(a)
    third.expect(functions.users.GetUsersRequest, [third.me])
    await gw.get_me(AccountRef(a))
    assert third.connection._proxy is None and len(gw.clients[a]) == 3


async def test_a_retired_connection_with_a_call_in_flight_goes_at_the_first_reap_after_it(
        store: Store, gateways: GatewayFactory) -> None:
    socks, http = await proxies(store)
    a = await account(store, 1, socks)
    gw = await gateways()
    sender = gw.sender(a)
    release = asyncio.Event()

    async def slow(request: object) -> object:
        await release.wait()
        return [sender.me]

    sender.expect(functions.users.GetUsersRequest, slow)
    call = asyncio.ensure_future(gw.get_me(AccountRef(a)))
    for _ in range(200):
        if sender.calls:
            break
        await asyncio.sleep(0.01)
    await store.set_account_proxy([a], http)
    await gw.retire(a)
    assert await gw.pool.reap_idle() == 0 and sender.is_connected()  # in flight: kept
    release.set()
    await call
    assert await gw.pool.reap_idle() == 1 and not sender.is_connected()  # done: gone, idle_seconds or not


async def test_a_dead_proxy_is_never_dialled_and_holds_its_account(store: Store, gateways: GatewayFactory) -> None:
    socks, _ = await proxies(store)
    a = await account(store, 1, socks)
    await store.record_proxy_check(socks, ProxyCheck("dead", None, "cannot connect: Connection refused", time.time()),
                                   hold_until=time.time() + 60)
    gw = await gateways()
    with pytest.raises(ProxyDead, match=f"proxy {socks} .socks5://127.0.0.1:1080. is dead") as caught:
        await gw.get_me(AccountRef(a))
    assert gw.sender(a).connects == 0  # nothing went out: not through it, not around it
    error = classify(caught.value)
    assert (error.kind, error.code, error.wire) == (ErrorClass.PROXY, "PROXY_DEAD", f"PROXY_DEAD_{error.seconds}")
    assert error.seconds == round(ProxiesConfig().hold_seconds())
    effect = account_effect(error, Config().limits, 1000.0)
    assert (effect.cooldown_reason, effect.cooldown_until) == ("proxy", 1000.0 + error.seconds)
    task = ClaimedTask(1, a, "ensure_2fa", {}, 1, {}, 1000.0, 1001, None, {})
    outcome = SetupScheduler(Config(), store, gw, Path("/nonexistent-media")).on_error(task, error)
    assert (outcome.status, outcome.refund_attempt, outcome.effect.cooldown_reason) == ("retry", True, "proxy")
    assert outcome.retry_at == outcome.effect.cooldown_until  # a setup task waits as a flood wait does, free


# --- real connections through real proxies ----------------------------------------------------------------------

@pytest.fixture
def servers() -> Iterator[Servers]:
    with Servers() as running:
        yield running


@pytest.fixture
async def real_gateway(store: Store) -> AsyncIterator[TelethonGateway]:
    gw = TelethonGateway(ts.telegram_config(connect_timeout_seconds=2.0, idle_disconnect_seconds=3600.0))
    await gw.start(store)
    try:
        yield gw
    finally:
        await gw.close()


async def test_real_traffic_goes_through_the_accounts_own_proxy_and_no_other(
        servers: Servers, store: Store, real_gateway: TelethonGateway) -> None:
    dcs = [servers.add(TcpTarget()) for _ in range(3)]  # one "data centre" per account, to tell them apart
    socks_server = servers.add(Socks5Server("alice", PASSWORD))
    http_server = servers.add(HttpConnectServer("bob", HTTP_PASSWORD))
    socks, http = await proxies(store, socks_server.port, http_server.port)
    a = await account(store, 1, socks, "127.0.0.1", dcs[0].port)
    b = await account(store, 2, http, "127.0.0.1", dcs[1].port)
    c = await account(store, 3, None, "127.0.0.1", dcs[2].port)

    for account_id in (a, b, c):
        with pytest.raises((TimeoutError, ConnectionError, OSError)):  # no MTProto server answers there
            await real_gateway.get_me(AccountRef(account_id))
        await real_gateway.forget(account_id)

    assert socks_server.relayed and set(socks_server.relayed) == {Relayed("alice", "127.0.0.1", dcs[0].port)}
    assert http_server.relayed and set(http_server.relayed) == {Relayed("bob", "127.0.0.1", dcs[1].port)}
    assert socks_server.refused == http_server.refused == []
    assert [dc.accepted > 0 for dc in dcs] == [True, True, True]
    # account c has no proxy of its own: it went straight out, through neither proxy
    relayed_ports = {r.port for r in socks_server.relayed + http_server.relayed}
    assert dcs[2].port not in relayed_ports
