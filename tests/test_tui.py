"""The dashboard against real daemon subprocesses over their real sockets, driven by Textual's Pilot.

Most tests share one daemon (40 simulated accounts, the setup pipeline on, so
accounts move while the tests run). The last one owns its daemon: it starts
the dashboard first, then the daemon, disables an account from the keyboard,
stops the daemon and starts another on the same data dir, store and socket;
it runs on both stores (the data dir's SQLite file, a PostgreSQL database).
"""

from __future__ import annotations

import io
import re
from collections.abc import Callable, Iterator

import pytest
from daemon_proc import DaemonProc, Fleet, fleet
from rich.console import Console
from textual.binding import Binding
from textual.command import CommandPalette
from textual.pilot import Pilot
from textual.widgets import DataTable, Label, Static

from tgdaemon import __version__
from tgdaemon.control.client import ControlClient
from tgtui.app import FleetApp, key_map
from tgtui.screens.confirm import ConfirmDialog, ReasonDialog
from tgtui.screens.detail import AccountDetail, QuotaDetail
from tgtui.screens.help import HelpScreen, key_names
from tgtui.widgets.header import FleetHeader, OfflineBanner
from tgtui.widgets.table import LineTable

WAIT_SECONDS = 15.0
STEP_SECONDS = 0.05
ACCOUNTS = 40
SETUP_CONFIG = '[setup]\nenabled = true\n\n[setup.profile]\nfirst_name = "Fleet"\nlast_name = "Test"\n'


@pytest.fixture(scope="module")
def shared() -> Iterator[tuple[Fleet, DaemonProc]]:
    with fleet() as f:
        f.config.write_text(SETUP_CONFIG)
        yield f, f.start(accounts=ACCOUNTS).wait_ready()


async def wait_until(pilot: Pilot[None], check: Callable[[], object], what: str, daemon: DaemonProc) -> None:
    """Let the app run until ``check()`` holds; bounded, and the failure says what and shows the daemon's log."""
    for _ in range(int(WAIT_SECONDS / STEP_SECONDS)):
        if check():
            return
        await pilot.pause(STEP_SECONDS)
    if check():
        return
    pytest.fail(f"the dashboard did not show {what} within {WAIT_SECONDS:.0f} s\n--- daemon log:\n{daemon.log()}",
                pytrace=False)


def table_of(app: FleetApp) -> LineTable:
    return app.screen.query_one(LineTable)


async def full_table(app: FleetApp, pilot: Pilot[None], daemon: DaemonProc) -> LineTable:
    """The accounts table, once it holds the whole shared fleet."""
    table = table_of(app)
    await wait_until(pilot, lambda: len(table.rowset.rows) == ACCOUNTS, f"{ACCOUNTS} rows", daemon)
    return table


def drawn(table: LineTable, key: object) -> str:
    """The text of the line the table draws for this row ('' when it is not on screen)."""
    index = table.rowset.index.get(key)
    if index is None:
        return ""
    y = index - round(table.scroll_y) + 1
    if not 1 <= y < table.area.height:
        return ""
    return "".join(segment.text for segment in table.render_line(y))


def text_of(widget: Static) -> str:
    return str(widget.content)


def notes(app: FleetApp) -> list[str]:
    return [n.message for n in app._notifications]


async def test_filter_and_sort_keep_the_selection_on_the_same_account(shared: tuple[Fleet, DaemonProc]) -> None:
    f, daemon = shared
    app = FleetApp(f.socket_path)
    async with app.run_test(size=(120, 50)) as pilot:
        table = await full_table(app, pilot, daemon)
        await pilot.press("j", "j", "j", "j")
        assert table.selected_key == 5 and table.cursor == 4

        await pilot.press("S")  # id, descending: the rows move, the selection does not
        assert [r["id"] for r in table.rowset.rows[:2]] == [ACCOUNTS, ACCOUNTS - 1]
        assert table.selected_key == 5 and table.cursor == ACCOUNTS - 5
        assert "sim-0005" in drawn(table, 5) and "ID ▼" in "".join(s.text for s in table.render_line(0))

        await pilot.press("s")  # the next column: label (still descending)
        assert table.rowset.sort == "label" and table.selected_key == 5
        labels = [r["label"] for r in table.rowset.rows]
        assert labels == sorted(labels, reverse=True)

        await pilot.press("slash", *"sim-001", "enter")
        assert sorted(r["id"] for r in table.rowset.rows) == list(range(10, 20))
        assert drawn(table, 5) == "" and table.selected_key in range(10, 20)
        await pilot.press("escape")
        assert len(table.rowset.rows) == ACCOUNTS

        await pilot.press("slash", *"state:ready", "enter")
        assert table.rowset.rows and "ready" in drawn(table, table.selected_key)
        assert all(table.rowset.columns["state"].text(r, app.clock()) == "ready" for r in table.rowset.rows)

        await pilot.press("escape", "slash", *"colour:red", "enter")  # a bad filter: one line, the box stays open
        assert any(n.startswith("unknown column 'colour'") and "\n" not in n for n in notes(app))
        assert app.screen.query_one("#filter").has_class("shown")
        await pilot.press("escape")
        assert len(table.rowset.rows) == ACCOUNTS and not app.screen.query_one("#filter").has_class("shown")


async def test_marked_accounts_are_acted_on_together(shared: tuple[Fleet, DaemonProc]) -> None:
    f, daemon = shared
    app = FleetApp(f.socket_path)
    async with app.run_test(size=(120, 50)) as pilot:
        table = await full_table(app, pilot, daemon)
        await pilot.press("space", "j", "space")  # marks 1 and 3 (space steps down)
        assert table.targets() == [1, 3] and drawn(table, 1).startswith("●")
        await pilot.press("e")  # two marked: asked first, with the count
        assert isinstance(app.screen, ConfirmDialog) and "Enable 2 accounts?" in str(
            app.screen.query_one(Label).content)
        await pilot.press("enter")  # neither is disabled: the daemon says so, nothing changes
        await wait_until(pilot, lambda: any("2 already enabled" in n for n in notes(app)), "the enable result",
                         daemon)
        assert table.marked == set()
        assert table.targets() == [table.selected_key]


async def test_account_detail_shows_setup_tasks_and_events(shared: tuple[Fleet, DaemonProc]) -> None:
    f, daemon = shared
    app = FleetApp(f.socket_path)
    async with ControlClient(f.socket_path, timeout=10) as client:
        # an account the pipeline has given its tasks, and that the simulator has not killed
        aid = next(a["id"] for a in await client.all_accounts() if a["setup"]["total"] >= 4 and not a["disabled_at"])
        assert (await client.disable(aid, "detail test"))["changed"]
        await client.request("POST", "/accounts/device", body={  # issue 14: the detail shows an own device
            "ids": [aid], "device": {"device_model": "Pixel 7", "api_id": 611335,
                                     "api_hash": "b18441a1ff607e10a989891a5462e627"}})
        async with app.run_test(size=(120, 50)) as pilot:
            table = table_of(app)
            await wait_until(pilot, lambda: aid in table.rowset.index, f"account {aid}", daemon)
            await pilot.press("slash", *f"sim-{aid:04d}", "enter", "enter")
            assert isinstance(app.screen, AccountDetail) and app.screen.key == aid
            tasks = app.screen.query_one("#tasks", DataTable)
            events = app.screen.query_one("#events", DataTable)
            await wait_until(pilot, lambda: tasks.row_count >= 4 and events.row_count >= 1, "tasks and events",
                             daemon)
            assert [str(c.label) for c in tasks.columns.values()] == [
                "Task", "Status", "Updated", "Tries", "Blocked by", "Last error"]
            types = {str(tasks.get_row_at(i)[0]) for i in range(tasks.row_count)}
            assert {"ensure_2fa", "update_name", "privacy_phone_hidden"} <= types
            assert any("disabled: detail test" in str(events.get_row_at(i)[2]) for i in range(events.row_count))
            summary = text_of(app.screen.query_one("#summary", Static))
            assert f"sim-{aid:04d}" in summary and "disabled" in summary and "detail test" in summary
            # the time in full, uncut, and how long ago; the lists' times against now
            assert re.search(r"detail test, 20\d\d-\d\d-\d\d \d\d:\d\d:\d\dZ \((just now|\d+s ago)\)", summary), summary
            assert all(re.fullmatch(r"just now|\d+[smh]( \d+m)? ago", str(events.get_row_at(i)[0]))
                       for i in range(events.row_count))
            assert re.search(r"own device +api_id 611335  api_hash b184…  device_model Pixel 7", summary), summary
            assert "b18441a1ff" not in summary

            await pilot.press("e")  # from the detail screen, on this account
            await wait_until(pilot, lambda: app.model.accounts[aid]["disabled_at"] is None, "the account enabled",
                             daemon)
            await wait_until(pilot, lambda: "detail test" not in text_of(app.screen.query_one("#summary", Static)),
                             "the summary following the delta", daemon)
            await pilot.press("escape")
            assert not isinstance(app.screen, AccountDetail)
        assert (await client.account(aid))["disabled_at"] is None


async def test_quotas_view_pause_and_detail(shared: tuple[Fleet, DaemonProc]) -> None:
    f, daemon = shared
    app = FleetApp(f.socket_path)
    async with ControlClient(f.socket_path, timeout=10) as client:
        quota = await client.request("POST", "/quotas", body={
            "name": "tui-news", "target": "@tgfleet_news", "action": "post_stats", "quantity": 100,
            "expires_in_seconds": 86400})
        async with app.run_test(size=(160, 40)) as pilot:
            await pilot.press("tab")
            assert app.current_mode == "quotas"
            table = table_of(app)
            qid = quota["id"]
            await wait_until(pilot, lambda: "ok" in drawn(table, qid), "the quota inspected", daemon)
            line = drawn(table, qid)
            # A delta carries the quota's state when the stream read it: the executor may have done one already.
            assert "tui-news" in line and "@tgfleet_news" in line and re.search(r" (100|99)/100 ", line)
            assert "in 23h" in line

            table.action_first()
            await pilot.press(*["j"] * table.rowset.index[qid], "p")
            await wait_until(pilot, lambda: "paused" in drawn(table, qid), "the quota paused (from its delta)",
                             daemon)
            assert {q["id"]: q for q in await client.quotas()}[qid]["paused"] is True

            await pilot.press("enter")
            assert isinstance(app.screen, QuotaDetail)
            measured = await client.measurements(qid)
            rows = app.screen.query_one("#measurements", DataTable)
            await wait_until(pilot, lambda: len(rows.columns) == 7, "the measurements table", daemon)
            assert rows.row_count == min(len(measured), 50)
            assert app.screen.measured == measured[-len(app.screen.measured):]
            summary = text_of(app.screen.query_one("#summary", Static))
            assert re.search(r"(100|99)/100 left", summary) and re.search(r"expires +20\d\d-\d\d-\d\d \d\d:\d\d:\d\dZ "
                                                                  r"\(in 23h\)", summary), summary
            await pilot.press("p", "escape")
            await wait_until(pilot, lambda: "paused" not in drawn(table, qid), "the quota resumed", daemon)


async def test_events_view_follows_and_filters(shared: tuple[Fleet, DaemonProc]) -> None:
    f, daemon = shared
    app = FleetApp(f.socket_path)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("left_square_bracket", "left_square_bracket", "left_square_bracket")  # nodes, pulse, events
        assert app.current_mode == "events"
        table = table_of(app)
        await wait_until(pilot, lambda: table.rowset.rows, "some events", daemon)
        async with ControlClient(f.socket_path, timeout=10) as client:
            await client.disable(30, "events test")
            await client.enable(30)
        await wait_until(pilot, lambda: table.rowset.rows[0]["kind"] == "account.enabled", "the newest event on top",
                         daemon)
        await pilot.press("slash", *"kind:account.", "space", *"account:30", "enter")
        kinds = [r["kind"] for r in table.rowset.rows]
        assert kinds[:2] == ["account.enabled", "account.disabled"]
        assert all(r["account_id"] == 30 for r in table.rowset.rows)
        await pilot.press("right_square_bracket")
        assert app.current_mode == "pulse"
        await pilot.press("right_square_bracket")
        assert app.current_mode == "nodes"
        await pilot.press("right_square_bracket")  # round again
        assert app.current_mode == "accounts"


async def test_small_terminal_help_and_palette(shared: tuple[Fleet, DaemonProc]) -> None:
    f, daemon = shared
    app = FleetApp(f.socket_path)
    async with app.run_test(size=(80, 24)) as pilot:
        table = await full_table(app, pilot, daemon)
        shown = [c.key for c, _ in table.columns()]
        assert {"id", "label", "state", "cooldown", "setup", "error"} <= set(shown) and "phone" not in shown
        assert sum(w for _, w in table.columns()) + len(shown) - 1 + 2 == table.area.width
        assert "ready" in text_of(app.screen.query_one(FleetHeader))

        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        console = Console(width=80, file=io.StringIO(), record=True)
        console.print(app.screen.query_one(Static).content)
        help_text = console.export_text()
        for _, bindings in key_map():
            for binding in bindings:
                assert isinstance(binding, Binding)
                assert f"{key_names(binding)} " in help_text and binding.description in help_text, binding
        assert "? " in help_text and "ctrl+p" in help_text
        await pilot.press("escape")

        await pilot.press("ctrl+p")
        assert isinstance(app.screen, CommandPalette)
        await pilot.press("escape")
        titles = {c.title for c in app.get_system_commands(app.screen)}
        assert {"Retry", "Disable", "Enable", "Filter", "Sort", "View: quotas", "Help"} <= titles


async def test_keyboard_disable_and_a_daemon_that_comes_and_goes(daemon_store: str | None) -> None:
    """On both stores: what the second daemon shows is read back from the first one's store."""
    with fleet(store=daemon_store) as f:
        app = FleetApp(f.socket_path)
        async with app.run_test(size=(120, 40)) as pilot:
            table = table_of(app)
            offline = app.screen.query_one(OfflineBanner)
            for _ in range(int(WAIT_SECONDS / STEP_SECONDS)):
                if offline.display:
                    break
                await pilot.pause(STEP_SECONDS)
            assert offline.display and "daemon offline" in text_of(offline) and str(f.socket_path) in text_of(offline)
            assert table.rowset.rows == []

            daemon = f.start(accounts=30)
            await daemon.await_ready()
            await wait_until(pilot, lambda: len(table.rowset.rows) == 30 and not offline.display,
                             "30 rows and no banner once the daemon is up", daemon)
            header = app.screen.query_one(FleetHeader)
            await wait_until(pilot, lambda: "ready 30" in text_of(header), "'ready 30' in the header", daemon)

            # disable account 7 from the keyboard: the dialog wants a reason, the daemon gets it, the delta comes back
            await pilot.press("g", *["j"] * 6, "d")
            assert isinstance(app.screen, ReasonDialog)
            await pilot.press("enter")
            assert "reason is required" in str(app.screen.query_one("#problem", Label).content)
            await pilot.press(*"tui test", "enter")
            assert not isinstance(app.screen, ReasonDialog)
            await wait_until(pilot, lambda: "disabled" in drawn(table, 7), "account 7 drawn as disabled", daemon)
            async with ControlClient(f.socket_path, timeout=10) as client:
                assert (await client.account(7))["disabled_reason"] == "tui test"
            await wait_until(pilot, lambda: "disabled 1" in text_of(header), "'disabled 1' in the header", daemon)
            assert "ready" in drawn(table, 8)

            # the daemon goes away: the banner says so, the rows stay
            assert await daemon.astop() == 0, daemon.log()
            await wait_until(pilot, lambda: offline.display and "daemon offline" in text_of(offline),
                             "the 'daemon offline' banner", daemon)
            assert len(table.rowset.rows) == 30 and f"v{__version__} offline" in text_of(header)  # no uptime while away

            # a new daemon on the same data dir and socket: the dashboard reconnects by itself
            second = f.start(accounts=30)
            await second.await_ready()
            await wait_until(pilot, lambda: not offline.display, "the banner hidden again", second)
            assert "disabled" in drawn(table, 7)  # read back from the new daemon's database
            await pilot.press("e")
            await wait_until(pilot, lambda: "ready" in drawn(table, 7), "account 7 enabled again", second)
            await wait_until(pilot, lambda: "ready 30" in text_of(header), "'ready 30' after enabling", second)
            assert app.is_running
        assert await second.astop() == 0, second.log()


async def test_a_channel_quota_detail_charts_subscribers(shared: tuple[Fleet, DaemonProc]) -> None:
    """A channel_stats quota has no posts: its chart is the channel's subscribers, as measured."""
    f, daemon = shared
    app = FleetApp(f.socket_path)
    async with ControlClient(f.socket_path, timeout=10) as client:
        quota = await client.request("POST", "/quotas", body={
            "name": "tui-subs", "target": "@tgfleet_markets", "action": "channel_stats", "orders": 2,
            "interval_seconds": 1, "expires_in_seconds": 86400})
        qid = quota["id"]
        async with app.run_test(size=(160, 40)) as pilot:
            await pilot.press("tab")
            table = table_of(app)
            await wait_until(pilot, lambda: app.model.quotas.get(qid, {}).get("measurements", 0) >= 1,
                             "a measurement by the local executor", daemon)
            table.action_first()
            await pilot.press(*["j"] * table.rowset.index[qid], "enter")
            assert isinstance(app.screen, QuotaDetail)
            detail = app.screen
            await wait_until(pilot, lambda: detail.measured, "the measurements", daemon)
            measured = await client.measurements(qid)
            assert "Subscribers" in text_of(detail.query_one("#series", Label))
            shown = detail.measured
            assert shown == measured[:len(shown)] and all(m["subscribers"] > 0 for m in shown)
            chart = "\n".join(line.plain for line in detail.chart(76, 7))
            if len({m["observed_at"] for m in shown}) < 3:  # in words: each measurement's count, in full
                assert f"{shown[0]['subscribers']:,} subscribers" in chart, chart
            else:  # a chart with a scale and a time axis
                assert "┤" in chart and chart.rstrip().endswith("ago"), chart
