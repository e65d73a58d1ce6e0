"""A big fleet's dashboard fills its table as the snapshot's frames arrive: a real daemon subprocess (5,000
simulated accounts, three pages of the snapshot's accounts) over its real socket, the real app under Pilot.

The client is the real one, over the real socket, except that it holds the
stream after the snapshot's first frame of accounts until the test lets it go:
what the app shows then is what a person sees while the rest of a big fleet's
snapshot is on its way, with no timing in the test.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from daemon_proc import DaemonProc, Fleet, fleet
from test_tui import STEP_SECONDS, WAIT_SECONDS, drawn, table_of, text_of, wait_until

from tgdaemon.control.client import ControlClient
from tgdaemon.control.watch import SNAPSHOT_PAGE
from tgtui.app import FleetApp
from tgtui.screens.detail import AccountDetail
from tgtui.widgets.header import FleetHeader

ACCOUNTS = 5_000
assert SNAPSHOT_PAGE < ACCOUNTS / 2, "the test wants a snapshot of three pages of accounts or more"


class HeldClient(ControlClient):
    """The real client, holding the stream once the first frame that brings accounts (and says more follow)
    has been handed to the app, until ``release`` is set."""

    def __init__(self, fleet: Fleet) -> None:
        super().__init__(fleet.socket_path, timeout=10)
        self.holding = asyncio.Event()
        self.release = asyncio.Event()
        self.held: dict[str, Any] = {}

    async def watch(self, since: str | None = None, *, parts: bool = False) -> AsyncIterator[dict[str, Any]]:
        async for msg in super().watch(since, parts=parts):
            yield msg
            if msg.get("accounts") and msg.get("more") and not self.holding.is_set():
                self.held = msg
                self.holding.set()
                await self.release.wait()


@pytest.fixture(scope="module")
def big() -> Iterator[tuple[Fleet, DaemonProc]]:
    with fleet() as f:
        daemon = f.start(accounts=ACCOUNTS).wait_ready()
        yield f, daemon


async def seeded(f: Fleet, daemon: DaemonProc) -> dict[str, Any]:
    """The daemon's status once it counts the whole fleet (it seeds the simulated accounts after it answers)."""
    async with ControlClient(f.socket_path, timeout=10) as client:
        for _ in range(int(WAIT_SECONDS / STEP_SECONDS)):
            status = await client.status()
            if sum(status["accounts"].values()) == ACCOUNTS:
                return status
            await asyncio.sleep(STEP_SECONDS)
    pytest.fail(f"the daemon did not count {ACCOUNTS} accounts\n{daemon.log()}", pytrace=False)


async def test_the_table_fills_and_works_while_the_snapshot_comes(big: tuple[Fleet, DaemonProc]) -> None:
    f, daemon = big
    await seeded(f, daemon)
    client = HeldClient(f)
    app = FleetApp(f.socket_path, client=client)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_until(pilot, client.holding.is_set, "the snapshot's first frame of accounts", daemon)
        first = [a["id"] for a in client.held["accounts"]]
        assert first == list(range(1, SNAPSHOT_PAGE + 1)) and client.held["more"]
        table, header = table_of(app), app.screen.query_one(FleetHeader)
        await wait_until(pilot, lambda: len(table.rowset.rows) == SNAPSHOT_PAGE, f"the first {SNAPSHOT_PAGE} rows",
                         daemon)
        await wait_until(pilot, lambda: f"loading {SNAPSHOT_PAGE:,} of {ACCOUNTS:,} accounts" in text_of(header),
                         "the progress in the header", daemon)
        assert app.model.since is None  # a reconnect now would ask for a whole snapshot again

        # the table is usable meanwhile: move, filter, sort, open a detail
        await pilot.press("G")
        assert table.selected_key == SNAPSHOT_PAGE and "sim-" in drawn(table, SNAPSHOT_PAGE)
        await pilot.press("slash", *"id:7", "enter")
        assert table.rowset.rows and all("7" in str(r["id"]) for r in table.rowset.rows)
        await pilot.press("escape", "S")  # descending by id: the last row so far on top
        assert table.rowset.rows[0]["id"] == SNAPSHOT_PAGE
        await pilot.press("g", "enter")
        assert isinstance(app.screen, AccountDetail) and app.screen.key == SNAPSHOT_PAGE
        await pilot.press("escape")

        client.release.set()
        await wait_until(pilot, lambda: len(table.rowset.rows) == ACCOUNTS, f"all {ACCOUNTS} rows", daemon)
        await wait_until(pilot, lambda: "loading" not in text_of(header) and f"ready {ACCOUNTS}" in text_of(header),
                         "the header without the progress", daemon)
        assert table.rowset.rows[0]["id"] == ACCOUNTS  # the sort held as the rows came
        assert table.selected_key == SNAPSHOT_PAGE  # and so did the selection, with rows arriving above it
        assert app.model.since == f"{app.model.epoch}:{app.model.seq}" and app.model.loading is None
