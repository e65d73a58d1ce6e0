"""The real Telethon gateway over real TelegramClients whose network is a scripted responder.

See tests/tgscript.py: the requests checked here are the TL objects Telethon
would put on the wire, and the answers go back through Telethon's own
deserialisation and error construction.
"""

from __future__ import annotations

import asyncio
import base64
import importlib.util
import logging
import os
import time
from typing import Any

import pytest
import tgscript as ts
from conftest import GatewayFactory
from telethon import errors
from telethon.client import users as telethon_users
from telethon.crypto import AuthKey
from telethon.network import connection as tl_connection
from telethon.tl import alltlobjects, functions, types

from tgdaemon.classify import ErrorClass, classify
from tgdaemon.config import ProxyConfig
from tgdaemon.gateway.base import AccountRef, Channel, ChannelStats, Me, PostStats
from tgdaemon.gateway.session import StoreSession
from tgdaemon.gateway.telegram import client_options
from tgdaemon.store import NewAccount, SessionData, Store

CHANNEL = Channel(peer_id=777000, access_hash=0x5EC2E7, title="News", username="news")
MARKED_CHANNEL_ID = -1000000777000


# -- fixtures ---------------------------------------------------------------------------------------


class SleepRecorder:
    """Stands in for the ``asyncio`` module inside telethon/client/users.py: records ``_call``'s sleeps."""

    def __init__(self) -> None:
        self.sleeps: list[float] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(asyncio, name)

    async def sleep(self, delay: float, result: Any = None) -> Any:
        self.sleeps.append(delay)
        await asyncio.sleep(0)
        return result


@pytest.fixture
def telethon_sleeps(monkeypatch: pytest.MonkeyPatch) -> SleepRecorder:
    recorder = SleepRecorder()
    monkeypatch.setattr(telethon_users, "asyncio", recorder)
    return recorder


async def add_account(store: Store, n: int = 1, *, key: bytes | None = None, dc_id: int = 2) -> tuple[int, bytes]:
    key = os.urandom(256) if key is None else key
    account_id = await store.add_account(
        NewAccount(phone=f"+1555000{n:04d}", tg_user_id=1000 + n, label=f"acc{n}", is_probe=False),
        SessionData(dc_id=dc_id, server=ts.DC_IPS[dc_id], port=443, auth_key=key), how="import")
    return account_id, key


@pytest.fixture
async def one(store: Store, gateways: GatewayFactory) -> tuple[ts.ScriptedGateway, AccountRef, ts.ScriptedSender]:
    account_id, _ = await add_account(store)
    gw = await gateways()
    return gw, AccountRef(account_id), gw.sender(account_id)


# -- client options ---------------------------------------------------------------------------------


def test_client_options_from_config() -> None:
    cfg = ts.telegram_config(device_model="Pixel 8", system_version="Android 14", app_version="10.1",
                             lang_code="de", system_lang_code="de-DE", request_retries=3,
                             connect_timeout_seconds=7.0)
    options = client_options(cfg)
    assert options["device_model"] == "Pixel 8"
    assert options["system_version"] == "Android 14"
    assert options["app_version"] == "10.1"
    assert options["lang_code"] == "de" and options["system_lang_code"] == "de-DE"
    assert options["request_retries"] == 3
    assert options["flood_sleep_threshold"] == 0
    assert options["raise_last_call_error"] is True
    assert options["receive_updates"] is False
    assert options["timeout"] == 7.0
    assert "proxy" not in options and "connection" not in options


def test_client_options_socks5_proxy() -> None:
    cfg = ts.telegram_config(proxy=ProxyConfig(type="socks5", host="10.0.0.1", port=1080, username="u",
                                               password="p"))
    options = client_options(cfg)
    assert options["proxy"] == {"proxy_type": "socks5", "addr": "10.0.0.1", "port": 1080, "username": "u",
                                "password": "p", "rdns": True}
    assert "connection" not in options
    anonymous = client_options(ts.telegram_config(proxy=ProxyConfig(type="socks5", host="h", port=1)))
    assert anonymous["proxy"]["username"] is None and anonymous["proxy"]["password"] is None


def test_client_options_mtproxy() -> None:
    secret = "dd" + "ab" * 16
    options = client_options(ts.telegram_config(proxy=ProxyConfig(type="mtproxy", host="proxy.example", port=443,
                                                                  secret=secret)))
    assert options["connection"] is tl_connection.ConnectionTcpMTProxyRandomizedIntermediate
    assert options["proxy"] == ("proxy.example", 443, secret)


_NO_SOCKS_LIB = importlib.util.find_spec("python_socks") is None and importlib.util.find_spec("socks") is None


def test_socks_proxy_is_usable_by_telethon() -> None:
    options = client_options(ts.telegram_config(proxy=ProxyConfig(type="socks5", host="10.0.0.1", port=1080)))
    tl_connection.Connection._parse_proxy(**options["proxy"])  # what Telethon does on connect


@pytest.mark.filterwarnings("ignore:proxy argument will be ignored")  # Telethon warns for MTProxy too
async def test_mtproxy_reaches_the_connection_and_init_request(store: Store, gateways: GatewayFactory) -> None:
    account_id, _ = await add_account(store)
    gw = await gateways(proxy=ProxyConfig(type="mtproxy", host="10.1.2.3", port=8443, secret="dd" + "ab" * 16))
    sender = gw.sender(account_id)
    sender.expect(functions.users.GetUsersRequest, [sender.me])
    await gw.get_me(AccountRef(account_id))
    assert isinstance(sender.connection, tl_connection.ConnectionTcpMTProxyRandomizedIntermediate)
    assert sender.init_requests[0].proxy == types.InputClientProxy(address="10.1.2.3", port=8443)


async def test_client_flags_and_init_connection(store: Store, gateways: GatewayFactory) -> None:
    account_id, _ = await add_account(store)
    gw = await gateways(device_model="Pixel 8", system_version="Android 14", app_version="10.1", lang_code="de",
                        system_lang_code="de-DE", request_retries=2)
    sender = gw.sender(account_id)
    sender.expect(functions.users.GetUsersRequest, [sender.me])
    await gw.get_me(AccountRef(account_id))

    [client] = gw.clients[account_id]
    assert client.flood_sleep_threshold == 0
    assert client._request_retries == 2
    assert client._raise_last_call_error is True
    assert client._no_updates is True
    assert client._auto_reconnect is False
    assert isinstance(client.session, StoreSession)

    [init] = sender.init_requests
    assert (init.api_id, init.device_model, init.system_version, init.app_version) == (
        ts.API_ID, "Pixel 8", "Android 14", "10.1")
    assert (init.lang_code, init.system_lang_code) == ("de", "de-DE")
    assert isinstance(init.query, functions.help.GetConfigRequest)
    assert sender.layers == [alltlobjects.LAYER]
    # the handshake itself asks for no updates, and so does every request after it
    first = sender.sent[0]
    assert isinstance(first, functions.InvokeWithLayerRequest)
    assert isinstance(first.query, functions.InvokeWithoutUpdatesRequest)
    assert all(isinstance(raw, functions.InvokeWithoutUpdatesRequest) for raw in sender.sent[1:])
    sender.assert_done()


# -- get_me / resolve ------------------------------------------------------------------------------


async def test_get_me(one: Any) -> None:
    gw, account, sender = one
    sender.expect(functions.users.GetUsersRequest,
                  [ts.user(id=4242, phone="15551234567", first_name="Ann", last_name="Lee", username="ann")])
    me = await gw.get_me(account)
    assert me == Me(user_id=4242, phone="+15551234567", first_name="Ann", last_name="Lee", username="ann")
    [request] = sender.calls
    assert request.id == [types.InputUserSelf()]
    sender.assert_done()


async def test_get_me_without_phone(one: Any) -> None:
    gw, account, sender = one
    sender.expect(functions.users.GetUsersRequest, [ts.user(phone=None, first_name="", last_name="")])
    me = await gw.get_me(account)
    assert me.phone is None and me.first_name == "" and me.last_name == ""


@pytest.mark.parametrize("target", ["@News", "news", "https://t.me/news", "t.me/news/123", "https://telegram.me/NEWS/"])
async def test_resolve_username_once_and_cache_it(store: Store, gateways: GatewayFactory, target: str) -> None:
    account_id, _ = await add_account(store)
    account = AccountRef(account_id)
    gw = await gateways()
    sender = gw.sender(account_id)
    sender.expect(functions.contacts.ResolveUsernameRequest,
                  ts.resolved_channel(ts.channel(id=777000, access_hash=0x5EC2E7, username="News", title="News")))

    channel = await gw.resolve_channel(account, target)
    assert channel == Channel(777000, 0x5EC2E7, "News", "News")
    [request] = sender.calls
    assert request.username == "news"
    await gw.flush()
    assert await store.load_entities(account_id) == [(MARKED_CHANNEL_ID, 0x5EC2E7, "news", None, "News")]

    again = await gw.resolve_channel(account, "@NEWS")
    assert (again.peer_id, again.access_hash, again.title) == (777000, 0x5EC2E7, "News")
    assert len(sender.calls) == 1

    # a new gateway (a restarted daemon) on the same store: no client, no request at all
    gw2 = await gateways()
    assert await gw2.resolve_channel(account, target) == again
    assert gw2.clients == {} and gw2.sender(account_id).requests == []
    sender.assert_done()


async def test_entity_cache_is_per_account(store: Store, gateways: GatewayFactory) -> None:
    a, _ = await add_account(store, 1)
    b, _ = await add_account(store, 2)
    gw = await gateways()
    gw.sender(a).expect(functions.contacts.ResolveUsernameRequest, ts.resolved_channel(ts.channel(access_hash=1)))
    gw.sender(b).expect(functions.contacts.ResolveUsernameRequest, ts.resolved_channel(ts.channel(access_hash=2)))
    assert (await gw.resolve_channel(AccountRef(a), "@news")).access_hash == 1
    await gw.flush()
    assert (await gw.resolve_channel(AccountRef(b), "@news")).access_hash == 2  # its own hash, resolved
    gw.sender(a).assert_done()
    gw.sender(b).assert_done()


async def test_second_resolve_right_after_the_first_makes_no_request(one: Any) -> None:
    gw, account, sender = one
    sender.expect(functions.contacts.ResolveUsernameRequest, ts.resolved_channel(ts.channel()))
    sender.expect(functions.contacts.ResolveUsernameRequest, ts.resolved_channel(ts.channel()))  # if it does
    await gw.resolve_channel(account, "@news")
    await gw.resolve_channel(account, "@news")  # no flush in between: what concurrent tasks do
    sender.script.clear()
    assert len(sender.calls_of(functions.contacts.ResolveUsernameRequest)) == 1


async def test_resolve_invite_link_already_member(one: Any) -> None:
    gw, account, sender = one
    sender.expect(functions.messages.CheckChatInviteRequest,
                  ts.chat_invite_already(ts.channel(id=5150, access_hash=99, username=None, title="Secret")))
    channel = await gw.resolve_channel(account, "https://t.me/+AbCdEf123")
    assert channel == Channel(5150, 99, "Secret", None)
    [request] = sender.calls
    assert request.hash == "AbCdEf123"  # case kept: invite hashes are case-sensitive
    sender.assert_done()


async def test_resolve_invite_link_peek(one: Any) -> None:
    gw, account, sender = one
    chat = ts.channel(id=5151, access_hash=98, username=None, title="Peek")
    sender.expect(functions.messages.CheckChatInviteRequest, ts.make(types.ChatInvitePeek, chat=chat))
    assert await gw.resolve_channel(account, "https://t.me/joinchat/XyZ") == Channel(5151, 98, "Peek", None)


async def test_resolve_invite_link_not_member_is_private_and_never_joins(one: Any) -> None:
    gw, account, sender = one
    sender.expect(functions.messages.CheckChatInviteRequest, ts.chat_invite())
    with pytest.raises(errors.ChannelPrivateError) as info:
        await gw.resolve_channel(account, "https://t.me/+AbCdEf123")
    assert classify(info.value).kind is ErrorClass.TARGET
    assert [type(r) for r in sender.calls] == [functions.messages.CheckChatInviteRequest]  # no ImportChatInvite


async def test_resolve_invite_expired(one: Any) -> None:
    gw, account, sender = one
    sender.expect(functions.messages.CheckChatInviteRequest, ts.rpc_error(400, "INVITE_HASH_EXPIRED"))
    with pytest.raises(errors.InviteHashExpiredError) as info:
        await gw.resolve_channel(account, "https://t.me/+AbCdEf123")
    assert (classify(info.value).kind, classify(info.value).code) == (ErrorClass.TARGET, "INVITE_HASH_EXPIRED")


async def test_resolve_user_is_channel_invalid(one: Any, store: Store) -> None:
    gw, account, sender = one
    sender.expect(functions.contacts.ResolveUsernameRequest, ts.resolved_user(ts.user(id=55, username="bob",
                                                                                      is_self=False)))
    with pytest.raises(errors.ChannelInvalidError) as info:
        await gw.resolve_channel(account, "@bob")
    assert classify(info.value).kind is ErrorClass.TARGET
    await gw.flush()
    assert await store.load_entities(account.id) == []  # only channels are cached


async def test_resolve_unknown_username(one: Any) -> None:
    gw, account, sender = one
    sender.expect(functions.contacts.ResolveUsernameRequest, ts.rpc_error(400, "USERNAME_NOT_OCCUPIED"))
    with pytest.raises(errors.UsernameNotOccupiedError) as info:
        await gw.resolve_channel(account, "@nobody_here")
    assert classify(info.value).kind is ErrorClass.TARGET


async def test_resolve_invalid_target_makes_no_request(one: Any) -> None:
    gw, account, sender = one
    with pytest.raises(errors.UsernameInvalidError):
        await gw.resolve_channel(account, "not a username!")
    assert sender.requests == [] and gw.clients == {}


# -- posts and channels ----------------------------------------------------------------------------


async def test_last_post_ids_newest_first_skipping_service_messages(one: Any) -> None:
    gw, account, sender = one
    sender.expect(functions.messages.GetHistoryRequest, ts.channel_messages(
        [ts.message(12), ts.service_message(11), ts.message(10), ts.message_empty(9)], [ts.channel()]))
    assert await gw.last_post_ids(account, CHANNEL, 4) == [12, 10]
    [request] = sender.calls
    assert request.limit == 4
    assert request.peer == types.InputPeerChannel(CHANNEL.peer_id, CHANNEL.access_hash)
    assert (request.offset_id, request.add_offset, request.max_id, request.min_id) == (0, 0, 0, 0)


async def test_last_post_ids_empty_channel(one: Any) -> None:
    gw, account, sender = one
    sender.expect(functions.messages.GetHistoryRequest, ts.channel_messages([]))
    assert await gw.last_post_ids(account, CHANNEL, 5) == []


async def test_post_stats_reads_without_incrementing(one: Any) -> None:
    gw, account, sender = one
    sender.expect(functions.messages.GetMessagesViewsRequest, ts.message_views(1500, 12, 7))
    sender.expect(functions.channels.GetMessagesRequest, ts.channel_messages(
        [ts.message(5, reacts={"👍": 5, "❤": 2})], [ts.channel()]))

    stats = await gw.post_stats(account, CHANNEL, 5)
    assert stats == PostStats(post_id=5, views=1500, forwards=12, replies=7, reactions={"👍": 5, "❤": 2})
    views_request, messages_request = sender.calls
    assert views_request.increment is False
    assert views_request.id == [5]
    assert views_request.peer == types.InputPeerChannel(CHANNEL.peer_id, CHANNEL.access_hash)
    assert messages_request.channel == types.InputChannel(CHANNEL.peer_id, CHANNEL.access_hash)
    assert messages_request.id == [types.InputMessageID(5)]
    sender.assert_done()


async def test_post_stats_custom_and_paid_reactions_and_no_replies(one: Any) -> None:
    gw, account, sender = one
    post = ts.message(6)
    post.reactions = types.MessageReactions(results=[
        types.ReactionCount(reaction=types.ReactionEmoji(emoticon="👍"), count=3),
        types.ReactionCount(reaction=types.ReactionCustomEmoji(document_id=987), count=2),
        types.ReactionCount(reaction=types.ReactionPaid(), count=4),
    ])
    sender.expect(functions.messages.GetMessagesViewsRequest, ts.message_views(10, 0, None))
    sender.expect(functions.channels.GetMessagesRequest, ts.channel_messages([post]))
    stats = await gw.post_stats(account, CHANNEL, 6)
    assert stats == PostStats(6, 10, 0, 0, {"👍": 3, "custom:987": 2, "paid": 4})


async def test_post_stats_deleted_post_is_msg_id_invalid(one: Any) -> None:
    gw, account, sender = one
    sender.expect(functions.messages.GetMessagesViewsRequest, ts.message_views(0, 0, None))
    sender.expect(functions.channels.GetMessagesRequest, ts.channel_messages([ts.message_empty(5)]))
    with pytest.raises(errors.MsgIdInvalidError) as info:
        await gw.post_stats(account, CHANNEL, 5)
    assert (classify(info.value).kind, classify(info.value).code) == (ErrorClass.TARGET, "MSG_ID_INVALID")


async def test_channel_stats(one: Any) -> None:
    gw, account, sender = one
    sender.expect(functions.channels.GetFullChannelRequest,
                  ts.channel_full(ts.channel(title="News (renamed)"), participants_count=12345))
    stats = await gw.channel_stats(account, CHANNEL)
    assert stats == ChannelStats(peer_id=CHANNEL.peer_id, title="News (renamed)", subscribers=12345)
    [request] = sender.calls
    assert request.channel == types.InputChannel(CHANNEL.peer_id, CHANNEL.access_hash)


# -- errors ----------------------------------------------------------------------------------------


async def test_flood_wait_raises_at_once_without_sleeping(one: Any, telethon_sleeps: SleepRecorder) -> None:
    gw, account, sender = one
    sender.expect(functions.channels.GetFullChannelRequest, ts.rpc_error(420, "FLOOD_WAIT_30"))
    started = time.monotonic()
    with pytest.raises(errors.FloodWaitError) as info:
        await gw.channel_stats(account, CHANNEL)
    assert time.monotonic() - started < 1.0
    assert len(sender.calls) == 1 and telethon_sleeps.sleeps == []
    result = classify(info.value)
    assert (result.kind, result.code, result.seconds) == (ErrorClass.WAIT, "FLOOD_WAIT", 30)

    # Asked again at once, it never sleeps either. (Telethon's own memory of flood-waited requests is
    # keyed by the InvokeWithoutUpdatesRequest wrapper under receive_updates=False and does not fire in
    # 1.39-1.45: the request goes out again. Holding the account is the scheduler's job.)
    sender.expect(functions.channels.GetFullChannelRequest, ts.rpc_error(420, "FLOOD_WAIT_29"))
    with pytest.raises(errors.FloodWaitError) as again:
        await gw.channel_stats(account, CHANNEL)
    assert classify(again.value).kind is ErrorClass.WAIT
    assert len(sender.calls) in (1, 2) and telethon_sleeps.sleeps == []
    sender.script.clear()


async def test_flood_wait_with_retries_still_does_not_sleep(store: Store, gateways: GatewayFactory,
                                                            telethon_sleeps: SleepRecorder) -> None:
    account_id, _ = await add_account(store)
    gw = await gateways(request_retries=5)
    sender = gw.sender(account_id)
    sender.expect(functions.channels.GetFullChannelRequest, ts.rpc_error(420, "FLOOD_WAIT_1"))
    with pytest.raises(errors.FloodWaitError) as info:
        await gw.channel_stats(AccountRef(account_id), CHANNEL)
    assert classify(info.value).seconds == 1
    assert len(sender.calls) == 1 and telethon_sleeps.sleeps == []


@pytest.mark.parametrize(("code", "message", "exc_type", "kind", "canonical"), [
    (400, "PEER_FLOOD", errors.PeerFloodError, ErrorClass.SPAM_LIMITED, "PEER_FLOOD"),
    (401, "AUTH_KEY_UNREGISTERED", errors.AuthKeyUnregisteredError, ErrorClass.DEAD_ACCOUNT, "AUTH_KEY_UNREGISTERED"),
    (401, "SESSION_REVOKED", errors.SessionRevokedError, ErrorClass.DEAD_ACCOUNT, "SESSION_REVOKED"),
    (401, "USER_DEACTIVATED_BAN", errors.UserDeactivatedBanError, ErrorClass.DEAD_ACCOUNT, "USER_DEACTIVATED_BAN"),
    (400, "CHANNEL_PRIVATE", errors.ChannelPrivateError, ErrorClass.TARGET, "CHANNEL_PRIVATE"),
    (420, "FLOOD_PREMIUM_WAIT_7", errors.FloodPremiumWaitError, ErrorClass.WAIT, "FLOOD_PREMIUM_WAIT"),
])
async def test_rpc_errors_reach_the_caller_classified(one: Any, telethon_sleeps: SleepRecorder, code: int,
                                                       message: str, exc_type: type, kind: ErrorClass,
                                                       canonical: str) -> None:
    gw, account, sender = one
    sender.expect(functions.channels.GetFullChannelRequest, ts.rpc_error(code, message))
    with pytest.raises(exc_type) as info:
        await gw.channel_stats(account, CHANNEL)
    result = classify(info.value)
    assert (result.kind, result.code) == (kind, canonical)
    assert len(sender.calls) == 1 and telethon_sleeps.sleeps == []


async def test_dead_key_still_connects_and_the_call_raises(one: Any) -> None:
    """A revoked key: the handshake's get_me gets 401 (Telethon swallows it), the call raises it."""
    gw, account, sender = one
    sender.handshake[functions.users.GetUsersRequest] = ts.rpc_error(401, "AUTH_KEY_UNREGISTERED")
    sender.expect(functions.users.GetUsersRequest, ts.rpc_error(401, "AUTH_KEY_UNREGISTERED"))
    with pytest.raises(errors.AuthKeyUnregisteredError) as info:
        await gw.get_me(account)
    assert classify(info.value).kind is ErrorClass.DEAD_ACCOUNT
    assert not any(isinstance(r, functions.updates.GetStateRequest) for r in sender.requests)


async def test_rpc_call_fail_is_transient_after_telethons_own_retries(store: Store, gateways: GatewayFactory,
                                                                      telethon_sleeps: SleepRecorder) -> None:
    account_id, _ = await add_account(store)
    gw = await gateways(request_retries=1)
    sender = gw.sender(account_id)
    for _ in range(2):
        sender.expect(functions.channels.GetFullChannelRequest, ts.rpc_error(500, "RPC_CALL_FAIL"))
    with pytest.raises(errors.RpcCallFailError) as info:
        await gw.channel_stats(AccountRef(account_id), CHANNEL)
    result = classify(info.value)
    assert (result.kind, result.code) == (ErrorClass.TRANSIENT, "RPC_CALL_FAIL")
    # request_retries=1: two attempts, and Telethon pauses 2 s after each (real time bounded by the call timeout)
    assert len(sender.calls) == 2 and telethon_sleeps.sleeps == [2, 2]
    sender.assert_done()


async def test_server_error_then_success_is_retried_by_telethon(store: Store, gateways: GatewayFactory,
                                                                telethon_sleeps: SleepRecorder) -> None:
    account_id, _ = await add_account(store)
    gw = await gateways(request_retries=1)
    sender = gw.sender(account_id)
    sender.expect(functions.channels.GetFullChannelRequest, ts.rpc_error(500, "RPC_CALL_FAIL"))
    sender.expect(functions.channels.GetFullChannelRequest, ts.channel_full(ts.channel(), 9))
    assert (await gw.channel_stats(AccountRef(account_id), CHANNEL)).subscribers == 9


async def test_call_without_answer_times_out(store: Store, gateways: GatewayFactory) -> None:
    account_id, _ = await add_account(store)
    gw = await gateways(call_timeout_seconds=0.2)
    sender = gw.sender(account_id)
    sender.expect(functions.channels.GetFullChannelRequest, ts.NEVER)
    started = time.monotonic()
    with pytest.raises(TimeoutError) as info:
        await gw.channel_stats(AccountRef(account_id), CHANNEL)
    assert 0.15 < time.monotonic() - started < 1.0
    result = classify(info.value)
    assert (result.kind, result.code) == (ErrorClass.TRANSIENT, "TIMEOUT")
    assert len(sender.calls) == 1
    # the client stays usable
    sender.expect(functions.channels.GetFullChannelRequest, ts.channel_full(ts.channel(), 3))
    assert (await gw.channel_stats(AccountRef(account_id), CHANNEL)).subscribers == 3


async def test_network_failure_on_connect_is_transient(one: Any) -> None:
    gw, account, sender = one
    sender.connect_error = ConnectionRefusedError(111, "Connection refused")
    with pytest.raises(OSError) as info:
        await gw.get_me(account)
    assert (classify(info.value).kind, classify(info.value).code) == (ErrorClass.TRANSIENT, "NETWORK")
    assert sender.requests == []


async def test_account_without_session_is_dead_without_network(store: Store, gateways: GatewayFactory) -> None:
    account_id = await store.add_account(
        NewAccount(phone="+15559990000", tg_user_id=9, label="keyless", is_probe=False),
        SessionData(dc_id=2, server=ts.DC_IPS[2], port=443, auth_key=None), how="import")
    gw = await gateways()
    for account in (AccountRef(account_id), AccountRef(424242)):  # no key; no sessions row at all
        with pytest.raises(errors.AuthKeyUnregisteredError) as info:
            await gw.get_me(account)
        assert classify(info.value).kind is ErrorClass.DEAD_ACCOUNT
    assert gw.clients == {} and all(not s.requests for s in gw.all_senders)


async def test_unexpected_request_fails_loudly(one: Any) -> None:
    gw, account, sender = one
    with pytest.raises(ts.UnexpectedRequest, match="GetFullChannelRequest"):
        await gw.channel_stats(account, CHANNEL)
    assert len(sender.unexpected) == 1
    sender.unexpected.clear()  # handled: keep the teardown check quiet


# -- the session in the store ----------------------------------------------------------------------


def test_store_session_reports_changes_only() -> None:
    key = os.urandom(256)
    saved: list[SessionData] = []
    session = StoreSession(SessionData(2, ts.DC_IPS[2], 443, key), [], saved.append, lambda rows: None)
    assert session.auth_key.key == key and session.dc_id == 2 and session.server_address == ts.DC_IPS[2]

    session.auth_key = AuthKey(key)  # same bytes, other object
    session.save()
    assert saved == []

    session.set_dc(4, ts.DC_IPS[4], 443)
    session.save()
    assert saved == [SessionData(4, ts.DC_IPS[4], 443, key)]

    new = os.urandom(256)
    session.auth_key = AuthKey(new)
    session.save()
    session.save()
    assert saved[1:] == [SessionData(4, ts.DC_IPS[4], 443, new)]

    # USER_MIGRATE: Telethon moves to the new DC with no key, then makes one there. The store keeps
    # the old working pair until the new key exists, so a failed migration never looks like a dead account.
    session.set_dc(5, ts.DC_IPS[5], 443)
    session.auth_key = None
    session.save()
    assert saved[2:] == []
    session.auth_key = AuthKey(key)
    session.save()
    assert saved[2:] == [SessionData(5, ts.DC_IPS[5], 443, key)]


def test_store_session_repr_and_data_repr_hide_the_key() -> None:
    key = os.urandom(256)
    session = StoreSession(SessionData(2, ts.DC_IPS[2], 443, key), [], lambda d: None, lambda r: None)
    for text in (repr(session), str(session), repr(session.data()), str(session.data())):
        assert_no_key(text, key)
    assert "key=set" in repr(session)


def test_store_session_persists_new_channels_only() -> None:
    batches: list[list[Any]] = []
    known = (MARKED_CHANNEL_ID, 0x5EC2E7, "news", None, "News")
    session = StoreSession(None, [known], lambda d: None, batches.append)
    session.process_entities(ts.resolved_channel(ts.channel()))  # already known: nothing to write
    session.process_entities(types.contacts.ResolvedPeer(
        peer=types.PeerUser(5), chats=[ts.channel(id=888, access_hash=7, username="other", title="Other")],
        users=[ts.user(id=5, is_self=False)]))
    assert batches == [[(-1000000000888, 7, "other", None, "Other")]]


async def test_dc_migration_saves_the_new_dc_and_key(store: Store, gateways: GatewayFactory) -> None:
    account_id, old_key = await add_account(store)
    gw = await gateways(request_retries=1)
    sender = gw.sender(account_id)
    new_key = os.urandom(256)
    sender.new_auth_key = new_key
    sender.expect(functions.channels.GetFullChannelRequest, ts.rpc_error(303, "USER_MIGRATE_4"))
    sender.expect(functions.help.GetConfigRequest, ts.tl_config())
    sender.expect(functions.channels.GetFullChannelRequest, ts.channel_full(ts.channel(), 5))

    assert (await gw.channel_stats(AccountRef(account_id), CHANNEL)).subscribers == 5
    await gw.flush()
    assert await store.load_session(account_id) == SessionData(4, ts.DC_IPS[4], 443, new_key)
    assert new_key != old_key
    assert sender.connects == 2 and len(sender.init_requests) == 2
    [client] = gw.clients[account_id]
    assert client.session.data() == SessionData(4, ts.DC_IPS[4], 443, new_key)
    sender.assert_done()


async def test_connect_with_unchanged_session_writes_nothing(store: Store, gateways: GatewayFactory) -> None:
    account_id, key = await add_account(store)
    before = await store.load_session(account_id)
    gw = await gateways()
    sender = gw.sender(account_id)
    sender.expect(functions.users.GetUsersRequest, [sender.me])
    await gw.get_me(AccountRef(account_id))
    await gw.flush()
    assert await store.load_session(account_id) == before == SessionData(2, ts.DC_IPS[2], 443, key)
    [client] = gw.clients[account_id]
    assert client.session.auth_key.key == key and sender.auth_key.key == key


def assert_no_key(text: str, key: bytes) -> None:
    for needle in (key.hex()[:32], key.hex().upper()[:32], repr(key)[2:42], base64.b64encode(key)[:24].decode(),
                   base64.urlsafe_b64encode(key)[:24].decode()):
        assert needle not in text, f"auth key material in: {text[:200]}"


async def _connect_migrate_and_fail(store: Store, gateways: GatewayFactory) -> tuple[list[str], list[bytes]]:
    """Connect, get_me, a DC migration (new key saved), a 401, forget: the texts that could leak a key."""
    account_id, old_key = await add_account(store)
    gw = await gateways(request_retries=1)
    sender = gw.sender(account_id)
    new_key = os.urandom(256)
    sender.new_auth_key = new_key
    sender.expect(functions.users.GetUsersRequest, [sender.me])
    sender.expect(functions.channels.GetFullChannelRequest, ts.rpc_error(303, "USER_MIGRATE_4"))
    sender.expect(functions.help.GetConfigRequest, ts.tl_config())
    sender.expect(functions.channels.GetFullChannelRequest, ts.rpc_error(401, "AUTH_KEY_UNREGISTERED"))

    await gw.get_me(AccountRef(account_id))
    with pytest.raises(errors.AuthKeyUnregisteredError) as info:
        await gw.channel_stats(AccountRef(account_id), CHANNEL)
    await gw.pool.forget(account_id)
    await gw.flush()
    assert (await store.load_session(account_id)).auth_key == new_key

    [client] = gw.clients[account_id]
    texts = [str(info.value), repr(info.value), classify(info.value).message, repr(client.session),
             repr(client.session.data()), repr(await store.load_session(account_id))]
    return texts, [old_key, new_key]


def _records_text(records: list[logging.LogRecord]) -> list[str]:
    out = []
    for record in records:
        out.append(record.getMessage())
        out.append(repr(record.args))
        if record.exc_info:
            out.append(logging.Formatter().formatException(record.exc_info))
    return out


async def test_auth_keys_never_logged_by_telethon_or_tgdaemon_nor_in_errors(
        store: Store, gateways: GatewayFactory, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    texts, keys = await _connect_migrate_and_fail(store, gateways)
    ours = [r for r in caplog.records if r.name.split(".")[0] in ("telethon", "tgdaemon")]
    assert any(r.name.startswith("telethon") for r in ours) and any(r.name.startswith("tgdaemon") for r in ours)
    for key in keys:
        for text in texts + _records_text(ours):
            assert_no_key(text, key)


async def test_auth_keys_never_in_any_log_output(store: Store, gateways: GatewayFactory,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    _, keys = await _connect_migrate_and_fail(store, gateways)
    everything = [caplog.text] + _records_text(caplog.records)
    for key in keys:
        for text in everything:
            assert_no_key(text, key)


async def test_telethons_background_loops_idle_quietly(one: Any) -> None:
    """The update and keepalive loops connect() starts neither fail nor poll the scripted sender."""
    gw, account, sender = one
    sender.expect(functions.users.GetUsersRequest, [sender.me])
    await gw.get_me(account)
    [client] = gw.clients[account.id]
    loops = [client._updates_handle, client._keepalive_handle]
    before = len(sender.requests)
    await asyncio.sleep(0.1)
    assert len(sender.requests) == before
    assert all(not task.done() for task in loops)
    await gw.pool.forget(account.id)
    assert all(task.done() for task in loops)
    assert all(task.cancelled() or task.exception() is None for task in loops)


# -- check_session (import): a throwaway client, let go at once ------------------------------------


async def test_check_session_returns_me_and_lets_the_client_go(store: Store, gateways: GatewayFactory) -> None:
    gw = await gateways()
    key = os.urandom(256)
    sender = gw.sender(None)  # type: ignore[arg-type]  # no account yet
    sender.expect(functions.users.GetUsersRequest, [ts.user(id=77, phone="15557654321")])
    me = await gw.check_session(SessionData(2, ts.DC_IPS[2], 443, key))
    assert (me.user_id, me.phone) == (77, "+15557654321")
    assert sender.auth_key.key == key and sender.connects == 1 and not sender.is_connected()
    assert gw.pool.connected() == 0 and gw._writes == set()
    sender.assert_done()


async def test_check_session_dead_key(store: Store, gateways: GatewayFactory) -> None:
    gw = await gateways()
    sender = gw.sender(None)  # type: ignore[arg-type]
    sender.handshake[functions.users.GetUsersRequest] = ts.rpc_error(401, "AUTH_KEY_UNREGISTERED")
    sender.expect(functions.users.GetUsersRequest, ts.rpc_error(401, "AUTH_KEY_UNREGISTERED"))
    with pytest.raises(errors.AuthKeyUnregisteredError):
        await gw.check_session(SessionData(2, ts.DC_IPS[2], 443, os.urandom(256)))
    assert not sender.is_connected()


async def test_check_session_times_out_and_disconnects(store: Store, gateways: GatewayFactory) -> None:
    gw = await gateways(call_timeout_seconds=0.2)
    sender = gw.sender(None)  # type: ignore[arg-type]
    sender.expect(functions.users.GetUsersRequest, ts.NEVER)
    with pytest.raises(TimeoutError):
        await gw.check_session(SessionData(2, ts.DC_IPS[2], 443, os.urandom(256)))
    assert not sender.is_connected() and sender.disconnects == 1
