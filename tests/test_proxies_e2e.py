"""Proxies end to end: a real ``tgdaemon run --simulate`` subprocess, the real CLI, and real proxies on
127.0.0.1 (tests/proxyserver.py) that the daemon's health checker connects through.

The simulator cannot route through a proxy (it has no network), so accounts' own traffic is not here
(tests/test_proxy_routing.py has it); what is: an operator's day with proxies (add, list, give to
accounts, check, a proxy that dies and comes back with its accounts held in between, removal), the
one-line refusals, and that no password or secret ever shows in the CLI's output, the API's answers, the
audit trail or the daemon's log.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from daemon_proc import CLI_TIMEOUT, Fleet, fleet, no_traceback, one_line
from proxyserver import HttpConnectServer, Servers, Socks5Server, TcpTarget

SOCKS_PASSWORD = "E2e-socks-Secret"
HTTP_PASSWORD = "E2e-http-Secret"
WRONG = "E2e-Wrong-Guess"
MT_SECRET = "dd" + "5e" * 16
SECRETS = (SOCKS_PASSWORD, HTTP_PASSWORD, WRONG, MT_SECRET, MT_SECRET[2:])


@pytest.fixture
def servers() -> Iterator[Servers]:
    with Servers() as running:
        yield running


@pytest.fixture
def fl() -> Iterator[Fleet]:
    with fleet() as f:
        yield f


class Operator:
    """The CLI as the operator runs it, every word it printed kept for the secret scan."""

    def __init__(self, fl: Fleet) -> None:
        self.fl = fl
        self.said: list[str] = []

    def run(self, *args: str, stdin: str | None = None, code: int | None = 0) -> subprocess.CompletedProcess[str]:
        result = subprocess.run([sys.executable, "-m", "tgdaemon", *args, "--socket", str(self.fl.socket_path)],
                                env=self.fl.env, capture_output=True, text=True, timeout=CLI_TIMEOUT,
                                input=stdin if stdin is not None else "")
        self.said.append(result.stdout + result.stderr)
        no_traceback(result)
        if code is not None:
            assert result.returncode == code, f"{args}: exit {result.returncode}\n{result.stdout}{result.stderr}"
        return result

    def json(self, *args: str, code: int = 0) -> Any:
        return json.loads(self.run(*args, "--json", code=code).stdout)


def test_an_operators_day_with_proxies_and_no_secret_anywhere(servers: Servers, fl: Fleet) -> None:
    target = servers.add(TcpTarget())
    socks = servers.add(Socks5Server("alice", SOCKS_PASSWORD))
    http = servers.add(HttpConnectServer("bob", HTTP_PASSWORD))
    guarded = servers.add(Socks5Server("carol", "the-right-one"))
    mt = servers.add(TcpTarget())
    fl.config.write_text(f'[proxies]\ncheck_target = "127.0.0.1:{target.port}"\ncheck_interval_seconds = 3600\n'
                         'timeout_seconds = 5\n')
    daemon = fl.start(accounts=6).wait_ready()
    op = Operator(fl)

    # add: the URL on the command line, or on standard input; shown only as scheme://host:port
    added = op.run("proxies", "add", f"socks5://alice:{SOCKS_PASSWORD}@127.0.0.1:{socks.port}", "--label", "fra")
    assert one_line(added.stdout).startswith(f"proxy 1 added: socks5://127.0.0.1:{socks.port} (fra); check it")
    op.run("proxies", "add", "-", stdin=f"http://bob:{HTTP_PASSWORD}@127.0.0.1:{http.port}\n")
    op.run("proxies", "add", f"socks5://carol:{WRONG}@127.0.0.1:{guarded.port}")
    op.run("proxies", "add", f"mtproxy://127.0.0.1:{mt.port}?secret={MT_SECRET}", "--label", "mt")
    bad = op.run("proxies", "add", f"socks5://alice:{SOCKS_PASSWORD}@127.0.0.1", code=2)
    assert bad.stderr.strip().splitlines()[-1].endswith("argument URL: proxy socks5://127.0.0.1: no port; write HOST:PORT")
    again = op.run("proxies", "add", f"socks5://alice:other@127.0.0.1:{socks.port}", code=1)
    assert one_line(again.stderr) == f"tgdaemon: that proxy is already proxy 1 (socks5://127.0.0.1:{socks.port}), labelled 'fra'"

    listed = op.json("proxies", "list")
    assert [(p["id"], p["url"], p["label"], p["state"], p["accounts"]) for p in listed] == [
        (1, f"socks5://127.0.0.1:{socks.port}", "fra", "unchecked", 0),
        (2, f"http://127.0.0.1:{http.port}", "", "unchecked", 0),
        (3, f"socks5://127.0.0.1:{guarded.port}", "", "unchecked", 0),
        (4, f"mtproxy://127.0.0.1:{mt.port}", "mt", "unchecked", 0)]

    # accounts get their own proxies, in one request each
    assert one_line(op.run("accounts", "set-proxy", "1", "2", "1").stdout).startswith(
        f"2 account(s) now use proxy 1 (socks5://127.0.0.1:{socks.port})")
    op.run("accounts", "set-proxy", "3", "2")
    op.run("accounts", "set-proxy", "4", "3")
    assert one_line(op.run("accounts", "set-proxy", "5", "99", code=1).stderr) == "tgdaemon: proxy 99: no such proxy"
    assert one_line(op.run("accounts", "set-proxy", "5", "77", "1", code=1).stderr) == (
        "tgdaemon: account 77: no such account; nothing changed")
    assert one_line(op.run("accounts", "set-proxy", "5", "x", code=2).stderr).endswith("neither a proxy's id nor none")
    accounts = {a["id"]: a for a in op.json("accounts", "list")}
    assert [accounts[i]["proxy"] for i in range(1, 7)] == [
        f"socks5://127.0.0.1:{socks.port}", f"socks5://127.0.0.1:{socks.port}", f"http://127.0.0.1:{http.port}",
        f"socks5://127.0.0.1:{guarded.port}", None, None]

    # check: through each proxy to the target; carol's password is wrong (exit 1: a proxy is dead)
    checked = {p["id"]: p for p in op.json("proxies", "check", code=1)}
    assert [checked[i]["state"] for i in (1, 2, 3, 4)] == ["ok", "ok", "dead", "ok"]
    assert "authentication failure" in checked[3]["last_error"]
    assert socks.relayed and http.relayed and not guarded.relayed and mt.accepted == 1
    assert {a["id"]: a["cooldown_reason"] for a in op.json("accounts", "list")}[4] == "proxy"

    # proxy 1 goes down: its accounts wait for it, counted by reason; it comes back: they resume
    servers.stop(socks)
    down = op.json("proxies", "check", "1", code=1)
    assert [(p["id"], p["state"], p["held"]) for p in down] == [(1, "dead", 2)]
    accounts = {a["id"]: a for a in op.json("accounts", "list")}
    assert [(accounts[i]["state"], accounts[i]["cooldown_reason"]) for i in (1, 2, 3)] == [
        ("cooldown", "proxy"), ("cooldown", "proxy"), ("ready", None)]
    status = op.json("status")
    assert status["cooldowns"] == {"proxy": 3}  # proxy 1's two, and carol's account
    assert "cooldowns  proxy 3" in op.run("status").stdout
    servers.start(socks)
    assert [p["state"] for p in op.json("proxies", "check", "1")] == ["ok"]
    accounts = {a["id"]: a for a in op.json("accounts", "list")}
    assert [accounts[i]["state"] for i in (1, 2)] == ["ready", "ready"]

    # removal: refused while in use, forced leaves the accounts with none
    refused = op.run("proxies", "remove", "1", code=1)
    assert "is used by 2 accounts (1, 2)" in one_line(refused.stderr)
    forced = op.run("proxies", "remove", "1", "--force")
    assert one_line(forced.stdout) == (f"proxy 1 (socks5://127.0.0.1:{socks.port}) removed; accounts 1, 2 have no"
                                       " proxy of their own now")
    assert [p["id"] for p in op.json("proxies", "list")] == [2, 3, 4]
    events = op.json("events", "--limit", "500")
    kinds = [e["kind"] for e in events]
    assert {"proxy.added", "proxy.state", "proxy.removed", "account.proxy", "account.resumed"} <= set(kinds)

    daemon.stop()
    everything = "\n".join([*op.said, json.dumps(events), daemon.log()])
    assert "is dead" in daemon.log()  # the checker said so, in one line, without the password
    for secret in SECRETS:
        assert secret not in everything, f"{secret} shows in the CLI's output, the API or the log"
