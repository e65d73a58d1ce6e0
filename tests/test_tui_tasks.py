"""The tasks view against a real daemon subprocess, driven by Textual's Pilot (issue 15): rows and per-queue counts
from the daemon, a ``status:failed`` filter that narrows them, a task's attempt history, and "retry all matching"
with its confirm and the daemon's count.

The daemon runs setup on the simulator (no injected faults) with the profile photo configured at a path that does
not exist and one attempt allowed: every account's ``set_photo_jpg`` fails at its first attempt, deterministically,
and every fast task succeeds.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable, Iterator

import pytest
from daemon_proc import DaemonProc, Fleet, fleet
from textual.pilot import Pilot
from textual.widgets import DataTable, Label, Static

from tgdaemon import wire
from tgdaemon.control.client import ControlClient
from tgtui.app import FleetApp
from tgtui.screens.confirm import ConfirmDialog
from tgtui.screens.tasks import TaskDetailScreen, TasksScreen
from tgtui.widgets.table import LineTable

WAIT_SECONDS = 20.0
STEP_SECONDS = 0.05
ACCOUNTS = 12


@pytest.fixture(scope="module")
def failing() -> Iterator[tuple[Fleet, DaemonProc]]:
    with fleet() as f:
        f.config.write_text(
            "[simulator]\ndead_fraction = 0\nflood_wait_rate = 0\npeer_flood_rate = 0\ntransient_rate = 0\n\n"
            "[setup]\nenabled = true\n\n[setup.retry]\nmax_attempts = 1\nbackoff_seconds = [0]\n\n"
            f"[setup.media]\ndefault_jpg_path = \"{f.root / 'missing.jpg'}\"\n")
        daemon = f.start(accounts=ACCOUNTS).wait_ready()
        asyncio.run(settled(f))
        yield f, daemon


async def failed_tasks(f: Fleet) -> list[wire.Task]:
    async with ControlClient(f.socket_path, timeout=10) as client:
        return (await client.call("GET", "/tasks", wire.TaskList, params={"status": "failed"})).tasks


async def settled(f: Fleet) -> None:
    """Until every setup task is done or failed (bounded): the views are then stable."""
    async with ControlClient(f.socket_path, timeout=10) as client:
        for _ in range(int(WAIT_SECONDS / 0.2)):
            tasks = (await client.call("GET", "/tasks", wire.TaskList, params={"kind": "setup"})).tasks
            if tasks and all(t.status in ("done", "failed") for t in tasks) and any(
                    t.status == "failed" for t in tasks):
                return
            await asyncio.sleep(0.2)
    raise AssertionError("setup did not settle")


async def wait_until(pilot: Pilot[None], check: Callable[[], object], what: str, daemon: DaemonProc) -> None:
    for _ in range(int(WAIT_SECONDS / STEP_SECONDS)):
        if check():
            return
        await pilot.pause(STEP_SECONDS)
    if check():
        return
    pytest.fail(f"the dashboard did not show {what} within {WAIT_SECONDS:.0f} s\n--- daemon log:\n{daemon.log()}",
                pytrace=False)


def notes(app: FleetApp) -> list[str]:
    return [n.message for n in app._notifications]


async def tasks_view(app: FleetApp, pilot: Pilot[None], daemon: DaemonProc) -> tuple[TasksScreen, LineTable]:
    await pilot.press("T")
    assert isinstance(app.screen, TasksScreen)
    screen = app.screen
    table = screen.query_one(LineTable)
    await wait_until(pilot, lambda: len(table.rowset.rows) > 0, "task rows", daemon)
    return screen, table


async def test_the_tasks_view_lists_counts_and_filters(failing: tuple[Fleet, DaemonProc]) -> None:
    f, daemon = failing
    failed = await failed_tasks(f)
    app = FleetApp(f.socket_path)
    async with app.run_test(size=(160, 45)) as pilot:
        screen, table = await tasks_view(app, pilot, daemon)
        everything = len(table.rowset.rows)
        assert everything > len(failed) > 0
        counts = str(screen.query_one("#counts", Static).content)
        assert re.search(rf"media {len(failed)} failed", counts), counts
        assert re.search(r"fast [\d,]+ done", counts), counts
        await pilot.press("slash", *"status:failed", "enter")
        await wait_until(pilot, lambda: len(table.rowset.rows) == len(failed), "only the failed tasks", daemon)
        assert {(r["status"], r["task_type"], r["queue"]) for r in table.rowset.rows} == {
            ("failed", "set_photo_jpg", "media")}
        assert sorted(r["key"] for r in table.rowset.rows) == sorted(t.key for t in failed)
        line = "".join(s.text for s in table.render_line(1))
        assert "set_photo_jpg" in line and "failed" in line and re.search(r"(\d+[smhd] ago|just now)$", line.rstrip())
        await pilot.press("escape")
        await wait_until(pilot, lambda: len(table.rowset.rows) == everything, "every task again", daemon)


async def test_a_task_detail_shows_its_attempts(failing: tuple[Fleet, DaemonProc]) -> None:
    f, daemon = failing
    app = FleetApp(f.socket_path)
    async with app.run_test(size=(160, 45)) as pilot:
        _, table = await tasks_view(app, pilot, daemon)
        await pilot.press("slash", *"status:failed", "enter")
        await wait_until(pilot, lambda: table.rowset.rows and all(r["status"] == "failed" for r in table.rowset.rows),
                         "failed tasks", daemon)
        key = table.selected_key
        await pilot.press("enter")
        assert isinstance(app.screen, TaskDetailScreen) and app.screen.key == key
        detail = app.screen
        attempts = detail.query_one("#attempts", DataTable)
        await wait_until(pilot, lambda: detail.detail is not None and attempts.row_count == 1, "one attempt", daemon)
        row = [str(c) for c in attempts.get_row_at(0)]
        assert row[0] == "1" and row[5] == "failed" and row[4]  # the attempt, its outcome, its node
        assert "UTC" in row[1] and "UTC" in row[2]
        summary = str(detail.query_one("#summary", Static).content)
        assert key in summary and "set_photo_jpg" in summary and "last error" in summary
        assert "the last 20 kept" in str(detail.query_one("#attempts-label", Label).content)
        await pilot.press("escape")
        assert isinstance(app.screen, TasksScreen)


async def test_retry_all_matching_confirms_the_count_then_makes_them_due(failing: tuple[Fleet, DaemonProc]) -> None:
    f, daemon = failing
    failed = await failed_tasks(f)
    app = FleetApp(f.socket_path)
    async with app.run_test(size=(160, 45)) as pilot:
        _, table = await tasks_view(app, pilot, daemon)
        await pilot.press("R")  # without a filter: refused, nothing asked
        await wait_until(pilot, lambda: any("needs a filter" in n for n in notes(app)), "the refusal", daemon)
        assert not isinstance(app.screen, ConfirmDialog)
        await pilot.press("slash", *"status:failed", "enter", "R")
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmDialog), "the confirm", daemon)
        question = str(app.screen.query_one("#question", Label).content)
        assert question.startswith(f"Retry {len(failed)} failed tasks?"), question
        await pilot.press("n")  # cancelled: nothing retried
        assert not isinstance(app.screen, ConfirmDialog)
        assert len(await failed_tasks(f)) == len(failed)
        await pilot.press("R")
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmDialog), "the confirm again", daemon)
        await pilot.press("y")
        await wait_until(pilot, lambda: any(f"retried {len(failed)} of {len(failed)} tasks" in n
                                            for n in notes(app)), "the retry's answer", daemon)
    # Due again in the store: the scheduler ran each once more (the photo is still missing: failed again).
    async with ControlClient(f.socket_path, timeout=10) as client:
        for _ in range(int(WAIT_SECONDS / 0.2)):
            details = [await client.call("GET", f"/tasks/setup/{t.id}", wire.TaskDetail) for t in failed]
            if all(len(d.attempts) == 2 for d in details):
                break
            await asyncio.sleep(0.2)
        assert [len(d.attempts) for d in details] == [2] * len(failed)
        events = (await client.call("GET", "/events", wire.EventList, params={"limit": 1000})).events
        assert any(e.kind == "tasks.retry_requested" for e in events)
