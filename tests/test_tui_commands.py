"""Command mode (``:``) and the palette, against a real daemon subprocess over its socket, driven by Pilot.

The daemon's simulator answers half the setup calls with a FLOOD_WAIT (up to ten minutes), so accounts go
into cooldown soon after it starts: ``:filter state:cooldown`` and ``:sort cooldown`` have rows to work on.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from daemon_proc import DaemonProc, Fleet, fleet
from test_tui import notes, table_of, wait_until
from textual.command import CommandList, CommandPalette

from tgtui.app import FleetApp
from tgtui.commands import CommandInput
from tgtui.model import effective_state
from tgtui.screens.accounts import AccountsScreen, _cooldown_left
from tgtui.screens.quotas import QuotasScreen

ACCOUNTS = 30
FLOODY = ('[setup]\nenabled = true\n\n[setup.profile]\nfirst_name = "Fleet"\nlast_name = "Test"\n\n'
          "[simulator]\nflood_wait_rate = 0.5\nflood_wait_max_seconds = 600\n")


@pytest.fixture(scope="module")
def floody() -> Iterator[tuple[Fleet, DaemonProc]]:
    with fleet() as f:
        f.config.write_text(FLOODY)
        yield f, f.start(accounts=ACCOUNTS).wait_ready()


async def test_command_mode_switches_views_filters_sorts_and_names_what_it_does_not_know(
        floody: tuple[Fleet, DaemonProc]) -> None:
    f, daemon = floody
    app = FleetApp(f.socket_path)
    async with app.run_test(size=(120, 40)) as pilot:
        table = table_of(app)
        await wait_until(pilot, lambda: len(table.rowset.rows) == ACCOUNTS, f"{ACCOUNTS} rows", daemon)
        await wait_until(pilot, lambda: sum(effective_state(a, app.clock()) == "cooldown"
                                            for a in app.model.accounts.values()) >= 2, "two cooldowns", daemon)

        await pilot.press("colon")
        prompt = app.screen.query_one("#command", CommandInput)
        assert prompt.has_focus
        await pilot.press(*"filter state:cooldown", "enter")
        assert not prompt.has_focus and table.rowset.filter == "state:cooldown"
        shown = table.rowset.rows
        assert shown and all(effective_state(r, app.clock()) == "cooldown" for r in shown)
        assert len(shown) < ACCOUNTS

        await pilot.press("colon", *"sort cooldown", "enter")
        assert (table.rowset.sort, table.rowset.desc) == ("cooldown", False)
        now = app.clock()
        lefts = [_cooldown_left(r, now) for r in table.rowset.rows]
        assert lefts == sorted(lefts)
        await pilot.press("colon", *"sort Cooldown!", "enter")  # a title does as well as a key; ! descends
        assert (table.rowset.sort, table.rowset.desc) == ("cooldown", True)
        assert "Cooldown ▼" in "".join(s.text for s in table.render_line(0))

        await pilot.press("colon", *"sort colour", "enter")
        assert notes(app)[-1].startswith("sort: no column 'colour' here; columns: id, label,")
        assert prompt.has_focus  # the line stays to be put right
        await pilot.press("escape")  # leaves the prompt, keeps the filter
        assert not prompt.has_class("shown") and table.rowset.filter == "state:cooldown"

        await pilot.press("colon", *"bogus", "enter")
        assert notes(app)[-1].startswith("unknown command 'bogus'; commands: accounts, quotas, events, nodes,")
        await pilot.press("escape")

        await pilot.press("colon", *"quo", "tab")  # tab takes the completion
        assert prompt.value == "quotas"
        await pilot.press("enter")
        assert isinstance(app.screen, QuotasScreen) and app.current_mode == "quotas"

        await pilot.press("colon", *"accounts", "enter")
        assert isinstance(app.screen, AccountsScreen) and table_of(app).rowset.filter == "state:cooldown"
        await pilot.press("colon", *"filter", "enter")  # no text: no filter
        await wait_until(pilot, lambda: len(table_of(app).rowset.rows) == ACCOUNTS, "every row again", daemon)


async def test_the_palette_offers_every_action_and_one_that_does_not_apply_says_where_it_does(
        floody: tuple[Fleet, DaemonProc]) -> None:
    f, daemon = floody
    app = FleetApp(f.socket_path)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_until(pilot, lambda: len(table_of(app).rowset.rows) == ACCOUNTS, f"{ACCOUNTS} rows", daemon)
        in_accounts = {c.title: c for c in app.get_system_commands(app.screen)}
        await pilot.press("colon", *"quotas", "enter")
        in_quotas = {c.title: c for c in app.get_system_commands(app.screen)}
        assert set(in_accounts) == set(in_quotas)  # every action, in every view
        assert {"Retry", "Disable", "Enable", "Mark", "Pause/resume", "Command", "Filter", "Sort",
                *(f"View: {mode}" for mode in FleetApp.MODES)} <= set(in_quotas)
        retry = in_quotas["Retry"]
        assert retry.help.startswith("the accounts view and an account's detail only: open it with :accounts")
        retry.callback()
        await pilot.pause()
        assert notes(app)[-1] == "Retry: the accounts view and an account's detail only: open it with :accounts"
        assert "only" not in in_quotas["Pause/resume"].help

        await pilot.press("ctrl+p")
        assert isinstance(app.screen, CommandPalette)
        await pilot.press(*"retry")
        palette = app.screen
        await wait_until(pilot, lambda: palette.query_one(CommandList).option_count > 0, "a hit", daemon)
        await pilot.press("enter")
        await wait_until(pilot, lambda: not isinstance(app.screen, CommandPalette), "the palette closed", daemon)
        assert isinstance(app.screen, QuotasScreen)
        assert notes(app)[-1].startswith("Retry: the accounts view")
