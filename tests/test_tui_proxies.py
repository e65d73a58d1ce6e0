"""The dashboard's proxies: each account's proxy in the accounts table and its detail, and the proxies view
(reached by ``P``, and in the ``tab`` round once the fleet has a proxy), against a real daemon subprocess
whose health checker connects through a real SOCKS5 proxy on 127.0.0.1; no password on any line drawn."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from daemon_proc import DaemonProc, Fleet, fleet
from proxyserver import Servers, Socks5Server, TcpTarget
from test_tui import drawn, table_of, text_of, wait_until
from textual.widgets import Static

from tgtui.app import FleetApp
from tgtui.screens.detail import AccountDetail
from tgtui.screens.proxies import ProxiesScreen
from tgtui.widgets.header import FleetHeader

PASSWORD = "Tui-socks-Secret"


@pytest.fixture
def running() -> Iterator[tuple[Fleet, DaemonProc, Socks5Server]]:
    with Servers() as servers, fleet() as f:
        target = servers.add(TcpTarget())
        socks = servers.add(Socks5Server("alice", PASSWORD))
        f.config.write_text(f'[proxies]\ncheck_target = "127.0.0.1:{target.port}"\ntimeout_seconds = 5\n')
        daemon = f.start(accounts=6).wait_ready()
        for args in (("proxies", "add", f"socks5://alice:{PASSWORD}@127.0.0.1:{socks.port}", "--label", "fra"),
                     ("accounts", "set-proxy", "2", "3", "1"), ("proxies", "check")):
            result = f.cli(*args, "--socket", str(f.socket_path))
            assert result.returncode == 0, result.stdout + result.stderr
        yield f, daemon, socks


async def test_accounts_show_their_proxy_and_the_proxies_view_lists_it(
        running: tuple[Fleet, DaemonProc, Socks5Server]) -> None:
    f, daemon, socks = running
    url = f"socks5://127.0.0.1:{socks.port}"
    app = FleetApp(f.socket_path)
    async with app.run_test(size=(140, 30)) as pilot:
        table = table_of(app)
        await wait_until(pilot, lambda: len(table.rowset.rows) == 6 and url in drawn(table, 2), "account 2's proxy",
                         daemon)
        assert url in drawn(table, 3) and url not in drawn(table, 1) and "—" in drawn(table, 1)
        await pilot.press("slash", *f"proxy:{socks.port}", "enter")
        assert sorted(r["id"] for r in table.rowset.rows) == [2, 3]
        await pilot.press("escape")
        moved = await asyncio.to_thread(f.cli, "accounts", "set-proxy", "4", "1", "--socket", str(f.socket_path))
        assert moved.returncode == 0, moved.stderr
        await wait_until(pilot, lambda: url in drawn(table, 4), "account 4's proxy, from the stream's delta", daemon)
        await pilot.press("slash", *f"proxy:{socks.port}", "enter")
        assert sorted(r["id"] for r in table.rowset.rows) == [2, 3, 4]
        await pilot.press("enter")  # the detail of the selected one
        assert isinstance(app.screen, AccountDetail)
        summary = text_of(app.screen.query_one("#summary", Static))
        assert f"proxy {url}" in summary and PASSWORD not in summary
        await pilot.press("escape", "escape")

        await wait_until(pilot, lambda: "Proxies" in text_of(app.screen.query_one(FleetHeader)),
                         "the proxies view in the header", daemon)
        await pilot.press("P")
        assert isinstance(app.screen, ProxiesScreen)
        proxies = table_of(app)
        await wait_until(pilot, lambda: "ok" in drawn(proxies, 1) and app.model.proxies[1]["accounts"] == 3,
                         "the proxy's state and its three accounts (it is polled)", daemon)
        line = drawn(proxies, 1)
        assert url in line and "fra" in line and PASSWORD not in line
        await pilot.press("tab")  # proxies → nodes
        assert app.current_mode == "nodes"
