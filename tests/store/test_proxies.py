"""Proxies on both drivers (issue 14): added with their secret apart, shown only as scheme://host:port, given to
accounts in one transaction, removed only when unused (or forced), and a dead proxy's accounts held in the one
cooldown (reason ``proxy``) until a check finds it answering again."""

from __future__ import annotations

import json
import os
import time

import pytest

from store import backdoor
from store.test_accounts import FAR, seed
from tgdaemon.errors import Conflict, NotFound
from tgdaemon.store import (
    AccountEffect,
    NewAccount,
    NewProxy,
    ProxyCheck,
    ProxyChecked,
    ProxyTarget,
    SessionData,
    Store,
    Tx,
)

PASSWORD = "s3cret-Pa55word"
MT_SECRET = "dd" + "0123456789abcdef" * 2


async def two_proxies(store: Store) -> tuple[int, int]:
    socks = await store.add_proxy(NewProxy("socks5", "203.0.113.7", 1080, "alice", PASSWORD, "frankfurt"))
    mt = await store.add_proxy(NewProxy("mtproxy", "2001:db8::5", 443, "", MT_SECRET))
    return socks["id"], mt["id"]


def no_secret_in(*things: object) -> None:
    text = json.dumps(things, default=str)
    assert PASSWORD not in text and MT_SECRET not in text and "0123456789abcdef" not in text


async def test_a_proxy_is_shown_without_its_secret_which_is_kept_apart(store: Store) -> None:
    socks, mt = await two_proxies(store)
    listed = await store.list_proxies()
    assert [(p["id"], p["url"], p["label"], p["state"], p["accounts"], p["held"]) for p in listed] == [
        (socks, "socks5://203.0.113.7:1080", "frankfurt", "unchecked", 0, 0),
        (mt, "mtproxy://[2001:db8::5]:443", "", "unchecked", 0, 0)]
    assert listed[0]["latency_ms"] is None and listed[0]["checked_at"] is None and listed[0]["created_at"]
    assert await store.get_proxy(socks) == listed[0]
    assert [r["secret"] for r in await backdoor.rows(store, "proxy_secrets", order="proxy_id")] == [PASSWORD, MT_SECRET]
    assert [r["username"] for r in await backdoor.rows(store, "proxies")] == ["alice", ""]
    no_secret_in(listed, await store.recent_events())
    assert [e["kind"] for e in await store.recent_events()] == ["proxy.added", "proxy.added"]
    with pytest.raises(NotFound, match="proxy 99"):
        await store.get_proxy(99)


async def test_the_same_proxy_twice_is_refused_but_another_user_on_it_is_another_proxy(store: Store) -> None:
    socks, _ = await two_proxies(store)
    with pytest.raises(Conflict, match=f"already proxy {socks} .socks5://203.0.113.7:1080., labelled 'frankfurt'"):
        await store.add_proxy(NewProxy("socks5", "203.0.113.7", 1080, "alice", "other"))
    other = await store.add_proxy(NewProxy("socks5", "203.0.113.7", 1080, "bob", "pw-bob"))
    assert other["url"] == "socks5://203.0.113.7:1080" and other["id"] not in (socks,)
    assert len(await store.list_proxies()) == 3


async def test_targets_carry_the_secret_for_the_checker_only(store: Store) -> None:
    socks, mt = await two_proxies(store)
    plain = (await store.add_proxy(NewProxy("http", "proxy.example", 3128)))["id"]
    assert await store.proxy_targets() == [
        ProxyTarget(socks, "socks5", "203.0.113.7", 1080, "alice", PASSWORD, "unchecked"),
        ProxyTarget(mt, "mtproxy", "2001:db8::5", 443, "", MT_SECRET, "unchecked"),
        ProxyTarget(plain, "http", "proxy.example", 3128, "", "", "unchecked")]
    assert [t.id for t in await store.proxy_targets([plain, socks])] == [socks, plain]
    with pytest.raises(NotFound, match="proxy 77"):
        await store.proxy_targets([socks, 77])
    assert PASSWORD not in repr(await store.proxy_targets())  # the secret stays out of reprs (and tracebacks)


async def test_accounts_get_their_own_proxy_in_one_transaction(store: Store) -> None:
    await seed(store, 4, probes=False)
    socks, mt = await two_proxies(store)
    published: list[set[int]] = []

    async def hook(tx: Tx) -> None:
        published.append(set(tx.accounts))

    store.on_commit = hook
    assert await store.set_account_proxy([1, 2, 2], socks) == [1, 2]
    assert await store.set_account_proxy([2, 3], socks) == [3]  # 2 had it already
    assert await store.set_account_proxy([3], mt) == [3]
    assert published == [{1, 2}, {3}, {3}]  # every changed account reaches the stream
    accounts = (await store.list_accounts(limit=10))[0]
    assert [(a["proxy_id"], a["proxy"]) for a in accounts] == [
        (socks, "socks5://203.0.113.7:1080"), (socks, "socks5://203.0.113.7:1080"), (mt, "mtproxy://[2001:db8::5]:443"),
        (None, None)]
    made = [json.loads(raw) for raw in (await store.list_accounts_json(limit=10))[0]]
    assert made == accounts  # the listing's SQL shows a proxy (an IPv6 one too) as the views do
    assert [p["accounts"] for p in await store.list_proxies()] == [2, 1]
    params = await store.client_params(1)
    assert params.proxy == ProxyTarget(socks, "socks5", "203.0.113.7", 1080, "alice", PASSWORD, "unchecked")
    trail = await store.recent_events(account_id=3)
    assert [e["message"] for e in trail] == [f"proxy: proxy {mt} (mtproxy://[2001:db8::5]:443) (was: proxy {socks})",
                                            f"proxy: proxy {socks} (socks5://203.0.113.7:1080) (was: none)"]
    no_secret_in(accounts, made, trail)

    assert await store.set_account_proxy([1, 4], None) == [1]
    assert (await store.get_account(1))["proxy"] is None and (await store.client_params(1)).proxy is None


async def test_set_proxy_refuses_unknown_accounts_or_proxies_and_changes_nothing(store: Store) -> None:
    await seed(store, 2, probes=False)
    socks, _ = await two_proxies(store)
    with pytest.raises(NotFound, match="accounts 5, 9: no such accounts; nothing changed"):
        await store.set_account_proxy([1, 5, 9], socks)
    with pytest.raises(NotFound, match="proxy 42: no such proxy"):
        await store.set_account_proxy([1], 42)
    assert [a["proxy_id"] for a in (await store.list_accounts())[0]] == [None, None]


async def test_a_proxy_in_use_is_removed_only_by_force_which_leaves_its_accounts_with_none(store: Store) -> None:
    await seed(store, 3, probes=False)
    socks, mt = await two_proxies(store)
    await store.set_account_proxy([1, 2], socks)
    with pytest.raises(Conflict, match=f"proxy {socks} .* is used by 2 accounts .1, 2.: .*--force"):
        await store.remove_proxy(socks)
    assert len(await store.list_proxies()) == 2
    removed, users = await store.remove_proxy(mt)  # unused: removed at once
    assert (removed["id"], users) == (mt, [])
    async with store.tx() as tx:  # account 2 waits for its proxy, account 3 for a flood wait
        await store.apply_account_effect(tx, 2, AccountEffect(cooldown_until=time.time() + FAR, cooldown_reason="proxy"))
        await store.apply_account_effect(tx, 3, AccountEffect(cooldown_until=time.time() + FAR,
                                                              cooldown_reason="FLOOD_WAIT"))
    removed, users = await store.remove_proxy(socks, force=True)
    assert (removed["url"], users) == ("socks5://203.0.113.7:1080", [1, 2])
    assert await store.list_proxies() == [] and await backdoor.rows(store, "proxy_secrets", order="proxy_id") == []
    accounts = (await store.list_accounts())[0]
    assert [(a["proxy_id"], a["state"], a["cooldown_reason"]) for a in accounts] == [
        (None, "ready", None), (None, "ready", None), (None, "cooldown", "FLOOD_WAIT")]
    kinds = [e["kind"] for e in await store.recent_events()]
    assert kinds[:3] == ["proxy.removed", "account.proxy", "account.proxy"]
    with pytest.raises(NotFound):
        await store.remove_proxy(socks)


async def test_a_dead_proxy_holds_its_accounts_until_a_check_finds_it_answering(store: Store) -> None:
    await seed(store, 5, probes=False)
    socks, mt = await two_proxies(store)
    await store.set_account_proxy([1, 2, 3, 4], socks)
    await store.set_account_proxy([5], mt)
    await store.disable_account(4, "operator")
    at = time.time()
    async with store.tx() as tx:  # a longer cooldown of its own stands
        await store.apply_account_effect(tx, 3, AccountEffect(cooldown_until=at + FAR, cooldown_reason="PEER_FLOOD"))
    published: list[set[int]] = []

    async def hook(tx: Tx) -> None:
        published.append(set(tx.accounts))

    store.on_commit = hook
    dead = ProxyCheck("dead", None, "connection refused", at)
    assert await store.record_proxy_check(socks, dead, hold_until=at + 600) == ProxyChecked("unchecked", 2, 0)
    accounts = {a["id"]: a for a in (await store.list_accounts())[0]}
    assert [(accounts[i]["state"], accounts[i]["cooldown_reason"]) for i in (1, 2, 3, 4, 5)] == [
        ("cooldown", "proxy"), ("cooldown", "proxy"), ("cooldown", "PEER_FLOOD"), ("disabled", None), ("ready", None)]
    assert await store.cooldowns_by_reason() == [("PEER_FLOOD", 1), ("proxy", 2)]
    proxy = await store.get_proxy(socks)
    assert (proxy["state"], proxy["last_error"], proxy["held"]) == ("dead", "connection refused", 2)
    events = await store.recent_events()
    assert [e["kind"] for e in events[:3]] == ["account.cooldown", "account.cooldown", "proxy.state"]  # newest first
    state_event = next(e for e in events if e["kind"] == "proxy.state")
    assert state_event["message"] == (f"proxy {socks} (socks5://203.0.113.7:1080) dead: connection refused"
                                      " (was unchecked); 2 accounts wait for it")

    before = len(await store.recent_events(limit=1000))
    again = ProxyCheck("dead", None, "connection refused", at + 300)
    assert await store.record_proxy_check(socks, again, hold_until=at + 900) == ProxyChecked("dead", 2, 0)
    assert len(await store.recent_events(limit=1000)) == before  # the same finding: no new audit rows...
    assert published[-1] == {1, 2}  # ...but the held accounts' new cooldown end reaches the stream
    until = [r["cooldown_until"] for r in await backdoor.rows(store, "accounts") if r["id"] in (1, 2)]
    assert until == [at + 900, at + 900]

    ok = ProxyCheck("ok", 42.5, None, at + 600)
    assert await store.record_proxy_check(socks, ok, hold_until=at + 900) == ProxyChecked("dead", 0, 2)
    accounts = {a["id"]: a for a in (await store.list_accounts())[0]}
    assert [accounts[i]["state"] for i in (1, 2, 3)] == ["ready", "ready", "cooldown"]  # PEER_FLOOD stays
    proxy = await store.get_proxy(socks)
    assert (proxy["state"], proxy["latency_ms"], proxy["last_error"], proxy["held"]) == ("ok", 42.5, None, 0)
    resumed = [e for e in await store.recent_events() if e["kind"] == "account.resumed"]
    assert sorted(e["account_id"] for e in resumed) == [1, 2]
    assert await store.record_proxy_check(socks, ok, hold_until=at + 900) == ProxyChecked("ok", 0, 0)
    with pytest.raises(NotFound):
        await store.record_proxy_check(99, ok, hold_until=at)


async def test_an_account_signs_in_through_its_proxy_from_the_start(store: Store) -> None:
    socks, _ = await two_proxies(store)
    session = SessionData(2, "149.154.167.51", 443, os.urandom(256))
    account_id = await store.add_account(NewAccount("+15550001111", 777, "new", False, proxy_id=socks), session,
                                         how="login")
    assert (await store.get_account(account_id))["proxy_id"] == socks
    with pytest.raises(NotFound, match="proxy 55"):
        await store.add_account(NewAccount("+15550002222", 778, "other", False, proxy_id=55),
                                SessionData(2, "149.154.167.51", 443, os.urandom(256)), how="login")
    assert await store.count_accounts() == 1
