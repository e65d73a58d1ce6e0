"""``accounts login --proxy`` and ``accounts import --proxy``: an account's very first connection (the
login, the check of a session about to be imported) already goes through its own proxy, which it keeps.

On the real daemon with the real Telethon gateway, whose clients talk to a scripted Telegram
(tests/test_onboarding.py's harness), and the real CLI. The proxy a client dials is the one in the Telethon
``Connection`` object its connect was given: the scripted responder opens no socket
(tests/test_proxy_routing.py has the real connections through real proxies).
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import tgscript as ts
from telethon.tl import functions
from test_onboarding import (  # noqa: F401  (tg_factory: a fixture)
    Tg,
    assert_no_secret,
    authorization,
    code_try,
    one_error,
    sent_code,
    signed_in,
    string_session,
    tg_factory,
    user_for,
)

from tgdaemon.store import NewProxy, ProxyCheck

PASSWORD = "On8-proxy-Secret"


@pytest.fixture
async def tg(tg_factory: Callable[..., Any]) -> AsyncIterator[Tg]:  # noqa: F811
    async with tg_factory() as daemon:
        yield daemon


async def socks(tg: Tg, user: str = "alice") -> int:
    return (await tg.store.add_proxy(NewProxy("socks5", "198.51.100.9", 1080, user, PASSWORD)))["id"]


def through(sender: ts.ScriptedSender) -> tuple[str, int, str | None, str | None]:
    proxy = sender.connection._proxy
    return proxy["addr"], proxy["port"], proxy["username"], proxy["password"]


async def test_a_login_through_a_proxy_signs_in_through_it_and_keeps_it(tg: Tg) -> None:
    proxy_id = await socks(tg)
    phone = "+15553334444"
    me = user_for(phone, 515151)
    tg.gw.login(phone, (functions.auth.SendCodeRequest, sent_code("h-proxy")), *code_try(authorization(me)),
                *signed_in(me))
    result = await tg.cli("accounts", "login", phone, "--label", "P", "--proxy", str(proxy_id), stdin="12345\n")
    assert result.code == 0, str(result)
    [sender] = tg.gw.by_phone["15553334444"]
    assert through(sender) == ("198.51.100.9", 1080, "alice", PASSWORD)  # the code was asked for through it
    [account] = json.loads((await tg.cli("accounts", "list", "--json")).out)
    assert (account["proxy_id"], account["proxy"]) == (proxy_id, "socks5://198.51.100.9:1080")
    assert_no_secret(result.out + result.err + json.dumps(account) + await tg.everything_said(), [PASSWORD],
                     "the CLI and the API")


async def test_a_login_through_an_unknown_or_dead_proxy_is_refused_before_anything_is_sent(tg: Tg) -> None:
    unknown = await tg.cli("accounts", "login", "+15553335555", "--proxy", "9", stdin="")
    assert one_error(unknown) == "tgdaemon: proxy 9: no such proxy"
    proxy_id = await socks(tg)
    await tg.store.record_proxy_check(proxy_id, ProxyCheck("dead", None, "cannot connect: refused", time.time()),
                                      hold_until=time.time() + 60)
    dead = await tg.cli("accounts", "login", "+15553335555", "--proxy", str(proxy_id), stdin="")
    assert f"proxy {proxy_id} (socks5://198.51.100.9:1080) was found dead" in one_error(dead)
    assert tg.gw.by_phone == {} and await tg.store.count_accounts() == 0


async def test_an_import_through_a_proxy_checks_each_session_through_it(tg: Tg, tmp_path: Path) -> None:
    proxy_id = await socks(tg, "importer")
    key = bytes(range(256))
    tg.gw.keys[key] = ts.user(id=6001, phone="15556660001", first_name="Imp", last_name="Orted")
    strings = tmp_path / "s.txt"
    strings.write_text(string_session(2, "149.154.167.51", 443, key) + "\tthrough\n")
    result = await tg.cli("accounts", "import", "--proxy", str(proxy_id), str(strings))
    assert result.code == 0, str(result)
    [check] = tg.gw.checks
    assert through(check) == ("198.51.100.9", 1080, "importer", PASSWORD)
    [account] = await tg.client.all_accounts()
    assert (account["label"], account["proxy_id"]) == ("through", proxy_id)
    assert_no_secret(result.out + result.err + await tg.everything_said(), [PASSWORD], "the CLI and the API")
