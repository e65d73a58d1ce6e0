"""The dashboard against a real daemon subprocess over its real socket, driven by Textual's Pilot.

One app instance lives through the whole story: snapshot, a live delta, the
daemon going away ("daemon offline"), a new daemon on the same data dir and
socket, and the dashboard catching up by itself.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from daemon_proc import DaemonProc, Fleet, fleet
from textual.pilot import Pilot
from textual.widgets import DataTable, Static

from tgtui.app import FleetApp
from tgtui.client import ControlClient

WAIT_SECONDS = 10.0
STEP_SECONDS = 0.1


@pytest.fixture
def fl() -> Iterator[Fleet]:
    with fleet() as f:
        yield f


async def wait_until(pilot: Pilot[None], check: Callable[[], bool], what: str, daemon: DaemonProc) -> None:
    """Let the app run until ``check()`` holds; bounded, and the failure says what and shows the daemon's log."""
    for _ in range(int(WAIT_SECONDS / STEP_SECONDS)):
        if check():
            return
        await pilot.pause(STEP_SECONDS)
    if check():
        return
    pytest.fail(f"the dashboard did not show {what} within {WAIT_SECONDS:.0f} s\n--- daemon log:\n{daemon.log()}",
                pytrace=False)


def text_of(widget: Static) -> str:
    return str(widget.content)


async def test_dashboard_follows_the_daemon_through_a_restart(fl: Fleet) -> None:
    daemon = fl.start().wait_ready()
    app = FleetApp(fl.socket_path)
    async with app.run_test(size=(160, 60)) as pilot:
        table = app.query_one("#accounts", DataTable)
        header = app.query_one("#header", Static)
        offline = app.query_one("#offline", Static)

        def state_of(account_id: int) -> str:
            return str(table.get_cell(str(account_id), "state"))

        # the snapshot: every account is a row, the header counts them
        await wait_until(pilot, lambda: table.row_count == 50, "50 rows", daemon)
        await wait_until(pilot, lambda: "ready 50" in text_of(header), "'ready 50' in the header", daemon)
        assert not offline.display
        assert state_of(7) == "ready"
        assert {str(table.get_cell(str(i), "id")) for i in range(1, 51)} == {str(i) for i in range(1, 51)}

        # a change made through the control API arrives as a delta
        async with ControlClient(fl.socket_path, timeout=10) as client:
            result = await client.disable(7, "tui test")
        assert result["changed"] and result["account"]["state"] == "disabled"
        await wait_until(pilot, lambda: state_of(7) == "disabled", "account 7 as disabled", daemon)
        await wait_until(pilot, lambda: "disabled 1" in text_of(header), "'disabled 1' in the header", daemon)
        assert state_of(8) == "ready"

        # the daemon goes away: the banner says so, the rows stay
        assert await daemon.astop() == 0, daemon.log()
        await wait_until(pilot, lambda: offline.display and "daemon offline" in text_of(offline),
                         "the 'daemon offline' banner", daemon)
        assert str(fl.socket_path) in text_of(offline)
        assert table.row_count == 50

        # a new daemon on the same data dir and socket: the app reconnects by itself
        second = fl.start()
        await second.await_ready()
        await wait_until(pilot, lambda: not offline.display, "the banner hidden again", second)
        await wait_until(pilot, lambda: table.row_count == 50, "50 rows after the restart", second)
        assert state_of(7) == "disabled"  # read back from the new daemon's database

        # and live deltas flow from the new daemon too
        async with ControlClient(fl.socket_path, timeout=10) as client:
            await client.enable(7)
        await wait_until(pilot, lambda: state_of(7) == "ready", "account 7 ready again", second)
        await wait_until(pilot, lambda: "ready 50" in text_of(header), "'ready 50' after enabling", second)
        assert app.is_running
    assert await second.astop() == 0, second.log()


async def test_dashboard_started_before_the_daemon_connects_when_it_appears(fl: Fleet) -> None:
    app = FleetApp(fl.socket_path)
    async with app.run_test(size=(160, 60)) as pilot:
        table = app.query_one("#accounts", DataTable)
        offline = app.query_one("#offline", Static)
        for _ in range(int(WAIT_SECONDS / STEP_SECONDS)):
            if offline.display:
                break
            await pilot.pause(STEP_SECONDS)
        assert offline.display and "daemon offline" in text_of(offline), text_of(offline)
        assert table.row_count == 0
        daemon = fl.start(accounts=12)
        await daemon.await_ready()
        await wait_until(pilot, lambda: table.row_count == 12 and not offline.display,
                         "12 rows and no banner once the daemon is up", daemon)
    assert await daemon.astop() == 0, daemon.log()
