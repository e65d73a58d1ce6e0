"""The pulse view against a real daemon subprocess on the simulator: the setup pipeline's tasks, done by the
daemon, show as non-zero counts per minute in the charts, with their labelled axes."""

from __future__ import annotations

import asyncio
import re
import time

from daemon_proc import fleet
from test_tui import SETUP_CONFIG, wait_until

from tgdaemon.control.client import ControlClient
from tgtui.app import FleetApp
from tgtui.screens.pulse import PulseScreen
from tgtui.widgets.chart import ChartView

ACCOUNTS = 12
DONE_WITHIN_SECONDS = 30.0


async def some_done(client: ControlClient) -> dict[str, int]:
    """Wait (bounded) until the daemon's pulse counts a task done; its done per queue."""
    deadline = time.monotonic() + DONE_WITHIN_SECONDS
    while True:
        answer = await client.pulse(60)
        done = {queue: sum(counts["done"]) for queue, counts in answer["queues"].items()}
        if any(done.values()) or time.monotonic() > deadline:
            return done
        await asyncio.sleep(0.2)


async def test_the_pulse_view_shows_the_setup_tasks_done() -> None:
    with fleet() as f:
        f.config.write_text(SETUP_CONFIG)
        daemon = f.start(accounts=ACCOUNTS).wait_ready()
        async with ControlClient(f.socket_path, timeout=10) as client:
            done = await some_done(client)
            assert any(done.values()), f"no task done within {DONE_WITHIN_SECONDS:.0f} s: {done}\n{daemon.log()}"
            app = FleetApp(f.socket_path)
            async with app.run_test(size=(100, 40)) as pilot:
                await pilot.press("U")
                assert app.current_mode == "pulse" and isinstance(app.screen, PulseScreen)
                await wait_until(pilot, lambda: app.model.pulse is not None, "the daemon's pulse", daemon)
                pulse = app.model.pulse
                assert pulse is not None and pulse.minutes == 60 and {"fast", "media"} <= set(pulse.queues)
                shown = {queue: sum(d) for queue, (d, _) in pulse.queues.items()}
                assert all(shown[q] >= n for q, n in done.items()), (shown, done)  # counts only grow in the hour
                view = app.screen.query_one(ChartView)
                text = "\n".join(line.plain for line in view.draw(*view.content_size))
                busy = next(q for q, n in shown.items() if n)
                heading = next(line for line in text.splitlines() if line.startswith(busy))
                assert re.search(rf"^{re.escape(busy)} +[\d,]+ done", heading) and f"{shown[busy]:,} done" in heading
                assert "y: tasks/min, 0 to" in heading, text
                assert re.search(r"^ *-60m +-30m +now$", text, re.M), text  # the x-axis, labelled
                assert re.search(r"^ *\d+ ┤", text, re.M), text  # the y-axis scale
                await pilot.press("colon", *"filter x", "enter")  # command mode here too; no rows to filter
                await pilot.pause()
                assert app.current_mode == "pulse"
                assert any("no rows to filter" in str(n.message) for n in app._notifications), app._notifications
                await pilot.press("escape", "colon", *"tasks", "enter")
                await pilot.pause()
                assert app.current_mode == "tasks"
                await pilot.press("U", "right_square_bracket")  # the view round goes on to the nodes
                assert app.current_mode == "nodes"
        assert daemon.stop() == 0, daemon.log()

