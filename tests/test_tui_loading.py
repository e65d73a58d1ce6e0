"""A big fleet's dashboard fills its table as the snapshot's frames arrive: a real daemon subprocess (16,000
simulated accounts, eight pages of the snapshot's accounts, more than the socket's buffers hold; a stream
queue of 100 deltas) over its real socket, the real app under Pilot.

The client is the real one, over the real socket, except that it holds the
stream after the snapshot's first frame of accounts until the test lets it go:
what the app shows then is what a person sees while the rest of a big fleet's
snapshot is on its way, with no timing in the test. Changes made while it is
held overflow the daemon's queue for it: the dashboard is told to resync and
loads a second snapshot the same way, which it ends with every change in.
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

ACCOUNTS = 16_000
QUEUE = 100  # deltas the daemon queues for a watcher: fewer than the changes the resync test makes
CHANGED = 60  # accounts disabled while the stream is held: an account delta and an event each
assert SNAPSHOT_PAGE <= ACCOUNTS / 8, "the test wants a snapshot of eight pages of accounts or more"


class HeldClient(ControlClient):
    """The real client, holding the stream once the first frame that brings accounts (and says more follow)
    has been handed to the app, until ``release`` is set."""

    def __init__(self, fleet: Fleet) -> None:
        super().__init__(fleet.socket_path, timeout=10)
        self.holding = asyncio.Event()
        self.release = asyncio.Event()
        self.held: dict[str, Any] = {}
        self.kinds: list[str] = []  # the type of every message handed to the app

    async def watch(self, since: str | None = None, *, parts: bool = False) -> AsyncIterator[dict[str, Any]]:
        async for msg in super().watch(since, parts=parts):
            self.kinds.append(msg.get("type", ""))
            yield msg
            if msg.get("accounts") and msg.get("more") and not self.holding.is_set():
                self.held = msg
                self.holding.set()
                await self.release.wait()


@pytest.fixture(scope="module")
def big() -> Iterator[tuple[Fleet, DaemonProc]]:
    with fleet() as f:
        f.config.write_text(f"[daemon]\nstream_queue_size = {QUEUE}\n")
        daemon = f.start(accounts=ACCOUNTS).wait_ready()
        yield f, daemon


async def seeded(f: Fleet, daemon: DaemonProc) -> None:
    """Once the daemon counts the whole fleet and its node owns it: it seeds the simulated accounts after it
    answers, and takes them a batch at a time after that (each batch a change the stream carries)."""
    async with ControlClient(f.socket_path, timeout=10) as client:
        for _ in range(int(WAIT_SECONDS / STEP_SECONDS)):
            status = await client.status()
            if sum(status["accounts"].values()) == ACCOUNTS == sum(n["accounts"] for n in status["nodes"]):
                return
            await asyncio.sleep(STEP_SECONDS)
    pytest.fail(f"the daemon did not count and own {ACCOUNTS} accounts\n{daemon.log()}", pytrace=False)


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


async def test_changes_while_a_snapshot_is_held_end_in_a_resync_and_a_whole_second_snapshot(
        big: tuple[Fleet, DaemonProc]) -> None:
    f, daemon = big
    await seeded(f, daemon)
    client = HeldClient(f)
    app = FleetApp(f.socket_path, client=client)
    changed = range(ACCOUNTS - CHANGED + 1, ACCOUNTS + 1)  # in the last page, not read yet while held
    async with app.run_test(size=(120, 40)) as pilot, ControlClient(f.socket_path, timeout=10) as control:
        await wait_until(pilot, client.holding.is_set, "the snapshot's first frame of accounts", daemon)
        for account_id in changed:
            await control.disable(account_id, "while the dashboard was loading")
        client.release.set()
        table = table_of(app)
        # Letting go of the disabled accounts' connections makes more changes meanwhile, which may overflow the
        # small queue again: a further resync is as good, what counts is a whole snapshot with every change in.
        def reloaded() -> bool:
            kinds = client.kinds
            return ("resync" in kinds and "snapshot" in kinds[kinds.index("resync"):] and app.model.loading is None
                    and app.model.since == f"{app.model.epoch}:{app.model.seq}"
                    and all(app.model.accounts.get(i, {}).get("state") == "disabled" for i in changed))

        await wait_until(pilot, reloaded, f"a resync, a whole snapshot after it, the {CHANGED} accounts disabled",
                         daemon)
        await wait_until(pilot, lambda: len(table.rowset.rows) == ACCOUNTS, f"all {ACCOUNTS} rows", daemon)
        resync = client.kinds.index("resync")
        assert client.kinds[:resync].count("snapshot") == 1 and client.kinds[resync + 1] == "snapshot"
        assert client.kinds[:resync].count("snapshot_part") >= ACCOUNTS // SNAPSHOT_PAGE  # the first one whole
        assert app.model.counts(app.clock())["disabled"] == CHANGED
        for account_id in changed:
            await control.enable(account_id)
