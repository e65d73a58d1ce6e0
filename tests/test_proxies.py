"""Proxy URLs, and the health checker against real proxies on 127.0.0.1 (tests/proxyserver.py): its
connections really go through each proxy, with its credentials, to the configured target; a stopped proxy,
a wrong password or an unreachable target is dead, with a last_error that never holds the secret; the
accounts behind a dead proxy wait in a 'proxy' cooldown and resume when it answers again; and no more than
``check_concurrency`` checks run at once."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from proxyserver import HttpConnectServer, Relayed, Servers, Socks5Server, TcpTarget

from tgdaemon.config import Config, ProxiesConfig, load
from tgdaemon.errors import ConfigError
from tgdaemon.logredact import REDACTOR
from tgdaemon.proxies.checker import ProxyChecker
from tgdaemon.proxies.url import ParsedProxy, ProxyURLError, parse
from tgdaemon.store import NewAccount, NewProxy, SessionData, Store
from tgdaemon.store.sqlite import SQLiteStore

PASSWORD = "Zq9-socks-Secret"
HTTP_PASSWORD = "Hx7-http-Secret"
WRONG = "Wr0ng-Guess-77"


# --- URLs -------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("url", "parsed"), [
    ("socks5://alice:p%40ss%3Aw@Proxy.Example:1080", ParsedProxy("socks5", "proxy.example", 1080, "alice", "p@ss:w")),
    ("socks5://203.0.113.7:1080", ParsedProxy("socks5", "203.0.113.7", 1080)),
    ("socks4://user7@203.0.113.7:1080", ParsedProxy("socks4", "203.0.113.7", 1080, "user7")),
    ("http://bob:pw@[2001:DB8::1]:3128", ParsedProxy("http", "2001:db8::1", 3128, "bob", "pw")),
    ("HTTP://h.example:8080/", ParsedProxy("http", "h.example", 8080)),
    ("mtproxy://mt.example:443?secret=" + "AB" * 16, ParsedProxy("mtproxy", "mt.example", 443, "", "ab" * 16)),
    ("mtproxy://mt.example:443?secret=dd" + "ab" * 16, ParsedProxy("mtproxy", "mt.example", 443, "", "dd" + "ab" * 16)),
])
def test_a_proxy_url_is_its_parts_with_the_secret_apart(url: str, parsed: ParsedProxy) -> None:
    got = parse(url)
    assert got == parsed and got.secret == parsed.secret
    assert got.shown == {"2001:db8::1": "http://[2001:db8::1]:3128"}.get(got.host, f"{got.scheme}://{got.host}:{got.port}")
    assert parsed.secret == "" or parsed.secret not in repr(got)


@pytest.mark.parametrize(("url", "problem"), [
    ("", "empty"),
    ("ftp://h.example:21", "unknown scheme 'ftp'"),
    ("socks5://h.example", "no port"),
    ("socks5://alice:Pw0rd-secret", "the port is not a number"),  # a forgotten @host: the password is no port
    ("socks5://alice:Pw0rd#secret@h.example:1080", "percent-encode it as %23"),
    ("socks5://alice:Pw0/rd-secret@h.example:1080", "percent-encode"),
    ("socks5://:Pw0rd-secret@h.example:1080", "a password without a user name"),
    ("socks4://alice:Pw0rd-secret@h.example:1080", "SOCKS4 has a user id but no password"),
    ("socks5://h.example:1080?x=1", "for mtproxy:// only"),
    ("http://h.example:3128/path", "a path after the port"),
    ("socks5://2001:db8::1:1080", "in brackets"),
    ("socks5://[2001:db8::1:1080", "not closed"),
    ("socks5://h_x.example:1080", "not a host name"),
    ("mtproxy://mt.example:443", "needs its secret"),
    ("mtproxy://mt.example:443?secret=xyz", "not hexadecimal"),
    ("mtproxy://mt.example:443?secret=abcd", "32 hex digits"),
    ("mtproxy://mt.example:443?secret=ee" + "ab" * 16 + "676f6f676c652e636f6d", "fake-TLS"),
    ("mtproxy://u:Pw0rd-secret@mt.example:443?secret=" + "ab" * 16, "no user or password"),
    ("socks5://alice:Pw0rd secret@h.example:1080", "spaces"),
])
def test_a_bad_proxy_url_is_one_line_that_never_quotes_the_url(url: str, problem: str) -> None:
    with pytest.raises(ProxyURLError) as caught:
        parse(url)
    message = str(caught.value)
    assert problem in message and "\n" not in message
    assert "Pw0rd" not in message and "ab" * 16 not in message


# --- the checker against real proxies ---------------------------------------------------------------------------

@pytest.fixture
def servers() -> Iterator[Servers]:
    with Servers() as running:
        yield running


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    opened = await SQLiteStore.open(tmp_path / "data" / "tgfleet.sqlite3")
    try:
        yield opened
    finally:
        await opened.close()


def config(target: TcpTarget, **overrides: object) -> ProxiesConfig:
    values: dict[str, object] = {"check_target": f"127.0.0.1:{target.port}", "timeout_seconds": 5.0, **overrides}
    return ProxiesConfig(**values)  # type: ignore[arg-type]


async def add(store: Store, url: str, label: str = "") -> int:
    p = parse(url)
    return (await store.add_proxy(NewProxy(p.scheme, p.host, p.port, p.username, p.secret, label)))["id"]


async def test_a_check_goes_through_each_proxy_with_its_credentials_to_the_target(servers: Servers,
                                                                                   store: Store) -> None:
    target = servers.add(TcpTarget())
    socks = servers.add(Socks5Server("alice", PASSWORD))
    http = servers.add(HttpConnectServer("bob", HTTP_PASSWORD))
    mt_host = servers.add(TcpTarget())  # an MTProxy is checked by a TCP connect to itself
    socks_id = await add(store, f"socks5://alice:{PASSWORD}@127.0.0.1:{socks.port}")
    http_id = await add(store, f"http://bob:{HTTP_PASSWORD}@127.0.0.1:{http.port}")
    mt_id = await add(store, f"mtproxy://127.0.0.1:{mt_host.port}?secret={'cd' * 16}")
    checked = await ProxyChecker(config(target), store).check()
    assert [(c.proxy_id, c.check.state) for c in checked] == [(socks_id, "ok"), (http_id, "ok"), (mt_id, "ok")]
    assert all(c.check.latency_ms is not None and c.check.error is None for c in checked)
    assert socks.relayed == [Relayed("alice", "127.0.0.1", target.port)]
    assert http.relayed == [Relayed("bob", "127.0.0.1", target.port)]
    assert (socks.refused, http.refused, mt_host.accepted) == ([], [], 1)
    assert target.accepted == 2  # the two CONNECTs reached the target; nothing went to it directly
    listed = {p["id"]: p for p in await store.list_proxies()}
    assert [listed[i]["state"] for i in (socks_id, http_id, mt_id)] == ["ok", "ok", "ok"]
    assert listed[socks_id]["checked_at"] is not None and listed[socks_id]["latency_ms"] is not None
    slow = await ProxyChecker(config(target, slow_ms=1e-9), store).check([http_id])  # any latency is over that
    assert [c.check.state for c in slow] == ["slow"]


async def test_a_wrong_password_is_dead_and_its_error_never_holds_the_password(servers: Servers, store: Store) -> None:
    target = servers.add(TcpTarget())
    socks = servers.add(Socks5Server("alice", PASSWORD))
    http = servers.add(HttpConnectServer("bob", HTTP_PASSWORD))
    bad_socks = await add(store, f"socks5://alice:{WRONG}@127.0.0.1:{socks.port}")
    bad_http = await add(store, f"http://bob:{WRONG}@127.0.0.1:{http.port}")
    checked = {c.proxy_id: c.check for c in await ProxyChecker(config(target), store).check()}
    assert checked[bad_socks].state == checked[bad_http].state == "dead"
    assert "authentication failure" in (checked[bad_socks].error or "")
    assert "407" in (checked[bad_http].error or "")
    assert (socks.relayed, http.relayed, target.accepted) == ([], [], 0)
    assert socks.refused == ["wrong credentials for 'alice'"] and http.refused == ["wrong or no Proxy-Authorization"]
    for proxy in await store.list_proxies():
        assert proxy["state"] == "dead" and WRONG not in str(proxy)
    assert all(WRONG not in e["message"] + str(e["data"]) for e in await store.recent_events(limit=100))
    assert REDACTOR.redact(f"a library's line quoting {WRONG}") == "a library's line quoting [redacted]"


async def test_a_stopped_proxy_or_an_unreachable_target_is_dead(servers: Servers, store: Store) -> None:
    target = servers.add(TcpTarget())
    socks = servers.add(Socks5Server("alice", PASSWORD))
    proxy_id = await add(store, f"socks5://alice:{PASSWORD}@127.0.0.1:{socks.port}")
    servers.stop(target)  # the proxy answers, but cannot reach Telegram (the target)
    [found] = await ProxyChecker(config(target), store).check()
    assert found.check.state == "dead" and socks.refused == [f"cannot reach 127.0.0.1:{target.port}"]
    servers.stop(socks)
    [found] = await ProxyChecker(config(target), store).check()
    assert found.check.state == "dead" and "cannot connect" in (found.check.error or "")
    assert (await store.get_proxy(proxy_id))["last_error"] == found.check.error


async def test_the_accounts_of_a_dead_proxy_wait_for_it_and_resume_when_it_is_back(servers: Servers,
                                                                                     store: Store) -> None:
    target = servers.add(TcpTarget())
    socks = servers.add(Socks5Server("alice", PASSWORD))
    http = servers.add(HttpConnectServer("bob", HTTP_PASSWORD))
    socks_id = await add(store, f"socks5://alice:{PASSWORD}@127.0.0.1:{socks.port}")
    http_id = await add(store, f"http://bob:{HTTP_PASSWORD}@127.0.0.1:{http.port}")
    ids = [await store.add_account(NewAccount(f"+1555000000{n}", 900 + n, f"acc-{n}", False, proxy_id=proxy),
                                   SessionData(2, "149.154.167.51", 443, os.urandom(256)), how="import")
           for n, proxy in enumerate((socks_id, socks_id, http_id))]
    checker = ProxyChecker(config(target, check_interval_seconds=60, timeout_seconds=5), store)
    await checker.check()
    assert {a["id"]: a["state"] for a in (await store.list_accounts())[0]} == dict.fromkeys(ids, "ready")

    servers.stop(socks)
    before = time.time()
    await checker.check()
    accounts = {a["id"]: a for a in (await store.list_accounts())[0]}
    assert [(accounts[i]["state"], accounts[i]["cooldown_reason"]) for i in ids] == [
        ("cooldown", "proxy"), ("cooldown", "proxy"), ("ready", None)]  # the other proxy's account goes on
    assert await store.cooldowns_by_reason() == [("proxy", 2)]
    assert (await store.get_proxy(socks_id))["held"] == 2
    # held until the next check can speak: the interval and twice the timeout
    assert all(before + 60 + 10 - 1 <= r["cooldown_until"] for r in await backdoor_accounts(store, ids[:2]))
    assert (await store.client_params(ids[0])).proxy.state == "dead"  # what the gateway refuses to connect through

    servers.start(socks)  # the same port again
    await checker.check()
    accounts = {a["id"]: a for a in (await store.list_accounts())[0]}
    assert [accounts[i]["state"] for i in ids] == ["ready", "ready", "ready"]
    assert socks.relayed[-1] == Relayed("alice", "127.0.0.1", target.port)
    kinds = [e["kind"] for e in await store.recent_events(limit=50)]
    assert kinds.count("account.resumed") == 2 and kinds.count("proxy.state") == 4  # unchecked→ok ×2, →dead, →ok


async def backdoor_accounts(store: Store, ids: list[int]) -> list[dict[str, float]]:
    rows = await store.read("SELECT id, cooldown_until FROM accounts ORDER BY id")  # type: ignore[attr-defined]
    return [dict(r) for r in rows if r["id"] in ids]


async def test_no_more_than_check_concurrency_checks_run_at_once(servers: Servers, store: Store) -> None:
    target = servers.add(TcpTarget())
    socks = servers.add(Socks5Server("alice", PASSWORD))
    for n in range(5):  # five proxies, one server: each user name is a proxy of its own
        await add(store, f"socks5://alice:{PASSWORD}@127.0.0.1:{socks.port}".replace("alice", f"alice{n}" if n else
                                                                                       "alice"))
    servers.gate(socks)
    checking = asyncio.ensure_future(ProxyChecker(config(target, check_concurrency=2), store).check())
    for _ in range(5):  # let two in, wait for them to be let through, one release at a time
        for _ in range(200):
            if socks.waiting >= 1 or checking.done():
                break
            await asyncio.sleep(0.01)
        servers.release(socks)
    checked = await asyncio.wait_for(checking, 30)
    assert len(checked) == 5 and socks.most_waiting <= 2
    assert [c.check.state for c in checked] == ["ok"] + ["dead"] * 4  # only alice's password is right
    assert len(socks.relayed) == 1 and len(socks.refused) == 4


# --- the config ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("key", "value", "problem"), [
    ("check_target", '"149.154.167.51"', "proxies: check_target: expected HOST:PORT, got '149.154.167.51'"),
    ("check_concurrency", "0", "proxies.check_concurrency: expected `int` >= 1"),
    ("check_interval_seconds", "1", "proxies.check_interval_seconds: expected `float` >= 10.0"),
    ("timeout_seconds", "0", "proxies.timeout_seconds: expected `float` > 0.0"),
    ("slow", "1", "proxies.slow: unknown key"),
])
def test_a_bad_proxies_key_is_one_line_naming_it(tmp_path: Path, key: str, value: str, problem: str) -> None:
    path = tmp_path / "c.toml"
    path.write_text(f"[proxies]\n{key} = {value}\n")
    with pytest.raises(ConfigError) as caught:
        load(path, env={})
    assert str(caught.value) == f"config {path}: {problem}"


def test_the_hold_lasts_until_the_next_check_can_speak() -> None:
    cfg = Config()
    assert cfg.proxies.hold_seconds() == 300 + 2 * 10 and cfg.proxies.target() == ("149.154.167.51", 443)
    assert ProxiesConfig(check_target="[2001:db8::1]:443").target() == ("2001:db8::1", 443)
