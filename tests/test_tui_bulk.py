"""Bulk marks in the dashboard against a real daemon subprocess (the simulator, 2,000 accounts): mark all after
a filter, disable the 1,000 marked with a reason through the confirm, in ONE request to the daemon; then
marked quotas paused together. The requests are counted by wrapping the app's ControlClient.call."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from daemon_proc import DaemonProc, Fleet, fleet
from test_tui import WAIT_SECONDS, notes, table_of, wait_until
from textual.widgets import Label

from tgdaemon.control.client import ControlClient
from tgtui.app import FleetApp
from tgtui.screens.confirm import ConfirmDialog, ReasonDialog
from tgtui.widgets.marks import MarkLine

ACCOUNTS = 2000
TARGETED = range(1000, 2000)  # sim-1000 … sim-1999: what `label:sim-1` shows


@pytest.fixture(scope="module")
def big() -> Iterator[tuple[Fleet, DaemonProc]]:
    with fleet() as f:
        yield f, f.start(accounts=ACCOUNTS).wait_ready()


def counting(app: FleetApp) -> list[tuple[str, str, Any]]:
    """Every ``call`` the app makes from now on (the admin routes: its polls use ``request``)."""
    sent: list[tuple[str, str, Any]] = []
    real = app.client.call

    async def call(method: str, path: str, *args: Any, **kwargs: Any) -> Any:
        sent.append((method, path, kwargs.get("body")))
        return await real(method, path, *args, **kwargs)

    app.client.call = call  # type: ignore[method-assign]
    return sent


async def test_a_thousand_marked_accounts_are_disabled_in_one_request(big: tuple[Fleet, DaemonProc]) -> None:
    f, daemon = big
    app = FleetApp(f.socket_path)
    sent = counting(app)
    async with app.run_test(size=(120, 40)) as pilot:
        table = table_of(app)
        await wait_until(pilot, lambda: len(table.rowset.rows) == ACCOUNTS, f"{ACCOUNTS} rows", daemon)
        marks = app.screen.query_one(MarkLine)
        await pilot.press("slash", *"label:sim-1", "enter")
        assert sorted(r["id"] for r in table.rowset.rows) == list(TARGETED)

        await pilot.press("asterisk")  # nothing marked: inverted, all shown are
        assert table.marked_count() == 1000
        await pilot.press("ctrl+backslash")
        assert table.marked_count() == 0 and not marks.display
        await pilot.press("ctrl+a")  # every row the filter matches, on screen or not
        assert table.marked_count() == 1000 and table.targets() == list(TARGETED)
        assert marks.display and marks.text.startswith("1,000 accounts marked")

        await pilot.press("d")
        assert isinstance(app.screen, ReasonDialog)
        assert "Disable 1,000 accounts?" in str(app.screen.query_one(Label).content)
        await pilot.press(*"bulk tui", "enter")
        await wait_until(pilot, lambda: any(n.startswith("disabled 1,000 accounts") for n in notes(app)),
                         "the answer of the disable", daemon)
        assert table.marked == set() and not marks.display
        await wait_until(pilot, lambda: all(table.rowset.rows[table.rowset.index[i]]["state"] == "disabled"
                                            for i in TARGETED), "the 1,000 drawn disabled", daemon)

    posts = [(path, body) for method, path, body in sent if method == "POST"]
    assert len(posts) == 1, [path for path, _ in posts]  # one request for the thousand, not one per row
    [(path, body)] = posts
    assert path == "/accounts/batch" and body["action"] == "disable" and body["ids"] == list(TARGETED)
    async with ControlClient(f.socket_path, timeout=WAIT_SECONDS) as client:
        disabled = (await client.accounts(state="disabled", limit=ACCOUNTS))["accounts"]
    by_bulk = sorted(a["id"] for a in disabled if a["disabled_reason"] == "bulk tui")
    assert by_bulk == list(TARGETED)  # all 1,000 in the daemon, and none the filter did not show


async def test_marked_quotas_pause_together_after_a_confirm(big: tuple[Fleet, DaemonProc]) -> None:
    f, daemon = big
    async with ControlClient(f.socket_path, timeout=WAIT_SECONDS) as client:
        ids = [(await client.request("POST", "/quotas", body={
            "name": f"bulk-{n}", "target": "@tgfleet_news", "action": "post_stats", "quantity": 100,
            "expires_in_seconds": 86400}))["id"] for n in range(3)]
    app = FleetApp(f.socket_path)
    sent = counting(app)
    async with app.run_test(size=(160, 40)) as pilot:
        await pilot.press("tab")
        table = table_of(app)
        await wait_until(pilot, lambda: all(i in table.rowset.index for i in ids), "the three quotas", daemon)
        await pilot.press("slash", *"bulk-", "enter", "ctrl+a", "p")
        assert isinstance(app.screen, ConfirmDialog)
        assert "Pause 3 quotas?" in str(app.screen.query_one(Label).content)
        await pilot.press("y")
        await wait_until(pilot, lambda: any(n.startswith("paused 3 quotas") for n in notes(app)), "the answer",
                         daemon)
        await wait_until(pilot, lambda: all(app.model.quotas[i]["paused"] for i in ids), "the deltas", daemon)
    assert [(m, p, b["action"], b["ids"]) for m, p, b in sent if m == "POST"] == [
        ("POST", "/quotas/batch", "pause", ids)]
